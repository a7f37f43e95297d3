"""Llama family (SmolLM2 and other Llama-shaped checkpoints): one step module for prefill and decode."""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ...errors import UnsupportedArchitectureError
from ...steps import fused
from ...steps.attention import KVWrite, attend, heads, rms_norm, rotary, rotary_gathered, rotate
from ..spec import Dims
from . import Family, hf_config, register


class LlamaStep(nn.Module):
    """step(input_ids [B,T], attention_mask [B,P+T], position_ids [B,T], *past_kv [B,Hkv,P,D])
    -> logits of the last position [B,V], *present_kv [B,Hkv,P+T,D] (key, value per layer).

    The base of the Llama-shaped families (qwen2.py, qwen3.py, mistral.py, phi3.py): they override
    the hooks below (`project`, `packed`, `window`, `rope`, `fusable`) and keep this forward."""

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

    # hooks (the Llama forms here)
    def project(self, attn: nn.Module, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """q [B,T,Hq*D], k, v [B,T,Hkv*D] of a layer's attention input, before rotary."""
        return attn.q_proj(h), attn.k_proj(h), attn.v_proj(h)

    def packed(self, attn: nn.Module, h: torch.Tensor) -> torch.Tensor:
        """`project`'s q, k, v side by side [B,T,(Hq+2Hkv)*D]: the fused kernel's input."""
        return fused.packed(h, attn.q_proj, attn.k_proj, attn.v_proj)

    def window(self, layer: int) -> int | None:
        """Layer `layer`'s sliding attention window (None: it sees every earlier token)."""
        return None

    def rope(self) -> tuple[torch.Tensor, float]:
        """inv_freq [R/2] and the cos/sin scaling; R < D rotates only the first R dims of each head."""
        return self.rotary.inv_freq, self.rotary.attention_scaling

    def fusable(self) -> bool:
        """Whether this export may use ONNX Runtime's GroupQueryAttention (steps/fused.py)."""
        return fused.fusable(self.head_dim, self.n_heads, self.n_kv)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, position_ids: torch.Tensor,
                *past: torch.Tensor) -> tuple[torch.Tensor, ...]:
        x = self.embed(input_ids)  # [B, T, H]
        windows = [self.window(i) for i in range(len(self.layers))]
        biases = {w: self.kv.bias(attention_mask, input_ids.shape[1], w) for w in dict.fromkeys(windows)}
        d, scale = self.head_dim, self.head_dim**-0.5
        inv_freq, scaling = self.rope()
        fuse = self.kv.slots is None and self.fusable()  # one ONNX Runtime kernel a layer
        if fuse:
            lens = fused.lengths(attention_mask)
            tables = fused.rotary_tables(inv_freq, self.max_positions, scaling)
        elif self.kv.slots is None:
            cos, sin = rotary(position_ids, inv_freq, scaling)
        else:  # static shapes: a position never reaches the cache length
            cos, sin = rotary_gathered(position_ids, attention_mask.shape[1], inv_freq, scaling)
        presents: list[torch.Tensor] = []
        for i, layer in enumerate(self.layers):
            a, bias = layer.self_attn, biases[windows[i]]
            h = rms_norm(layer.input_layernorm, x)
            if fuse:
                o, k, v = fused.gqa(self.packed(a, h), past[2 * i], past[2 * i + 1], bias, lens, tables, self.n_heads,
                                    self.n_kv, scale)
                presents += [k, v]
            else:
                q, k, v = self.project(a, h)
                q, k, v = heads(q, self.n_heads, d), heads(k, self.n_kv, d), heads(v, self.n_kv, d)
                q, k = rotate(q, cos, sin), rotate(k, cos, sin)
                w = windows[i]
                (k, pk), (v, pv) = self.kv.cache(past[2 * i], k, w), self.kv.cache(past[2 * i + 1], v, w)
                o = attend(q, k, v, bias, scale)
                presents += [pk, pv]
            x = x + a.o_proj(o)
            x = x + layer.mlp(rms_norm(layer.post_attention_layernorm, x))
        logits = self.lm_head(rms_norm(self.norm, self.kv.last(x)))  # the positions asked for: prefill skips T-1 LM heads
        return (logits, *presents)


def dims(c: Any) -> Dims:
    hd = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
    return Dims(c.hidden_size, c.num_hidden_layers, c.num_attention_heads,
                c.num_key_value_heads or c.num_attention_heads, hd, c.vocab_size, c.max_position_embeddings)


# rope types whose inv_freq and scaling transformers computes once (no dependence on the sequence length)
STATIC_ROPE = ("default", "linear", "yarn", "llama3")


def rope_type(c: Any) -> str:
    """The config's rope type (transformers 5 keeps it in rope_parameters)."""
    params = getattr(c, "rope_parameters", None) or {}
    return str(params.get("rope_type", "default")) if isinstance(params, dict) else "per-layer"


def check_rope(c: Any, allowed: tuple[str, ...] = STATIC_ROPE) -> None:
    """Refuse a rope type the Llama-shaped steps would export wrongly (e.g. "dynamic": its frequencies
    change with the sequence length inside transformers' forward)."""
    kind = rope_type(c)
    if kind not in allowed:
        raise UnsupportedArchitectureError(
            f"{c.model_type} with rope type '{kind}' is not supported (supported: {', '.join(allowed)})",
            "export a checkpoint without that rope scaling (remove rope_scaling / rope_parameters' scaling from "
            "config.json to run at the original context length)")


def preset_config(model_type: str, kw: dict[str, Any]) -> Any:
    """transformers 5 takes the rotary base inside rope_parameters; presets state it as rope_theta."""
    kw = dict(kw)
    kw["rope_parameters"] = {"rope_type": "default", "rope_theta": kw.pop("rope_theta")}
    return hf_config(model_type, kw)


register(Family("llama", {"llama": "decoder-only"}, dims, decoder=LlamaStep, gguf_architectures=("llama",),
                preset_config=preset_config))
