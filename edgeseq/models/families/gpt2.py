"""GPT-2 family: learned positions, fused QKV projection (Conv1D), LayerNorm, tied LM head."""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ...steps.attention import KVWrite, attend, heads
from ..spec import Dims
from . import Family, register


class GPT2Step(nn.Module):
    """Same contract as LlamaStep: (input_ids, attention_mask, position_ids, *past_kv) -> logits, *present_kv."""

    def __init__(self, hf: Any) -> None:
        super().__init__()
        cfg = hf.config
        self.wte, self.wpe = hf.transformer.wte, hf.transformer.wpe
        self.blocks, self.ln_f, self.lm_head = hf.transformer.h, hf.transformer.ln_f, hf.lm_head
        self.n_heads, self.width = cfg.n_head, cfg.n_embd
        self.head_dim = cfg.n_embd // cfg.n_head
        self.kv = KVWrite()

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, position_ids: torch.Tensor,
                *past: torch.Tensor) -> tuple[torch.Tensor, ...]:
        x = self.wte(input_ids) + self.wpe(position_ids)  # [B, T, E]
        bias = self.kv.bias(attention_mask, input_ids.shape[1])
        presents: list[torch.Tensor] = []
        n, d = self.n_heads, self.head_dim
        for i, block in enumerate(self.blocks):
            a = block.attn
            q, k, v = a.c_attn(block.ln_1(x)).split(self.width, dim=2)
            q, k, v = heads(q, n, d), heads(k, n, d), heads(v, n, d)
            k, v = self.kv.append(past[2 * i], k), self.kv.append(past[2 * i + 1], v)
            presents += [k, v]
            x = x + a.c_proj(attend(q, k, v, bias, a.scaling))
            x = x + block.mlp(block.ln_2(x))
        return (self.lm_head(self.ln_f(self.kv.last(x))), *presents)


def dims(c: Any) -> Dims:
    return Dims(c.n_embd, c.n_layer, c.n_head, c.n_head, c.n_embd // c.n_head, c.vocab_size, c.n_positions)


# GPT-2 was trained without a BOS prefix, though its config names one
register(Family("gpt2", {"gpt2": "decoder-only"}, dims, decoder=GPT2Step, prepend_bos=False))
