"""The app's one retriever and what every front end asks of it: the chat, the JSON API and the MCP tools.

Answers and searches are remembered per index generation, so a question asked
again (an example, a popular question, a retrying client) costs a lookup; a
rebuilt index starts with an empty memory because its generation differs.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from .answer import TEXTS, Answer, Citation, answer, escape
from .embedding import ModelError
from .indexing import BuildReport, build_index
from .retrieval import Hit, Retriever
from .settings import Settings
from .backends import read_manifest
from .store import StoreError

log = logging.getLogger(__name__)

LOADING = "Laster modellen …"
BUILDING = "Bygger indeksen …"
REMEMBERED = 1024  # answers and searches kept per process, least recently used dropped first


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
        self._answer = functools.lru_cache(maxsize=REMEMBERED)(self._answer_on)
        self._search = functools.lru_cache(maxsize=REMEMBERED)(self._search_on)

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
        """answer() on the current index; without ``k``, answer() chooses (5, or 10 for a list)."""
        frozen = tuple(sorted(where.items())) if where else None
        generation = self.retriever().stored.key
        return self._answer(generation, question, k, tuple(history), frozen)

    def _answer_on(
        self, generation: str, question: str, k: int | None, history: tuple[str, ...], where: tuple | None
    ) -> Answer:
        return answer(
            question,
            self._current(),
            k=k,
            history=list(history),
            max_chars=self.settings.max_question_chars,
            where=dict(where) if where else None,
        )

    def search(self, query: str, k: int | None = None) -> list[Hit]:
        """Retriever.search() on the current index, best first."""
        generation = self.retriever().stored.key
        return list(self._search(generation, query, k or self.settings.top_k))

    def _search_on(self, generation: str, query: str, k: int) -> tuple[Hit, ...]:
        return tuple(self._current().search(query, k=k))

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

    def status_line(self) -> str:
        """What is served: documents, passages and build time, or what is going on instead."""
        if self.building:
            return BUILDING
        try:
            manifest = read_manifest(self.settings)
        except StoreError:
            return "Ingen indeks ennå. Legg til tekster nedenfor, eller kjør `python -m assistant build`."
        documents = _count(len(manifest.sources), "dokument", "dokumenter")
        line = f"{documents}, {_count(manifest.chunks, 'tekstbit', 'tekstbiter')}, bygget {_when(manifest.built_at)}"
        if self.error:
            return f"{line}\n\n**Advarsel:** {escape(self.error)}"
        return line if self.ready else f"{LOADING}\n\n{line}"

    def indexed_sha(self, source: str) -> str | None:
        try:
            meta = read_manifest(self.settings).sources.get(source)
        except StoreError:
            return None
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
