"""Profiling a speech artifact (Whisper): one 30 s window of audio in, forced decoding out.

The protocol is the text one's (warm-up, timed repetitions, EOS masked so every run writes
--output-len tokens) with audio in place of a prompt: a file (--audio, its first window when it is
longer) or --audio-seconds of a synthetic voice-like signal. Each run times the front end (log-mel
features, `features_ms`) and the loop (encoder, TTFT, decode) on its one clock; the real-time factor
is (front end + loop) / audio seconds. A profile's input length is the encoder's positions (1500 for
a 30 s window), which is what the decoder's cross-attention reads.
"""
from __future__ import annotations

import math
import time
from typing import Any

import numpy as np

from ..errors import UsageError
from ..generate.config import GenerationConfig
from ..generate.loop import TimeLimitError, Timings, run
from ..generate.speech import prompt


def audio_input(audio: str | None, seconds: float | None, info: dict[str, Any]) -> tuple[np.ndarray, float, str]:
    """The samples of one window, the audio's length in seconds and a label for the report."""
    from ..audio import load_audio
    from ..audio.testset import voice_like

    rate, window = int(info["sampling_rate"]), float(info["chunk_seconds"])
    if audio is not None and seconds is not None:
        raise UsageError("pass --audio FILE or --audio-seconds N, not both", "drop one of them")
    if audio is not None:
        samples = load_audio(audio, rate)
        length = len(samples) / rate
        label = f"{audio}" + (f" (first {window:.0f} s of {length:.1f} s)" if length > window else "")
        return samples[: int(window * rate)], min(length, window), label
    seconds = window if seconds is None else seconds
    if not 0 < seconds <= window:
        raise UsageError(f"--audio-seconds must be in (0, {window:.0f}], got {seconds}",
                         f"a profile runs one {window:.0f} s window; `edgeseq transcribe` handles long audio")
    return voice_like(seconds, rate), seconds, f"{seconds:g} s synthetic voice-like signal"


def runs(backend: Any, m: Any, samples: np.ndarray, out_len: int, batch: int, count: int, deadline: float | None,
         tick: Any = None) -> tuple[list[Timings], float, list[int], str, list[float]]:
    """`count` runs of front end + loop: the loop's timings (stopping at a time-limit overrun), the
    first run's wall time, the last run's ids, the status and each run's front-end ms."""
    from ..audio import log_mel

    cfg = GenerationConfig(max_new_tokens=out_len, ignore_eos=True).validate()
    ids = [prompt(m.audio["tokens"])] * batch
    timings: list[Timings] = []
    features_ms: list[float] = []
    out: list[list[int]] = [[]]
    first = math.nan
    for _ in range(count):
        t = time.perf_counter()
        features = np.repeat(log_mel(samples, n_mels=int(m.audio["n_mels"]))[None], batch, axis=0)
        front = (time.perf_counter() - t) * 1e3
        try:
            out, tm = run(backend, ids, cfg, m.generation, deadline=deadline, features=features,
                          samples=[samples] * batch)
        except TimeLimitError:
            return timings, first, out[0], "timeout", features_ms
        tm.tokenize_ms = math.nan  # no text to tokenize: the front end is features_ms
        if not timings:
            first = (time.perf_counter() - t) * 1e3
        timings.append(tm)
        features_ms.append(front)
        if tick:
            tick()
    return timings, first, out[0], "ok", features_ms


def extras(features_ms: list[float], timings: list[Timings], seconds: float, label: str) -> dict[str, Any]:
    """The speech figures a result carries beside the loop's: per-run samples and the audio used."""
    rtf = [(f + t.e2e_ms) / 1e3 / seconds for f, t in zip(features_ms, timings)]
    return {"audio": label, "audio_seconds": round(seconds, 3),
            "speech_samples": {"features_ms": [round(x, 4) for x in features_ms],
                               "real_time_factor": [round(x, 5) for x in rtf]}}
