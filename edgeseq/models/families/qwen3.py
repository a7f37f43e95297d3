"""Qwen3 family: Qwen2's layout without q/k/v biases (unless attention_bias), an RMS norm over each
query and key head before rotary, and a head_dim of its own (not hidden_size / heads)."""
from __future__ import annotations

import torch
from torch import nn

from ...steps.attention import rms_norm
from . import Family, register
from .llama import preset_config
from .qwen2 import Qwen2Step, dims


class Qwen3Step(Qwen2Step):
    """Qwen2Step with the per-head q/k norms. They act on unrotated heads, so the fused kernel route
    still applies: the norms run before q, k and v are packed for it."""

    def project(self, attn: nn.Module, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        q, k, v = super().project(attn, h)
        return self._norm(attn.q_norm, q), self._norm(attn.k_norm, k), v

    def packed(self, attn: nn.Module, h: torch.Tensor) -> torch.Tensor:
        return torch.cat(self.project(attn, h), dim=-1)

    def _norm(self, norm: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """[B, T, n*D] normed per head of D."""
        b, t, _ = x.shape
        return rms_norm(norm, x.reshape(b, t, -1, self.head_dim)).reshape(b, t, -1)


register(Family("qwen3", {"qwen3": "decoder-only"}, dims, decoder=Qwen3Step, gguf_architectures=("qwen3",),
                preset_config=preset_config, prepend_bos=False))
