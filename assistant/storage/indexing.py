"""Build the index from the source folder, re-embedding only what changed.

Files are matched by content hash: an unchanged file keeps its chunks and
vectors from the current index without being read again; a changed file is
re-chunked and only chunks whose embedded text is new are embedded.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
from tqdm.auto import tqdm

from .backends import Backend, Generation, open_backend, read_manifest
from .bm25 import LexicalIndex
from ..ingest.chunking import Chunk, chunk_document, sentence_texts, text_key
from ..models.embedding import Embedder
from ..settings import DATA, DEFAULT_SOURCES, Settings
from ..ingest.sources import Skipped, SourceError, read_document, scan_sources, seed_bundled
from .store import Manifest, StoreError

CHUNKER_VERSION = 2
EMBED_BATCH = 256

Progress = Callable[[str, int, int], None]


@dataclass
class BuildReport:
    files_added: int = 0
    files_changed: int = 0
    files_removed: int = 0
    files_unchanged: int = 0
    files_relabelled: int = 0
    files_skipped: int = 0
    chunks_embedded: int = 0
    chunks_total: int = 0
    seconds: float = 0.0
    skipped: list[Skipped] = field(default_factory=list)
    notes: list[Skipped] = field(default_factory=list)  # indexed, but something was ignored

    def to_json(self) -> dict[str, object]:
        data = asdict(self)
        data["seconds"] = round(self.seconds, 2)
        return data

    def summary(self, lang: str = "en") -> str:
        """One summary for the CLI (English) and the page (Norwegian)."""
        head, relabelled, skipped, note = _SUMMARY[lang]
        lines = [head.format(r=self, seconds=f"{self.seconds:.1f}")]
        lines += [relabelled.format(r=self)] if self.files_relabelled else []
        lines += [skipped.format(s=s) for s in self.skipped]
        lines += [note.format(s=s) for s in self.notes]
        return "\n".join(lines)


_SUMMARY = {
    "en": (
        "{r.files_added} added, {r.files_changed} changed, {r.files_removed} removed, {r.files_unchanged} unchanged, "
        "{r.files_skipped} skipped files; {r.chunks_embedded} of {r.chunks_total} passages embedded in {seconds} s.",
        "  {r.files_relabelled} unchanged files with new metadata (nothing re-embedded)",
        "  skipped {s.source}: {s.reason}",
        "  note on {s.source}: {s.reason}",
    ),
    "no": (
        "Indeksen er oppdatert: {r.files_added} nye, {r.files_changed} endrede, {r.files_removed} fjernede og "
        "{r.files_unchanged} uendrede filer; {r.chunks_embedded} av {r.chunks_total} tekstbiter lagt inn på {seconds} s.",
        "{r.files_relabelled} uendrede filer fikk nye metadata (ingenting lagt inn på nytt)",
        "Hoppet over {s.source}: {s.reason}",
        "Merknad om {s.source}: {s.reason}",
    ),
}


def chunker_settings(settings: Settings) -> dict[str, object]:
    return {"version": CHUNKER_VERSION, "max_chars": settings.max_chunk_chars}


def prepare_sources(settings: Settings) -> None:
    """The default texts folder gets the bundled meeting text on first use; a folder the user names is left as it is."""
    if settings.sources == DEFAULT_SOURCES:
        seed_bundled(settings.sources)


def index_status(settings: Settings) -> str | None:
    """Why the index needs a (re)build, or None when it is current with sources and model."""
    prepare_sources(settings)
    try:
        manifest = read_manifest(settings)
    except StoreError as exc:
        return str(exc)
    if manifest.model != settings.model:
        return f"the index was built with {manifest.model}, the setting is {settings.model}"
    if manifest.model_fingerprint != Embedder(settings).fingerprint:
        return "the index was built with other weights or another precision"
    if manifest.chunker != chunker_settings(settings):
        return "the chunker settings changed"
    files, _ = scan_sources(settings.sources, int(settings.max_file_mb * 1e6))
    current = {f.source: (f.sha256, f.sidecar_sha256) for f in files}
    indexed = {s: (str(meta["sha256"]), str(meta.get("sidecar_sha256", ""))) for s, meta in manifest.sources.items()}
    if current != indexed:
        return "the source texts changed"
    return None


def build_index(settings: Settings, full: bool = False, progress: Progress | None = None) -> BuildReport:
    """Scan, diff, chunk, embed what is new, and save a new generation atomically."""
    started = time.perf_counter()
    notify = progress or _ConsoleProgress()
    prepare_sources(settings)
    backend = open_backend(settings)
    with backend.lock(on_wait=lambda who: notify(f"waiting for the build lock ({who})", 0, 0)):
        embedder = Embedder(settings)
        previous = None if full else _reusable(settings, embedder, backend)
        files, skipped = scan_sources(settings.sources, int(settings.max_file_mb * 1e6))
        report = BuildReport(skipped=list(skipped))
        old_sources = previous.manifest.sources if previous else {}
        chunks: list[Chunk] = []
        fresh: set[str] = set()  # documents whose passages are written anew: added, changed or relabelled
        sources: dict[str, dict[str, object]] = {}
        now = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        for n, file in enumerate(files, 1):
            notify("reading", n, len(files))
            old = old_sources.get(file.source) or {}
            same_text = previous is not None and old.get("sha256") == file.sha256
            if same_text and old.get("sidecar_sha256", "") == file.sidecar_sha256 and old.get("meeting"):
                report.files_unchanged += 1
                meeting = old.get("meeting") or {}
            else:
                try:
                    doc = read_document(file)
                except SourceError as exc:
                    report.skipped.append(Skipped(file.source, exc.reason))
                    continue
                report.notes.extend(Skipped(file.source, note) for note in doc.notes)
                fresh.add(file.source)
                meeting = doc.meeting.to_json()
                if same_text:
                    report.files_relabelled += 1  # only the sidecar changed: same chunks, new meeting
                elif old:
                    report.files_changed += 1
                else:
                    report.files_added += 1
            if same_text:
                new_chunks = previous.document_chunks(file.source)  # type: ignore[union-attr]
            else:
                new_chunks = chunk_document(doc, settings.max_chunk_chars)
            sources[file.source] = {
                "sha256": file.sha256,
                "sidecar_sha256": file.sidecar_sha256,
                "chunks": len(new_chunks),
                "bytes": file.size,
                "meeting": meeting,
                "added": old.get("added") or now,
            }
            chunks.extend(new_chunks)
        report.files_removed = len(set(old_sources) - set(sources))
        report.files_skipped = len(report.skipped)

        writing = chunks if previous is None or not backend.keeps_unchanged else [c for c in chunks if c.source in fresh]
        arrays, report.chunks_embedded = _all_vectors(writing, embedder, previous, notify)
        notify("indexing words", 0, 0)
        lexical = LexicalIndex.build([c.embed_text for c in chunks])
        manifest = Manifest(
            model=settings.model,
            model_fingerprint=embedder.fingerprint,
            dim=embedder.dim,
            chunker=chunker_settings(settings),
            sources=sources,
            built_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        )
        backend.save(manifest, chunks, arrays, lexical, previous, frozenset(fresh))
    report.chunks_total = len(chunks)
    report.seconds = time.perf_counter() - started
    return report


def _reusable(settings: Settings, embedder: Embedder, backend: Backend) -> Generation | None:
    """The current index if its chunks and vectors can be reused, else None (full rebuild)."""
    try:
        previous = backend.load()
    except StoreError:
        return None
    m = previous.manifest
    if m.model != settings.model or m.model_fingerprint != embedder.fingerprint:
        return None
    if m.chunker != chunker_settings(settings):
        return None
    return previous


def background_texts() -> list[str]:
    """Generic off-topic passages shipped with the package; see answer.decline_features."""
    raw = (DATA / "background.txt").read_text(encoding="utf-8")
    return [line.strip() for line in raw.splitlines() if line.strip() and not line.startswith("#")]


def _cache_from(previous: Generation | None, chunks: Sequence[Chunk]) -> dict[str, np.ndarray]:
    """The current index is the embedding cache: text key -> vector, for passages, sentences and background."""
    cache: dict[str, np.ndarray] = {}
    if previous is None:
        return cache
    for chunk, vector, sentences in previous.embedded([text_key(c.embed_text) for c in chunks]):
        cache[text_key(chunk.embed_text)] = vector
        for text, row in zip(sentence_texts(chunk), sentences):
            cache[text_key(text)] = row
    for text, vector in zip(background_texts(), previous.background):
        cache.setdefault(text_key("background:" + text), vector)
    return cache


def _embed(
    texts: list[str], embedder: Embedder, cache: dict[str, np.ndarray], notify: Progress, stage: str, key_prefix: str = ""
) -> tuple[np.ndarray, int]:
    """Vectors for texts, embedding each text the cache has not seen once, however often it occurs
    (a file of "Ja. Ja. Ja. …" is one sentence, not half a million); returns (vectors, embedded)."""
    vectors = np.empty((len(texts), embedder.dim), np.float32)
    todo: dict[str, list[int]] = {}
    for i, text in enumerate(texts):
        key = text_key(key_prefix + text)
        hit = cache.get(key)
        if hit is None:
            todo.setdefault(key, []).append(i)
        else:
            vectors[i] = hit
    keys = list(todo)
    for start in range(0, len(keys), EMBED_BATCH):
        batch = keys[start : start + EMBED_BATCH]
        notify(stage, start, len(keys))
        for key, vector in zip(batch, embedder.embed_passages([texts[todo[key][0]] for key in batch])):
            vectors[todo[key]] = vector
            cache[key] = vector
    if keys:
        notify(stage, len(keys), len(keys))
    return vectors, len(keys)


def _all_vectors(
    chunks: list[Chunk], embedder: Embedder, previous: Generation | None, notify: Progress
) -> tuple[dict[str, np.ndarray], int]:
    cache = _cache_from(previous, chunks)
    vectors, embedded = _embed([c.embed_text for c in chunks], embedder, cache, notify, "embedding passages")
    per_chunk = [sentence_texts(c) for c in chunks]
    flat = [t for texts in per_chunk for t in texts]
    sentence_vectors, _ = _embed(flat, embedder, cache, notify, "embedding sentences")
    rows: list[np.ndarray] = []
    offsets = np.zeros(len(chunks) + 1, np.int64)
    cursor = 0
    for i, texts in enumerate(per_chunk):
        if texts:
            rows.append(sentence_vectors[cursor : cursor + len(texts)])
            cursor += len(texts)
        else:
            rows.append(vectors[i : i + 1])
        offsets[i + 1] = offsets[i] + len(rows[-1])
    background, _ = _embed(background_texts(), embedder, cache, notify, "embedding background", "background:")
    sentences = np.concatenate(rows) if rows else np.zeros((0, embedder.dim), np.float32)
    arrays = {"vectors": vectors, "sentences": sentences, "sentence_offsets": offsets, "background": background}
    return arrays, embedded


class _ConsoleProgress:
    """A tqdm bar per stage on stderr, so long builds show movement."""

    def __init__(self) -> None:
        self.stage = ""
        self.bar: tqdm | None = None

    def __call__(self, stage: str, done: int, total: int) -> None:
        if stage != self.stage:
            if self.bar is not None:
                self.bar.close()
            self.stage = stage
            self.bar = tqdm(total=total or None, desc=stage, unit="", file=sys.stderr, leave=False) if total else None
            if not total:
                print(f"{stage} ...", file=sys.stderr)
        if self.bar is not None:
            self.bar.n = done
            self.bar.refresh()
