"""Cut documents into passages that follow the text's own structure: one paragraph or bullet each.

A passage is kept whole, so an answer is never hidden because its paragraph was
cut in two; retrieval scores its sentences one by one and shows the best one
with its neighbours. Only a paragraph longer than a hard maximum (a text
without sentence ends, a runaway table) is cut: at a sentence end where there
is one, else at whitespace, else anywhere. Context that helps retrieval
(heading, the sentence introducing a list, who is speaking) is kept beside the
passage instead of being pasted into it, and every sentence knows its lines.
"""

from __future__ import annotations

import bisect
import hashlib
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from .sources import Document


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
    sentence_lines: tuple[tuple[int, int], ...] = ()  # (first, last) line of each sentence of text

    def __post_init__(self) -> None:
        # chunks.jsonl stores tuples as lists
        object.__setattr__(self, "sentence_lines", tuple(tuple(pair) for pair in self.sentence_lines))

    @property
    def embed_text(self) -> str:
        """Context travels with the passage so a question can match the heading or speaker too."""
        speaker = self.speaker if self.speaker not in self.text else ""
        return "\n".join(part for part in (self.heading, self.lead_in, self.text, speaker) if part)


def text_key(text: str) -> str:
    """A text's key in the embedding cache: the same text is embedded once, whichever passage holds it."""
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


def sentence_texts(chunk: Chunk) -> list[str]:
    """The sentences of a multi-sentence chunk, each embedded alone; a one-sentence chunk reuses its chunk vector."""
    spans = sentence_spans(chunk.text)
    return [chunk.text[a:b] for a, b in spans] if len(spans) > 1 else []


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


_NEXT_WORD = re.compile(r"\s*(\S{1,40})")
_WORD_REACH = 40  # how far back a period's word is looked for; keeps sentence splitting linear


def _is_boundary(text: str, match: re.Match[str]) -> bool:
    following = _NEXT_WORD.match(text, match.end())
    if following is None:
        return True
    rest = following.group(1)
    if not (rest[0].isupper() or rest[0].isdigit() or rest[0] in _OPENERS):
        return False
    if match.group().rstrip(_CLOSERS) != ".":
        return True
    reach = max(0, match.start() - _WORD_REACH)
    word_start = max(text.rfind(ch, reach, match.start()) for ch in " \t\n") + 1 or reach
    word = text[word_start:match.start() + 1].lstrip(_OPENERS).lower()
    before = word_start
    while before > reach and text[before - 1] in " \t":
        before -= 1
    at_line_start = before == 0 or text[before - 1] == "\n"
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
        next_word = rest.strip(",.").lower()
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
_ATTRIBUTION_REACH = 1000  # the attribution ends the quote; a longer tail is not searched


@dataclass(frozen=True)
class _Block:
    kind: str  # "paragraph" | "bullet" | "heading"
    start: int  # index of the block's first line in the document
    text: str  # the block's lines joined with "\n", verbatim
    body: int = 0  # where the extract starts, i.e. after a bullet mark


MAX_PASSAGE_CHARS = 1500  # about what the embedding model reads (512 tokens); longer paragraphs are cut


def chunk_document(doc: Document, max_chars: int = MAX_PASSAGE_CHARS) -> list[Chunk]:
    """Chunks in document order, each citing the lines (or pages/paragraphs) it was taken from."""
    lines = doc.text.split("\n")
    lines[: doc.body_line] = [""] * min(doc.body_line, len(lines))  # front matter describes, it is not text
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
        newlines = [m.start() for m in re.finditer("\n", block.text)]
        for span, text in zip(spans, texts):
            line_of = _line_finder(block, newlines, span, text, units)
            sentences = tuple((line_of(a), line_of(b - 1)) for a, b in sentence_spans(text))
            chunks.append(
                Chunk(
                    text=text,
                    source=doc.source,
                    start_line=sentences[0][0],
                    end_line=sentences[-1][1],
                    heading=heading,
                    lead_in=lead_in if block.kind == "bullet" else "",
                    speaker=speaker,
                    kind=block.kind,
                    unit=doc.unit,
                    sentence_lines=sentences,
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


def _line_finder(
    block: _Block, newlines: list[int], span: tuple[int, int], text: str, units: Sequence[int]
) -> Callable[[int], int]:
    """Maps an offset in the collapsed passage text to the citation unit of its line.

    Collapsing only merges whitespace, so the n-th non-space character of the
    passage is the n-th non-space character of the block's span.
    """
    start, end = span
    solid = [m.start() for m in re.finditer(r"\S", block.text[start:end])]
    before = np.cumsum([not ch.isspace() for ch in text]) - 1

    def line_of(offset: int) -> int:
        at = start + solid[max(0, int(before[min(offset, len(before) - 1)]))]
        return units[block.start + bisect.bisect_right(newlines, at)]

    return line_of


def _pieces(block: _Block, max_chars: int) -> list[tuple[int, int]]:
    """The block's body whole, or, past max_chars, greedy runs of whole sentences.

    A sentence longer than max_chars is cut at its last whitespace that fits,
    else at max_chars itself, so no passage is ever longer than max_chars.
    Lengths are summed rather than measured again, which keeps this linear.
    """
    body = (_skip_space(block.text, block.body), len(block.text.rstrip()))
    if len(_collapse(block.text[body[0]:body[1]])) <= max_chars:
        return [body]
    pieces: list[tuple[int, int]] = []
    length = 0
    for start, end in sentence_spans(block.text[block.body:]):
        for start, end in _cut(block.text, start + block.body, end + block.body, max_chars):
            size = len(_collapse(block.text[start:end]))
            if pieces and length + 1 + size <= max_chars:
                pieces[-1] = (pieces[-1][0], end)
                length += 1 + size
            else:
                pieces.append((start, end))
                length = size
    return pieces


def _cut(text: str, start: int, end: int, max_chars: int) -> Iterator[tuple[int, int]]:
    """Spans of at most max_chars collapsed characters, cut at whitespace where there is any."""
    if len(_collapse(text[start:end])) > max_chars:
        while end - start > max_chars:  # collapsing never lengthens, so max_chars raw characters fit
            space = max(text.rfind(ch, start + 1, start + max_chars + 1) for ch in " \t\n")
            cut = space if space > start else start + max_chars
            yield start, cut
            start = _skip_space(text, cut)
    if end > start:
        yield start, end


def _speaker(texts: list[str]) -> str:
    """Who is quoted, so each piece of a long quote can still be attributed."""
    paragraph = " ".join(texts)
    if not paragraph.startswith(_QUOTE_DASHES):
        return ""
    match = _ATTRIBUTION.fullmatch(split_sentences(paragraph[-_ATTRIBUTION_REACH:])[-1])
    if not match or len(match.group(1)) > _MAX_ATTRIBUTION_CHARS:
        return ""
    return match.group(1)


def _names_nobody(attribution: str) -> bool:
    """True for "fulgte han opp": a pronoun and no capitalised name."""
    words = attribution.split()
    return any(w in _PRONOUNS for w in words) and not any(w[:1].isupper() for w in words)


def _collapse(text: str) -> str:
    return " ".join(text.split())
