"""The random Whisper behind tests/data/ct2_whisper (shared by the fixture script and the tests)."""
from __future__ import annotations

from typing import Any

VOCAB = 96
SPECIALS = ("<|endoftext|>", "<|startoftranscript|>", "<|en|>", "<|translate|>", "<|transcribe|>",
            "<|startoflm|>", "<|startofprev|>", "<|notimestamps|>")


def tiny_whisper() -> Any:
    """Float32 random Whisper: d_model 64, 2+2 layers, 4 heads, 80 mel bins, 32 frames in, 32 positions out."""
    import torch
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    eot, sot = VOCAB - len(SPECIALS), VOCAB - len(SPECIALS) + 1
    config = WhisperConfig(vocab_size=VOCAB, num_mel_bins=80, d_model=64, encoder_layers=2, decoder_layers=2,
                           encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=128,
                           decoder_ffn_dim=128, max_source_positions=16, max_target_positions=32,
                           pad_token_id=eot, bos_token_id=eot, eos_token_id=eot, decoder_start_token_id=sot)
    torch.manual_seed(0)
    model = WhisperForConditionalGeneration(config).eval()
    # distinct values everywhere: default init leaves biases at 0 and norms at 1, which CTranslate2
    # would store once and alias, hiding mapping mistakes
    with torch.no_grad():
        for name, p in model.named_parameters():
            base = 1.0 if name.endswith("layer_norm.weight") else 0.0
            p.copy_(base + 0.1 * torch.randn_like(p))
    gen = model.generation_config
    gen.suppress_tokens, gen.begin_suppress_tokens = [1, 2, 7], [eot]
    gen.alignment_heads = [[1, 0], [1, 3]]
    return model
