"""Bytes of one file -> plain text, for every supported format, within fixed limits.

Text files keep their lines exactly, because citations point at line numbers a
user can check. HTML, Word and PDF become paragraphs or pages, with the unit
each line came from. Hostile files are refused with a reason, before a parser
spends minutes or gigabytes on them.
"""

from __future__ import annotations

import io
import re
import time
from typing import TYPE_CHECKING

from .archive import UnsafeArchive, check_zip

if TYPE_CHECKING:  # parsers load lazily, only when a file of their type is read
    from bs4.element import Tag
    from docx.table import Table
    from docx.text.paragraph import Paragraph

_BOMS = (
    (b"\xef\xbb\xbf", "utf-8-sig"),
    (b"\xff\xfe\x00\x00", "utf-32"),
    (b"\x00\x00\xfe\xff", "utf-32"),
    (b"\xff\xfe", "utf-16"),
    (b"\xfe\xff", "utf-16"),
)
_WIDE = ("utf_16_le", "utf_16_be", "utf_32_le", "utf_32_be")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f\ufffd]")
_MAX_GARBAGE = 0.01


class SourceError(Exception):
    """A file that cannot be turned into text; read_document puts the file's name in front of the reason."""

    def __init__(self, reason: str, source: str = "") -> None:
        super().__init__(f"{source}: {reason}" if source else reason)
        self.reason = reason


def decode_text(data: bytes) -> str:
    """Decode bytes of unknown encoding, favouring what Norwegian files are usually saved as.

    Strict UTF-8 rarely succeeds by accident, so it goes first; Windows-1252 is
    the classic Norwegian Windows encoding; charset-normalizer only guesses
    among the rest. Bytes with NULs are text only as UTF-16 or UTF-32, which
    charset-normalizer also recognises without a byte order mark.
    """
    text = _decode(data)
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if text and len(_CONTROL.findall(text)) / len(text) > _MAX_GARBAGE:
        raise SourceError("looks like binary data, not text")
    return text


def _decode(data: bytes) -> str:
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            try:
                return data.decode(encoding)
            except UnicodeDecodeError as exc:
                raise SourceError(f"cannot decode: invalid {encoding} after byte order mark") from exc
    from charset_normalizer import from_bytes

    if b"\x00" in data:  # binary, or UTF-16/32 saved without a byte order mark
        best = from_bytes(data, cp_isolation=list(_WIDE)).best()
        if best is None:
            raise SourceError("looks like binary data, not text")
        return str(best)
    for encoding in ("utf-8", "cp1252"):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            pass
    best = from_bytes(data).best()
    if best is None:
        raise SourceError("cannot decode: unknown text encoding")
    return str(best)


_HTML_DROP = (
    "script", "style", "nav", "header", "footer", "aside", "form",
    "noscript", "template", "svg", "iframe", "button", "select", "head",
)
_HTML_BLOCKS = frozenset(
    "p div section article main blockquote pre tr dt dd figcaption caption address "
    "table ul ol dl figure hr h1 h2 h3 h4 h5 h6 li".split()
)
_LINE_BREAK = "\x00"
MAX_HTML_DEPTH = 200  # real pages nest a few dozen levels; the walk below recurses per level
MAX_HTML_ELEMENTS = 100_000  # a long report has tens of thousands; BeautifulSoup takes about 4 s over this many
_TOO_DEEP = f"the HTML is nested too deeply (more than {MAX_HTML_DEPTH} levels of elements)"


def html_to_text(html: str) -> str:
    """Keep only the readable main text, one block element per paragraph.

    Headings get Markdown '#' marks and list items a bullet so the chunker sees
    the same structure it sees in Markdown files.
    """
    from bs4 import BeautifulSoup

    _check_html_shape(html)
    soup = BeautifulSoup(html, "lxml")
    for tag in soup.find_all(_HTML_DROP):
        tag.decompose()
    for tag in soup.find_all(attrs={"hidden": True}):
        tag.decompose()
    root = soup.find("main") or soup.find(attrs={"role": "main"}) or soup.find("article") or soup.body or soup
    paragraphs: list[str] = []
    _HtmlBlocks(paragraphs).walk(root)
    text = "\n\n".join(paragraphs)
    if not text:
        raise SourceError("no text found in HTML")
    return text


def _check_html_shape(html: str) -> None:
    """Refuse what BeautifulSoup would spend minutes on (about 40 µs and 700 bytes per element).

    lxml's C parser counts first, at a few per cent of that cost, and stops at the first limit.
    """
    from lxml import etree

    depth = elements = 0
    for event, _ in etree.iterparse(io.BytesIO(html.encode()), events=("start", "end"), html=True, recover=True):
        if event == "end":
            depth -= 1
            continue
        depth += 1
        elements += 1
        if depth > MAX_HTML_DEPTH:
            raise SourceError(_TOO_DEEP)
        if elements > MAX_HTML_ELEMENTS:
            raise SourceError(f"the HTML has more than {MAX_HTML_ELEMENTS:,} elements")


class _HtmlBlocks:
    """Accumulates inline text and flushes it as a paragraph at every block boundary."""

    def __init__(self, out: list[str]) -> None:
        self.out = out
        self.buffer: list[str] = []
        self.prefix = ""

    def walk(self, node: Tag, depth: int = 0) -> None:
        from bs4.element import NavigableString, PreformattedString, Tag

        if depth > MAX_HTML_DEPTH:
            raise SourceError(_TOO_DEEP)
        for child in node.children:
            if isinstance(child, PreformattedString):  # comments, doctype, CDATA
                continue
            if isinstance(child, NavigableString):
                self.buffer.append(str(child))
            elif isinstance(child, Tag):
                self._tag(child, depth + 1)

    def _tag(self, tag: Tag, depth: int) -> None:
        name = tag.name
        if name == "br":
            self.buffer.append(_LINE_BREAK)
            return
        if name in ("td", "th"):
            self.buffer.append(" | " if self.buffer and "".join(self.buffer).strip() else "")
        if name not in _HTML_BLOCKS:
            self.walk(tag, depth)
            return
        self.flush()
        if name == "li":
            self.prefix = _list_mark(tag)
        elif len(name) == 2 and name[0] == "h" and name[1].isdigit():
            self.prefix = "#" * int(name[1]) + " "
        self.walk(tag, depth)
        self.flush()

    def flush(self) -> None:
        lines = [" ".join(part.split()) for part in "".join(self.buffer).split(_LINE_BREAK)]
        text = "\n".join(line for line in lines if line)
        self.buffer.clear()
        if text:
            self.out.append(self.prefix + text)
            self.prefix = ""


def _list_mark(item: Tag) -> str:
    parent = item.parent
    if parent is not None and parent.name == "ol":
        position = 1 + len(item.find_previous_siblings("li"))
        return f"{position}. "
    return "• "


def docx_text(data: bytes) -> tuple[str, tuple[int, ...]]:
    """Number non-empty paragraphs (and table rows) in reading order, as Word shows them."""
    import docx
    from docx.table import Table

    try:
        check_zip(data)
    except UnsafeArchive as exc:
        raise SourceError(f"refused: {exc}") from exc
    document = docx.Document(io.BytesIO(data))
    paragraphs: list[str] = []
    for block in document.iter_inner_content():
        if isinstance(block, Table):
            paragraphs.extend(_docx_table_rows(block))
        elif block.text.strip():
            paragraphs.append(_docx_prefix(block) + block.text.strip())
    if not paragraphs:
        raise SourceError("no text in Word document")
    return _join_units(paragraphs)


def _docx_table_rows(table: Table) -> list[str]:
    rows = []
    for row in table.rows:
        cells = [" ".join(cell.text.split()) for cell in row.cells]
        unique = [cell for i, cell in enumerate(cells) if cell and (i == 0 or cell != cells[i - 1])]
        if unique:
            rows.append(" | ".join(unique))
    return rows


def _docx_prefix(paragraph: Paragraph) -> str:
    style = (paragraph.style.name or "") if paragraph.style is not None else ""
    lowered = style.lower()
    level = re.match(r"(?:heading|overskrift)\s*(\d)", lowered)
    if level:
        return "#" * int(level.group(1)) + " "
    if lowered in ("title", "tittel"):
        return "# "
    p_pr = paragraph._p.pPr
    if "list" in lowered or (p_pr is not None and p_pr.numPr is not None):
        return "• "
    return ""


MAX_PDF_PAGES = 2_000  # a long report has a few hundred; each page costs a content parse
MAX_PDF_PAGE_BYTES = 5_000_000  # one page's content after inflating; pypdf parses it whole, at about 0.25 MB/s
MAX_PDF_CONTENT_BYTES = 50_000_000  # page content after inflating, all pages together
MAX_PDF_OPERATORS = 1_500_000  # drawing operators, all pages together; pypdf reads about 40,000 a second
MAX_PDF_SECONDS = 30.0  # checked between pages and operators; the sandbox kills a parser that stops checking


def pdf_text(data: bytes) -> tuple[str, tuple[int, ...]]:
    """Text page by page, within budgets for pages, inflated content, operators and time.

    pypdf bounds one stream and one page; a file of many large pages would pass
    each check and still take gigabytes or minutes, so the whole file has budgets.
    """
    from pypdf import PdfReader

    reader = PdfReader(io.BytesIO(data))
    if reader.is_encrypted and not reader.decrypt(""):
        raise SourceError("encrypted PDF")
    if _more_pages_than(reader, MAX_PDF_PAGES):
        raise SourceError(f"refused: more than {MAX_PDF_PAGES:,} pages")
    budget = _PdfBudget()
    pages: list[str] = []
    numbers: list[int] = []
    for number, page in enumerate(reader.pages, start=1):
        budget.content(page)
        text = page.extract_text(visitor_operand_before=budget.operator) or ""
        text = text.replace("\r\n", "\n").replace("\r", "\n").strip("\n")
        if text.strip():
            pages.append(text)
            numbers.append(number)
    if not pages:
        raise SourceError("no text layer; scanned PDF?")
    return _join_units(pages, numbers)


def _more_pages_than(reader: object, limit: int) -> bool:
    """Walk the page tree until ``limit`` pages are passed: pypdf counts by building every page (20 s for 99,000)."""
    from pypdf.generic import ArrayObject, DictionaryObject

    pending = [reader.trailer["/Root"]["/Pages"]]  # type: ignore[attr-defined]
    seen: set[int] = set()
    pages = 0
    while pending:
        node = pending.pop()
        if isinstance(node, ArrayObject):
            pending.extend(reversed(node))
            continue
        reference = getattr(node, "idnum", None)
        if reference is not None:
            if reference in seen:
                continue
            seen.add(reference)
        node = node.get_object()
        if not isinstance(node, DictionaryObject):
            continue
        kids = node.get("/Kids")
        if kids is None:
            pages += 1
            if pages > limit:
                return True
        else:
            pending.append(kids.get_object())
    return False


class _PdfBudget:
    def __init__(self) -> None:
        self.bytes = 0
        self.operators = 0
        self.deadline = time.monotonic() + MAX_PDF_SECONDS

    def content(self, page: object) -> None:
        """Inflate the page's content streams (pypdf keeps them for the text pass) and count their bytes."""
        from pypdf.generic import ArrayObject, StreamObject

        contents = page.get("/Contents")  # type: ignore[attr-defined]
        resolved = contents.get_object() if contents is not None else None
        streams = [s.get_object() for s in resolved] if isinstance(resolved, ArrayObject) else [resolved]
        size = sum(len(s.get_data()) for s in streams if isinstance(s, StreamObject))
        if size > MAX_PDF_PAGE_BYTES:
            raise SourceError(f"refused: a page's content inflates to more than {MAX_PDF_PAGE_BYTES / 1_000_000:g} MB")
        self.bytes += size
        if self.bytes > MAX_PDF_CONTENT_BYTES:
            raise SourceError(f"refused: page content inflates to more than {MAX_PDF_CONTENT_BYTES // 1_000_000} MB")
        self._in_time()

    def operator(self, *_: object) -> None:
        self.operators += 1
        if self.operators > MAX_PDF_OPERATORS:
            raise SourceError(f"refused: more than {MAX_PDF_OPERATORS:,} drawing operators")
        if self.operators % 4096 == 0:
            self._in_time()

    def _in_time(self) -> None:
        if time.monotonic() > self.deadline:
            raise SourceError(f"refused: reading it took longer than {MAX_PDF_SECONDS:g} s")


STRUCTURED = {".html": "line", ".htm": "line", ".docx": "paragraph", ".pdf": "page"}  # suffix -> citation unit


def parse_structured(suffix: str, data: bytes) -> tuple[str, tuple[int, ...] | None]:
    """HTML, Word or PDF bytes -> text and, for Word and PDF, the unit of every line (run in the sandbox)."""
    if suffix == ".docx":
        return docx_text(data)
    if suffix == ".pdf":
        return pdf_text(data)
    return html_to_text(decode_text(data)), None


def _join_units(blocks: list[str], numbers: list[int] | None = None) -> tuple[str, tuple[int, ...]]:
    """Join blocks with blank lines and record, for every resulting line, which unit it came from."""
    units: list[int] = []
    for index, block in enumerate(blocks):
        number = numbers[index] if numbers else index + 1
        if index:
            units.append(units[-1])  # the blank separator line belongs to the unit before it
        units.extend([number] * (block.count("\n") + 1))
    return "\n\n".join(blocks), tuple(units)

