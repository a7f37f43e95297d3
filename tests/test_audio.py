"""edgeseq.audio: features vs transformers' WhisperFeatureExtractor, the resampler vs analytic sines, WAV reading
(files written here), error messages, word error rate, and the espeak-ng test set when the binary is there."""
from __future__ import annotations

import importlib.util
import struct
import wave
from pathlib import Path

import numpy as np
import pytest

from edgeseq.audio import corpus_wer, load_audio, log_mel, normalize, resample, wer, windows
from edgeseq.audio.testset import clips, espeak_available, synthesize
from edgeseq.errors import InputError

RNG = np.random.default_rng(0)
T30 = np.arange(480000) / 16000
SIGNALS = {
    "noise": (RNG.standard_normal(300000) * 0.1).astype(np.float32),
    "sine": (0.5 * np.sin(2 * np.pi * 440 * T30[:200000])).astype(np.float32),
    "silence": np.zeros(16000, np.float32),
    "short": (RNG.standard_normal(1234) * 0.3).astype(np.float32),
    "exact_30s": (RNG.standard_normal(480000) * 0.2 + 0.3 * np.sin(2 * np.pi * 1234 * T30)).astype(np.float32),
}


@pytest.fixture(scope="module")
def extractors() -> dict[int, object]:
    transformers = pytest.importorskip("transformers", reason="transformers is the reference for the features")
    return {n: transformers.WhisperFeatureExtractor(feature_size=n) for n in (80, 128)}


@pytest.mark.parametrize("n_mels,name", [(80, k) for k in SIGNALS] + [(128, "noise"), (128, "short")])
def test_log_mel_matches_whisper_feature_extractor(extractors: dict, n_mels: int, name: str) -> None:
    x = SIGNALS[name]
    want = extractors[n_mels](x, sampling_rate=16000, return_tensors="np").input_features[0]
    got = log_mel(x, n_mels=n_mels)
    assert got.shape == want.shape == (n_mels, 3000) and got.dtype == np.float32
    assert np.abs(got - want).max() < 1e-4


def test_windows_split_and_pad_long_audio() -> None:
    x = np.arange(65 * 16000, dtype=np.float32)
    ws = windows(x)
    assert [s for s, _ in ws] == [0.0, 30.0, 60.0]
    assert all(c.shape == (480000,) for _, c in ws)
    assert ws[1][1][0] == 30 * 16000 and np.all(ws[2][1][5 * 16000:] == 0) and ws[2][1][5 * 16000 - 1] != 0
    assert windows(np.zeros(0, np.float32)) == []
    with pytest.raises(InputError, match="windows"):
        log_mel(x)


@pytest.mark.parametrize("orig", [44100, 22050, 8000, 48000])
def test_resample_sine_matches_analytic(orig: int) -> None:
    t = np.arange(2 * orig) / orig
    for freq in (440.0, 3000.0):
        y = resample(np.sin(2 * np.pi * freq * t), orig, 16000)
        assert y.dtype == np.float32 and y.size == 32000
        exact = np.sin(2 * np.pi * freq * np.arange(y.size) / 16000)
        inner = slice(800, -800)  # the ends see the zeros outside the signal
        assert np.abs(y[inner] - exact[inner]).max() < 1e-4, (orig, freq)


def test_resample_removes_what_16k_cannot_hold() -> None:
    t = np.arange(44100) / 44100
    y = resample(np.sin(2 * np.pi * 10000 * t), 44100, 16000)  # above the new 8 kHz Nyquist
    assert np.sqrt(np.mean(y[800:-800] ** 2)) < 1e-4


def test_resample_agrees_with_scipy() -> None:
    signal = pytest.importorskip("scipy.signal", reason="scipy is only an optional reference here")
    t = np.arange(3 * 44100) / 44100
    x = sum(np.sin(2 * np.pi * f * t + f) for f in (150.0, 900.0, 2500.0, 5000.0)) / 4
    ours, ref = resample(x, 44100, 16000), signal.resample_poly(x, 160, 441)
    assert np.abs(ours[800:-800] - ref[800:-800]).max() < 5e-3  # scipy's shorter default filter ripples more


def test_resample_identity_and_bad_rates() -> None:
    x = RNG.standard_normal(100).astype(np.float32)
    assert np.array_equal(resample(x, 16000, 16000), x)
    with pytest.raises(InputError, match="Hz"):
        resample(x, 0, 16000)
    with pytest.raises(InputError, match="one channel"):
        resample(np.zeros((10, 2)), 8000)


def _write_pcm(path: Path, ints: np.ndarray, width: int, rate: int, channels: int = 1) -> Path:
    if width == 3:
        u = ints.astype(np.int64) & 0xFFFFFF
        raw = np.stack([u & 0xFF, (u >> 8) & 0xFF, u >> 16], axis=-1).astype(np.uint8).tobytes()
    else:
        raw = ints.astype({1: np.uint8, 2: "<i2", 4: "<i4"}[width]).tobytes()
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(raw)
    return path


def _write_float_wav(path: Path, x: np.ndarray, rate: int, extensible: bool = False) -> Path:
    data = x.astype("<f4").tobytes()
    if extensible:  # WAVE_FORMAT_EXTENSIBLE whose sub-format GUID starts with the float tag
        fmt = struct.pack("<HHIIHHHHI", 0xFFFE, 1, rate, rate * 4, 4, 32, 22, 32, 4) + struct.pack("<H", 3) + bytes(14)
    else:
        fmt = struct.pack("<HHIIHH", 3, 1, rate, rate * 4, 4, 32)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)
    return path


@pytest.mark.parametrize("width", [1, 2, 3, 4])
def test_wav_integer_pcm(tmp_path: Path, width: int) -> None:
    bits = 8 * width
    scale = 2 ** (bits - 1)
    values = np.array([0, scale // 2, -scale // 2, scale - 1, -scale, scale // 4])
    ints = values + 128 if width == 1 else values  # 8-bit WAV is unsigned
    x = load_audio(_write_pcm(tmp_path / f"a{bits}.wav", ints, width, 16000))
    assert x.dtype == np.float32 and np.allclose(x, values / scale, atol=1e-7)


def test_wav_stereo_is_averaged(tmp_path: Path) -> None:
    frames = np.array([[1000, 3000], [-2000, 0], [16384, -16384]])
    x = load_audio(_write_pcm(tmp_path / "st.wav", frames.reshape(-1), 2, 16000, channels=2))
    assert np.allclose(x, frames.mean(axis=1) / 32768)


@pytest.mark.parametrize("extensible", [False, True])
def test_wav_float32_and_resampled_on_load(tmp_path: Path, extensible: bool) -> None:
    t = np.arange(22050) / 22050
    path = _write_float_wav(tmp_path / "f.wav", 0.5 * np.sin(2 * np.pi * 300 * t), 22050, extensible)
    assert np.allclose(load_audio(path, sampling_rate=22050), 0.5 * np.sin(2 * np.pi * 300 * t), atol=1e-7)
    x = load_audio(path)
    assert x.size == 16000
    assert np.abs(x[800:-800] - 0.5 * np.sin(2 * np.pi * 300 * np.arange(16000) / 16000)[800:-800]).max() < 1e-4


def test_audio_errors_name_the_file_and_the_fix(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not found"):
        load_audio(tmp_path / "missing.wav")
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF\x04\x00\x00\x00WAVEjunk")
    with pytest.raises(InputError) as e:
        load_audio(bad)
    assert str(bad) in e.value.message and "WAV" in (e.value.hint or "")
    flac = tmp_path / "clip.flac"
    flac.write_bytes(b"fLaC not really")
    with pytest.raises(InputError) as e:
        load_audio(flac)
    assert str(flac) in e.value.message
    if importlib.util.find_spec("soundfile") is None:
        assert "pip install soundfile" in (e.value.hint or "")
    with pytest.raises(InputError, match="1-D"):
        load_audio(np.zeros((100, 2), np.float32))
    arr = np.array([0.25, -0.5], dtype=np.float64)
    assert load_audio(arr).dtype == np.float32  # arrays are taken as samples already at the rate
    with pytest.raises(InputError, match="NaN or infinite"):  # else: garbage features, fluent nonsense
        load_audio(np.array([0.1, np.nan, 0.2], np.float32))


def test_wer_normalizer_and_edits() -> None:
    assert normalize("Hello, World!  It's twenty-one \u2014 \u201cquoted\u201d don\u2019t") == [
        "hello", "world", "it's", "twenty", "one", "quoted", "don't"]
    assert wer("The cat sat on the mat.", "the cat sat on the mat") == 0.0
    assert wer("the cat sat on the mat", "the bat sat on mat") == pytest.approx(2 / 6)  # 1 sub + 1 deletion
    assert wer("a b", "a x b y z") == pytest.approx(3 / 2)  # insertions can push it past 1
    assert wer("twenty one", "21") == 1.0  # digits are not reconciled with spelled numbers
    assert wer("do not", "don't") == 1.0  # contractions are not expanded
    assert corpus_wer([("one two three four", "one two three four"), ("five six", "")]) == pytest.approx(2 / 6)
    with pytest.raises(InputError, match="empty reference"):
        wer("", "something")


ESPEAK = espeak_available()


@pytest.mark.skipif(ESPEAK is not None, reason=f"spoken test set unavailable: {ESPEAK}")
def test_espeak_clips_read_at_16k_with_sane_durations(tmp_path: Path) -> None:
    (short, text), (long, _) = synthesize(tmp_path, ["weather", "joined_morning"])
    assert text == dict(clips())["weather"]
    with wave.open(str(short)) as w:
        assert w.getframerate() != 16000  # espeak-ng's own rate: reading resamples
    x, y = load_audio(short), load_audio(long)
    assert 0.5 < x.size / 16000 < 8 and np.abs(x).max() > 0.05
    assert 30 < y.size / 16000 < 90 and len(windows(y)) >= 2
    stamp = short.stat().st_mtime_ns
    assert synthesize(tmp_path, ["weather"])[0][0] == short and short.stat().st_mtime_ns == stamp  # cached
