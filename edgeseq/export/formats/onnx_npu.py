"""ONNX for NPUs (`--format onnx --target npu`): static-shape graphs that Qualcomm HTP compiles.

The static-shape step modules (steps/static.py: a fixed-slot KV cache, prompts in length buckets)
are exported once per signature: one graph per compiled shape, `<component>.<signature>.onnx`.
The signatures of a component share one weight file (`<component>.weights`, ONNX external data,
each tensor stored once), so the number of buckets does not multiply the artifact's size.

What HTP needs from a graph (measured with onnxruntime-qnn's HTP simulator; see
shared/reference/qnn-htp-notes.md) and where it is done:
- every shape static: steps/static.py;
- position-only math as constants: T5's relative-position bias and the rotary tables are built
  over all cache slots and gathered by slot (models/families/t5.py, llama.py); ONNX Runtime's basic
  optimizer folds them here, before any quantizer sees the graph;
- an additive attention mask of moderate magnitude (MASK), not -1e9 (-inf in float16);
- RMS norms that never square a value above 1 (attention.scaled_norms): HTP runs float graphs in
  float16, and SmolLM2's residual stream (up to ~24,500) squared overflows it;
- no integer Neg (T5's bucketing multiplies by -1 instead).

Weights (the `--weights` of this target):
  fp32   float graph; onnxruntime-qnn runs it on HTP in float16 (enable_htp_fp16_precision)
  w8a16  QDQ: int8 weights (per output channel), uint16 activations, calibrated on sample prompts;
         what stays float16 is export/calibrate.py's and export/outliers.py's
  w8a8   QDQ: int8 weights, uint8 activations
  w4a16  QDQ: int4 weights, uint16 activations
"""
from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...errors import ExportError, UsageError
from ...artifact.manifest import ComponentInfo
from .onnx import _PROTOBUF_LIMIT, OPSET, _initializer_bytes, _io, _lookup_bytes, share_weights

if TYPE_CHECKING:
    from ...steps import Component
    from ...steps.static import StaticShape

WEIGHTS = ("fp32", "w8a16", "w8a8", "w4a16")
MASK = -100.0  # exp(-100) is 0 against any real score, and a uint16 range over it keeps 0.002 steps


def components(spec: Any, shape: StaticShape) -> list[Component]:
    from ...steps.static import static_components

    return static_components(spec, shape)


def graph_file(component: str, signature: str) -> str:
    return f"{component}.{signature}.onnx"


def export_component(c: Component, out_dir: Path, weights: str = "fp32") -> ComponentInfo:
    if weights not in WEIGHTS:
        raise UsageError(f"unknown --weights '{weights}' for --target npu", f"one of {', '.join(WEIGHTS)}")
    paths = [out_dir / graph_file(c.name, sig) for sig in c.signatures]
    for path, example in zip(paths, c.signatures.values()):
        _export_one(c, example, path)
        fold_constants(path)
    share_weights(paths, out_dir / f"{c.name}.weights")
    return describe(c, paths)


def _export_one(c: Component, example: dict[str, Any], path: Path) -> None:
    import torch

    from ...steps.attention import mask_value, scaled_norms

    weight_bytes = sum(p.numel() * p.element_size() for p in {id(p): p for p in c.module.parameters()}.values())
    if weight_bytes > _PROTOBUF_LIMIT:
        raise ExportError(f"{c.name} holds {weight_bytes / 1e9:.1f} GB of float32 weights; --target npu writes "
                          "each graph whole before sharing its weights, which ONNX limits to 2 GB",
                          "export a model under ~450M parameters for the NPU target")
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), torch.no_grad(), mask_value(MASK), scaled_norms():
            warnings.simplefilter("ignore")
            # the keyword order of `example` is c.inputs' order: the graph's inputs get the tensor names
            torch.onnx.export(c.module.eval(), (), str(path), kwargs=example, input_names=list(c.inputs),
                              output_names=list(c.outputs), opset_version=OPSET, dynamo=True, verbose=False,
                              report=False, external_data=False)
    except Exception as e:  # the exporter raises many types; all mean this graph did not convert
        raise ExportError(f"torch.onnx.export failed for {path.name}: {type(e).__name__}: "
                          f"{str(e).splitlines()[0] if str(e) else ''}",
                          "re-run with --debug for the exporter's trace; report it with the model's config") from e


def fold_constants(path: Path) -> None:
    """Rewrite `path` with ONNX Runtime's basic optimizations (constant folding, no engine-specific
    fusions): what depends on weights and shapes only becomes one initializer."""
    import onnxruntime as ort

    tmp = path.with_suffix(".folded.onnx")
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    so.optimized_model_filepath = str(tmp)
    so.log_severity_level = 3
    ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    os.replace(tmp, path)


def describe(c: Component, paths: list[Path]) -> ComponentInfo:
    """Inputs and outputs as the decode (last, smallest) graph has them; signature -> tokens and file."""
    import onnx

    from ...steps.static import signature_lengths

    last = onnx.load(str(paths[-1]), load_external_data=False)
    tokens = signature_lengths(c)
    info = ComponentInfo(file=paths[-1].name, inputs=_io(last.graph.input, {}), outputs=_io(last.graph.output, {}),
                         cache_inputs=list(c.cache_inputs), cache_outputs=list(c.cache_outputs),
                         signatures=tokens, signature_files={s: p.name for s, p in zip(c.signatures, paths)})
    measure(paths[-1].parent, c.name, info)
    return info


def measure(directory: Path, name: str, info: ComponentInfo) -> None:
    """Weight and lookup bytes of a component's graphs (the shared file + the decode graph's inline ones)."""
    import onnx

    last = onnx.load(str(directory / info.file), load_external_data=False)
    inline = _initializer_bytes(last) - _external_bytes(last)
    info.weight_bytes = (directory / f"{name}.weights").stat().st_size + inline
    info.lookup_bytes = _lookup_bytes(last)


def _external_bytes(model: Any) -> int:
    total = 0
    for init in model.graph.initializer:
        for entry in init.external_data:
            if entry.key == "length":
                total += int(entry.value)
    return total

