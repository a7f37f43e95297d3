"""ONNX graph passes run after `torch.onnx.export`: fold constant weights, turn Gemm into MatMul,
merge the matmuls that share an input, and quantize matmul weights (MatMulNBits, or int8 weights with
per-token activations through ONNX Runtime's integer GEMM). Each pass edits an `onnx.ModelProto` in
memory; the exporters (formats/onnx.py, export/calibrate.py) choose which run."""
from __future__ import annotations

import logging
from typing import Any

from ..runtimes.engines.ort_int8 import WEIGHT_RANGE
from . import lookup_quant


def fold_constant_weights(model: Any) -> int:
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
    keep_used_initializers(g)
    return len(folded)


def quantize_nbits(model: Any, bits: int, accuracy_level: int) -> Any:
    """The model with its constant-weight matmuls as MatMulNBits and its embedding tables as
    GatherBlockQuantized (lookup_quant.py); a new model object."""
    from onnxruntime.quantization.matmul_nbits_quantizer import DefaultWeightOnlyQuantConfig, MatMulNBitsQuantizer

    gemm_to_matmul(model)
    merge_parallel_matmuls(model)
    heads = lookup_quant.tied_heads(model)  # found before the matmuls are replaced
    config = DefaultWeightOnlyQuantConfig(block_size=lookup_quant.BLOCK, is_symmetric=True,
                                          accuracy_level=accuracy_level, bits=bits)
    logging.getLogger("onnxruntime.quantization").setLevel(logging.ERROR)
    quantizer = MatMulNBitsQuantizer(model, algo_config=config)
    quantizer.process()
    model = quantizer.model.model
    lookup_quant.quantize_lookups(model, bits, heads)
    return model


def quantize_int8_gemm(model: Any) -> None:
    """Every constant-weight matmul -> MatMulIntegerToFloat on int8 weights (symmetric, one scale per
    output column, 7 bits: |w| <= 63, so no CPU's u8 x s8 kernel saturates; runtimes/engines/ort_int8.py)
    and uint8 activations quantized per row as the graph runs: |x| max of the row / 127 as its scale, zero
    point 128 (QuantizeLinear blocked over the whole row, opset 21). One such chain per distinct input,
    shared by the matmuls that read it (q/k/v and gate/up are merged first)."""
    import numpy as np
    from onnx import helper, numpy_helper

    gemm_to_matmul(model)
    merge_parallel_matmuls(model)
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
    keep_used_initializers(g, consts)
    for op in model.opset_import:
        if op.domain in ("", "ai.onnx"):
            op.version = max(op.version, 21)
    if not any(op.domain == "com.microsoft" for op in model.opset_import):
        model.opset_import.append(helper.make_opsetid("com.microsoft", 1))


def gemm_to_matmul(model: Any) -> None:
    """Gemm(x, W[, c]) on a constant W -> MatMul(x, W) [+ Add c], the form the 4-bit quantizer takes.
    With transB=1 (the tied LM head reads the embedding table transposed) W^T becomes its own
    initializer and the table stays for the lookup (which, quantized, reads the head's blocks again:
    lookup_quant.py)."""
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


def merge_parallel_matmuls(model: Any) -> None:
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
    keep_used_initializers(g)


def keep_used_initializers(g: Any, added: tuple[Any, ...] | list[Any] = ()) -> None:
    """The graph's initializers (and `added` ones) that a node or a graph output reads; the rest dropped."""
    used = {i for n in g.node for i in n.input} | {o.name for o in g.output}
    keep = [i for i in list(g.initializer) + list(added) if i.name in used]
    del g.initializer[:]
    g.initializer.extend(keep)
