"""The OpenVINO CPU engine's KV cache as engine state: a rewrite of the step graph applied at load.

An exported decoder step takes the cache as `past.*` inputs and returns it grown as `present.*`
outputs (the contract every engine shares). Run that way, each step copies the whole cache out of
the engine and back in, and OpenVINO's CPU plugin computes attention from plain MatMul + Softmax
nodes. Made stateful (`past.*` read from, `present.*` written to OpenVINO variables), the plugin fuses
read, append and attention into one kernel that grows the cache in place (its
`ScaledDotProductAttentionWithKVCache`), which decodes faster at every precision.

Two things the fused kernel needs that the exported graph does not have:
- a `beam_idx` input [B] (i32) gathered over the cache before each step: the kernel's pattern requires
  it. It also makes beam search free: reordering rows is a different beam_idx, not a copy.
- grouped-query attention as the usual broadcast: the exported graphs fold a group's query heads into
  the rows of its shared K/V head ([B, Hkv, rep * T, D], for TFLite, see steps/attention.py);
  the kernel reads the cache length from the query's length, so the fold is undone here.
The artifact on disk is unchanged; the parity gate at export runs this rewritten graph.
At run time the cache is the `EngineState` form (runtimes/cache.py): each request owns an infer
request whose variables hold its cache.
A decoder-only step is then rewritten once more for paged attention where that applies (openvino_paged.py);
encoder-decoder steps stay in this form.

The cost: at f32 the fused kernel's prefill attention is slower than the unfused graph's (the
plugin's per-node counters say so); at bf16 it is faster. Asking for a causal kernel with a
padding-only mask did not change the f32 prefill.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..cache import CacheForm, HeldCache

if TYPE_CHECKING:
    from ..base import State, StepBackend

BEAM = "beam_idx"


@dataclass
class _Held(HeldCache):
    """A request's cache held by OpenVINO: its infer request and the rows to gather before the next step."""

    request: Any
    rows: np.ndarray | None = None  # beam reorders since the last step, composed; None = rows as they are


class EngineState(CacheForm[_Held]):
    """The step's cache as OpenVINO variables of the request's own infer request. A reorder is
    composed into the rows the next step's `beam_idx` gathers (no copy now); a rewind rewrites them."""

    name = "state"

    def __init__(self, backend: StepBackend, compiled: Any, inputs: set[str], outputs: list[str], text: str) -> None:
        super().__init__(backend)
        self.compiled, self.inputs, self.text = compiled, inputs, text
        self.logits = outputs.index("logits")  # the cache outputs became variables: logits are what is left

    def describe(self) -> str:
        return self.text

    def new(self, state: State) -> None:
        state.mask = np.zeros((state.batch, 0), np.int64)
        state.held = _Held(self.compiled.create_infer_request())

    def step(self, state: State, feeds: dict[str, Any], signature: str | None = None) -> np.ndarray:
        held: _Held = state.held  # type: ignore[assignment]  # not self.held(): two calls a token
        rows = np.arange(state.batch, dtype=np.int32) if held.rows is None else held.rows.astype(np.int32)
        wanted = self.inputs
        given = {k: v for k, v in feeds.items() if k in wanted}
        given[BEAM] = rows
        res = held.request.infer(given, share_inputs=True, share_outputs=False)
        held.rows = None
        return np.asarray(res[self.logits])

    def reorder(self, state: State, rows: np.ndarray) -> None:
        held = self.held(state)  # gathered by the next step's beam_idx, not copied now
        rows = np.asarray(rows, np.int64)
        held.rows = rows if held.rows is None else held.rows[rows]

    def forget(self, state: State, keep: int, real: np.ndarray) -> None:
        held = self.held(state)
        if keep == state.length and held.rows is None:
            return
        import openvino as ov

        for var in held.request.query_state():
            cache = np.asarray(var.state.data)
            if held.rows is not None:
                cache = cache[held.rows]
            var.state = ov.Tensor(np.ascontiguousarray(cache[:, :, :keep]))
        held.rows = None


def make_stateful(model: Any) -> list[str]:
    """Turn the `past.*` inputs / `present.*` outputs of a step graph into variables named after the
    inputs, with a `beam_idx` input gathering their rows; return the variable names (in input order)."""
    from openvino import opset6, opset13 as ops
    from openvino.op.util import Variable, VariableInfo

    params = {p.get_output_tensor(0).get_any_name(): p for p in model.get_parameters()}
    results = {name: r for r in model.get_results() for name in r.input_value(0).get_names()}
    past = [n for n in params if n.startswith("past.")]
    if not past:
        return []
    # a fresh request's variables start as [B, H, 0, D] zeros, B taken from this step's input_ids
    batch = ops.gather(ops.shape_of(params["input_ids"], "i64"), ops.constant([0], np.int64),
                       ops.constant(0, np.int64))
    beam = ops.parameter([-1], np.int32, name=BEAM)
    beam.get_output_tensor(0).set_names({BEAM})
    sinks = []
    for name in past:
        p = params[name]
        shape = p.get_partial_shape()
        info = VariableInfo()
        info.variable_id, info.data_shape, info.data_type = name, shape, p.get_element_type()
        var = Variable(info)
        empty = ops.constant([shape[1].get_length(), 0, shape[3].get_length()], np.int64)
        init = ops.broadcast(ops.constant(np.zeros((), p.get_element_type().to_dtype())),
                             ops.concat([batch, empty], 0))
        rows = ops.gather(opset6.read_value(init, var), beam, ops.constant(0, np.int64))
        for target in list(p.output(0).get_target_inputs()):
            target.replace_source_output(rows.output(0))
        result = results[name.replace("past.", "present.", 1)]
        grown = result.input_value(0).get_node()  # the Concat of past and new (one output)
        sinks.append(opset6.assign(grown, var))
        model.remove_result(result)
        model.remove_parameter(p)
    model.add_parameters([beam])
    model.add_sinks(sinks)
    model.validate_nodes_and_infer_types()
    return past


def unfold_grouped_queries(model: Any) -> int:
    """Rewrite each attention whose query heads are folded onto their K/V head ([B, Hkv, rep * T, D]
    from a Reshape of [B, Hq, T, D]) as attention over [B, Hq, T, D] with K/V broadcast to Hq heads,
    the mask taken before its per-head repeat. Returns how many were rewritten."""
    from openvino import opset13 as ops

    done = 0
    for sdpa in [op for op in model.get_ordered_ops() if op.get_type_name() == "ScaledDotProductAttention"]:
        fold = sdpa.input_value(0).get_node()
        if fold.get_type_name() != "Reshape":
            continue
        q = fold.input_value(0)
        hq = q.get_partial_shape()[1]
        hkv = sdpa.input_value(1).get_partial_shape()[1]
        if not (hq.is_static and hkv.is_static) or hq.get_length() == hkv.get_length():
            continue
        rep, heads = hq.get_length() // hkv.get_length(), hq.get_length()
        args = [q]
        for kv in (sdpa.input_value(1), sdpa.input_value(2)):  # [B, Hkv, S, D] -> [B, Hkv, rep, S, D] -> [B, Hq, S, D]
            wide = ops.broadcast(ops.unsqueeze(kv, ops.constant([2], np.int64)),
                                 ops.constant([1, 1, rep, 1, 1], np.int64), broadcast_spec="BIDIRECTIONAL")
            d = kv.get_partial_shape()[3].get_length()
            args.append(ops.reshape(wide, ops.constant([0, heads, -1, d], np.int64), special_zero=True).output(0))
        extra = [sdpa.input_value(i) for i in range(3, sdpa.get_input_size())]
        if extra and extra[0].get_node().get_type_name() == "Tile":  # the mask repeated per folded head
            extra[0] = extra[0].get_node().input_value(0)
        new = ops.scaled_dot_product_attention(*args, *extra, causal=bool(sdpa.get_attributes().get("causal")))
        new.set_friendly_name(sdpa.get_friendly_name())
        sdpa.output(0).replace(new.output(0))
        for target in list(new.output(0).get_target_inputs()):  # the fold's inverse, [B, Hq, T, D] again:
            unfold = target.get_node()  # now a no-op whose shape reads the step's token count from input_ids
            if unfold.get_type_name() == "Reshape" and unfold.get_output_partial_shape(0).rank.get_length() == 4 \
                    and unfold.get_output_partial_shape(0)[1] == hq:
                unfold.output(0).replace(new.output(0))
        done += 1
    if done:
        model.validate_nodes_and_infer_types()
    return done
