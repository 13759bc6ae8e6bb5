"""The zip guard in front of the .docx reader: real hostile files, built on the fly (tests/hostile.py)."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest

from assistant.ingest.archive import UnsafeArchive, ZipLimits, check_zip
from assistant.ingest.sources import SourceError, SourceFile, read_document
from tests.hostile import (
    BODY_END,
    BODY_START,
    XML_HEAD,
    billion_laughs_docx,
    external_entity_docx,
    many_paragraphs_docx,
    paragraph,
    understated_docx,
    word_file,
    zip_bomb_docx,
)


def _read(path: Path):
    return read_document(SourceFile(path, path.name, "", path.stat().st_size))


def _zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as out:
        for name, data in members.items():
            out.writestr(name, data)
    return buffer.getvalue()


def test_an_ordinary_word_file_passes(tmp_path: Path) -> None:
    path = word_file(tmp_path / "referat.docx", [XML_HEAD, BODY_START, paragraph("KS møtte regjeringen."), BODY_END])
    check_zip(path.read_bytes())
    assert _read(path).text == "KS møtte regjeringen."


def test_a_zip_bomb_is_refused_from_the_directory_without_unpacking(tmp_path: Path, monkeypatch) -> None:
    path = zip_bomb_docx(tmp_path / "bombe.docx", unpacked_mb=60)
    assert path.stat().st_size < 200_000
    opened: list[str] = []
    real_open = zipfile.ZipFile.open
    monkeypatch.setattr(zipfile.ZipFile, "open", lambda self, name, *a, **k: opened.append(str(name)) or real_open(self, name, *a, **k))
    with pytest.raises(SourceError, match=r"bombe\.docx: refused: word/document\.xml unpacks to 60 MB, more than the limit of 50 MB"):
        _read(path)
    assert opened == []


def test_a_small_part_that_compresses_too_well_is_refused(tmp_path: Path) -> None:
    path = zip_bomb_docx(tmp_path / "tett.docx", unpacked_mb=6)
    with pytest.raises(SourceError, match=r"word/document\.xml is compressed [\d,]+ to 1, more than the limit of 100 to 1"):
        _read(path)


def test_a_directory_that_understates_a_size_does_not_unpack_more(tmp_path: Path) -> None:
    path = understated_docx(tmp_path / "løgn.docx", unpacked_mb=60, declared=1000)
    with pytest.raises((UnsafeArchive, zipfile.BadZipFile)):
        check_zip(path.read_bytes())
    with pytest.raises(SourceError, match=r"løgn\.docx"):
        _read(path)


def test_billion_laughs_is_refused_with_a_reason(tmp_path: Path) -> None:
    path = billion_laughs_docx(tmp_path / "latter.docx")
    with pytest.raises(SourceError, match=r"latter\.docx: refused: word/document\.xml declares a DTD or XML entities"):
        _read(path)


def test_an_external_entity_cannot_read_a_local_file(tmp_path: Path) -> None:
    secret = tmp_path / "hemmelig.txt"
    secret.write_text("passord=hunter2", encoding="utf-8")
    path = external_entity_docx(tmp_path / "xxe.docx", secret)
    with pytest.raises(SourceError, match="declares a DTD or XML entities") as caught:
        _read(path)
    assert "hunter2" not in str(caught.value)


def test_xml_is_checked_whatever_the_part_is_called() -> None:
    evil = XML_HEAD + b'<!DOCTYPE x [<!ENTITY a "aaaa">]><x>&a;</x>'
    with pytest.raises(UnsafeArchive, match="word/part.bin declares a DTD"):
        check_zip(_zip({"[Content_Types].xml": b"<Types/>", "word/part.bin": evil}))
    with pytest.raises(UnsafeArchive, match="not well-formed"):
        check_zip(_zip({"word/document.xml": b"<w:document><w:body>"}))


def test_element_count_member_count_and_total_size_have_limits(tmp_path: Path) -> None:
    data = many_paragraphs_docx(tmp_path / "avsnitt.docx", 20_000).read_bytes()
    check_zip(data)
    with pytest.raises(UnsafeArchive, match="above the limit of 10,000 XML elements"):
        check_zip(data, ZipLimits(xml_elements=10_000))
    with pytest.raises(UnsafeArchive, match="holds 1[0-9] files, more than the limit of 5"):
        check_zip(data, ZipLimits(members=5))
    with pytest.raises(UnsafeArchive, match="in all, more than the limit of 0.5 MB"):
        check_zip(data, ZipLimits(total_bytes=500_000))
