"""The KV cache between steps, as one interface with a form per way an engine keeps it.

`StepBackend` (base.py) keeps what every engine shares (masks, positions, the cross-attention cache)
and hands the cache itself to one `CacheForm`, picked once at load (`StepBackend.cache_form`). A form
is the one place where an engine's cache handling lives: what a fresh request holds, how the step
graph runs on it and what the step leaves for the next one, how beam search reorders its rows and
how a rewind forgets positions. The forms that exist:

- `ExplicitArrays` (here): the exported contract, `past.*` arrays in, `present.*` arrays out, held in
  `State.caches`. Every engine without a form of its own.
- `BoundBuffers` (engines/onnxruntime.py): buffers ONNX Runtime's GroupQueryAttention appends to in
  place through IO binding.
- `EngineState` (engines/openvino_state.py): the cache as OpenVINO variables of a request's own infer
  request; reorders become the step's `beam_idx`.
- `PagedBlocks` (engines/openvino_paged.py): OpenVINO paged attention over block tensors.
- `StaticSlots` (static.py): a fixed-length cache written at slots, for static-shape graphs;
  `ResidentSlots` (engines/litert.py) keeps it in LiteRT tensor buffers.

A new form implements `new`, `step`, `reorder` and `forget` (or `trim`, where the mask's layout
differs), says `name` and, where placement() should report it, `describe`; the engine returns it
from `cache_form()`. A form's per-request data (anything beyond `State.caches`) subclasses `HeldCache`
and lives in `State.held`.

The decode hot path is `step`: it must add no copy and no dict beyond what the engine needs.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast

import numpy as np

if TYPE_CHECKING:
    from .base import State, StepBackend


class HeldCache:
    """Base of a form's per-request cache data kept in `State.held` (buffers, an infer request, blocks)."""


H = TypeVar("H", bound=HeldCache)


class CacheForm(Generic[H]):
    """How one loaded backend keeps each request's KV cache. Stateless across requests except where
    the form pools what finished requests leave (paged blocks); each request's data is in its State."""

    name = "arrays"  # short name of the form (the conformance test checks which form an engine picked)
    holes = True  # a row's forgotten slots may stay in the cache, masked (StepBackend.trim_rows)

    def __init__(self, backend: StepBackend) -> None:
        m = backend.manifest
        self.component = "decoder" if m.kind == "decoder-only" else "decoder_step"
        self.past = [n for n in m.components[self.component].cache_inputs if n.startswith("past.")]
        self.heads, self.head_dim = backend.kv_heads, backend.head_dim
        self._run = backend.run
        self._next = backend._next_names  # present.* -> past.*, mapped once at load

    def describe(self) -> str | None:
        """What placement()["kv_cache"] says of this form; None: nothing (the exported contract)."""
        return None

    def held(self, state: State) -> H:
        """This form's data of `state` (the form put it there in `new`)."""
        return cast(H, state.held)

    def arrays(self, batch: int, length: int, lengths: dict[str, int] | None = None) -> dict[str, np.ndarray]:
        """Zeroed cache arrays [batch, Hkv, length, D] for every past.* input (`lengths`: the inputs that
        have another length, as static ring caches do)."""
        lengths = lengths or {}
        return {n: np.zeros((batch, self.heads, lengths.get(n, length), self.head_dim), np.float32) for n in self.past}

    # -- the hooks ---------------------------------------------------------------------------------
    def new(self, state: State) -> None:
        """Give `state` (batch and positions set) an empty cache and the key mask that goes with it."""
        state.mask = np.zeros((state.batch, 0), np.int64)
        state.caches = self.arrays(state.batch, 0)

    def step(self, state: State, feeds: dict[str, Any], signature: str | None = None) -> np.ndarray:
        """Run the step graph on `feeds` (which carry `state.caches`), keep what it leaves for the next
        step, and return the logits. `signature`: which graph of a static-shape step (static.py)."""
        out = self._run(self.component, feeds)
        nxt = self._next
        state.caches = {nxt[name]: v for name, v in out.items() if name != "logits"}
        return out["logits"]  # type: ignore[no-any-return]

    def reorder(self, state: State, rows: np.ndarray) -> None:
        """Row i of the cache becomes row rows[i] (the mask, positions and cross cache are base.py's)."""
        state.caches = {k: v[rows] for k, v in state.caches.items()}

    def trim(self, state: State, keep: int) -> None:
        """Keep the first `keep` cache positions of every row: the cache, then the mask and positions."""
        assert state.mask is not None and state.positions is not None
        real = state.mask[:, keep:].sum(axis=1)  # the tokens each row forgets (pad slots are not tokens)
        self.forget(state, keep, real)
        state.positions = state.positions - real
        state.mask = state.mask[:, :keep]

    def forget(self, state: State, keep: int, real: np.ndarray) -> None:
        """The cache's part of `trim`, before the mask is cut: `real` tokens per row go."""
        state.caches = {k: v[:, :, :keep] for k, v in state.caches.items()}

    def forget_rows(self, state: State, counts: np.ndarray) -> None:
        """The cache's part of `trim_rows` (before the mask hides the slots): the last counts[i] tokens of
        row i go. Nothing here: the masked slots stay, unread."""


class ExplicitArrays(CacheForm[HeldCache]):
    """The exported contract: past.* arrays in, present.* arrays out, kept in State.caches."""
