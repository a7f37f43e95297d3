"""ONNX exporter: each step module through `torch.onnx.export` (the dynamo exporter, opset 18).

Dynamic axes are declared as Dim.DYNAMIC so the exporter infers how they relate (attention_mask's
length = past + new tokens) instead of us spelling the relation out.

`weights="int4"`: every MatMul with a constant weight becomes ONNX Runtime's MatMulNBits (4-bit,
symmetric, blocks of 32 along the input dimension, float32 compute: accuracy_level 0). A tied LM
head (Gemm on the embedding table, transposed) first gets its own [hidden, vocab] copy as a MatMul
so that it is quantized too (as are GPT-2's Conv1D layers, exported as Gemm). The embedding tables
(and GPT-2's position table) are looked up in blocks of the same bits (GatherBlockQuantized), a
tied table and its LM head reading one stored tensor (export/lookup_quant.py). `weights="w4a8"`: the same 4-bit
weights with accuracy_level 4: each matmul quantizes its activations to int8 per block as it runs
and multiplies in int8. w4a8 decodes faster than int4 and its prefill is slower (it pays for
quantizing activations); the user picks by workload. `weights="w8a8"`: MatMulNBits with 8-bit
weights (symmetric, blocks of 32) and accuracy_level 4, so int8 compute as for w4a8; its parity
stays far inside the w8a8 bound. With float32 compute (accuracy_level 0), 8-bit MatMulNBits decoded
slower than float32, so that combination is not offered (figures: docs/performance.md).

`weights="w8a8-token"`: int8 weights per output column and activations quantized to uint8 per token
(per row, symmetric) as each matmul runs, multiplied by ONNX Runtime's integer GEMM
(MatMulIntegerToFloat: MLAS's u8s8 kernels, AMX or VNNI where the CPU has them). MatMulNBits at
accuracy_level 4 quantizes in blocks of 32 and runs a long prefill slower than float32; the integer
GEMM runs it several times faster, so w8a8-token is the fast-prefill choice. The weights use 7 bits
(|w| <= 63): the u8s8 kernel of CPUs without VNNI adds pairs of products in int16 and saturated
8-bit weights (runtimes/engines/ort_int8.py). Its rounding is coarser than w8a8's, still far inside
the w8a8 bound, which it shares.

An audio encoder (Whisper's: log-mel features in) keeps float32 weights under the 4-bit choices and
w8a8-token (FORMAT.audio_encoder): 4-bit blocks, and activations rounded per token across all
channels, move the encoder output past the parity bound on the real tiny.en (the decoder, whose
weights are most of the model, is quantized as asked); w8a8's 8-bit blocks of 32 stay inside it.
"""
from __future__ import annotations

import hashlib
import inspect
import logging
import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...errors import ExportError
from ...artifact.manifest import ComponentInfo
from ...runtimes.engines.ort_int8 import WEIGHT_RANGE
from .. import passes
from . import FormatSpec

if TYPE_CHECKING:
    from ...steps import Component

FORMAT = FormatSpec(name="onnx", weights=("fp32", "int4", "w4a8", "w8a8", "w8a8-token"), engine="onnxruntime",
                    npu_exporter="edgeseq.export.formats.onnx_npu", npu_weights=("fp32", "w8a16", "w8a8", "w4a16"),
                    options=("ort_kernels",), rank=0,
                    audio_encoder=(("int4", "fp32"), ("w4a8", "fp32"), ("w8a8-token", "fp32")))

OPSET = 18
# --weights -> MatMulNBits (bits, accuracy_level): level 0 computes in float32, 4 in int8
NBITS = {"int4": (4, 0), "w4a8": (4, 4), "w8a8": (8, 4)}
INT8_GEMM = "w8a8-token"  # int8 weights per column, activations per token, integer GEMM
_PROTOBUF_LIMIT = 1_800_000_000  # a graph above ~2 GB cannot hold its weights inline
_EXTERNAL_MIN = 1024  # tensors of at least this many bytes go to the weight file
WEIGHTS = "weights.data"  # the weight file the graphs of a multi-graph artifact share


def export_component(c: Component, out_dir: Path, weights: str = "fp32", ort_kernels: bool = True
                     ) -> ComponentInfo:
    """`ort_kernels`: attention as ONNX Runtime's fused kernel where the family supports it
    (steps/fused.py); False writes a plain graph that other ONNX readers run (`export(...,
    ort_kernels=False)`, `edgeseq export --no-ort-kernels`); the OpenVINO exporter turns it off."""
    import contextlib

    import onnx
    import torch
    from torch.export import Dim

    from ...steps import fused

    path = out_dir / f"{c.name}.onnx"
    shapes = [{axis: Dim.DYNAMIC for axis in c.dynamic.get(n, {})} for n in c.inputs]
    # forward(a, b, *rest): the exporter wants the var-positional part as one nested tuple
    fixed = sum(1 for p in inspect.signature(c.module.forward).parameters.values()
                if p.kind == p.POSITIONAL_OR_KEYWORD)
    dynamic_shapes: tuple[Any, ...] = tuple(shapes[:fixed]) + ((tuple(shapes[fixed:]),) if len(shapes) > fixed else ())
    for noisy in ("torch.onnx", "onnx_ir", "onnxscript"):  # the exporter's passes log at INFO
        logging.getLogger(noisy).setLevel(logging.ERROR)
    try:
        kernels = fused.ort_kernels() if ort_kernels else contextlib.nullcontext()
        with warnings.catch_warnings(), torch.no_grad(), kernels:
            warnings.simplefilter("ignore")
            torch.onnx.export(c.module, c.example, str(path), input_names=c.inputs, output_names=c.outputs,
                              dynamic_shapes=dynamic_shapes, opset_version=OPSET, dynamo=True,
                              custom_translation_table=fused.translation_table() if ort_kernels else None,
                              external_data=True, verbose=False, report=False)
    except Exception as e:  # the exporter raises many types; all mean this graph did not convert
        raise ExportError(f"torch.onnx.export failed for component '{c.name}': {type(e).__name__}: "
                          f"{str(e).splitlines()[0] if str(e) else ''}",
                          "re-run with --debug for the exporter's trace; report it with the model's config") from e
    if weights not in NBITS and weights not in ("fp32", INT8_GEMM):
        raise ExportError(f"the onnx exporter does not write --weights {weights}",
                          f"onnx weights: fp32, {', '.join(NBITS)}, {INT8_GEMM}")
    model = onnx.load(str(path))  # read once: folded, quantized, saved and described from memory
    passes.fold_constant_weights(model)
    # the exporter's external weights file is in memory now: drop it, or the save below appends to it
    path.with_name(f"{path.name}.data").unlink(missing_ok=True)
    if weights in NBITS:
        model = passes.quantize_nbits(model, *NBITS[weights])
    elif weights == INT8_GEMM:
        passes.quantize_int8_gemm(model)
    save_graph(model, path)
    return ComponentInfo(file=path.name, inputs=_io(model.graph.input, c.dynamic), outputs=_io(model.graph.output, c.dynamic),
                         cache_inputs=c.cache_inputs, cache_outputs=c.cache_outputs,
                         weight_bytes=_initializer_bytes(model), lookup_bytes=_lookup_bytes(model),
                         contrib_ops=sorted({n.op_type for n in model.graph.node if n.domain == fused.DOMAIN}),
                         int8_weight_range=WEIGHT_RANGE if weights == INT8_GEMM else 0)


def save_graph(model: Any, path: Path) -> None:
    """The graph at `path`, its weights in `path`.data beside it (one file for all graphs after `finish`):
    engines map that file rather than copy the weights out of the graph's protobuf (ONNX Runtime reads them
    in place, an embedding table only where a lookup touches it), and graphs past protobuf's 2 GB limit
    need it anyway. Tensors under 1 kB stay inline."""
    import onnx

    onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                    location=f"{path.name}.data", size_threshold=_EXTERNAL_MIN)


def share_weights(paths: list[Path], weights_file: Path) -> None:
    """Store the large initializers of all `paths` once, in `weights_file`, as ONNX external data.
    Tensors are matched by content (folding names constants per graph), so equal ones share bytes: the
    signatures of a static component, or an encoder-decoder's graphs that all read the shared embedding."""
    import onnx
    from onnx import numpy_helper

    models = [onnx.load(str(p)) for p in paths]  # external data (an earlier share) is read in now
    tmp = weights_file.with_suffix(".partial")
    offsets: dict[str, int] = {}
    with open(tmp, "wb") as fh:
        for model in models:
            for init in model.graph.initializer:
                # raw_data as stored (4-bit types are packed two to a byte); typed fields via numpy
                raw = init.raw_data if init.HasField("raw_data") else numpy_helper.to_array(init).tobytes()
                if len(raw) < _EXTERNAL_MIN:
                    continue
                key = f"{hashlib.sha256(raw).hexdigest()}:{init.data_type}:{list(init.dims)}"
                if key not in offsets:
                    fh.write(b"\0" * (-fh.tell() % 64))
                    offsets[key] = fh.tell()
                    fh.write(raw)
                dims, dtype, name = list(init.dims), init.data_type, init.name
                init.Clear()
                init.name, init.data_type = name, dtype
                init.dims.extend(dims)
                init.data_location = onnx.TensorProto.EXTERNAL
                for k, v in (("location", weights_file.name), ("offset", str(offsets[key])), ("length", str(len(raw)))):
                    entry = init.external_data.add()
                    entry.key, entry.value = k, v
    os.replace(tmp, weights_file)
    for model, path in zip(models, paths):
        onnx.save(model, str(path))


def finish(out_dir: Path, infos: dict[str, ComponentInfo]) -> None:
    """After every graph is written: where there are several, one weight file for all of them (WEIGHTS), each
    tensor stored once, and the graphs' own weight files removed."""
    if len(infos) < 2:
        return
    paths = [out_dir / info.file for info in infos.values()]
    share_weights(paths, out_dir / WEIGHTS)
    for p in paths:
        p.with_name(f"{p.name}.data").unlink(missing_ok=True)


def _lookup_bytes(model: Any) -> int:
    """Bytes of the tables that only lookups read (embedding lookups: one row per token): a Gather's
    table, a GatherBlockQuantized's blocks, scales and zero points. A quantized table shared with a
    tied LM head (MatMulNBits) is read whole per token and is not counted."""
    import numpy as np
    import onnx

    users: dict[str, set[str]] = {}
    for node in model.graph.node:
        for k, name in enumerate(node.input):  # a lookup's indices (input 1) are not a table
            lookup = (node.op_type == "Gather" and k == 0) or (node.op_type == "GatherBlockQuantized" and k != 1)
            users.setdefault(name, set()).add("lookup" if lookup else node.op_type)
    total = 0
    for init in model.graph.initializer:
        if users.get(init.name) == {"lookup"}:
            total += int(np.prod(init.dims)) * np.dtype(onnx.helper.tensor_dtype_to_np_dtype(init.data_type)).itemsize
    return total


def _io(values: Any, dynamic: dict[str, dict[int, str]]) -> list[dict[str, Any]]:
    import onnx

    out = []
    for v in values:
        t = v.type.tensor_type
        names = dynamic.get(v.name, {})
        shape = [names.get(i, d.dim_value if d.HasField("dim_value") else (d.dim_param or "?"))
                 for i, d in enumerate(t.shape.dim)]
        out.append({"name": v.name, "dtype": onnx.helper.tensor_dtype_to_np_dtype(t.elem_type).name, "shape": shape})
    return out


def _initializer_bytes(model: Any) -> int:
    import numpy as np
    import onnx

    total = 0
    for init in model.graph.initializer:
        n = int(np.prod(init.dims)) if init.dims else 1
        total += n * np.dtype(onnx.helper.tensor_dtype_to_np_dtype(init.data_type)).itemsize
    return total
