"""The OpenVINO CPU engine's KV cache in blocks: a decoder-only step rewritten for paged attention.

After the state rewrite (openvino_state.py), OpenVINO's own paged-attention transformation (the one
openvino-genai applies to its models) turns each fused attention into a `PagedAttentionExtension`
node. The cache then lives in per-layer block tensors, [blocks, Hkv, block, D] (u8 ones carry their
scales in extra rows or columns), that the caller allocates and binds to the request; the kernel
appends each step's keys and values in place. The tokens of every row go in as one flat sequence
with per-row offsets (`subsequence_begins`), cached lengths (`past_lens`) and block tables, so a
row's left-pad slots are simply not fed. `PagedCache` below is that bookkeeping for one request
(`PagedBlocks` is the cache form, runtimes/cache.py, that gives each request one):
it grows the block tensors on demand, shares blocks between beams after a reorder (a block shared
and only partly filled is copied before the step that writes into it) and rewinds by shortening
the tables.

Against the state form (`benchmarks/ov_paged.py`; figures in docs/performance.md) the TTFT is
shorter at every precision once requests reuse their blocks and infer request (the fused kernel's
f32 prefill is slow, see openvino_state.py), and decoding is level or a little faster. The cost is
load time: OpenVINO 2026.4 does not read a paged graph back from its compiled-blob cache, so each
load compiles.

Two rewrites make the transformed graph usable here: the transformation turns the step's tokens
into the batch axis, so the exported selection of the positions whose logits the step returns
(`logits_index`, steps.Picked; `x[:, -1]` in older artifacts) would keep every token and the LM head
would run on all of them: each subsequence's last n rows are gathered instead (n = the length of
logits_index, whose length is all the paged graph reads of it). And a graph
whose shape arithmetic indexes a dimension the flat inputs no longer have is refused (the engine
would read out of bounds at run time), so that graph keeps the state form.
"""
from __future__ import annotations

import weakref
from typing import TYPE_CHECKING, Any

import numpy as np

from ...errors import InputError
from ..cache import CacheForm, HeldCache

if TYPE_CHECKING:
    from ..base import State, StepBackend

# the inputs the transformed step takes besides its cache blocks, all fed by PagedCache.feeds
PAGED_INPUTS = {"input_ids", "position_ids", "past_lens", "subsequence_begins", "block_indices",
                "block_indices_begins", "max_context_len", "logits_index"}
KEY, VALUE = "key_cache.", "value_cache."


def make_paged(model: Any) -> Any | None:
    """A paged copy of a stateful decoder step (openvino_state.make_stateful applied), or None where
    the transformation does not apply cleanly (then the caller keeps the state form)."""
    try:
        from openvino._offline_transformations import paged_attention_transformation
    except ImportError:
        return None
    paged = model.clone()
    try:
        paged_attention_transformation(paged)
    except RuntimeError:
        return None
    types = {op.get_type_name() for op in paged.get_ordered_ops()}
    names = {p.get_output_tensor(0).get_any_name() for p in paged.get_parameters()}
    extra = {n for n in names if not n.startswith((KEY, VALUE))} - PAGED_INPUTS
    if "PagedAttentionExtension" not in types or "ReadValue" in types or extra or _indexes_lost_axis(paged):
        return None
    return paged if _gather_picked_rows(paged) or _gather_last_rows(paged) else None


def _indexes_lost_axis(model: Any) -> bool:
    """True where a Gather reads a shape at an index past that shape's rank (a [B, T] input made flat)."""
    for op in model.get_ordered_ops():
        if op.get_type_name() != "Gather" or op.input_value(0).get_node().get_type_name() != "ShapeOf":
            continue
        shape, idx = op.input_value(0).get_partial_shape(), op.input_value(1).get_node()
        if shape.is_static and idx.get_type_name() == "Constant":
            rank = shape[0].get_length()
            if any(not -rank <= int(i) < rank for i in idx.get_vector()):
                return True
    return False


def _gather_last_rows(model: Any) -> bool:
    """Before the graph's last-position slice on the way to the logits, keep one row per subsequence:
    its last token (subsequence_begins[1:] - 1). False where no such slice is found."""
    from openvino import opset13 as ops

    begins = next(p for p in model.get_parameters() if p.get_output_tensor(0).get_any_name() == "subsequence_begins")
    logits = next((r for r in model.get_results() if "logits" in r.input_value(0).get_names()), None)
    todo, seen = [] if logits is None else [logits.input_value(0).get_node()], set()
    while todo:
        node = todo.pop()
        if node.get_instance_id() in seen:
            continue
        seen.add(node.get_instance_id())
        if node.get_type_name() == "Gather" and _is_last_position(node):
            last = ops.subtract(ops.slice(begins, ops.constant([1], np.int64), ops.constant([2**31 - 1], np.int64),
                                          ops.constant([1], np.int64)), ops.constant(1, np.int32))
            rows = ops.gather(node.input_value(0), last, ops.constant(0, np.int64))
            node.input(0).replace_source_output(rows.output(0))
            model.validate_nodes_and_infer_types()
            return True
        todo += [v.get_node() for v in node.input_values() if v.get_node().get_type_name() not in ("Constant",
                                                                                                 "Parameter")]
    return False


def _gather_picked_rows(model: Any) -> bool:
    """Replace the gather of `logits_index` positions with the last n rows of every subsequence
    (subsequence_begins[i + 1] - n ... - 1, n = len(logits_index)). False where the graph has no such input."""
    from openvino import opset13 as ops

    params = {p.get_output_tensor(0).get_any_name(): p for p in model.get_parameters()}
    picks = params.get("logits_index")
    if picks is None:
        return False
    gather = next((t.get_node() for t in picks.output(0).get_target_inputs()
                   if t.get_node().get_type_name() == "Gather" and t.get_index() == 1), None)
    if gather is None:
        return False
    ends = ops.slice(params["subsequence_begins"], ops.constant([1], np.int64), ops.constant([2**31 - 1], np.int64),
                     ops.constant([1], np.int64))
    n = ops.gather(ops.shape_of(picks, "i32"), ops.constant(0, np.int64), ops.constant(0, np.int64))
    offsets = ops.range(ops.constant(0, np.int32), n, ops.constant(1, np.int32), "i32")
    rows = ops.reshape(ops.add(ops.unsqueeze(ops.subtract(ends, n), ops.constant(1, np.int64)),
                               ops.unsqueeze(offsets, ops.constant(0, np.int64))), ops.constant([-1], np.int64), False)
    picked = ops.gather(gather.input_value(0), rows, ops.constant(0, np.int64))
    for target in list(gather.output(0).get_target_inputs()):
        target.replace_source_output(picked.output(0))
    model.validate_nodes_and_infer_types()
    return True


def _is_last_position(gather: Any) -> bool:
    idx, axis = gather.input_value(1).get_node(), gather.input_value(2).get_node()
    return (idx.get_type_name() == axis.get_type_name() == "Constant" and list(idx.get_vector()) == [-1]
            and list(axis.get_vector()) == [1])


def _offsets(sizes: Any) -> np.ndarray:
    """[0, s0, s0 + s1, ...] as int32: where each row's part of a flat input begins."""
    return np.concatenate([[0], np.cumsum(sizes)]).astype(np.int32)


class PagedCache(HeldCache):
    """One request's paged KV cache: the block tensors bound to its infer request and each row's
    block table. Blocks are counted by reference, so beams share what they have in common."""

    def __init__(self, request: Any, inputs: list[Any], batch: int) -> None:
        self.request = request
        self.specs = [(i.get_any_name(), i.get_element_type(), [d.get_length() for d in i.get_partial_shape()[1:]])
                      for i in inputs if i.get_any_name().startswith((KEY, VALUE))]
        # a value block is [Hkv, tokens, D (+ scales)]; a u8 key block may carry its scales as extra rows
        self.block = next(shape[1] for name, _, shape in self.specs if name.startswith(VALUE))
        self.tensors: dict[str, Any] = {}
        self.refs = np.zeros(0, np.int32)
        self.types = {i.get_any_name(): i.get_element_type() for i in inputs}
        self.inputs: dict[str, tuple[Any, np.ndarray]] = {}  # the request's input tensors, rewritten each step
        # no blocks yet: the first step allocates room for twice what it needs (a grow reallocates every
        # layer's tensors, which a prompt's TTFT would pay twice from a small start)
        self.reset(batch)

    def reset(self, batch: int) -> None:
        """Empty: every block free, `batch` rows with nothing cached (the tensors stay allocated and bound)."""
        self.refs[:] = 0
        self.free = list(range(len(self.refs) - 1, -1, -1))
        self.tables: list[list[int]] = [[] for _ in range(batch)]
        self.lengths = np.zeros(batch, np.int64)  # tokens cached per row (pad slots are never fed)

    def _grow(self, blocks: int) -> None:
        """Reallocate every block tensor with room for `blocks` blocks, keeping what is cached."""
        import openvino as ov

        have = len(self.refs)
        for name, kind, shape in self.specs:
            t = ov.Tensor(kind, [blocks, *shape])
            view = t.data
            view[have:] = 0
            if have:
                view[:have] = self.tensors[name].data
            self.tensors[name] = t
            self.request.set_tensor(name, t)
        self.refs = np.concatenate([self.refs, np.zeros(blocks - have, np.int32)])
        self.free += range(blocks - 1, have - 1, -1)

    def _take(self) -> int:
        if not self.free:
            self._grow(max(2 * len(self.refs), 2))
        b = self.free.pop()
        self.refs[b] = 1
        return b

    def _drop(self, blocks: list[int]) -> None:
        for b in blocks:
            self.refs[b] -= 1
            if self.refs[b] == 0:
                self.free.append(b)

    def step(self, ids: np.ndarray, new_mask: np.ndarray, pos: np.ndarray, picks: np.ndarray | None = None
             ) -> np.ndarray:
        """Run the step on tokens ids [B, T] at positions pos [B, T], only where new_mask is 1;
        return each row's next-token logits [B, V], or with `picks` [n] (a graph with logits_index)
        the logits after each row's last n tokens [B*n, V]."""
        feeds = self.feeds(ids, new_mask, pos)
        if picks is not None:
            feeds["logits_index"] = picks
        self._bind(feeds)
        self.request.infer()
        self.lengths = self.lengths + self._pending
        return np.array(self.request.get_output_tensor(0).data)

    def feeds(self, ids: np.ndarray, new_mask: np.ndarray, pos: np.ndarray) -> dict[str, np.ndarray]:
        """The step's inputs (see `step`), after making room in each row's table."""
        keep = new_mask.astype(bool)
        counts = keep.sum(axis=1)
        if not counts.all():
            raise InputError(f"row {int(np.argmin(counts))} of the batch has no token to feed",
                             "give every row at least one token")
        need = sum(-(-int(had + n) // self.block) - len(t) for t, had, n in zip(self.tables, self.lengths, counts))
        if need > len(self.free):  # at most one grow per step (_take grows too, for a copied shared block)
            self._grow(max(2 * len(self.refs), len(self.refs) - len(self.free) + 2 * need))
        for row, n in enumerate(counts):
            table, had = self.tables[row], int(self.lengths[row])
            if had % self.block and self.refs[table[-1]] > 1:  # a shared, partly filled block gets written
                self._copy_last(row)
            while len(table) * self.block < had + n:
                table.append(self._take())
        self._pending = counts
        flat = keep.all()  # every slot real (decode, unpadded prefill): no boolean gather
        return {"input_ids": (ids if flat else ids[keep]).reshape(-1),
                "position_ids": (pos if flat else pos[keep]).reshape(-1),
                "past_lens": self.lengths,
                "subsequence_begins": _offsets(counts),
                "block_indices": np.fromiter((b for t in self.tables for b in t), np.int32),
                "block_indices_begins": _offsets([len(t) for t in self.tables]),
                "max_context_len": (self.lengths + counts).max()}

    def _bind(self, feeds: dict[str, Any]) -> None:
        """Write the feeds into the request's own input tensors, made anew only when a shape changes: a
        request handed fresh tensors every step decodes slower."""
        import openvino as ov

        for name, value in feeds.items():
            held = self.inputs.get(name)
            if held is None or held[1].shape != np.shape(value):
                t = ov.Tensor(self.types[name], list(np.shape(value)))
                self.request.set_tensor(name, t)
                held = self.inputs[name] = (t, t.data)  # the tensor and a numpy view of it (costly to take)
            held[1][...] = value

    def _copy_last(self, row: int) -> None:
        old = self.tables[row][-1]
        new = self._take()
        for t in self.tensors.values():
            t.data[new] = t.data[old]
        self._drop([old])
        self.tables[row][-1] = new

    def reorder(self, rows: np.ndarray) -> None:
        """Row i becomes a copy of row rows[i]: its table shares the blocks (no data moves now)."""
        tables = [list(self.tables[r]) for r in rows]
        for t in tables:
            self.refs[t] += 1  # a table never lists a block twice
        for t in self.tables:
            self._drop(t)
        self.tables, self.lengths = tables, self.lengths[rows]

    def trim(self, counts: np.ndarray) -> None:
        """Forget the last counts[i] cached tokens of row i."""
        self.lengths = self.lengths - counts
        for row, table in enumerate(self.tables):
            need = -(-int(self.lengths[row]) // self.block)
            self._drop(table[need:])
            del table[need:]


class PagedBlocks(CacheForm[PagedCache]):
    """Each request's cache is a `PagedCache`; a finished request's one (its block tensors and infer
    request, costly to make: making them anew lengthens every TTFT) serves the next request."""

    name = "paged"

    def __init__(self, backend: StepBackend, compiled: Any, text: str) -> None:
        super().__init__(backend)
        self.compiled, self.text = compiled, text
        self.spare: list[PagedCache] = []  # paged caches of finished requests (new reuses them)

    def describe(self) -> str:
        return self.text

    def new(self, state: State) -> None:
        state.mask = np.zeros((state.batch, 0), np.int64)
        try:
            cache = self.spare.pop()
            cache.reset(state.batch)
        except IndexError:
            cache = PagedCache(self.compiled.create_infer_request(), self.compiled.inputs, state.batch)
        state.held = cache
        weakref.finalize(state, self._give_back, cache)

    def _give_back(self, cache: PagedCache) -> None:
        if len(self.spare) < 2:  # a few kept: each holds its blocks' memory
            self.spare.append(cache)

    def step(self, state: State, feeds: dict[str, Any], signature: str | None = None) -> np.ndarray:
        width = feeds["input_ids"].shape[1]
        held: PagedCache = state.held  # type: ignore[assignment]  # not self.held(): two calls a token
        return held.step(feeds["input_ids"], feeds["attention_mask"][:, -width:], feeds["position_ids"],
                         feeds.get("logits_index"))

    def reorder(self, state: State, rows: np.ndarray) -> None:
        self.held(state).reorder(rows)

    def forget(self, state: State, keep: int, real: np.ndarray) -> None:
        self.held(state).trim(real)  # pad slots were never fed: each row forgets its real tokens only

    def forget_rows(self, state: State, counts: np.ndarray) -> None:
        self.held(state).trim(counts)  # each row's table shortens: no holes
