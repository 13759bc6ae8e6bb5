"""The source viewer: a cited file as numbered lines, the cited ones marked, every character escaped.

Gradio's sanitizer drops scripts and event handlers but would still render tags
such as ``<img>``, so source text is HTML-escaped here, including the template
characters gr.HTML might interpret.
"""

from __future__ import annotations

import html

from ..answering.types import Citation
from .service import Service
from ..ingest.sources import Document, SourceError, SourceFile, read_document

UNIT_SHORT = {"line": "", "page": "s. ", "paragraph": "¶ "}


def _h(text: str) -> str:
    """HTML-escape everything, including the template characters gr.HTML might interpret."""
    return html.escape(text, quote=True).replace("$", "&#36;").replace("{", "&#123;").replace("}", "&#125;")


def source_view(service: Service, citation: Citation, language: str = "no") -> str:
    """The cited file as numbered lines (or pages/paragraphs), the cited ones marked."""
    root = service.settings.sources.resolve()
    path = (root / citation.source).resolve()
    if not path.is_relative_to(root):
        return f'<p class="note">{_h(citation.source)} ligger utenfor tekstmappen og vises ikke.</p>'
    try:
        doc = read_document(SourceFile(path, citation.source, "", path.stat().st_size))
    except (OSError, SourceError) as exc:
        return f'<p class="note">Kan ikke vise {_h(citation.source)}: {_h(str(exc))}</p>'
    indexed = service.indexed_sha(citation.source)
    changed = indexed not in (None, doc.sha256)
    note = "Filen er endret etter at indeksen ble bygget; markeringen kan være forskjøvet." if changed else ""
    return render_document(doc, citation, citation.label(language), note)


def render_document(doc: Document, citation: Citation, label: str, note: str = "") -> str:
    lines = doc.text.split("\n")
    units = doc.line_units or tuple(range(1, len(lines) + 1))
    rows: list[str] = []
    anchored = False
    for i, line in enumerate(lines):
        unit = units[min(i, len(units) - 1)]
        first_of_unit = doc.unit == "line" or i == 0 or units[min(i - 1, len(units) - 1)] != unit
        number = f"{UNIT_SHORT.get(doc.unit, '')}{unit}" if first_of_unit else ""
        cited = citation.start_line <= unit <= citation.end_line
        attrs = ' class="ln cited"' if cited else ' class="ln"'
        if cited and not anchored:
            attrs += ' id="kilde-start"'
            anchored = True
        text = _marked(line, citation.highlight) if cited else _h(line)
        rows.append(f'<div{attrs}><span class="no">{number}</span><span class="tx">{text or " "}</span></div>')
    title = f'<p class="doc-title"><strong>{_h(label)}</strong> <span class="file">{_h(doc.source)}</span></p>'
    notice = f'<p class="note">{_h(note)}</p>' if note else ""
    return f'{title}{notice}<div class="doc" data-label="{_h(label)}">{"".join(rows)}</div>'


def _marked(line: str, highlight: str) -> str:
    """A cited line in <mark>, with the answering sentence in bold where it lies on this line."""
    sentence = highlight.strip()
    at = line.find(sentence) if sentence else -1
    if at < 0:
        return f"<mark>{_h(line)}</mark>"
    end = at + len(sentence)
    return f"<mark>{_h(line[:at])}<strong>{_h(sentence)}</strong>{_h(line[end:])}</mark>"
