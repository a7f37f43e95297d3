"""Transcription with a speech artifact (Whisper): audio -> 30 s windows -> log-mel features -> the
generation loop with Whisper's prompt and rules -> text and timed segments.

The prompt is <|startoftranscript|>, then for multilingual models the language and the task, then
<|notimestamps|> unless timestamps are asked for. Suppressed tokens are the manifest's generation
settings, as for any model. With timestamps, `TimestampRules` constrains every choice as
transformers' and OpenAI's decoders do: a segment opens and closes with a timestamp, timestamps
never decrease, the first token is a timestamp no later than the model's initial limit, and a
timestamp is forced whenever the timestamps together are likelier than any single text token.
Long audio is cut into consecutive fixed windows, transcribed as one batch (a word cut at a window
boundary may be lost or split: no window overlaps another).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import InputError, UsageError
from ..runtimes.base import StepBackend
from .beam import beam_search
from .config import GenerationConfig
from .loop import Timings, banned_ids, first_banned, run, start

TASKS = ("transcribe", "translate")
SECONDS_PER_TIMESTAMP = 0.02


@dataclass
class Segment:
    start: float  # seconds from the start of the audio
    end: float
    text: str


@dataclass
class Transcription:
    """One audio input's text, its segments (timed with timestamps, else one per window), the
    language used, and the clock of the generation loop summed over its windows."""

    text: str
    segments: list[Segment]
    language: str | None
    audio_seconds: float
    ids: list[list[int]] = field(default_factory=list)  # per window, in order: the generated token ids
    timings: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"text": self.text, "language": self.language, "audio_seconds": round(self.audio_seconds, 3),
                "segments": [{"start": round(s.start, 2), "end": round(s.end, 2), "text": s.text}
                             for s in self.segments],
                "timings": {k: round(v, 3) for k, v in self.timings.items()}}


def prompt(tokens: dict[str, Any], language: str | None = None, task: str = "transcribe",
           timestamps: bool = False) -> list[int]:
    """The decoder prompt of one window (manifest audio.tokens)."""
    if task not in TASKS:
        raise UsageError(f"unknown task '{task}'", f"tasks: {', '.join(TASKS)}")
    ids = [int(tokens["start"])]
    if tokens.get("multilingual"):
        langs = tokens.get("languages") or {}
        code = language or "en"
        if code not in langs:
            raise UsageError(f"this model has no language '{code}'",
                             f"languages: {', '.join(sorted(langs)[:20])}{' ...' if len(langs) > 20 else ''}")
        if tokens.get(task) is None:
            raise UsageError(f"this model has no {task} task token", "use --task transcribe")
        ids += [int(langs[code]), int(tokens[task])]
    elif language not in (None, "en") or task != "transcribe":
        raise UsageError("this is an English-only Whisper model (.en): it transcribes English only",
                         "drop --language / --task, or export a multilingual Whisper")
    if not timestamps:
        if tokens.get("no_timestamps") is None:
            raise UsageError("this model has no <|notimestamps|> token", "pass --timestamps")
        ids.append(int(tokens["no_timestamps"]))
    elif tokens.get("timestamp_begin") is None:
        raise UsageError("this model has no timestamp tokens", "transcribe without --timestamps")
    return ids


class TimestampRules:
    """The timestamp constraints on the logits of rows whose prompt is `prompt_len` ids long."""

    def __init__(self, audio: dict[str, Any], gen: dict[str, Any], cfg: GenerationConfig, prompt_len: int) -> None:
        t = audio["tokens"]
        self.begin, self.no_ts = int(t["timestamp_begin"]), int(t["no_timestamps"])
        self.eos = min(gen.get("eos_token_ids") or [self.begin])  # text tokens are the ids below it
        self.max_initial = self.begin + int(round(float(audio.get("max_initial_timestamp_s", 1.0))
                                                  / SECONDS_PER_TIMESTAMP))
        self.prompt_len = prompt_len
        # the suppression the loop applies, applied first here so the probabilities below are the chosen-from ones
        self.banned, self.first = banned_ids(cfg, gen) or [], first_banned(cfg, gen) or []

    def __call__(self, logits: np.ndarray, history: np.ndarray) -> np.ndarray:
        out = logits.astype(np.float32, copy=True)
        seq = history[:, self.prompt_len:]
        out[:, self.first if seq.shape[1] == 0 else self.banned] = -np.inf
        out[:, self.no_ts] = -np.inf
        for r in range(out.shape[0]):
            self._row(out[r], seq[r].tolist())
        return out

    def _row(self, x: np.ndarray, seq: list[int]) -> None:
        b = self.begin
        if not seq:  # the first token: a timestamp, not after the initial limit
            x[:b] = -np.inf
            x[self.max_initial + 1:] = -np.inf
            return
        last_ts = seq[-1] >= b
        pen_ts = len(seq) < 2 or seq[-2] >= b
        if last_ts:
            if pen_ts:  # a pair closed a segment and opened the next: text (or the end) follows
                x[b:] = -np.inf
            else:  # a segment just closed: the next opens one (or the text ends)
                x[: self.eos] = -np.inf
        stamps = [t for t in seq if t >= b]
        if stamps:  # never earlier than the last one (and after a lone closing stamp, later)
            floor = stamps[-1] if last_ts and not pen_ts else stamps[-1] + 1
            x[b:floor] = -np.inf
        logp = x - _logsumexp(x)
        if _logsumexp(logp[b:]) > logp[:b].max():
            x[:b] = -np.inf


def _logsumexp(x: np.ndarray) -> float:
    m = float(x.max())
    return m if not np.isfinite(m) else m + float(np.log(np.exp(x - m).sum()))


def segments(ids: list[int], tokenizer: Any, tokens: dict[str, Any], offset: float, length: float,
             eos: int) -> list[Segment]:
    """Segments of one window's generated ids: text between timestamp tokens, or the whole text."""
    begin = tokens.get("timestamp_begin")
    text_ids = [t for t in ids if t < eos]
    if begin is None or not any(t >= begin for t in ids):
        text = tokenizer.decode(text_ids, skip_special_tokens=True).strip()
        return [Segment(offset, offset + length, text)] if text else []
    out, opened, buf = [], None, []
    for t in ids:
        if t >= begin:
            at = offset + (t - begin) * SECONDS_PER_TIMESTAMP
            if opened is not None and buf:
                out.append(Segment(opened, at, tokenizer.decode(buf, skip_special_tokens=True).strip()))
                opened, buf = None, []
            else:
                opened = at
        elif t < eos:
            buf.append(t)
    if buf:  # text after the last timestamp: it runs to the window's end
        out.append(Segment(opened if opened is not None else offset, offset + length,
                           tokenizer.decode(buf, skip_special_tokens=True).strip()))
    return [s for s in out if s.text]


def detect_language(backend: StepBackend, features: np.ndarray, audio: dict[str, Any], gen: dict) -> list[str]:
    """Per window, the language whose token the model finds likeliest after <|startoftranscript|>."""
    langs = audio["tokens"].get("languages") or {}
    if not langs:
        return ["en"] * features.shape[0]
    codes = list(langs)
    ids = np.array([langs[c] for c in codes])
    _, logits, _, _ = start(backend, [[int(audio["tokens"]["start"])]] * features.shape[0], gen, Timings(), features)
    return [codes[int(i)] for i in logits[:, ids].argmax(axis=1)]


def transcribe(backend: StepBackend, tokenizer: Any, samples: np.ndarray, cfg: GenerationConfig,
               language: str | None = None, task: str = "transcribe", timestamps: bool = False,
               batch_size: int = 8) -> Transcription:
    """Transcribe 16 kHz mono float samples (edgeseq.audio.load_audio makes them from a file)."""
    from ..audio import log_mel, windows

    audio, gen = backend.manifest.audio, backend.manifest.generation
    if not audio:
        raise InputError("this artifact is not a speech model", "transcribe with a Whisper artifact")
    if timestamps and cfg.num_beams > 1:
        raise UsageError("timestamps are decoded greedily (or sampled), not with beam search",
                         "drop --num-beams, or --timestamps")
    if batch_size < 1:
        raise UsageError(f"batch size must be at least 1, got {batch_size}", "for example --batch-size 8")
    if getattr(backend, "native", False):  # a native runtime (runtimes/native.py) takes one window at a time
        batch_size = 1
        if language is None and audio["tokens"].get("multilingual"):
            raise UsageError(f"engine {backend.engine} does not detect the language through edgeseq",
                             "pass --language, or use edgeseq's own engine (drop --engine)")
    t0 = time.perf_counter()
    rate, seconds = int(audio["sampling_rate"]), int(audio["chunk_seconds"])
    chunks = windows(samples, seconds=seconds, sampling_rate=rate)
    eos = min(gen.get("eos_token_ids") or [int(audio["tokens"]["start"])])
    clocks: list[Timings] = []
    feats_ms, segs, used = 0.0, [], None
    window_ids: dict[int, list[int]] = {}
    duration = len(samples) / rate
    for lo in range(0, len(chunks), batch_size):
        part = chunks[lo: lo + batch_size]
        t = time.perf_counter()
        features = np.stack([log_mel(c, n_mels=int(audio["n_mels"])) for _, c in part]).astype(np.float32)
        feats_ms += (time.perf_counter() - t) * 1e3
        langs = [language] * len(part)
        if language is None and audio["tokens"].get("multilingual"):
            langs = detect_language(backend, features, audio, gen)
        used = used or langs[0]
        for code in dict.fromkeys(langs):  # one decoder prompt length per batch: group rows by language
            rows = [i for i, c in enumerate(langs) if c == code]
            ids = prompt(audio["tokens"], code, task, timestamps)
            timings = Timings()
            if cfg.num_beams > 1:
                outs = [s[0] for s in beam_search(backend, [ids] * len(rows), cfg, gen, timings, features[rows])]
            else:
                rules = TimestampRules(audio, gen, cfg, len(ids)) if timestamps else None
                outs, timings = run(backend, [ids] * len(rows), cfg, gen, features=features[rows], rules=rules,
                                    samples=[part[r][1] for r in rows])
            clocks.append(timings)
            for r, out in zip(rows, outs):
                start_s, chunk = part[r]
                window_ids[lo + r] = out
                real = min(len(chunk) / rate, duration - start_s)  # the last window's padding is not audio
                segs += [Segment(min(s.start, duration), min(s.end, duration), s.text) for s in
                         segments(out, tokenizer, audio["tokens"], start_s, real, eos)]
    wall_ms = (time.perf_counter() - t0) * 1e3
    t = {"features_ms": feats_ms, **_clock(clocks), "total_ms": wall_ms,
         "real_time_factor": wall_ms / 1e3 / duration if duration > 0 else float("nan")}
    segs.sort(key=lambda s: s.start)
    if not audio["tokens"].get("multilingual"):
        used = "en"
    return Transcription(" ".join(s.text for s in segs).strip(), segs, language or used, duration,
                         [window_ids[i] for i in sorted(window_ids)], t)


def _clock(parts: list[Timings]) -> dict[str, float]:
    """The loop's clock over a transcription's batches: encoder time summed, TTFT of the first batch,
    decode rate = decode steps / decode time summed over batches (one window per batch: the usual rate)."""
    steps = sum(max(len(p.token_ms) - 1, 0) for p in parts)
    span = sum(p.token_ms[-1] - p.token_ms[0] for p in parts if len(p.token_ms) > 1) / 1e3
    return {"encode_ms": sum(p.encode_ms for p in parts), "ttft_ms": parts[0].ttft_ms if parts else float("nan"),
            "decode_tok_s": steps / span if span > 0 else float("nan"),
            "steps": float(sum(len(p.token_ms) for p in parts))}
