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
