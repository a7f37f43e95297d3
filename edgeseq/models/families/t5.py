"""T5 family (T5, Flan-T5, mT5): encoder, cross-attention cache builder, and decoder step.

Components (names follow DESIGN.md; no decoder weight is stored twice, only the shared
embedding sits in both the encoder and decoder_step graphs):
  encoder(input_ids [B,S], attention_mask [B,S]) -> encoder_hidden_states [B,S,E]
  decoder_init(encoder_hidden_states) -> cross_kv (key, value per decoder layer) [B,H,S,D]
      the cross-attention cache, computed once per request
  decoder_step(input_ids [B,T], attention_mask [B,P+T], encoder_attention_mask [B,S], *self_kv, *cross_kv)
      -> logits of the last position [B,V], *present_self_kv [B,H,P+T,D]
      the first decoder token runs here too, with an empty (P = 0) self-attention cache
"""
from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from ...steps import fused
from ...steps.attention import KVWrite, attend, heads, padding_bias, rms_norm
from ..spec import Dims
from . import Family, register


def relative_buckets(rel: torch.Tensor, bidirectional: bool, num_buckets: int, max_distance: int) -> torch.Tensor:
    """T5's bucketing of key - query offsets: exact buckets for near offsets, log-spaced up to max_distance."""
    offset = torch.zeros_like(rel)
    if bidirectional:
        num_buckets //= 2
        offset = (rel > 0).to(rel.dtype) * num_buckets
        dist = rel.abs()
    else:
        dist = (rel * -1).clamp(min=0)  # a causal decoder only looks back (an integer Neg: not on Qualcomm HTP)
    exact = num_buckets // 2
    # clamp(min=1) keeps log() finite where the exact branch is taken anyway
    log_ratio = torch.log(dist.clamp(min=1).float() / exact) / math.log(max_distance / exact)
    far = (exact + (log_ratio * (num_buckets - exact)).to(rel.dtype)).clamp(max=num_buckets - 1)
    return offset + torch.where(dist < exact, dist, far)


class _T5Base(nn.Module):
    def __init__(self, hf: Any) -> None:
        super().__init__()
        cfg = hf.config
        self.n_heads, self.d_kv = cfg.num_heads, cfg.d_kv
        self.num_buckets = cfg.relative_attention_num_buckets
        self.max_distance = cfg.relative_attention_max_distance
        self.kv = KVWrite()

    def position_bias(self, table: nn.Embedding, q_pos: torch.Tensor, k_pos: torch.Tensor,
                      bidirectional: bool) -> torch.Tensor:
        """[1, H, Tq, Tk] learned bias from bucketed relative positions."""
        rel = k_pos[None, :] - q_pos[:, None]
        buckets = relative_buckets(rel, bidirectional, self.num_buckets, self.max_distance)
        return table(buckets).permute(2, 0, 1)[None]

    def attention(self, attn: Any, x: torch.Tensor, kv: tuple[torch.Tensor, torch.Tensor] | None,
                  bias: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Self-attention when kv is None; returns output, k, v. T5 does not scale scores."""
        q = heads(attn.q(x), self.n_heads, self.d_kv)
        if kv is None:
            k, v = heads(attn.k(x), self.n_heads, self.d_kv), heads(attn.v(x), self.n_heads, self.d_kv)
        else:
            k, v = kv
        return attn.o(attend(q, k, v, bias, 1.0)), k, v


class T5Encoder(_T5Base):
    def __init__(self, hf: Any) -> None:
        super().__init__(hf)
        self.embed, self.blocks, self.final_norm = hf.shared, hf.encoder.block, hf.encoder.final_layer_norm

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        x = self.embed(input_ids)
        pos = torch.arange(input_ids.shape[1], device=input_ids.device)
        table = self.blocks[0].layer[0].SelfAttention.relative_attention_bias
        bias = self.position_bias(table, pos, pos, bidirectional=True) + padding_bias(attention_mask)
        for block in self.blocks:
            sa, ff = block.layer[0], block.layer[-1]
            x = x + self.attention(sa.SelfAttention, rms_norm(sa.layer_norm, x), None, bias)[0]
            x = x + ff.DenseReluDense(rms_norm(ff.layer_norm, x))
        return rms_norm(self.final_norm, x)


class T5DecoderInit(_T5Base):
    def __init__(self, hf: Any) -> None:
        super().__init__(hf)
        self.blocks = hf.decoder.block

    def forward(self, encoder_hidden_states: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out: list[torch.Tensor] = []
        for block in self.blocks:
            ca = block.layer[1].EncDecAttention
            out += [heads(ca.k(encoder_hidden_states), self.n_heads, self.d_kv),
                    heads(ca.v(encoder_hidden_states), self.n_heads, self.d_kv)]
        return tuple(out)


class T5DecoderStep(_T5Base):
    def __init__(self, hf: Any) -> None:
        super().__init__(hf)
        self.embed, self.blocks = hf.shared, hf.decoder.block
        self.final_norm, self.lm_head = hf.decoder.final_layer_norm, hf.lm_head
        # T5 v1.0 (tied head) scales the decoder output by d_model^-0.5; v1.1 / Flan-T5 and mT5 (whose
        # transformers config always says tied) do not.
        scale_out = hf.config.model_type == "t5" and \
            getattr(hf.config, "scale_decoder_outputs", getattr(hf.config, "tie_word_embeddings", True))
        self.out_scale = hf.config.d_model**-0.5 if scale_out else 1.0
        self.n_layers = len(self.blocks)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, encoder_attention_mask: torch.Tensor,
                *caches: torch.Tensor) -> tuple[torch.Tensor, ...]:
        n = self.n_layers
        self_kv, cross_kv = caches[: 2 * n], caches[2 * n:]
        t, s = input_ids.shape[1], attention_mask.shape[1]
        x = self.embed(input_ids)
        q_pos = self.kv.query_slots(t, s, input_ids.device)  # decoder positions are cache places (no padding)
        k_pos = torch.arange(s, device=input_ids.device)
        table = self.blocks[0].layer[0].SelfAttention.relative_attention_bias
        if self.kv.slots is None:
            position = self.position_bias(table, q_pos, k_pos, bidirectional=False)
        else:  # static shapes: the bias of every slot pair depends on weights only (constant-folded by
            # the NPU exporter); a step gathers its rows, so no float math runs on positions
            position = self.position_bias(table, k_pos, k_pos, bidirectional=False).index_select(2, q_pos)
        self_bias = position + self.kv.bias(attention_mask, t)  # [B, H, T, S]
        cross_bias = padding_bias(encoder_attention_mask)
        # self-attention as one ONNX Runtime kernel a layer (no rotary; the position bias per head is
        # its attention_bias), so that its cache too is appended in place (runtimes/engines/onnxruntime.py)
        fuse = self.kv.slots is None and fused.fusable(self.d_kv, self.n_heads, self.n_heads)
        lens = fused.lengths(attention_mask) if fuse else None
        presents: list[torch.Tensor] = []
        for i, block in enumerate(self.blocks):
            sa, ca, ff = block.layer[0], block.layer[1], block.layer[2]
            h = rms_norm(sa.layer_norm, x)
            at = sa.SelfAttention
            if lens is not None:
                o, k, v = fused.gqa(fused.packed(h, at.q, at.k, at.v), self_kv[2 * i], self_kv[2 * i + 1], self_bias,
                                    lens, None, self.n_heads, self.n_heads, 1.0)
            else:
                q = heads(at.q(h), self.n_heads, self.d_kv)
                k = self.kv.append(self_kv[2 * i], heads(at.k(h), self.n_heads, self.d_kv))
                v = self.kv.append(self_kv[2 * i + 1], heads(at.v(h), self.n_heads, self.d_kv))
                o = attend(q, k, v, self_bias, 1.0)
            presents += [k, v]
            x = x + at.o(o)
            x = x + self.attention(ca.EncDecAttention, rms_norm(ca.layer_norm, x), (cross_kv[2 * i], cross_kv[2 * i + 1]),
                                   cross_bias)[0]
            x = x + ff.DenseReluDense(rms_norm(ff.layer_norm, x))
        logits = self.lm_head(rms_norm(self.final_norm, self.kv.last(x)) * self.out_scale)
        return (logits, *presents)


# T5's positions are relative (bucketed distances), so no table bounds a sequence: config.n_positions
# (512) is only the trained length. Its limit is the export's buckets (static formats) or memory
# (resources.check_fits), so the manifest records this bound instead.
RELATIVE_LIMIT = 1 << 20


def dims(c: Any) -> Dims:
    return Dims(c.d_model, c.num_decoder_layers, c.num_heads, c.num_heads, c.d_kv, c.vocab_size,
                RELATIVE_LIMIT, num_encoder_layers=c.num_layers)


register(Family("t5", {"t5": "encoder-decoder", "mt5": "encoder-decoder"}, dims, encoder=T5Encoder,
                decoder_init=T5DecoderInit, decoder_step=T5DecoderStep))
