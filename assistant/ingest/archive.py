"""Check a zip-based document (.docx) against fixed limits before any parser builds it.

A .docx is a zip of XML parts: a 2 MB upload can unpack to gigabytes (a zip
bomb), and its XML can declare entities that expand exponentially (billion
laughs) or read local files (external entities). Sizes and compression ratios
are judged from the zip directory first, so a bomb is refused before anything is
unpacked. Every member is then streamed under a hard byte cap, because the
directory can lie, and XML members go through defusedxml on the way, without
building a tree. Elements are counted too: python-docx costs about 450 bytes
and up to 40 µs per element (bench/README.md), so a 3 MB file of empty
paragraphs would otherwise keep a build busy for 20 s, a 20 MB one for minutes.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable
from dataclasses import dataclass

BLOCK = 1 << 16
RATIO_FROM = 1_000_000  # smaller members may compress better than this without harm
_BOMS = (b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff")


@dataclass(frozen=True)
class ZipLimits:
    member_bytes: int = 50_000_000
    total_bytes: int = 100_000_000
    ratio: int = 100
    members: int = 10_000
    xml_elements: int = 250_000  # several hundred pages of Word output; about 9 s for python-docx at worst


class UnsafeArchive(ValueError):
    """A zip-based document refused by the limits; the message names the member and the limit."""


def check_zip(data: bytes, limits: ZipLimits = ZipLimits()) -> None:
    """Raise UnsafeArchive unless every member unpacks within limits and all XML is plain.

    A damaged zip raises zipfile.BadZipFile, like the document parser would.
    """
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        members = archive.infolist()
        _check_directory(members, limits)
        elements = 0
        for info in members:
            if not info.is_dir():
                elements = _stream_member(archive, info, limits, elements)


def _check_directory(members: list[zipfile.ZipInfo], limits: ZipLimits) -> None:
    if len(members) > limits.members:
        raise UnsafeArchive(f"holds {len(members):,} files, more than the limit of {limits.members:,}")
    total = 0
    for info in members:
        if info.file_size > limits.member_bytes:
            raise UnsafeArchive(
                f"{info.filename} unpacks to {_mb(info.file_size)}, more than the limit of "
                f"{_mb(limits.member_bytes)} (a zip bomb?)"
            )
        if info.file_size > RATIO_FROM and info.file_size > limits.ratio * max(info.compress_size, 1):
            ratio = info.file_size / max(info.compress_size, 1)
            raise UnsafeArchive(
                f"{info.filename} is compressed {ratio:,.0f} to 1, more than the limit of {limits.ratio} to 1 (a zip bomb?)"
            )
        total += info.file_size
    if total > limits.total_bytes:
        raise UnsafeArchive(f"unpacks to {_mb(total)} in all, more than the limit of {_mb(limits.total_bytes)} (a zip bomb?)")


def _stream_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, limits: ZipLimits, elements: int) -> int:
    """Read one member in blocks, never past its declared size; returns the XML elements counted so far."""
    with archive.open(info) as member:
        block = member.read(BLOCK)
        xml = _XmlCheck(info.filename, elements, limits.xml_elements) if _looks_like_xml(info.filename, block) else None
        unpacked = 0
        while block:
            unpacked += len(block)
            if unpacked > info.file_size:  # zipfile stops there itself; this does not rely on it
                raise UnsafeArchive(f"{info.filename} unpacks to more than the {_mb(info.file_size)} its zip entry declares")
            if xml is not None:
                xml.feed(block)
            block = member.read(BLOCK)
    return xml.finish() if xml is not None else elements


def _looks_like_xml(name: str, head: bytes) -> bool:
    """By name, or by content: a part's content type, not its name, makes the reader parse it as XML."""
    if name.lower().endswith((".xml", ".rels")):
        return True
    for bom in _BOMS:
        head = head.removeprefix(bom)
    return head.lstrip().startswith((b"<", b"\x00<"))


class _XmlCheck:
    """defusedxml's expat parser, fed block by block, with this object as its target: it counts and keeps nothing.

    Refused: any DTD, entity declaration or external reference, malformed XML, too many elements.
    """

    def __init__(self, name: str, elements: int, limit: int) -> None:
        from defusedxml.ElementTree import DefusedXMLParser

        self.name = name
        self.elements = elements
        self.limit = limit
        self._parser = DefusedXMLParser(target=self, forbid_dtd=True, forbid_entities=True, forbid_external=True)

    def feed(self, block: bytes) -> None:
        self._guarded(self._parser.feed, block)

    def finish(self) -> int:
        self._guarded(self._parser.close)
        return self.elements

    def _guarded(self, step: Callable[..., object], *block: bytes) -> None:
        from defusedxml import DefusedXmlException

        try:
            step(*block)
        except DefusedXmlException as exc:
            raise UnsafeArchive(
                f"{self.name} declares a DTD or XML entities ({type(exc).__name__}); Word files never do, and "
                "entities can expand to gigabytes (billion laughs) or read local files"
            ) from exc
        except SyntaxError as exc:  # xml.etree's ParseError
            raise UnsafeArchive(f"{self.name} is not well-formed XML ({exc})") from exc

    # the parser's target interface
    def start(self, tag: str, attrs: dict[str, str]) -> None:
        self.elements += 1
        if self.elements > self.limit:
            raise UnsafeArchive(f"{self.name} brings the file above the limit of {self.limit:,} XML elements")

    def end(self, tag: str) -> None:
        pass

    def data(self, text: str) -> None:
        pass

    def close(self) -> None:
        pass


def _mb(size: int) -> str:
    return f"{size / 1_000_000:,.0f} MB" if size >= 10_000_000 else f"{size / 1_000_000:,.1f} MB"
