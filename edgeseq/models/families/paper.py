"""The paper family ("Return of the Encoder", models/paper.py): step modules with the KV cache explicit.

Encoder-decoder components, with the same contract as T5's (runtime code is shared):
  encoder(input_ids [B,S], attention_mask [B,S]) -> encoder_hidden_states [B,S,E]   (centred rotary)
  decoder_init(encoder_hidden_states) -> cross_kv (key, value per decoder layer) [B,Hkv,S,D]
  decoder_step(input_ids [B,T], attention_mask [B,P+T], encoder_attention_mask [B,S], *self_kv, *cross_kv)
      -> logits of the last position [B,V], *present_self_kv [B,Hkv,P+T,D]
      decoder positions count from 0 at the start token, so position = P + t (no position input)
Decoder-only: the Llama contract (input_ids, attention_mask, position_ids, *past_kv) -> logits, *present_kv.
Norms run as steps/attention.rms_norm (the exporters' form), not as the reference model's own.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from ...steps.attention import KVWrite, attend, heads, padding_bias, rms_norm, rotary, rotate
from ..paper import CONFIG_FILE, WEIGHTS_FILE, Attention, PaperConfig, PaperModel, centred_positions, load
from ..spec import Dims
from . import Family, register


class _Base(nn.Module):
    def __init__(self, model: PaperModel) -> None:
        super().__init__()
        c = model.config
        self.embed, self.lm_head, self.final_norm = model.embed, model.lm_head, model.decoder_norm
        self.blocks = model.decoder  # the encoder replaces these with its own
        self.register_buffer("inv_freq", model.inv_freq.clone(), persistent=False)
        self.hq, self.hkv, self.d = c.num_heads, c.num_kv_heads, c.head_dim
        self.kv = KVWrite()

    def self_attention(self, a: Attention, h: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                       past: tuple[torch.Tensor, torch.Tensor] | None,
                       bias: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Rotary self-attention appending to `past` (None: no cache, the encoder); output, k, v."""
        q = heads(a.q(h), self.hq, self.d)
        k, v = heads(a.k(h), self.hkv, self.d), heads(a.v(h), self.hkv, self.d)
        q, k = rotate(q, cos, sin), rotate(k, cos, sin)
        if past is not None:
            k, v = self.kv.append(past[0], k), self.kv.append(past[1], v)
        return a.o(attend(q, k, v, bias, self.d**-0.5)), k, v

    def decode(self, input_ids: torch.Tensor, positions: torch.Tensor, attention_mask: torch.Tensor,
               past: tuple[torch.Tensor, ...], cross: tuple[torch.Tensor, ...] = (),
               cross_bias: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
        """The decoder blocks over new tokens with the self-attention cache `past` (and, for the
        encoder-decoder, the cross-attention cache `cross`): last-position logits, *present_kv."""
        cos, sin = rotary(positions, self.inv_freq)
        bias = self.kv.bias(attention_mask, input_ids.shape[1])
        x = self.embed(input_ids)
        presents: list[torch.Tensor] = []
        for i, blk in enumerate(self.blocks):
            o, k, v = self.self_attention(blk.self_attn, rms_norm(blk.self_norm, x), cos, sin,
                                          (past[2 * i], past[2 * i + 1]), bias)
            presents += [k, v]
            x = x + o
            if cross:
                ca = blk.cross_attn
                q = heads(ca.q(rms_norm(blk.cross_norm, x)), self.hq, self.d)
                x = x + ca.o(attend(q, cross[2 * i], cross[2 * i + 1], cross_bias, self.d**-0.5))
            x = x + blk.mlp(rms_norm(blk.mlp_norm, x))
        return (self.lm_head(rms_norm(self.final_norm, self.kv.last(x))), *presents)


class PaperEncoder(_Base):
    def __init__(self, model: PaperModel) -> None:
        super().__init__(model)
        self.blocks, self.norm = model.encoder, model.encoder_norm

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        x = self.embed(input_ids)
        cos, sin = rotary(centred_positions(attention_mask), self.inv_freq)
        bias = padding_bias(attention_mask)
        for blk in self.blocks:
            x = x + self.self_attention(blk.self_attn, rms_norm(blk.self_norm, x), cos, sin, None, bias)[0]
            x = x + blk.mlp(rms_norm(blk.mlp_norm, x))
        return rms_norm(self.norm, x)


class PaperDecoderInit(_Base):
    def forward(self, encoder_hidden_states: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out: list[torch.Tensor] = []
        for blk in self.blocks:
            a = blk.cross_attn
            out += [heads(a.k(encoder_hidden_states), self.hkv, self.d),
                    heads(a.v(encoder_hidden_states), self.hkv, self.d)]
        return tuple(out)


class PaperDecoderStep(_Base):
    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, encoder_attention_mask: torch.Tensor,
                *caches: torch.Tensor) -> tuple[torch.Tensor, ...]:
        n = len(self.blocks)
        t, s = input_ids.shape[1], attention_mask.shape[1]
        positions = self.kv.query_slots(t, s, input_ids.device)[None].expand(input_ids.shape[0], t)
        return self.decode(input_ids, positions, attention_mask, caches[: 2 * n], caches[2 * n:],
                           padding_bias(encoder_attention_mask))


class PaperStep(_Base):
    """Decoder-only: (input_ids, attention_mask, position_ids, *past_kv) -> logits, *present_kv."""

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, position_ids: torch.Tensor,
                *past: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self.decode(input_ids, position_ids, attention_mask, past)


def dims(c: PaperConfig) -> Dims:
    return Dims(c.hidden_size, c.num_layers, c.num_heads, c.num_kv_heads, c.head_dim, c.vocab_size,
                c.max_positions, num_encoder_layers=c.num_encoder_layers)


def load_dir(path: Path) -> tuple[PaperModel, list[Path]]:
    return load(path), [path / CONFIG_FILE, path / WEIGHTS_FILE]


def _config(model_type: str, kw: dict[str, Any]) -> PaperConfig:
    return PaperConfig(model_type=model_type, **kw)


register(Family("paper", {"paper-encdec": "encoder-decoder", "paper-deconly": "decoder-only"}, dims,
                decoder=PaperStep, encoder=PaperEncoder, decoder_init=PaperDecoderInit,
                decoder_step=PaperDecoderStep, preset_config=_config, build=PaperModel, load_dir=load_dir))
