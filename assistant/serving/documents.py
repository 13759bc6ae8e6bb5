"""The documents of an index, as the page's "Dokumenter" panel and ``python -m assistant documents`` show them.

Removing a document never deletes it: the file (and its sidecar) moves into
``source_texts/.trash/``, from where it can be restored; the index is rebuilt
incrementally either way.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..ingest.meetings import Meeting
from ..settings import Settings
from ..ingest.sources import SIDECAR, TRASH, Skipped, scan_sources

__all__ = ["TRASH", "DocumentError", "DocumentInfo", "Inventory", "inventory", "remove", "restore", "trashed"]



@dataclass(frozen=True)
class DocumentInfo:
    source: str
    title: str
    date: str
    kind: str
    body: str
    passages: int
    added: str
    origins: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Inventory:
    """What the index holds, what the sources folder leaves out and why, and what is in the trash."""

    documents: list[DocumentInfo]
    skipped: list[Skipped]
    trash: list[str]

    def to_json(self) -> dict[str, object]:
        return asdict(self)


class DocumentError(ValueError):
    """A document that cannot be removed or restored; the message says why."""


def inventory(settings: Settings, sources: Mapping[str, Mapping[str, object]]) -> Inventory:
    """The documents of the index (``sources``, as its manifest records them; the service reads it) and
    what the texts folder holds besides: skipped files and the trash."""
    documents = []
    for source, meta in sorted(sources.items()):
        meeting = Meeting.from_json(meta.get("meeting"))  # type: ignore[arg-type]
        documents.append(
            DocumentInfo(
                source, meeting.label() or source, meeting.date, meeting.kind, meeting.body,
                int(meta.get("chunks", 0)), str(meta.get("added", "")), dict(meeting.origins),  # type: ignore[arg-type]
            )
        )
    try:
        _, skipped = scan_sources(settings.sources, int(settings.max_file_mb * 1e6))
    except (FileNotFoundError, NotADirectoryError):
        skipped = []
    return Inventory(documents, list(skipped), trashed(settings))


def trashed(settings: Settings) -> list[str]:
    trash = settings.sources / TRASH
    if not trash.is_dir():
        return []
    return sorted(p.relative_to(trash).as_posix() for p in trash.rglob("*") if p.is_file() and not p.name.endswith(SIDECAR))


def remove(settings: Settings, source: str) -> str:
    """Move a document (and its sidecar) into the trash; returns where it went, relative to the trash."""
    path = _inside(settings.sources, source)
    if not path.is_file():
        raise DocumentError(f"{source} is not in {settings.sources}")
    target = _free(settings.sources / TRASH / source)
    _move(path, target)
    return target.relative_to(settings.sources / TRASH).as_posix()


def restore(settings: Settings, name: str) -> str:
    """Move a document back from the trash to where it was; refuses to overwrite a file of that name."""
    trash = settings.sources / TRASH
    path = _inside(trash, name)
    if not path.is_file():
        raise DocumentError(f"{name} is not in the trash")
    original = _original_name(name)
    target = _inside(settings.sources, original)
    if target.exists():
        raise DocumentError(f"{original} exists already; rename or remove it first")
    _move(path, target)
    return original


def _inside(root: Path, relative: str) -> Path:
    path = (root / relative).resolve()
    if not path.is_relative_to(root.resolve()) or path == root.resolve():
        raise DocumentError(f"{relative} is not a document name")
    return path


def _free(target: Path) -> Path:
    """The trash keeps every removed version: a second "a.txt" becomes "a.<time>.txt"."""
    if not target.exists():
        return target
    return target.with_name(f"{target.stem}.{time.strftime('%Y%m%dT%H%M%S')}{target.suffix}")


def _original_name(name: str) -> str:
    path = Path(name)
    parts = path.stem.rsplit(".", 1)
    if len(parts) == 2 and len(parts[1]) == 15 and parts[1][8] == "T" and parts[1].replace("T", "").isdigit():
        return path.with_name(parts[0] + path.suffix).as_posix()
    return name


def _move(path: Path, target: Path) -> None:
    """The document first, then its sidecar, so a failure halfway never separates a sidecar from its text."""
    target.parent.mkdir(parents=True, exist_ok=True)
    sidecar = path.with_name(path.stem + SIDECAR)
    shutil.move(str(path), str(target))
    if sidecar.is_file():
        shutil.move(str(sidecar), str(target.with_name(target.stem + SIDECAR)))
