"""Choosing and fitting the ranking and the decline decision: cross-validation, the split, the shipped models."""

from __future__ import annotations

import hashlib
from types import SimpleNamespace

import numpy as np
import pytest

from assistant.quality.evaluation import Question, load_questions, load_split
from assistant.search.ranking import DECLINE_FEATURES, READ_FEATURES, Decline, Ranker, load_models
from assistant.quality.tuning import Case, ReadCase, ceiling, choose_ranker, fit_decline, reachable, tune
from assistant.quality.tuning import fit_reading as tune_reading

from .conftest import ROOT

BANK = ROOT / "tests" / "eval"


def _case(source: str, passage: list[float], sentence: list[float], gold: int) -> Case:
    n = len(passage)
    features = {
        "passage": np.array(passage, np.float32),
        "sentence": np.array(sentence, np.float32),
        "lexical": np.zeros(n, np.float32),
        "lexical_en": np.zeros(n, np.float32),
        "meeting": np.zeros(n, np.float32),
    }
    return Case(Question("q", ["x"], source=source), features, np.arange(n) == gold)


def test_cross_validation_prefers_the_evidence_that_finds_the_answer():
    # The best sentence always points at the answer; the passage cosine only in one case in three.
    cases = []
    for i in range(30):
        gold = i % 3
        passage = [0.8, 0.8, 0.8]
        passage[(gold + (i % 2)) % 3] = 0.9
        sentence = [0.7, 0.7, 0.7]
        sentence[gold] = 0.95
        cases.append(_case(f"doc{i % 5}.txt", passage, sentence, gold))
    ranker, table = choose_ranker(cases, report=lambda _: None)
    assert all(ranker.score(c.features).argmax() == int(np.flatnonzero(c.gold)[0]) for c in cases)
    chosen = [row for row in table if row.get("chosen")]
    assert len(chosen) == 1 and chosen[0]["cv_hit_at_1"] == 1.0
    dense_only = next(row for row in table if row["method"].startswith("dense only"))
    assert dense_only["cv_hit_at_1"] < 1.0


def test_the_ceiling_counts_questions_some_weighting_can_answer_first():
    mixed = _case("a.txt", [0.8, 0.9, 0.5], [0.8, 0.5, 0.9], gold=0)  # first by neither cosine, but by their mean
    dominated = _case("a.txt", [0.5, 0.6], [0.5, 0.6], gold=0)  # first only if more evidence counted against
    tied = _case("a.txt", [0.7, 0.7], [0.6, 0.6], gold=1)  # the same evidence: never strictly first
    assert reachable(mixed) and not reachable(dominated) and not reachable(tied)
    assert reachable(dominated, signed=True) and not reachable(tied, signed=True)
    assert ceiling([mixed, dominated, tied]) == pytest.approx(1 / 3)
    assert ceiling([mixed, dominated, tied], signed=True) == pytest.approx(2 / 3)


def test_decline_threshold_keeps_wrong_declines_under_three_percent():
    rng = np.random.default_rng(0)
    inside = rng.normal(1.0, 0.5, size=(200, len(DECLINE_FEATURES)))
    outside = rng.normal(-1.0, 0.5, size=(40, len(DECLINE_FEATURES)))
    x, y = np.vstack([inside, outside]), np.r_[np.ones(200, bool), np.zeros(40, bool)]
    decline, cv = fit_decline(x, y)
    assert cv["cv_in_scope_wrongly_declined"] <= 0.03 and cv["cv_out_of_scope_declined"] >= 0.9
    rows = [dict(zip(DECLINE_FEATURES, row)) for row in x]
    answered = np.array([decline.answers(row) for row in rows])
    assert answered[y].mean() >= 0.97 and answered[~y].mean() <= 0.1


def test_decline_probability_is_a_logistic_of_the_evidence():
    decline = Decline(weights={"margin": 10.0}, bias=-0.5, threshold=0.5)
    assert decline.probability({"margin": 0.05}) == pytest.approx(0.5)
    assert decline.answers({"margin": 0.2}) and not decline.answers({"margin": 0.0})


def test_rrf_and_meeting_filter():
    features = {"passage": np.array([0.9, 0.8, 0.7]), "lexical": np.array([0.0, 0.5, 0.4]), "meeting": np.array([0.0, 0.0, 1.0])}
    rrf = Ranker(kind="rrf", weights={"passage": 1.0, "lexical": 1.0})
    assert rrf.score(features).argmax() == 1  # second by cosine, first by lexical
    assert Ranker(weights={"passage": 1.0}, meeting_filter=True).score(features).argmax() == 2


class _Recorder:
    """A stand-in retriever that answers every question the same way and remembers what it was asked."""

    def __init__(self) -> None:
        self.asked: list[str] = []
        chunk = SimpleNamespace(text="svaret", source="a.txt", start_line=1, end_line=1)
        self.stored = SimpleNamespace(chunks_at=lambda ids: [chunk for _ in ids])
        self.models = SimpleNamespace(ranker=Ranker())

    def named_meeting(self, stored, query, history=()):
        from assistant.ingest.meetings import Reference

        self.asked.append(query)
        return Reference()

    def query_vector(self, query, history=()):
        return np.ones(2, np.float32)

    def features(self, stored, vector, query, lex_query, named=None, where=None):
        values = {name: np.array([0.5], np.float32) for name in ("passage", "sentence", "lexical", "lexical_en", "meeting")}
        return np.array([0]), values

    def run(self, query, k=5, history=(), ranker=None):
        self.asked.append(query)
        hit = SimpleNamespace(sentence=0.8, lexical=0.1)
        stored = SimpleNamespace(lexical=SimpleNamespace(missing=lambda question: []))
        return SimpleNamespace(hits=[hit], background=0.7, coverage=0.5, query=query, stored=stored)


def test_tuning_reads_only_the_tune_half():
    questions = load_questions(BANK / "questions")
    split = load_split(BANK / "split.json")
    recorder = _Recorder()
    models = tune(recorder, questions, split, report=lambda _: None)  # type: ignore[arg-type]
    tune_half = split.half(questions, "tune")
    test_only = {q.question for q in split.half(questions, "test")} - {q.question for q in tune_half}
    assert recorder.asked and not set(recorder.asked) & test_only
    assert models.provenance["tune_documents"] == sorted(split.tune_documents)
    assert models.provenance["question_ids_sha256"] == _ids_hash(tune_half)


def test_shipped_models_were_fitted_on_the_tune_half():
    questions = load_questions(BANK / "questions")
    split = load_split(BANK / "split.json")
    shipped = load_models()
    assert shipped.provenance["tune_documents"] == sorted(split.tune_documents)
    assert not set(shipped.provenance["tune_documents"]) & split.test_documents
    assert shipped.provenance["question_ids_sha256"] == _ids_hash(split.half(questions, "tune"))
    assert any(row.get("chosen") for row in shipped.provenance["ranking_cv"])
    ceiling_ = shipped.provenance["ranking_ceiling_hit_at_1"]
    mixes = [row["cv_hit_at_1"] for row in shipped.provenance["ranking_cv"] if not row["method"].startswith(("RRF", "logistic"))]
    assert max(mixes) <= ceiling_["weights_0_to_1"] <= ceiling_["weights_any_sign"] <= 1.0  # an upper bound of every mix


def _ids_hash(questions: list[Question]) -> str:
    return hashlib.sha256("\n".join(sorted(q.id for q in questions)).encode()).hexdigest()


def _read_case(probability: list[float], score: list[float], right: int, expected: bool = True) -> ReadCase:
    q = Question("q", ["x"] if expected else [], source="a.txt")
    features = {name: 0.5 for name in READ_FEATURES} | {"reader": float(np.log(max(probability) / (1 - max(probability))))}
    return ReadCase(q, np.array(probability), np.array(score), np.arange(len(score)) == right, features)


def test_the_reader_is_used_only_when_it_ranks_better_than_the_retriever():
    rng = np.random.default_rng(0)
    wrong_first = [_read_case([0.1, 0.9, 0.2, 0.1], [0.9, 0.8, 0.7, 0.6], right=1) for _ in range(30)]
    already_first = [_read_case(list(rng.uniform(0.05, 0.95, 4)), [0.9, 0.8, 0.7, 0.6], right=0) for _ in range(30)]
    out = [_read_case([0.02, 0.03, 0.01, 0.02], [0.8, 0.7, 0.6, 0.5], right=-1, expected=False) for _ in range(10)]
    reading, cv = tune_reading(wrong_first + out, report=lambda _: None)
    assert reading is not None and cv["used"] and reading.weight < 1e4  # it puts the right passage first
    reading, cv = tune_reading(already_first + out, report=lambda _: None)
    assert reading is None and not cv["used"]  # noise beside a retriever that is already right: not worth a pass
