"""The generation loop over a backend's steps, with its clock (DESIGN.md "Timing").

Clock starts when the loop receives token ids (tokenization is timed on its own):
  encode_ms  encoder + cross-attention cache (encoder-decoder)
  prefill_ms until the prompt's logits exist;  ttft_ms until the first new token id exists
  token_ms   the time each new token id exists, from the same start;  e2e_ms the whole loop
"""
from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import EdgeseqError, InputError, UsageError
from ..resources import check_budget, check_fits, estimate, kv_bytes
from ..runtimes.base import State, StepBackend
from .config import GenerationConfig
from .search import select

now = time.perf_counter


@dataclass
class Timings:
    tokenize_ms: float = 0.0
    encode_ms: float = 0.0
    prefill_ms: float = 0.0
    token_ms: list[float] = field(default_factory=list)  # per new token, from the clock's start
    e2e_ms: float = 0.0

    @property
    def ttft_ms(self) -> float:
        return self.token_ms[0] if self.token_ms else float("nan")

    @property
    def tpot_ms(self) -> float:
        gaps = [b - a for a, b in zip(self.token_ms, self.token_ms[1:])]
        return statistics.median(gaps) if gaps else float("nan")

    @property
    def decode_tok_s(self) -> float:
        n = len(self.token_ms)
        span = (self.token_ms[-1] - self.token_ms[0]) / 1e3 if n > 1 else 0.0
        return (n - 1) / span if span > 0 else float("nan")

    def as_dict(self) -> dict[str, float]:
        return dict(tokenize_ms=self.tokenize_ms, encode_ms=self.encode_ms, prefill_ms=self.prefill_ms,
                    ttft_ms=self.ttft_ms, tpot_ms=self.tpot_ms, decode_tok_s=self.decode_tok_s, e2e_ms=self.e2e_ms)


@dataclass
class Request:
    """Token ids for one batch: rows of prompt ids (already tokenized)."""

    rows: list[list[int]]


def stop_ids(cfg: GenerationConfig, gen: dict) -> list[int]:
    """The ids that end a row: the config's, else the artifact's EOS ids."""
    return list(gen.get("eos_token_ids") or []) if cfg.stop_token_ids is None else list(cfg.stop_token_ids)


def banned_ids(cfg: GenerationConfig, gen: dict) -> list[int] | None:
    """Ids a run never chooses: the model's suppressed ids (generation.suppress_token_ids: Marian's
    pad, from its bad_words_ids) and, in a forced-length run (ignore_eos), the stop ids."""
    ids = set(gen.get("suppress_token_ids") or [])
    if cfg.ignore_eos:
        ids |= set(stop_ids(cfg, gen))
    return sorted(ids) or None


def first_banned(cfg: GenerationConfig, gen: dict) -> list[int] | None:
    """Ids the first chosen token may not be: the banned ids and generation.begin_suppress_token_ids
    (Whisper: a blank or an immediate end), as transformers' begin-suppress rule."""
    ids = set(banned_ids(cfg, gen) or []) | set(gen.get("begin_suppress_token_ids") or [])
    return sorted(ids) or None


def forced_last(cfg: GenerationConfig, gen: dict) -> int | None:
    """The id a run that reaches max_new_tokens ends with (generation.forced_eos_token_id: BART,
    mBART, Marian), as transformers forces it; none in a forced-length run (ignore_eos)."""
    forced = gen.get("forced_eos_token_id")
    return None if forced is None or cfg.ignore_eos else int(forced)


def check_ids(rows: Any, vocab: int) -> None:
    """Prompt ids, once per request on every engine: rows of integers in [0, vocab). Generated ids are
    argmax / sample indices over the logits, so they are in range by construction."""
    if not isinstance(rows, (list, tuple)) or not rows:
        raise InputError(f"token ids must be a non-empty list of rows, got {type(rows).__name__}",
                         "pass [[id, id, ...], ...], e.g. [model.encode('Hello')]")
    for r in rows:
        if not isinstance(r, (list, tuple, np.ndarray)) or len(r) == 0:
            raise InputError("empty prompt" if isinstance(r, (list, tuple, np.ndarray)) else
                             f"a row of token ids must be a list, got {type(r).__name__}",
                             "pass at least one token of text")
        for t in r.tolist() if isinstance(r, np.ndarray) else r:
            if isinstance(t, (bool, np.bool_)) or not isinstance(t, (int, np.integer)) or not 0 <= t < vocab:
                raise InputError(f"token id {t!r} is not in this model's vocabulary (integers 0..{vocab - 1})",
                                 "pass ids from this artifact's tokenizer (model.encode)")


def check_rows(backend: StepBackend, rows: list[list[int]], cfg: GenerationConfig,
               features: np.ndarray | None = None) -> None:
    m = backend.manifest
    limit = int(m.dims["max_positions"])
    check_ids(rows, int(m.dims["vocab_size"]))
    longest = max(len(r) for r in rows)
    if m.audio or features is not None:
        return _check_audio(m, rows, cfg, features)
    need = longest + cfg.max_new_tokens if m.kind == "decoder-only" else max(longest, cfg.max_new_tokens + 1)
    if need > limit:
        raise InputError(f"prompt of {longest} tokens + {cfg.max_new_tokens} new tokens exceeds the model's "
                         f"maximum of {limit} positions", "shorten the prompt or lower --max-new-tokens")
    check_fits(kv_bytes(m, len(rows), longest, cfg.max_new_tokens, cfg.num_beams),
               f"the KV cache of {len(rows)} x {cfg.num_beams} rows of {longest} + {cfg.max_new_tokens} tokens",
               "use a smaller batch, fewer beams or shorter lengths")
    budget = backend.options.max_memory_mb
    if budget is not None:
        check_budget(estimate(m, backend.engine, len(rows), longest, cfg.max_new_tokens, cfg.num_beams), budget,
                     f"{len(rows)} x {cfg.num_beams} rows of {longest} + {cfg.max_new_tokens} tokens on "
                     f"{backend.engine}",
                     "raise --max-memory (max_memory_mb), or use a smaller batch, fewer beams or shorter lengths")


def decoder_room(m: Any) -> int:
    """The decoder positions a speech request's prompt and new tokens share: the model's, or a static
    artifact's cache slots + 1 where fewer (the last token is chosen, never fed)."""
    limit = int(m.dims["max_positions"])
    return min(limit, int(m.static["cache_length"]) + 1) if m.static else limit


def _check_audio(m: Any, rows: list[list[int]], cfg: GenerationConfig, features: np.ndarray | None) -> None:
    """A speech model's request: one window of features per row of decoder prompt ids (generate/speech.py)."""
    if not m.audio or features is None:
        raise InputError("this artifact's encoder reads audio features, not token ids" if m.audio else
                         "audio features given to a model whose encoder reads token ids",
                         "use model.transcribe(audio) / edgeseq transcribe" if m.audio else "pass a text prompt")
    want = (len(rows), int(m.audio["n_mels"]), int(m.audio["frames"]))
    if not isinstance(features, np.ndarray) or features.shape != want:
        got = features.shape if isinstance(features, np.ndarray) else type(features).__name__
        raise InputError(f"audio features must be an array {list(want)} (rows, mel bins, frames), got {got}",
                         "make them with edgeseq.audio (model.transcribe does)")
    if len({len(r) for r in rows}) > 1:
        raise InputError("the decoder prompts of one batch of audio must have one length",
                         "transcribe with one language and task per call")
    room = decoder_room(m)
    if len(rows[0]) + cfg.max_new_tokens > room:
        raise InputError(f"a prompt of {len(rows[0])} tokens + {cfg.max_new_tokens} new tokens exceeds the {room} "
                         "decoder positions this artifact has" + (" (its static cache)" if m.static else ""),
                         f"lower --max-new-tokens to {room - len(rows[0])}"
                         + (", or re-export with a larger --max-output" if m.static else ""))


def forced_prefix(kind: str, gen: dict) -> list[int]:
    """The ids an encoder-decoder's decoder is fed after its start token before it chooses any: a
    forced first token (generation.forced_bos_token_id: BART-CNN's BOS, mBART-50's language code).
    As in transformers it counts against max_new_tokens; it is not returned. Manifests written
    before the field have none."""
    forced = gen.get("forced_bos_token_id")
    return [int(forced)] if kind == "encoder-decoder" and forced is not None else []


def start(backend: StepBackend, rows: list[list[int]], gen: dict, timings: Timings,
          features: np.ndarray | None = None) -> tuple[State, np.ndarray, np.ndarray, float]:
    """Encode (encoder-decoder) and prefill a batch of prompts on the clock started here.

    Returns the state, next-token logits [B, V], the decoder-side ids so far [B, L] (the padded
    prompt, or the decoder start token and its forced prefix) and the clock's start. A speech model
    (`features` [B, n_mels, frames]): the encoder reads the features, `rows` are the decoder prompts."""
    b, pad = len(rows), int(gen.get("pad_token_id") or 0)
    t0 = now()
    state = backend.new_state(b)
    if features is not None:
        backend.encode_audio(state, features)
        timings.encode_ms = (now() - t0) * 1e3
        history = np.array(rows, np.int64)
        logits = backend.prefill(state, history)
    elif backend.manifest.kind == "decoder-only":
        ids, mask = _pad(rows, pad, left=True)
        logits = backend.prefill(state, ids, mask)
        history = ids
    else:
        ids, mask = _pad(rows, pad, left=False)
        backend.encode(state, ids, mask)
        timings.encode_ms = (now() - t0) * 1e3
        history = np.full((b, 1), int(gen["decoder_start_token_id"]), np.int64)
        logits = backend.prefill(state, history)
        for t in forced_prefix(backend.manifest.kind, gen):  # one decode each: static decoders take one token a step
            logits = backend.decode(state, np.full(b, t, np.int64))
            history = np.concatenate([history, np.full((b, 1), t, np.int64)], axis=1)
    timings.prefill_ms = (now() - t0) * 1e3
    return state, logits, history, t0


class TimeLimitError(EdgeseqError):
    """A generation that ran past its deadline (profiling sweeps: --time-limit)."""

    exit_code = 12


Rules = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (logits [B, V], ids so far [B, L]) -> logits


def steps(backend: StepBackend, rows: list[list[int]], cfg: GenerationConfig, gen: dict,
          timings: Timings, deadline: float | None = None, halted: np.ndarray | None = None,
          features: np.ndarray | None = None, rules: Rules | None = None,
          samples: list[np.ndarray] | None = None) -> Iterator[np.ndarray]:
    """Yield each step's new tokens [B] (pad for rows that already stopped) until every row stops.

    `gen` is the manifest's generation section (eos ids, pad id, decoder start id). `halted` [B] bool,
    caller-owned: rows the caller marks True while holding a step's tokens stop there (stop strings).
    `features`: a speech model's encoder input (see `start`). `rules`: a caller's constraint on the
    logits before each choice, given the decoder-side ids so far (Whisper's timestamp rules).
    `samples`: per row, the audio window `features` were made from (for a native runtime that computes
    its own features; edgeseq's engines read the features). Rows are checked when this is called."""
    check_rows(backend, rows, cfg, features)
    if getattr(backend, "native", False):  # a native runtime runs its own loop (runtimes/native.py)
        if rules is not None:
            raise UsageError(f"engine {backend.engine} does not take Whisper's timestamp rules from edgeseq",
                             "transcribe without --timestamps, or use edgeseq's own engine (drop --engine)")
        return backend.steps(rows, cfg, gen, timings, deadline, halted, features, samples)  # type: ignore[attr-defined, no-any-return]
    return _steps(backend, rows, cfg, gen, timings, deadline, halted, features, rules)


def _steps(backend: StepBackend, rows: list[list[int]], cfg: GenerationConfig, gen: dict,
           timings: Timings, deadline: float | None, halted: np.ndarray | None,
           features: np.ndarray | None, rules: Rules | None) -> Iterator[np.ndarray]:
    eos = stop_ids(cfg, gen)
    pad = int(gen.get("pad_token_id") or 0)
    rng = np.random.default_rng(cfg.seed)
    banned, first, last = banned_ids(cfg, gen), first_banned(cfg, gen), forced_last(cfg, gen)
    b = len(rows)
    state, logits, history, t0 = start(backend, rows, gen, timings, features)
    done = np.zeros(b, bool)
    track = cfg.repetition_penalty != 1.0 or rules is not None
    budget = cfg.max_new_tokens - len(forced_prefix(backend.manifest.kind, gen))
    for i in range(budget):
        if rules is not None:
            logits = rules(logits, history)
        if last is not None and i == budget - 1:
            tokens = np.full(b, last, np.int64)
        else:
            tokens = select(logits, cfg, rng, first if i == 0 else banned, history if track else None)
        tokens = np.where(done, pad, tokens)
        if track:
            history = np.concatenate([history, tokens[:, None]], axis=1)
        timings.token_ms.append((now() - t0) * 1e3)
        if eos and not cfg.ignore_eos:
            done |= np.isin(tokens, eos)
        yield tokens
        if halted is not None:
            done |= halted
        if done.all() or i == budget - 1:
            break
        if deadline is not None and now() > deadline:
            raise TimeLimitError(f"generation passed its time limit after {i + 1} tokens",
                                 "raise --time-limit or profile shorter lengths")
        logits = backend.decode(state, tokens)
    timings.e2e_ms = (now() - t0) * 1e3


def _pad(rows: list[list[int]], pad: int, left: bool) -> tuple[np.ndarray, np.ndarray]:
    width = max(len(r) for r in rows)
    ids = np.full((len(rows), width), pad, np.int64)
    mask = np.zeros((len(rows), width), np.int64)
    for i, r in enumerate(rows):
        sl = slice(width - len(r), width) if left else slice(0, len(r))
        ids[i, sl], mask[i, sl] = r, 1
    return ids, mask


def run(backend: StepBackend, rows: list[list[int]], cfg: GenerationConfig, gen: dict,
        on_tokens: Callable[[np.ndarray], None] | None = None,
        deadline: float | None = None,
        halt: Callable[[int, int], bool] | None = None, features: np.ndarray | None = None,
        rules: Rules | None = None, samples: list[np.ndarray] | None = None) -> tuple[list[list[int]], Timings]:
    """Run the loop to the end; returns the new ids per row (cut at and including the stop token).

    `halt(row, token)`, called for each row's new token that is not a stop id, returns True to end
    that row there (the token is kept): the API's stop strings."""
    timings = Timings()
    halted = np.zeros(len(rows) if isinstance(rows, (list, tuple)) else 0, bool) if halt else None
    loop = steps(backend, rows, cfg, gen, timings, deadline, halted, features, rules, samples)  # checks the rows
    out: list[list[int]] = [[] for _ in rows]
    stopped = [False] * len(rows)
    eos = set(stop_ids(cfg, gen))
    for tokens in loop:
        for i, t in enumerate(tokens.tolist()):
            if not stopped[i]:
                out[i].append(t)
                stopped[i] = (t in eos) and not cfg.ignore_eos
                if halt is not None and not stopped[i] and halt(i, t):
                    stopped[i] = halted[i] = True  # type: ignore[index]
        if on_tokens:
            on_tokens(tokens)
    return out, timings
