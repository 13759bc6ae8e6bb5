"""Find source files and turn them into plain text with a citation unit and its meeting.

Scanning only hashes bytes, so an incremental build can skip unchanged files
without decoding them. Reading keeps text files line-for-line identical to the
file on disk, because citations point at line numbers a user can check; YAML
front matter stays in the text but is marked so it is not indexed. A sidecar
``NAME.meta.yaml`` beside a file describes its meeting and is hashed apart
from it, so editing only the sidecar re-embeds nothing. The formats themselves
are read in formats.py.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

from .formats import STRUCTURED, SourceError, decode_text, parse_structured
from .meetings import Meeting, describe
from ..settings import DATA
from .sandbox import Failure, Refusal, run_limited

SUPPORTED_SUFFIXES = (".txt", ".md", ".markdown", ".html", ".htm", ".docx", ".pdf")
BUNDLED_CORPUS = DATA / "corpus"  # the meeting text the product ships with
SEEDED = ".seeded"
SIDECAR = ".meta.yaml"
TRASH = ".trash"  # removed documents wait here, unindexed, to be restored
MAX_SIDECAR_BYTES = 64_000

_TEXT_SUFFIXES = (".txt", ".md", ".markdown")
MEMO_CHARS = 20_000_000  # parsed HTML, Word and PDF text kept by content hash, the oldest dropped first
_memo: OrderedDict[tuple[str, str], tuple[str, tuple[int, ...] | None] | SourceError] = OrderedDict()
_memo_lock = threading.Lock()
_TEMP_SUFFIXES = {".swp": "editor swap file", ".bak": "backup file", ".tmp": "temporary file"}


@dataclass(frozen=True)
class SourceFile:
    path: Path
    source: str
    sha256: str
    size: int
    sidecar: Path | None = None
    sidecar_sha256: str = ""


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
    meeting: Meeting = field(default_factory=Meeting)
    body_line: int = 0  # lines before it (YAML front matter) describe the document and are not indexed
    notes: tuple[str, ...] = ()  # problems that did not stop the reading, e.g. an unreadable sidecar


def seed_bundled(folder: Path) -> list[str]:
    """Copy the bundled meeting text into a texts folder once, so a fresh clone answers at once.

    After that the folder is the user's: a text removed from it stays removed. The
    copies live outside anything the repository tracks, so using the app never changes a tracked file.
    """
    marker = folder / SEEDED
    if marker.exists():
        return []
    folder.mkdir(parents=True, exist_ok=True)
    copied = []
    for path in sorted(BUNDLED_CORPUS.iterdir()):
        if path.is_file() and not (folder / path.name).exists():
            shutil.copyfile(path, folder / path.name)
            copied.append(path.name)
    marker.write_text("The bundled meeting texts were copied into this folder once; remove them as you like.\n", encoding="utf-8")
    return copied


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
    names = {p.name for p in entries}
    for path in entries:
        source = path.relative_to(root).as_posix()
        if path.name.endswith(SIDECAR) and not path.name.startswith("."):
            if not any(n != path.name and _sidecar_of(folder / n) == path for n in names):
                skipped.append(Skipped(source, "metadata file without a document beside it"))
            continue
        if path.is_dir():
            if folder == root and path.name == TRASH:
                continue
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
        sidecar = _sidecar_of(path)
        try:
            side = (sidecar, _sha256_file(sidecar)) if sidecar.name in names and sidecar.is_file() else (None, "")
            files.append(SourceFile(path, source, _sha256_file(path), path.stat().st_size, *side))
        except OSError as exc:
            skipped.append(Skipped(source, f"cannot read: {exc.strerror or exc}"))


def _sidecar_of(path: Path) -> Path:
    """``bergvik-2024-06-13.md`` is described by ``bergvik-2024-06-13.meta.yaml``."""
    return path.with_name(path.stem + SIDECAR)


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


def _parsed(suffix: str, data: bytes, sha: str) -> tuple[str, tuple[int, ...] | None]:
    """Parse in the sandbox, once per content: an upload's check and the build after it share the result."""
    key = (sha, suffix)
    with _memo_lock:
        if key in _memo:
            _memo.move_to_end(key)
            result = _memo[key]
            if isinstance(result, SourceError):
                raise SourceError(result.reason)
            return result
    try:
        result: tuple[str, tuple[int, ...] | None] | SourceError = run_limited(parse_structured, suffix, data).value
    except Failure as exc:
        label = suffix[1:].upper()
        result = SourceError(str(exc) if exc.kind == "SourceError" else f"cannot parse {label} file: {exc}")
    except Refusal as exc:
        result = SourceError(f"refused: {exc}")
    with _memo_lock:
        _memo[key] = result
        while sum(len(r[0]) for r in _memo.values() if not isinstance(r, SourceError)) > MEMO_CHARS:
            _memo.popitem(last=False)
    if isinstance(result, SourceError):
        raise SourceError(result.reason)
    return result


def read_document(file: SourceFile) -> Document:
    """Extract text in the file's citation unit, and its meeting; every failure names the file."""
    try:
        data = file.path.read_bytes()
    except OSError as exc:
        raise SourceError(f"cannot read file: {exc.strerror or exc}", file.source) from exc
    sha = hashlib.sha256(data).hexdigest()
    suffix = file.path.suffix.lower()
    units: tuple[int, ...] | None = None
    unit = STRUCTURED.get(suffix, "line")
    try:
        if suffix in _TEXT_SUFFIXES:
            text = decode_text(data)
        elif suffix in STRUCTURED:
            text, units = _parsed(suffix, data, sha)
        else:
            raise SourceError(f"unsupported file type '{suffix}'")
    except SourceError as exc:
        raise SourceError(exc.reason, file.source) from exc
    given, body_line, notes = _front_matter(text) if suffix in _TEXT_SUFFIXES else ({}, 0, [])
    origin = "front matter"
    if file.sidecar is not None:
        side, problem = read_sidecar(file.sidecar)
        if problem:
            notes.append(f"{file.sidecar.name} ignored: {problem}")
        elif side:
            given, origin = {**given, **side}, "sidecar"
    body = "\n".join(text.split("\n")[body_line:])
    meeting = describe(body, file.source, given, origin)
    return Document(file.source, text, sha, unit, units, meeting, body_line, tuple(notes))


_FENCE = re.compile(r"---[ \t]*\n(.*?\n)---[ \t]*(?:\n|$)", re.DOTALL)


def _front_matter(text: str) -> tuple[dict[str, object], int, list[str]]:
    """Fields of a leading YAML block between ``---`` lines, and the line after it."""
    match = _FENCE.match(text)
    if not match or len(match.group(1)) > MAX_SIDECAR_BYTES:
        return {}, 0, []
    fields, problem = _yaml_fields(match.group(1))
    if problem:
        return {}, 0, [f"front matter ignored: {problem}"]
    return fields, text.count("\n", 0, match.end()) + (0 if match.group(0).endswith("\n") else 1), []


def read_sidecar(path: Path) -> tuple[dict[str, object], str]:
    """A sidecar's fields, or why it cannot be used."""
    try:
        if path.stat().st_size > MAX_SIDECAR_BYTES:
            return {}, f"larger than {MAX_SIDECAR_BYTES // 1000} kB"
        return _yaml_fields(path.read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError) as exc:
        return {}, f"cannot read: {exc}"


def _yaml_fields(raw: str) -> tuple[dict[str, object], str]:
    import yaml

    try:
        data = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        return {}, f"not valid YAML ({str(exc).splitlines()[0]})"
    if data is None:
        return {}, ""
    if not isinstance(data, dict):
        return {}, "not a mapping of fields"
    fields = {str(k).lower(): v for k, v in data.items() if str(k).lower() in ("title", "date", "kind", "body", "place")}
    if "place" in fields and "body" not in fields:
        fields["body"] = fields.pop("place")
    for key, value in fields.items():
        if not isinstance(value, (str, int, float)) and not hasattr(value, "isoformat"):
            return {}, f"{key} must be plain text"
    return fields, ""
