from __future__ import annotations

import json

import pytest

from assistant.evaluation import Question, load_questions, rank_of_answer
from assistant.retrieval import Hit


def _hit(text: str) -> Hit:
    return Hit(text=text, source="a.txt", start_line=1, end_line=1, score=1.0)


def test_rank_is_the_first_hit_containing_an_expected_substring():
    hits = [_hit("noe annet"), _hit("KS foreslår en  tiltaksplan"), _hit("tiltaksplan igjen")]
    assert rank_of_answer(hits, ["tiltaksplan"]) == 2
    assert rank_of_answer(hits, ["KS foreslår en tiltaksplan"]) == 2  # whitespace collapsed
    assert rank_of_answer(hits, ["finnes ikke"]) is None


def test_load_questions(tmp_path):
    path = tmp_path / "q.jsonl"
    path.write_text(
        json.dumps({"question": "Hva?", "expected": ["x"], "lang": "no"}) + "\n\n"
        + json.dumps({"question": "And?", "expected": [], "lang": "en", "history": ["What?"]}) + "\n",
        encoding="utf-8",
    )
    assert load_questions(path) == [Question("Hva?", ["x"], "no"), Question("And?", [], "en", ["What?"])]
    path.write_text("not json\n", encoding="utf-8")
    with pytest.raises(ValueError, match="q.jsonl:1"):
        load_questions(path)
