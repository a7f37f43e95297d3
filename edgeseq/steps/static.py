"""Static-shape step modules: a fixed-length KV cache written by slot, prompts in length buckets.

For runtimes that compile every shape ahead of time (TFLite / LiteRT, NPUs). The same family step
modules run here as in the dynamic formats; `Named` only switches their `KVWrite` to slot mode.

Decoder-only, one component `decoder`, one signature per prefill bucket P plus `decode` (T = 1):
  (input_ids [1,T], attention_mask [1,C], position_ids [1,T], cache_position [T], *past [1,Hkv,C,D])
      -> logits [1,V], *present [1,Hkv,C,D]
  cache_position: the slots the T new tokens take; attention_mask marks the slots holding real
  tokens after this step. A prompt shorter than its bucket is left-padded (mask 0), as in a batch.
Encoder-decoder: `encoder` and `decoder_init` have one signature per encoder bucket S (the runtime
pads the cross-attention cache it gets to the largest bucket); `decoder_step` has one, `decode`:
  (input_ids [1,1], attention_mask [1,C], encoder_attention_mask [1,Smax], cache_position [1],
   *self_kv [1,Hkv,C,D], *cross_kv [1,Hkv,Smax,D]) -> logits [1,V], *present_self_kv [1,Hkv,C,D]

Cache length C: max_input + max_output for a decoder-only model (a bucket's padding takes slots
too, and the largest bucket is max_input); max_output for an encoder-decoder's decoder; max_output plus
the longest decoder prompt for a speech model's, whose encoder has one signature (one 30 s window).
Ring caches (decoder-only, `StaticShape.ring`): a sliding-window layer whose window W < C keeps
[1,Hkv,W,D], the token of slot s in row s % W (steps/attention.py KVWrite.cache); the manifest's
static["ring"] names those caches with their length.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..errors import UsageError
from ..models.spec import ModelSpec
from . import Component

DEFAULT_BUCKETS = (32, 128)
# a speech model's longest decoder prompt (generate/speech.py): start, language, task, no-timestamps
SPEECH_PROMPT = 4


@dataclass(frozen=True)
class StaticShape:
    """The shapes a static export compiles: the longest prompt, the most new tokens, the buckets."""

    max_input: int = 256
    max_output: int = 128
    buckets: tuple[int, ...] = ()  # prompt (decoder-only) or encoder input lengths; max_input is always one
    ring: bool = True  # sliding-window layers keep a ring of W rows when their window W < the cache length

    def __post_init__(self) -> None:
        for name, v in (("--max-input", self.max_input), ("--max-output", self.max_output)):
            if not isinstance(v, int) or v < 1:
                raise UsageError(f"{name} must be a positive integer, got {v}", f"for example {name} 256")
        bad = [b for b in self.buckets if not isinstance(b, int) or b < 1]
        if bad:
            raise UsageError(f"prefill buckets must be positive integers, got {bad}", "for example --prefill-buckets 32,128")
        over = [b for b in self.buckets if b > self.max_input]
        if over:
            raise UsageError(f"prefill buckets {over} exceed --max-input {self.max_input}",
                             f"raise --max-input to {max(over)} or drop those buckets")

    @property
    def all_buckets(self) -> list[int]:
        given = self.buckets or tuple(b for b in DEFAULT_BUCKETS if b < self.max_input)
        return sorted(set(given) | {self.max_input})

    def cache_length(self, kind: str, audio: bool = False) -> int:
        """Slots of the self-attention cache: a decoder-only model's prompt and output; an encoder-decoder's
        output (after its one start token); a speech model's output after its decoder prompt."""
        if audio:
            return self.max_output + SPEECH_PROMPT
        return self.max_input + self.max_output if kind == "decoder-only" else self.max_output

    def cross_length(self, spec: ModelSpec) -> int:
        """An encoder-decoder's longest encoder output: the longest input, or a speech model's fixed window."""
        return int(spec.audio["encoder_positions"]) if spec.audio else self.max_input

    def check(self, spec: ModelSpec) -> None:
        """Limits that depend on the model: positions it can address."""
        limit = spec.dims.max_positions
        if spec.audio:  # the encoder takes one fixed window; only the decoder's positions limit the shape
            need = self.cache_length(spec.kind, audio=True)
        elif spec.kind == "decoder-only":
            need = self.cache_length(spec.kind)
        else:
            need = max(self.max_input, self.max_output)
        if need > limit:
            given = f"--max-output {self.max_output} (+ {SPEECH_PROMPT} prompt tokens)" if spec.audio else \
                f"--max-input {self.max_input} + --max-output {self.max_output}"
            raise UsageError(f"{given} need {need} positions; {spec.name} has {limit}",
                             f"keep the cache within {limit} positions")

    def as_dict(self, spec: ModelSpec) -> dict[str, Any]:
        kind = spec.kind
        d: dict[str, Any] = {"max_input": self.max_input, "max_output": self.max_output,
                             "cache_length": self.cache_length(kind, bool(spec.audio)), "buckets": self.all_buckets}
        if kind == "encoder-decoder":
            d["cross_length"] = self.cross_length(spec)
        if spec.audio:  # the encoder's one signature; prompt length limits do not apply to audio
            d["max_input"] = d["cross_length"]
            d["buckets"] = [d["cross_length"]]
        return d


class Named(nn.Module):
    """A step module called with named inputs (converters name signature inputs after keyword
    arguments), returning its outputs by name. With `slots_at`, that input is `cache_position`,
    the one input a dynamic step lacks: it switches the step's KVWrite to slot mode for the call."""

    def __init__(self, module: nn.Module, inputs: list[str], outputs: list[str], slots_at: int | None = None,
                 rings: frozenset[int] = frozenset(), length: int = 0) -> None:
        super().__init__()
        self.module, self.inputs, self.outputs, self.slots_at = module, inputs, outputs, slots_at
        self.rings, self.length = rings, length  # ring-cache windows and the cache length C (KVWrite.ring)

    def forward(self, **feeds: torch.Tensor) -> dict[str, torch.Tensor]:
        args = [feeds[arg_name(n)] for n in self.inputs]
        if self.slots_at is None:
            out = self.module(*args)
        else:
            kv = self.module.kv  # type: ignore[union-attr]
            kv.slots = args.pop(self.slots_at)
            kv.rings, kv.length = self.rings, self.length
            try:
                out = self.module(*args)
            finally:
                kv.slots, kv.rings = None, frozenset()
        return dict(zip(self.outputs, out if isinstance(out, tuple) else (out,)))


def arg_name(name: str) -> str:
    """A tensor name as a signature input name: keyword arguments cannot hold dots (past.0.key -> past_0_key)."""
    return name.replace(".", "_")


def static_components(spec: ModelSpec, shape: StaticShape) -> list[Component]:
    from . import components

    shape.check(spec)
    dynamic = {c.name: c for c in components(spec, picks=False)}
    d, c_len = spec.dims, shape.cache_length(spec.kind, bool(spec.audio))
    kv = lambda n: torch.randn(1, d.num_kv_heads, n, d.head_dim)  # noqa: E731
    if spec.kind == "decoder-only":
        dec = dynamic["decoder"]
        inputs = ["input_ids", "attention_mask", "position_ids", "cache_position", *dec.cache_inputs]
        windows = _ring_windows(dec.module, d.num_layers, c_len) if shape.ring else [None] * d.num_layers
        lengths = [windows[int(n.split(".")[1])] or c_len for n in dec.cache_inputs]  # past.<layer>.key|value
        sigs = {}
        for name, t in [*((f"prefill_{b}", b) for b in shape.all_buckets), ("decode", 1)]:
            ex = (torch.randint(4, 50, (1, t)), torch.ones(1, c_len, dtype=torch.int64),
                  torch.arange(t)[None], torch.arange(t), *(kv(n) for n in lengths))
            sigs[name] = _named(inputs, ex)
        module = Named(dec.module, inputs, dec.outputs, slots_at=3,
                       rings=frozenset(w for w in windows if w is not None), length=c_len)
        return [_component(dec, module, inputs, sigs)]

    enc, init, step = dynamic["encoder"], dynamic["decoder_init"], dynamic["decoder_step"]
    s_max = shape.cross_length(spec)
    enc_sigs, init_sigs = {}, {}
    if spec.audio:  # one window of audio features: one encoder shape, its positions the cross length
        enc_sigs[f"encode_{s_max}"] = _named(enc.inputs, (torch.randn(1, spec.audio["n_mels"], spec.audio["frames"]),))
        init_sigs[f"init_{s_max}"] = _named(init.inputs, (torch.randn(1, s_max, d.hidden_size),))
    for b in [] if spec.audio else shape.all_buckets:
        enc_sigs[f"encode_{b}"] = _named(enc.inputs, (torch.randint(4, 50, (1, b)), torch.ones(1, b, dtype=torch.int64)))
        init_sigs[f"init_{b}"] = _named(init.inputs, (torch.randn(1, b, d.hidden_size),))
    self_in = [n for n in step.cache_inputs if n.startswith("past.")]
    cross_in = [n for n in step.cache_inputs if n.startswith("cross.")]
    inputs = ["input_ids", "attention_mask", "encoder_attention_mask", "cache_position", *step.cache_inputs]
    ex = (torch.randint(4, 50, (1, 1)), torch.ones(1, c_len, dtype=torch.int64), torch.ones(1, s_max, dtype=torch.int64),
          torch.arange(1), *(kv(c_len) for _ in self_in), *(kv(s_max) for _ in cross_in))
    return [_component(enc, Named(enc.module, enc.inputs, enc.outputs), enc.inputs, enc_sigs),
            _component(init, Named(init.module, init.inputs, init.outputs), init.inputs, init_sigs),
            _component(step, Named(step.module, inputs, step.outputs, slots_at=3), inputs, {"decode": _named(inputs, ex)})]


def _ring_windows(step: nn.Module, layers: int, c_len: int) -> list[int | None]:
    """Per layer, its sliding window where the layer keeps a ring cache (window < C), else None.
    A step module with sliding layers says each layer's window with `window(layer)` (llama.py, gemma.py)."""
    window = getattr(step, "window", None)
    if not callable(window):
        return [None] * layers
    return [w if w is not None and 0 < w < c_len else None for w in (window(i) for i in range(layers))]


def ring_lengths(components: list[Component], c_len: int) -> dict[str, int]:
    """The manifest's static["ring"]: cache input name -> its ring length, for the caches shorter
    than the cache length (the decode signature's example inputs have the compiled shapes)."""
    out = {}
    for c in components:
        for n in c.cache_inputs:
            ex = c.example_kwargs.get(arg_name(n))
            if ex is not None and n.startswith("past.") and ex.shape[2] < c_len:
                out[n] = int(ex.shape[2])
    return out


def signature_lengths(c: Component) -> dict[str, int]:
    """The manifest's signatures of a static component: name -> the tokens (or encoder positions) it
    takes, axis 1 of its first input; a speech encoder's, the positions of its output (frames / 2)."""
    first = arg_name(c.inputs[0])
    if c.inputs[0] == "input_features":
        return {s: int(ex[first].shape[2]) // 2 for s, ex in c.signatures.items()}
    return {s: int(ex[first].shape[1]) for s, ex in c.signatures.items()}


def _named(inputs: list[str], example: tuple[torch.Tensor, ...]) -> dict[str, torch.Tensor]:
    return {arg_name(n): t for n, t in zip(inputs, example)}


def _component(dyn: Component, module: nn.Module, inputs: list[str], sigs: dict[str, dict[str, torch.Tensor]]) -> Component:
    last = list(sigs.values())[-1]  # the decode signature: what matmul_weights traces
    return Component(dyn.name, module, inputs, dyn.outputs, (), {}, dyn.cache_inputs, dyn.cache_outputs,
                     signatures=sigs, example_kwargs=last)
