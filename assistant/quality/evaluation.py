"""Retrieval and answer quality on a question file: hit@k, MRR, right document, declines, list recall.

A question file (or a folder of them) has one JSON object per line: ``question``,
``expected`` (substrings, any one of which in a hit's extract makes it right;
empty for out-of-scope questions), ``lang``, and optionally ``source`` (the
gold file; then the hit must come from it), ``history``, ``id``, ``tags`` and
``list``. A split file names the documents and out-of-scope questions of the
tune half and the test half; figures carry 95% bootstrap intervals, because a
few hundred questions leave real uncertainty.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..answering.answer import answer
from ..search.retrieval import MODES, Hit, Retriever

BOOTSTRAP = 2000
GROUPS = ("no", "nn", "en", "names_meeting", "followup", "list")


@dataclass
class Question:
    question: str
    expected: list[str]
    lang: str = "no"
    history: list[str] = field(default_factory=list)
    id: str = ""
    source: str | None = None
    tags: list[str] = field(default_factory=list)
    list: bool = False


@dataclass(frozen=True)
class Split:
    tune_documents: frozenset[str]
    test_documents: frozenset[str]
    tune_out_of_scope: frozenset[str]
    test_out_of_scope: frozenset[str]

    def half(self, questions: Sequence[Question], name: str) -> list[Question]:
        """The questions of one half: in scope by their gold document, out of scope by id."""
        documents = self.tune_documents if name == "tune" else self.test_documents
        out_of_scope = self.tune_out_of_scope if name == "tune" else self.test_out_of_scope
        return [q for q in questions if (q.source in documents if q.expected else q.id in out_of_scope)]


@dataclass
class Figure:
    """A proportion or mean with its 95% bootstrap interval."""

    value: float
    low: float
    high: float
    n: int

    def __str__(self) -> str:
        return f"{self.value:.3f} [{self.low:.2f}–{self.high:.2f}]"


@dataclass
class Scores:
    questions: int = 0
    hit_at_1: Figure | None = None
    hit_at_3: Figure | None = None
    mrr_at_5: Figure | None = None
    document_at_1: Figure | None = None


@dataclass
class Report:
    modes: dict[str, dict[str, Scores]]
    out_of_scope: int
    declined: Figure | None
    in_scope: int
    wrongly_declined: Figure | None
    mean_top1_chars: float
    list_recall: Figure | None
    misses: list[dict[str, object]]
    extracts_one_answer: Figure | None = None  # extracts shown for an answered question with one answer
    extract_precision: Figure | None = None  # share of shown extracts (in-scope answers) holding a gold phrase

    def to_json(self) -> dict[str, object]:
        return asdict(self)


def load_questions(path: Path) -> list[Question]:
    """Questions from one .jsonl file, or from every .jsonl file in a folder (sorted by name)."""
    path = Path(path)
    files = sorted(path.glob("*.jsonl")) if path.is_dir() else [path]
    if not files:
        raise FileNotFoundError(f"No question files (*.jsonl) in {path}")
    questions: list[Question] = []
    for file in files:
        for n, line in enumerate(file.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                data = json.loads(line)
                questions.append(
                    Question(
                        data["question"],
                        list(data.get("expected", [])),
                        data.get("lang", "no"),
                        list(data.get("history", [])),
                        str(data.get("id", f"{file.stem}:{n}")),
                        data.get("source"),
                        list(data.get("tags", [])),
                        bool(data.get("list", False)),
                    )
                )
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                raise ValueError(f"{file}:{n}: not a question line ({exc})") from exc
    return questions


def load_split(path: Path) -> Split:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        return Split(
            frozenset(data["tune"]["documents"]),
            frozenset(data["test"]["documents"]),
            frozenset(data["tune"]["out_of_scope"]),
            frozenset(data["test"]["out_of_scope"]),
        )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{path}: not a split file ({exc})") from exc


def _norm(text: str) -> str:
    return " ".join(text.split()).casefold()


def is_right(hit: Hit, question: Question) -> bool:
    """The hit's extract holds a gold substring, from the gold file when the question names one."""
    if question.source is not None and hit.source != question.source:
        return False
    text = _norm(hit.text)
    return any(_norm(e) in text for e in question.expected)


def rank_of_answer(hits: Sequence[Hit], question: Question) -> int | None:
    """1-based rank of the first right hit."""
    return next((rank for rank, hit in enumerate(hits, 1) if is_right(hit, question)), None)


def bootstrap(values: Sequence[float], seed: int = 0) -> Figure | None:
    """Mean with a 95% percentile interval over BOOTSTRAP resamples of the questions."""
    if not len(values):
        return None
    data = np.asarray(values, dtype=np.float64)
    rng = np.random.default_rng(seed)
    means = data[rng.integers(0, len(data), size=(BOOTSTRAP, len(data)))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return Figure(round(float(data.mean()), 3), round(float(low), 3), round(float(high), 3), len(data))


def _scores(ranks: Sequence[int | None], documents: Sequence[bool]) -> Scores:
    return Scores(
        questions=len(ranks),
        hit_at_1=bootstrap([r == 1 for r in ranks]),
        hit_at_3=bootstrap([r is not None and r <= 3 for r in ranks]),
        mrr_at_5=bootstrap([1 / r if r is not None and r <= 5 else 0.0 for r in ranks]),
        document_at_1=bootstrap(documents),
    )


def _groups(question: Question) -> list[str]:
    return ["all", question.lang, *(g for g in GROUPS[3:] if g in question.tags or (g == "list" and question.list))]


def evaluate(retriever: Retriever, questions: Sequence[Question], modes: Sequence[str] = MODES) -> Report:
    """The product ("hybrid") is measured on its answers, whose hits are in the order it shows them (reranked
    by the reader when there is one); "dense" and "lexical" on the retriever's searches with one feature."""
    in_scope = [q for q in questions if q.expected]
    out_scope = [q for q in questions if not q.expected]
    answers_in = [(q, answer(q.question, retriever, history=q.history)) for q in in_scope]
    by_mode: dict[str, dict[str, Scores]] = {}
    misses: list[dict[str, object]] = []
    for mode in modes:
        ranks: dict[str, list[int | None]] = {}
        documents: dict[str, list[bool]] = {}
        for q, a in answers_in:
            hits = a.hits[:5] if mode == "hybrid" else retriever.search(q.question, 5, mode, q.history)
            rank = rank_of_answer(hits, q)
            right_document = bool(hits) and (q.source is None or hits[0].source == q.source)
            for group in _groups(q):
                ranks.setdefault(group, []).append(rank)
                documents.setdefault(group, []).append(right_document)
            if mode == "hybrid" and rank != 1:
                misses.append({"id": q.id, "question": q.question, "rank": rank})
        by_mode[mode] = {group: _scores(ranks[group], documents[group]) for group in ranks}
    answers_out = [answer(q.question, retriever, history=q.history) for q in out_scope]
    tops = [a.citations[0].text for _, a in answers_in if a.citations]
    recalls = [_list_recall(q, a.citations) for q, a in answers_in if q.list]
    shown = [_holds_gold(q, c) for q, a in answers_in for c in a.citations]
    return Report(
        modes=by_mode,
        out_of_scope=len(out_scope),
        declined=bootstrap([not a.found for a in answers_out]),
        in_scope=len(in_scope),
        wrongly_declined=bootstrap([not a.found for _, a in answers_in]),
        mean_top1_chars=round(sum(map(len, tops)) / len(tops), 1) if tops else 0.0,
        list_recall=bootstrap(recalls),
        misses=misses,
        extracts_one_answer=bootstrap([len(a.citations) for q, a in answers_in if not q.list and a.found]),
        extract_precision=bootstrap(shown),
    )


def _holds_gold(question: Question, citation: object) -> bool:
    """An extract that shows (part of) the answer: a gold phrase, from the gold file."""
    if question.source is not None and citation.source != question.source:  # type: ignore[attr-defined]
        return False
    text = _norm(citation.text)  # type: ignore[attr-defined]
    return any(_norm(e) in text for e in question.expected)


def _list_recall(question: Question, shown: Sequence[object]) -> float:
    """Share of the gold items that some shown extract holds."""
    texts = [_norm(c.text) for c in shown if question.source is None or c.source == question.source]  # type: ignore[attr-defined]
    return sum(any(_norm(e) in t for t in texts) for e in question.expected) / len(question.expected)


def format_report(report: Report, title: str = "") -> str:
    lines = [title] if title else []
    lines.append(f"{'mode':<8} {'group':<14} {'n':>4}  {'hit@1':<20} {'hit@3':<20} {'MRR@5':<20} {'right document':<20}")
    for mode, groups in report.modes.items():
        for group, s in groups.items():
            cells = [str(f) if f else "-" for f in (s.hit_at_1, s.hit_at_3, s.mrr_at_5, s.document_at_1)]
            lines.append(f"{mode:<8} {group:<14} {s.questions:>4}  " + " ".join(f"{c:<20}" for c in cells))
    if report.declined:
        lines.append(f"out-of-scope declined: {report.declined} of {report.out_of_scope}")
    if report.wrongly_declined:
        lines.append(f"in-scope wrongly declined: {report.wrongly_declined} of {report.in_scope}")
    if report.list_recall:
        lines.append(f"list recall (gold items shown): {report.list_recall} over {report.list_recall.n} list questions")
    if report.extracts_one_answer:
        lines.append(f"extracts shown for a one-answer question: {report.extracts_one_answer} (mean, {report.extracts_one_answer.n} answered)")
    if report.extract_precision:
        lines.append(f"extract precision (shown extracts holding a gold phrase): {report.extract_precision} of {report.extract_precision.n}")
    lines.append(f"mean top-1 extract length: {report.mean_top1_chars} characters")
    for miss in report.misses:
        lines.append(f"  not first: {miss['id']} {miss['question']} (rank {miss['rank']})")
    return "\n".join(lines)


def prepare_corpus(folders: Sequence[Path], target: Path) -> Path:
    """One sources folder holding the files of several, so an evaluation corpus can reuse source_texts.

    Files are copied only when missing or different, so the index build stays incremental.
    """
    target.mkdir(parents=True, exist_ok=True)
    wanted: dict[str, Path] = {}
    for folder in folders:
        for path in sorted(Path(folder).iterdir()):
            if path.is_file() and not path.name.startswith("."):
                if path.name in wanted:
                    raise ValueError(f"{path.name} is in more than one corpus folder")
                wanted[path.name] = path
    for existing in target.iterdir():
        if existing.name not in wanted:
            existing.unlink() if existing.is_file() else shutil.rmtree(existing)
    for name, path in wanted.items():
        copy = target / name
        if not copy.is_file() or copy.read_bytes() != path.read_bytes():
            shutil.copyfile(path, copy)
    return target
