"""Embedding passages: the product's paths against plain PyTorch in turns, the variants tried, and a real build."""

from __future__ import annotations

import copy
import json
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np


from common import passages, run_child, timed  # bench/common.py, which puts the project on the path
from assistant.models import embedding
from assistant.settings import Settings


# ---- embedding throughput -------------------------------------------------------------------------


def throughput(settings: Settings, n: int, block: int) -> tuple[dict[str, object], np.ndarray]:
    """Passages per second of both product paths (ONNX Runtime q4 and fp32) and plain PyTorch ``encode``.

    The three take turns per block, in a rotating order, so each sees the same load.
    """
    texts = passages(n, seed=1)
    plain = embedding.load_model(settings.model, settings.cache_dir)
    product = {p: embedding.Embedder(settings.replace(precision=p)) for p in embedding.PRECISIONS}
    prefixed = [settings.passage_prefix + t for t in texts]
    encoders: dict[str, Callable[[slice], np.ndarray]] = {
        "pytorch": lambda part: plain.encode(prefixed[part]),
        **{p: (lambda part, e=e: e.embed_passages(texts[part])) for p, e in product.items()},
    }
    names = list(encoders)
    for encode in encoders.values():
        encode(slice(0, 8))
    spent = dict.fromkeys(names, 0.0)
    out: dict[str, list[np.ndarray]] = {name: [] for name in names}
    for turn, start in enumerate(range(0, n, block)):
        part = slice(start, start + block)
        for name in names[turn % len(names):] + names[: turn % len(names)]:
            spent[name] += timed(lambda: out[name].append(encoders[name](part)))
    vectors = {name: np.concatenate(parts) for name, parts in out.items()}
    reference = vectors["pytorch"] / np.linalg.norm(vectors["pytorch"], axis=1, keepdims=True)
    result: dict[str, object] = {
        "passages": n, "mean_chars": round(float(np.mean([len(t) for t in texts])), 1), "block": block,
        "pytorch_plain_encode_per_s": round(n / spent["pytorch"], 1),
    }
    for p in product:
        cosine = (reference * vectors[p]).sum(axis=1)
        result[p] = {"per_s": round(n / spent[p], 1), "ratio_to_pytorch": round(spent["pytorch"] / spent[p], 2),
                     "cosine_to_pytorch": {"min": round(float(cosine.min()), 4), "mean": round(float(cosine.mean()), 4)}}
    return result, vectors[settings.precision]


def variants(settings: Settings, n: int, block: int) -> list[dict[str, object]]:
    """The candidates tried for faster embedding, each as a ratio to plain fp32 on the same blocks."""
    import torch

    texts = [settings.passage_prefix + t for t in passages(n, seed=2)]
    plain = embedding.load_model(settings.model, settings.cache_dir)
    fp32 = embedding.load_onnx(settings.model, settings.cache_dir, "fp32")
    q4 = embedding.load_onnx(settings.model, settings.cache_dir, "q4")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch_int8 = torch.ao.quantization.quantize_dynamic(
            copy.deepcopy(plain), {torch.nn.Linear: torch.ao.quantization.per_channel_dynamic_qconfig}, dtype=torch.qint8
        )
    candidates: dict[str, Callable[[list[str]], np.ndarray]] = {
        "fp32 encode, batch 32 (plain)": plain.encode,
        "fp32 encode, batch 8": lambda b: plain.encode(b, batch_size=8),
        "fp32 encode, 1 thread": lambda b: _threads(1, lambda: plain.encode(b)),
        "torch int8 dynamic (per channel)": torch_int8.encode,
        "onnxruntime fp32, batch 8": fp32.encode,
        "onnxruntime q4, batch 32": lambda b: q4.encode(b, batch_size=32),
        "onnxruntime q4, batch 8 (default)": q4.encode,
    }
    reference = [plain.encode(texts[a : a + block], normalize_embeddings=True) for a in range(0, n, block)]
    rows = []
    for name, encode in candidates.items():
        encode(texts[:8])
        ratios, cosines = [], []
        for i, a in enumerate(range(0, n, block)):
            batch = texts[a : a + block]
            base = timed(lambda: plain.encode(batch))
            out: list[np.ndarray] = []
            took = timed(lambda: out.append(np.asarray(encode(batch), np.float32)))
            ratios.append(base / took)
            got = out[0] / np.linalg.norm(out[0], axis=1, keepdims=True)
            cosines.append((got * reference[i]).sum(axis=1))
        rows.append({"variant": name, "ratio_to_fp32": round(float(np.median(ratios)), 2),
                     "cosine_min": round(float(np.concatenate(cosines).min()), 4)})
    return rows


def _threads(count: int, fn: Callable[[], np.ndarray]) -> np.ndarray:
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        return fn()
    finally:
        torch.set_num_threads(before)


def build(work: Path, n: int) -> dict[str, object]:
    """A real `python -m assistant build` of n generated passages in 10 documents: speed and peak memory."""
    sources = work / "build-sources"
    sources.mkdir()
    texts = passages(n, seed=3)
    for doc in range(10):
        (sources / f"mote-{doc:02d}.txt").write_text("\n\n".join(texts[doc::10]) + "\n", encoding="utf-8")
    seconds, rss, out = run_child(["build", "--index", str(work / "build-index"), "--sources", str(sources), "--json"])
    report = json.loads(out)
    return {"passages": report["chunks_total"], "process_s": round(seconds, 1), "build_s": report["seconds"],
            "passages_per_s": round(report["chunks_total"] / report["seconds"], 1), "peak_rss_mb": rss,
            "note": "also embeds every sentence of multi-sentence passages, as the product does"}


