"""Bookkeeping for static-shape artifacts (steps/static.py): a fixed-length cache written by
slot, prompts padded into length buckets, batch 1 graphs.

Engines subclass `StaticStepBackend` and implement `invoke(component, signature, feeds)` for one
row; rows of a batch (batched generate, beam search) run one after another. The generation loop
sees the same prefill / decode / encode / reorder / trim as with dynamic shapes. The cache is the
`StaticSlots` form (cache.py): full-length arrays the graph writes at `cache_position`, a mask as
long as the cache, and a rewind that only frees slots.

Limits are errors, never silent: a prompt longer than the largest bucket, an encoder input longer
than the largest encoder bucket, or a step that would write past the cache.
"""
from __future__ import annotations

from abc import abstractmethod
from typing import Any

import numpy as np

from ..errors import ArtifactError, InputError
from .base import State, StepBackend
from .cache import CacheForm, HeldCache


class StaticSlots(CacheForm[HeldCache]):
    """A fixed-length cache [B, Hkv, cache_length, D] in State.caches, written by the graph at the
    step's slots (`cache_position`); `State.slots` counts the slots used and the mask covers them all."""

    name = "slots"
    holes = False  # slots are positions here

    def __init__(self, backend: StaticStepBackend) -> None:
        super().__init__(backend)
        # read from the manifest: the form is made at the end of the load, before StaticStepBackend's own fields
        static = backend.manifest.static or {}
        self.length = int(static.get("cache_length", 0))
        # ring caches (sliding-window layers, steps/static.py): past.* name -> its W rows
        self.rings: dict[str, int] = {str(k): int(v) for k, v in (static.get("ring") or {}).items()}
        self._run_signature = backend.run_signature

    def new(self, state: State) -> None:
        state.slots = 0
        state.mask = np.zeros((state.batch, self.length), np.int64)
        state.caches = self.arrays(state.batch, self.length, self.rings)

    def step(self, state: State, feeds: dict[str, Any], signature: str | None = None) -> np.ndarray:
        assert signature is not None
        out = self._run_signature(self.component, signature, feeds)
        nxt = self._next
        old, state.caches = state.caches, {nxt[k]: v for k, v in out.items() if k != "logits"}
        self.release(old)
        return out["logits"]  # type: ignore[no-any-return]

    def release(self, old: dict[str, Any]) -> None:
        """Called with the cache tensors a step replaced (an engine may reuse their memory)."""

    def trim(self, state: State, keep: int) -> None:
        """Slots from `keep` on are free again: masked, and overwritten by the next step."""
        assert state.slots is not None and state.mask is not None and state.positions is not None
        if self.rings and keep < state.slots - 1:
            # a ring row written at slot s replaced slot s - W, which a later token may still see; only
            # the last slot's overwrite (slot - W, out of every later token's window) is harmless
            raise InputError(f"this artifact's sliding-window layers keep ring caches, which cannot forget "
                             f"{state.slots - keep} cached slots: their rows now hold the tokens to forget, "
                             "not the older ones they replaced",
                             "start a new generator with the kept tokens, or re-export with the ring cache "
                             "off (StaticShape(ring=False) / --no-ring-cache) to rewind freely")
        free_slots(state, keep)


def free_slots(state: State, keep: int) -> None:
    """A slot cache's rewind: slots from `keep` on are masked (and overwritten by the next step), the
    positions of the real tokens there given back."""
    assert state.slots is not None and state.mask is not None and state.positions is not None
    state.positions = state.positions - state.mask[:, keep:state.slots].sum(axis=1)
    state.mask = state.mask.copy()
    state.mask[:, keep:] = 0
    state.slots = keep


class StaticStepBackend(StepBackend):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        static = self.manifest.static
        if not static:
            raise ArtifactError(f"{self.artifact} has no static-shape description in its manifest",
                                "re-export it with a static-shape format (--format tflite)")
        self.static = static
        self.cache_length = int(static["cache_length"])
        self.step_name = "decoder" if self.manifest.kind == "decoder-only" else "decoder_step"
        self.usage: dict[str, Any] = {}  # the last prompt's bucket and padding, for reports
        # per component, its signatures as (tokens, name), smallest first: looked up every step
        self._sizes = {c: sorted((n, s) for s, n in info.signatures.items())
                       for c, info in self.manifest.components.items()}

    @abstractmethod
    def invoke(self, component: str, signature: str, feeds: dict[str, Any]) -> dict[str, Any]:
        """Run one signature of one component for a batch of one row. Cache outputs may be engine
        objects that stay on the engine's side (read with np.asarray); they come back as inputs."""

    def run(self, component: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The signature whose length fits the feeds exactly (input_ids' or hidden states' axis 1)."""
        first = feeds.get("input_ids", feeds.get("encoder_hidden_states"))
        assert first is not None
        return self.run_signature(component, self._signature(component, int(first.shape[1])), feeds)

    def run_signature(self, component: str, signature: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        batch = next(v.shape[0] for k, v in feeds.items() if k != "cache_position")
        if batch == 1:
            return self.invoke(component, signature, feeds)
        feeds = {k: np.asarray(v) for k, v in feeds.items()}  # an engine's resident cache, read to slice rows
        rows = [self.invoke(component, signature, {k: v if k == "cache_position" else v[b: b + 1]
                                                   for k, v in feeds.items()}) for b in range(batch)]
        return {k: np.concatenate([np.asarray(r[k]) for r in rows]) for k in rows[0]}

    def _signature(self, component: str, tokens: int) -> str:
        fit = self._bucket(component, tokens)
        if fit is None or fit[1] != tokens:
            raise InputError(f"{component} has no signature for {tokens} tokens "
                             f"(has {[n for n, _ in self._sizes[component]]})",
                             "use prefill() / decode(), which pad into a bucket")
        return fit[0]

    def _bucket(self, component: str, tokens: int) -> tuple[str, int] | None:
        """The smallest signature of `component` that holds `tokens`: (name, length), or None."""
        return next(((name, n) for n, name in self._sizes[component] if n >= tokens), None)

    def cache_form(self) -> CacheForm[Any]:
        return StaticSlots(self)

    # -- the steps ---------------------------------------------------------------------------------
    def encode(self, state: State, ids: np.ndarray, mask: np.ndarray) -> None:
        n = ids.shape[1]
        fit = self._bucket("encoder", n)
        if fit is None:
            top = max(self.manifest.components["encoder"].signatures.values())
            raise InputError(f"an input of {n} tokens is longer than this artifact's largest encoder bucket ({top})",
                             f"shorten the input, or re-export with --max-input {n} or more")
        name, length = fit
        pad = length - n
        ids_p = np.pad(ids, ((0, 0), (0, pad)))
        mask_p = np.pad(mask, ((0, 0), (0, pad)))  # right padding: the encoder is bidirectional, masked keys
        hidden = self.run_signature("encoder", name, {"input_ids": ids_p, "attention_mask": mask_p})
        init = self._signature("decoder_init", length)
        cross = self.run_signature("decoder_init", init, hidden)
        # the decoder step reads cross caches of one length: pad them (masked) to it
        full = int(self.static.get("cross_length", length))
        state.cross = {k: np.pad(v, ((0, 0), (0, 0), (0, full - length), (0, 0))) for k, v in cross.items()}
        state.encoder_mask = np.pad(mask_p, ((0, 0), (0, full - length)))
        self.usage = {"encoder_bucket": length, "encoder_padding": pad}

    def encode_audio(self, state: State, features: np.ndarray) -> None:
        """One window of features per row: the encoder's one signature, whose output fills the cross caches."""
        super().encode_audio(state, features)
        self.usage = {"encoder_bucket": int(state.encoder_mask.shape[1]), "encoder_padding": 0}

    def encoder_hidden(self, features: np.ndarray) -> Any:
        name = self._sizes["encoder"][0][1]  # a speech encoder has one signature: one window
        return self.run_signature("encoder", name, {"input_features": features})["encoder_hidden_states"]

    def _step(self, state: State, ids: np.ndarray, new_mask: np.ndarray, pos: np.ndarray) -> np.ndarray:
        assert state.slots is not None and state.mask is not None
        t = ids.shape[1]
        fit = self._bucket(self.step_name, t)
        if fit is None:
            top = self._sizes[self.step_name][-1][0]
            if top == 1:  # an encoder-decoder's decoder: one token at a time
                logits = np.empty(0)
                for i in range(t):
                    logits = self._step(state, ids[:, i:i + 1], new_mask[:, i:i + 1], pos[:, i:i + 1])
                return logits
            raise InputError(f"a prompt of {t} tokens is longer than this artifact's largest prefill bucket "
                             f"({top})", f"shorten the prompt, or re-export with --max-input {t} or more")
        name, length = fit
        pad, start = length - t, state.slots
        if start + length > self.cache_length:
            what = f"{length} slots ({pad} of them padding)" if pad else f"{length} slot{'s' if length > 1 else ''}"
            raise InputError(f"the KV cache holds {self.cache_length} positions: {start} are used and this step needs "
                             f"{what}", "generate fewer tokens, or re-export with a larger --max-output")
        if state.encoder_mask is None and self.manifest.kind == "encoder-decoder":
            raise InputError("encoder-decoder model: call encode() before prefill()")
        # left padding, as in a batch: the last position is the last real token (decode pads nothing)
        left = (lambda x: np.pad(x, ((0, 0), (pad, 0)))) if pad else (lambda x: x)
        mask = state.mask.copy()
        mask[:, start:start + length] = left(new_mask)
        feeds = {"input_ids": left(ids), "attention_mask": mask,
                 "cache_position": np.arange(start, start + length, dtype=np.int64), **state.caches}
        if self.manifest.kind == "decoder-only":
            feeds["position_ids"] = left(pos)
        else:
            feeds.update(encoder_attention_mask=state.encoder_mask, **state.cross)
        logits = self.kv_cache.step(state, feeds, name)
        state.mask, state.slots = mask, start + length
        state.positions = pos[:, -1] + 1
        if t > 1 or start == 0:
            self.usage.update(prefill_bucket=length, prefill_padding=pad)
        return logits

    def placement(self) -> dict[str, Any]:
        ring = {"ring": self.static["ring"]} if self.static.get("ring") else {}
        return {"static": {"cache_length": self.cache_length, "buckets": self.static.get("buckets"), **ring,
                           **self.usage}}
