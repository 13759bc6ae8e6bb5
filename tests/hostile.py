"""Hostile files, built on the fly for the tests and for bench/hostile.py (never stored in the repository)."""

from __future__ import annotations

import io
import os
import struct
import zipfile
from collections.abc import Iterable
from pathlib import Path

W = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"
XML_HEAD = b'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
BODY_START = f'<w:document xmlns:w="{W}"><w:body>'.encode()
BODY_END = b"</w:body></w:document>"


def paragraph(text: str) -> bytes:
    return f"<w:p><w:r><w:t>{text}</w:t></w:r></w:p>".encode()


def word_file(path: Path, document_xml: Iterable[bytes]) -> Path:
    """A valid .docx (python-docx's own template) whose word/document.xml is streamed from the given blocks.

    Streaming keeps the builder's memory small however large the part unpacks.
    """
    import docx

    template = io.BytesIO()
    docx.Document().save(template)
    with zipfile.ZipFile(template) as source, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as out:
        for info in source.infolist():
            if info.filename == "word/document.xml":
                with out.open("word/document.xml", "w", force_zip64=True) as part:
                    for block in document_xml:
                        part.write(block)
            else:
                out.writestr(info, source.read(info))
    return path


def pdf_file(objects: list[bytes]) -> bytes:
    """A PDF of the given objects, numbered from 1 (the first is the catalog), with its cross-reference table."""
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{offset:010d} 00000 n \n".encode() for offset in offsets)
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)


def zip_bomb_docx(path: Path, unpacked_mb: int) -> Path:
    """Empty paragraphs, `<w:p/>`, until document.xml unpacks to about unpacked_mb megabytes (about 1000 to 1)."""
    block = b"<w:p/>" * 100_000
    repeats = unpacked_mb * 1_000_000 // len(block)
    return word_file(path, [XML_HEAD, BODY_START, *([block] * repeats), BODY_END])


def many_paragraphs_docx(path: Path, count: int) -> Path:
    """Empty paragraphs with random ids, so they do not compress: the most elements the guard lets through."""
    random_ids = (f'<w:p w:rsidR="{os.urandom(4).hex().upper()}"/>'.encode() for _ in range(count))
    return word_file(path, [XML_HEAD, BODY_START, *random_ids, BODY_END])


def billion_laughs_docx(path: Path) -> Path:
    """Ten levels of ten entity references: a billion 'lol's if a parser expands them."""
    entities = ['<!ENTITY lol0 "lol">'] + [
        f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10}">' for i in range(1, 10)
    ]
    doctype = f"<!DOCTYPE w:document [{''.join(entities)}]>".encode()
    return word_file(path, [XML_HEAD, doctype, BODY_START, paragraph("&lol9;"), BODY_END])


def external_entity_docx(path: Path, secret: Path) -> Path:
    """An entity that reads a local file into the text (XXE)."""
    doctype = f'<!DOCTYPE w:document [<!ENTITY secret SYSTEM "file://{secret}">]>'.encode()
    return word_file(path, [XML_HEAD, doctype, BODY_START, paragraph("&secret;"), BODY_END])


def understated_docx(path: Path, unpacked_mb: int, declared: int = 1000) -> Path:
    """A bomb whose zip directory claims that document.xml unpacks to only `declared` bytes."""
    zip_bomb_docx(path, unpacked_mb)
    data = bytearray(path.read_bytes())
    name = b"word/document.xml"
    at = data.find(b"PK\x01\x02")
    while data[at + 46 : at + 46 + len(name)] != name:
        at = data.find(b"PK\x01\x02", at + 4)
    struct.pack_into("<I", data, at + 24, declared)  # the central directory's uncompressed size
    path.write_bytes(bytes(data))
    with zipfile.ZipFile(path) as check:
        assert check.getinfo("word/document.xml").file_size == declared
    return path


def fill_disk(folder: Path, leave: int = 0) -> Path:
    """Write zeros into folder until its file system is full, then free `leave` bytes again."""
    filler = folder / "filler.bin"
    with filler.open("wb", buffering=0) as out:
        for size in (1 << 20, 4096, 1):
            block = b"\0" * size
            try:
                while True:
                    out.write(block)
            except OSError:
                pass
    if leave:
        os.truncate(filler, max(0, filler.stat().st_size - leave))
    return filler
