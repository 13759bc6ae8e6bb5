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
import functools
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np

from ..ingest.chunking import Chunk, sentence_spans
from ..models.embedding import Embedder
from ..ingest.lexical import looks_norwegian
from ..storage.filters import WHERE_KEYS, FilterError, Where  # noqa: F401  (FilterError and WHERE_KEYS: re-exported for callers of retrieval)
from ..ingest.meetings import Meeting, Reference, reference
from .ranking import Models, Ranker, load_models
from ..models.reader import Reader, load_reader
from ..settings import Settings
from ..storage.backends import Backend, Generation, open_backend
from ..storage.store import FIX, StoreError

CANDIDATES = 50
MODES = ("hybrid", "dense", "lexical")
SINGLE = {"dense": Ranker(weights={"passage": 1.0}), "lexical": Ranker(weights={"lexical": 1.0})}
EXTRACT_CHARS = 400
HISTORY_TURNS = 3  # earlier questions a follow-up may lean on; older ones are dropped
TURN_CHARS = 1000  # each of them is cut to this, like a question, so analysis stays bounded
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
    stored: Generation
    background: float  # best cosine to generic off-topic passages
    coverage: float  # idf-weighted share of the question's words that occur in the texts
    named: Reference = Reference()  # the meeting or period the question (or its history) names
    ranker: Ranker = Ranker()
    named_sources: frozenset[str] = frozenset()  # the documents that match it best

    def sentence_scores(self, hit: Hit) -> np.ndarray:
        """Cosine of the question to each sentence of the hit's extract, in order."""
        _, [sentences] = self.stored.vectors_of([hit.chunk_id])
        a, b = hit.sentences
        return np.asarray(sentences[a:b] @ self.vector, dtype=np.float32)

    def hit(self, chunk_id: int) -> Hit:
        """Any passage as a hit of this search, scored by its dense evidence (list items that were not found)."""
        stored = self.stored
        [chunk] = stored.chunks_at([chunk_id])
        meeting = stored.meetings.get(chunk.source)
        passages, [sentences] = stored.vectors_of([chunk_id])
        cosines = np.asarray(sentences @ self.vector, dtype=np.float32)
        features = {
            "passage": float(passages[0] @ self.vector),
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
        root: Path | Backend,
        stored: Generation,
        embedder: Embedder,
        models: Models | None = None,
        today: Callable[[], date] = date.today,
        reader: Reader | None = None,
    ) -> None:
        self.backend = open_backend(Settings(index=root)) if isinstance(root, (str, Path)) else root
        self.models = models or load_models()
        self.reader = reader  # reads the first passages with the question (reader.py); None: the ranking alone
        self.today = today  # "i fjor" in a question is relative to it
        self.embedder = embedder
        self._stored = stored
        self._lock = threading.Lock()

    @classmethod
    def load(cls, index: str | Path = "index", model: str | None = None, settings: Settings | None = None) -> "Retriever":
        """Open an index; the model is the one that built it unless another is named (then it must match)."""
        settings = (settings or Settings.from_env()).replace(index=Path(index))
        backend = open_backend(settings)
        manifest = backend.manifest()
        wanted = model or manifest.model
        if wanted != manifest.model:
            raise StoreError(
                f"The index in '{backend.label}' was built with the model {manifest.model!r} and cannot be "
                f"queried with {wanted!r}. Rebuild it with `python -m assistant build --model {wanted}` "
                f"or query it with its own model."
            )
        embedder = Embedder(settings.replace(model=wanted))
        if embedder.fingerprint != manifest.model_fingerprint:
            raise StoreError(
                f"The index in '{backend.label}' was built with different weights of {wanted!r} "
                f"(fingerprint {manifest.model_fingerprint}, loaded {embedder.fingerprint}). {FIX}"
            )
        models = load_models()
        reader = load_reader(settings.replace(model=wanted)) if models.reading is not None else None
        return cls(backend, backend.load(), embedder, models, reader=reader)

    @property
    def stored(self) -> Generation:
        return self._stored

    def refresh(self) -> bool:
        """Switch to a newer generation if a build has finished; searches in flight keep the old one."""
        key = self.backend.current()
        if key is None or key == self._stored.key:
            return False
        with self._lock:
            if key != self._stored.key:
                fresh = self.backend.load()
                if fresh.manifest.model_fingerprint != self.embedder.fingerprint:
                    raise StoreError(f"The rebuilt index in '{self.backend.label}' uses another model. {FIX}")
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
        where.check(stored.meetings)
        query = query[:TURN_CHARS]
        history = [turn[:TURN_CHARS] for turn in history[-HISTORY_TURNS:]]
        embed = functools.lru_cache(maxsize=None)(self.embedder.embed_query)  # each turn embedded once per run
        named = self.named_meeting(stored, query, history, embed)
        focus = named.rest or query  # once the meeting is known, the words naming it only blur the search inside it
        qvec = self.query_vector(focus, history, embed)
        ranker = SINGLE.get(mode) or ranker or self.models.ranker
        sources = named_sources(stored, named)
        hits: list[Hit] = []
        words = " ".join([*history[-1:], focus])  # what BM25 searches: a follow-up's words with the last turn's
        if query.strip() and len(stored):
            hits = self._rank(stored, qvec, query, words, k, ranker, sources, where)
        background = float((stored.background @ qvec).max()) if len(stored.background) else 0.0
        leans = bool(history) and followup_weight(query, 0.0) > 0.0  # "Hvor mye?" asks about the last turn's words
        coverage = stored.lexical.coverage(words if leans else focus)
        return Search(query, qvec, hits, stored, background, coverage, named, ranker, sources)

    def named_meeting(
        self, stored: Generation, query: str, history: Sequence[str] = (), embed: Callable[[str], np.ndarray] | None = None
    ) -> Reference:
        """The meeting the question names (with the rest of the question), else the conversation's.

        A follow-up that names nothing ("Og hva med kostnadene?") stays with the
        meeting the last question named, or else with the document that
        answered the last question best.
        """
        named = reference(query, self.today(), stored.places)
        if named or not history or not len(stored) or followup_weight(query, 0.0) == 0.0:
            return named if named else Reference()
        earlier = reference(history[-1], self.today(), stored.places)
        if earlier:
            return dataclasses.replace(earlier, rest="")
        vector = (embed or self.embedder.embed_query)(history[-1])
        ids, features = self.features(stored, vector, history[-1], history[-1])
        if not len(ids):
            return Reference()
        [best] = stored.chunks_at([int(ids[int(np.argmax(self.models.ranker.score(features)))])])
        return Reference(sources=frozenset({best.source}))

    def features(
        self,
        stored: Generation,
        qvec: np.ndarray,
        query: str,
        lex_query: str,
        named: frozenset[str] = frozenset(),
        where: Where = Where(),
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Candidate passage ids and their ranking features.

        Candidates are the best passages by dense and by lexical search, plus,
        when the question names a meeting, the best passages of the ``named``
        documents that match it best, so a named meeting is never crowded out.
        """
        found = stored.evidence(qvec, lex_query, named, where, CANDIDATES)
        english = 1.0 - looks_norwegian(query)
        features = {
            "passage": found.passage,
            "sentence": found.sentence,
            "lexical": found.lexical,
            "lexical_en": found.lexical * np.float32(english),
            "meeting": np.array([source in named for source in found.sources], dtype=np.float32),
        }
        return found.ids, features

    def _rank(
        self,
        stored: Generation,
        qvec: np.ndarray,
        query: str,
        lex_query: str,
        k: int,
        ranker: Ranker,
        named: frozenset[str],
        where: Where,
    ) -> list[Hit]:
        ids, features = self.features(stored, qvec, query, lex_query, named, where)
        if not len(ids):
            return []
        scores = ranker.score(features)
        order = np.argsort(-scores, kind="stable")[:k]
        best = [int(ids[j]) for j in order]
        _, sentences = stored.vectors_of(best)
        hits = []
        for j, chunk_id, chunk, rows in zip(order, best, stored.chunks_at(best), sentences):
            values = {f: float(v[j]) for f, v in features.items()}
            cosines = np.asarray(rows @ qvec, dtype=np.float32)
            hits.append(_hit(chunk, chunk_id, float(scores[j]), values, cosines, stored.meetings.get(chunk.source)))
        return hits

    def query_vector(
        self, query: str, history: Sequence[str] = (), embed: Callable[[str], np.ndarray] | None = None
    ) -> np.ndarray:
        """The question's embedding, nudged towards recent turns when it is a short follow-up."""
        embed = embed or self.embedder.embed_query
        vec = embed(query)
        if not history:
            return vec
        context = embed(history[-1])
        weight = followup_weight(query, float(vec @ context))
        mixed = vec + weight * context
        return (mixed / np.linalg.norm(mixed)).astype(np.float32)


def named_sources(stored: Generation, named: Reference) -> frozenset[str]:
    """The documents that match what the question names best (none when it names nothing they match)."""
    if not named:
        return frozenset()
    match = {source: named.match(meeting, source) for source, meeting in stored.meetings.items()}
    best = max(match.values(), default=0.0)
    return frozenset(source for source, value in match.items() if value == best > 0)


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
