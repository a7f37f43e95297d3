"""Where a QDQ graph keeps float: the residual stream and the norms that read it (mixed precision).

A transformer's residual stream carries "massive activations" (SmolLM2-135M: one channel reaches
~24,500 from layer 12 on), so one per-tensor activation range over it leaves uint16 steps of ~0.7
for the values near 1 that carry the signal. The stream itself needs no integer arithmetic: its
Adds and the RMS norms that read it are cheap elementwise work that HTP runs in float16 (the same
ops the fp32 recipe runs there), while the MatMuls, which hold the weights and the time, stay int.

`float_path(model)` finds those nodes by the graph alone: everything reachable from a token
embedding's output without passing through a MatMul (the residual Adds, each norm up to the MatMul
it feeds, the final norm before the LM head). A MatMul's own activation input is still quantized:
the quantizer puts a Q/DQ pair between the float norm and the int MatMul.

`attention_core(model)` names a second float region, kept at 16-bit activations: attention's
activation x activation MatMuls and what follows them up to the output projection, which HTP computes
far less exactly in uint16 than in float16.
"""
from __future__ import annotations

from typing import Any

STOP = frozenset({"MatMul", "Gemm"})  # where the stream hands over to int arithmetic


def embedding_outputs(model: Any) -> list[str]:
    """Outputs of the Gathers that look a graph input of token ids up in a stored table."""
    tables = {i.name for i in model.graph.initializer if len(i.dims) == 2}
    ids = {i.name for i in model.graph.input if i.name.endswith("input_ids")}
    return [n.output[0] for n in model.graph.node if n.op_type == "Gather" and n.input[0] in tables and n.input[1] in ids]


def float_path(model: Any, starts: list[str] | None = None) -> list[str]:
    """Names of the nodes reachable from `starts` (default: the token embeddings' outputs, then any
    graph input named like a hidden state) without crossing a MatMul; nodes get names if they lack them."""
    g = model.graph
    for k, n in enumerate(g.node):
        if not n.name:
            n.name = f"{n.op_type}_{k}"
    consumers: dict[str, list[Any]] = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    todo = list(starts if starts is not None else embedding_outputs(model))
    todo += [i.name for i in g.input if "hidden" in i.name]  # an encoder's output handed to a decoder graph
    seen_tensors, found = set(todo), {}
    while todo:
        for n in consumers.get(todo.pop(), ()):
            if n.op_type in STOP or n.name in found:
                continue
            found[n.name] = n
            for o in n.output:
                if o not in seen_tensors:
                    seen_tensors.add(o)
                    todo.append(o)
    return list(found)


def clips_to_max(model: Any, names: list[str]) -> int:
    """Clip(x, min) with a stored min and no max, among `names` -> Max(x, min). Left float in a QDQ
    graph, onnxruntime-qnn rejects such a Clip ("dynamic min/max") though its min is a constant; Max
    computes the same and compiles. Returns how many were rewritten."""
    from onnx import helper

    inits = {i.name for i in model.graph.initializer}
    wanted, done = set(names), 0
    for k, n in enumerate(model.graph.node):
        if (n.op_type == "Clip" and n.name in wanted and len(n.input) == 2 and n.input[1] in inits
                and not n.attribute):
            model.graph.node[k].CopyFrom(helper.make_node("Max", list(n.input), list(n.output), name=n.name))
            done += 1
    return done


def weight_key(model: Any, name: str) -> str | None:
    """A stored weight's identity across the signatures of a component (each exported on its own, so
    names may differ): the digest of its bytes; None for a tensor that is not stored."""
    import hashlib

    from onnx import numpy_helper

    for init in model.graph.initializer:
        if init.name == name:
            return hashlib.sha256(numpy_helper.to_array(init).tobytes()).hexdigest()
    return None


def tensor_ranges(model: Any, feeds: list[dict[str, Any]]) -> dict[str, tuple[float, float]]:
    """(min, max) of every float activation of `model` (float, weights loaded) over `feeds`."""
    import numpy as np
    import onnx
    import onnxruntime as ort

    m = onnx.ModelProto()
    m.CopyFrom(model)
    m = onnx.shape_inference.infer_shapes(m)
    have = {o.name for o in m.graph.output}
    floats = {v.name for v in m.graph.value_info if v.type.tensor_type.elem_type == onnx.TensorProto.FLOAT}
    watch = [o for n in m.graph.node for o in n.output if o in floats and o not in have]
    m.graph.output.extend(onnx.helper.make_tensor_value_info(t, onnx.TensorProto.FLOAT, None) for t in watch)
    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # every tensor as the quantizer sees it
    s = ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
    names = [o.name for o in s.get_outputs()]
    out: dict[str, tuple[float, float]] = {}
    for f in feeds:
        for name, v in list(zip(names, s.run(None, f))) + [(k, v) for k, v in f.items()]:
            v = np.asarray(v)
            if v.dtype != np.float32 or not v.size:
                continue
            lo, hi = float(v.min()), float(v.max())
            old = out.get(name)
            out[name] = (lo, hi) if old is None else (min(old[0], lo), max(old[1], hi))
    return out


def matmul_peaks(model: Any, ranges: dict[str, tuple[float, float]]) -> dict[str, float]:
    """max |input| and |output| of each stored-weight MatMul of `model` in `ranges` (tensor_ranges),
    keyed by weight_key."""
    inits = {i.name for i in model.graph.initializer}
    out: dict[str, float] = {}
    for n in model.graph.node:
        if n.op_type != "MatMul" or n.input[1] not in inits:
            continue
        key = weight_key(model, n.input[1])
        peak = max(max(abs(v) for v in ranges.get(t, (0.0, 0.0))) for t in (n.input[0], n.output[0]))
        if key is not None:
            out[key] = max(out.get(key, 0.0), peak)
    return out


def widened(ranges: dict[str, tuple[float, float]], pad: float) -> dict[str, list[dict[str, Any]]]:
    """Quantizer overrides (rmin/rmax) that widen each calibrated range by `pad` of its span on each
    side that is not bounded at 0: a few prompts never show every value text will bring, and a value
    past its range is clipped, where a wider range only costs resolution (cheap at 16 bits)."""
    import numpy as np

    out = {}
    for t, (lo, hi) in ranges.items():
        span = hi - lo
        if span <= 0:
            continue
        out[t] = [{"rmin": np.float32(lo - pad * span if lo < 0 else lo),
                   "rmax": np.float32(hi + pad * span if hi > 0 else hi)}]
    return out


def hot_nodes(model: Any, ranges: dict[str, tuple[float, float]], bound: float) -> list[str]:
    """Names of the nodes with an output past `bound` in `ranges`: kept float, so the value a hot
    MatMul reads (SmolLM2's gate x up product before the massive channel's down projection reaches
    ~2,800) is not squeezed into one 16-bit range first."""
    return [n.name for n in model.graph.node if n.op_type not in ("QuantizeLinear", "DequantizeLinear")
            and any(max(abs(v) for v in ranges.get(o, (0.0, 0.0))) > bound for o in n.output)]


def hot_matmuls(model: Any, keys: set[str]) -> list[str]:
    """Names of the MatMuls whose stored weight is one of `keys` (nodes named by float_path first)."""
    return [n.name for n in model.graph.node if n.op_type == "MatMul" and weight_key(model, n.input[1]) in keys]


def attention_core(model: Any) -> list[str]:
    """Names of the nodes from attention's query x key MatMul to the MatMul that reads its output
    projection: the two MatMuls whose inputs are both activations (scores, probabilities x value) and
    every node between and after them up to a stored-weight MatMul. HTP runs a uint16 x uint16 MatMul
    far less exactly than the CPU provider's QDQ arithmetic (on SmolLM2 its output error is ten times
    the CPU's), while in float16 these small products are exact enough. The nodes after them stay float
    too: a kept-float node whose output a Quantize reads would form a Q/DQ unit, which onnxruntime-qnn
    runs in integers anyway."""
    stored = {i.name for i in model.graph.initializer}
    stored |= {o for n in model.graph.node if n.op_type == "Constant" for o in n.output}
    core = [n for n in model.graph.node if n.op_type == "MatMul" and not stored & set(n.input[:2])]
    if not core:
        return []
    after = float_path(model, [n.output[0] for n in core])  # first: it names unnamed nodes
    return list(dict.fromkeys([n.name for n in core] + after))


def channel_weights(model: Any, skip: set[str], weight_type: Any) -> dict[str, list[dict[str, Any]]]:
    """Quantizer overrides giving each quantized MatMul's stored weight [K, N] one symmetric scale per
    output column (axis 1): a per-tensor 8-bit scale set by a weight matrix's largest entry leaves the
    typical ones a few steps, a relative error of several percent on every MatMul output."""
    from onnxruntime.quantization import QuantType

    signed = {QuantType.QUInt8: QuantType.QInt8, QuantType.QUInt16: QuantType.QInt16}.get(weight_type, weight_type)
    inits = {i.name: i for i in model.graph.initializer}
    return {n.input[1]: [{"quant_type": signed, "axis": 1, "symmetric": True}] for n in model.graph.node
            if n.op_type == "MatMul" and n.name not in skip and n.input[1] in inits and len(inits[n.input[1]].dims) == 2}
