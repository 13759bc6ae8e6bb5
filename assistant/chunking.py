"""Cut documents into citable extracts that follow the text's own structure.

An extract is shown to the user as a quotation, so it is always a verbatim run
of whole sentences from one paragraph or bullet; context that helps retrieval
(heading, the sentence introducing a list, who is speaking) is kept beside it
instead of being pasted into it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from assistant.sources import Document


@dataclass(frozen=True)
class Chunk:
    text: str
    source: str
    start_line: int
    end_line: int
    heading: str = ""
    lead_in: str = ""
    speaker: str = ""
    kind: str = "paragraph"
    unit: str = "line"

    @property
    def embed_text(self) -> str:
        """Context travels with the extract so a question can match the heading or speaker too."""
        return "\n".join(part for part in (self.heading, self.lead_in, self.text, self.speaker) if part)


# --- sentences -------------------------------------------------------------

_SENTENCE_END = re.compile(r"[.!?…]+[»\"”’')\]]*(?=\s|$)")
_CLOSERS = "»\"”’')]"
_OPENERS = "«\"“”‘'(–—-"
_NEVER_FINAL = frozenset(
    """bl.a. f.eks. ca. jf. jfr. nr. dvs. st.meld. meld. st. prop. innst. kl. ref. evt. ev.
    inkl. ekskl. tlf. pkt. mht. iht. vedr. ang. dr. prof. adm. avd. pga. ifm. iflg. ift. mtp.
    hhv. vs. kap. art. jan. feb. apr. aug. sep. sept. okt. nov. des.""".split()
)
# These often end a sentence too, so they only block a split before a number.
_MAYBE_FINAL = frozenset("osv. mv. m.v. m.m. mm. etc. o.l. pst. mill. mrd. kr. mfl. m.fl.".split())
_DOTTED = re.compile(r"(?:[^\W\d_]{1,5}\.){2,}")
_MONTHS = frozenset("januar februar mars april mai juni juli august september oktober november desember".split())


def split_sentences(text: str) -> list[str]:
    """Sentences of a Norwegian text; also used to highlight the answering sentence."""
    return [text[start:end] for start, end in sentence_spans(text)]


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """Character spans of the sentences, without surrounding whitespace, so callers can map back to lines."""
    spans: list[tuple[int, int]] = []
    start = _skip_space(text, 0)
    for match in _SENTENCE_END.finditer(text):
        if match.end() <= start or not _is_boundary(text, match):
            continue
        spans.append((start, match.end()))
        start = _skip_space(text, match.end())
    end = len(text.rstrip())
    if end > start:
        spans.append((start, end))
    return spans


def _skip_space(text: str, position: int) -> int:
    while position < len(text) and text[position].isspace():
        position += 1
    return position


def _is_boundary(text: str, match: re.Match[str]) -> bool:
    rest = text[match.end():].lstrip()
    if not rest:
        return True
    following = rest[0]
    if not (following.isupper() or following.isdigit() or following in _OPENERS):
        return False
    if match.group().rstrip(_CLOSERS) != ".":
        return True
    word_start = match.start()
    while word_start > 0 and not text[word_start - 1].isspace():
        word_start -= 1
    word = text[word_start:match.start() + 1].lstrip(_OPENERS).lower()
    at_line_start = text[:word_start].rstrip(" \t").endswith("\n") or not text[:word_start].strip()
    return not _is_abbreviation(word, rest, at_line_start)


def _is_abbreviation(word: str, rest: str, at_line_start: bool) -> bool:
    """Whether the period ending `word` belongs to the word rather than ending the sentence."""
    stem = word[:-1]
    if word in _NEVER_FINAL or (_DOTTED.fullmatch(word) and word not in _MAYBE_FINAL):
        return True
    if word in _MAYBE_FINAL:
        return rest[0].isdigit()
    if len(stem) == 1 and stem.isalpha():
        return True  # an initial, as in "Gunn M. Helgesen"
    if stem.isdigit():
        next_word = rest.split(maxsplit=1)[0].strip(",.").lower()
        return next_word in _MONTHS or (at_line_start and len(stem) <= 3)
    return False


# --- blocks ----------------------------------------------------------------

_MD_HEADING = re.compile(r"\s{0,3}#{1,6}\s+(\S.*?)(?:\s+#+)?\s*$")
_BULLET = re.compile(r"\s*(?:[•●▪◦·‣○■]\s*|[*-]\s+|(\d{1,3})[.)]\s+)(?=\S)")
_CAPTION = re.compile(r"(?:foto|photo|bilde|illustrasjon|ill\.|kilde|grafikk)\s*:", re.IGNORECASE)
_QUOTE_DASHES = ("–", "—")
_ATTRIBUTION = re.compile(
    r".*[,?!]\s+((?:sa|sier|uttalte|uttaler|mente|mener|fulgte|understreket|understreker|påpekte|påpeker"
    r"|la|legger|fortalte|forteller|forklarte|forklarer|svarte|svarer|spurte|spør|skrev|skriver"
    r"|fortsatte|avsluttet|konkluderte|advarte)\s.*?)\s*[.!]?$",
    re.DOTALL,
)
_PRONOUNS = {"han", "hun", "de", "hen"}
_MAX_HEADING_CHARS = 80
_MAX_ATTRIBUTION_CHARS = 100


@dataclass(frozen=True)
class _Block:
    kind: str  # "paragraph" | "bullet" | "heading"
    start: int  # index of the block's first line in the document
    text: str  # the block's lines joined with "\n", verbatim
    body: int = 0  # where the extract starts, i.e. after a bullet mark


def chunk_document(doc: Document, max_chars: int = 500) -> list[Chunk]:
    """Chunks in document order, each citing the lines (or pages/paragraphs) it was taken from."""
    lines = doc.text.split("\n")
    units = doc.line_units or tuple(range(1, len(lines) + 1))
    chunks: list[Chunk] = []
    heading = lead_in = previous_tail = named = ""
    previous_kind = ""
    for block in _classify(_group_lines(lines)):
        if block.kind == "heading":
            heading, previous_kind = _heading_text(block.text), "heading"
            continue
        if _is_credit(block.text):
            continue
        spans = _pieces(block, max_chars)
        texts = [_collapse(block.text[start:end]) for start, end in spans]
        if block.kind == "bullet" and previous_kind != "bullet":
            lead_in = previous_tail if previous_kind == "paragraph" else ""
        speaker = _speaker(texts) if block.kind == "paragraph" else ""
        if speaker and _names_nobody(speaker):
            speaker = named or speaker  # "fulgte han opp" continues the last named speaker
        elif speaker:
            named = speaker
        for (start, end), text in zip(spans, texts):
            chunks.append(
                Chunk(
                    text=text,
                    source=doc.source,
                    start_line=units[block.start + block.text.count("\n", 0, start)],
                    end_line=units[block.start + block.text.count("\n", 0, end - 1)],
                    heading=heading,
                    lead_in=lead_in if block.kind == "bullet" else "",
                    speaker=speaker if speaker not in text else "",
                    kind=block.kind,
                    unit=doc.unit,
                )
            )
        previous_kind, previous_tail = block.kind, texts[-1]
    return chunks


def _group_lines(lines: list[str]) -> list[_Block]:
    """Blank lines end a block, a bullet mark or Markdown heading starts one."""
    groups: list[tuple[str, int, list[str]]] = []
    accepting = False
    for index, line in enumerate(lines):
        if not any(char.isalnum() for char in line):  # blank lines and rules like "---"
            accepting = False
            continue
        kind = "heading" if _MD_HEADING.match(line) else "bullet" if _bullet_mark(line) else "paragraph"
        if kind == "paragraph" and accepting and _continues(groups[-1], line):
            groups[-1][2].append(line)
        else:
            groups.append((kind, index, [line]))
        accepting = kind != "heading"
    return [_Block(kind, start, "\n".join(block_lines)) for kind, start, block_lines in groups]


def _continues(group: tuple[str, int, list[str]], line: str) -> bool:
    """A wrapped bullet goes on indented or mid-sentence; anything else after a bullet is new text."""
    return group[0] == "paragraph" or line[:1].isspace() or line.lstrip()[:1].islower()


def _bullet_mark(line: str) -> re.Match[str] | None:
    match = _BULLET.match(line)
    if match and match.group(1):  # "26. april" is a date, not item 26
        next_word = line[match.end():].split(maxsplit=1)[0].strip(",.").lower()
        if next_word in _MONTHS:
            return None
    return match


def _classify(blocks: list[_Block]) -> list[_Block]:
    """Decide which blocks are headings (context for what follows) and where bullet text starts."""
    result: list[_Block] = []
    for index, block in enumerate(blocks):
        followed = index + 1 < len(blocks)
        neighbours = {blocks[i].kind for i in (index - 1, index + 1) if 0 <= i < len(blocks)}
        kind = block.kind
        if kind == "heading" and not followed:
            kind = "paragraph"
        elif kind == "paragraph" and followed and "\n" not in block.text and _looks_like_heading(block.text):
            kind = "heading"
        elif kind == "bullet" and _is_numbered_heading(block, followed, neighbours):
            kind = "heading"
        mark = _bullet_mark(block.text) if kind == "bullet" else None
        result.append(_Block(kind, block.start, block.text, mark.end() if mark else 0))
    return result


def _is_numbered_heading(block: _Block, followed: bool, neighbours: set[str]) -> bool:
    """'1. Innledning' on its own between paragraphs is a section title, not a one-item list."""
    mark = _bullet_mark(block.text)
    return bool(
        mark and mark.group(1) and followed and "bullet" not in neighbours
        and "\n" not in block.text and _looks_like_heading(block.text)
    )


def _is_credit(text: str) -> bool:
    """A bare credit line ("Foto: KS") says nothing a question could be about."""
    return bool(_CAPTION.match(text.strip())) and len(text.split()) <= 4


def _looks_like_heading(line: str) -> bool:
    text = _collapse(line)
    last = text.rstrip(_CLOSERS)[-1:]
    return (
        len(text) <= _MAX_HEADING_CHARS
        and (text[0].isupper() or text[0].isdigit())
        and last not in ".!?:;,…"
        and "|" not in text  # a table row
        and not _CAPTION.match(text)
    )


def _heading_text(text: str) -> str:
    match = _MD_HEADING.match(text)
    return _collapse(match.group(1) if match else text).strip("*_ ")


def _pieces(block: _Block, max_chars: int) -> list[tuple[int, int]]:
    """Greedy packing of whole sentences, so no extract ever ends mid-sentence."""
    pieces: list[tuple[int, int]] = []
    for start, end in sentence_spans(block.text[block.body:]):
        start, end = start + block.body, end + block.body
        if pieces and len(_collapse(block.text[pieces[-1][0]:end])) <= max_chars:
            pieces[-1] = (pieces[-1][0], end)
        else:
            pieces.append((start, end))
    return pieces


def _speaker(texts: list[str]) -> str:
    """Who is quoted, so each piece of a long quote can still be attributed."""
    paragraph = " ".join(texts)
    if not paragraph.startswith(_QUOTE_DASHES):
        return ""
    match = _ATTRIBUTION.fullmatch(split_sentences(paragraph)[-1])
    if not match or len(match.group(1)) > _MAX_ATTRIBUTION_CHARS:
        return ""
    return match.group(1)


def _names_nobody(attribution: str) -> bool:
    """True for "fulgte han opp": a pronoun and no capitalised name."""
    words = attribution.split()
    return any(w in _PRONOUNS for w in words) and not any(w[:1].isupper() for w in words)


def _collapse(text: str) -> str:
    return " ".join(text.split())
