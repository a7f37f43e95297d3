"""Step modules: plain-tensor torch modules with the KV cache explicit, one set per family
(declared by its record in models/families/; the blocks they share live in this package).

Every format's exporter converts these same modules, so all formats share input/output names,
shapes and semantics. `components(spec)` lists them with names, example inputs and dynamic axes.
A dynamic-shape step also takes `logits_index` [n]: the positions of its T tokens whose logits it
returns, row-major [B*n, V] (`Picked`): [T-1] in a plain step (so [B, V]), 0..T-1 in a speculative
verify step (runtimes/base.py `verify`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..models import families
from ..models.spec import ModelSpec

# Example sizes for tracing: all different and > 1 so no dimension is specialised to a constant.
_B, _T, _P, _S = 2, 3, 5, 7


@dataclass
class Component:
    name: str
    module: nn.Module
    inputs: list[str]
    outputs: list[str]
    example: tuple[torch.Tensor, ...]
    dynamic: dict[str, dict[int, str]]  # tensor name -> {axis: symbolic dim name}
    cache_inputs: list[str] = field(default_factory=list)
    cache_outputs: list[str] = field(default_factory=list)
    # static shapes (steps/static.py): signature name -> named example inputs, one compiled shape each
    signatures: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)
    example_kwargs: dict[str, torch.Tensor] = field(default_factory=dict)  # with an empty `example`


class Picked(nn.Module):
    """A step (three plain inputs, then its caches) with `logits_index` [n] as its fourth input: the
    positions whose logits it returns, set on the step's KVWrite (`picks`) for one call."""

    def __init__(self, step: nn.Module) -> None:
        super().__init__()
        self.step = step
        self.kv = step.kv

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, third: torch.Tensor,
                logits_index: torch.Tensor, *caches: torch.Tensor) -> tuple[torch.Tensor, ...]:
        self.kv.picks = logits_index
        try:
            return self.step(input_ids, attention_mask, third, *caches)  # type: ignore[no-any-return]
        finally:
            self.kv.picks = None


def _picked(c: Component) -> Component:
    """`c` (a step) taking logits_index after its three plain inputs (example: two positions, so
    the exporter keeps the axis dynamic)."""
    example = (*c.example[:3], torch.tensor([_T - 2, _T - 1]), *c.example[3:])
    dyn = {**c.dynamic, "logits_index": {0: "picked"}, "logits": {0: "rows"}}
    return Component(c.name, Picked(c.module), [*c.inputs[:3], "logits_index", *c.inputs[3:]], c.outputs, example,
                     dyn, c.cache_inputs, c.cache_outputs)


def kv_names(prefix: str, layers: int) -> list[str]:
    return [f"{prefix}.{i}.{kv}" for i in range(layers) for kv in ("key", "value")]


def components(spec: ModelSpec, picks: bool = True) -> list[Component]:
    """The model's step modules; `picks`: the step takes `logits_index` (dynamic shapes; static
    signatures return the last position's logits)."""
    comps = _encoder_decoder(spec) if spec.kind == "encoder-decoder" else [_decoder_only(spec)]
    return [_picked(c) if picks and c.name in ("decoder", "decoder_step") else c for c in comps]


def _decoder_only(spec: ModelSpec) -> Component:
    family = families.get(spec.family)
    assert family.decoder is not None  # Family.validate: a decoder-only model type has a decoder step
    step = family.decoder(spec.model)
    d = spec.dims
    past_in, present_out = kv_names("past", d.num_layers), kv_names("present", d.num_layers)
    ids = torch.randint(4, 50, (_B, _T))
    mask = torch.ones(_B, _P + _T, dtype=torch.int64)
    pos = torch.arange(_P, _P + _T)[None].repeat(_B, 1)
    past = tuple(torch.randn(_B, d.num_kv_heads, _P, d.head_dim) for _ in past_in)
    dyn: dict[str, dict[int, str]] = {"input_ids": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "total"},
                                      "position_ids": {0: "batch", 1: "seq"}, "logits": {0: "batch"}}
    dyn.update({n: {0: "batch", 2: "past"} for n in past_in})
    dyn.update({n: {0: "batch", 2: "total"} for n in present_out})
    return Component("decoder", step, ["input_ids", "attention_mask", "position_ids", *past_in],
                     ["logits", *present_out], (ids, mask, pos, *past), dyn, past_in, present_out)


def _encoder_decoder(spec: ModelSpec) -> list[Component]:
    family = families.get(spec.family)
    enc_cls, init_cls, step_cls = family.encoder, family.decoder_init, family.decoder_step
    assert enc_cls and init_cls and step_cls  # Family.validate: an encoder-decoder type has all three
    d = spec.dims
    ids = torch.randint(4, 50, (_B, _S))
    enc_mask = torch.ones(_B, _S, dtype=torch.int64)
    hidden = torch.randn(_B, _S, d.hidden_size)
    cross = kv_names("cross", d.num_layers)
    past_in, present_out = kv_names("past", d.num_layers), kv_names("present", d.num_layers)
    if spec.audio:  # speech: log-mel features of one fixed-length window in, no mask (models/families/whisper.py)
        features = torch.randn(_B, spec.audio["n_mels"], spec.audio["frames"])
        encoder = Component("encoder", enc_cls(spec.model), ["input_features"], ["encoder_hidden_states"],
                            (features,), {"input_features": {0: "batch"}, "encoder_hidden_states": {0: "batch"}})
    else:
        encoder = Component("encoder", enc_cls(spec.model), ["input_ids", "attention_mask"], ["encoder_hidden_states"],
                            (ids, enc_mask), {"input_ids": {0: "batch", 1: "enc_seq"},
                                              "attention_mask": {0: "batch", 1: "enc_seq"},
                                              "encoder_hidden_states": {0: "batch", 1: "enc_seq"}})
    init = Component("decoder_init", init_cls(spec.model), ["encoder_hidden_states"], cross, (hidden,),
                     {"encoder_hidden_states": {0: "batch", 1: "enc_seq"},
                      **{n: {0: "batch", 2: "enc_seq"} for n in cross}}, cache_outputs=cross)
    dec_ids = torch.randint(4, 50, (_B, _T))
    dec_mask = torch.ones(_B, _P + _T, dtype=torch.int64)
    self_kv = tuple(torch.randn(_B, d.num_kv_heads, _P, d.head_dim) for _ in past_in)
    cross_kv = tuple(torch.randn(_B, d.num_kv_heads, _S, d.head_dim) for _ in cross)
    dyn: dict[str, dict[int, str]] = {"input_ids": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "total"},
                                      "encoder_attention_mask": {0: "batch", 1: "enc_seq"}, "logits": {0: "batch"}}
    dyn.update({n: {0: "batch", 2: "past"} for n in past_in})
    dyn.update({n: {0: "batch", 2: "enc_seq"} for n in cross})
    dyn.update({n: {0: "batch", 2: "total"} for n in present_out})
    step = Component("decoder_step", step_cls(spec.model),
                     ["input_ids", "attention_mask", "encoder_attention_mask", *past_in, *cross],
                     ["logits", *present_out], (dec_ids, dec_mask, enc_mask, *self_kv, *cross_kv), dyn,
                     [*past_in, *cross], present_out)
    return [encoder, init, step]


def matmul_weights(c: Component) -> int:
    """Weights one token is multiplied with in component `c`: the linear layers its forward actually
    calls, counted once each (T5's decoder step holds the cross-attention K/V projections but only
    decoder_init calls them). Embedding lookups are not multiplications and do not count."""
    called: dict[int, int] = {}

    def hook(module: nn.Module, *_: Any) -> None:
        called[id(module)] = int(module.weight.numel())

    layers = [m for m in c.module.modules() if isinstance(m, nn.Linear) or type(m).__name__ == "Conv1D"]
    handles = [m.register_forward_hook(hook) for m in layers]
    try:
        with torch.no_grad():
            c.module(*c.example, **c.example_kwargs)
    finally:
        for h in handles:
            h.remove()
    return sum(called.values())
