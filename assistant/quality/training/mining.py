"""Candidates for every training question, from the product's own retriever, labelled sentence by sentence.

A reader learns most from what the retriever confuses: sentences about the
right topic that do not answer. So each training question is asked of an index
of all the training texts together, exactly as the product asks it, and every
sentence of the first extracts is labelled by whether it holds a gold phrase.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ...ingest.chunking import sentence_spans
from ..evaluation import Question, is_right, load_questions
from ...search.retrieval import Hit, Retriever

CANDIDATES = 12  # passages per question; the reader rescores fewer, but learns from these


@dataclass(frozen=True)
class Candidate:
    """One passage the retriever proposed, as the reader sees it: its context and its extract's sentences."""

    source: str
    chunk_id: int
    rank: int
    context: str  # the list's lead-in or the section heading: what the sentence is about
    sentences: list[str]
    labels: list[bool]  # per sentence: it holds (part of) a gold phrase
    right: bool  # the extract holds a gold phrase from the gold file (the evaluation's hit)
    score: float = 0.0
    sentence: float = 0.0  # best sentence cosine (first-stage evidence)


@dataclass
class Mined:
    id: str
    question: str
    history: list[str]
    lang: str
    in_scope: bool
    source: str | None
    candidates: list[Candidate] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False)

    @classmethod
    def from_json(cls, line: str) -> Mined:
        data = json.loads(line)
        data["candidates"] = [Candidate(**c) for c in data["candidates"]]
        return cls(**data)


def context_of(hit: Hit) -> str:
    return hit.lead_in or hit.heading.lstrip("# ").strip()


def gold_pattern(phrase: str) -> re.Pattern[str]:
    """A gold phrase as it may stand in a text: its words in order, any whitespace between them, any case."""
    return re.compile(r"\s+".join(re.escape(word) for word in phrase.split()), re.IGNORECASE)


def sentence_labels(text: str, spans: Sequence[tuple[int, int]], expected: Sequence[str]) -> list[bool]:
    """Which sentences overlap a gold phrase's place in the text (a phrase may run over two)."""
    places = [m.span() for phrase in expected for m in gold_pattern(phrase).finditer(text)]
    return [any(a < end and start < b for start, end in places) for a, b in spans]


def candidates_of(hits: Sequence[Hit], question: Question) -> list[Candidate]:
    out = []
    for rank, hit in enumerate(hits, 1):
        spans = sentence_spans(hit.text) or [(0, len(hit.text))]
        from_gold = question.source is None or hit.source == question.source
        labels = sentence_labels(hit.text, spans, question.expected) if from_gold else [False] * len(spans)
        out.append(
            Candidate(
                source=hit.source,
                chunk_id=hit.chunk_id,
                rank=rank,
                context=context_of(hit),
                sentences=[hit.text[a:b] for a, b in spans],
                labels=labels,
                right=bool(question.expected) and is_right(hit, question),
                score=round(hit.score, 5),
                sentence=round(hit.sentence, 5),
            )
        )
    return out


def mine(retriever: Retriever, questions: Sequence[Question], k: int = CANDIDATES, add_gold: bool = False) -> Iterator[Mined]:
    """Each question's first ``k`` passages; with ``add_gold``, a gold passage the retriever missed is added
    after them (rank 0), so the reader also learns the paraphrases the retriever does not bridge."""
    stored = retriever.stored
    by_source: dict[str, list[int]] = {}
    if add_gold:
        for chunk_id, chunk in enumerate(stored.chunks_at(range(len(stored)))):
            by_source.setdefault(chunk.source, []).append(chunk_id)
    for q in questions:
        hits = retriever.search(q.question, k=k, history=q.history)
        candidates = candidates_of(hits, q)
        if add_gold and q.expected and not any(any(c.labels) for c in candidates):
            candidates += _gold_candidates(stored, by_source.get(q.source or "", []), q)
        yield Mined(q.id, q.question, list(q.history), q.lang, bool(q.expected), q.source, candidates)


def _gold_candidates(stored, chunk_ids: Sequence[int], question: Question) -> list[Candidate]:
    """The passages of the gold file that hold a gold phrase: the sentences around it, labelled."""
    found = []
    for chunk_id, chunk in zip(chunk_ids, stored.chunks_at(chunk_ids)):
        spans = sentence_spans(chunk.text) or [(0, len(chunk.text))]
        labels = sentence_labels(chunk.text, spans, question.expected)
        if not any(labels):
            continue
        first = max(0, labels.index(True) - 1)
        last = min(len(spans), len(labels) - labels[::-1].index(True) + 1)
        context = chunk.lead_in or chunk.heading.lstrip("# ").strip()
        sentences = [chunk.text[a:b] for a, b in spans[first:last]]
        found.append(Candidate(chunk.source, chunk_id, 0, context, sentences, labels[first:last], True))
    return found[:2]


def load_training_questions(folder: Path) -> list[Question]:
    """The training questions; unanswerable ones keep the text they are about as ``source``."""
    return load_questions(folder)


def read_mined(path: Path) -> list[Mined]:
    return [Mined.from_json(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
