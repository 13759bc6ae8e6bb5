from __future__ import annotations

import json

import pytest

from assistant.quality.evaluation import Question, Split, bootstrap, load_questions, load_split, rank_of_answer
from assistant.search.retrieval import Hit


def _hit(text: str, source: str = "a.txt") -> Hit:
    return Hit(text=text, source=source, start_line=1, end_line=1, score=1.0)


def test_rank_is_the_first_hit_containing_an_expected_substring():
    hits = [_hit("noe annet"), _hit("KS foreslår en  tiltaksplan"), _hit("tiltaksplan igjen")]
    assert rank_of_answer(hits, Question("q", ["tiltaksplan"])) == 2
    assert rank_of_answer(hits, Question("q", ["KS foreslår en tiltaksplan"])) == 2  # whitespace collapsed
    assert rank_of_answer(hits, Question("q", ["finnes ikke"])) is None


def test_a_named_gold_file_must_match_too():
    hits = [_hit("tiltaksplan", "b.txt"), _hit("tiltaksplan", "a.txt")]
    assert rank_of_answer(hits, Question("q", ["tiltaksplan"], source="a.txt")) == 2
    assert rank_of_answer(hits, Question("q", ["tiltaksplan"])) == 1


def test_load_questions(tmp_path):
    path = tmp_path / "q.jsonl"
    path.write_text(
        json.dumps({"question": "Hva?", "expected": ["x"], "lang": "no"}) + "\n\n"
        + json.dumps({"question": "And?", "expected": [], "lang": "en", "history": ["What?"], "id": "o1"}) + "\n",
        encoding="utf-8",
    )
    assert load_questions(path) == [Question("Hva?", ["x"], "no", id="q:1"), Question("And?", [], "en", ["What?"], id="o1")]
    (tmp_path / "r.jsonl").write_text(json.dumps({"question": "Mer?", "expected": ["y"], "source": "a.txt"}) + "\n")
    assert [q.id for q in load_questions(tmp_path)] == ["q:1", "o1", "r:1"]  # a folder: every file, by name
    path.write_text("not json\n", encoding="utf-8")
    with pytest.raises(ValueError, match="q.jsonl:1"):
        load_questions(path)


def test_split_halves_follow_documents_and_out_of_scope_ids(tmp_path):
    path = tmp_path / "split.json"
    path.write_text(json.dumps({
        "tune": {"documents": ["a.txt"], "out_of_scope": ["o1"]},
        "test": {"documents": ["b.txt"], "out_of_scope": ["o2"]},
    }))
    split = load_split(path)
    questions = [
        Question("1", ["x"], source="a.txt", id="a1"), Question("2", ["x"], source="b.txt", id="b1"),
        Question("3", [], id="o1"), Question("4", [], id="o2"), Question("5", ["x"], source="c.txt", id="c1"),
    ]
    assert [q.id for q in split.half(questions, "tune")] == ["a1", "o1"]
    assert [q.id for q in split.half(questions, "test")] == ["b1", "o2"]
    with pytest.raises(ValueError, match="not a split file"):
        load_split(tmp_path / "missing.json")


def test_bootstrap_interval_brackets_the_mean_and_narrows_with_more_questions():
    small, large = bootstrap([1, 0] * 10), bootstrap([1, 0] * 500)
    assert small.value == large.value == 0.5
    assert small.low < 0.5 < small.high and large.low < 0.5 < large.high
    assert large.high - large.low < small.high - small.low
    assert bootstrap([]) is None
