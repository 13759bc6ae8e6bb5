"""The Retriever: dense (FAISS) and lexical (BM25) search, fused per question.

Dense search carries meaning across languages; BM25 nails Norwegian words,
names and numbers but knows nothing of English questions over Norwegian text.
So the lexical weight depends on the question: its language and whether it
names an entity or a number.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .embedding import Embedder
from .lexical import looks_norwegian
from .settings import Settings
from .store import FIX, StoreError, StoredIndex, current_generation, load_index, read_manifest

CANDIDATES = 50
MODES = ("hybrid", "dense", "lexical")


@dataclass(frozen=True)
class Hit:
    text: str
    source: str
    start_line: int
    end_line: int
    score: float
    heading: str = ""
    lead_in: str = ""
    speaker: str = ""
    unit: str = "line"
    dense: float = 0.0
    lexical: float = 0.0
    chunk_id: int = -1


@dataclass(frozen=True)
class Search:
    """One search with the evidence the answer step needs, tied to the index generation it used."""

    query: str
    vector: np.ndarray
    hits: list[Hit]
    stored: StoredIndex
    background: float  # best cosine to generic off-topic passages
    coverage: float  # idf-weighted share of the question's words that occur in the texts

    def sentence_scores(self, hit: Hit) -> np.ndarray:
        """Cosine of the question to each sentence of the hit's chunk, in order."""
        a, b = self.stored.sentence_offsets[hit.chunk_id : hit.chunk_id + 2]
        return np.asarray(self.stored.sentences[a:b] @ self.vector, dtype=np.float32)


_ENTITY = re.compile(r"(?<=\w\s)[A-ZÆØÅ][\wæøåÆØÅ-]+|\d")


@dataclass(frozen=True)
class Fusion:
    """How the dense and lexical rankings are combined; tuned on the dev set (see README).

    The fused score is ``dense + lexical_weight(question) * bm25 / max(bm25)``, where
    ``dense`` mixes the chunk's cosine with its best sentence's cosine, so a long
    chunk is not diluted by the sentences around its answer.
    """

    lexical_english: float = 0.02
    lexical_norwegian: float = 0.10
    lexical_entity: float = 0.02
    sentence_share: float = 0.7
    adaptive: bool = True

    def lexical_weight(self, question: str) -> float:
        """More lexical weight for Norwegian wording and for names or numbers in the question."""
        if not self.adaptive:
            return (self.lexical_english + self.lexical_norwegian) / 2
        norwegian = looks_norwegian(question)
        weight = self.lexical_english + (self.lexical_norwegian - self.lexical_english) * norwegian
        if _ENTITY.search(question.strip()):
            weight += self.lexical_entity
        return weight


class Retriever:
    """Loads one index generation and answers searches; picks up a rebuilt index on refresh()."""

    def __init__(self, root: Path, stored: StoredIndex, embedder: Embedder, fusion: Fusion = Fusion()) -> None:
        self.root = root
        self.fusion = fusion
        self.embedder = embedder
        self._stored = stored
        self._lock = threading.Lock()

    @classmethod
    def load(cls, index: str | Path = "index", model: str | None = None, settings: Settings | None = None) -> "Retriever":
        """Open an index; the model is the one that built it unless another is named (then it must match)."""
        settings = settings or Settings.from_env()
        root = Path(index)
        manifest = read_manifest(root)
        wanted = model or manifest.model
        if wanted != manifest.model:
            raise StoreError(
                f"The index in '{root}' was built with the model {manifest.model!r} and cannot be "
                f"queried with {wanted!r}. Rebuild it with `python -m assistant build --model {wanted}` "
                f"or query it with its own model."
            )
        embedder = Embedder(settings.replace(model=wanted))
        if embedder.fingerprint != manifest.model_fingerprint:
            raise StoreError(
                f"The index in '{root}' was built with different weights of {wanted!r} "
                f"(fingerprint {manifest.model_fingerprint}, loaded {embedder.fingerprint}). {FIX}"
            )
        return cls(root, load_index(root), embedder)

    @property
    def stored(self) -> StoredIndex:
        return self._stored

    def refresh(self) -> bool:
        """Switch to a newer generation if a build has finished; searches in flight keep the old one."""
        folder = current_generation(self.root)
        if folder is None or folder == self._stored.folder:
            return False
        with self._lock:
            if folder != self._stored.folder:
                fresh = load_index(self.root)
                if fresh.manifest.model_fingerprint != self.embedder.fingerprint:
                    raise StoreError(f"The rebuilt index in '{self.root}' uses another model. {FIX}")
                self._stored = fresh
                return True
        return False

    def search(
        self, query: str, k: int = 5, mode: str = "hybrid", history: Sequence[str] = (), fusion: Fusion | None = None
    ) -> list[Hit]:
        """Best passages first; ``history`` holds earlier questions of a conversation, oldest first."""
        return self.run(query, k, mode, history, fusion).hits

    def run(
        self, query: str, k: int = 5, mode: str = "hybrid", history: Sequence[str] = (), fusion: Fusion | None = None
    ) -> Search:
        """Like search(), plus the evidence for deciding whether the texts answer at all."""
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}")
        stored = self._stored
        qvec = self.query_vector(query, history)
        lex_query = " ".join([*history[-1:], query]) if history else query
        background = float((stored.background @ qvec).max()) if len(stored.background) else 0.0
        fusion = fusion or self.fusion
        hits = self._rank(stored, qvec, query, lex_query, k, mode, fusion) if query.strip() and stored.chunks else []
        return Search(query, qvec, hits, stored, background, stored.lexical.coverage(query))

    def _rank(
        self, stored: StoredIndex, qvec: np.ndarray, query: str, lex_query: str, k: int, mode: str, fusion: Fusion
    ) -> list[Hit]:
        n = len(stored.chunks)
        candidates: list[np.ndarray] = []
        if mode != "lexical":
            _, dense_ids = stored.dense.search(qvec[None, :], min(CANDIDATES, n))
            candidates.append(dense_ids[0][dense_ids[0] >= 0])
        lex_all = stored.lexical.score_all(lex_query) if mode != "dense" else None
        if lex_all is not None:
            positive = np.flatnonzero(lex_all > 0)
            if len(positive) > CANDIDATES:
                positive = positive[np.argpartition(-lex_all[positive], CANDIDATES - 1)[:CANDIDATES]]
            candidates.append(positive)
        ids = np.unique(np.concatenate(candidates)).astype(np.int64) if candidates else np.zeros(0, np.int64)
        if not len(ids):
            return []
        cos = np.asarray(stored.vectors[ids] @ qvec, dtype=np.float32)
        share = fusion.sentence_share
        dense = (1 - share) * cos + share * _best_sentences(stored, ids, qvec)
        lex = lex_all[ids] if lex_all is not None else np.zeros(len(ids), np.float32)
        fused = _fuse(fusion.lexical_weight(query), dense, lex, mode)
        order = np.argsort(-fused, kind="stable")[:k]
        return [self._hit(stored, int(ids[j]), float(fused[j]), float(dense[j]), float(lex[j])) for j in order]

    def query_vector(self, query: str, history: Sequence[str] = ()) -> np.ndarray:
        """The question's embedding, nudged towards recent turns when it is a short follow-up."""
        vec = self.embedder.embed_query(query)
        if not history:
            return vec
        context = self.embedder.embed_query(history[-1])
        weight = followup_weight(query, float(vec @ context))
        mixed = vec + weight * context
        return (mixed / np.linalg.norm(mixed)).astype(np.float32)

    @staticmethod
    def _hit(stored: StoredIndex, i: int, score: float, cos: float, lex: float) -> Hit:
        c = stored.chunks[i]
        return Hit(
            text=c.text,
            source=c.source,
            start_line=c.start_line,
            end_line=c.end_line,
            score=score,
            heading=c.heading,
            lead_in=c.lead_in,
            speaker=c.speaker,
            unit=c.unit,
            dense=cos,
            lexical=lex,
            chunk_id=i,
        )


def _fuse(lexical_weight: float, dense: np.ndarray, lex: np.ndarray, mode: str) -> np.ndarray:
    if mode == "dense":
        return dense
    top = float(lex.max()) if len(lex) else 0.0
    lex_norm = lex / top if top > 0 else lex
    if mode == "lexical":
        return lex_norm.astype(np.float32)
    return (dense + lexical_weight * lex_norm).astype(np.float32)


def _best_sentences(stored: StoredIndex, ids: np.ndarray, qvec: np.ndarray) -> np.ndarray:
    """Per chunk, the cosine of its best-matching sentence."""
    starts, ends = stored.sentence_offsets[ids], stored.sentence_offsets[ids + 1]
    rows = np.concatenate([np.arange(a, b) for a, b in zip(starts, ends)])
    scores = np.asarray(stored.sentences[rows] @ qvec, dtype=np.float32)
    return np.maximum.reduceat(scores, np.concatenate([[0], np.cumsum(ends - starts)[:-1]]))


def followup_weight(query: str, similarity: float) -> float:
    """Short questions that share little with the last turn lean on it; self-contained ones do not."""
    words = len(query.split())
    if words >= 8:
        return 0.0
    shortness = (8 - words) / 8
    return round(0.6 * shortness * (1.0 - max(similarity, 0.0)) + 0.1 * shortness, 3)
