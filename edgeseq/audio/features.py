"""Whisper's log-mel input features in numpy, the same math as transformers' `WhisperFeatureExtractor`.

One 30 s window (480000 samples at 16 kHz, zero-padded) -> centered STFT (reflect padding, periodic Hann,
n_fft 400, hop 160) -> power spectrum -> Slaney mel bank (0-8 kHz, Slaney area normalization) -> log10 clamped
at 1e-10 -> floor at max - 8 -> (x + 4) / 4. The STFT yields 3001 frames; the last is dropped, leaving 3000.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from edgeseq.errors import InputError

SAMPLING_RATE = 16000
N_FFT = 400
HOP = 160
CHUNK_SECONDS = 30
N_SAMPLES = CHUNK_SECONDS * SAMPLING_RATE
N_FRAMES = N_SAMPLES // HOP


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    """Slaney's scale: linear below 1 kHz (3 mels per 200 Hz), logarithmic above (27 mels per factor 6.4)."""
    hz = np.asarray(hz, dtype=np.float64)
    log_step = np.log(6.4) / 27.0
    return np.where(hz < 1000.0, 3.0 * hz / 200.0, 15.0 + np.log(np.maximum(hz, 1e-300) / 1000.0) / log_step)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    mel = np.asarray(mel, dtype=np.float64)
    log_step = np.log(6.4) / 27.0
    return np.where(mel < 15.0, 200.0 * mel / 3.0, 1000.0 * np.exp(log_step * (mel - 15.0)))


@lru_cache(maxsize=4)
def mel_filters(n_mels: int = 80, n_fft: int = N_FFT, sampling_rate: int = SAMPLING_RATE,
                fmax: float = 8000.0) -> np.ndarray:
    """Triangular Slaney mel filter bank `[n_mels, n_fft // 2 + 1]` (float64, read-only), each filter scaled
    by 2 / its bandwidth in Hz so every band carries about the same energy."""
    edges = _mel_to_hz(np.linspace(_hz_to_mel(0.0), _hz_to_mel(fmax), n_mels + 2))
    bins = np.linspace(0.0, sampling_rate // 2, n_fft // 2 + 1)
    lower, center, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (bins[None, :] - lower) / (center - lower)
    falling = (upper - bins[None, :]) / (upper - center)
    bank = np.maximum(0.0, np.minimum(rising, falling)) * (2.0 / (upper - lower))
    bank.setflags(write=False)
    return bank


@lru_cache(maxsize=4)
def _bands(n_mels: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The bank as one run of bins per band (its first to its last nonzero weight): the bins, their
    weights and where each band's run starts; a band without a nonzero bin keeps one zero-weight bin."""
    bins: list[int] = []
    weights: list[float] = []
    starts: list[int] = []
    for row in mel_filters(n_mels):
        nz = np.flatnonzero(row)
        lo, hi = (int(nz[0]), int(nz[-1]) + 1) if nz.size else (0, 1)
        starts.append(len(bins))
        bins += range(lo, hi)
        weights += row[lo:hi].tolist()
    return np.array(bins), np.array(weights), np.array(starts)


def _mel(power: np.ndarray, n_mels: int) -> np.ndarray:
    """mel_filters(n_mels) @ power.T [n_mels, frames], summed over each band's few bins instead of a
    dense matrix product: numpy's BLAS would run that product on threads that keep spinning for a
    while after it returns, taking the cores from the engine's encoder, which starts right after."""
    bins, weights, starts = _bands(n_mels)
    return np.add.reduceat(power[:, bins] * weights, starts, axis=1).T


@lru_cache(maxsize=1)
def _hann() -> np.ndarray:
    return 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(N_FFT) / N_FFT)  # periodic: period N_FFT, not N_FFT - 1


def log_mel(samples: np.ndarray, n_mels: int = 80) -> np.ndarray:
    """Log-mel features `[n_mels, 3000]` float32 of one 30 s window of 16 kHz mono samples.

    Shorter input is zero-padded to 30 s, as transformers pads; longer input is an error (split it with
    `windows()` first). `n_mels` is 80 for most Whisper checkpoints, 128 for large-v3 and turbo.
    """
    x = np.asarray(samples, dtype=np.float64)
    if x.ndim != 1:
        raise InputError(f"log_mel takes 1-D mono samples, got shape {x.shape}", "load it with load_audio()")
    if x.size > N_SAMPLES:
        raise InputError(f"log_mel takes at most {CHUNK_SECONDS} s ({N_SAMPLES} samples), got {x.size}",
                         "split long audio with edgeseq.audio.windows() and featurize each window")
    padded = np.zeros(N_SAMPLES + N_FFT, dtype=np.float64)
    half = N_FFT // 2
    padded[half:half + x.size] = x
    body = padded[half:half + N_SAMPLES]
    padded[:half] = body[1:half + 1][::-1]  # reflect padding around the zero-padded window, as a centered STFT does
    padded[half + N_SAMPLES:] = body[-half - 1:-1][::-1]
    frames = sliding_window_view(padded, N_FFT)[::HOP][:N_FRAMES]  # the 3001st frame is dropped
    spectrum = np.fft.rfft(frames * _hann(), axis=1)
    power = spectrum.real ** 2 + spectrum.imag ** 2  # [3000, 201]
    mel = _mel(power, n_mels)  # [n_mels, 3000]
    logs = np.log10(np.maximum(mel, 1e-10))
    logs = np.maximum(logs, logs.max() - 8.0)
    return ((logs + 4.0) / 4.0).astype(np.float32)


def windows(samples: np.ndarray, seconds: int = CHUNK_SECONDS,
            sampling_rate: int = SAMPLING_RATE) -> list[tuple[float, np.ndarray]]:
    """Consecutive non-overlapping windows of `seconds` each as `(start_seconds, chunk)`; every chunk has exactly
    `seconds * sampling_rate` samples (the last zero-padded). Empty input gives an empty list."""
    x = np.asarray(samples, dtype=np.float32)
    if x.ndim != 1:
        raise InputError(f"windows takes 1-D mono samples, got shape {x.shape}", "load it with load_audio()")
    size = int(seconds * sampling_rate)
    out = []
    for start in range(0, x.size, size):
        chunk = x[start:start + size]
        if chunk.size < size:
            chunk = np.concatenate([chunk, np.zeros(size - chunk.size, dtype=np.float32)])
        out.append((start / sampling_rate, chunk))
    return out
