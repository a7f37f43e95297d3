"""TFLite exporter: each static-shape step module (steps/static.py) through `litert-torch`.

One `.tflite` file per component, holding one signature per compiled shape (prefill buckets and
`decode`; encoder buckets). Signatures of one file share its weights. Signature input names are
the tensor names with dots replaced by underscores (keyword arguments cannot hold dots); outputs
keep the tensor names. litert-torch lowers int64 inputs to int32: the manifest records int32.

Weights (ai-edge-quantizer recipes on the float32 file):
  fp16     weights stored as float16 (float casting), float32 compute
  int8     dynamic range: int8 weights per channel, activations quantized on the fly (int8 compute)
  int8-wo  weight only: int8 weights per channel, de-quantized to float32 compute (smaller file,
           float32 arithmetic; XNNPACK unpacks the weights when it loads the model)
"""
from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...errors import ExportError, MissingDependencyError, UsageError
from ...artifact.manifest import ComponentInfo
from ..quiet import quiet
from . import FormatSpec

if TYPE_CHECKING:
    from ...steps import Component
    from ...steps.static import StaticShape

WEIGHTS = ("fp32", "fp16", "int8", "int8-wo")
# an audio encoder under int8-wo gets fp16 weights (int8 weight-only moved the real tiny.en encoder
# just past the parity bound; dynamic-range int8 stays inside it)
FORMAT = FormatSpec(name="tflite", weights=WEIGHTS, engine="litert", static=True,
                    requires=(("litert_torch", "tflite"), ("ai_edge_litert", "tflite")), rank=20,
                    audio_encoder=(("int8-wo", "fp16"),))


def components(spec: Any, shape: StaticShape) -> list[Component]:
    from ...steps.static import static_components

    return static_components(spec, shape)


def export_component(c: Component, out_dir: Path, weights: str = "fp32") -> ComponentInfo:
    if weights not in WEIGHTS:
        raise UsageError(f"unknown --weights '{weights}' for tflite", f"one of {', '.join(WEIGHTS)}")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # the converter's and interpreter's C++ info lines
    for noisy in ("torchao", "torch.utils._pytree"):  # optional CUDA kernels, deprecation notes on import
        logging.getLogger(noisy).setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import litert_torch
    except ImportError as e:
        raise MissingDependencyError("--format tflite needs litert-torch, which is not installed",
                                     "pip install 'edgeseq[tflite]' -c constraints.txt") from e
    litert_torch.config.show_progress = False  # edgeseq shows its own progress bar
    path = out_dir / f"{c.name}.tflite"
    conv = litert_torch.Converter()
    for name, example in c.signatures.items():
        conv.signature(name, c.module.eval(), sample_kwargs=example)
    try:
        with quiet():  # per-signature converter logs (int64 inputs become int32: expected, recorded)
            conv.convert().export(str(path))
            if weights != "fp32":
                _quantize(path, weights)
    except (RuntimeError, ValueError, TypeError) as e:
        first = str(e).strip().splitlines()[0][:300] if str(e).strip() else type(e).__name__
        raise ExportError(f"litert-torch could not convert {c.name}: {first}",
                          "report this with the model config; --format onnx exports the same model") from e
    return _describe(c, path)


def _quantize(path: Path, weights: str) -> None:
    from ai_edge_quantizer import quantizer, recipe, recipe_manager

    if weights == "fp16":
        rm = recipe_manager.RecipeManager()
        rm.add_weight_only_config(regex=".*", operation_name=recipe.TFLOperationName.ALL_SUPPORTED, num_bits=16,
                                  algorithm_key=recipe.AlgorithmName.FLOAT_CASTING)
        chosen = rm.get_quantization_recipe()
    else:
        chosen = {"int8": recipe.dynamic_wi8_afp32, "int8-wo": recipe.weight_only_wi8_afp32}[weights]()
    qt = quantizer.Quantizer(str(path))
    qt.load_quantization_recipe(chosen)
    tmp = path.with_suffix(".quantized.tflite")
    qt.quantize().export_model(str(tmp), overwrite=True)
    os.replace(tmp, path)


def _describe(c: Component, path: Path) -> ComponentInfo:
    """Inputs and outputs as the compiled file has them (decode / largest shape), signatures with
    the number of tokens (or encoder positions) each one takes."""
    from ai_edge_litert.interpreter import Interpreter

    from ...steps.static import arg_name, signature_lengths

    it = Interpreter(model_path=str(path))
    sig_names = list(c.signatures)
    runner = it.get_signature_runner(sig_names[-1])
    ins, outs = runner.get_input_details(), runner.get_output_details()
    inputs = [{"name": n, "dtype": ins[arg_name(n)]["dtype"].__name__, "shape": ins[arg_name(n)]["shape"].tolist(),
               "signature_name": arg_name(n)} for n in c.inputs]
    outputs = [{"name": n, "dtype": outs[n]["dtype"].__name__, "shape": outs[n]["shape"].tolist()} for n in c.outputs]
    tokens = signature_lengths(c)
    return ComponentInfo(file=path.name, inputs=inputs, outputs=outputs, cache_inputs=list(c.cache_inputs),
                         cache_outputs=list(c.cache_outputs), weight_bytes=path.stat().st_size, signatures=tokens)
