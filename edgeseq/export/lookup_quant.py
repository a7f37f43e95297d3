"""Embedding tables in 4- or 8-bit blocks: each float32 table that a Gather reads one row per token
becomes ONNX Runtime's GatherBlockQuantized (domain com.microsoft), on the same layout MatMulNBits
reads: uint8 blocks [vocab, hidden / 32, 32 * bits / 8] quantized along the hidden axis (symmetric,
the default zero point 2^(bits-1) of both ops), float scales one per block.

A tied LM head (a MatMul whose constant weight is the table transposed, quantized to MatMulNBits
first) and the lookup read ONE stored tensor: MatMulNBits' B is [N, K / block, blob], which
GatherBlockQuantized takes as rank-3 data quantized along its last axis (one block per row of it).
Only the scales differ in shape: MatMulNBits wants [N, K / block], GatherBlockQuantized the data's
rank, [N, K / block, 1]; a Reshape of the stored scales gives the lookup its view (ONNX Runtime
folds it at load, a copy of the scales only). The lookup's [..., K / block, block] output is
reshaped to [..., hidden]. Without a tied head the table is quantized on its own in the same form.
"""
from __future__ import annotations

from typing import Any

BLOCK = 32  # values per block, as MatMulNBits is exported (passes.quantize_nbits)


def tied_heads(model: Any) -> dict[str, str]:
    """Lookup table name -> output of the MatMul whose constant weight is that table transposed (a
    tied LM head, given its own [hidden, vocab] copy by passes.gemm_to_matmul or folded from a
    Transpose). Call before the matmuls are quantized: it compares the float weights."""
    import numpy as np
    from onnx import numpy_helper

    g = model.graph
    inits = {i.name: i for i in g.initializer}
    tables = {name: inits[name] for name in _lookups(g, inits)}
    arrays: dict[str, Any] = {}
    heads: dict[str, str] = {}
    for node in g.node:
        if node.op_type != "MatMul" or node.input[1] not in inits:
            continue
        w = inits[node.input[1]]
        for name, t in tables.items():
            if name in heads or list(w.dims) != list(reversed(t.dims)):
                continue
            if name not in arrays:
                arrays[name] = numpy_helper.to_array(t)
            if np.array_equal(numpy_helper.to_array(w), arrays[name].T):
                heads[name] = node.output[0]
                break
    return heads


def quantize_lookups(model: Any, bits: int, heads: dict[str, str]) -> int:
    """Every lookup table (`_lookups`) -> GatherBlockQuantized on `bits`-bit blocks; a table in `heads`
    reads the quantized tensor of its LM head's MatMulNBits when that head was quantized in the same
    form. Returns how many tables were quantized."""
    import numpy as np
    from onnx import helper, numpy_helper

    g = model.graph
    inits = {i.name: i for i in g.initializer}
    lookups = _lookups(g, inits)
    if not lookups:
        return 0
    nbits = {n.output[0]: n for n in g.node if n.op_type == "MatMulNBits"}
    added: list[Any] = []
    replace: dict[int, list[Any]] = {}  # id of a Gather -> its replacement nodes
    for name, gathers in lookups.items():
        vocab, hidden = inits[name].dims
        head = nbits.get(heads.get(name, ""))
        pre: list[Any] = []
        if head is not None and _same_form(head, bits, vocab, hidden):
            data, scales = head.input[1], f"{name}.q.scales"
            added.append(numpy_helper.from_array(np.array([vocab, hidden // BLOCK, 1], np.int64), f"{scales}.shape"))
            pre.append(helper.make_node("Reshape", [head.input[2], f"{scales}.shape"], [scales], name=scales))
        else:
            packed, block_scales = block_quantize(numpy_helper.to_array(inits[name]), bits)
            data, scales = f"{name}.q", f"{name}.q.scales"
            added += [numpy_helper.from_array(packed, data),
                      numpy_helper.from_array(block_scales[..., None], scales)]
        added.append(numpy_helper.from_array(np.array([hidden], np.int64), f"{name}.q.hidden"))
        for k, node in enumerate(gathers):
            p, out = f"{name}.lookup{k}", node.output[0]
            replace[id(node)] = pre + [
                helper.make_node("GatherBlockQuantized", [data, node.input[1], scales], [f"{p}.blocks"], name=p,
                                 domain="com.microsoft", gather_axis=0, quantize_axis=2, block_size=BLOCK, bits=bits),
                helper.make_node("Shape", [node.input[1]], [f"{p}.ids_shape"], name=f"{p}.ids_shape"),
                helper.make_node("Concat", [f"{p}.ids_shape", f"{name}.q.hidden"], [f"{p}.shape"], name=f"{p}.shape",
                                 axis=0),
                helper.make_node("Reshape", [f"{p}.blocks", f"{p}.shape"], [out], name=f"{p}.rows")]
            pre = []  # the scales' view once, before the first lookup
    order = [m for n in g.node for m in replace.get(id(n), [n])]
    del g.node[:]
    g.node.extend(order)
    used = {i for n in g.node for i in n.input} | {o.name for o in g.output}
    keep = [i for i in list(g.initializer) + added if i.name in used]
    del g.initializer[:]
    g.initializer.extend(keep)
    if not any(op.domain == "com.microsoft" for op in model.opset_import):
        model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    return len(lookups)


def block_quantize(table: Any, bits: int) -> tuple[Any, Any]:
    """A float32 [vocab, hidden] table -> (uint8 blocks [vocab, hidden / BLOCK, BLOCK * bits / 8], float32
    scales [vocab, hidden / BLOCK]), symmetric: ONNX Runtime's own MatMulNBits quantizer on the table
    transposed (a [hidden, vocab] matmul weight), so a lookup rounds as a quantized LM head would."""
    import numpy as np
    from onnxruntime.capi._pybind_state import quantize_matmul_4bits, quantize_matmul_8bits

    vocab, hidden = table.shape
    blocks = hidden // BLOCK
    packed = np.zeros((vocab, blocks, BLOCK * bits // 8), np.uint8)
    scales = np.zeros((vocab, blocks), np.float32)
    zero_points = np.zeros((vocab, blocks), np.uint8)  # unused: symmetric
    quantize = quantize_matmul_4bits if bits == 4 else quantize_matmul_8bits
    quantize(packed, np.ascontiguousarray(table.T, np.float32), scales, zero_points, BLOCK, vocab, hidden, True)
    return packed, scales


def _lookups(g: Any, inits: dict[str, Any]) -> dict[str, list[Any]]:
    """Float32 [rows, hidden] initializers read only as the table of Gathers on axis 0, hidden a multiple
    of BLOCK -> those Gathers."""
    from onnx import TensorProto, helper

    readers: dict[str, list[tuple[Any, int]]] = {}
    for node in g.node:
        for k, name in enumerate(node.input):
            if name in inits:
                readers.setdefault(name, []).append((node, k))
    out = {}
    for name, uses in readers.items():
        t = inits[name]
        if t.data_type != TensorProto.FLOAT or len(t.dims) != 2 or t.dims[1] % BLOCK:
            continue
        if name in {o.name for o in g.output}:
            continue
        if all(n.op_type == "Gather" and k == 0 and n.domain in ("", "ai.onnx")
               and {a.name: helper.get_attribute_value(a) for a in n.attribute}.get("axis", 0) == 0
               for n, k in uses):
            out[name] = [n for n, _ in uses]
    return out


def _same_form(node: Any, bits: int, vocab: int, hidden: int) -> bool:
    """Whether a MatMulNBits stores its weight as the lookup would read it: `bits`-bit blocks of BLOCK,
    N = vocab, K = hidden, no zero points (the default one, as the lookup's)."""
    from onnx import helper

    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    return (attrs.get("bits") == bits and attrs.get("block_size") == BLOCK and attrs.get("N") == vocab
            and attrs.get("K") == hidden and (len(node.input) < 4 or not node.input[3]))
