"""Checks every model family passes, for the tests of one family: a tiny random model saved as a
Hugging Face directory, exported, parity-gated, and its greedy and beam output compared with
transformers' generate on the same weights."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

import edgeseq
from edgeseq.generate.config import GenerationConfig

# tiny configs (edgeseq's test tokenizer: vocab 1024, eos 1, bos 3, pad 0); TINY: the families most tests run on
TINY = {
    "llama": dict(model_type="llama", hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, vocab_size=1024, max_position_embeddings=256,
                  eos_token_id=1, bos_token_id=3, pad_token_id=0),
    "gpt2": dict(model_type="gpt2", n_embd=64, n_layer=2, n_head=4, vocab_size=1024, n_positions=256,
                 eos_token_id=1, bos_token_id=3, pad_token_id=0),
    "t5": dict(model_type="t5", d_model=64, d_ff=128, d_kv=16, num_heads=4, num_layers=2, num_decoder_layers=2,
               vocab_size=1024, eos_token_id=1, pad_token_id=0, decoder_start_token_id=0),
}
# the families that build on Llama's step (tests/test_families_decoder.py)
BASE = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
            vocab_size=1024, max_position_embeddings=256, eos_token_id=1, bos_token_id=3, pad_token_id=0)
DECODERS: dict[str, dict[str, Any]] = {
    "qwen2-tied": dict(BASE, model_type="qwen2", tie_word_embeddings=True),
    "qwen2-untied": dict(BASE, model_type="qwen2", tie_word_embeddings=False),
    # Qwen2's use_sliding_window: layers from max_window_layers on slide (here layer 1 of 2)
    "qwen2-windowed": dict(BASE, model_type="qwen2", use_sliding_window=True, sliding_window=8, max_window_layers=1),
    "qwen3": dict(BASE, model_type="qwen3", head_dim=32),  # head_dim != hidden / heads (16)
    "mistral": dict(BASE, model_type="mistral", sliding_window=8),
    "phi3": dict(BASE, model_type="phi3"),
    # LongRoPE with distinct short and long factors, and partial rotary (the plain attention route)
    "phi3-longrope": dict(BASE, model_type="phi3", max_position_embeddings=512, original_max_position_embeddings=128,
                          rope_scaling=dict(rope_type="longrope", short_factor=[1.0, 1.5, 2.0, 3.0],
                                            long_factor=[4.0, 8.0, 16.0, 32.0]), partial_rotary_factor=0.5),
}
# Gemma 3 with sliding and full layers, and Gemma 1 (tests/test_families_gemma.py)
GEMMA3 = dict(model_type="gemma3_text", hidden_size=64, intermediate_size=128, num_hidden_layers=4,
              num_attention_heads=4, num_key_value_heads=1, head_dim=16, vocab_size=1024,
              max_position_embeddings=256, sliding_window=8, query_pre_attn_scalar=32,
              layer_types=["sliding_attention", "sliding_attention", "full_attention", "sliding_attention"],
              rope_parameters={"sliding_attention": {"rope_type": "default", "rope_theta": 10000.0},
                               "full_attention": {"rope_type": "default", "rope_theta": 1000000.0}},
              final_logit_softcapping=3.0, eos_token_id=1, bos_token_id=3, pad_token_id=0)
GEMMA1 = dict(model_type="gemma", hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
              num_key_value_heads=1, head_dim=16, vocab_size=1024, max_position_embeddings=256,
              eos_token_id=1, bos_token_id=3, pad_token_id=0)
# encoder-decoders beside T5 (tests/test_families_encdec.py)
_IDS = dict(vocab_size=1024, pad_token_id=0, eos_token_id=1, bos_token_id=3, forced_eos_token_id=None)
_BART = dict(d_model=64, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4, decoder_attention_heads=4,
             encoder_ffn_dim=128, decoder_ffn_dim=128, max_position_embeddings=128, **_IDS)
ENCODER_DECODERS: dict[str, dict[str, Any]] = {
    # BART starts the decoder from EOS; post-norm layers, unscaled embeddings
    "bart": dict(model_type="bart", decoder_start_token_id=1, **_BART),
    # mBART: pre-norm layers with a final LayerNorm per stack, scaled embeddings, a forced first token
    "mbart": dict(model_type="mbart", decoder_start_token_id=1, scale_embedding=True, **_BART),
    # Marian: sinusoid positions without offset, scaled embeddings, swish, starts from pad
    "marian": dict(model_type="marian", decoder_start_token_id=0, scale_embedding=True, activation_function="swish",
                   **_BART),
    # mT5: T5 v1.1 (gated GELU, no output scaling); its public vocabulary (250k) shrunk to the test tokenizer's
    "mt5": dict(model_type="mt5", d_model=64, d_ff=128, d_kv=16, num_heads=4, num_layers=2, num_decoder_layers=2,
                vocab_size=1024, eos_token_id=1, pad_token_id=0, decoder_start_token_id=0),
}
# Whisper (tests/test_whisper.py has its own): the English-only token layout, so its special tokens exist
WHISPER = dict(model_type="whisper", d_model=64, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
               decoder_attention_heads=4, encoder_ffn_dim=128, decoder_ffn_dim=128, max_target_positions=64,
               vocab_size=51864, decoder_start_token_id=50257, eos_token_id=50256, pad_token_id=50256,
               bos_token_id=50256)
# one tiny model of every family and variant, for benchmarks/families.py
TINY_FAMILIES: dict[str, dict[str, Any]] = {
    **TINY, "qwen2": DECODERS["qwen2-untied"], "qwen3": DECODERS["qwen3"], "mistral": DECODERS["mistral"],
    "phi3": DECODERS["phi3"], "gemma3": GEMMA3, "gemma": GEMMA1,
    **{name: ENCODER_DECODERS[name] for name in ("bart", "mbart", "marian", "mt5")}, "whisper": WHISPER}

PROMPTS = ["The quick brown fox", "A lighthouse keeper kept a careful log of every ship"]


def save_tiny(kw: dict[str, Any], path: Path, seed: int = 0) -> Path:
    """A random-weight model of config fields `kw` (with model_type), saved with edgeseq's test tokenizer."""
    from transformers import AutoConfig

    from edgeseq.models.sources import auto_class
    from edgeseq.models.tokenizer import train_tokenizer

    kw = dict(kw)
    cfg = AutoConfig.for_model(kw.pop("model_type"), **kw)
    torch.manual_seed(seed)
    auto_class(cfg).from_config(cfg).save_pretrained(path)
    (path / "tokenizer.json").write_text(train_tokenizer())
    return path


def hf_model(src: Path) -> Any:
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM

    cfg = AutoConfig.from_pretrained(str(src))
    cls = AutoModelForSeq2SeqLM if cfg.is_encoder_decoder else AutoModelForCausalLM
    return cls.from_pretrained(str(src), dtype=torch.float32).eval()


def hf_generate(hf: Any, model: edgeseq.Model, ids: list[int], **kw: Any) -> list[int]:
    """transformers' new tokens for prompt `ids`, without the decoder-side prefix edgeseq does not
    return (an encoder-decoder's start token, and a forced BOS where the model has one)."""
    gen = model.manifest.generation
    with torch.no_grad():
        out = hf.generate(input_ids=torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                          do_sample=False, pad_token_id=gen["pad_token_id"], **kw)
    if model.manifest.kind == "decoder-only":
        skip = len(ids)
    else:
        skip = 1 + (gen.get("forced_bos_token_id") is not None)
    return out[0, skip:].tolist()


def same(mine: list[int], ref: list[int], pad: int) -> bool:
    """transformers pads a finished sequence with the pad id up to the batch's longest."""
    return ref[: len(mine)] == mine and all(t == pad for t in ref[len(mine):])


def check_family(src: Path, out: Path, family: str, fmt: str = "onnx", beams: bool = True,
                 prompts: list[str] = PROMPTS, **export_kw: Any) -> edgeseq.Model:
    """Export `src` to `out` in `fmt` with the parity gate, then greedy (and beam) output against
    transformers; returns the loaded artifact."""
    from edgeseq.export.pipeline import export

    m = export(str(src), out, format=fmt, quiet=True, **export_kw)
    assert m.model["family"] == family, m.model
    assert m.parity["status"] == "passed", m.parity
    model = edgeseq.load(out)
    hf = hf_model(src)
    pad = int(model.manifest.generation["pad_token_id"])
    cases = [dict(num_beams=1)] + ([dict(num_beams=3)] if beams else [])
    for prompt in prompts:
        ids = model.encode(prompt)
        for kw in cases:
            mine = model.generate_ids([ids], GenerationConfig(max_new_tokens=12, **kw)).ids[0]
            ref = hf_generate(hf, model, ids, max_new_tokens=12, **kw)
            assert same(mine, ref, pad), (fmt, prompt, kw, mine, ref)
    return model
