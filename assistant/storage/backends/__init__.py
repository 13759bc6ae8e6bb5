"""Where the index lives: the storage seam between retrieval and the index.

Two backends implement it. ``local`` (the default) is the FAISS + BM25 files
of ``store.py`` in one folder, memory-mapped by each process; ``qdrant`` keeps
the passages in a Qdrant collection (in-process local mode, one server, or a
sharded cluster) for corpora that outgrow one machine. Ranking, the decline
decision and answers stay in ``retrieval.py`` and ``answer.py``: a backend
supplies candidates and their evidence, never a ranking of its own.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from ..bm25 import LexicalIndex, Vocabulary
from ...ingest.chunking import Chunk
from ..filters import Where
from ...ingest.meetings import Meeting
from ...settings import Settings
from ..store import Manifest

BACKENDS = ("local", "qdrant")


@dataclass(frozen=True)
class Evidence:
    """Candidate passages of one question and what the ranker weighs them by, aligned by position.

    ``ids`` are in the index's own order (document, then position in it), so
    that passages with equal scores rank the same way on every backend.
    """

    ids: np.ndarray
    passage: np.ndarray  # cosine of the passage to the question
    sentence: np.ndarray  # cosine of its best sentence
    lexical: np.ndarray  # share of the question's attainable BM25 score (0..1)
    sources: list[str]


class Generation(Protocol):
    """One immutable view of the index that searches share; a rebuilt index is a new Generation."""

    key: str  # changes whenever a build commits
    manifest: Manifest
    meetings: dict[str, Meeting]
    places: frozenset[str]
    background: np.ndarray
    lexical: Vocabulary

    def __len__(self) -> int: ...

    def evidence(self, qvec: np.ndarray, lex_query: str, named: frozenset[str], where: Where, k: int) -> Evidence:
        """The k best passages by dense search (also inside the ``named`` documents) and by BM25, within ``where``."""
        ...

    def vectors_of(self, ids: Sequence[int]) -> tuple[np.ndarray, list[np.ndarray]]:
        """Passage vectors and each passage's sentence vectors, for rescoring a few passages exactly."""
        ...

    def chunks_at(self, ids: Sequence[int]) -> list[Chunk]: ...

    def list_of(self, chunk_id: int) -> tuple[int, ...]:
        """Every item of the bulleted list the passage belongs to or leads in to, in order; () when none."""
        ...

    def document_chunks(self, source: str) -> list[Chunk]:
        """A document's passages in order, so a build can keep an unchanged file without reading it."""
        ...

    def embedded(self, keys: Sequence[str]) -> Iterator[tuple[Chunk, np.ndarray, np.ndarray]]:
        """Passages whose text key (chunking.text_key of embed_text) is among ``keys``, with their passage
        and sentence vectors: the embedding cache of the next build (a backend may yield more)."""
        ...


class Backend(Protocol):
    name: str
    label: str  # where the index is, for messages: its folder, or the Qdrant collection and where it lives
    keeps_unchanged: bool  # True: a build writes only the changed documents' passages

    def manifest(self) -> Manifest: ...

    def current(self) -> str | None:
        """The key of the current generation, None when there is no index."""
        ...

    def load(self) -> Generation: ...

    def lock(self, on_wait: Callable[[str], None] | None = None) -> contextlib.AbstractContextManager[None]: ...

    def save(
        self,
        manifest: Manifest,
        chunks: Sequence[Chunk],
        arrays: dict[str, np.ndarray],
        lexical: LexicalIndex,
        previous: Generation | None,
        fresh: frozenset[str],
    ) -> None:
        """Commit a new generation atomically; readers see the old one or the new one, never a mix.

        ``chunks`` are all passages of the new generation; with ``keeps_unchanged``
        and a ``previous`` generation, ``arrays`` hold the vectors of the passages
        of the ``fresh`` documents only (added, changed or relabelled), in order.
        """
        ...


def open_backend(settings: Settings) -> Backend:
    """The backend the settings name; the Qdrant client is imported only when it is used."""
    if settings.backend == "local":
        from .local import LocalBackend

        return LocalBackend(settings.index)
    if settings.backend == "qdrant":
        try:
            from .qdrant import QdrantBackend
        except ImportError as exc:
            raise ValueError(f"the qdrant backend needs qdrant-client: pip install 'ks-assistant[qdrant]' ({exc})") from exc
        return QdrantBackend(settings)
    raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, not {settings.backend!r}")


def read_manifest(settings: Settings) -> Manifest:
    """The current index's manifest on the configured backend (StoreError when there is none)."""
    return open_backend(settings).manifest()

