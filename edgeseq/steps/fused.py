"""Attention as one ONNX Runtime kernel (com.microsoft GroupQueryAttention), for ONNX artifacts.

A step module calls `gqa` where it would rotate, append to the cache and attend (Llama family; T5's
decoder self-attention too, without rotary: its relative position bias per head is the kernel's
attention_bias, and its scores are unscaled, scale 1.0; cross-attention stays plain). In PyTorch it is
the same arithmetic as the plain form (`attention.rotate` / `attend`); while `ort_kernels()` is
active, the ONNX exporter writes it as one GroupQueryAttention node per layer instead of the ~25
nodes of the plain form (q/k/v split and head reshapes, rotary, cache concat, two matmuls, softmax).
The node takes the packed q/k/v projection, applies the rotary tables to it, appends the new keys
and values to the cache and attends: so that ONNX Runtime can grow the cache in place, in a buffer
the engine preallocates and binds as both past and present (runtimes/engines/onnxruntime.py).

Contract kept by the fused graph: outputs, cache names and cache layout [B, Hkv, L, D] are the plain
graph's; its inputs too, though it does not read position_ids (below). The padding / causal mask is
the step's additive bias (attention_bias); seqlens_k is total - 1 for every row, so a left-padded
row's pad slots count as cache slots, as in the plain graph, and the bias hides them. Rotary
positions are the cache slots, read from cos/sin tables of max_position_embeddings rows: the kernel
rotates decode steps by slot whatever position_ids say (given position_ids, a left-padded row's
prompt and later tokens were rotated inconsistently and greedy tokens changed), and
a rotary attention score depends only on the distance between query and key, so a row's positions
shifted by its padding give the same attention. position_ids stays a graph input (every decoder-only
graph takes it), unread. The kernel needs a head size that is a multiple of 16 and batch 1 whenever
several new tokens follow a past (edgeseq's Generator.append_tokens and rewind are single-sequence).
Only ONNX Runtime runs the node (OpenVINO's ONNX reader converts it but fails on a batch of two), so
the OpenVINO IR, TFLite and NPU exporters never enable it.

This form (packed q/k/v, rotary inside the node) replaced a first one with q, k, v apart and rotary
outside it, which decoded faster than the plain graph only with the cache in place;
benchmarks/ort_buffers.py times this one.
"""
from __future__ import annotations

import contextlib
from typing import Any

import torch

from .attention import Traced, attend, heads, rotate

ACTIVE = Traced(False)
DOMAIN = "com.microsoft"
OP = "GroupQueryAttention"


def ort_kernels() -> contextlib.AbstractContextManager[None]:
    """Export `gqa` calls as ONNX Runtime's GroupQueryAttention (ONNX artifacts only)."""
    return ACTIVE.set(True)


def fusable(head_dim: int, n_heads: int, n_kv: int) -> bool:
    """Whether a step should route attention through `gqa` while exporting."""
    return bool(ACTIVE.value) and head_dim % 16 == 0 and n_heads % n_kv == 0


def rotary_tables(inv_freq: torch.Tensor, positions: int, scaling: float) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin [positions, D/2] (scaled): the kernel's cos_cache / sin_cache (constants once exported)."""
    angles = torch.arange(positions, dtype=torch.float32, device=inv_freq.device)[:, None] * inv_freq[None]
    return angles.cos() * scaling, angles.sin() * scaling


@torch.library.custom_op("edgeseq::gqa", mutates_args=())
def _gqa(qkv: torch.Tensor, past_k: torch.Tensor, past_v: torch.Tensor, bias: torch.Tensor, seqlens: torch.Tensor,
         total: torch.Tensor, cos: torch.Tensor | None, sin: torch.Tensor | None, n_heads: int, n_kv: int,
         scale: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    d, p, t = past_k.shape[-1], past_k.shape[2], qkv.shape[1]
    q, k, v = qkv.split([n_heads * d, n_kv * d, n_kv * d], dim=-1)
    q, k = heads(q, n_heads, d), heads(k, n_kv, d)
    if cos is not None and sin is not None:  # rotary by cache slot
        slots = torch.arange(p, p + t, device=qkv.device)
        c, s = (torch.cat([x[slots], x[slots]], dim=-1)[None, None] for x in (cos, sin))  # [1, 1, T, D]
        q, k = rotate(q, c, s), rotate(k, c, s)
    key = torch.cat([past_k, k], dim=2)
    value = torch.cat([past_v, heads(v, n_kv, d)], dim=2)
    return attend(q, key, value, bias, scale), key, value


@_gqa.register_fake
def _(qkv: torch.Tensor, past_k: torch.Tensor, past_v: torch.Tensor, bias: torch.Tensor, seqlens: torch.Tensor,
      total: torch.Tensor, cos: torch.Tensor | None, sin: torch.Tensor | None, n_heads: int, n_kv: int,
      scale: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    b, t, (p, d) = qkv.shape[0], qkv.shape[1], past_k.shape[2:]
    return (qkv.new_empty(b, t, n_heads * d), past_k.new_empty(b, n_kv, p + t, d), past_v.new_empty(b, n_kv, p + t, d))


def lengths(attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The kernel's seqlens_k [B] (total - 1 for every row) and total_sequence_length (scalar), int32,
    computed once per step for all layers."""
    total = torch.ones_like(attention_mask[0]).sum().to(torch.int32)
    return (attention_mask[:, 0] * 0).to(torch.int32) + total - 1, total


def gqa(qkv: torch.Tensor, past_k: torch.Tensor, past_v: torch.Tensor, bias: torch.Tensor,
        lens: tuple[torch.Tensor, torch.Tensor], tables: tuple[torch.Tensor, torch.Tensor] | None, n_heads: int,
        n_kv: int, scale: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """qkv [B, T, (Hq + 2 Hkv) * D] (not yet rotated; rotated by cache slot when `tables` are given),
    past [B, Hkv, P, D], bias [B, 1 or Hq, T, P+T] -> attention output [B, T, Hq*D], present key,
    value [B, Hkv, P+T, D]."""
    cos, sin = tables if tables is not None else (None, None)
    return torch.ops.edgeseq.gqa(qkv, past_k, past_v, bias, *lens, cos, sin, n_heads, n_kv, scale)


def packed(h: torch.Tensor, *projections: torch.nn.Linear) -> torch.Tensor:
    """h through q, k and v side by side, as one matmul (the weights concatenated: one constant once
    exported, see export/passes.fold_constant_weights)."""
    w = torch.cat([p.weight for p in projections])
    b = None if projections[0].bias is None else torch.cat([p.bias for p in projections])
    return torch.nn.functional.linear(h, w, b)


def translation_table() -> dict[Any, Any]:
    """custom_translation_table for torch.onnx.export: `gqa` -> com.microsoft GroupQueryAttention."""
    import onnxscript

    _register_schema()
    ms = onnxscript.values.Opset(DOMAIN, 1)

    def gqa_onnx(qkv: Any, past_k: Any, past_v: Any, bias: Any, seqlens: Any, total: Any, cos: Any, sin: Any,
                 n_heads: int, n_kv: int, scale: float) -> Any:
        return ms.GroupQueryAttention(qkv, None, None, past_k, past_v, seqlens, total, cos, sin, None, bias,
                                      num_heads=n_heads, kv_num_heads=n_kv, scale=scale,
                                      do_rotary=0 if cos is None else 1,
                                      rotary_interleaved=0, _num_outputs=3)

    return {torch.ops.edgeseq.gqa.default: gqa_onnx}


def _register_schema() -> None:
    """Declare GroupQueryAttention's signature to onnx (ONNX Runtime's contrib schemas live in its C++
    only), so that onnxscript can emit the node: inputs query, key, value, past_key, past_value,
    seqlens_k, total_sequence_length, cos_cache, sin_cache, position_ids, attention_bias; outputs
    output, present_key, present_value."""
    import onnx
    from onnx.defs import OpSchema

    if onnx.defs.has(OP, DOMAIN):
        return
    opt, one = OpSchema.FormalParameterOption.Optional, OpSchema.FormalParameterOption.Single
    names = [("query", "T", one), ("key", "T", opt), ("value", "T", opt), ("past_key", "T", opt),
             ("past_value", "T", opt), ("seqlens_k", "M", one), ("total_sequence_length", "M", one),
             ("cos_cache", "T", opt), ("sin_cache", "T", opt), ("position_ids", "P", opt),
             ("attention_bias", "T", opt)]
    attr = OpSchema.AttrType
    onnx.defs.register_schema(OpSchema(
        OP, DOMAIN, 1,
        inputs=[OpSchema.FormalParameter(n, t, param_option=o) for n, t, o in names],
        outputs=[OpSchema.FormalParameter(n, "T") for n in ("output", "present_key", "present_value")],
        type_constraints=[("T", ["tensor(float)", "tensor(float16)"], ""), ("M", ["tensor(int32)"], ""),
                          ("P", ["tensor(int64)"], "")],
        attributes=[OpSchema.Attribute(n, attr.INT) for n in ("num_heads", "kv_num_heads", "do_rotary",
                                                             "rotary_interleaved")]
        + [OpSchema.Attribute("scale", attr.FLOAT)]))
