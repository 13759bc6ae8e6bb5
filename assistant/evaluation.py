"""Retrieval and answer quality on a question file: hit@1, hit@3, MRR@5, declines.

A question file has one JSON object per line: ``question``, ``expected`` (substrings
of which any one in a hit's text makes it correct; empty for out-of-scope
questions) and ``lang``.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .answer import answer
from .retrieval import MODES, Hit, Retriever


@dataclass
class Question:
    question: str
    expected: list[str]
    lang: str = "no"
    history: list[str] = field(default_factory=list)


@dataclass
class Scores:
    questions: int = 0
    hit_at_1: float = 0.0
    hit_at_3: float = 0.0
    mrr_at_5: float = 0.0


@dataclass
class Report:
    modes: dict[str, dict[str, Scores]]
    out_of_scope: int
    declined: int
    wrongly_declined: int
    mean_top1_chars: float
    misses: list[dict[str, object]]

    def to_json(self) -> dict[str, object]:
        return asdict(self)


def load_questions(path: Path) -> list[Question]:
    questions = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
            questions.append(Question(data["question"], list(data.get("expected", [])), data.get("lang", "no"), list(data.get("history", []))))
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise ValueError(f"{path}:{n}: not a question line ({exc})") from exc
    return questions


def _norm(text: str) -> str:
    return " ".join(text.split()).casefold()


def rank_of_answer(hits: Sequence[Hit], expected: Sequence[str]) -> int | None:
    """1-based rank of the first hit whose extract contains an expected substring."""
    wanted = [_norm(e) for e in expected]
    for rank, hit in enumerate(hits, 1):
        text = _norm(hit.text)
        if any(w in text for w in wanted):
            return rank
    return None


def _scores(ranks: Sequence[int | None]) -> Scores:
    n = len(ranks)
    if n == 0:
        return Scores()
    return Scores(
        questions=n,
        hit_at_1=round(sum(r == 1 for r in ranks) / n, 3),
        hit_at_3=round(sum(r is not None and r <= 3 for r in ranks) / n, 3),
        mrr_at_5=round(sum(1 / r for r in ranks if r is not None and r <= 5) / n, 3),
    )


def evaluate(retriever: Retriever, questions: Sequence[Question], modes: Sequence[str] = MODES) -> Report:
    in_scope = [q for q in questions if q.expected]
    out_scope = [q for q in questions if not q.expected]
    by_mode: dict[str, dict[str, Scores]] = {}
    misses: list[dict[str, object]] = []
    variants = {mode: (mode, None) for mode in modes}
    variants["fixed"] = ("hybrid", dataclasses.replace(retriever.fusion, adaptive=False))
    for name, (mode, fusion) in variants.items():
        ranks = {
            q.question: rank_of_answer(retriever.search(q.question, 5, mode, q.history, fusion), q.expected)
            for q in in_scope
        }
        groups = {"all": list(ranks.values())}
        for q in in_scope:
            groups.setdefault(q.lang, []).append(ranks[q.question])
        by_mode[name] = {lang: _scores(r) for lang, r in groups.items()}
        if name == "hybrid":
            misses = [{"question": q, "rank": r} for q, r in ranks.items() if r != 1]
    answers_in = [answer(q.question, retriever, history=q.history) for q in in_scope]
    answers_out = [answer(q.question, retriever, history=q.history) for q in out_scope]
    tops = [a.citations[0].text for a in answers_in if a.citations]
    return Report(
        modes=by_mode,
        out_of_scope=len(out_scope),
        declined=sum(not a.found for a in answers_out),
        wrongly_declined=sum(not a.found for a in answers_in),
        mean_top1_chars=round(sum(map(len, tops)) / len(tops), 1) if tops else 0.0,
        misses=misses,
    )


def format_report(report: Report) -> str:
    lines = ["hybrid: dense + BM25 weighted by the question's language and names/numbers; fixed: same, one weight",
             f"{'mode':<8} {'lang':<4} {'n':>3} {'hit@1':>6} {'hit@3':>6} {'MRR@5':>6}"]
    for mode, groups in report.modes.items():
        for lang, s in groups.items():
            lines.append(f"{mode:<8} {lang:<4} {s.questions:>3} {s.hit_at_1:>6.3f} {s.hit_at_3:>6.3f} {s.mrr_at_5:>6.3f}")
    lines.append(f"out-of-scope declined: {report.declined}/{report.out_of_scope}")
    lines.append(f"in-scope wrongly declined: {report.wrongly_declined}")
    lines.append(f"mean top-1 extract length: {report.mean_top1_chars} characters")
    for miss in report.misses:
        lines.append(f"  not first: {miss['question']} (rank {miss['rank']})")
    return "\n".join(lines)
