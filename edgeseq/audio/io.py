"""Reading audio into float32 mono samples in [-1, 1] at a chosen rate.

WAV is read without third-party packages: integer PCM (8/16/24/32-bit) through the stdlib `wave` module, and
what `wave` refuses (IEEE float, the extensible header) from the RIFF chunks directly. Other formats (FLAC, OGG,
MP3, ...) go through `soundfile` when it is installed. Several channels are averaged to one.
"""
from __future__ import annotations

import importlib.util
import os
import struct
import wave
from pathlib import Path

import numpy as np

from edgeseq.audio.resample import resample
from edgeseq.errors import InputError

_PCM, _FLOAT, _EXTENSIBLE = 1, 3, 0xFFFE
_CONVERT_HINT = "convert it to 16-bit WAV, e.g. `ffmpeg -i IN -ar 16000 -ac 1 OUT.wav`"


def load_audio(source: str | os.PathLike[str] | np.ndarray, sampling_rate: int = 16000) -> np.ndarray:
    """Samples of `source` as float32 mono in [-1, 1] at `sampling_rate` Hz.

    `source` is a path (WAV natively; FLAC/OGG/MP3 need `soundfile`) or a 1-D numpy array, which is taken as
    mono float samples already at `sampling_rate` (no resampling, no rescaling; only cast to float32).
    """
    if isinstance(source, np.ndarray):
        if source.ndim != 1:
            raise InputError(f"an audio array must be 1-D mono samples, got shape {source.shape}",
                             "mix channels down first (e.g. `x.mean(axis=1)` for [samples, channels]) "
                             "or pass the file path instead")
        if not np.issubdtype(source.dtype, np.number) or np.iscomplexobj(source):
            raise InputError(f"an audio array must hold real numbers, got dtype {source.dtype}",
                             "pass float samples in [-1, 1]")
        return _finite(source.astype(np.float32, copy=False), "the audio array")
    path = Path(source)
    if not path.is_file():
        raise InputError(f"audio file not found: {path}", "check the path")
    try:
        samples, rate = _read(path)
    except OSError as e:
        raise InputError(f"cannot read {path}: {e.strerror or e}", "check the file's permissions") from None
    if samples.size == 0:
        raise InputError(f"{path} holds no audio samples", "check the recording; it is empty")
    return _finite(resample(samples, rate, sampling_rate), str(path))


def _finite(samples: np.ndarray, what: str) -> np.ndarray:
    """NaN or infinite samples would reach the model as garbage features and fluent-looking nonsense."""
    if not np.isfinite(samples).all():
        raise InputError(f"{what} holds NaN or infinite samples", "replace them (e.g. np.nan_to_num) or fix the "
                         "recording")
    return samples


def _read(path: Path) -> tuple[np.ndarray, int]:
    """Mono float64 samples and their rate, from any supported file."""
    with open(path, "rb") as f:
        head = f.read(12)
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return _read_wav(path)
    return _read_soundfile(path)


def _read_wav(path: Path) -> tuple[np.ndarray, int]:
    try:
        with wave.open(str(path), "rb") as w:
            width, channels, rate = w.getsampwidth(), w.getnchannels(), w.getframerate()
            raw = w.readframes(w.getnframes())
        return _mono(_pcm(raw, width, path), channels), rate
    except wave.Error:
        pass  # a float or extensible header: read the chunks ourselves
    except (EOFError, struct.error):
        raise InputError(f"{path} is a truncated or damaged WAV file", _CONVERT_HINT) from None
    return _read_riff(path)


def _read_riff(path: Path) -> tuple[np.ndarray, int]:
    """WAV parsed chunk by chunk: `fmt ` for the layout, `data` for the samples."""
    data = path.read_bytes()
    fmt: tuple[int, int, int, int] | None = None
    pos, payload = 12, None
    while pos + 8 <= len(data):
        cid, size = data[pos:pos + 4], struct.unpack_from("<I", data, pos + 4)[0]
        body = data[pos + 8:pos + 8 + size]
        if cid == b"fmt " and len(body) >= 16:
            tag, channels, rate, _, _, bits = struct.unpack_from("<HHIIHH", body)
            if tag == _EXTENSIBLE and len(body) >= 26:
                tag = struct.unpack_from("<H", body, 24)[0]  # the sub-format GUID starts with the real tag
            fmt = (tag, channels, rate, bits)
        elif cid == b"data":
            payload = body
        pos += 8 + size + (size & 1)  # chunks are word-aligned
    if fmt is None or payload is None:
        raise InputError(f"{path} is not a readable WAV file (no {'fmt' if fmt is None else 'data'} chunk)",
                         _CONVERT_HINT)
    tag, channels, rate, bits = fmt
    if channels < 1 or rate < 1:
        raise InputError(f"{path}: WAV header says {channels} channels at {rate} Hz", _CONVERT_HINT)
    if tag == _FLOAT and bits in (32, 64):
        dtype = np.dtype("<f4" if bits == 32 else "<f8")
        usable = len(payload) // dtype.itemsize * dtype.itemsize
        return _mono(np.frombuffer(payload[:usable], dtype=dtype).astype(np.float64), channels), rate
    if tag == _PCM and bits in (8, 16, 24, 32):
        return _mono(_pcm(payload, bits // 8, path), channels), rate
    raise InputError(f"{path}: unsupported WAV encoding (format tag {tag}, {bits}-bit)",
                     "WAV must be integer PCM (8/16/24/32-bit) or 32/64-bit float; " + _CONVERT_HINT)


def _pcm(raw: bytes, width: int, path: Path) -> np.ndarray:
    """Little-endian integer PCM bytes to float64 in [-1, 1)."""
    usable = len(raw) // width * width
    if width == 1:  # 8-bit WAV is unsigned
        return (np.frombuffer(raw[:usable], dtype=np.uint8).astype(np.float64) - 128.0) / 128.0
    if width == 2:
        return np.frombuffer(raw[:usable], dtype="<i2") / 32768.0
    if width == 3:
        b = np.frombuffer(raw[:usable], dtype=np.uint8).reshape(-1, 3).astype(np.int32)
        v = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
        v = np.where(v >= 1 << 23, v - (1 << 24), v)  # sign-extend 24 bits
        return v / float(1 << 23)
    if width == 4:
        return np.frombuffer(raw[:usable], dtype="<i4") / float(1 << 31)
    raise InputError(f"{path}: unsupported WAV sample width ({width * 8}-bit)", _CONVERT_HINT)


def _mono(interleaved: np.ndarray, channels: int) -> np.ndarray:
    if channels == 1:
        return interleaved
    frames = interleaved.size // channels
    return interleaved[:frames * channels].reshape(frames, channels).mean(axis=1)


def _read_soundfile(path: Path) -> tuple[np.ndarray, int]:
    if importlib.util.find_spec("soundfile") is None:
        raise InputError(f"{path} is not a WAV file, and reading other formats (FLAC, OGG, MP3) needs soundfile",
                         "pip install soundfile, or " + _CONVERT_HINT)
    import soundfile

    try:
        samples, rate = soundfile.read(str(path), dtype="float64", always_2d=True)
    except Exception as e:  # soundfile raises its own LibsndfileError / RuntimeError subclasses
        raise InputError(f"{path} could not be decoded as audio ({str(e).strip()[:160]})", _CONVERT_HINT) from None
    return samples.mean(axis=1), int(rate)
