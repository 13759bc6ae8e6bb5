"""The training set: every gold phrase quoted from its text, the shares the issue asks for, and nothing from
the evaluation bank's test half (no text, no sentence of one, no question or a near copy of one)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from assistant.quality.evaluation import load_questions, load_split
from assistant.ingest.sources import read_document, scan_sources
from tests.conftest import CORPUS, ROOT

TRAINING = ROOT / "training"
BANK = ROOT / "tests" / "eval"


def _words(text: str) -> list[str]:
    return re.findall(r"\w+", text.casefold())


def _training_questions() -> list[dict]:
    return [json.loads(line) for path in sorted((TRAINING / "questions").glob("*.jsonl"))
            for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def test_the_training_questions_check_out_and_have_the_asked_for_shares(capsys: pytest.CaptureFixture[str]) -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("training_check", TRAINING / "check.py")
    check = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(check)  # type: ignore[union-attr]
    assert check.main([]) == 0, capsys.readouterr().out
    questions = _training_questions()
    in_scope = [q for q in questions if q["expected"]]
    texts = {q["source"] for q in questions}
    assert len(texts) >= 30 and len(in_scope) >= 3000 and len(questions) - len(in_scope) >= 600
    assert sum(q["lang"] == "en" for q in in_scope) >= 0.2 * len(in_scope)
    assert sum(q["lang"] == "nn" for q in in_scope) >= 0.1 * len(in_scope)
    assert sum(bool(q.get("list")) for q in in_scope) >= 100 and sum(bool(q.get("history")) for q in in_scope) >= 100


def test_no_text_of_the_banks_test_half_reaches_training() -> None:
    """Not a file, and not one run of twelve words (a sentence), of a test-half text is in a training text (leaving out the
    runs the real KS report has too: the invented KS texts of both take their boilerplate from it)."""
    split = load_split(BANK / "split.json")
    files, _ = scan_sources(BANK / "texts")
    test_texts = [read_document(f).text for f in files if f.source in split.test_documents]
    assert len(test_texts) == len(split.test_documents)

    def shingles_of(text: str) -> set[str]:
        words = _words(text)
        return {" ".join(words[i : i + 12]) for i in range(len(words) - 11)}

    real = set().union(*(shingles_of(p.read_text(encoding="utf-8")) for p in CORPUS.iterdir()))
    shingles = set().union(*(shingles_of(text) for text in test_texts)) - real
    training, _ = scan_sources(TRAINING / "texts")
    for file in training:
        assert file.source not in split.test_documents and file.source not in split.tune_documents
        shared = shingles_of(read_document(file).text) & shingles
        assert not shared, (file.source, sorted(shared)[:3])


def test_no_question_of_the_bank_is_a_training_question_or_a_near_copy_of_one() -> None:
    bank = load_questions(BANK / "questions")
    split = load_split(BANK / "split.json")
    test_half = split.half(bank, "test")
    training = [set(_words(q["question"])) for q in _training_questions()]
    exact = {" ".join(_words(q["question"])) for q in _training_questions()}
    for q in bank:
        assert " ".join(_words(q.question)) not in exact, q.question
    for q in test_half:
        words = set(_words(q.question))
        closest = max(len(words & t) / len(words | t) for t in training)
        assert closest < 0.8, q.question
