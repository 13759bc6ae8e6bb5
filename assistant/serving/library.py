"""The user's texts, as the page manages them: uploads saved safely, and the "Dokumenter" panel.

Uploaded files are checked with the same bounded reader a build uses, then
written to a temporary name and renamed into the sources folder, so a failure
never leaves half a file. Removing a document moves it into the trash
(documents.py); every change is followed by an incremental rebuild.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Sequence
from pathlib import Path

from . import documents
from ..answering.render import escape
from ..settings import Settings
from ..ingest.sources import SUPPORTED_SUFFIXES, SourceError, SourceFile, read_document
from ..storage.errors import DISK_FULL

STAGES = (
    ("reading", "Leser tekstene"),
    ("embedding", "Lager vektorer"),
    ("indexing", "Indekserer ordene"),
    ("waiting", "Venter på en annen oppdatering av indeksen"),
)
ALL_MEETINGS = "Alle møter"
TABLE_HEADERS = ["Tittel", "Dato", "Type", "Tekstbiter", "Lagt til", "Fil"]


class Refused(Exception):
    """An uploaded file that is not saved; the message says why, in Norwegian."""


def safe_name(raw: str) -> str:
    """A plain file name inside the sources folder: no folders, no hidden names, supported types only."""
    base = raw.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch if ch.isprintable() else "_" for ch in base).strip()
    if name in ("", ".", ".."):
        raise Refused("ugyldig filnavn")
    if name.startswith((".", "~$")) or name.endswith("~"):
        raise Refused("skjulte og midlertidige filer lagres ikke")
    suffix = Path(name).suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        kinds = ", ".join(SUPPORTED_SUFFIXES)
        raise Refused(f"filtypen «{suffix or 'uten endelse'}» støttes ikke (støttet: {kinds})")
    if len(name) > 150:
        name = Path(name).stem[: 150 - len(suffix)] + suffix
    return name


def save_upload(upload: Path, settings: Settings, replace: bool) -> tuple[str, bool]:
    """Check and store one uploaded file; returns a Norwegian status line and whether the folder changed."""
    name = safe_name(upload.name)
    size = upload.stat().st_size
    if size == 0:
        raise Refused("filen er tom")
    if size > settings.max_file_mb * 1_000_000:
        raise Refused(f"filen er større enn {settings.max_file_mb:g} MB")
    try:
        read_document(SourceFile(upload, name, "", size))
    except SourceError as exc:
        raise Refused(f"kan ikke leses som tekst ({exc})") from exc
    root = settings.sources.resolve()
    target = root / name
    existed = target.exists()
    if existed:
        if target.read_bytes() == upload.read_bytes():
            return f"{name}: finnes allerede med samme innhold", False
        if not replace:
            raise Refused(
                "det finnes allerede en annen fil med dette navnet. "
                "Kryss av for «Erstatt eksisterende filer» for å erstatte den"
            )
    temporary = root / f".{uuid.uuid4().hex}.upload.tmp"
    try:
        shutil.copyfile(upload, temporary)
        os.replace(temporary, target)
    except BaseException:  # a full disk, a dropped connection: leave nothing half-written behind
        temporary.unlink(missing_ok=True)
        raise
    return f"{name}: {'erstattet' if existed else 'lagt til'}", True


def save_uploads(paths: Sequence[str], settings: Settings, replace: bool, received: Path) -> tuple[list[str], bool]:
    """Save the files the page received into ``received`` (its upload folder); any other path is refused unread."""
    lines: list[str] = []
    changed = False
    folder = received.resolve()
    for raw in paths:
        upload = Path(raw)
        try:
            if not upload.resolve().is_relative_to(folder) or not upload.is_file():
                raise Refused("bare filer som er lastet opp i denne forespørselen, kan legges til")
            line, wrote = save_upload(upload, settings, replace)
        except Refused as exc:
            lines.append(f"{upload.name}: ikke lagret – {exc}.")
            continue
        except OSError as exc:
            reason = "ikke nok diskplass" if exc.errno in DISK_FULL else exc.strerror or exc
            lines.append(f"{upload.name}: ikke lagret – {reason}.")
            continue
        lines.append(line)
        changed = changed or wrote
    return lines, changed


def stage_name(stage: str) -> str:
    """A build stage in Norwegian, for the progress bar."""
    return next((norwegian for prefix, norwegian in STAGES if stage.startswith(prefix)), stage)


# ---- the "Dokumenter" panel and the meeting picker -----------------------------------------


def document_rows(inventory: documents.Inventory) -> list[list[object]]:
    return [[d.title, d.date, d.kind, d.passages, d.added[:16].replace("T", " "), d.source] for d in inventory.documents]


def skipped_text(inventory: documents.Inventory) -> str:
    lines = [f"- **{escape(s.source)}**: {escape(s.reason)}" for s in inventory.skipped]
    return ("**Hoppet over:**\n" + "\n".join(lines)) if lines else ""


def meeting_choices(inventory: documents.Inventory) -> list[tuple[str, str]]:
    """("Alle møter", "") first, then each document by its meeting, as the picker lists them."""
    return [(ALL_MEETINGS, ""), *((f"{d.title} ({d.source})", d.source) for d in inventory.documents)]


def remove_question(inventory: documents.Inventory, source: str | None) -> str:
    """The confirmation asked before a document is moved to the trash."""
    found = next((d for d in inventory.documents if d.source == source), None)
    if found is None:
        return ""
    return (
        f"Flytte **{escape(found.title)}** ({escape(found.source)}) til papirkurven? "
        "Filen slettes ikke, og den kan gjenopprettes."
    )
