"""The connection to Qdrant: one client per server or local-mode folder, and its errors as one clear line."""

from __future__ import annotations

import atexit
import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path

from qdrant_client import QdrantClient
from qdrant_client import models as qm
from qdrant_client.http.exceptions import ApiException

from ...settings import Settings
from ..store import StoreError

_clients: dict[tuple[str, ...], QdrantClient] = {}
_clients_lock = threading.Lock()


def connect(settings: Settings) -> QdrantClient:
    """One client per server or local folder and process: local mode allows a single client per folder."""
    if settings.qdrant_url:
        key = ("url", settings.qdrant_url, settings.qdrant_api_key)
    else:
        key = ("path", str(Path(local_path(settings)).resolve()))
    with _clients_lock:
        if key not in _clients:
            with errors(label(settings)):
                if settings.qdrant_url:
                    _clients[key] = QdrantClient(url=settings.qdrant_url, api_key=settings.qdrant_api_key or None, timeout=60)
                else:
                    Path(key[1]).mkdir(parents=True, exist_ok=True)
                    _clients[key] = _OneAtATime(QdrantClient(path=key[1]))  # type: ignore[assignment]
        return _clients[key]


class _OneAtATime:
    """Local mode's collections are plain Python objects: a build in one thread (an upload in the page)
    must not resize them under a search in another. A server needs no such lock."""

    def __init__(self, client: QdrantClient) -> None:
        self._client = client
        self._lock = threading.RLock()

    def __getattr__(self, name: str) -> object:
        attribute = getattr(self._client, name)
        if not callable(attribute):
            return attribute

        def locked(*args: object, **kwargs: object) -> object:
            with self._lock:
                return attribute(*args, **kwargs)

        return locked


@atexit.register
def _close_clients() -> None:
    """Close while the interpreter still works: a client closed by the garbage collector at exit complains."""
    with _clients_lock:
        for client in _clients.values():
            client.close()
        _clients.clear()


def local_path(settings: Settings) -> str:
    return settings.qdrant_path or str(Path(settings.index) / "qdrant")


def label(settings: Settings) -> str:
    where = settings.qdrant_url or f"local mode in {local_path(settings)}"
    return f"Qdrant collection {settings.qdrant_collection} ({where})"


@contextlib.contextmanager
def errors(where: str) -> Iterator[None]:
    """Qdrant's errors (unreachable server, refused key, a local folder another process holds) as one clear line."""
    try:
        yield
    except ApiException as exc:
        raise StoreError(f"{where}: {str(exc).strip().splitlines()[0][:300]}") from exc
    except RuntimeError as exc:  # local mode: "Storage folder ... is already accessed by another instance"
        raise StoreError(f"{where}: {exc} Local mode serves one process; use a Qdrant server (--qdrant-url) to share it.") from exc


def visible(revision: int) -> tuple[list[qm.Condition], list[qm.Condition]]:
    """must / must_not conditions for the points of one revision."""
    return [qm.FieldCondition(key="added", range=qm.Range(lte=revision))], [
        qm.FieldCondition(key="removed", range=qm.Range(lte=revision))
    ]


def scroll(client: QdrantClient, name: str, query: qm.Filter, **kwargs: object) -> Iterator[qm.Record]:
    offset = None
    while True:
        records, offset = client.scroll(name, scroll_filter=query, limit=256, offset=offset, **kwargs)
        yield from records
        if offset is None:
            return
