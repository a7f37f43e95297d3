"""OpenVINO IR exporter: the ONNX graph of each step module, converted with `openvino.convert_model`.

Why from the ONNX graphs rather than the torch modules: they are the graphs the ONNX artifact
ships and that the parity gate already checks, so both formats share every input, output and cache
name by construction, and the torch modules are traced once, not twice. The KV cache stays
explicit tensors in the file (the same contract as ONNX, which every device plugin compiles); the
engine turns it into OpenVINO state at load on the CPU (runtimes/engines/openvino_state.py), and
the parity gate runs that form.

Weights: fp32 as is; fp16 stored as half precision (`compress_to_fp16`); int8 / int4 through
NNCF's weight compression (asymmetric int8 per channel; int4 asymmetric in groups of 128, or the
largest power of two that divides a layer's width; NNCF keeps the embedding / LM head in int8).
"""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from ...errors import MissingDependencyError, UsageError, require
from ...artifact.manifest import ComponentInfo
from .. import passes
from . import FormatSpec, onnx as onnx_exporter

if TYPE_CHECKING:
    from ...steps import Component

WEIGHTS = ("fp32", "fp16", "int8", "int4")
# an audio encoder under int4 gets int8 (int4 groups moved the real tiny.en encoder past the parity bound)
FORMAT = FormatSpec(name="openvino", weights=WEIGHTS, engine="openvino", requires=(("openvino", "openvino"),),
                    rank=10, audio_encoder=(("int4", "int8"),))
SMALL_FOR_INT4 = 16 * 2**20  # below this many bytes of fp32 weights in a graph, int4 is not worth it


def check_weights(weights: str) -> None:
    """Before the model loads: NNCF's compression for int8 / int4."""
    if weights in ("int8", "int4"):
        require("nncf", "compress")


def export_component(c: Component, out_dir: Path, weights: str = "fp32") -> ComponentInfo:
    require("openvino", "openvino")
    import openvino as ov

    if weights not in WEIGHTS:
        raise UsageError(f"unknown --weights '{weights}'", f"one of {', '.join(WEIGHTS)}")
    staging = out_dir / f".{c.name}.onnx-staging"
    staging.mkdir()
    try:
        info = onnx_exporter.export_component(c, staging, ort_kernels=False)  # plain attention: OpenVINO fuses its own
        if weights in ("int8", "int4"):
            _merge_for_compression(staging / info.file)
        model = ov.convert_model(str(staging / info.file))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    if weights in ("int8", "int4"):
        model = _compress(model, weights, c.name)
    xml = out_dir / f"{c.name}.xml"
    ov.save_model(model, str(xml), compress_to_fp16=weights == "fp16")
    info.file = xml.name
    info.weight_bytes = (out_dir / f"{c.name}.bin").stat().st_size
    return info


def _merge_for_compression(path: Path) -> None:
    """Merge the matmuls that share an input (q/k/v, gate/up) before NNCF compresses them: the CPU plugin
    fuses them itself in float graphs, not compressed ones, where each FullyConnectedCompressed call has
    a fixed cost, so fewer, wider calls make a faster decode step."""
    import onnx

    model = onnx.load(str(path))
    passes.merge_parallel_matmuls(model)
    for f in path.parent.iterdir():  # the staging folder holds this graph and its external data only
        f.unlink()
    onnx_exporter.save_graph(model, path)


def _compress(model: object, weights: str, name: str) -> object:
    try:
        import nncf
    except ImportError as e:
        raise MissingDependencyError("--weights int8/int4 needs NNCF, which is not installed",
                                     "pip install 'edgeseq[compress]' -c constraints.txt") from e
    import logging

    import numpy as np

    logging.getLogger("nncf").setLevel(logging.ERROR)
    if weights == "int8":
        return nncf.compress_weights(model, mode=nncf.CompressWeightsMode.INT8_ASYM)
    from nncf.quantization.advanced_parameters import AdvancedCompressionParameters, GroupSizeFallbackMode

    fp32_bytes = sum(4 * int(np.prod(op.get_output_shape(0))) for op in model.get_ops()  # type: ignore[attr-defined]
                     if op.get_type_name() == "Constant" and op.get_output_element_type(0).get_type_name() == "f32")
    if fp32_bytes < SMALL_FOR_INT4:
        from ...console import console

        console.result(f"warning: {name} has only {fp32_bytes / 2**20:.1f} MiB of weights; int4 saves little at "
                       "this size and costs accuracy (int8 is usually the better trade)")
    # widths not divisible by 128 (SmolLM2's 576) get the largest power-of-two group that divides them
    adv = AdvancedCompressionParameters(group_size_fallback_mode=GroupSizeFallbackMode.ADJUST)
    return nncf.compress_weights(model, mode=nncf.CompressWeightsMode.INT4_ASYM, group_size=128, ratio=1.0,
                                 advanced_parameters=adv)
