"""The Retriever: candidate passages from dense (FAISS) and lexical (BM25) search, ranked sentence by sentence.

A passage is a whole paragraph or bullet. Each candidate is scored from its own
cosine to the question, its best sentence's cosine and its lexical evidence,
by the ranker fitted on the tune half (``ranking.py``); the hit shows the best
sentence with as much of its paragraph around it as fits in about 400
characters, so a long paragraph never hides its answer and never floods the
page.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import faiss
import numpy as np

from .chunking import Chunk, sentence_spans
from .embedding import Embedder
from .lexical import looks_norwegian
from .meetings import Meeting, Reference, reference
from .ranking import Models, Ranker, load_models
from .settings import Settings
from .store import FIX, StoreError, StoredIndex, current_generation, load_index, read_manifest

CANDIDATES = 50
MODES = ("hybrid", "dense", "lexical")
SINGLE = {"dense": Ranker(weights={"passage": 1.0}), "lexical": Ranker(weights={"lexical": 1.0})}
EXTRACT_CHARS = 400
HISTORY_TURNS = 3  # earlier questions a follow-up may lean on; older ones are dropped
TURN_CHARS = 1000  # each of them is cut to this, like a question, so analysis stays bounded
WHERE_KEYS = ("source", "kind", "after", "before")


class FilterError(ValueError):
    """A ``where`` filter that cannot be applied; the message says which key and why."""


@dataclass(frozen=True)
class Where:
    """Which documents a search may use: one source file, one kind of meeting, a date range (inclusive)."""

    source: str | None = None
    kind: str | None = None
    after: date | None = None
    before: date | None = None

    @classmethod
    def of(cls, where: "Where | Mapping[str, object] | None") -> "Where":
        if where is None or isinstance(where, Where):
            return where or cls()
        unknown = set(where) - set(WHERE_KEYS)
        if unknown:
            raise FilterError(f"unknown filter {sorted(unknown)}; use {', '.join(WHERE_KEYS)}")
        values: dict[str, object] = {}
        for key in ("after", "before"):
            value = where.get(key)
            if value in (None, ""):
                continue
            try:
                values[key] = value if isinstance(value, date) else date.fromisoformat(str(value))
            except ValueError:
                raise FilterError(f"{key} must be a date such as 2024-04-26, not {value!r}") from None
        for key in ("source", "kind"):
            if where.get(key) not in (None, ""):
                values[key] = str(where[key])
        return cls(**values)  # type: ignore[arg-type]

    def __bool__(self) -> bool:
        return any(v is not None for v in (self.source, self.kind, self.after, self.before))

    def admits(self, source: str, meeting: Meeting) -> bool:
        if self.source is not None and source != self.source:
            return False
        if self.kind is not None and meeting.kind.casefold() != self.kind.casefold():
            return False
        if self.after is not None or self.before is not None:
            day = meeting.day
            if day is None or (self.after and day < self.after) or (self.before and day > self.before):
                return False
        return True


@dataclass(frozen=True)
class Hit:
    """One cited extract: the best sentence of a passage with its neighbours, verbatim.

    ``trimmed_before``/``trimmed_after`` say that the passage goes on, so a
    renderer can show "…"; the line span is the extract's own.
    """

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
    sentence: float = 0.0
    lexical: float = 0.0
    meeting: float = 0.0  # how well its document matches the meeting the question names
    title: str = ""
    date: str = ""
    kind: str = ""
    chunk_id: int = -1
    sentences: tuple[int, int] = (0, 1)  # the extract's sentences of the passage, as a range
    best: int = 0  # the passage's best sentence
    trimmed_before: bool = False
    trimmed_after: bool = False


@dataclass(frozen=True)
class Search:
    """One search with the evidence the answer step needs, tied to the index generation it used."""

    query: str
    vector: np.ndarray
    hits: list[Hit]
    stored: StoredIndex
    background: float  # best cosine to generic off-topic passages
    coverage: float  # idf-weighted share of the question's words that occur in the texts
    named: Reference = Reference()  # the meeting or period the question (or its history) names
    ranker: Ranker = Ranker()
    named_sources: frozenset[str] = frozenset()  # the documents that match it best

    def sentence_scores(self, hit: Hit) -> np.ndarray:
        """Cosine of the question to each sentence of the hit's extract, in order."""
        first = int(self.stored.sentence_offsets[hit.chunk_id])
        a, b = hit.sentences
        return np.asarray(self.stored.sentences[first + a : first + b] @ self.vector, dtype=np.float32)

    def hit(self, chunk_id: int) -> Hit:
        """Any passage as a hit of this search, scored by its dense evidence (list items that were not found)."""
        stored = self.stored
        chunk = stored.chunks[chunk_id]
        meeting = stored.meetings.get(chunk.source)
        a, b = stored.sentence_offsets[chunk_id : chunk_id + 2]
        cosines = np.asarray(stored.sentences[a:b] @ self.vector, dtype=np.float32)
        features = {
            "passage": float(stored.vectors[chunk_id] @ self.vector),
            "sentence": float(cosines.max()),
            "lexical": 0.0,
            "lexical_en": 0.0,
            "meeting": float(chunk.source in self.named_sources),
        }
        score = float(self.ranker.score({name: np.array([v], np.float32) for name, v in features.items()})[0])
        return _hit(chunk, chunk_id, score, features, cosines, meeting)


class Retriever:
    """Loads one index generation and answers searches; picks up a rebuilt index on refresh()."""

    def __init__(
        self,
        root: Path,
        stored: StoredIndex,
        embedder: Embedder,
        models: Models | None = None,
        today: Callable[[], date] = date.today,
    ) -> None:
        self.root = root
        self.models = models or load_models()
        self.today = today  # "i fjor" in a question is relative to it
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
        self,
        query: str,
        k: int = 5,
        mode: str = "hybrid",
        history: Sequence[str] = (),
        ranker: Ranker | None = None,
        where: Where | Mapping[str, object] | None = None,
    ) -> list[Hit]:
        """Best passages first; ``history`` holds earlier questions of a conversation, oldest first.

        ``where`` limits the search to documents: ``{"source": file, "kind": "kommunestyre",
        "after": "2024-01-01", "before": "2024-12-31"}`` (any of them).
        """
        return self.run(query, k, mode, history, ranker, where).hits

    def run(
        self,
        query: str,
        k: int = 5,
        mode: str = "hybrid",
        history: Sequence[str] = (),
        ranker: Ranker | None = None,
        where: Where | Mapping[str, object] | None = None,
    ) -> Search:
        """Like search(), plus the evidence for deciding whether the texts answer at all."""
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}")
        where = Where.of(where)
        stored = self._stored
        query = query[:TURN_CHARS]
        history = [turn[:TURN_CHARS] for turn in history[-HISTORY_TURNS:]]
        named = self.named_meeting(stored, query, history)
        focus = named.rest or query  # once the meeting is known, the words naming it only blur the search inside it
        qvec = self.query_vector(focus, history)
        ranker = SINGLE.get(mode) or ranker or self.models.ranker
        sources = named_sources(stored, named)
        hits: list[Hit] = []
        if query.strip() and stored.chunks:
            hits = self._rank(stored, qvec, query, " ".join([*history[-1:], focus]), k, ranker, sources, where)
        background = float((stored.background @ qvec).max()) if len(stored.background) else 0.0
        coverage = stored.lexical.coverage(focus)
        return Search(query, qvec, hits, stored, background, coverage, named, ranker, sources)

    def named_meeting(self, stored: StoredIndex, query: str, history: Sequence[str] = ()) -> Reference:
        """The meeting the question names (with the rest of the question), else the conversation's.

        A follow-up that names nothing ("Og hva med kostnadene?") stays with the
        meeting the last question named, or else with the document that
        answered the last question best.
        """
        named = reference(query, self.today(), stored.places)
        if named or not history or followup_weight(query, 0.0) == 0.0:
            return named if named else Reference()
        earlier = reference(history[-1], self.today(), stored.places)
        if earlier:
            return dataclasses.replace(earlier, rest="")
        vector = self.embedder.embed_query(history[-1])
        ids, features, _ = self.features(stored, vector, history[-1], history[-1])
        if not len(ids):
            return Reference()
        best = int(ids[int(np.argmax(self.models.ranker.score(features)))])
        return Reference(sources=frozenset({stored.chunks[best].source}))

    def features(
        self,
        stored: StoredIndex,
        qvec: np.ndarray,
        query: str,
        lex_query: str,
        named: frozenset[str] = frozenset(),
        where: Where = Where(),
    ) -> tuple[np.ndarray, dict[str, np.ndarray], list[np.ndarray]]:
        """Candidate passage ids, their ranking features, and each one's sentence cosines.

        Candidates are the best passages by dense and by lexical search, plus,
        when the question names a meeting, the best passages of the ``named``
        documents that match it best, so a named meeting is never crowded out.
        """
        allowed = _allowed(stored, where) if where else None
        pools = [_dense_search(stored, qvec, CANDIDATES, allowed)]
        if named:
            pool = np.array([i for source in named for i in stored.by_source.get(source, [])], dtype=np.int64)
            pools.append(_dense_search(stored, qvec, CANDIDATES, pool if allowed is None else np.intersect1d(pool, allowed)))
        lexical = stored.lexical.score_all(lex_query)
        if allowed is not None:
            mask = np.zeros(len(lexical), dtype=bool)
            mask[allowed] = True
            lexical = np.where(mask, lexical, 0.0).astype(np.float32)
        positive = np.flatnonzero(lexical > 0)
        if len(positive) > CANDIDATES:
            positive = positive[np.argpartition(-lexical[positive], CANDIDATES - 1)[:CANDIDATES]]
        ids = np.unique(np.concatenate([*pools, positive])).astype(np.int64)
        starts, ends = stored.sentence_offsets[ids], stored.sentence_offsets[ids + 1]
        rows = np.concatenate([np.arange(a, b) for a, b in zip(starts, ends)]) if len(ids) else np.zeros(0, np.int64)
        cosines = np.asarray(stored.sentences[rows] @ qvec, dtype=np.float32)
        per_passage = np.split(cosines, np.cumsum(ends - starts)[:-1]) if len(ids) else []
        english = 1.0 - looks_norwegian(query)
        features = {
            "passage": np.asarray(stored.vectors[ids] @ qvec, dtype=np.float32),
            "sentence": np.array([s.max() for s in per_passage], dtype=np.float32),
            "lexical": lexical[ids],
            "lexical_en": lexical[ids] * np.float32(english),
            "meeting": np.array([stored.chunks[i].source in named for i in ids], dtype=np.float32),
        }
        return ids, features, per_passage

    def _rank(
        self,
        stored: StoredIndex,
        qvec: np.ndarray,
        query: str,
        lex_query: str,
        k: int,
        ranker: Ranker,
        named: frozenset[str],
        where: Where,
    ) -> list[Hit]:
        ids, features, per_passage = self.features(stored, qvec, query, lex_query, named, where)
        if not len(ids):
            return []
        scores = ranker.score(features)
        order = np.argsort(-scores, kind="stable")[:k]
        hits = []
        for j in order:
            chunk = stored.chunks[int(ids[j])]
            values = {f: float(v[j]) for f, v in features.items()}
            hits.append(_hit(chunk, int(ids[j]), float(scores[j]), values, per_passage[j], stored.meetings.get(chunk.source)))
        return hits

    def query_vector(self, query: str, history: Sequence[str] = ()) -> np.ndarray:
        """The question's embedding, nudged towards recent turns when it is a short follow-up."""
        vec = self.embedder.embed_query(query)
        if not history:
            return vec
        context = self.embedder.embed_query(history[-1])
        weight = followup_weight(query, float(vec @ context))
        mixed = vec + weight * context
        return (mixed / np.linalg.norm(mixed)).astype(np.float32)


def named_sources(stored: StoredIndex, named: Reference) -> frozenset[str]:
    """The documents that match what the question names best (none when it names nothing they match)."""
    if not named:
        return frozenset()
    match = {source: named.match(meeting, source) for source, meeting in stored.meetings.items()}
    best = max(match.values(), default=0.0)
    return frozenset(source for source, value in match.items() if value == best > 0)


def _allowed(stored: StoredIndex, where: Where) -> np.ndarray:
    """Passage ids of the documents the filter admits."""
    sources = [s for s in stored.by_source if where.admits(s, stored.meetings.get(s, Meeting()))]
    return np.array(sorted(i for s in sources for i in stored.by_source[s]), dtype=np.int64)


def _dense_search(stored: StoredIndex, qvec: np.ndarray, k: int, allowed: np.ndarray | None) -> np.ndarray:
    """The k passages with the highest cosine, among ``allowed`` when given (FAISS skips the rest)."""
    if allowed is not None and not len(allowed):
        return np.zeros(0, np.int64)
    params = None
    if allowed is not None:
        selector = faiss.IDSelectorBatch(allowed)
        try:
            ivf = faiss.extract_index_ivf(stored.dense)
            params = faiss.SearchParametersIVF(sel=selector, nprobe=ivf.nprobe)
        except RuntimeError:  # a flat index
            params = faiss.SearchParameters(sel=selector)
    _, found = stored.dense.search(qvec[None, :], min(k, len(stored.chunks)), params=params)
    return found[0][found[0] >= 0].astype(np.int64)


def _hit(
    chunk: Chunk,
    chunk_id: int,
    score: float,
    features: dict[str, float],
    sentence_cosines: np.ndarray,
    meeting: Meeting | None,
) -> Hit:
    spans = sentence_spans(chunk.text) or [(0, len(chunk.text))]
    best = int(np.argmax(sentence_cosines)) if len(sentence_cosines) == len(spans) else 0
    first, last = extract_window(spans, best, EXTRACT_CHARS)
    lines = chunk.sentence_lines or ((chunk.start_line, chunk.end_line),) * len(spans)
    text = chunk.text[spans[first][0] : spans[last][1]]
    return Hit(
        text=text,
        source=chunk.source,
        start_line=lines[first][0],
        end_line=lines[last][1],
        score=score,
        heading=chunk.heading,
        lead_in=chunk.lead_in,
        speaker=chunk.speaker if chunk.speaker not in text else "",  # a quote cut short still names its speaker
        unit=chunk.unit,
        dense=features["passage"],
        sentence=features["sentence"],
        lexical=features["lexical"],
        meeting=features["meeting"],
        title=meeting.label() if meeting else "",
        date=meeting.date if meeting else "",
        kind=meeting.kind if meeting else "",
        chunk_id=chunk_id,
        sentences=(first, last + 1),
        best=best,
        trimmed_before=first > 0,
        trimmed_after=last < len(spans) - 1,
    )


def extract_window(spans: Sequence[tuple[int, int]], best: int, limit: int) -> tuple[int, int]:
    """First and last sentence to show: the best one, then neighbours, next and previous in turn, while they fit.

    The best sentence is shown whole even when it alone is longer than ``limit``.
    """
    first = last = best
    grew = True
    while grew:
        grew = False
        for candidate in (last + 1, first - 1):
            if 0 <= candidate < len(spans):
                a, b = min(first, candidate), max(last, candidate)
                if spans[b][1] - spans[a][0] <= limit:
                    first, last, grew = a, b, True
    return first, last


def followup_weight(query: str, similarity: float) -> float:
    """Short questions that share little with the last turn lean on it; self-contained ones do not."""
    words = len(query.split())
    if words >= 8:
        return 0.0
    shortness = (8 - words) / 8
    return round(0.6 * shortness * (1.0 - max(similarity, 0.0)) + 0.1 * shortness, 3)
