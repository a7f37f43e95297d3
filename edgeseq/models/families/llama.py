"""Llama family (SmolLM2 and other Llama-shaped checkpoints): one step module for prefill and decode."""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ...steps import fused
from ...steps.attention import KVWrite, attend, heads, rms_norm, rotary, rotary_gathered, rotate
from ..spec import Dims
from . import Family, hf_config, register


class LlamaStep(nn.Module):
    """step(input_ids [B,T], attention_mask [B,P+T], position_ids [B,T], *past_kv [B,Hkv,P,D])
    -> logits of the last position [B,V], *present_kv [B,Hkv,P+T,D] (key, value per layer)."""

    def __init__(self, hf: Any) -> None:
        super().__init__()
        cfg = hf.config
        self.embed = hf.model.embed_tokens
        self.layers = hf.model.layers
        self.norm = hf.model.norm
        self.lm_head = hf.lm_head
        self.rotary = hf.model.rotary_emb  # holds inv_freq and the rope-scaling factor
        self.n_heads = cfg.num_attention_heads
        self.n_kv = cfg.num_key_value_heads or cfg.num_attention_heads
        self.head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
        self.max_positions = cfg.max_position_embeddings
        self.kv = KVWrite()

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, position_ids: torch.Tensor,
                *past: torch.Tensor) -> tuple[torch.Tensor, ...]:
        x = self.embed(input_ids)  # [B, T, H]
        bias = self.kv.bias(attention_mask, input_ids.shape[1])
        d, scale = self.head_dim, self.head_dim**-0.5
        fuse = self.kv.slots is None and fused.fusable(d, self.n_heads, self.n_kv)  # one ONNX Runtime kernel a layer
        if fuse:
            lens = fused.lengths(attention_mask)
            tables = fused.rotary_tables(self.rotary.inv_freq, self.max_positions, self.rotary.attention_scaling)
        elif self.kv.slots is None:
            cos, sin = rotary(position_ids, self.rotary.inv_freq, self.rotary.attention_scaling)
        else:  # static shapes: a position never reaches the cache length
            cos, sin = rotary_gathered(position_ids, attention_mask.shape[1], self.rotary.inv_freq,
                                       self.rotary.attention_scaling)
        presents: list[torch.Tensor] = []
        for i, layer in enumerate(self.layers):
            a = layer.self_attn
            h = rms_norm(layer.input_layernorm, x)
            if fuse:
                qkv = fused.packed(h, a.q_proj, a.k_proj, a.v_proj)
                o, k, v = fused.gqa(qkv, past[2 * i], past[2 * i + 1], bias, lens, tables, self.n_heads, self.n_kv,
                                    scale)
            else:
                q = heads(a.q_proj(h), self.n_heads, d)
                k = heads(a.k_proj(h), self.n_kv, d)
                v = heads(a.v_proj(h), self.n_kv, d)
                q, k = rotate(q, cos, sin), rotate(k, cos, sin)
                k, v = self.kv.append(past[2 * i], k), self.kv.append(past[2 * i + 1], v)
                o = attend(q, k, v, bias, scale)
            presents += [k, v]
            x = x + a.o_proj(o)
            x = x + layer.mlp(rms_norm(layer.post_attention_layernorm, x))
        logits = self.lm_head(rms_norm(self.norm, x[:, -1]))  # only the last position: prefill skips T-1 LM heads
        return (logits, *presents)


def dims(c: Any) -> Dims:
    hd = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
    return Dims(c.hidden_size, c.num_hidden_layers, c.num_attention_heads,
                c.num_key_value_heads or c.num_attention_heads, hd, c.vocab_size, c.max_position_embeddings)


def preset_config(model_type: str, kw: dict[str, Any]) -> Any:
    """transformers 5 takes the rotary base inside rope_parameters; presets state it as rope_theta."""
    kw = dict(kw)
    kw["rope_parameters"] = {"rope_type": "default", "rope_theta": kw.pop("rope_theta")}
    return hf_config(model_type, kw)


register(Family("llama", {"llama": "decoder-only"}, dims, decoder=LlamaStep, gguf_architectures=("llama",),
                preset_config=preset_config))
