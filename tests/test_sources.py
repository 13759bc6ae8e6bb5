from __future__ import annotations

import hashlib
import os
from pathlib import Path

import docx
import pytest

from assistant.ingest.chunking import chunk_document
from assistant.ingest.formats import MAX_HTML_ELEMENTS, decode_text
from assistant.ingest.sources import Document, SourceError, SourceFile, read_document, scan_sources
from tests.hostile import pdf_file


def _file(path: Path, root: Path | None = None) -> SourceFile:
    data = path.read_bytes()
    source = path.relative_to(root).as_posix() if root else path.name
    return SourceFile(path, source, hashlib.sha256(data).hexdigest(), len(data))


def _read(path: Path) -> Document:
    return read_document(_file(path))


def _pdf(pages: list[list[str]]) -> bytes:
    """A minimal valid PDF with one Helvetica text line per entry; an empty list is a blank page."""
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>"]
    kids = " ".join(f"{4 + 2 * i} 0 R" for i in range(len(pages)))
    objects.append(f"<< /Type /Pages /Kids [{kids}] /Count {len(pages)} >>".encode())
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>")
    for index, lines in enumerate(pages):
        shows = b"".join(b"(" + line.encode("cp1252") + b") Tj T* " for line in lines)
        content = b"BT /F1 12 Tf 14 TL 72 720 Td " + shows + b"ET"
        objects.append(
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
            + f"/Resources << /Font << /F1 3 0 R >> >> /Contents {5 + 2 * index} 0 R >>".encode()
        )
        objects.append(f"<< /Length {len(content)} >>\nstream\n".encode() + content + b"\nendstream")
    return pdf_file(objects)


# --- decoding --------------------------------------------------------------


def test_decode_utf8() -> None:
    assert decode_text("Blåbær på Ørland\n".encode("utf-8")) == "Blåbær på Ørland\n"


def test_decode_utf8_bom_is_removed() -> None:
    assert decode_text(b"\xef\xbb\xbf" + "Kommunestyret i Bodø".encode("utf-8")) == "Kommunestyret i Bodø"


def test_decode_windows_1252_with_crlf() -> None:
    data = "Linje én: æøå ÆØÅ\r\nLinje to – «sitat»\r\n\r\nSiste\rlinje".encode("cp1252")
    assert decode_text(data) == "Linje én: æøå ÆØÅ\nLinje to – «sitat»\n\nSiste\nlinje"


def test_decode_utf16_with_bom() -> None:
    assert decode_text("Tromsø\r\nAlta".encode("utf-16")) == "Tromsø\nAlta"


@pytest.mark.parametrize("encoding", ["utf-16-le", "utf-16-be", "utf-32-le"])
def test_decode_utf16_and_utf32_without_bom(encoding: str) -> None:
    text = "Kommunestyret i Bodø vedtok budsjettet.\r\nKS møtte regjeringen 26. april."
    assert decode_text(text.encode(encoding)) == text.replace("\r\n", "\n")


def test_decode_rejects_binary() -> None:
    with pytest.raises(SourceError, match="binary"):
        decode_text(bytes(range(256)) * 4)


# --- scanning --------------------------------------------------------------


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "kilder"
    (root / "sub" / "dypere").mkdir(parents=True)
    (root / ".git").mkdir()
    (root / ".git" / "config.txt").write_text("skjult")
    (root / "a.txt").write_text("Første fil.\n", encoding="utf-8")
    (root / "sub" / "notat.md").write_text("# Notat\n\nTekst.\n", encoding="utf-8")
    (root / "sub" / "dypere" / "side.HTML").write_text("<p>Hei</p>", encoding="utf-8")
    (root / ".skjult.txt").write_text("skjult")
    (root / "a.txt~").write_text("backup")
    (root / "#a.txt#").write_text("autosave")
    (root / "a.txt.swp").write_text("swap")
    (root / "a.bak").write_text("backup")
    (root / "a.tmp").write_text("temp")
    (root / "~$rapport.docx").write_bytes(b"lock")
    (root / "bilde.png").write_bytes(b"\x89PNG")
    (root / "tom.txt").write_bytes(b"")
    (root / "stor.txt").write_text("x" * 2000)
    outside = tmp_path / "utenfor.txt"
    outside.write_text("Utenfor roten.")
    os.symlink(outside, root / "lenke.txt")
    return root


def test_scan_finds_supported_files_recursively_with_posix_names(tree: Path) -> None:
    files, _ = scan_sources(tree, max_bytes=1000)
    assert [f.source for f in files] == ["a.txt", "sub/dypere/side.HTML", "sub/notat.md"]
    first = files[0]
    assert first.path == (tree / "a.txt").resolve()
    assert first.path.is_absolute()
    assert first.sha256 == hashlib.sha256((tree / "a.txt").read_bytes()).hexdigest()
    assert first.size == len("Første fil.\n".encode())


def test_scan_skips_with_reasons(tree: Path) -> None:
    _, skipped = scan_sources(tree, max_bytes=1000)
    reasons = {s.source: s.reason for s in skipped}
    assert reasons == {
        "#a.txt#": "editor autosave file",
        ".git/": "hidden folder",
        ".skjult.txt": "hidden file",
        "a.bak": "backup file",
        "a.tmp": "temporary file",
        "a.txt.swp": "editor swap file",
        "a.txt~": "editor backup file",
        "bilde.png": "unsupported file type '.png'",
        "lenke.txt": "symlink pointing outside the sources folder",
        "stor.txt": "larger than 0.001 MB",
        "tom.txt": "empty file",
        "~$rapport.docx": "Office lock file",
    }


def test_scan_default_limit_reads_normal_files(tree: Path) -> None:
    files, skipped = scan_sources(tree)
    assert "stor.txt" in [f.source for f in files]
    assert all(s.source != "stor.txt" for s in skipped)


def test_scan_missing_root_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="finnes-ikke"):
        scan_sources(tmp_path / "finnes-ikke")


# --- reading text formats --------------------------------------------------


def test_read_text_keeps_lines_exactly(tmp_path: Path) -> None:
    path = tmp_path / "referat.txt"
    path.write_bytes("Tittel\r\n\r\nFørste avsnitt.\r\nAndre linje.\r\n".encode("cp1252"))
    doc = _read(path)
    assert doc.text == "Tittel\n\nFørste avsnitt.\nAndre linje.\n"
    assert doc.text.split("\n")[2] == "Første avsnitt."
    assert (doc.unit, doc.line_units) == ("line", None)
    assert doc.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert doc.source == "referat.txt"


def test_read_utf8_bom_text(tmp_path: Path) -> None:
    path = tmp_path / "bom.txt"
    path.write_bytes(b"\xef\xbb\xbf" + "Første linje\nÅndalsnes".encode())
    assert _read(path).text == "Første linje\nÅndalsnes"


def test_read_markdown_as_is(tmp_path: Path) -> None:
    text = "# Møte\n\n- punkt en\n- punkt to\n\nAvsnitt over\nto linjer.\n"
    path = tmp_path / "notat.md"
    path.write_text(text, encoding="utf-8")
    assert _read(path).text == text


def test_read_html_keeps_main_text_only(tmp_path: Path) -> None:
    path = tmp_path / "side.html"
    path.write_text(
        """<!doctype html><html><head><title>Tittel</title><style>p { color: red }</style></head>
        <body><nav><a href="/">Meny</a></nav><header>Toppfelt</header>
        <p>Utenfor main.</p>
        <main><h2>Konsultasjonsmøte</h2>
        <p>KS møtte   regjeringen
        26. april.</p><script>var hemmelig = "skripttekst";</script>
        <ul><li>Styrke politiet.</li><li>Mer til barnevernet.</li></ul></main>
        <footer>Bunntekst</footer></body></html>""",
        encoding="utf-8",
    )
    doc = _read(path)
    assert doc.text == (
        "## Konsultasjonsmøte\n\nKS møtte regjeringen 26. april.\n\n• Styrke politiet.\n\n• Mer til barnevernet."
    )
    for absent in ("skripttekst", "Meny", "Toppfelt", "Bunntekst", "Utenfor main", "color"):
        assert absent not in doc.text
    assert doc.unit == "line"


def test_deeply_nested_html_is_refused_with_a_clear_reason(tmp_path: Path) -> None:
    path = tmp_path / "dyp.html"
    path.write_text("<html><body>" + "<div>" * 5000 + "tekst" + "</div>" * 5000 + "</body></html>", encoding="utf-8")
    with pytest.raises(SourceError, match=r"dyp\.html: the HTML is nested too deeply \(more than 200 levels") as caught:
        _read(path)
    assert "recursion" not in str(caught.value)
    path.write_text("<html><body>" + "<div>" * 150 + "tekst" + "</div>" * 150 + "</body></html>", encoding="utf-8")
    assert _read(path).text == "tekst"


def test_html_with_too_many_elements_is_refused_with_a_clear_reason(tmp_path: Path) -> None:
    path = tmp_path / "bred.html"
    path.write_text("<html><body><p>" + "<i></i>" * MAX_HTML_ELEMENTS + "tekst</p></body></html>", encoding="utf-8")
    with pytest.raises(SourceError, match=rf"bred\.html: the HTML has more than {MAX_HTML_ELEMENTS:,} elements"):
        _read(path)


def test_read_html_in_windows_1252(tmp_path: Path) -> None:
    path = tmp_path / "gammel.htm"
    path.write_bytes("<html><body><article><p>Blåbær og ørret</p></article></body></html>".encode("cp1252"))
    assert _read(path).text == "Blåbær og ørret"


# --- Word and PDF ----------------------------------------------------------


def test_read_docx_numbers_non_empty_paragraphs(tmp_path: Path) -> None:
    word = docx.Document()
    word.add_paragraph("Referat fra møtet")
    word.add_paragraph("")
    word.add_paragraph("KS pekte på flere tiltak:")
    word.add_paragraph("Styrke politiet.", style="List Bullet")
    paragraph = word.add_paragraph("Første linje")
    paragraph.add_run().add_break()
    paragraph.add_run("andre linje i samme avsnitt.")
    path = tmp_path / "referat.docx"
    word.save(path)

    doc = _read(path)
    assert doc.unit == "paragraph"
    assert doc.text == (
        "Referat fra møtet\n\nKS pekte på flere tiltak:\n\n• Styrke politiet.\n\n"
        "Første linje\nandre linje i samme avsnitt."
    )
    assert doc.line_units is not None
    assert len(doc.line_units) == len(doc.text.split("\n"))
    assert doc.line_units[doc.text.split("\n").index("• Styrke politiet.")] == 3
    assert doc.line_units[-2:] == (4, 4)

    chunks = {c.text: c for c in chunk_document(doc)}
    bullet = chunks["Styrke politiet."]
    assert (bullet.kind, bullet.start_line, bullet.unit) == ("bullet", 3, "paragraph")
    assert bullet.lead_in == "KS pekte på flere tiltak:"
    last = chunks["Første linje andre linje i samme avsnitt."]
    assert (last.start_line, last.end_line) == (4, 4)


def test_read_pdf_maps_lines_to_pages(tmp_path: Path) -> None:
    path = tmp_path / "notat.pdf"
    path.write_bytes(_pdf([["Første side om æøå.", "Kommunene må samarbeide."], [], ["Tredje side om økonomi."]]))
    doc = _read(path)
    assert doc.unit == "page"
    assert "æøå" in doc.text
    assert doc.line_units is not None
    assert len(doc.line_units) == len(doc.text.split("\n"))
    chunks = chunk_document(doc)
    assert [(c.start_line, c.end_line, c.unit) for c in chunks] == [(1, 1, "page"), (3, 3, "page")]
    assert "økonomi" in chunks[1].text


def test_pdf_without_text_layer(tmp_path: Path) -> None:
    path = tmp_path / "skannet.pdf"
    path.write_bytes(_pdf([[], []]))
    with pytest.raises(SourceError, match=r"skannet\.pdf.*no text layer"):
        _read(path)


@pytest.mark.parametrize("name", ["ødelagt.pdf", "ødelagt.docx"])
def test_corrupt_files_raise_source_error_naming_the_file(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(b"%PDF-1.4\nPK\x03\x04 dette er ikke en gyldig fil")
    with pytest.raises(SourceError, match=name):
        _read(path)


def test_binary_text_file_raises_source_error(tmp_path: Path) -> None:
    path = tmp_path / "binær.txt"
    path.write_bytes(b"\x00\x01\x02hei\x00" * 50)
    with pytest.raises(SourceError, match="binær.txt"):
        _read(path)


def test_scanned_subfolder_file_reads_with_relative_source(tree: Path) -> None:
    files, _ = scan_sources(tree)
    note = next(f for f in files if f.source == "sub/notat.md")
    doc = read_document(note)
    assert doc.source == "sub/notat.md"
    assert doc.text == "# Notat\n\nTekst.\n"


# --- meetings: front matter and sidecars -----------------------------------


def test_front_matter_describes_the_meeting_and_is_not_indexed(tmp_path: Path) -> None:
    from assistant.ingest.chunking import chunk_document

    text = "---\ntitle: Bergvik kommunestyre\ndate: 2025-02-06\nkind: kommunestyre\n---\n# Protokoll\n\nSak 1/25 ble vedtatt.\n"
    path = tmp_path / "protokoll.md"
    path.write_text(text, encoding="utf-8")
    doc = read_document(_file(path))
    assert doc.text == text and doc.body_line == 5  # the text stays line for line as on disk
    assert (doc.meeting.title, doc.meeting.date, doc.meeting.kind) == ("Bergvik kommunestyre", "2025-02-06", "kommunestyre")
    assert doc.meeting.origins["date"] == "front matter"
    chunks = chunk_document(doc)
    assert [(c.text, c.start_line) for c in chunks] == [("Sak 1/25 ble vedtatt.", 8)]


def test_a_sidecar_travels_with_its_document_and_an_orphan_is_reported(tmp_path: Path) -> None:
    (tmp_path / "referat.docx").write_bytes(b"x")
    (tmp_path / "referat.meta.yaml").write_text("title: KS styremøte\ndate: 2024-09-05\nkind: styremøte\n", encoding="utf-8")
    (tmp_path / "gammel.meta.yaml").write_text("title: x\n", encoding="utf-8")
    files, skipped = scan_sources(tmp_path)
    assert [(f.source, f.sidecar.name if f.sidecar else None) for f in files] == [("referat.docx", "referat.meta.yaml")]
    assert files[0].sidecar_sha256
    assert [(s.source, s.reason) for s in skipped] == [("gammel.meta.yaml", "metadata file without a document beside it")]


def test_sidecar_fields_win_over_front_matter_and_a_broken_sidecar_is_a_note(tmp_path: Path) -> None:
    (tmp_path / "a.md").write_text("---\ntitle: Fra teksten\n---\nTekst.\n", encoding="utf-8")
    (tmp_path / "a.meta.yaml").write_text("title: Fra sidefilen\ndate: 26. april 2024\n", encoding="utf-8")
    doc = read_document(scan_sources(tmp_path)[0][0])
    assert (doc.meeting.title, doc.meeting.date, doc.meeting.origins["title"]) == ("Fra sidefilen", "2024-04-26", "sidecar")
    (tmp_path / "a.meta.yaml").write_text("title: [ikke lukket\n", encoding="utf-8")
    doc = read_document(scan_sources(tmp_path)[0][0])
    assert doc.meeting.title == "Fra teksten" and doc.notes and "a.meta.yaml ignored: not valid YAML" in doc.notes[0]


def test_the_trash_is_neither_indexed_nor_reported(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("Tekst.", encoding="utf-8")
    (tmp_path / ".trash").mkdir()
    (tmp_path / ".trash" / "b.txt").write_text("Borte.", encoding="utf-8")
    files, skipped = scan_sources(tmp_path)
    assert [f.source for f in files] == ["a.txt"] and skipped == []


# --- PDF budgets: whole files, not only pages (run in-process, with the budgets made small) ---------


def _inflating_pdf(contents: list[bytes]) -> bytes:
    """One page per content stream, each compressed, so a small file inflates to a lot of content."""
    import zlib

    kids = " ".join(f"{4 + 2 * i} 0 R" for i in range(len(contents)))
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        f"<< /Type /Pages /Kids [{kids}] /Count {len(contents)} >>".encode(),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    for index, content in enumerate(contents):
        packed = zlib.compress(content, 9)
        objects.append(
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
            + f"/Resources << /Font << /F1 3 0 R >> >> /Contents {5 + 2 * index} 0 R >>".encode()
        )
        objects.append(f"<< /Length {len(packed)} /Filter /FlateDecode >>\nstream\n".encode() + packed + b"\nendstream")
    return pdf_file(objects)


SHOW = b"BT /F1 12 Tf 72 720 Td (Hei) Tj ET\n"  # five operators


def test_a_pdf_with_too_many_pages_is_refused_before_any_page_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    from assistant.ingest import formats

    monkeypatch.setattr(formats, "MAX_PDF_PAGES", 3)
    with pytest.raises(SourceError, match="more than 3 pages"):
        formats.pdf_text(_inflating_pdf([SHOW] * 4))
    assert formats.pdf_text(_inflating_pdf([SHOW] * 3))[0].count("Hei") == 3


def test_inflated_content_is_bounded_for_the_whole_file(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each page is under the budget, together they are not: the file is refused at the page that passes it."""
    from assistant.ingest import formats

    monkeypatch.setattr(formats, "MAX_PDF_CONTENT_BYTES", 1_000_000)
    page = SHOW + b"%" + b"x" * 400_000 + b"\n"
    assert formats.pdf_text(_inflating_pdf([page, page]))[0].count("Hei") == 2
    with pytest.raises(SourceError, match="page content inflates to more than 1 MB"):
        formats.pdf_text(_inflating_pdf([page, page, page]))


def test_drawing_operators_and_time_are_bounded_for_the_whole_file(monkeypatch: pytest.MonkeyPatch) -> None:
    from assistant.ingest import formats

    monkeypatch.setattr(formats, "MAX_PDF_OPERATORS", 1_000)
    assert formats.pdf_text(_inflating_pdf([SHOW * 150]))  # 750 operators
    with pytest.raises(SourceError, match="more than 1,000 drawing operators"):
        formats.pdf_text(_inflating_pdf([SHOW * 150, SHOW * 150]))
    monkeypatch.setattr(formats, "MAX_PDF_SECONDS", 0.0)
    with pytest.raises(SourceError, match="took longer than 0 s"):
        formats.pdf_text(_inflating_pdf([SHOW]))


def test_a_structured_file_is_parsed_once_for_its_content(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An upload is checked, then built: the second read of the same bytes uses the first one's result."""
    from assistant.ingest import sources

    calls = []
    real = sources.run_limited
    monkeypatch.setattr(sources, "run_limited", lambda fn, *args: calls.append(args[0]) or real(fn, *args))
    first, second = tmp_path / "a.pdf", tmp_path / "kopi.pdf"
    data = _pdf([["Et notat om en helt egen sak, lest bare én gang."]])
    first.write_bytes(data)
    second.write_bytes(data)
    assert _read(first).text == _read(second).text == _read(first).text
    assert calls == [".pdf"]
    broken = tmp_path / "ødelagt.pdf"
    broken.write_bytes(b"%PDF-1.4\n ikke en gyldig fil " + os.urandom(8).hex().encode())
    for _ in range(2):
        with pytest.raises(SourceError, match="ødelagt.pdf"):
            _read(broken)
    assert calls == [".pdf", ".pdf"]  # a refusal is remembered too


def test_one_page_whose_content_is_too_large_is_refused_before_it_is_parsed(monkeypatch: pytest.MonkeyPatch) -> None:
    from assistant.ingest import formats

    monkeypatch.setattr(formats, "MAX_PDF_PAGE_BYTES", 100_000)
    with pytest.raises(SourceError, match="a page's content inflates to more than 0.1 MB"):
        formats.pdf_text(_inflating_pdf([SHOW * 3000]))
