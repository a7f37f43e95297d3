"""Audio front end for speech models (Whisper): reading, resampling, log-mel features, word error rate.

numpy only; `soundfile` is used for non-WAV files when installed. The spoken test set lives in
`edgeseq.audio.testset` (needs the `espeak-ng` binary).
"""
from __future__ import annotations

from edgeseq.audio.features import N_FRAMES, N_SAMPLES, SAMPLING_RATE, log_mel, mel_filters, windows
from edgeseq.audio.io import load_audio
from edgeseq.audio.resample import resample
from edgeseq.audio.wer import corpus_wer, normalize, wer

__all__ = ["N_FRAMES", "N_SAMPLES", "SAMPLING_RATE", "corpus_wer", "load_audio", "log_mel", "mel_filters",
           "normalize", "resample", "wer", "windows"]
