"""Beam search and diverse (group) beam search over the backend's steps, vectorized over the batch.

Semantics follow the usual formulation (and transformers' implementation, so outputs match it
token for token): per step and group, the top (1 + #EOS, at least 2) x group-size continuations
are ranked by accumulated log-probability; those ending in EOS (or reaching max length) that rank
within the top group-size become finished hypotheses scored sum log p / length ** length_penalty,
the best unfinished ones continue. Diverse beam search (Vijayakumar et al., 2016) lowers a
group's log-probabilities by diversity_penalty x the number of times earlier groups picked each
token at this step (Hamming diversity).
"""
from __future__ import annotations

import numpy as np

from ..runtimes.base import StepBackend
from .config import GenerationConfig
from .loop import Timings, banned_ids, check_rows, first_banned, forced_last, forced_prefix, now, start, stop_ids
from .search import log_softmax, penalize_repeats

NEG = -1.0e9


def _top(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest per row, best first; ties go to the lower index."""
    return np.argsort(-scores, axis=-1, kind="stable")[:, :k]


def beam_search(backend: StepBackend, rows: list[list[int]], cfg: GenerationConfig, gen: dict,
                timings: Timings, features: np.ndarray | None = None) -> list[list[list[int]]]:
    """Returns, per prompt, cfg.num_return_sequences token lists (best first). `features`: a speech
    model's encoder input, `rows` then its decoder prompts (loop.start)."""
    check_rows(backend, rows, cfg, features)
    b, k, groups = len(rows), cfg.num_beams, cfg.num_beam_groups
    kg = k // groups
    eos = stop_ids(cfg, gen)
    banned, first, last = banned_ids(cfg, gen), first_banned(cfg, gen), forced_last(cfg, gen)
    state, logits, history, t0 = start(backend, rows, gen, timings, features)
    # a forced first token counts as generated (length penalty, max_new_tokens), as in transformers
    prompt_len = history.shape[1] - len(forced_prefix(backend.manifest.kind, gen))
    max_len = prompt_len + cfg.max_new_tokens
    tile = np.repeat(np.arange(b), k)  # every prompt's state copied to its k beams
    backend.reorder(state, tile, cross=True)
    logits, history = logits[tile], history[tile]

    keep = max(2, 1 + len(eos)) * kg
    run_scores = np.full((b, groups, kg), NEG, np.float32)
    run_scores[:, :, 0] = 0.0  # one live beam per group at the start: the others are copies
    run_seqs = np.zeros((b, groups, kg, 0), np.int64)
    fin_scores = np.full((b, groups, kg), NEG, np.float32)
    fin_seqs = np.zeros((b, groups, kg, cfg.max_new_tokens), np.int64)
    fin_lens = np.zeros((b, groups, kg), np.int64)
    fin_done = np.zeros((b, groups, kg), bool)
    improvable = np.ones((b, groups), bool)
    cur = begin = history.shape[1]
    while True:
        logp = log_softmax(logits)
        if cfg.repetition_penalty != 1.0:
            logp = penalize_repeats(logp, history, cfg.repetition_penalty)
        no = first if cur == begin else banned  # the first choice also avoids the begin-suppressed ids
        if no:
            logp[:, no] = NEG
        if last is not None and cur + 1 >= max_len:  # the last step: only the forced end (its score: 0)
            logp = np.full_like(logp, NEG)
            logp[:, last] = 0.0
        logp = logp.reshape(b, groups, kg, -1)
        vocab = logp.shape[-1]
        chosen = np.zeros((b, vocab), np.float32)  # tokens earlier groups picked at this step
        src_all = np.zeros((b, groups, kg), np.int64)
        tok_all = np.zeros((b, groups, kg), np.int64)
        all_hit = True
        for g in range(groups):
            lp = logp[:, g] - (cfg.diversity_penalty * chosen[:, None, :] if g and cfg.diversity_penalty else 0.0)
            acc = (lp + run_scores[:, g, :, None]).reshape(b, kg * vocab)
            idx = _top(acc, keep)
            top = np.take_along_axis(acc, idx, axis=1)  # [B, keep]
            src, tok = idx // vocab, idx % vocab
            hit = np.isin(tok, eos) | (cur + 1 >= max_len)
            all_hit &= bool(hit.all())
            # the best continuations that did not finish go on
            live = _top(top + hit * NEG, kg)
            run_scores[:, g] = np.take_along_axis(top + hit * NEG, live, axis=1)
            src_all[:, g], tok_all[:, g] = np.take_along_axis(src, live, 1), np.take_along_axis(tok, live, 1)
            # finished: only candidates ranked within the top kg, length-normalised
            score = top / float(cur + 1 - prompt_len) ** cfg.length_penalty
            full = fin_done[:, g].all(axis=1, keepdims=True) & (cfg.early_stopping is True)
            ok = hit & (np.arange(keep) < kg)[None] & ~full & improvable[:, g, None]
            score = np.where(ok, score, score + NEG * 3)  # below any real or empty slot
            cand = np.concatenate([run_seqs[:, g][np.arange(b)[:, None], src], tok[..., None]], axis=-1)
            cand_full = np.zeros((b, keep, cfg.max_new_tokens), np.int64)
            cand_full[:, :, : cand.shape[-1]] = cand
            merged = np.concatenate([fin_scores[:, g], score], axis=1)
            best = _top(merged, kg)
            fin_scores[:, g] = np.take_along_axis(merged, best, 1)
            fin_seqs[:, g] = np.take_along_axis(np.concatenate([fin_seqs[:, g], cand_full], 1), best[..., None], 1)
            fin_lens[:, g] = np.take_along_axis(
                np.concatenate([fin_lens[:, g], np.full((b, keep), cand.shape[-1])], 1), best, 1)
            fin_done[:, g] = np.take_along_axis(np.concatenate([fin_done[:, g], ok], 1), best, 1)
            np.add.at(chosen, (np.repeat(np.arange(b), kg), tok_all[:, g].reshape(-1)), 1.0)
        run_seqs = np.concatenate([np.take_along_axis(run_seqs, src_all[..., None], 2), tok_all[..., None]], -1)
        timings.token_ms.append((now() - t0) * 1e3)
        cur += 1
        # can a running beam still beat the worst finished one? (length bound as in the classic search)
        best_len = (max_len if cfg.early_stopping == "never" and cfg.length_penalty > 0 else cur) - prompt_len
        best_possible = run_scores[:, :, 0] / float(best_len) ** cfg.length_penalty
        worst = np.where(fin_done.all(axis=2), fin_scores.min(axis=2), NEG)
        improvable &= best_possible > worst
        open_beam = not (fin_done.all() and cfg.early_stopping is True)
        if not improvable.any() or not open_beam or all_hit:
            break
        # continue: reorder caches to the surviving beams and feed their new tokens
        beam = (np.arange(b)[:, None, None] * k + np.arange(groups)[None, :, None] * kg + src_all).reshape(-1)
        backend.reorder(state, beam)
        history = np.concatenate([history[beam], tok_all.reshape(-1, 1)], axis=1)
        logits = backend.decode(state, tok_all.reshape(-1))
    timings.e2e_ms = (now() - t0) * 1e3
    out: list[list[list[int]]] = []
    for i in range(b):  # every group's finished hypotheses compete for the returned sequences
        scores, seqs, lens = fin_scores[i].reshape(-1), fin_seqs[i].reshape(k, -1), fin_lens[i].reshape(-1)
        order = np.argsort(-scores, kind="stable")[: cfg.num_return_sequences]
        out.append([seqs[j, : lens[j]].tolist() for j in order])
    return out
