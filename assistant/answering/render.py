"""Cited answers as Markdown for the page and as plain text for the terminal.

Every character taken from a source text is escaped, so HTML or Markdown in a
document shows as text and never runs. When several meetings answer, the
extracts are grouped under each meeting's title and date, and a list's
lead-in is shown once above its items.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence

from .types import Answer, Citation

TEXTS = {
    "no": {
        "found": "Dette sier tekstene:",
        "not_found": "Jeg fant ikke noe svar på dette i tekstene.",
        "maybe": "Kanskje relatert (svarer ikke direkte på spørsmålet):",
        "sources": "Kilder",
        "context": "Fra",
        "empty": "Skriv et spørsmål om møtetekstene, for eksempel «Hva krevde KS om SLT?».",
        "truncated": "Spørsmålet var svært langt; bare de første {n} tegnene ble brukt.",
        "filtered": "Søkte bare i: {where}.",
        "missing": "Tekstene nevner ikke {words}.",
    },
    "en": {
        "found": "Here is what the texts say:",
        "not_found": "I could not find an answer to this in the texts.",
        "maybe": "Maybe related (does not answer the question directly):",
        "sources": "Sources",
        "context": "From",
        "empty": "Ask a question about the meeting texts, for example “What did KS demand on SLT?”.",
        "truncated": "The question was very long; only its first {n} characters were used.",
        "filtered": "Searched only: {where}.",
        "missing": "The texts do not mention {words}.",
    },
}


def render_markdown(result: Answer) -> str:
    """Quotes as Markdown with every character of source text escaped, so it shows and never runs."""
    t = TEXTS[result.language]
    parts: list[str] = []
    if result.note and result.found:
        parts.append(f"*{escape(result.note)}*")
    if result.found:
        parts.append(t["found"])
        for meeting, group in by_meeting(result.citations):
            if meeting:
                parts.append(f"#### {escape(meeting)}")
            parts.extend(_quotes(group, result.language))
        sources = "\n".join(f"- {escape(c.label(result.language))} ({escape(c.source)})" for c in result.citations)
        parts.append(f"<details><summary>{t['sources']}</summary>\n\n{sources}\n\n</details>")
    else:
        parts.append(t["not_found"] + (f" *{escape(result.note)}*" if result.note else ""))  # what was not found, then why
        if result.related:
            parts.append(t["maybe"])
            parts.extend(_quotes(result.related, result.language, answers=False))
    return "\n\n".join(parts)


def by_meeting(citations: Sequence[Citation]) -> list[tuple[str, list[Citation]]]:
    """Citations grouped by meeting, in order of each meeting's first citation; one group has no heading."""
    groups: dict[str, list[Citation]] = {}
    for c in citations:
        groups.setdefault(c.title or c.source, []).append(c)
    if len(groups) == 1:
        return [("", list(citations))]
    return list(groups.items())


def _quotes(citations: Sequence[Citation], lang: str, answers: bool = True) -> list[str]:
    """Each citation quoted; a lead-in shared by consecutive list items is shown once.

    Bold marks the sentence that answers, so a passage shown as "maybe related" has none.
    """
    out, previous = [], None
    for c in citations:
        out.append(_quote(c, lang, show_lead_in=c.lead_in != previous, answers=answers))
        previous = c.lead_in
    return out


def _quote(c: Citation, lang: str, show_lead_in: bool = True, answers: bool = True) -> str:
    t = TEXTS[lang]
    lines = []
    if c.lead_in and show_lead_in:
        lines.append(f"*{t['context']}:* {escape(c.lead_in)}")
    a = c.text.find(c.highlight)
    if not answers:
        body = escape(c.text)
    elif c.highlight and a >= 0 and c.highlight != c.text:
        body = escape(c.text[:a]) + "**" + escape(c.highlight) + "**" + escape(c.text[a + len(c.highlight) :])
    else:
        body = "**" + escape(c.text) + "**"
    body = ("… " if c.trimmed_before else "") + body + (" …" if c.trimmed_after else "")
    lines.append("> " + body + f" [{c.number}]")
    if c.speaker:
        lines.append(f"> — *{escape(c.speaker)}*")
    lines.append(f"<sub>{escape(c.label(lang))}</sub>")
    return "\n".join(lines)


_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+!|~>-])")
# What GFM turns into a link without any Markdown syntax: "https://…", "www.…" and e-mail addresses.
_AUTOLINK = re.compile(r"(?i)(?<=[a-z])(:)(?=//)|(?<=\bwww)(\.)|(@)(?=[\w-]+\.)")


def escape(text: str) -> str:
    """HTML-escape, backslash-escape Markdown syntax and break autolinks, so source text is always shown literally."""
    escaped = _MD_SPECIAL.sub(r"\\\1", html.escape(text, quote=False))
    return _AUTOLINK.sub(lambda m: f"&#{ord(m.group(0))};", escaped)


def render_text(result: Answer) -> str:
    """Plain terminal rendering: the highlighted sentence between » and «, grouped by meeting."""
    t = TEXTS[result.language]
    lines = [result.note] if result.note and result.found else []
    if result.found:
        lines.append(t["found"])
        groups = by_meeting(result.citations)
    else:
        lines.append(" ".join(filter(None, [t["not_found"], result.note])))
        groups = [("", list(result.related))] if result.related else []
        if result.related:
            lines.append(t["maybe"])
    for meeting, group in groups:
        if meeting:
            lines += ["", f"== {meeting} =="]
        previous = None
        for c in group:
            lines.append("")
            lines.append(c.label(result.language))
            if c.lead_in and c.lead_in != previous:
                lines.append(f"  {t['context']}: {c.lead_in}")
            previous = c.lead_in
            text = c.text.replace(c.highlight, f"»{c.highlight}«", 1) if c.highlight else c.text
            lines.append("  " + ("… " if c.trimmed_before else "") + text + (" …" if c.trimmed_after else ""))
            if c.speaker:
                lines.append(f"  — {c.speaker}")
    return "\n".join(lines)
