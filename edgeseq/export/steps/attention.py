"""Attention and masks shared by every family's step modules (plain tensors, export-friendly).

Shapes: B batch, T new tokens, S keys (past + new), Hq query heads, Hkv key/value heads, D head dim.
"""
from __future__ import annotations

import torch

# Additive mask value: finite so a row with every key masked (a left-pad query) gives a uniform
# softmax instead of NaN; exp(-1e9) is exactly 0 in float32, so real rows are unaffected.
NEG = -1e9


def causal_bias(attention_mask: torch.Tensor, new_tokens: int) -> torch.Tensor:
    """[B, S] 1/0 key mask -> additive [B, 1, T, S]: key j is visible to new token i if j <= past + i."""
    s = attention_mask.shape[1]
    past = s - new_tokens
    q_pos = torch.arange(new_tokens, device=attention_mask.device) + past  # [T]
    k_pos = torch.arange(s, device=attention_mask.device)  # [S]
    visible = (k_pos[None, :] <= q_pos[:, None])[None, None] & (attention_mask[:, None, None, :] > 0)
    return torch.where(visible, 0.0, NEG)


def padding_bias(attention_mask: torch.Tensor) -> torch.Tensor:
    """[B, S] 1/0 key mask -> additive [B, 1, 1, S] (bidirectional and cross attention)."""
    return torch.where(attention_mask[:, None, None, :] > 0, 0.0, NEG)


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor, scale: float) -> torch.Tensor:
    """softmax(q k^T * scale + bias) v -> [B, T, Hq * D].

    q [B, Hq, T, D]; k, v [B, Hkv, S, D]; bias broadcastable to [B, Hq, T, S].
    Grouped-query attention folds the query heads of a group next to their shared K/V head instead
    of repeating K/V, so no step copies the cache (query head h uses K/V head h // (Hq // Hkv)).
    """
    b, hq, t, d = q.shape
    hkv = k.shape[1]
    if hq == hkv:
        w = torch.softmax(q @ k.transpose(-1, -2) * scale + bias, dim=-1)  # [B, H, T, S]
        o = w @ v
    else:
        q5 = q.reshape(b, hkv, hq // hkv, t, d)  # [B, Hkv, rep, T, D]
        w = torch.softmax(q5 @ k.unsqueeze(2).transpose(-1, -2) * scale + bias.unsqueeze(2), dim=-1)
        o = (w @ v.unsqueeze(2)).reshape(b, hq, t, d)
    return o.transpose(1, 2).reshape(b, t, hq * d)


def heads(x: torch.Tensor, n: int, d: int) -> torch.Tensor:
    """[B, T, n * d] -> [B, n, T, d]."""
    return x.reshape(x.shape[0], x.shape[1], n, d).transpose(1, 2)


def rotary(positions: torch.Tensor, inv_freq: torch.Tensor, scaling: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotary tables for positions [B, T]: cos, sin [B, 1, T, D] (D = 2 * len(inv_freq))."""
    freqs = positions[..., None].float() * inv_freq  # [B, T, D/2]
    angles = torch.cat([freqs, freqs], dim=-1)[:, None]
    return angles.cos() * scaling, angles.sin() * scaling


def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Apply rotary embeddings (rotate-half convention) to x [B, H, T, D]."""
    half = x.shape[-1] // 2
    return x * cos + torch.cat([-x[..., half:], x[..., :half]], dim=-1) * sin


def rms_norm(norm: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """A model's RMS norm module (Llama's, T5's, the paper family's) applied as
    weight * x / sqrt(mean(x^2) + eps): the node pattern (Pow, ReduceMean, Add, Sqrt, Div, Mul) that
    ONNX Runtime fuses into one SimplifiedLayerNormalization kernel. The modules' own x * rsqrt(...)
    exports as Sqrt + Reciprocal + Mul, which no runtime fuses: six nodes per norm per step."""
    eps = getattr(norm, "variance_epsilon", None)
    eps = norm.eps if eps is None else eps
    return norm.weight * (x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + eps))
