"""A small spoken English test set synthesized with the `espeak-ng` binary, for checking transcription end to end.

The sentences are written for this project (no third-party text), plain English with numbers spelled as words.
Two clips join several sentences into more than 30 s of speech so that long-audio windowing is exercised.
espeak-ng writes 22050 Hz WAV, so reading a clip at 16 kHz also exercises the resampler. Synthetic speech is
clean and regular: a word error rate on it is a smoke test of the pipeline, not a measure of real-world accuracy.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np

from edgeseq.errors import InputError

VOICE = "en-us"
WORDS_PER_MINUTE = 160

SENTENCES: list[tuple[str, str]] = [
    ("weather", "The weather is nice today."),
    ("coffee", "Please pass me the coffee."),
    ("train", "The train leaves at seven in the morning."),
    ("keys", "I left my keys on the kitchen table."),
    ("dog", "Our dog likes to sleep in the sun."),
    ("library", "The library closes at nine tonight."),
    ("apples", "She bought twelve green apples at the market."),
    ("meeting", "The meeting has been moved to Thursday afternoon."),
    ("garden", "My grandfather planted three tall trees in his garden."),
    ("phone", "Can you call me back in twenty minutes?"),
    ("bridge", "The old bridge was painted bright red last summer."),
    ("numbers", "There are fifty two weeks in a year and seven days in a week."),
    ("recipe", "Mix two cups of flour with one cup of warm water."),
    ("bus", "The bus was late, so we walked home together."),
    ("music", "He plays the piano every evening after dinner."),
    ("river", "A small boat drifted slowly down the quiet river."),
    ("letters", "Please write your name at the top of the page."),
    ("hundred", "The school has four hundred students and thirty teachers."),
    ("long_city",
     "When the sun went down over the city, the streets filled with people walking home from work, and the "
     "small shops along the river began to turn on their lights one by one."),
    ("long_trip",
     "Before we started the long drive to the coast, we checked the tires, packed enough water for the whole "
     "day, and agreed to stop for lunch in the little town near the mountains."),
]

_JOINED = {
    "joined_morning": ["weather", "coffee", "train", "keys", "dog", "library", "apples", "meeting", "garden",
                       "phone", "long_city"],
    "joined_evening": ["bridge", "numbers", "recipe", "bus", "music", "river", "letters", "hundred", "long_trip",
                       "long_city"],
}


def clips() -> list[tuple[str, str]]:
    """Every clip as `(name, reference_text)`: the single sentences, then the joined long ones."""
    text = dict(SENTENCES)
    return list(SENTENCES) + [(name, " ".join(text[k] for k in parts)) for name, parts in _JOINED.items()]


def espeak_available() -> str | None:
    """None when the `espeak-ng` binary can synthesize; otherwise the reason it cannot."""
    exe = shutil.which("espeak-ng")
    if exe is None:
        return "the espeak-ng binary is not on PATH (Debian/Ubuntu: apt-get install espeak-ng)"
    try:
        done = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"espeak-ng could not be run: {e}"
    if done.returncode != 0:
        return f"espeak-ng --version exited with {done.returncode}: {done.stderr.strip()[:200]}"
    return None


def _file_name(name: str, text: str) -> str:
    key = f"{VOICE}|{WORDS_PER_MINUTE}|{text}".encode()
    return f"{name}-{hashlib.sha256(key).hexdigest()[:10]}.wav"


def synthesize(out_dir: str | os.PathLike[str], names: list[str] | None = None) -> list[tuple[Path, str]]:
    """Write the clips (all, or those in `names`) as WAV under `out_dir`; `(wav_path, reference_text)` each.

    A file whose name already carries the same text/voice/speed hash is reused, not synthesized again.
    """
    reason = espeak_available()
    if reason is not None:
        raise InputError(f"cannot synthesize the spoken test set: {reason}",
                         "install espeak-ng (apt-get install espeak-ng), or scripts/setup.sh does it as root")
    wanted = clips() if names is None else [c for c in clips() if c[0] in set(names)]
    unknown = set(names or ()) - {n for n, _ in wanted}
    if unknown:
        raise InputError(f"unknown test-set clips: {sorted(unknown)}",
                         f"choose from {[n for n, _ in clips()]}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    exe = shutil.which("espeak-ng")
    assert exe is not None  # espeak_available() said it is there
    result = []
    for name, text in wanted:
        path = out / _file_name(name, text)
        if not path.is_file():
            partial = path.with_suffix(".partial.wav")
            cmd = [exe, "-v", VOICE, "-s", str(WORDS_PER_MINUTE), "-w", str(partial), text]
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
            if done.returncode != 0 or not partial.is_file():
                raise InputError(f"espeak-ng failed on clip {name!r} (exit {done.returncode}): "
                                 f"{done.stderr.strip()[:200]}", f"check that voice {VOICE!r} is installed")
            partial.replace(path)  # only a complete file takes the cached name
        result.append((path, text))
    return result


def voice_like(seconds: float, sampling_rate: int = 16000, seed: int = 0) -> np.ndarray:
    """A deterministic speech-like signal without a synthesizer (export parity, NPU calibration):
    harmonics on a gliding pitch, amplitude changing at a syllable rate, light noise, so every mel
    band carries energy. `seed` varies the pitch, rate and noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sampling_rate)) / sampling_rate
    base, glide, syllables = 110 + 60 * rng.random(), 20 + 30 * rng.random(), 3 + 3 * rng.random()
    phase = 2 * np.pi * np.cumsum(base + glide * np.sin(2 * np.pi * 0.5 * t)) / sampling_rate
    voice = sum(np.sin(k * phase) / k for k in range(1, 12)) * (0.6 + 0.4 * np.sin(2 * np.pi * syllables * t)) ** 2
    samples = 0.3 * voice / np.abs(voice).max() + rng.normal(0, 0.02, t.shape)
    return samples.astype(np.float32)
