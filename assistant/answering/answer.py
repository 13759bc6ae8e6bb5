"""Hits -> a cited, extractive answer: quotes, the answering sentence marked, or an honest "not found".

Every word shown as evidence is quoted from the texts; only the framing
("Dette sier tekstene:") is ours, in the question's language.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from ..ingest.chunking import sentence_spans
from ..ingest.lexical import looks_norwegian
from .render import TEXTS, escape, render_markdown, render_text
from .types import Answer, Citation
from ..search.ranking import Reading
from ..models.reader import Reader
from .reading import Read, logit, ordered, read_hits, shown
from ..search.retrieval import HISTORY_TURNS, TURN_CHARS, Hit, Retriever, Search, Where

__all__ = ["TEXTS", "Answer", "Asked", "Citation", "answer", "escape", "render_markdown", "render_text"]


RELATED_MARGIN = 0.06  # for a list question, further extracts are shown while this close to the best (twice this)
# A question with one answer shows a second extract only when it is all but tied with the first: on the bank's
# tune half, 0.005 shows 1.3 extracts a question, 0.6 of them holding the answer (0.06 showed 3.9, 0.26).
ONE_ANSWER_MARGIN = 0.005


def question_language(question: str) -> str:
    return "no" if looks_norwegian(question) >= 0.5 else "en"


DEFAULT_K = 5
LIST_ITEMS = 10  # at most this many extracts when the question asks for several things
LIST_MARGIN = 0.05  # list items are shown while their best sentence is this close to the best item's
# Words that ask for a list. A verb ("krevde", "vedtok", "demand") does not: one demand is an answer too.
_SEVERAL = re.compile(
    r"\b(?:hvilke|hvem\s+(?:deltok|møtte|var\s+til\s+stede|stilte)|kva\s+for\s+(?:nokre|nokon)|kven\s+(?:deltok|møtte|stilte)"
    r"|(?:hva|kva)\s+(?:slags|for\s+(?:krav|tiltak|saker|forslag)|krav|tiltak|saker|forslag|punkt(?:er)?)\b"
    r"|hver\s+av|kvar\s+av|each\s+of"
    r"|which\s+(?:\w+\s+){0,2}\w+s\b|what\s+(?:\w+\s+){0,2}\w+s\s+(?:did|were|are|does|do|has|have)\b"
    r"|what\s+(?:are|were)\s+the\b|who\s+(?:attended|took\s+part|was\s+present|were)|list\b|alle\b|nevn\b)",
    re.IGNORECASE,
)


def asks_for_several(question: str) -> bool:
    """"Hvilke krav …", "Hvem deltok …", "Which ministers …": the question asks for a list."""
    return _SEVERAL.search(question) is not None


@dataclass(frozen=True)
class Asked:
    """A question and its history, cleaned and cut to their limits before anything else is done with them.

    This is what is answered and what a cache may keep: a pasted megabyte costs no more than the limit.
    """

    question: str
    history: tuple[str, ...] = ()
    truncated: bool = False

    @classmethod
    def of(cls, question: str, history: Sequence[str] = (), max_chars: int = TURN_CHARS) -> Asked:
        cleaned = _clean(question[: 4 * max_chars])  # cleaning only shortens, so this cut keeps what counts
        turns = (_clean(turn[: 4 * max_chars])[:max_chars] for turn in list(history)[-HISTORY_TURNS:])
        return cls(cleaned[:max_chars], tuple(t for t in turns if t), len(cleaned) > max_chars)


def answer(
    question: str | Asked,
    retriever: Retriever,
    k: int | None = None,
    history: Sequence[str] = (),
    max_chars: int = TURN_CHARS,
    where: Where | Mapping[str, object] | None = None,
) -> Answer:
    """Search, decide whether the texts answer, and render the cited extracts.

    At most ``k`` extracts: by default 5, or 10 when the question asks for
    several things. ``where`` limits the answer to documents (see Retriever.search). When the
    question asks for several things, or the best extracts are items of one
    list, the list is shown whole: its lead-in once, then every relevant item.
    An ``Asked`` is answered as it is; a plain question is cut with ``history`` and ``max_chars`` first.
    """
    asked = question if isinstance(question, Asked) else Asked.of(question, history, max_chars)
    cleaned = asked.question
    lang = question_language(cleaned) if cleaned else "no"
    if not cleaned:
        return Answer(cleaned, False, lang, markdown=TEXTS[lang]["empty"])
    notes = [TEXTS[lang]["truncated"].format(n=len(cleaned))] if asked.truncated else []
    several = asks_for_several(cleaned)
    limit = k if k is not None else LIST_ITEMS if several else DEFAULT_K
    reading = retriever.models.reading if retriever.reader is not None else None
    depth = max(limit, reading.depth) if reading is not None else limit
    search = retriever.run(cleaned, k=depth, history=list(asked.history), where=where)
    if Where.of(where):
        notes.append(TEXTS[lang]["filtered"].format(where=_describe(Where.of(where))))
    hits = dedupe(search.hits)
    if reading is not None and hits:
        decided = _by_reader(retriever.reader, reading, asked, hits, search, several, limit)
    else:
        decided = _by_rule(retriever, hits, search, several, limit)
    result = Answer(cleaned, decided.found, lang, hits=decided.order, note=" ".join(notes))
    if result.found:
        ordered = [h for _, group in _grouped(decided.shown) for h in group]
        result.citations = [_cite(n, h, search, decided.spans.get(h.chunk_id)) for n, h in enumerate(ordered, 1)]
    elif hits:
        result.related = [_cite(1, decided.order[0], search, decided.spans.get(decided.order[0].chunk_id))]
        unknown = search.stored.lexical.missing(search.query) if lang == "no" else []
        if unknown:
            result.note = " ".join([*notes, TEXTS[lang]["missing"].format(words=", ".join(f"«{w}»" for w in unknown))])
    result.markdown = render_markdown(result)
    return result


@dataclass
class _Decided:
    found: bool
    order: list[Hit]  # every hit, best first
    shown: list[Hit]  # the extracts that answer
    spans: dict[int, tuple[int, int]] = field(default_factory=dict)  # chunk id -> the answering sentence


def _by_rule(retriever: Retriever, hits: list[Hit], search: Search, several: bool, limit: int) -> _Decided:
    """Without a reader: the retriever's order, the decline model, and extracts within a margin of the best."""
    found = bool(hits) and retriever.models.decline.answers(decline_features(search))
    if not found:
        return _Decided(False, hits, [])
    margin = (2 * RELATED_MARGIN if several else ONE_ANSWER_MARGIN) * _scale(hits)  # a list reaches further down
    chosen = [h for h in hits if h.score >= hits[0].score - margin][:limit]
    if several and search.named:  # the items of a named meeting, not the same topic in other meetings
        chosen = [h for h in chosen if h.meeting >= hits[0].meeting]
    if several:
        chosen = whole_lists(chosen, search)[:limit]
    return _Decided(True, hits, chosen)


def _by_reader(
    reader: Reader, reading: Reading, asked: Asked, hits: list[Hit], search: Search, several: bool, limit: int
) -> _Decided:
    """With the reader: its evidence orders the first hits, decides whether the texts answer, which
    extracts to show (those that answer) and which sentence of each is the answer."""
    reads = ordered(read_hits(reader, asked.question, asked.history, hits, reading), reading)
    order = [r.hit for r in reads] + hits[reading.depth :]
    spans = {r.hit.chunk_id: r.sentence for r in reads}
    if not reading.decline.answers(decline_features(search, reads)):
        return _Decided(False, order, [], spans)
    chosen = shown(reads, reading, several)
    if several:
        chosen = _list_read(reader, reading, asked, chosen, search)
    return _Decided(True, order, [r.hit for r in chosen][:limit], {**spans, **{r.hit.chunk_id: r.sentence for r in chosen}})


def _list_read(reader: Reader, reading: Reading, asked: Asked, chosen: list[Read], search: Search) -> list[Read]:
    """For a question that asks for a list: the list holding (or led in by) the best extract, read item by
    item; every item that answers is shown, in document order, in place of the list's first extract."""
    members = search.stored.list_of(chosen[0].hit.chunk_id)
    if not members:
        return chosen
    known = {r.hit.chunk_id: r for r in chosen}
    unread = [search.hit(i) for i in members if i not in known]
    fresh = {r.hit.chunk_id: r for r in read_hits(reader, asked.question, asked.history, unread, replace(reading, depth=len(unread)))}
    items = [known.get(i) or fresh[i] for i in members]
    items = [r for r in items if r.probability >= reading.show]
    lead_in = search.stored.chunks_at(members[:1])[0].lead_in
    rest = [r for r in chosen if r.hit.chunk_id not in members and " ".join(r.hit.text.split()) != lead_in]
    return [*items, *rest] if items else chosen


def whole_lists(hits: Sequence[Hit], search: Search) -> list[Hit]:
    """For a question that asks for a list: the first list among the hits (one of its items, or its lead-in)
    shown whole, in place of its first hit.

    Its items come in document order: every item whose best sentence answers
    about as well as the best item's does (within LIST_MARGIN), so an item of
    the same list about something else is left out. A hit that only repeats the
    list's lead-in goes, since the lead-in is shown above the items.
    """
    for hit in hits:
        members = search.stored.list_of(hit.chunk_id)
        if not members:
            continue
        lead_in = search.stored.chunks_at(members[:1])[0].lead_in
        shown = [h for h in hits if " ".join(h.text.split()) != lead_in]
        known = {h.chunk_id: h for h in hits if h.chunk_id in members}
        items = [known.get(i) or search.hit(i) for i in members]
        best = max(item.sentence for item in items)
        items = [item for item in items if item.sentence >= best - LIST_MARGIN or item.chunk_id == hit.chunk_id]
        rest = [h for h in shown if h.chunk_id not in members]
        at = sum(1 for h in hits[: hits.index(hit)] if h in rest)
        return [*rest[:at], *items, *rest[at:]]
    return list(hits)


def _grouped(hits: Sequence[Hit]) -> list[tuple[str, list[Hit]]]:
    """Hits grouped by document, documents in order of their best hit."""
    groups: dict[str, list[Hit]] = {}
    for hit in hits:
        groups.setdefault(hit.source, []).append(hit)
    return list(groups.items())


def _describe(where: Where) -> str:
    parts = [where.source or "", where.kind or ""]
    if where.after or where.before:
        parts.append(f"{where.after or '…'}–{where.before or '…'}")
    return ", ".join(p for p in parts if p)


def decline_features(search: Search, reads: Sequence[Read] = ()) -> dict[str, float]:
    """Question-level evidence that the texts answer it (see ranking.Decline): the first hits' cosines and
    words, how many of the question's words a Norwegian question uses that the texts never do, and, with
    the reader, the log-odds of its best verdict."""
    top = search.hits[:3]
    sentence = max((h.sentence for h in top), default=0.0)
    english = 1.0 - looks_norwegian(search.query)
    features = {
        "sentence": sentence,
        "margin": sentence - search.background,
        "coverage": search.coverage,
        "coverage_no": search.coverage * (1.0 - english),
        "lexical": max((h.lexical for h in top), default=0.0),
        "english": english,
        "missing": float(len(search.stored.lexical.missing(search.query))) * (1.0 - english),
    }
    if reads:
        features["reader"] = max(logit(r.probability) for r in reads)
    return features


def _scale(hits: Sequence[Hit]) -> float:
    """Scores of the fitted ranker have no fixed unit; the margin is relative to the best score."""
    return max(abs(hits[0].score), 1e-6) if hits else 1.0


def dedupe(hits: Sequence[Hit]) -> list[Hit]:
    """Drop hits that overlap an earlier one in the same file or repeat its text."""
    kept: list[Hit] = []
    for hit in hits:
        if any(_overlaps(hit, other) for other in kept):
            continue
        kept.append(hit)
    return kept


def _overlaps(a: Hit, b: Hit) -> bool:
    if a.source == b.source and a.start_line <= b.end_line and b.start_line <= a.end_line:
        return True
    ta, tb = set(a.text.lower().split()), set(b.text.lower().split())
    return bool(ta and tb) and len(ta & tb) / min(len(ta), len(tb)) > 0.9


# What a question asks for, and what a sentence must hold to give it: a time for "når", a number for
# "hvor mye", a name for "hvem". The highlight prefers such a sentence over a closer one without it.
_ASKS = {
    "when": re.compile(r"\b(?:når|kva\s+tid|kor\s+tid|when|what\s+date|hvilken\s+dato|kva\s+dato|which\s+date)\b", re.I),
    "amount": re.compile(
        r"\b(?:hvor\s+(?:mye|mange|stor|store|høy|høye|lang|lenge)|kor\s+(?:mykje|mange|stor|store|høg|lang|lenge)"
        r"|how\s+(?:much|many|large|big|long|high)|what\s+(?:amount|share|percentage|sum))\b",
        re.I,
    ),
    "who": re.compile(r"\b(?:hvem|kven|who|whom)\b", re.I),
}
_MONTHS = "januar|februar|mars|april|mai|juni|juli|august|september|oktober|november|desember"
_HOLDS = {
    "when": re.compile(
        rf"\b(?:\d{{1,2}}\.\s*(?:{_MONTHS})|(?:{_MONTHS})|(?:våren|høsten|hausten|vinteren|sommeren|innen|frå|fra)\s+\d{{4}}"
        r"|(?:19|20)\d\d|kl\.?\s*\d|klokka\s+\d|uke\s+\d+|veke\s+\d+|\d{1,2}\.\d{1,2}\.\d{2,4})\b",
        re.I,
    ),
    "amount": re.compile(r"(?<![\d.,])(?!(?:19|20)\d\d(?!\d|[.,]\d))\d"),  # a number, but not a year
    "who": re.compile(r"\b[A-ZÆØÅ][a-zæøåé]+(?:-[A-ZÆØÅ][a-zæøåé]+)?\s+(?:[A-ZÆØÅ]\.\s+)?[A-ZÆØÅ][a-zæøåé]+\b"),
}
KIND_REACH = 0.15  # a sentence holding the kind of answer asked for wins over one this much closer to the question


def asked_kind(question: str) -> str | None:
    """"when", "amount" or "who" when the question asks for that kind of answer."""
    return next((kind for kind, pattern in _ASKS.items() if pattern.search(question)), None)


def best_sentence(hit: Hit, search: Search) -> tuple[int, int]:
    """Span in the extract of the sentence that answers best: its similarity plus shared question words,
    and a sentence holding the kind of answer asked for (a time, a number, a name) before one that does not."""
    spans = sentence_spans(hit.text)
    if len(spans) <= 1:
        return spans[0] if spans else (0, len(hit.text))
    dense = search.sentence_scores(hit)
    analyze = search.stored.lexical.analyze
    terms = set(analyze(search.query))
    overlap = np.array([len(terms & set(analyze(hit.text[a:b]))) / (len(terms) or 1) for a, b in spans], np.float32)
    if len(dense) != len(spans):
        dense = np.zeros(len(spans), np.float32)
    score = dense + 0.02 * overlap
    kind = asked_kind(search.query)
    holds = np.array([bool(kind and _HOLDS[kind].search(hit.text[a:b])) for a, b in spans])
    if holds.any() and score[holds].max() >= score.max() - KIND_REACH:
        score = np.where(holds, score, -np.inf)
    return spans[int(np.argmax(score))]


def _cite(number: int, hit: Hit, search: Search, span: tuple[int, int] | None = None) -> Citation:
    """A hit as a citation; its highlight is the sentence the reader found answering (``span``), or else the
    one ``best_sentence`` chooses."""
    a, b = span or best_sentence(hit, search)
    return Citation(
        number=number,
        source=hit.source,
        start_line=hit.start_line,
        end_line=hit.end_line,
        text=hit.text,
        highlight=hit.text[a:b],
        unit=hit.unit,
        lead_in=hit.lead_in,
        speaker=hit.speaker,
        score=hit.score,
        trimmed_before=hit.trimmed_before,
        trimmed_after=hit.trimmed_after,
        title=hit.title,
        date=hit.date,
        kind=hit.kind,
    )


def _clean(question: str) -> str:
    without_controls = "".join(ch if ch.isprintable() or ch in " \t" else " " for ch in question)
    return " ".join(without_controls.split())
