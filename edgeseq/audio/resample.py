"""Band-limited resampling in numpy: a Kaiser-windowed sinc applied polyphase for the rational ratio.

For `orig -> target` with `g = gcd(orig, target)`, `up = target // g`, `down = orig // g`, output sample `n`
sits at input time `t = n * down / up`. Its fractional part repeats with period `up`, so one filter row per
phase is built once (`up` rows of `2 * half` taps) and each phase's outputs are one strided matrix-vector
product over the input. The low-pass cutoff is `rolloff * min(1, target / orig)` of the input's Nyquist, so
downsampling removes what the new rate cannot hold instead of folding it back.
"""
from __future__ import annotations

import math

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from edgeseq.errors import InputError


def _phase_filters(up: int, down: int, zeros: int, rolloff: float, beta: float) -> tuple[np.ndarray, np.ndarray, int]:
    """Per-phase taps `[up, 2*half]` (each row sums to 1), the integer input offset of each phase, and `half`."""
    cutoff = rolloff * min(1.0, up / down)  # in cycles per input sample, relative to Nyquist
    half = int(math.ceil(zeros / cutoff))  # filter half-width in input samples
    r = np.arange(up)
    offset = (r * down) // up  # floor(t) - q*down for output n = q*up + r
    frac = (r * down % up) / up  # t - floor(t)
    j = np.arange(-half + 1, half + 1)  # taps x[floor(t) + j]
    d = frac[:, None] - j[None, :]  # distance from the output time to each tap, in input samples
    u = np.clip(d / half, -1.0, 1.0)
    window = np.i0(beta * np.sqrt(1.0 - u * u)) / np.i0(beta)
    taps = cutoff * np.sinc(cutoff * d) * window
    taps /= taps.sum(axis=1, keepdims=True)  # unit DC gain on every phase
    return taps, offset, half


def resample(samples: np.ndarray, orig_sr: int, target_sr: int = 16000, *, zeros: int = 24,
             rolloff: float = 0.94, beta: float = 9.0) -> np.ndarray:
    """Resample mono float samples from `orig_sr` to `target_sr` (Hz, integers); float32 out.

    The output has `ceil(len * target / orig)` samples; the signal is taken as zero outside the input.
    `zeros` is the sinc half-width in zero crossings (longer: sharper transition, slower), `beta` the Kaiser
    shape (stop-band attenuation), `rolloff` how close to the new Nyquist the pass band reaches.
    """
    if orig_sr <= 0 or target_sr <= 0 or int(orig_sr) != orig_sr or int(target_sr) != target_sr:
        raise InputError(f"cannot resample from {orig_sr} Hz to {target_sr} Hz",
                         "sampling rates must be positive whole numbers of Hz")
    x = np.asarray(samples, dtype=np.float64)
    if x.ndim != 1:
        raise InputError(f"resample takes one channel, got an array of shape {x.shape}",
                         "mix the channels down first, e.g. samples.mean(axis=-1)")
    if orig_sr == target_sr or x.size == 0:
        return x.astype(np.float32)
    g = math.gcd(int(orig_sr), int(target_sr))
    up, down = int(target_sr) // g, int(orig_sr) // g
    taps, offset, half = _phase_filters(up, down, zeros, rolloff, beta)
    n_out = -(-x.size * up // down)
    # zero-pad so every tap of every output reads inside the array: x[k] lives at xp[k + half - 1]
    xp = np.zeros(x.size + 2 * half + down, dtype=np.float64)
    xp[half - 1:half - 1 + x.size] = x
    frames = sliding_window_view(xp, 2 * half)  # frames[s] = xp[s : s + 2*half]
    out = np.empty(n_out, dtype=np.float64)
    for r in range(min(up, n_out)):
        count = len(range(r, n_out, up))
        rows = frames[offset[r]: offset[r] + count * down: down]  # output q*up + r reads from q*down + offset
        out[r::up] = rows @ taps[r]
    return out.astype(np.float32)
