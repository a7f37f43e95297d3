"""w8a8-token's integer GEMM and CPUs whose u8 x s8 kernel saturates.

ONNX Runtime's MLAS multiplies uint8 activations by int8 weights with VNNI's `vpdpbusd` or AMX where
the CPU has them: products summed straight into int32. Without them (AVX2, or AVX-512 without VNNI,
e.g. AMD Zen 3) it uses `vpmaddubsw`, which adds pairs of products into int16 and saturates: two
products of 255 x 127 make 64770 > 32767. w8a8-token's activations fill the whole uint8 range (one
scale per row, zero point 128), so its weights are quantized to 7 bits (|w| <= WEIGHT_RANGE = 63:
pairs at most 255 x 63 x 2 = 32130) and the same artifact computes the same sums on every CPU, the
one its parity was checked on included. Of the forms compared on an AVX2 CPU (saturating 8-bit
weights, 7-bit activations instead, exact 8-bit through u8 x u8 weights), 7-bit weights changed the
fewest greedy tokens (figures: docs/performance.md).

Artifacts exported before this carry 8-bit weights; `stale_weights` says so where the probe finds the
kernel saturating, so the backend can warn rather than silently lose accuracy.
"""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np

WEIGHT_RANGE = 63  # the largest |int8 weight| w8a8-token writes: 7 bits
PROBE = Path(__file__).with_name("int8_probe.onnx")  # build_probe()'s bytes: the runtime install has no onnx
K = 64


@functools.cache
def saturates() -> bool:
    """Whether this CPU's u8 x s8 integer GEMM loses sums of products: the probe graph (one
    MatMulIntegerToFloat, weights at 127, zero point 128) fed the worst case, activations at 255, at a
    one-row and an eight-row shape (exact: 127 x 127 x 64; saturated on AVX2: 8160)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    session = ort.InferenceSession(PROBE.read_bytes(), so, providers=["CPUExecutionProvider"])
    want = 127.0 * 127 * K
    return any(not np.allclose(session.run(None, {"a": np.full((m, K), 255, np.uint8)})[0], want, rtol=1e-3)
               for m in (1, 8))


def build_probe() -> bytes:
    """The probe graph, serialized (needs onnx: tests check the shipped file against it)."""
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [helper.make_node("MatMulIntegerToFloat", ["a", "w", "s", "s", "z"], ["y"], domain="com.microsoft")],
        "probe", [helper.make_tensor_value_info("a", TensorProto.UINT8, [None, K])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(np.full((K, 16), 127, np.int8), "w"),
         numpy_helper.from_array(np.ones(1, np.float32), "s"), numpy_helper.from_array(np.array(128, np.uint8), "z")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18),
                                                    helper.make_opsetid("com.microsoft", 1)])
    model.ir_version = 10
    return model.SerializeToString()


def stale_weights(manifest: Any) -> str | None:
    """Why a w8a8-token artifact computes worse here than at its parity check, or None: its weights use
    more than 7 bits (exported before WEIGHT_RANGE; unrecorded = 127) and this CPU's kernel saturates."""
    if manifest.quantization != "w8a8-token":
        return None
    widest = max((c.int8_weight_range or 127) for c in manifest.components.values())
    if widest <= WEIGHT_RANGE or not saturates():
        return None
    return (f"int8 weights up to {widest} on a CPU whose u8 x s8 GEMM saturates (no VNNI / AMX): accuracy "
            f"below the export's parity check; re-export with this edgeseq (7-bit weights)")
