"""Whisper family (speech to text): an audio encoder, then BART's decoder shape.

  encoder: log-mel features [B, n_mels, 3000] (30 s of 16 kHz audio, models/audio settings below)
      -> Conv1d(k3) + GELU -> Conv1d(k3, stride 2) + GELU -> [B, 1500, E] + a fixed position table
      -> pre-norm layers (self-attention without a mask: every window is padded to 30 s) -> LayerNorm
  decoder: pre-norm layers as mBART's (models/families/bart.py), learned positions without offset,
      no embedding scale; logits = proj_out (tied to the token embeddings), no bias
The decoder step keeps the encoder_attention_mask input of every encoder-decoder (all ones here), so
the runtimes, the static shapes and the generation loop treat Whisper as any encoder-decoder; only
the encoder's input is audio (`Family.audio` says how to make it, and the special tokens it needs).
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from ...steps.attention import attend
from ..spec import Dims
from . import Family, register
from .bart import BartDecoderInit, BartDecoderStep, _BartBase

SAMPLING_RATE, N_FFT, HOP, CHUNK_SECONDS = 16000, 400, 160, 30
# languages in the order of their tokens after <|startoftranscript|> (Whisper's tokenizer; large-v3 adds yue)
LANGUAGES = ("en zh de es ru ko fr ja pt tr pl ca nl ar sv it id hi fi vi he uk el ms cs ro da hu ta no th ur hr bg "
             "lt la mi ml cy sk te fa lv bn sr az sl kn et mk br eu is hy ne mn bs kk sq sw gl mr pa si km sn yo so "
             "af oc ka be tg sd gu am yi lo uz fo ht ps tk nn mt sa lb my bo tl mg as tt haw ln ha ba jw su yue").split()


def _pre_norm(module: _BartBase, stack: Any) -> None:
    """Whisper's stacks normalize before each sub-layer and end in a LayerNorm (as mBART's)."""
    module.pre_norm, module.final_norm = True, stack.layer_norm


class WhisperEncoder(nn.Module):
    """encoder(input_features [B, n_mels, 3000]) -> encoder_hidden_states [B, 1500, E]."""

    def __init__(self, hf: Any) -> None:
        super().__init__()
        enc = hf.model.encoder
        self.conv1, self.conv2, self.layers, self.norm = enc.conv1, enc.conv2, enc.layers, enc.layer_norm
        self.positions = enc.embed_positions

    def forward(self, input_features: torch.Tensor) -> torch.Tensor:
        x = F.gelu(self.conv2(F.gelu(self.conv1(input_features)))).transpose(1, 2)  # [B, 1500, E]
        x = x + self.positions.weight[: x.shape[1]]
        for layer in self.layers:
            at = layer.self_attn
            h = layer.self_attn_layer_norm(x)
            q, k, v = (_BartBase.split(at, h, p) for p in (at.q_proj, at.k_proj, at.v_proj))
            x = x + at.out_proj(attend(q, k, v, None, at.head_dim**-0.5))
            x = x + _BartBase.mlp(layer, layer.final_layer_norm(x))
        return self.norm(x)


class WhisperDecoderInit(BartDecoderInit):
    """decoder_init(encoder_hidden_states) -> the cross-attention key and value per decoder layer."""


class WhisperDecoderStep(BartDecoderStep):
    """BART's decoder step, pre-norm, with Whisper's untied-bias-free head (proj_out)."""

    def __init__(self, hf: Any) -> None:
        super().__init__(hf)
        _pre_norm(self, hf.model.decoder)


def dims(c: Any) -> Dims:
    heads_ = c.decoder_attention_heads
    return Dims(c.d_model, c.decoder_layers, heads_, heads_, c.d_model // heads_, c.vocab_size,
                c.max_target_positions, num_encoder_layers=c.encoder_layers)


def _tokenizer_ids(tokenizer_json: str | None) -> dict[str, int]:
    """Special tokens by their text in a tokenizer.json ('<|en|>' -> id)."""
    if not tokenizer_json:
        return {}
    import json

    added = json.loads(tokenizer_json).get("added_tokens") or []
    return {t["content"]: int(t["id"]) for t in added if str(t.get("content", "")).startswith("<|")}


def audio(model: Any, tokenizer_json: str | None = None) -> dict[str, Any]:
    """The manifest's `audio` section: how the runtime makes the encoder's input from audio, and the
    special tokens a transcription prompt uses. Token ids come from the model's generation config
    (what transformers' own generate uses), else the tokenizer's special tokens by text, else Whisper's
    fixed layout after <|startoftranscript|> (random-weight presets)."""
    c, g = model.config, model.generation_config
    frames = c.max_source_positions * model.model.encoder.conv1.stride[0] * model.model.encoder.conv2.stride[0]
    by_text = _tokenizer_ids(tokenizer_json)
    start = int(getattr(g, "decoder_start_token_id", None) or c.decoder_start_token_id)
    n_langs = 100 if c.vocab_size >= 51866 else 99
    lang_ids = dict(getattr(g, "lang_to_id", None) or {})
    langs = {k.strip("<|>"): int(v) for k, v in lang_ids.items()} or \
        {code: by_text[f"<|{code}|>"] for code in LANGUAGES if f"<|{code}|>" in by_text}
    multilingual = getattr(g, "is_multilingual", None)
    multilingual = bool(langs) and c.vocab_size >= 51865 if multilingual is None else bool(multilingual)
    if not langs and not by_text:
        langs = {code: start + 1 + i for i, code in enumerate(LANGUAGES[:n_langs])}
    after = start + 1 + n_langs  # the layout's ids after the languages
    task = dict(getattr(g, "task_to_id", None) or {})

    def pick(text: str, layout: int, given: Any = None) -> int | None:
        value = given if given is not None else by_text.get(text, layout if not by_text else None)
        return None if value is None or not 0 <= int(value) < c.vocab_size else int(value)

    no_ts = pick("<|notimestamps|>", after + 5, getattr(g, "no_timestamps_token_id", None))
    tokens = {"start": start, "transcribe": pick("<|transcribe|>", after + 1, task.get("transcribe")),
              "translate": pick("<|translate|>", after, task.get("translate")),
              "previous": pick("<|startofprev|>", after + 3), "no_timestamps": no_ts,
              "timestamp_begin": None if no_ts is None else no_ts + 1,
              "begin_suppress": [int(t) for t in getattr(g, "begin_suppress_tokens", None) or []],
              "multilingual": multilingual, "languages": langs if multilingual else {}}
    return {"sampling_rate": SAMPLING_RATE, "n_fft": N_FFT, "hop_length": HOP, "chunk_seconds": CHUNK_SECONDS,
            "n_mels": int(c.num_mel_bins), "frames": int(frames), "encoder_positions": int(c.max_source_positions),
            "max_initial_timestamp_s": float(getattr(g, "max_initial_timestamp_index", 50) or 50) * 0.02,
            "tokens": tokens}


def preset_config(model_type: str, kw: dict[str, Any]) -> Any:
    """Whisper presets keep Whisper's own special-token layout (not the preset tokenizer's ids), so the
    transcription prompt's tokens exist in the vocabulary."""
    from transformers import WhisperConfig

    kw = {k: v for k, v in kw.items() if k not in ("pad_token_id", "eos_token_id", "decoder_start_token_id",
                                                    "bos_token_id")}
    return WhisperConfig(**kw)


register(Family("whisper", {"whisper": "encoder-decoder"}, dims, encoder=WhisperEncoder,
                decoder_init=WhisperDecoderInit, decoder_step=WhisperDecoderStep, audio=audio,
                preset_config=preset_config))
