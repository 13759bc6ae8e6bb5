"""Find source files and turn them into plain text with a citation unit.

Scanning only hashes bytes, so an incremental build can skip unchanged files
without decoding them. Reading keeps text files line-for-line identical to the
file on disk, because citations point at line numbers a user can check; the
formats themselves are read in formats.py.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from .formats import SourceError, decode_text, docx_text, html_to_text, pdf_text

SUPPORTED_SUFFIXES = (".txt", ".md", ".markdown", ".html", ".htm", ".docx", ".pdf")

_TEXT_SUFFIXES = (".txt", ".md", ".markdown")
_HTML_SUFFIXES = (".html", ".htm")
_TEMP_SUFFIXES = {".swp": "editor swap file", ".bak": "backup file", ".tmp": "temporary file"}


@dataclass(frozen=True)
class SourceFile:
    path: Path
    source: str
    sha256: str
    size: int


@dataclass(frozen=True)
class Skipped:
    source: str
    reason: str


@dataclass(frozen=True)
class Document:
    source: str
    text: str
    sha256: str
    unit: str = "line"
    line_units: tuple[int, ...] | None = None


def scan_sources(root: Path, max_bytes: int = 20_000_000) -> tuple[list[SourceFile], list[Skipped]]:
    """List readable source files under root, and say why every other file was left out.

    Reasons are reported rather than silently dropped so that a user who wonders
    why a document never shows up in answers can find out.
    """
    root = Path(root)
    if not root.exists():
        raise FileNotFoundError(f"Sources folder not found: {root.resolve()} (check the sources setting)")
    if not root.is_dir():
        raise NotADirectoryError(f"Sources path is not a folder: {root.resolve()}")
    files: list[SourceFile] = []
    skipped: list[Skipped] = []
    _walk(root.resolve(), root.resolve(), max_bytes, files, skipped)
    return files, skipped


def _walk(root: Path, folder: Path, max_bytes: int, files: list[SourceFile], skipped: list[Skipped]) -> None:
    try:
        entries = sorted(folder.iterdir(), key=lambda p: p.name)
    except OSError as exc:
        skipped.append(Skipped(folder.relative_to(root).as_posix() + "/", f"cannot read folder: {exc.strerror or exc}"))
        return
    for path in entries:
        source = path.relative_to(root).as_posix()
        if path.is_dir():
            reason = _folder_skip_reason(path)
            if reason:
                skipped.append(Skipped(source + "/", reason))
            else:
                _walk(root, path, max_bytes, files, skipped)
            continue
        reason = _file_skip_reason(root, path, max_bytes)
        if reason:
            skipped.append(Skipped(source, reason))
            continue
        try:
            files.append(SourceFile(path, source, _sha256_file(path), path.stat().st_size))
        except OSError as exc:
            skipped.append(Skipped(source, f"cannot read: {exc.strerror or exc}"))


def _folder_skip_reason(path: Path) -> str:
    if path.name.startswith("."):
        return "hidden folder"
    if path.is_symlink():
        # Following folder links could loop or leave the sources folder.
        return "symlinked folder (not followed)"
    return ""


def _file_skip_reason(root: Path, path: Path, max_bytes: int) -> str:
    name = path.name
    suffix = path.suffix.lower()
    if name.startswith("."):
        return "hidden file"
    if name.startswith("~$"):
        return "Office lock file"
    if name.endswith("~"):
        return "editor backup file"
    if name.startswith("#") and name.endswith("#"):
        return "editor autosave file"
    if suffix in _TEMP_SUFFIXES:
        return _TEMP_SUFFIXES[suffix]
    if path.is_symlink():
        target = path.resolve()
        if not target.exists():
            return "broken symlink"
        if not target.is_relative_to(root):
            return "symlink pointing outside the sources folder"
    if not path.is_file():
        return "not a regular file"
    if suffix not in SUPPORTED_SUFFIXES:
        return f"unsupported file type '{suffix}'" if suffix else "no file extension"
    try:
        size = path.stat().st_size
    except OSError as exc:
        return f"cannot read: {exc.strerror or exc}"
    if size == 0:
        return "empty file"
    if size > max_bytes:
        return f"larger than {max_bytes / 1_000_000:g} MB"
    return ""


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_document(file: SourceFile) -> Document:
    """Extract text in the file's citation unit; every failure names the file."""
    try:
        data = file.path.read_bytes()
    except OSError as exc:
        raise SourceError(f"{file.source}: cannot read file: {exc.strerror or exc}") from exc
    sha = hashlib.sha256(data).hexdigest()
    suffix = file.path.suffix.lower()
    try:
        if suffix in _TEXT_SUFFIXES:
            return Document(file.source, decode_text(data), sha)
        if suffix in _HTML_SUFFIXES:
            return Document(file.source, html_to_text(decode_text(data)), sha)
        if suffix == ".docx":
            text, units = docx_text(data)
            return Document(file.source, text, sha, "paragraph", units)
        if suffix == ".pdf":
            text, units = pdf_text(data)
            return Document(file.source, text, sha, "page", units)
    except SourceError as exc:
        raise SourceError(f"{file.source}: {exc}") from exc
    except Exception as exc:  # parsers raise many unrelated types for corrupt input
        raise SourceError(f"{file.source}: cannot parse {suffix[1:].upper()} file: {exc}") from exc
    raise SourceError(f"{file.source}: unsupported file type '{suffix}'")
