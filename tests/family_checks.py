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
# every family, for the tests of each and benchmarks/families.py
TINY_FAMILIES: dict[str, dict[str, Any]] = dict(TINY)

PROMPTS = ["The quick brown fox", "A lighthouse keeper kept a careful log of every ship"]


def save_tiny(kw: dict[str, Any], path: Path, seed: int = 0) -> Path:
    """A random-weight model of config fields `kw` (with model_type), saved with edgeseq's test tokenizer."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM

    from edgeseq.models.tokenizer import train_tokenizer

    kw = dict(kw)
    cfg = AutoConfig.for_model(kw.pop("model_type"), **kw)
    torch.manual_seed(seed)
    cls = AutoModelForSeq2SeqLM if cfg.is_encoder_decoder else AutoModelForCausalLM
    cls.from_config(cfg).save_pretrained(path)
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
