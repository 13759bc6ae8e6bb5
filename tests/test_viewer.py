"""The source viewer: escaped text, cited lines marked, pages numbered."""

from __future__ import annotations

from assistant.answering.answer import Citation
from assistant.ingest.sources import Document
from assistant.serving.viewer import render_document


def test_viewer_escapes_every_character_and_marks_the_cited_lines() -> None:
    text = "første linje\n<img src=x onerror=alert(1)> ${x} {{y}}\nSvaret står her. Og mer.\nslutt"
    doc = Document("a.txt", text, "sha")
    citation = Citation(1, "a.txt", 2, 3, text="", highlight="Svaret står her.")
    rendered = render_document(doc, citation, "[1] a.txt, linje 2–3")
    assert "<img" not in rendered and "&lt;img src=x onerror=alert(1)&gt;" in rendered
    assert "${" not in rendered and "{{" not in rendered
    assert rendered.count('class="ln cited"') == 2 and rendered.count('id="kilde-start"') == 1
    assert "<mark><strong>Svaret står her.</strong> Og mer.</mark>" in rendered


def test_viewer_numbers_pages_of_a_pdf() -> None:
    doc = Document("r.pdf", "side en\n\nside to a\nside to b", "sha", unit="page", line_units=(1, 1, 2, 2))
    rendered = render_document(doc, Citation(1, "r.pdf", 2, 2, text="", highlight="", unit="page"), "[1] r.pdf, side 2")
    assert '<span class="no">s. 2</span><span class="tx"><mark>side to a</mark>' in rendered
    assert '<span class="no"></span><span class="tx"><mark>side to b</mark>' in rendered
