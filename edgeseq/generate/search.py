"""Next-token selection over logits [B, V], written once for every engine (numpy only)."""
from __future__ import annotations

import numpy as np

from .config import GenerationConfig


def penalize_repeats(scores: np.ndarray, history: np.ndarray, penalty: float) -> np.ndarray:
    """CTRL's repetition penalty: a score of a token already in the row's history [B, L] is divided
    by `penalty` when positive, multiplied when negative (so it always drops for penalty > 1)."""
    rows = np.arange(scores.shape[0])[:, None]
    seen = scores[rows, history]
    out = scores.copy()
    out[rows, history] = np.where(seen < 0, seen * penalty, seen / penalty)
    return out


def select(logits: np.ndarray, cfg: GenerationConfig, rng: np.random.Generator,
           banned: list[int] | None = None, history: np.ndarray | None = None) -> np.ndarray:
    """Greedy argmax, or a sample after temperature, top-k and top-p filtering. Returns int64 [B].

    history [B, L]: the ids so far (prompt included), for the repetition penalty."""
    penalize = cfg.repetition_penalty != 1.0 and history is not None
    if not (cfg.do_sample or penalize):  # greedy, the per-token common case: no copy of the logits
        best = logits.argmax(axis=-1).astype(np.int64)
        # a banned id (forced lengths ban the stop ids) that is not any row's first maximum changes nothing:
        # masking it keeps every row's first maximum where it is. Only when one is, mask a copy (below).
        # Copying [B, V] every step to mask is a visible share of a fast decode step.
        if not banned or not set(best.tolist()) & set(banned):
            return best
    if penalize:
        logits = penalize_repeats(logits, history, cfg.repetition_penalty)  # type: ignore[arg-type]
    if not cfg.do_sample:
        masked = logits.astype(np.float32, copy=True)
        if banned:
            masked[:, banned] = -np.inf
        return masked.argmax(axis=-1).astype(np.int64)
    return draw(distribution(logits, cfg, banned), rng)


def distribution(logits: np.ndarray, cfg: GenerationConfig, banned: list[int] | None = None) -> np.ndarray:
    """The probabilities a sampling step draws from [N, V]: banned ids out, then temperature, top-k and
    top-p filtering (speculative sampling's rejection test reads them too)."""
    logits = logits.astype(np.float32, copy=True)
    if banned:
        logits[:, banned] = -np.inf
    logits /= cfg.temperature
    if cfg.top_k and cfg.top_k < logits.shape[-1]:
        kth = np.partition(logits, -cfg.top_k, axis=-1)[:, -cfg.top_k][:, None]
        logits = np.where(logits < kth, -np.inf, logits)
    probs = _softmax(logits)
    if cfg.top_p < 1.0:
        order = np.argsort(-probs, axis=-1)
        sorted_p = np.take_along_axis(probs, order, axis=-1)
        # keep the smallest prefix whose mass reaches top_p (the token that crosses it stays in)
        drop_sorted = np.cumsum(sorted_p, axis=-1) - sorted_p >= cfg.top_p
        drop = np.zeros_like(drop_sorted)
        np.put_along_axis(drop, order, drop_sorted, axis=-1)
        probs = np.where(drop, 0.0, probs)
        probs /= probs.sum(axis=-1, keepdims=True)
    return probs


def draw(probs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One id per row of probs [N, V] (inverse CDF of one uniform draw each). int64 [N]."""
    u = rng.random((probs.shape[0], 1))
    return np.minimum((np.cumsum(probs, axis=-1) < u).sum(axis=-1), probs.shape[-1] - 1).astype(np.int64)


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def log_softmax(x: np.ndarray, dtype: type = np.float32) -> np.ndarray:
    """Log-probabilities over the last axis, computed in `dtype` (float32 for search; float64 where small
    differences between two distributions are the result, as in quality/metrics.py's KL divergence)."""
    x = x.astype(dtype)
    m = x.max(axis=-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=-1, keepdims=True))
