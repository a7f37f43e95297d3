"""Presets: public architecture shapes with random weights (timing depends on shape, not weights).

Special token ids point at edgeseq's small preset tokenizer (models/tokenizer.py); vocab sizes,
widths, depths and heads are those of the public checkpoints.
"""
from __future__ import annotations

from typing import Any

from .tokenizer import BOS, EOS, PAD

PRESETS: dict[str, dict[str, Any]] = {
    # T5 v1.0 small: 60M parameters, ReLU MLP, tied embeddings with scaled decoder output.
    "t5-small": dict(model_type="t5", d_model=512, d_ff=2048, d_kv=64, num_heads=8, num_layers=6,
                     num_decoder_layers=6, vocab_size=32128, feed_forward_proj="relu",
                     relative_attention_num_buckets=32, relative_attention_max_distance=128,
                     n_positions=512),
    # Flan-T5 base: 248M parameters, gated-GELU MLP, separate LM head, no output scaling.
    "flan-t5-base": dict(model_type="t5", d_model=768, d_ff=2048, d_kv=64, num_heads=12, num_layers=12,
                         num_decoder_layers=12, vocab_size=32128, feed_forward_proj="gated-gelu",
                         tie_word_embeddings=False, relative_attention_num_buckets=32,
                         relative_attention_max_distance=128, n_positions=512),
    "smollm2-135m": dict(model_type="llama", hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                         num_attention_heads=9, num_key_value_heads=3, vocab_size=49152,
                         max_position_embeddings=8192, rope_theta=100000.0, rms_norm_eps=1e-5,
                         tie_word_embeddings=True),
    "smollm2-360m": dict(model_type="llama", hidden_size=960, intermediate_size=2560, num_hidden_layers=32,
                         num_attention_heads=15, num_key_value_heads=5, vocab_size=49152,
                         max_position_embeddings=8192, rope_theta=100000.0, rms_norm_eps=1e-5,
                         tie_word_embeddings=True),
    "qwen2.5-0.5b": dict(model_type="qwen2", hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                         num_attention_heads=14, num_key_value_heads=2, vocab_size=151936,
                         max_position_embeddings=32768, rope_theta=1000000.0, rms_norm_eps=1e-6,
                         tie_word_embeddings=True),
    "qwen3-0.6b": dict(model_type="qwen3", hidden_size=1024, intermediate_size=3072, num_hidden_layers=28,
                       num_attention_heads=16, num_key_value_heads=8, head_dim=128, vocab_size=151936,
                       max_position_embeddings=40960, rope_theta=1000000.0, rms_norm_eps=1e-6,
                       tie_word_embeddings=True),
    # Gemma 3 270M: layers 6, 12, 18 attend fully, the rest over the last 512 positions (transformers' default pattern)
    "gemma3-270m": dict(model_type="gemma3_text", hidden_size=640, intermediate_size=2048, num_hidden_layers=18,
                        num_attention_heads=4, num_key_value_heads=1, head_dim=256, vocab_size=262144,
                        max_position_embeddings=32768, sliding_window=512, query_pre_attn_scalar=256,
                        rope_theta=1000000.0, rope_local_base_freq=10000.0, rms_norm_eps=1e-6,
                        tie_word_embeddings=True),
    # BART base: 139M parameters, post-norm, learned positions, tied head
    "bart-base": dict(model_type="bart", d_model=768, encoder_layers=6, decoder_layers=6, encoder_attention_heads=12,
                      decoder_attention_heads=12, encoder_ffn_dim=3072, decoder_ffn_dim=3072, vocab_size=50265,
                      max_position_embeddings=1024),
    # Opus-MT en-de (Marian): 74M parameters, sinusoid positions, swish, scaled embeddings
    "opus-mt-en-de": dict(model_type="marian", d_model=512, encoder_layers=6, decoder_layers=6,
                          encoder_attention_heads=8, decoder_attention_heads=8, encoder_ffn_dim=2048,
                          decoder_ffn_dim=2048, vocab_size=58101, max_position_embeddings=512,
                          activation_function="swish", scale_embedding=True),
    # mT5 small: 300M parameters, T5 v1.1 with a 250k vocabulary and its own LM head
    "mt5-small": dict(model_type="mt5", d_model=512, d_ff=1024, d_kv=64, num_heads=6, num_layers=8,
                      num_decoder_layers=8, vocab_size=250112, feed_forward_proj="gated-gelu",
                      tie_word_embeddings=False, relative_attention_num_buckets=32,
                      relative_attention_max_distance=128),
    # Whisper tiny and base (multilingual: 51,865 tokens, 80 mel bins); the real tiny.en is `whisper-tiny-en`
    "whisper-tiny": dict(model_type="whisper", d_model=384, encoder_layers=4, decoder_layers=4,
                         encoder_attention_heads=6, decoder_attention_heads=6, encoder_ffn_dim=1536,
                         decoder_ffn_dim=1536, vocab_size=51865, num_mel_bins=80),
    "whisper-base": dict(model_type="whisper", d_model=512, encoder_layers=6, decoder_layers=6,
                         encoder_attention_heads=8, decoder_attention_heads=8, encoder_ffn_dim=2048,
                         decoder_ffn_dim=2048, vocab_size=51865, num_mel_bins=80),
    "gpt2": dict(model_type="gpt2", n_embd=768, n_layer=12, n_head=12, vocab_size=50257, n_positions=1024),
    # "Return of the Encoder" (2025), models/paper.py: 20 encoder / 10 decoder layers, 332,042,240
    # parameters as the paper states. The paper trains to 1024 positions; the presets accept 8192
    # so that timing can follow its Figure 1(a) (512..8192 input tokens).
    "paper-encdec-330m": dict(model_type="paper-encdec", num_encoder_layers=20, num_layers=10, max_positions=8192),
    # the same block shape, decoder-only; 31 layers give 329,793,792 parameters (0.7% fewer), the
    # closest match (the paper does not publish its decoder-only baseline's configuration). Its cache holds the
    # prompt and the output: 8256 positions take Figure 1(a)'s 8192-token input with 64 new tokens
    "paper-deconly-330m": dict(model_type="paper-deconly", num_encoder_layers=0, num_layers=31, max_positions=8256),
    # the quick suite's match for SmolLM2-135M: SmolLM2's width (576, MLP 4x), the paper's head layout (6 query / 3
    # key-value heads of 64) and 2:1 encoder:decoder depth, 22/11 layers being the depth whose count comes closest
    "paper-encdec-135m": dict(model_type="paper-encdec", hidden_size=576, intermediate_size=2304,
                              num_encoder_layers=22, num_layers=11, max_positions=8192),
}

def _special_ids(kind: str) -> dict[str, int]:
    """The preset tokenizer's ids (models/tokenizer.py): a decoder-only model starts prompts with BOS,
    an encoder-decoder's decoder starts from PAD."""
    start = dict(bos_token_id=BOS) if kind == "decoder-only" else dict(decoder_start_token_id=PAD)
    return dict(pad_token_id=PAD, eos_token_id=EOS, **start)


def preset_config(name: str) -> Any:
    """The config of preset `name` (KeyError if unknown), built by the family that reads its model_type."""
    from . import families

    kw = dict(PRESETS[name])
    model_type = kw.pop("model_type")
    family, kind = families.for_model_type(model_type, f"preset:{name}")
    return family.preset_config(model_type, {**kw, **_special_ids(kind)})


def build(name: str) -> Any:
    """A float32 model of preset `name` with random weights (seed torch before calling)."""
    import torch

    from . import families

    family, _ = families.for_model_type(PRESETS[name]["model_type"], f"preset:{name}")
    model = family.build(preset_config(name))
    if PRESETS[name].get("tie_word_embeddings") is False and \
            model.get_output_embeddings().weight is model.get_input_embeddings().weight:
        # transformers 5 always ties T5's LM head; Flan-T5 checkpoints have their own (24.7M more params)
        head = model.get_output_embeddings()
        head.weight = torch.nn.Parameter(torch.empty_like(head.weight).normal_(0.0, 1.0))
    return model
