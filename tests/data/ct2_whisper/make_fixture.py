"""Makes the CTranslate2 Whisper fixtures in this folder with CTranslate2's own converter.

Run once, in a venv with `ctranslate2`, `transformers==5.24.0` and `torch==2.13.0` (not a test dependency):
    python tests/data/ct2_whisper/make_fixture.py
A random Whisper (d_model 64, 2+2 layers, 4 heads, 80 mel bins, 96-token vocabulary) from torch.manual_seed(0)
is converted to float16/ (model.bin in float16) and int8/ (int8 weights with per-row scales), each with
config.json and tokenizer.json. reference.npz holds mel input features, decoder ids and the float32 model's logits.
fox_16k.wav (for the real tiny.en test) was spoken by espeak-ng and resampled with sox:
    espeak-ng -s 120 -v en -w f.wav "The quick brown fox jumps over the lazy dog."
    sox f.wav -r 16000 -c 1 -b 16 fox_16k.wav
"""
from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))
from ct2_fixture import SPECIALS, VOCAB, tiny_whisper  # noqa: E402


def tokenizer_json() -> str:
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {f"t{i}": i for i in range(VOCAB - len(SPECIALS))}
    vocab.update({s: VOCAB - len(SPECIALS) + i for i, s in enumerate(SPECIALS)})
    tok = Tokenizer(models.WordLevel(vocab, unk_token="t0"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.add_special_tokens(list(SPECIALS))
    return tok.to_str()


def main() -> None:
    import ctranslate2
    from transformers import PreTrainedTokenizerFast

    model = tiny_whisper()
    g = torch.Generator().manual_seed(1)
    features = torch.randn(1, 80, 2 * model.config.max_source_positions, generator=g)
    ids = torch.tensor([[VOCAB - 7, 3, 17, 42, 5, 60]])
    with torch.no_grad():
        logits = model(input_features=features, decoder_input_ids=ids).logits
    np.savez(HERE / "reference.npz", features=features.numpy(), decoder_input_ids=ids.numpy(),
             logits=logits.numpy())
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "hf"
        model.save_pretrained(src)
        (src / "tokenizer.json").write_text(tokenizer_json())
        PreTrainedTokenizerFast(tokenizer_file=str(src / "tokenizer.json")).save_pretrained(src)
        for quant in ("float16", "int8"):
            out = HERE / quant
            shutil.rmtree(out, ignore_errors=True)
            ctranslate2.converters.TransformersConverter(str(src), copy_files=["tokenizer.json"]).convert(
                str(out), quantization=quant)
            (out / "vocabulary.json").unlink(missing_ok=True)  # the reader takes tokens from tokenizer.json
    print(logits.shape, float(logits.abs().max()))


if __name__ == "__main__":
    main()
