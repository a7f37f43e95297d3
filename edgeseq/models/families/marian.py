"""Marian family (Opus-MT translation models): BART's step modules (models/families/bart.py).

What Marian changes there, the shared modules read from the model: a fixed sinusoid position
table read at the position itself (no offset of 2), embeddings scaled by sqrt(d_model) outside the
embedding module, no LayerNorm after the embeddings; post-norm layers (swish MLPs in the public
checkpoints), `final_logits_bias`, and the decoder starting from the pad token
(config.decoder_start_token_id).
"""
from __future__ import annotations

from . import Family, register
from .bart import BartDecoderInit, BartDecoderStep, BartEncoder, dims

register(Family("marian", {"marian": "encoder-decoder"}, dims, encoder=BartEncoder, decoder_init=BartDecoderInit,
                decoder_step=BartDecoderStep))
