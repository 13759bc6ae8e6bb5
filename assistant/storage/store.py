"""The index on disk: vectors, FAISS index, lexical index, chunk metadata, manifest.

Each build writes a complete new generation folder beside the current one and
then switches the small ``CURRENT`` pointer file with an atomic rename, so a
reader sees either the old index or the new one, never a half-written mix, and
an interrupted build leaves the previous index untouched.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import math
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import faiss
import numpy as np

from ..ingest.chunking import Chunk
from .bm25 import LexicalIndex
from ..ingest.meetings import Meeting, place_names
from .errors import FIX, StoreError, WriteError

FORMAT_VERSION = 2
POINTER = "CURRENT"
LOCK = ".lock"
ARRAYS = ("vectors", "sentences", "sentence_offsets", "background")
FLAT_LIMIT = 20_000  # above this many passages exact search costs more than ~3 ms a query (bench/README.md)
TRAIN_PER_LIST = 40  # k-means training vectors per inverted list; faiss warns below 39


@dataclass
class Manifest:
    model: str
    model_fingerprint: str
    dim: int
    chunker: dict[str, object]
    sources: dict[str, dict[str, object]]
    built_at: str = ""
    chunks: int = 0
    dense_index: str = "flat"
    format_version: int = FORMAT_VERSION

    @classmethod
    def from_json(cls, data: dict[str, object]) -> "Manifest":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})  # type: ignore[arg-type]

    def meeting_map(self) -> dict[str, Meeting]:
        """Per document, the meeting it records, as the build read it: the one map every backend filters with."""
        return {s: Meeting.from_json(meta.get("meeting")) for s, meta in self.sources.items()}  # type: ignore[arg-type]


@dataclass
class StoredIndex:
    """One loaded generation; immutable once loaded, so requests can share it across threads."""

    folder: Path
    manifest: Manifest
    chunks: list[Chunk]
    vectors: np.ndarray
    dense: faiss.Index
    lexical: LexicalIndex
    sentences: np.ndarray  # one vector per sentence of every chunk, in chunk order
    sentence_offsets: np.ndarray  # chunk i owns rows sentence_offsets[i]:sentence_offsets[i+1]
    background: np.ndarray  # generic off-topic passages: what "not about these texts" looks like
    by_source: dict[str, list[int]] = field(default_factory=dict)
    meetings: dict[str, Meeting] = field(default_factory=dict)  # per source: what meeting it records
    places: frozenset[str] = frozenset()  # the places the meetings belong to, which a question may name
    lists: dict[int, tuple[int, ...]] = field(default_factory=dict)  # bullet or lead-in -> every item of its list

    def __post_init__(self) -> None:
        for i, chunk in enumerate(self.chunks):
            self.by_source.setdefault(chunk.source, []).append(i)
        for ids in self.by_source.values():
            for position, run in list_members([self.chunks[i] for i in ids]).items():
                self.lists[ids[position]] = tuple(ids[j] for j in run)
        self.meetings = self.manifest.meeting_map()
        self.places = place_names(self.meetings.values())


def bullet_lists(chunks: Sequence[Chunk]) -> list[list[int]]:
    """Positions of the bulleted lists of one document's passages: runs of two or more bullets under one lead-in."""
    runs: list[list[int]] = []
    run: list[int] = []
    for i, chunk in enumerate([*chunks, None]):
        if run and (chunk is None or chunk.kind != "bullet" or chunk.lead_in != chunks[run[-1]].lead_in):
            if len(run) > 1:
                runs.append(run)
            run = []
        if chunk is not None and chunk.kind == "bullet":
            run.append(i)
    return runs


def list_members(chunks: Sequence[Chunk]) -> dict[int, tuple[int, ...]]:
    """One document's passages that belong to a bulleted list, by position, each with the positions of its items.

    The passage that leads in to a list ("KS ba staten om:") maps to the items
    as well: a question it answers best is answered by the list it introduces.
    """
    members: dict[int, tuple[int, ...]] = {}
    for run in bullet_lists(chunks):
        items = tuple(run)
        members.update(dict.fromkeys(items, items))
        before = run[0] - 1
        if before >= 0 and chunks[before].kind != "bullet" and chunks[before].text == chunks[run[0]].lead_in:
            members[before] = items
    return members


def current_generation(root: Path) -> Path | None:
    pointer = root / POINTER
    if not pointer.is_file():
        return None
    return root / pointer.read_text(encoding="utf-8").strip()


def read_manifest(root: Path) -> Manifest:
    folder = current_generation(root)
    if folder is None:
        raise StoreError(f"No index found in '{root}'. {FIX}")
    path = folder / "manifest.json"
    try:
        manifest = Manifest.from_json(json.loads(path.read_text(encoding="utf-8")))
    except FileNotFoundError as exc:
        raise StoreError(f"The index in '{root}' is incomplete: {path.name} is missing. {FIX}") from exc
    except (json.JSONDecodeError, TypeError, UnicodeDecodeError) as exc:
        raise StoreError(f"The index manifest '{path}' is damaged ({exc}). {FIX}") from exc
    if manifest.format_version != FORMAT_VERSION:
        raise StoreError(
            f"The index in '{root}' has format {manifest.format_version}; this version reads "
            f"format {FORMAT_VERSION}. {FIX}"
        )
    return manifest


def load_index(root: Path, kind: type[StoredIndex] = StoredIndex) -> StoredIndex:
    """Open the current generation without copying its bulk into memory (as ``kind``, a StoredIndex).

    Vectors and the FAISS index are memory-mapped: pages come from the file
    when searched and the kernel may drop them again. A mapped FAISS index must
    never be added to (that aborts the process); a loaded index is read-only.
    """
    manifest = read_manifest(root)
    folder = current_generation(root)
    assert folder is not None
    try:
        chunks = [Chunk(**json.loads(line)) for line in (folder / "chunks.jsonl").open(encoding="utf-8")]
        arrays = {name: np.load(folder / f"{name}.npy", mmap_mode="r", allow_pickle=False) for name in ARRAYS}
        dense = faiss.read_index(str(folder / "dense.faiss"), faiss.IO_FLAG_MMAP_IFC)
        lexical = LexicalIndex.load(folder)
    except (OSError, ValueError, TypeError, RuntimeError, json.JSONDecodeError) as exc:
        raise StoreError(f"The index in '{root}' is damaged or incomplete ({exc}). {FIX}") from exc
    vectors, offsets = arrays["vectors"], arrays["sentence_offsets"]
    sizes = (len(chunks), vectors.shape[0], dense.ntotal, len(lexical), len(offsets) - 1, manifest.chunks)
    if len(set(sizes)) != 1 or offsets[-1] != len(arrays["sentences"]):
        raise StoreError(f"The index in '{root}' is inconsistent (sizes {sizes}). {FIX}")
    if any(arrays[name].shape[1] != manifest.dim for name in ("vectors", "sentences", "background")):
        raise StoreError(f"The index in '{root}' holds vectors of another size than its manifest says. {FIX}")
    return kind(folder, manifest, chunks, vectors, dense, lexical, arrays["sentences"], offsets, arrays["background"])


def make_dense_index(vectors: np.ndarray, flat_limit: int = FLAT_LIMIT) -> tuple[faiss.Index, str]:
    """Exact search while it is fast enough, an inverted-file index above ``flat_limit`` vectors.

    The approximate index keeps 8-bit codes, a quarter of the vectors' size: it
    only proposes candidates, which retrieval rescores exactly from vectors.npy.
    Returns the index and its description for the manifest.
    """
    data = np.ascontiguousarray(vectors, dtype=np.float32)
    n, dim = data.shape
    if n <= flat_limit:
        index = faiss.IndexFlatIP(dim)
        if n:
            index.add(data)
        return index, "flat"
    lists = ivf_lists(n)
    index = faiss.index_factory(dim, f"IVF{lists},SQ8", faiss.METRIC_INNER_PRODUCT)
    ivf = faiss.extract_index_ivf(index)
    ivf.cp.niter = 10
    sample = np.random.default_rng(0).choice(n, min(n, TRAIN_PER_LIST * lists), replace=False)
    index.train(data[np.sort(sample)])
    index.add(data)
    ivf.nprobe = ivf_probes(lists)
    return index, f"IVF{lists},SQ8 nprobe={ivf.nprobe}"


def ivf_lists(n: int) -> int:
    """About 4 sqrt(n) lists, and never fewer than TRAIN_PER_LIST vectors to train each one."""
    return max(1, min(round(4 * math.sqrt(n)), n // TRAIN_PER_LIST))


def ivf_probes(lists: int) -> int:
    """Lists visited per query: 4 sqrt(lists) kept recall@10 >= 0.95 from 10k to 1M vectors (bench)."""
    return min(lists, math.ceil(4 * math.sqrt(lists)))


def save_index(
    root: Path,
    manifest: Manifest,
    chunks: Sequence[Chunk],
    arrays: dict[str, np.ndarray],
    lexical: LexicalIndex,
    flat_limit: int = FLAT_LIMIT,
) -> Path:
    """Write a new generation next to the current one and switch to it atomically (under build_lock).

    Any failure removes what was written, and a full disk or a read-only
    folder becomes a WriteError: one clear line for the user, not a traceback.
    """
    name = f"gen-{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:6]}"
    work = root / f".{name}.tmp"
    try:
        root.mkdir(parents=True, exist_ok=True)
        work.mkdir()
        _write_generation(work, manifest, chunks, arrays, lexical, flat_limit)
        os.rename(work, root / name)
        _switch_pointer(root, name)
    except BaseException as exc:
        error = WriteError(root, exc) if isinstance(exc, OSError) else None  # judged before the cleanup frees space
        shutil.rmtree(work, ignore_errors=True)
        if current_generation(root) != root / name:
            shutil.rmtree(root / name, ignore_errors=True)
        if error is None:
            raise
        raise error from exc
    _fsync_dir(root)
    _remove_old_generations(root, keep=name)
    return root / name


def _write_generation(
    work: Path,
    manifest: Manifest,
    chunks: Sequence[Chunk],
    arrays: dict[str, np.ndarray],
    lexical: LexicalIndex,
    flat_limit: int,
) -> None:
    vectors = arrays["vectors"]
    dense, kind = make_dense_index(vectors, flat_limit)
    manifest = dataclasses.replace(manifest, chunks=len(chunks), dense_index=kind, dim=vectors.shape[1])
    with (work / "chunks.jsonl").open("w", encoding="utf-8") as out:
        for chunk in chunks:
            out.write(json.dumps(dataclasses.asdict(chunk), ensure_ascii=False) + "\n")
    for array in ARRAYS:
        np.save(work / f"{array}.npy", np.ascontiguousarray(arrays[array]), allow_pickle=False)
    with (work / "dense.faiss").open("wb") as out:  # through Python, so that a full disk is an OSError
        faiss.write_index(dense, faiss.PyCallbackIOWriter(out.write))
    lexical.save(work)
    (work / "manifest.json").write_text(
        json.dumps(dataclasses.asdict(manifest), indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    _fsync_tree(work)


def _switch_pointer(root: Path, name: str) -> None:
    """Replace CURRENT atomically; on failure nothing is switched and no temporary file is left."""
    tmp = root / f".{POINTER}.{uuid.uuid4().hex[:6]}"
    try:
        with tmp.open("w", encoding="utf-8") as out:
            out.write(name + "\n")
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, root / POINTER)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _remove_old_generations(root: Path, keep: str) -> None:
    """Old generations and leftovers of killed builds go (callers hold the build lock).

    Readers that still have old files open keep them: POSIX unlink semantics.
    """
    for entry in root.iterdir():
        if entry.name != keep and (entry.name.startswith("gen-") or entry.name.endswith(".tmp")):
            shutil.rmtree(entry, ignore_errors=True)


def _fsync_tree(folder: Path) -> None:
    for entry in folder.iterdir():
        with entry.open("rb") as fh:
            os.fsync(fh.fileno())
    _fsync_dir(folder)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def build_lock(root: Path, wait: bool = True, on_wait: Callable[[str], None] | None = None) -> Iterator[None]:
    """One build at a time per index folder; a second one waits (or fails fast) and says who holds it.

    The lock file is unbuffered, so a full disk fails here, before the work,
    as a WriteError, and never again when the file is closed.
    """
    try:
        root.mkdir(parents=True, exist_ok=True)
        fh = (root / LOCK).open("a+b", buffering=0)
    except OSError as exc:
        raise WriteError(root, exc) from exc
    with fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().decode("utf-8", "replace").strip() or "another process"
            if not wait:
                raise StoreError(f"Another build is running on '{root}' ({holder}).") from None
            if on_wait is not None:
                on_wait(holder)
            fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            fh.truncate(0)
            fh.write(f"pid {os.getpid()} since {time.strftime('%H:%M:%S')}\n".encode())
        except OSError as exc:
            raise WriteError(root, exc) from exc
        try:
            yield
        finally:
            fh.truncate(0)
            fcntl.flock(fh, fcntl.LOCK_UN)
