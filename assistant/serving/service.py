"""The app's one retriever and what every front end asks of it: the chat, the JSON API and the MCP tools.

Answers and searches are remembered per index generation, so a question asked
again (an example, a popular question, a retrying client) costs a lookup; a
rebuilt index starts with an empty memory because its generation differs.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Generic, TypeVar

from ..answering.answer import TEXTS, Asked, answer, escape
from ..answering.types import Answer, Citation
from ..models.embedding import ModelError
from ..storage.indexing import BuildReport, build_index
from ..search.retrieval import Hit, Retriever
from ..settings import Settings
from ..storage.backends import open_backend
from ..storage.store import Manifest
from ..storage.errors import StoreError

log = logging.getLogger(__name__)

LOADING = "Laster modellen …"
BUILDING = "Bygger indeksen …"
REMEMBERED = 1024  # answers and searches kept per process, least recently used dropped first ...
REMEMBERED_BYTES = 64_000_000  # ... and at most about this much text between them

T = TypeVar("T")


class Remembered(Generic[T]):
    """Least recently used results, bounded in entries and in (estimated) bytes, keyed by a hash.

    The key is a SHA-256 of what was asked after it was cut to its limits, so a
    megabyte-long question costs 32 bytes of key, and the byte bound holds however long the answers are.
    """

    def __init__(self, size: Callable[[T], int], entries: int = REMEMBERED, max_bytes: int = REMEMBERED_BYTES) -> None:
        self.size, self.entries, self.max_bytes = size, entries, max_bytes
        self.bytes = 0
        self._items: OrderedDict[bytes, tuple[T, int]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, parts: Hashable, compute: Callable[[], T]) -> T:
        key = hashlib.sha256(repr(parts).encode("utf-8", "surrogatepass")).digest()
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key][0]
        value = compute()
        cost = self.size(value) + 200
        with self._lock:
            if key not in self._items and cost <= self.max_bytes:
                self._items[key] = (value, cost)
                self.bytes += cost
                while len(self._items) > self.entries or self.bytes > self.max_bytes:
                    _, (_, dropped) = self._items.popitem(last=False)
                    self.bytes -= dropped
        return value

    def __len__(self) -> int:
        return len(self._items)


def _answer_size(result: Answer) -> int:
    quoted = [*result.citations, *result.related]
    return (
        len(result.markdown)
        + len(result.question)
        + sum(len(h.text) + 300 for h in result.hits)
        + sum(len(c.text) + len(c.highlight) + len(c.lead_in) + 300 for c in quoted)
    )


def _hits_size(hits: tuple[Hit, ...]) -> int:
    return sum(len(h.text) + 300 for h in hits)


@dataclass
class Reply:
    markdown: str
    language: str = "no"
    citations: list[Citation] = field(default_factory=list)


class Service:
    """The app's one retriever: loaded once in the background, refreshed before every answer."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.building = False
        self.error = ""
        self.started = time.monotonic()
        self._retriever: Retriever | None = None
        self._lock = threading.Lock()
        self._answers: Remembered[Answer] = Remembered(_answer_size)
        self._searches: Remembered[tuple[Hit, ...]] = Remembered(_hits_size)

    @property
    def ready(self) -> bool:
        return self._retriever is not None

    @property
    def loaded(self) -> Retriever | None:
        """The retriever if the model is loaded, without waiting for it."""
        return self._retriever

    def retriever(self) -> Retriever:
        """The loaded retriever, switched to the newest index generation another process may have built."""
        current = self._retriever
        if current is not None:
            current.refresh()
            return current
        with self._lock:
            if self._retriever is None:
                try:
                    self._retriever = Retriever.load(self.settings.index, settings=self.settings)
                except Exception as exc:
                    self.error = str(exc)
                    raise
                self.error = ""
            return self._retriever

    def preload(self) -> None:
        """Load the model while the page opens, so the first question does not wait for it."""
        threading.Thread(target=self._load_quietly, name="load-retriever", daemon=True).start()

    def _load_quietly(self) -> None:
        try:
            self.retriever()
        except (StoreError, ModelError) as exc:
            log.warning("index not loaded: %s", exc)
        except Exception:
            log.exception("loading the index failed")

    def answer(
        self,
        question: str,
        k: int | None = None,
        history: Sequence[str] = (),
        where: Mapping[str, object] | None = None,
    ) -> Answer:
        """answer() on the current index; without ``k``, answer() chooses (5, or 10 for a list).

        The question and history are cut to their limits first, so nothing longer is kept or hashed.
        """
        asked = Asked.of(question, history, self.settings.max_question_chars)
        frozen = tuple(sorted(where.items())) if where else None
        generation = self.retriever().stored.key
        return self._answers.get(
            (generation, asked, k, frozen),
            lambda: answer(asked, self._current(), k=k, where=dict(frozen) if frozen else None),
        )

    def search(self, query: str, k: int | None = None) -> list[Hit]:
        """Retriever.search() on the current index, best first."""
        query = query[: self.settings.max_question_chars]
        k = k or self.settings.top_k
        generation = self.retriever().stored.key
        return list(self._searches.get((generation, query, k), lambda: tuple(self._current().search(query, k=k))))

    def _current(self) -> Retriever:
        """The retriever that answer() or search() just refreshed: one check for a new index per question."""
        assert self._retriever is not None
        return self._retriever

    def reply(
        self, question: str, history: Sequence[str] = (), where: Mapping[str, object] | None = None
    ) -> Reply:
        """An answer, or a clear Norwegian message instead of a traceback."""
        if not question.strip():
            return Reply(TEXTS["no"]["empty"])
        try:
            result = self.answer(question, None, history, where)
        except StoreError as exc:
            return Reply(f"**Indeksen kan ikke brukes.** {escape(str(exc))}")
        except ModelError as exc:
            return Reply(f"**Modellen kan ikke lastes.** {escape(str(exc))}")
        except Exception:
            log.exception("answering %r failed", question[:200])
            return Reply("**Beklager, noe gikk galt under søket.** Prøv igjen; detaljene står i serverloggen.")
        return Reply(result.markdown, result.language, result.citations or result.related)

    def manifest(self) -> Manifest:
        """The current generation's manifest, from the backend (StoreError when there is no index): the
        one way serving code learns what is indexed."""
        return open_backend(self.settings).manifest()

    def generation(self) -> str | None:
        """The current generation's name: the local folder, or the Qdrant collection and revision."""
        key = open_backend(self.settings).current()
        return Path(key).name if key else None

    def sources(self) -> dict[str, dict[str, object]]:
        """What the index records about each document; none without an index."""
        try:
            return self.manifest().sources
        except StoreError:
            return {}

    def status_line(self) -> str:
        """What is served: documents, passages and build time, or what is going on instead."""
        if self.building:
            return BUILDING
        try:
            manifest = self.manifest()
        except StoreError:
            return "Ingen indeks ennå. Legg til tekster nedenfor, eller kjør `python -m assistant build`."
        documents = _count(len(manifest.sources), "dokument", "dokumenter")
        line = f"{documents}, {_count(manifest.chunks, 'tekstbit', 'tekstbiter')}, bygget {_when(manifest.built_at)}"
        if self.error:
            return f"{line}\n\n**Advarsel:** {escape(self.error)}"
        return line if self.ready else f"{LOADING}\n\n{line}"

    def indexed_sha(self, source: str) -> str | None:
        meta = self.sources().get(source)
        return str(meta["sha256"]) if meta else None

    def rebuild(self, progress: Callable[[str, int, int], None]) -> BuildReport:
        self.building = True
        try:
            report = build_index(self.settings, progress=progress)
        finally:
            self.building = False
        if self.ready:
            self.retriever()
        else:
            self.preload()
        return report


def _count(n: int, singular: str, plural: str) -> str:
    return f"{n} {singular if n == 1 else plural}"


def _when(stamp: str) -> str:
    try:
        return datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S%z").strftime("%d.%m.%Y kl. %H:%M")
    except ValueError:
        return stamp or "ukjent tidspunkt"
