"""Phi-3 family (Phi-3, Phi-3.5 mini, Phi-4-mini): Llama-shaped with q/k/v in one projection
(qkv_proj) and gate/up in one (gate_up_proj, run by the model's own MLP), an optional sliding
window on every layer, partial rotary (partial_rotary_factor < 1: only the first dims of each head
rotate) and LongRoPE scaling ("longrope", formerly "su").

LongRoPE: transformers rotates with the short factors while the sequence fits
original_max_position_embeddings and with the long ones past it (switching mid-generation,
without re-rotating the cache). edgeseq exports the short-factor form and caps the model's
positions (Dims.max_positions) at original_max_position_embeddings, where the two agree."""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..spec import Dims
from . import Family, register
from .llama import STATIC_ROPE, LlamaStep, check_rope, rope_type
from .llama import dims as llama_dims


def original_positions(c: Any) -> int:
    return int(c.rope_parameters.get("original_max_position_embeddings") or c.original_max_position_embeddings)


class Phi3Step(LlamaStep):
    def __init__(self, hf: Any) -> None:
        super().__init__(hf)
        w = hf.config.sliding_window
        self.sliding = None if w is None else int(w)
        self.longrope = rope_type(hf.config) == "longrope"
        if self.longrope:
            self.max_positions = min(self.max_positions, original_positions(hf.config))

    def project(self, attn: nn.Module, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        q, kv = self.n_heads * self.head_dim, self.n_kv * self.head_dim
        q, k, v = attn.qkv_proj(h).split([q, kv, kv], dim=-1)
        return q, k, v

    def packed(self, attn: nn.Module, h: torch.Tensor) -> torch.Tensor:
        return attn.qkv_proj(h)

    def window(self, layer: int) -> int | None:
        return self.sliding

    def rope(self) -> tuple[torch.Tensor, float]:
        # original_inv_freq: the short factors (transformers overwrites inv_freq in place with the
        # long ones after a forward past the original length)
        inv_freq = self.rotary.original_inv_freq if self.longrope else self.rotary.inv_freq
        return inv_freq, self.rotary.attention_scaling

    def fusable(self) -> bool:
        # partial rotary: the kernel and its PyTorch stand-in (fused._gqa) rotate whole heads, so
        # those models take the plain route
        return super().fusable() and 2 * self.rope()[0].shape[0] == self.head_dim


def dims(c: Any) -> Dims:
    check_rope(c, STATIC_ROPE + ("longrope",))
    d = llama_dims(c)
    d.sliding_window = int(c.sliding_window or 0)
    if rope_type(c) == "longrope":
        d.max_positions = min(d.max_positions, original_positions(c))
    return d


register(Family("phi3", {"phi3": "decoder-only"}, dims, decoder=Phi3Step, gguf_architectures=("phi3",)))
