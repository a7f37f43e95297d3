"""Arithmetic per request from the manifest: FLOPs to the first token and per decoded token.

A reader comparing two architectures sees why one is faster: the work before the first token
(decoder-only: every prompt token through every layer; encoder-decoder: the prompt through the
encoder, once, then one decoder step) and the work per new token (only the decoder's weights).
Counted: 2 FLOPs per multiply-add of a token with a weight (linear layers, `matmul_weights` in
the manifest) and of attention (scores and weighted values: 4 * heads * head_dim per query-key
pair and layer). Norms, activations and softmax are left out (a few percent at these shapes).
"""
from __future__ import annotations

from typing import Any


def flops(m: Any, in_len: int, out_len: int) -> dict[str, float] | None:
    """{"first_token": FLOPs before the first new token, "per_token": mean FLOPs per later token};
    None for an artifact exported before edgeseq recorded matmul_weights."""
    d, comps = m.dims, m.components
    if any(not c.matmul_weights for c in comps.values()):
        return None
    attn = 4 * d["num_heads"] * d["head_dim"]  # per query-key pair and layer
    head = d["vocab_size"] * d["hidden_size"]  # the LM head runs once per step (last position only)
    # decode step j (1..out_len-1) feeds the j-th new token: in_len + j keys (decoder-only) or
    # j + 1 self keys (start token + j) and in_len cross keys (encoder-decoder); mean j = out_len / 2
    mean_new = out_len / 2
    if m.kind == "decoder-only":
        body = comps["decoder"].matmul_weights - head
        first = 2 * body * in_len + 2 * head + attn * d["num_layers"] * in_len * (in_len + 1) / 2
        per_token = 2 * body + 2 * head + attn * d["num_layers"] * (in_len + mean_new)
    else:
        body = comps["decoder_step"].matmul_weights - head
        encoder = 2 * comps["encoder"].matmul_weights * in_len + attn * d["num_encoder_layers"] * in_len**2
        cross = 2 * comps["decoder_init"].matmul_weights * in_len
        step = 2 * body + 2 * head + attn * d["num_layers"] * in_len  # cross-attention over the input
        first = encoder + cross + step + attn * d["num_layers"]
        per_token = step + attn * d["num_layers"] * (1 + mean_new)
    return {"first_token": float(first), "per_token": float(per_token)}
