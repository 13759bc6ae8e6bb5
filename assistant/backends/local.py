"""The default backend: one folder of FAISS, BM25 and vector files per generation (``store.py``)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from ..bm25 import LexicalIndex
from ..chunking import Chunk
from ..store import Manifest, StoredIndex, build_lock, current_generation, load_index, read_manifest, save_index


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

    def load(self) -> StoredIndex:
        return load_index(self.root)

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
