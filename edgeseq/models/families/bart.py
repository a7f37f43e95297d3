"""BART family (BART, mBART): encoder, cross-attention cache builder, and decoder step.

The components and their tensors are T5's (models/families/t5.py has the list). What differs:
  positions: absolute, a table row per position added to the token embeddings (BART and mBART
      learn the table and read row position + 2; Marian's fixed sinusoid table, marian.py, has no
      offset); decoder positions are cache slots, encoder inputs are right-padded so row i is position i
  embeddings: scaled by sqrt(d_model) where config.scale_embedding says so, then a LayerNorm
      (`layernorm_embedding`) where the model has one (not Marian)
  layers: LayerNorm after each residual sum (BART, Marian) or before each sub-layer with a final
      LayerNorm per stack (mBART); attention with biases and 1/sqrt(D) scaling; fc1, activation, fc2
  logits: lm_head plus `final_logits_bias`
These modules read the attributes the three transformers implementations share, so Marian reuses them.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from ...steps.attention import KVWrite, attend, heads, padding_bias
from ..spec import Dims
from . import Family, register

# model types whose layers normalize before each sub-layer (and whose stacks end in a LayerNorm)
PRE_NORM = frozenset({"mbart"})


class _BartBase(nn.Module):
    def __init__(self, hf: Any, stack: Any) -> None:
        super().__init__()
        self.embed_tokens, self.layers = stack.embed_tokens, stack.layers
        # BART's and mBART's embedding modules scale inside; Marian's stack scales after a plain lookup
        self.embed_scale = float(getattr(stack, "embed_scale", 1.0))
        self.positions = stack.embed_positions
        self.pos_offset = int(getattr(stack.embed_positions, "offset", 0))
        self.embed_norm = getattr(stack, "layernorm_embedding", None)
        self.pre_norm = hf.config.model_type in PRE_NORM
        self.final_norm = getattr(stack, "layer_norm", None) if self.pre_norm else None
        self.kv = KVWrite()

    def embed(self, input_ids: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """Token embeddings [B, T, E] plus the position rows of `positions` [T]."""
        x = self.embed_tokens(input_ids)
        if self.embed_scale != 1.0:
            x = x * self.embed_scale
        x = x + self.positions.weight.index_select(0, positions + self.pos_offset)[None]
        return self.embed_norm(x) if self.embed_norm is not None else x

    def sublayer(self, norm: nn.Module, fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        """One residual block: norm before the sub-layer (pre-norm) or after the residual sum (post-norm)."""
        return x + fn(norm(x)) if self.pre_norm else norm(x + fn(x))

    @staticmethod
    def mlp(layer: Any, x: torch.Tensor) -> torch.Tensor:
        return layer.fc2(layer.activation_fn(layer.fc1(x)))

    @staticmethod
    def split(attn: Any, x: torch.Tensor, proj: nn.Linear) -> torch.Tensor:
        return heads(proj(x), attn.num_heads, attn.head_dim)

    def finish(self, x: torch.Tensor) -> torch.Tensor:
        return self.final_norm(x) if self.final_norm is not None else x


class BartEncoder(_BartBase):
    """encoder(input_ids [B,S], attention_mask [B,S]) -> encoder_hidden_states [B,S,E]."""

    def __init__(self, hf: Any) -> None:
        super().__init__(hf, hf.model.encoder)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        x = self.embed(input_ids, torch.arange(input_ids.shape[1], device=input_ids.device))
        bias = padding_bias(attention_mask)
        for layer in self.layers:
            at = layer.self_attn

            def self_attention(h: torch.Tensor, at: Any = at) -> torch.Tensor:
                q, k, v = (self.split(at, h, p) for p in (at.q_proj, at.k_proj, at.v_proj))
                return at.out_proj(attend(q, k, v, bias, at.head_dim**-0.5))
            x = self.sublayer(layer.self_attn_layer_norm, self_attention, x)
            x = self.sublayer(layer.final_layer_norm, lambda h, layer=layer: self.mlp(layer, h), x)
        return self.finish(x)


class BartDecoderInit(_BartBase):
    """decoder_init(encoder_hidden_states) -> the cross-attention key and value per decoder layer [B,H,S,D]."""

    def __init__(self, hf: Any) -> None:
        super().__init__(hf, hf.model.decoder)

    def forward(self, encoder_hidden_states: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out: list[torch.Tensor] = []
        for layer in self.layers:
            ca = layer.encoder_attn
            out += [self.split(ca, encoder_hidden_states, ca.k_proj), self.split(ca, encoder_hidden_states, ca.v_proj)]
        return tuple(out)


class BartDecoderStep(_BartBase):
    """decoder_step(input_ids [B,T], attention_mask [B,P+T], encoder_attention_mask [B,S], *self_kv, *cross_kv)
    -> logits of the last position [B,V], *present_self_kv [B,H,P+T,D]."""

    def __init__(self, hf: Any) -> None:
        super().__init__(hf, hf.model.decoder)
        # BART's and Marian's heads add a bias; Whisper's (proj_out) has none
        self.lm_head, self.logits_bias = hf.get_output_embeddings(), getattr(hf, "final_logits_bias", None)
        self.n_layers = len(self.layers)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, encoder_attention_mask: torch.Tensor,
                *caches: torch.Tensor) -> tuple[torch.Tensor, ...]:
        n = self.n_layers
        self_kv, cross_kv = caches[: 2 * n], caches[2 * n:]
        t = input_ids.shape[1]
        x = self.embed(input_ids, self.kv.query_slots(t, attention_mask.shape[1], input_ids.device))
        self_bias, cross_bias = self.kv.bias(attention_mask, t), padding_bias(encoder_attention_mask)
        presents: list[torch.Tensor] = []
        for i, layer in enumerate(self.layers):
            sa, ca = layer.self_attn, layer.encoder_attn

            def self_attention(h: torch.Tensor, sa: Any = sa, i: int = i) -> torch.Tensor:
                k = self.kv.append(self_kv[2 * i], self.split(sa, h, sa.k_proj))
                v = self.kv.append(self_kv[2 * i + 1], self.split(sa, h, sa.v_proj))
                presents.extend((k, v))
                return sa.out_proj(attend(self.split(sa, h, sa.q_proj), k, v, self_bias, sa.head_dim**-0.5))

            def cross_attention(h: torch.Tensor, ca: Any = ca, i: int = i) -> torch.Tensor:
                q = self.split(ca, h, ca.q_proj)
                return ca.out_proj(attend(q, cross_kv[2 * i], cross_kv[2 * i + 1], cross_bias, ca.head_dim**-0.5))
            x = self.sublayer(layer.self_attn_layer_norm, self_attention, x)
            x = self.sublayer(layer.encoder_attn_layer_norm, cross_attention, x)
            x = self.sublayer(layer.final_layer_norm, lambda h, layer=layer: self.mlp(layer, h), x)
        logits = self.lm_head(self.finish(self.kv.last(x)))
        return (logits if self.logits_bias is None else logits + self.logits_bias, *presents)


def dims(c: Any) -> Dims:
    """Decoder shapes (the caches); Marian's decoder may have its own vocabulary (decoder_vocab_size)."""
    heads_ = c.decoder_attention_heads
    vocab = getattr(c, "decoder_vocab_size", None) or c.vocab_size
    return Dims(c.d_model, c.decoder_layers, heads_, heads_, c.d_model // heads_, vocab, c.max_position_embeddings,
                num_encoder_layers=c.encoder_layers)


register(Family("bart", {"bart": "encoder-decoder", "mbart": "encoder-decoder"}, dims, encoder=BartEncoder,
                decoder_init=BartDecoderInit, decoder_step=BartDecoderStep))
