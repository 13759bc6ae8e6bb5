"""``python -m assistant migrate --to qdrant``: copy a local index into Qdrant without embedding anything."""

from __future__ import annotations

import time
from dataclasses import dataclass

from ...settings import Settings
from ..store import ARRAYS
from . import open_backend
from .local import LocalBackend


@dataclass(frozen=True)
class Migration:
    passages: int
    documents: int
    seconds: float
    target: str

    def summary(self) -> str:
        return (f"copied {self.passages} passages of {self.documents} documents into {self.target} "
                f"in {self.seconds:.1f} s; nothing was embedded.")


def migrate(settings: Settings, to: str) -> Migration:
    """The local index in ``settings.index`` becomes the current generation of backend ``to``.

    Vectors, sentence vectors, background vectors and the vocabulary are copied
    as they are, so the model fingerprint travels with them and answers stay the same.
    """
    started = time.perf_counter()
    stored = LocalBackend(settings.index).load()
    target = open_backend(settings.replace(backend=to))
    if target.name == "local":
        raise ValueError("migrate copies a local index into another backend; --to local has nothing to do")
    arrays = {name: getattr(stored, name) for name in ARRAYS}
    with target.lock():
        target.save(stored.manifest, stored.chunks, arrays, stored.lexical, None, frozenset(stored.manifest.sources))
    return Migration(len(stored.chunks), len(stored.manifest.sources), time.perf_counter() - started, target.label)
