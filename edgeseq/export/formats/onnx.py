"""ONNX exporter: each step module through `torch.onnx.export` (the dynamo exporter, opset 18).

Dynamic axes are declared as Dim.DYNAMIC so the exporter infers how they relate (attention_mask's
length = past + new tokens) instead of us spelling the relation out.

`weights="int4"`: every MatMul with a constant weight becomes ONNX Runtime's MatMulNBits (4-bit,
symmetric, blocks of 32 along the input dimension, float32 compute: accuracy_level 0). A tied LM
head (Gemm on the embedding table, transposed) first gets its own [hidden, vocab] copy as a MatMul
so that it is quantized too (as are GPT-2's Conv1D layers, exported as Gemm); the float32 table
stays for the embedding lookup, which reads one row per token. `weights="w4a8"`: the same 4-bit
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
"""
from __future__ import annotations

import inspect
import logging
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...errors import ExportError
from ...artifact.manifest import ComponentInfo
from ...runtimes.engines.ort_int8 import WEIGHT_RANGE
from . import FormatSpec

if TYPE_CHECKING:
    from ...steps import Component

FORMAT = FormatSpec(name="onnx", weights=("fp32", "int4", "w4a8", "w8a8", "w8a8-token"), engine="onnxruntime",
                    npu_exporter="edgeseq.export.formats.onnx_npu", npu_weights=("fp32", "w8a16", "w8a8", "w4a16"),
                    options=("ort_kernels",), rank=0)

OPSET = 18
# --weights -> MatMulNBits (bits, accuracy_level): level 0 computes in float32, 4 in int8
NBITS = {"int4": (4, 0), "w4a8": (4, 4), "w8a8": (8, 4)}
INT8_GEMM = "w8a8-token"  # int8 weights per column, activations per token, integer GEMM
_PROTOBUF_LIMIT = 1_800_000_000  # graphs above ~2 GB must keep weights in an external file


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
    weight_bytes = sum(p.numel() * p.element_size() for p in {id(p): p for p in c.module.parameters()}.values())
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    try:
        kernels = fused.ort_kernels() if ort_kernels else contextlib.nullcontext()
        with warnings.catch_warnings(), torch.no_grad(), kernels:
            warnings.simplefilter("ignore")
            torch.onnx.export(c.module, c.example, str(path), input_names=c.inputs, output_names=c.outputs,
                              dynamic_shapes=dynamic_shapes, opset_version=OPSET, dynamo=True,
                              custom_translation_table=fused.translation_table() if ort_kernels else None,
                              external_data=weight_bytes > _PROTOBUF_LIMIT, verbose=False, report=False)
    except Exception as e:  # the exporter raises many types; all mean this graph did not convert
        raise ExportError(f"torch.onnx.export failed for component '{c.name}': {type(e).__name__}: "
                          f"{str(e).splitlines()[0] if str(e) else ''}",
                          "re-run with --debug for the exporter's trace; report it with the model's config") from e
    if weights not in NBITS and weights not in ("fp32", INT8_GEMM):
        raise ExportError(f"the onnx exporter does not write --weights {weights}",
                          f"onnx weights: fp32, {', '.join(NBITS)}, {INT8_GEMM}")
    model = onnx.load(str(path))  # read once: folded, quantized, saved and described from memory
    folded = _fold_constant_weights(model)
    if weights in NBITS:
        model = _quantize_nbits(model, path, *NBITS[weights])
    elif weights == INT8_GEMM:
        _quantize_int8_gemm(model)
        onnx.save_model(model, str(path))
    elif folded:
        onnx.save_model(model, str(path), save_as_external_data=weight_bytes > _PROTOBUF_LIMIT,
                        location=f"{path.name}.data")
    return ComponentInfo(file=path.name, inputs=_io(model.graph.input, c.dynamic), outputs=_io(model.graph.output, c.dynamic),
                         cache_inputs=c.cache_inputs, cache_outputs=c.cache_outputs,
                         weight_bytes=_initializer_bytes(model), lookup_bytes=_lookup_bytes(model),
                         contrib_ops=sorted({n.op_type for n in model.graph.node if n.domain == fused.DOMAIN}),
                         int8_weight_range=WEIGHT_RANGE if weights == INT8_GEMM else 0)


def _fold_constant_weights(model: Any) -> int:
    """Concat and Transpose nodes whose inputs are all stored constants -> one constant each (the fused
    attention's packed q/k/v weight is exported as Concat + Transpose of the three weights: ONNX
    Runtime would fold it at every load, keeping both copies in memory, and the 4-bit quantizer takes
    only a stored constant). Returns how many nodes were folded."""
    import numpy as np
    from onnx import helper, numpy_helper

    g = model.graph
    inits = {i.name: i for i in g.initializer}
    folded = []
    for node in g.node:
        if node.op_type not in ("Concat", "Transpose") or not all(i in inits for i in node.input):
            continue
        arrays = [numpy_helper.to_array(inits[i]) for i in node.input]
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        value = (np.concatenate(arrays, axis=attrs["axis"]) if node.op_type == "Concat"
                 else np.transpose(arrays[0], attrs.get("perm")))
        inits[node.output[0]] = numpy_helper.from_array(np.ascontiguousarray(value), node.output[0])
        g.initializer.append(inits[node.output[0]])
        folded.append(node)
    for node in folded:
        g.node.remove(node)
    _keep_used_initializers(g)
    return len(folded)


def _quantize_nbits(model: Any, path: Path, bits: int, accuracy_level: int) -> Any:
    """The model's constant-weight matmuls as MatMulNBits, saved at `path`; returns the saved model."""
    import onnx
    from onnxruntime.quantization.matmul_nbits_quantizer import DefaultWeightOnlyQuantConfig, MatMulNBitsQuantizer

    _gemm_to_matmul(model)
    _merge_parallel_matmuls(model)
    config = DefaultWeightOnlyQuantConfig(block_size=32, is_symmetric=True, accuracy_level=accuracy_level,
                                          bits=bits)
    logging.getLogger("onnxruntime.quantization").setLevel(logging.ERROR)
    quantizer = MatMulNBitsQuantizer(model, algo_config=config)
    quantizer.process()
    onnx.save_model(quantizer.model.model, str(path))
    return quantizer.model.model


def _quantize_int8_gemm(model: Any) -> None:
    """Every constant-weight matmul -> MatMulIntegerToFloat on int8 weights (symmetric, one scale per
    output column, 7 bits: |w| <= 63, so no CPU's u8 x s8 kernel saturates; runtimes/engines/ort_int8.py)
    and uint8 activations quantized per row as the graph runs: |x| max of the row / 127 as its scale, zero
    point 128 (QuantizeLinear blocked over the whole row, opset 21). One such chain per distinct input,
    shared by the matmuls that read it (q/k/v and gate/up are merged first)."""
    import numpy as np
    from onnx import helper, numpy_helper

    _gemm_to_matmul(model)
    _merge_parallel_matmuls(model)
    g = model.graph
    inits = {i.name: i for i in g.initializer}
    consts = [numpy_helper.from_array(np.array([-1], np.int64), "rowq.axes"),
              numpy_helper.from_array(np.array(1 / 127, np.float32), "rowq.inv127"),
              numpy_helper.from_array(np.array(1e-30, np.float32), "rowq.tiny"),
              numpy_helper.from_array(np.array(128, np.uint8), "rowq.zero")]
    rows: dict[str, str] = {}  # matmul input -> prefix of its quantized row tensors
    nodes = []
    for node in g.node:
        if node.op_type != "MatMul" or node.input[1] not in inits or len(inits[node.input[1]].dims) != 2:
            nodes.append(node)
            continue
        x, name = node.input[0], node.input[1]
        w = numpy_helper.to_array(inits[name])
        if x not in rows:
            p = rows[x] = f"rowq.{len(rows)}"
            nodes += [helper.make_node("Abs", [x], [f"{p}.abs"], name=f"{p}.abs"),
                      helper.make_node("ReduceMax", [f"{p}.abs", "rowq.axes"], [f"{p}.max"], name=f"{p}.max", keepdims=1),
                      helper.make_node("Mul", [f"{p}.max", "rowq.inv127"], [f"{p}.raw"], name=f"{p}.raw"),
                      helper.make_node("Max", [f"{p}.raw", "rowq.tiny"], [f"{p}.scale"], name=f"{p}.scale"),
                      helper.make_node("Shape", [f"{p}.scale"], [f"{p}.shape"], name=f"{p}.shape"),
                      helper.make_node("Expand", ["rowq.zero", f"{p}.shape"], [f"{p}.zero"], name=f"{p}.zero"),
                      helper.make_node("QuantizeLinear", [x, f"{p}.scale", f"{p}.zero"], [f"{p}.q"], name=f"{p}.q",
                                       axis=-1, block_size=w.shape[0])]
        scale = np.abs(w).max(axis=0) / WEIGHT_RANGE
        scale[scale == 0] = 1.0
        q = np.clip(np.round(w / scale), -WEIGHT_RANGE, WEIGHT_RANGE).astype(np.int8)
        consts += [numpy_helper.from_array(q, f"{name}.int8"),
                   numpy_helper.from_array(scale.astype(np.float32), f"{name}.scale")]
        nodes.append(helper.make_node("MatMulIntegerToFloat",
                                      [f"{rows[x]}.q", f"{name}.int8", f"{rows[x]}.scale", f"{name}.scale", "rowq.zero"],
                                      list(node.output), name=f"{node.name}.int8", domain="com.microsoft"))
    del g.node[:]
    g.node.extend(nodes)
    _keep_used_initializers(g, consts)
    for op in model.opset_import:
        if op.domain in ("", "ai.onnx"):
            op.version = max(op.version, 21)
    if not any(op.domain == "com.microsoft" for op in model.opset_import):
        model.opset_import.append(helper.make_opsetid("com.microsoft", 1))


def _gemm_to_matmul(model: Any) -> None:
    """Gemm(x, W[, c]) on a constant W -> MatMul(x, W) [+ Add c], the form the 4-bit quantizer takes.
    With transB=1 (the tied LM head reads the embedding table transposed) W^T becomes its own
    initializer and the table stays for the lookup."""
    from onnx import helper, numpy_helper

    g = model.graph
    inits = {i.name: i for i in g.initializer}
    for idx, node in enumerate(list(g.node)):
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if node.op_type != "Gemm" or node.input[1] not in inits or attrs.get("transA", 0) \
                or attrs.get("alpha", 1.0) != 1.0 or attrs.get("beta", 1.0) != 1.0:
            continue
        name = node.input[1]
        if attrs.get("transB", 0):
            name = f"{node.input[1]}.transposed"
            g.initializer.append(numpy_helper.from_array(numpy_helper.to_array(inits[node.input[1]]).T.copy(), name))
        out = node.output[0]
        matmul_out = out if len(node.input) < 3 or not node.input[2] else f"{out}.matmul"
        new = [helper.make_node("MatMul", [node.input[0], name], [matmul_out], name=f"{node.name}.matmul")]
        if matmul_out != out:
            new.append(helper.make_node("Add", [matmul_out, node.input[2]], [out], name=f"{node.name}.bias"))
        g.node.remove(node)
        for k, n in enumerate(new):
            g.node.insert(idx + k, n)


def _merge_parallel_matmuls(model: Any) -> None:
    """MatMuls that read the same input with constant [K, N] weights (q / k / v projections, an MLP's
    gate and up) -> one MatMul on the weights side by side + Split. With 4-bit weights each MatMulNBits
    call has a fixed cost (and, at accuracy_level 4, quantizes its input again), so fewer, wider calls
    decode faster (a Llama layer: 7 -> 4 matmuls). Float32 graphs gained nothing measurable and stay
    as exported."""
    import numpy as np
    from onnx import helper, numpy_helper

    g = model.graph
    inits = {i.name: i for i in g.initializer}
    groups: dict[str, list[Any]] = {}
    for node in g.node:
        if node.op_type == "MatMul" and node.input[1] in inits and len(inits[node.input[1]].dims) == 2:
            groups.setdefault(node.input[0], []).append(node)
    merged: dict[int, list[Any]] = {}  # id of a group's first node -> its replacement
    drop: set[int] = set()
    for k, (x, nodes) in enumerate(groups.items()):
        if len(nodes) < 2:
            continue
        ws = [numpy_helper.to_array(inits[n.input[1]]) for n in nodes]
        name = f"merged_matmul_{k}"
        g.initializer.extend([numpy_helper.from_array(np.concatenate(ws, axis=1), name),
                              numpy_helper.from_array(np.array([w.shape[1] for w in ws], np.int64), f"{name}.split")])
        merged[id(nodes[0])] = [helper.make_node("MatMul", [x, name], [f"{name}.out"], name=name),
                                helper.make_node("Split", [f"{name}.out", f"{name}.split"], [n.output[0] for n in nodes],
                                                 name=f"{name}.split", axis=-1)]
        drop.update(id(n) for n in nodes)
    order = [m for n in g.node for m in merged.get(id(n), [] if id(n) in drop else [n])]
    del g.node[:]
    g.node.extend(order)
    _keep_used_initializers(g)


def _keep_used_initializers(g: Any, added: tuple[Any, ...] | list[Any] = ()) -> None:
    """The graph's initializers (and `added` ones) that a node or a graph output reads; the rest dropped."""
    used = {i for n in g.node for i in n.input} | {o.name for o in g.output}
    keep = [i for i in list(g.initializer) + list(added) if i.name in used]
    del g.initializer[:]
    g.initializer.extend(keep)


def _lookup_bytes(model: Any) -> int:
    """Bytes of the tables that only Gather reads (embedding lookups: one row per token)."""
    import numpy as np
    import onnx

    users: dict[str, set[str]] = {}
    for node in model.graph.node:
        for k, name in enumerate(node.input):  # a Gather's table is its input 0; its indices are not a table
            users.setdefault(name, set()).add("lookup" if node.op_type == "Gather" and k == 0 else node.op_type)
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
