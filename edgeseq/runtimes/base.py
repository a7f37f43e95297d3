"""The Backend contract: engines expose only the model's steps; the generation loop is written once.

`StepBackend` holds the engine-independent bookkeeping (attention masks, positions) on top of one
engine hook, `run(component, feeds) -> outputs`, so an engine module only loads graphs and runs them.
The KV cache between steps is one `CacheForm` (cache.py), picked once at load by `cache_form()`.
A loaded backend is immutable and may be shared; each request owns a `State`.
"""
from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ArtifactError, InputError, UsageError
from ..artifact.manifest import Manifest
from .cache import CacheForm, ExplicitArrays, HeldCache
from .host import hugepages
from ..resources import check_budget, check_max_memory, estimate
from .options import EngineOptions, check_threads, coerce


@dataclass
class State:
    """One request's cache and positions. Shapes: caches [B, Hkv, L, D], masks [B, L]."""

    batch: int
    caches: dict[str, np.ndarray] = field(default_factory=dict)  # input name -> tensor for the next step
    mask: np.ndarray | None = None  # decoder self-attention key mask, int64 [B, L]
    positions: np.ndarray | None = None  # next position per row, int64 [B]
    encoder_mask: np.ndarray | None = None  # int64 [B, S] (encoder-decoder)
    cross: dict[str, np.ndarray] = field(default_factory=dict)  # cross-attention caches (encoder-decoder)
    slots: int | None = None  # static shapes (runtimes/static.py): cache slots used; None = dynamic
    held: HeldCache | None = None  # the cache form's own data (buffers, engine state, blocks); caches is then empty

    @property
    def length(self) -> int:
        if self.slots is not None:
            return self.slots
        return 0 if self.mask is None else int(self.mask.shape[1])


def step_name(manifest: Manifest) -> str:
    """The component that decodes: `decoder` (decoder-only) or `decoder_step` (encoder-decoder)."""
    return "decoder" if manifest.kind == "decoder-only" else "decoder_step"


@dataclass
class BackendOptions:
    """How to run: settings every engine reads, and the engine's own typed options (runtimes/options.py)."""

    threads: int | None = None  # intra-op threads; None = engine default
    precision: str = "f32"  # compute precision for engines that choose one (OpenVINO, the torch reference)
    delegate: str | None = None  # LiteRT: a GPU / NPU delegate library
    engine_options: Any = None  # the engine's options dataclass, a dict of its fields, or None (its defaults)
    # refuse the load, and each request before it runs, whose memory estimate (resources.estimate) exceeds this
    max_memory_mb: float | None = None

    def validate(self) -> "BackendOptions":
        check_threads(self.threads)
        check_max_memory(self.max_memory_mb)
        return self



class StepBackend(ABC):
    """Runs an artifact's components. Subclasses implement `_load` and `run`."""

    engine: str = "?"
    compile_cache: bool = False  # True where a second load reuses compiled blobs (reported as load_warm_ms)
    huge_pages_help: bool = False  # move the weights onto huge pages at load (runtimes/host/hugepages.py)
    options_class: type[EngineOptions] = EngineOptions  # the engine's typed options
    prefill_chunk: int | None = 256  # a longer one-row decoder-only prompt is fed in slices of this many tokens

    def __init__(self, artifact: Path, manifest: Manifest, device: str, options: BackendOptions) -> None:
        self.artifact, self.manifest, self.device, self.options = artifact, manifest, device, options.validate()
        self.precision = manifest.dtype  # engines that choose their own compute precision overwrite it
        t = time.perf_counter()
        self.engine_options = coerce(self.options_class, options.engine_options, self.engine)
        if options.max_memory_mb is not None:
            check_budget(estimate(manifest, self.engine), options.max_memory_mb, f"loading {artifact.name} on "
                         f"{self.engine}", "raise --max-memory (max_memory_mb), or export a lower-bit artifact "
                         "(--weights int4 / w4a8 / int8)")
        before = hugepages.snapshot() if hugepages.wanted(self.engine_options.huge_pages, self.huge_pages_help) \
            else None
        self._load()
        # the weights just loaded into huge pages (runtimes/host/hugepages.py): part of the load's time
        self.huge_pages = hugepages.collapse(before) if before is not None else {"status": "off", "mb": 0}
        self._check_contract()
        step = manifest.components[step_name(manifest)]
        # each step's present.* outputs become the next step's past.* inputs: names mapped once, not per token
        self._next_names = {o: o.replace("present.", "past.", 1) for o in step.cache_outputs}
        d = manifest.dims
        self.kv_heads = d["num_kv_heads"]
        self.head_dim = d["head_dim"]
        # the step returns the logits of the positions it is given (steps.Picked): a verify step can run
        self.picks = "logits_index" in self.graph_inputs(step_name(manifest))
        self._last = {1: np.zeros(1, np.int64)}  # logits_index [T-1] per step width T, made once each
        self.kv_cache = self.cache_form()
        # rows may forget different numbers of tokens (trim_rows): the forgotten slots stay as masked
        # holes, which only a step that takes each token's position from position_ids reads correctly
        # (not an encoder-decoder's slot positions, ORT's GroupQueryAttention rotating by slot, or
        # sliding windows counted in slots)
        self._gqa = "GroupQueryAttention" in step.contrib_ops  # several new tokens after a cache: batch 1 only
        self.holes = manifest.kind == "decoder-only" and self.kv_cache.holes and not d.get("sliding_window") \
            and not self._gqa
        self._settle()
        self.load_ms = (time.perf_counter() - t) * 1e3

    def _settle(self) -> None:
        """Work an engine does once its artifact is open, timed as part of the load (OpenVINO: warm_up)."""

    def warm_up(self, lengths: tuple[int, ...] = (1, 16, 128)) -> None:
        """A prompt of each length and one decode step after it, outputs dropped: an engine that packs
        weights lazily for each new shape (OpenVINO's CPU plugin) does it now rather than in a request.
        Text models only (a speech encoder's input is not tokens)."""
        m = self.manifest
        if m.audio:
            return
        start = m.generation.get("decoder_start_token_id")
        token = np.array([0], np.int64)
        for n in sorted({min(n, int(m.dims["max_positions"]) - 2) for n in lengths}):
            state, ids = self.new_state(1), np.zeros((1, n), np.int64)
            if m.kind != "decoder-only":
                self.encode(state, ids, np.ones_like(ids))
                ids = np.full((1, 1), start or 0, np.int64)
            self.prefill(state, ids)
            self.decode(state, token)
            del state  # before the next: one cache serves every length (a paged form keeps it as a spare)

    def cache_form(self) -> CacheForm[Any]:
        """How this backend keeps the KV cache between steps (cache.py); engines with a form of their
        own override this. Called once, at the end of the load."""
        return ExplicitArrays(self)

    @abstractmethod
    def _load(self) -> None: ...

    @abstractmethod
    def run(self, component: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run one graph; return its outputs by name."""

    @abstractmethod
    def graph_inputs(self, component: str) -> set[str]:
        """The input names of one loaded graph."""

    def _check_contract(self) -> None:
        """The manifest's cache names must be the graphs' inputs: the loop feeds exactly those."""
        plain = {"input_ids", "attention_mask", "position_ids", "encoder_attention_mask", "encoder_hidden_states",
                 "cache_position", "input_features", "logits_index"}
        for name, comp in self.manifest.components.items():
            have = self.graph_inputs(name)
            want = plain & have | set(comp.cache_inputs)
            if have != want:
                raise ArtifactError(f"the manifest's cache names for {name} do not match its graph "
                                    f"(graph inputs not described: {sorted(have - want)[:4]}; "
                                    f"described but absent: {sorted(want - have)[:4]})",
                                    "re-export the artifact; do not edit edgeseq.json by hand")

    def placement(self) -> dict[str, Any] | None:
        """Which device ran which part of the graphs, where the engine can tell."""
        return None

    def _cache_placement(self) -> dict[str, str]:
        """placement()'s "kv_cache" entry, where the cache form describes itself."""
        text = self.kv_cache.describe()
        return {"kv_cache": text} if text else {}

    # -- the steps -------------------------------------------------------------------------------
    def new_state(self, batch: int) -> State:
        state = State(batch=batch, positions=np.zeros(batch, np.int64))
        self.kv_cache.new(state)
        return state

    def encode(self, state: State, ids: np.ndarray, mask: np.ndarray) -> None:
        """Encoder-decoder: run the encoder and build the cross-attention cache. ids, mask [B, S]."""
        hidden = self.run("encoder", {"input_ids": ids, "attention_mask": mask})["encoder_hidden_states"]
        state.cross = self.run("decoder_init", {"encoder_hidden_states": hidden})
        state.encoder_mask = mask

    def encode_audio(self, state: State, features: np.ndarray) -> None:
        """Speech models: run the encoder on log-mel features [B, n_mels, frames] (one window per row)
        and build the cross-attention cache; every encoder position is real (mask of ones)."""
        hidden = self.encoder_hidden(features)
        state.cross = self.run("decoder_init", {"encoder_hidden_states": hidden})
        state.encoder_mask = np.ones(hidden.shape[:2], np.int64)

    def encoder_hidden(self, features: np.ndarray) -> Any:
        """A speech encoder's output [B, positions, E] for features [B, n_mels, frames]."""
        return self.run("encoder", {"input_features": features})["encoder_hidden_states"]

    def prefill(self, state: State, ids: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        """Feed prompt tokens [B, T] (left-padded where mask is 0); return next-token logits [B, V]."""
        if mask is None:
            mask = np.ones_like(ids)
        # a left-pad slot gets position 0; real tokens count from 0 after the padding
        pos = np.maximum(np.cumsum(mask, axis=1) - 1, 0) + state.positions[:, None]
        n = self.prefill_chunk
        if n and ids.shape[0] == 1 and ids.shape[1] > n and self.manifest.kind == "decoder-only" \
                and not self.manifest.static:
            # a long prompt in slices: a step's activations (attention scores [heads, T, past + T], the MLP's
            # [T, 4 x hidden]) then grow with the slice, not the prompt; the logits are the last slice's
            for start in range(0, ids.shape[1] - n, n):
                self._step(state, ids[:, start:start + n], mask[:, start:start + n], pos[:, start:start + n])
            last = (ids.shape[1] - 1) // n * n
            return self._step(state, ids[:, last:], mask[:, last:], pos[:, last:])
        return self._step(state, ids, mask, pos)

    def decode(self, state: State, tokens: np.ndarray) -> np.ndarray:
        """Feed one token per row [B]; return next-token logits [B, V]."""
        ids = tokens.reshape(state.batch, 1).astype(np.int64)
        return self._step(state, ids, np.ones_like(ids), state.positions[:, None])

    def verify(self, state: State, ids: np.ndarray) -> np.ndarray:
        """Feed T tokens per row [B, T] after the cache (a speculative step: the last accepted token and
        k proposals); return the logits after each of them [B, T, V]. The caller trims what it rejects."""
        b, t = ids.shape
        self.check_verify(b)
        ones = np.ones((b, t), np.int64)
        logits = self._step(state, ids.astype(np.int64), ones, state.positions[:, None] + np.arange(t),
                            np.arange(t, dtype=np.int64))
        return logits.reshape(b, t, -1)

    def check_verify(self, batch: int = 1) -> None:
        """Refuse, with the fix, what cannot check several new tokens in one step: an artifact whose step
        returns only the last position's logits, or a batch on ONNX Runtime's GroupQueryAttention."""
        if batch > 1 and self._gqa:
            raise UsageError("ONNX Runtime's GroupQueryAttention checks several new tokens after a cache only at "
                             "batch 1", "speculate one prompt at a time, or export with --no-ort-kernels (or for "
                             "OpenVINO) to speculate on a batch")
        if not self.picks:
            raise InputError(f"{self.artifact.name} cannot check several proposed tokens in one step: its step "
                             "returns only the last position's logits" + (" (a static-shape artifact)"
                                                                          if self.manifest.static else ""),
                             "re-export it with this edgeseq (dynamic shapes: --format onnx or openvino) to "
                             "speculate, or generate without speculate")

    def reorder(self, state: State, rows: np.ndarray, cross: bool = False) -> None:
        """Make row i of the state a copy of row rows[i] (beam search). The cross-attention cache is
        reordered only when asked: beams of one prompt share it, so it changes only when tiling."""
        self.kv_cache.reorder(state, rows)
        state.batch = len(rows)
        assert state.mask is not None and state.positions is not None
        state.mask, state.positions = state.mask[rows], state.positions[rows]
        if cross:
            state.cross = {k: v[rows] for k, v in state.cross.items()}
            state.encoder_mask = None if state.encoder_mask is None else state.encoder_mask[rows]

    def trim(self, state: State, n: int) -> None:
        """Forget the last n cached positions of every row (caller-owned loops: rewind)."""
        if not 0 <= n <= state.length:
            raise InputError(f"cannot rewind {n} positions of a cache holding {state.length}",
                             "rewind at most as many tokens as were fed")
        self.kv_cache.trim(state, state.length - n)

    def trim_rows(self, state: State, counts: np.ndarray) -> None:
        """Forget the last counts[i] tokens of row i (speculative decoding: each row's rejected tokens).
        What all rows forget goes as in `trim`; the rest becomes masked holes (`holes`)."""
        counts = np.asarray(counts, np.int64)
        common = int(counts.min())
        if common:
            self.trim(state, common)
            counts = counts - common
        if not counts.any():
            return
        if not self.holes:
            raise InputError("this artifact's cache cannot forget a different number of tokens per row",
                             "trim every row by the same count (speculative decoding re-feeds instead)")
        assert state.mask is not None and state.positions is not None
        mask = state.mask.copy()
        for row, n in enumerate(counts.tolist()):
            if n:
                mask[row, np.flatnonzero(mask[row])[-n:]] = 0
        self.kv_cache.forget_rows(state, counts)
        state.mask, state.positions = mask, state.positions - counts

    def _step(self, state: State, ids: np.ndarray, new_mask: np.ndarray, pos: np.ndarray,
              picks: np.ndarray | None = None) -> np.ndarray:
        """One step of T tokens; `picks`: the positions whose logits come back (default the last)."""
        assert state.mask is not None and state.positions is not None
        full_mask = np.concatenate([state.mask, new_mask], axis=1)
        feeds = {"input_ids": ids, "attention_mask": full_mask, **state.caches}
        if self.picks:
            feeds["logits_index"] = picks if picks is not None else self._last_index(ids.shape[1])
        if self.manifest.kind == "decoder-only":
            feeds["position_ids"] = pos
            logits = self.kv_cache.step(state, feeds)
        else:
            if state.encoder_mask is None:
                raise InputError("encoder-decoder model: call encode() before prefill()")
            logits = self.kv_cache.step(state, {**feeds, "encoder_attention_mask": state.encoder_mask, **state.cross})
        state.mask = full_mask
        state.positions = pos[:, -1] + 1
        return logits

    def _last_index(self, t: int) -> np.ndarray:
        idx = self._last.get(t)
        if idx is None:
            idx = self._last[t] = np.array([t - 1], np.int64)
        return idx
