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
class Weights:
    """How much each ranking counts for one question."""

    dense: float
    lexical: float


_ENTITY = re.compile(r"(?<![.!?]\s)(?<!^)\b[A-ZÆØÅ][\wæøåÆØÅ-]+|\d")


def fusion_weights(question: str) -> Weights:
    """Lexical weight rises with Norwegian wording and with names or numbers in the question."""
    norwegian = looks_norwegian(question)
    lexical = 0.15 + 0.45 * norwegian
    if _ENTITY.search(question.strip()):
        lexical += 0.15
    return Weights(dense=1.0, lexical=lexical)


class Retriever:
    """Loads one index generation and answers searches; picks up a rebuilt index on refresh()."""

    def __init__(self, root: Path, stored: StoredIndex, embedder: Embedder) -> None:
        self.root = root
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

    def search(self, query: str, k: int = 5, mode: str = "hybrid", history: Sequence[str] = ()) -> list[Hit]:
        """Best passages first; ``history`` holds earlier questions of a conversation, newest last."""
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}")
        stored = self._stored
        n = len(stored.chunks)
        if n == 0 or not query.strip():
            return []
        qvec = self.query_vector(query, history)
        dense = stored.vectors @ qvec if n <= 20_000 else None
        candidates: set[int] = set()
        if mode != "lexical":
            _, ids = stored.dense.search(qvec[None, :], min(CANDIDATES, n))
            candidates.update(int(i) for i in ids[0] if i >= 0)
        lex_query = " ".join([*history[-1:], query]) if history else query
        if mode != "dense":
            lex_ids, _ = stored.lexical.search(lex_query, CANDIDATES)
            candidates.update(int(i) for i in lex_ids)
        if not candidates:
            return []
        ids = np.fromiter(candidates, np.int64)
        cos = dense[ids] if dense is not None else stored.vectors[ids] @ qvec
        lex = stored.lexical.score_all(lex_query)[ids] if mode != "dense" else np.zeros(len(ids), np.float32)
        fused = self._fuse(query, cos, lex, mode)
        order = np.argsort(-fused, kind="stable")[:k]
        return [self._hit(stored, int(ids[j]), float(fused[j]), float(cos[j]), float(lex[j])) for j in order]

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
    def _fuse(query: str, cos: np.ndarray, lex: np.ndarray, mode: str) -> np.ndarray:
        if mode == "dense":
            return cos.astype(np.float32)
        top = float(lex.max()) if len(lex) else 0.0
        lex_norm = lex / top if top > 0 else lex
        if mode == "lexical":
            return lex_norm.astype(np.float32)
        w = fusion_weights(query)
        return ((w.dense * cos + w.lexical * lex_norm * 0.1) / (w.dense + 0.1 * w.lexical)).astype(np.float32)

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


def followup_weight(query: str, similarity: float) -> float:
    """Short questions that share little with the last turn lean on it; self-contained ones do not."""
    words = len(query.split())
    if words >= 8:
        return 0.0
    shortness = (8 - words) / 8
    return round(0.6 * shortness * (1.0 - max(similarity, 0.0)) + 0.1 * shortness, 3)
