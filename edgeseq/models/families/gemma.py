"""Gemma family: Gemma 3 text models (270M, 1B) and Gemma 1, one step module for prefill and decode.

Differences from Llama the step spells out: (1 + w) RMS norms; Gemma 3's norms after attention and
after the MLP as well as before, per-head RMS norms on queries and keys, attention scaled by
query_pre_attn_scalar, layers alternating sliding-window and full attention with a rotary base per
kind, and optional tanh soft-capping of the final logits. The embedding module scales by
sqrt(hidden) itself (transformers' ScaledWordEmbedding), so the step calls it as it is.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ...errors import UnsupportedArchitectureError
from ...steps.attention import KVWrite, attend, heads, rms_norm, rotary, rotary_gathered, rotate
from ..spec import Dims
from . import Family, hf_config, register

SLIDING, FULL = "sliding_attention", "full_attention"


class GemmaStep(nn.Module):
    """step(input_ids [B,T], attention_mask [B,P+T], position_ids [B,T], *past_kv [B,Hkv,P,D])
    -> logits of the last position [B,V], *present_kv [B,Hkv,P+T,D] (key, value per layer).

    Sliding-window layers mask keys `sliding_window` or more positions back; they keep the
    full-length cache like the others, except in static graphs, where a window shorter than the
    cache makes theirs a ring of window rows (KVWrite.cache)."""

    def __init__(self, hf: Any) -> None:
        super().__init__()
        cfg = hf.config
        _refuse_unsupported(cfg)
        self.embed = hf.model.embed_tokens  # multiplies by sqrt(hidden) inside
        self.layers = hf.model.layers
        self.norm = hf.model.norm
        self.lm_head = hf.lm_head
        self.n_heads = cfg.num_attention_heads
        self.n_kv = cfg.num_key_value_heads or cfg.num_attention_heads
        self.head_dim = cfg.head_dim
        scalar = getattr(cfg, "query_pre_attn_scalar", None)  # Gemma 3; Gemma 1 scales by head_dim
        self.scale = (scalar or cfg.head_dim) ** -0.5
        self.softcap = getattr(cfg, "final_logit_softcapping", None)
        self.layer_types = list(getattr(cfg, "layer_types", None) or [FULL] * cfg.num_hidden_layers)
        self.sliding = getattr(cfg, "sliding_window", None)
        # one rotary table per attention kind: Gemma 3 keeps `<kind>_inv_freq` buffers, Gemma 1 one `inv_freq`
        rot = hf.model.rotary_emb
        self.kinds = sorted(set(self.layer_types))
        for kind in self.kinds:
            inv = getattr(rot, f"{kind}_inv_freq", None)
            self.register_buffer(f"inv_freq_{kind}", rot.inv_freq if inv is None else inv, persistent=False)
        self.rope_scaling = {k: float(getattr(rot, f"{k}_attention_scaling", None) or
                                      getattr(rot, "attention_scaling", 1.0)) for k in self.kinds}
        self.kv = KVWrite()

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, position_ids: torch.Tensor,
                *past: torch.Tensor) -> tuple[torch.Tensor, ...]:
        x = self.embed(input_ids)  # [B, T, H]
        t, d = input_ids.shape[1], self.head_dim
        bias = {k: self.kv.bias(attention_mask, t, self.sliding if k == SLIDING else None) for k in self.kinds}
        rope = {}
        for k in self.kinds:
            inv, s = getattr(self, f"inv_freq_{k}"), self.rope_scaling[k]
            rope[k] = rotary(position_ids, inv, s) if self.kv.slots is None else \
                rotary_gathered(position_ids, attention_mask.shape[1], inv, s)  # static: no float math on positions
        presents: list[torch.Tensor] = []
        for i, layer in enumerate(self.layers):
            a, kind = layer.self_attn, self.layer_types[i]
            h = rms_norm(layer.input_layernorm, x, offset=1.0)
            q = heads(a.q_proj(h), self.n_heads, d)
            k = heads(a.k_proj(h), self.n_kv, d)
            v = heads(a.v_proj(h), self.n_kv, d)
            if hasattr(a, "q_norm"):  # Gemma 3: RMS norm per head before the rotation
                q, k = rms_norm(a.q_norm, q, offset=1.0), rms_norm(a.k_norm, k, offset=1.0)
            cos, sin = rope[kind]
            q, k = rotate(q, cos, sin), rotate(k, cos, sin)
            w = self.window(i)
            (k, pk), (v, pv) = self.kv.cache(past[2 * i], k, w), self.kv.cache(past[2 * i + 1], v, w)
            presents += [pk, pv]
            o = a.o_proj(attend(q, k, v, bias[kind], self.scale))
            if hasattr(layer, "pre_feedforward_layernorm"):  # Gemma 3: norms around both blocks
                x = x + rms_norm(layer.post_attention_layernorm, o, offset=1.0)
                m = layer.mlp(rms_norm(layer.pre_feedforward_layernorm, x, offset=1.0))
                x = x + rms_norm(layer.post_feedforward_layernorm, m, offset=1.0)
            else:
                x = x + o
                x = x + layer.mlp(rms_norm(layer.post_attention_layernorm, x, offset=1.0))
        logits = self.lm_head(rms_norm(self.norm, self.kv.last(x), offset=1.0))  # only the positions asked for
        if self.softcap:
            logits = torch.tanh(logits / self.softcap) * self.softcap
        return (logits, *presents)

    def window(self, layer: int) -> int | None:
        """Layer `layer`'s sliding attention window (None: it sees every earlier token)."""
        return self.sliding if self.layer_types[layer] == SLIDING else None


def _refuse_unsupported(c: Any) -> None:
    """Configs whose attention this step would compute differently from transformers."""
    if getattr(c, "use_bidirectional_attention", False):
        raise UnsupportedArchitectureError(
            f"{c.model_type} config sets use_bidirectional_attention (an embedding model); edgeseq exports "
            "causal language models only", "export a Gemma 3 text generation model (use_bidirectional_attention false)")
    if getattr(c, "attn_logit_softcapping", None) is not None:
        # transformers' Gemma 3 stores the field but does not apply it; neither answer is safe to export
        raise UnsupportedArchitectureError(
            f"{c.model_type} config sets attn_logit_softcapping={c.attn_logit_softcapping}, which edgeseq does "
            "not export", "set attn_logit_softcapping to null in config.json (Gemma 3 checkpoints do not use it)")
    bad = {k: p.get("rope_type") for k, p in _rope_params(c).items() if p.get("rope_type") not in ("default", "linear")}
    if bad:
        raise UnsupportedArchitectureError(
            f"{c.model_type} config uses rope_type {bad}; edgeseq exports fixed rotary tables only "
            "(default or linear)", "export a model with default or linear rope_parameters")


def _rope_params(c: Any) -> dict[str, dict[str, Any]]:
    p = getattr(c, "rope_parameters", None) or {}
    return {k: v for k, v in p.items() if isinstance(v, dict)} if "rope_type" not in p else {"all": p}


def dims(c: Any) -> Dims:
    _refuse_unsupported(c)
    sliding = SLIDING in (getattr(c, "layer_types", None) or ())
    return Dims(c.hidden_size, c.num_hidden_layers, c.num_attention_heads,
                c.num_key_value_heads or c.num_attention_heads, c.head_dim, c.vocab_size, c.max_position_embeddings,
                sliding_window=c.sliding_window if sliding and c.sliding_window else 0)


def preset_config(model_type: str, kw: dict[str, Any]) -> Any:
    """Presets state rotary bases as rope_theta (full layers) and rope_local_base_freq (sliding ones);
    transformers 5 takes them inside rope_parameters, one entry per attention kind."""
    kw = dict(kw)
    full = {"rope_type": "default", "rope_theta": kw.pop("rope_theta")}
    if model_type == "gemma3_text":
        local = {"rope_type": "default", "rope_theta": kw.pop("rope_local_base_freq")}
        kw["rope_parameters"] = {FULL: full, SLIDING: local}
    else:
        kw["rope_parameters"] = full
    return hf_config(model_type, kw)


register(Family("gemma", {"gemma3_text": "decoder-only", "gemma": "decoder-only"}, dims, decoder=GemmaStep,
                gguf_architectures=("gemma3",), preset_config=preset_config))
