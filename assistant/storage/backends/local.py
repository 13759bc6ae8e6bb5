"""The default backend: one folder of FAISS, BM25 and vector files per generation (``store.py``), searched in-process."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import faiss
import numpy as np

from ..bm25 import LexicalIndex
from ...ingest.chunking import Chunk
from ..filters import Where
from ...ingest.meetings import Meeting
from ..store import Manifest, StoredIndex, build_lock, current_generation, load_index, read_manifest, save_index
from . import Evidence


class LocalGeneration(StoredIndex):
    """A loaded generation, searched with FAISS (memory-mapped) and the BM25 matrix."""

    @property
    def key(self) -> str:
        return str(self.folder)

    def __len__(self) -> int:
        return len(self.chunks)

    def evidence(self, qvec: np.ndarray, lex_query: str, named: frozenset[str], where: Where, k: int) -> Evidence:
        """FAISS's k best (also among the named documents' passages), BM25's k best, and their features."""
        allowed = self._allowed(where) if where else None
        pools = [self._dense_search(qvec, k, allowed)]
        if named:
            pool = np.array([i for source in named for i in self.by_source.get(source, [])], dtype=np.int64)
            pools.append(self._dense_search(qvec, k, pool if allowed is None else np.intersect1d(pool, allowed)))
        lexical = self.lexical.score_all(lex_query)
        if allowed is not None:
            mask = np.zeros(len(lexical), dtype=bool)
            mask[allowed] = True
            lexical = np.where(mask, lexical, 0.0).astype(np.float32)
        positive = np.flatnonzero(lexical > 0)
        if len(positive) > k:
            positive = positive[np.argpartition(-lexical[positive], k - 1)[:k]]
        ids = np.unique(np.concatenate([*pools, positive])).astype(np.int64)
        starts, ends = self.sentence_offsets[ids], self.sentence_offsets[ids + 1]
        rows = np.concatenate([np.arange(a, b) for a, b in zip(starts, ends)]) if len(ids) else np.zeros(0, np.int64)
        cosines = np.asarray(self.sentences[rows] @ qvec, dtype=np.float32)
        per_passage = np.split(cosines, np.cumsum(ends - starts)[:-1]) if len(ids) else []
        return Evidence(
            ids=ids,
            passage=np.asarray(self.vectors[ids] @ qvec, dtype=np.float32),
            sentence=np.array([s.max() for s in per_passage], dtype=np.float32),
            lexical=lexical[ids],
            sources=[self.chunks[i].source for i in ids],
        )

    def vectors_of(self, ids: Sequence[int]) -> tuple[np.ndarray, list[np.ndarray]]:
        offsets = self.sentence_offsets
        return self.vectors[list(ids)], [self.sentences[offsets[i] : offsets[i + 1]] for i in ids]

    def chunks_at(self, ids: Sequence[int]) -> list[Chunk]:
        return [self.chunks[i] for i in ids]

    def list_of(self, chunk_id: int) -> tuple[int, ...]:
        return self.lists.get(chunk_id, ())

    def document_chunks(self, source: str) -> list[Chunk]:
        return [self.chunks[i] for i in self.by_source.get(source, [])]

    def embedded(self, keys: Sequence[str]) -> Iterator[tuple[Chunk, np.ndarray, np.ndarray]]:
        """Every passage with its vector and sentence vectors: the files are memory-mapped, so all cost nothing."""
        offsets = self.sentence_offsets
        for i, chunk in enumerate(self.chunks):
            yield chunk, self.vectors[i], self.sentences[offsets[i] : offsets[i + 1]]

    def _allowed(self, where: Where) -> np.ndarray:
        """Passage ids of the documents the filter admits."""
        sources = [s for s in self.by_source if where.admits(s, self.meetings.get(s, Meeting()))]
        return np.array(sorted(i for s in sources for i in self.by_source[s]), dtype=np.int64)

    def _dense_search(self, qvec: np.ndarray, k: int, allowed: np.ndarray | None) -> np.ndarray:
        """The k passages with the highest cosine, among ``allowed`` when given (FAISS skips the rest)."""
        if allowed is not None and not len(allowed):
            return np.zeros(0, np.int64)
        params = None
        if allowed is not None:
            selector = faiss.IDSelectorBatch(allowed)
            try:
                ivf = faiss.extract_index_ivf(self.dense)
                params = faiss.SearchParametersIVF(sel=selector, nprobe=ivf.nprobe)
            except RuntimeError:  # a flat index
                params = faiss.SearchParameters(sel=selector)
        _, found = self.dense.search(qvec[None, :], min(k, len(self.chunks)), params=params)
        return found[0][found[0] >= 0].astype(np.int64)


class LocalBackend:
    """Every generation holds every passage, so a build hands over all vectors (the cache makes them cheap)."""

    name = "local"
    keeps_unchanged = False

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.label = str(root)

    def manifest(self) -> Manifest:
        return read_manifest(self.root)

    def current(self) -> str | None:
        folder = current_generation(self.root)
        return None if folder is None else str(folder)

    def load(self) -> LocalGeneration:
        return load_index(self.root, LocalGeneration)  # type: ignore[return-value]

    def lock(self, on_wait: Callable[[str], None] | None = None) -> contextlib.AbstractContextManager[None]:
        return build_lock(self.root, on_wait=on_wait)

    def save(
        self,
        manifest: Manifest,
        chunks: Sequence[Chunk],
        arrays: dict[str, np.ndarray],
        lexical: LexicalIndex,
        previous: object,
        fresh: frozenset[str],
    ) -> None:
        save_index(self.root, manifest, chunks, arrays, lexical)
