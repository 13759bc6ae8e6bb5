"""The first passages read with the question: which answer, which sentence answers, and in what order.

The retriever finds passages about the question's topic; the reader
(``reader.py``) says, sentence by sentence, whether one answers it. Each of the
first ``depth`` hits gets the probability of its best sentence (among the
sentences of its extract), the hits are reordered by that evidence and the
retriever's own score, and the answering sentence becomes the highlight. How
far down to read, how to weigh the two and where the thresholds lie are
fitted on the bank's tune half and stored in ``data/ranking.json``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from ..ingest.chunking import sentence_spans
from ..search.ranking import Reading
from ..models.reader import Reader, passage_text, question_text
from ..search.retrieval import Hit


@dataclass(frozen=True)
class Read:
    hit: Hit
    probability: float
    sentence: tuple[int, int]  # span in hit.text of the sentence the reader finds answering best


def read_hits(reader: Reader, question: str, history: Sequence[str], hits: Sequence[Hit], reading: Reading) -> list[Read]:
    """The reader's verdict on the first ``reading.depth`` hits, in the retriever's order."""
    chosen = list(hits[: reading.depth])
    spans = [_sentences(hit, reading.sentences) for hit in chosen]
    texts = [passage_text(hit.lead_in or hit.heading.lstrip("# ").strip(), hit.text[a:b]) for hit, s in zip(chosen, spans) for a, b in s]
    probabilities = list(reader.score(question_text(question, history), texts))
    reads = []
    for hit, sentence_spans_ in zip(chosen, spans):
        scored = [(probabilities.pop(0), span) for span in sentence_spans_]
        probability, span = max(scored, key=lambda ps: ps[0])
        reads.append(Read(hit, float(probability), span))
    return reads


def _sentences(hit: Hit, limit: int) -> list[tuple[int, int]]:
    """The extract's sentences nearest its best one (which the retriever chose), at most ``limit``."""
    spans = sentence_spans(hit.text) or [(0, len(hit.text))]
    best = min(max(hit.best - hit.sentences[0], 0), len(spans) - 1)
    order = sorted(range(len(spans)), key=lambda i: (abs(i - best), i))
    return [spans[i] for i in sorted(order[:limit])]


def logit(p: float) -> float:
    p = min(max(p, 1e-6), 1 - 1e-6)
    return math.log(p / (1 - p))


def ordered(reads: Sequence[Read], reading: Reading) -> list[Read]:
    """Best first by the reader's log-odds plus ``weight`` times the retriever's score."""
    return sorted(reads, key=lambda r: -(logit(r.probability) + reading.weight * r.hit.score))


def shown(reads: Sequence[Read], reading: Reading, several: bool) -> list[Read]:
    """The extracts that answer: the best, and every other that the reader finds answering nearly as well
    (for a question that asks for a list, every one that answers)."""
    if not reads:
        return []
    best = logit(reads[0].probability)
    return [reads[0]] + [
        r for r in reads[1:]
        if r.probability >= reading.show and (several or logit(r.probability) >= best - reading.margin)
    ]
