"""Hits -> a cited, extractive answer: quotes, the answering sentence marked, or an honest "not found".

Every word shown as evidence is quoted from the texts; only the framing
("Dette sier tekstene:") is ours, in the question's language.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from .chunking import sentence_spans
from .lexical import looks_norwegian
from .retrieval import TURN_CHARS, Hit, Retriever, Search

UNIT_LABELS = {
    "no": {"line": ("linje", "linje"), "page": ("side", "side"), "paragraph": ("avsnitt", "avsnitt")},
    "en": {"line": ("line", "lines"), "page": ("page", "pages"), "paragraph": ("paragraph", "paragraphs")},
}
TEXTS = {
    "no": {
        "found": "Dette sier tekstene:",
        "not_found": "Jeg fant ikke noe svar på dette i tekstene.",
        "maybe": "Kanskje relatert (svarer ikke direkte på spørsmålet):",
        "sources": "Kilder",
        "context": "Fra",
        "empty": "Skriv et spørsmål om møtetekstene, for eksempel «Hva krevde KS om SLT?».",
        "truncated": "Spørsmålet var svært langt; bare de første {n} tegnene ble brukt.",
    },
    "en": {
        "found": "Here is what the texts say:",
        "not_found": "I could not find an answer to this in the texts.",
        "maybe": "Maybe related (does not answer the question directly):",
        "sources": "Sources",
        "context": "From",
        "empty": "Ask a question about the meeting texts, for example “What did KS demand on SLT?”.",
        "truncated": "The question was very long; only its first {n} characters were used.",
    },
}


@dataclass(frozen=True)
class Citation:
    number: int
    source: str
    start_line: int
    end_line: int
    text: str
    highlight: str
    unit: str = "line"
    lead_in: str = ""
    speaker: str = ""
    score: float = 0.0
    trimmed_before: bool = False
    trimmed_after: bool = False

    def label(self, lang: str = "no") -> str:
        singular, plural = UNIT_LABELS[lang][self.unit]
        if self.start_line == self.end_line:
            return f"[{self.number}] {self.source}, {singular} {self.start_line}"
        return f"[{self.number}] {self.source}, {plural} {self.start_line}–{self.end_line}"


@dataclass
class Answer:
    question: str
    found: bool
    language: str
    citations: list[Citation] = field(default_factory=list)
    related: list[Citation] = field(default_factory=list)
    hits: list[Hit] = field(default_factory=list)
    markdown: str = ""
    note: str = ""


RELATED_MARGIN = 0.06  # further extracts are shown while their score is this close to the best


def question_language(question: str) -> str:
    return "no" if looks_norwegian(question) >= 0.5 else "en"


def answer(
    question: str,
    retriever: Retriever,
    k: int = 5,
    history: Sequence[str] = (),
    max_chars: int = TURN_CHARS,
) -> Answer:
    """Search, decide whether the texts answer, and render the cited extracts."""
    cleaned = _clean(question)
    lang = question_language(cleaned) if cleaned else "no"
    if not cleaned:
        return Answer(question, False, lang, markdown=TEXTS[lang]["empty"])
    note = ""
    if len(cleaned) > max_chars:
        cleaned = cleaned[:max_chars]
        note = TEXTS[lang]["truncated"].format(n=max_chars)
    search = retriever.run(cleaned, k=k, history=[c for c in map(_clean, history) if c])
    hits = dedupe(search.hits)
    found = bool(hits) and retriever.models.decline.answers(decline_features(search))
    result = Answer(question, found, lang, hits=search.hits, note=note)
    if result.found:
        chosen = [h for h in hits if h.score >= hits[0].score - RELATED_MARGIN * _scale(hits)]
        result.citations = [_cite(n, h, search) for n, h in enumerate(chosen[:k], 1)]
    elif hits:
        result.related = [_cite(1, hits[0], search)]
    result.markdown = render_markdown(result)
    return result


def decline_features(search: Search) -> dict[str, float]:
    """Question-level evidence that the texts answer it (see ranking.Decline)."""
    top = search.hits[:3]
    sentence = max((h.sentence for h in top), default=0.0)
    english = 1.0 - looks_norwegian(search.query)
    return {
        "sentence": sentence,
        "margin": sentence - search.background,
        "coverage": search.coverage,
        "coverage_no": search.coverage * (1.0 - english),
        "lexical": max((h.lexical for h in top), default=0.0),
        "english": english,
    }


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


def best_sentence(hit: Hit, search: Search) -> tuple[int, int]:
    """Span in the extract of the sentence that answers best: its similarity plus shared question words."""
    spans = sentence_spans(hit.text)
    if len(spans) <= 1:
        return spans[0] if spans else (0, len(hit.text))
    dense = search.sentence_scores(hit)
    analyze = search.stored.lexical.analyze
    terms = set(analyze(search.query))
    overlap = np.array([len(terms & set(analyze(hit.text[a:b]))) / (len(terms) or 1) for a, b in spans], np.float32)
    if len(dense) != len(spans):
        dense = np.zeros(len(spans), np.float32)
    return spans[int(np.argmax(dense + 0.02 * overlap))]


def _cite(number: int, hit: Hit, search: Search) -> Citation:
    a, b = best_sentence(hit, search)
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
    )


def render_markdown(result: Answer) -> str:
    """Quotes as Markdown with every character of source text escaped, so it shows and never runs."""
    t = TEXTS[result.language]
    parts: list[str] = []
    if result.note:
        parts.append(f"*{escape(result.note)}*")
    if result.found:
        parts.append(t["found"])
        for c in result.citations:
            parts.append(_quote(c, result.language))
        sources = "\n".join(f"- {escape(c.label(result.language))}" for c in result.citations)
        parts.append(f"<details><summary>{t['sources']}</summary>\n\n{sources}\n\n</details>")
    else:
        parts.append(t["not_found"])
        if result.related:
            parts.append(t["maybe"])
            parts.extend(_quote(c, result.language) for c in result.related)
    return "\n\n".join(parts)


def _quote(c: Citation, lang: str) -> str:
    t = TEXTS[lang]
    lines = []
    if c.lead_in:
        lines.append(f"*{t['context']}:* {escape(c.lead_in)}")
    a = c.text.find(c.highlight)
    if c.highlight and a >= 0 and c.highlight != c.text:
        body = escape(c.text[:a]) + "**" + escape(c.highlight) + "**" + escape(c.text[a + len(c.highlight) :])
    else:
        body = "**" + escape(c.text) + "**"
    body = ("… " if c.trimmed_before else "") + body + (" …" if c.trimmed_after else "")
    lines.append("> " + body + f" [{c.number}]")
    if c.speaker:
        lines.append(f"> — *{escape(c.speaker)}*")
    lines.append(f"<sub>{escape(c.label(lang))}</sub>")
    return "\n".join(lines)


_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+!|~>-])")


def escape(text: str) -> str:
    """HTML-escape, then backslash-escape Markdown syntax, so source text is always shown literally."""
    return _MD_SPECIAL.sub(r"\\\1", html.escape(text, quote=False))


def _clean(question: str) -> str:
    without_controls = "".join(ch if ch.isprintable() or ch in " \t" else " " for ch in question)
    return " ".join(without_controls.split())


def render_text(result: Answer) -> str:
    """Plain terminal rendering: the highlighted sentence between » and «."""
    t = TEXTS[result.language]
    lines = [result.note] if result.note else []
    if result.found:
        lines.append(t["found"])
        shown = result.citations
    else:
        lines.append(t["not_found"])
        shown = result.related
        if shown:
            lines.append(t["maybe"])
    for c in shown:
        lines.append("")
        lines.append(c.label(result.language))
        if c.lead_in:
            lines.append(f"  {t['context']}: {c.lead_in}")
        text = c.text.replace(c.highlight, f"»{c.highlight}«", 1) if c.highlight else c.text
        lines.append("  " + ("… " if c.trimmed_before else "") + text + (" …" if c.trimmed_after else ""))
        if c.speaker:
            lines.append(f"  — {c.speaker}")
    return "\n".join(lines)
