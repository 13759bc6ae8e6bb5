"""What an answer is: the cited extracts, the answer that holds them, and their plain-data form.

Kept apart from the code that finds answers (``answer``) and the code that
shows them (``render``), so both import these types and neither imports the other.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from ..search.retrieval import Hit

UNIT_LABELS = {
    "no": {"line": ("linje", "linje"), "page": ("side", "side"), "paragraph": ("avsnitt", "avsnitt")},
    "en": {"line": ("line", "lines"), "page": ("page", "pages"), "paragraph": ("paragraph", "paragraphs")},
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
    title: str = ""  # the meeting, as "KS konsultasjonsmøte 26.04.2024"
    date: str = ""
    kind: str = ""

    def label(self, lang: str = "no") -> str:
        """"[1] KS konsultasjonsmøte 26.04.2024, linje 17"; the file name where the meeting is unknown."""
        singular, plural = UNIT_LABELS[lang][self.unit]
        where = self.title or self.source
        if self.start_line == self.end_line:
            return f"[{self.number}] {where}, {singular} {self.start_line}"
        return f"[{self.number}] {where}, {plural} {self.start_line}–{self.end_line}"


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

    def to_json(self) -> dict[str, object]:
        """Plain data for scripts and the HTTP API: texts as in the file, not Markdown-escaped."""
        return {
            "question": self.question,
            "found": self.found,
            "language": self.language,
            "note": self.note,
            "citations": [asdict(c) for c in self.citations],
            "related": [asdict(c) for c in self.related],
            "hits": [hit_json(h) for h in self.hits],
            "markdown": self.markdown,
        }


def hit_json(hit: Hit) -> dict[str, object]:
    """A hit's citable fields; the ranking's internals (ids, sentence ranges) stay inside."""
    data = asdict(hit)
    for internal in ("chunk_id", "sentences", "best"):
        data.pop(internal)
    return data
