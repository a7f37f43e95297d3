"""Speculative decoding: a cheap proposer guesses tokens, the model checks them all in one step.

Each round, every row feeds its last chosen token and up to k proposed ones in one target step
(`StepBackend.verify`, logits after each of them). Greedy keeps the longest run of proposals that
equal the target's own argmax and adds the target's next token, so the output is plain greedy's,
token for token. Sampling accepts proposal x with probability min(1, p(x) / q(x)) and on a rejection
draws from the normalized max(0, p - q), which keeps the target's distribution p (q: the draft's
distribution, one-hot for a prompt lookup or a greedy draft).

Rows of a batch accept different numbers of proposals. Two ways keep their caches right:
- `realign` (decoder-only steps that read position_ids, `StepBackend.holes`): each row forgets its own
  rejected tokens (`trim_rows`); they stay as masked holes, or leave a paged row's blocks.
- `refeed` (every other cache: encoder-decoder slot positions, GroupQueryAttention, sliding windows):
  every row forgets down to the shortest row's accepted length, and a row that accepted more feeds
  its accepted tokens again next round in front of its proposals. A row's feed is capped at k + 1,
  so a row that runs ahead waits for the slowest one.
Proposers (`proposers.py`): prompt lookup, a draft artifact. k adapts to the measured acceptance and
costs (`AdaptiveK`).
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from ..errors import UsageError
from ..runtimes.base import StepBackend
from .config import GenerationConfig
from .loop import Timings, banned_ids, check_rows, first_banned, forced_last, forced_prefix, now, start, stop_ids
from .proposers import Proposer
from .search import distribution, draw, select

STRATEGIES = ("auto", "realign", "refeed")


@dataclass
class Speculation:
    """Acceptance statistics of one speculative generate() (every result carries them)."""

    proposer: str
    draft_tokens: int  # the most proposals a row is checked with in one step (k)
    strategy: str = ""  # realign | refeed (module docstring)
    target_steps: int = 0  # verify steps: one pass of the target each
    row_steps: int = 0  # sum over steps of the rows still generating
    proposed: int = 0  # proposals checked
    accepted: int = 0  # proposals the target kept
    emitted: int = 0  # tokens the verify steps produced (accepted + the target's own, per row and step)
    fed: int = 0  # token slots the verify steps fed, every row (batch x width)
    refed: int = 0  # of them, accepted tokens fed again (refeed) or filler after a shorter row's proposals

    @classmethod
    def total(cls, runs: list["Speculation"]) -> "Speculation":
        """The counts of several runs added up (a profile's timed repetitions)."""
        out = cls(runs[0].proposer, runs[0].draft_tokens, runs[0].strategy) if runs else cls("?", 0)
        counts = [f.name for f in fields(cls) if f.type == "int" and f.name != "draft_tokens"]
        for r in runs:
            for name in counts:
                setattr(out, name, getattr(out, name) + getattr(r, name))
        return out

    def as_dict(self) -> dict[str, Any]:
        rate = self.accepted / self.proposed if self.proposed else 0.0
        per = self.row_steps or 1
        return {"proposer": self.proposer, "draft_tokens": self.draft_tokens, "strategy": self.strategy,
                "target_steps": self.target_steps, "proposed": self.proposed, "accepted": self.accepted,
                "acceptance_rate": round(rate, 4), "mean_accepted": round(self.accepted / per, 3),
                "tokens_per_step": round(self.emitted / per, 3), "fed": self.fed, "refed": self.refed,
                "overhead_share": round(self.refed / self.fed, 4) if self.fed else 0.0}


class AdaptiveK:
    """How many tokens to propose next: the k that maximizes the expected tokens per second of a round,
    from what the rounds so far measured.

    A round keeps i + 1 tokens when it keeps i proposals; with a per-token acceptance a (the kept share
    of the proposals checked, rejections counted once) it yields (1 - a^(k+1)) / (1 - a) tokens on average.
    It costs one verify step of k + 1 tokens plus k proposals at the proposer's measured cost per token.
    Verify steps are timed per width; a width not yet timed is estimated from the nearest timed one as
    1 + slope (width - 1) (a step on a CPU reads the weights once; each extra token adds a little),
    so until a plain step has been timed, one every `probe` rounds is (a batch's steps grow with the
    width faster than one row's). k = 0 is a plain step: when proposing costs more than it gains,
    proposing stops, and every `probe` rounds one proposal refreshes the acceptance."""

    def __init__(self, most: int, slope: float = 0.06, probe: int = 8, decay: float = 0.8) -> None:
        self.most, self.slope, self.probe, self.decay = most, slope, probe, decay
        self.kept, self.missed = 1.0, 0.0  # decayed counts of kept and rejected proposals (a hopeful prior)
        self.times: dict[int, float] = {}  # verify seconds by width (decayed means)
        self.propose_s = 0.0  # the proposer's seconds per proposed token
        self.idle = 0  # rounds since the last proposal
        self.rounds = 0

    @property
    def rate(self) -> float:
        return self.kept / (self.kept + self.missed)

    def next(self) -> int:
        self.rounds += 1
        if 1 not in self.times and self.rounds % self.probe == 0:
            return 0  # time a plain step: the baseline every other width is weighed against
        best = max(range(self.most + 1), key=self.gain)
        if best == 0:
            self.idle += 1
            if self.idle >= self.probe:
                return 1
        return best

    def step_s(self, width: int) -> float:
        """Seconds a verify step of `width` tokens takes: timed, else scaled from the nearest timed width."""
        if width in self.times or not self.times:
            return self.times.get(width, 1 + self.slope * (width - 1))
        near = min(self.times, key=lambda w: abs(w - width))
        return self.times[near] * (1 + self.slope * (width - 1)) / (1 + self.slope * (near - 1))

    def gain(self, k: int) -> float:
        """Expected tokens per second of a round that proposes k."""
        a = min(self.rate, 0.999)
        tokens = (1 - a ** (k + 1)) / (1 - a)
        return tokens / (self.step_s(k + 1) + self.propose_s * k)

    def update(self, kept: int, rejected: int, longest: int, width: int, verify_s: float, propose_s: float) -> None:
        """One round: `kept` proposals kept and `rejected` rows that rejected one (over the batch), the
        longest row's `longest` proposals made in propose_s, a verify step of `width` tokens in verify_s."""
        old = self.times.get(width)
        self.times[width] = verify_s if old is None else self.decay * old + (1 - self.decay) * verify_s
        if not longest:
            return
        self.idle = 0
        self.propose_s = self.decay * self.propose_s + (1 - self.decay) * propose_s / longest
        self.kept = self.decay * self.kept + kept
        self.missed = self.decay * self.missed + rejected


def check(backend: StepBackend, cfg: GenerationConfig, strategy: str, batch: int) -> str:
    """The strategy for this request (module docstring); refuses what speculation does not cover."""
    backend.check_verify(batch)
    if cfg.num_beams > 1:
        raise UsageError("speculative decoding follows one sequence per row; beam search keeps several",
                         "drop num_beams, or drop speculate")
    if cfg.repetition_penalty != 1.0:
        raise UsageError("speculative decoding checks proposals against the model's own choice, which a repetition "
                         "penalty makes depend on every earlier token", "drop repetition_penalty, or drop speculate")
    if backend.manifest.audio:
        raise UsageError("speculative decoding does not cover speech models yet", "transcribe without speculate")
    if strategy not in STRATEGIES:
        raise UsageError(f"unknown speculation strategy '{strategy}'", f"use one of {', '.join(STRATEGIES)}")
    if strategy == "realign" and not backend.holes and batch > 1:
        raise UsageError("this artifact's cache cannot forget a different number of tokens per row",
                         "use strategy 'refeed' (or 'auto')")
    if strategy == "auto":
        strategy = "realign" if backend.holes else "refeed"
    return strategy


def steps(backend: StepBackend, rows: list[list[int]], cfg: GenerationConfig, gen: dict, timings: Timings,
          proposer: Proposer, draft_tokens: int = 5, stats: Speculation | None = None, strategy: str = "auto",
          halted: np.ndarray | None = None) -> Iterator[list[list[int]]]:
    """Yield each round's new tokens per row (a list per row; empty for a row that has stopped).

    The first round is the prompt's first token; each later round is one verify step. `halted` [B]
    bool, caller-owned, as in loop.steps. `stats` is filled in as the rounds run."""
    check_rows(backend, rows, cfg)
    if not isinstance(draft_tokens, int) or isinstance(draft_tokens, bool) or not 1 <= draft_tokens <= 64:
        raise UsageError(f"draft_tokens must be an integer from 1 to 64, got {draft_tokens!r}",
                         "for example draft_tokens=5 (--draft-tokens 5)")
    chosen = check(backend, cfg, strategy, len(rows))
    stats = stats if stats is not None else Speculation(proposer.name, draft_tokens)
    stats.strategy, stats.draft_tokens, stats.proposer = chosen, draft_tokens, proposer.name
    return _Rounds(backend, rows, cfg, gen, timings, proposer, draft_tokens, stats, chosen, halted).run()


class _Rounds:
    """One speculative request: the target's state, each row's sequence and what it has not cached."""

    def __init__(self, backend: StepBackend, rows: list[list[int]], cfg: GenerationConfig, gen: dict,
                 timings: Timings, proposer: Proposer, k: int, stats: Speculation, strategy: str,
                 halted: np.ndarray | None) -> None:
        self.backend, self.rows, self.cfg, self.gen, self.timings = backend, rows, cfg, gen, timings
        self.proposer, self.stats, self.realign, self.halted = proposer, stats, strategy == "realign", halted
        self.k = AdaptiveK(k)
        self.eos = set(stop_ids(cfg, gen)) if not cfg.ignore_eos else set()
        self.pad = int(gen.get("pad_token_id") or 0)
        self.rng = np.random.default_rng(cfg.seed)
        self.banned, self.last = banned_ids(cfg, gen), forced_last(cfg, gen)
        self.budget = cfg.max_new_tokens - len(forced_prefix(backend.manifest.kind, gen))

    def run(self) -> Iterator[list[list[int]]]:
        b, cfg = len(self.rows), self.cfg
        if self.budget < 1:  # a forced prefix took every new token
            return
        state, logits, history, t0 = start(self.backend, self.rows, self.gen, self.timings)
        # each row's decoder-side ids: the prompt (decoder-only, unpadded) or the start and forced ids
        seqs = [list(r) for r in self.rows] if self.backend.manifest.kind == "decoder-only" \
            else [list(h) for h in history.tolist()]
        first = self.last if self.budget == 1 and self.last is not None else None
        tokens = np.full(b, first, np.int64) if first is not None else \
            select(logits, cfg, self.rng, first_banned(cfg, self.gen))
        made = [0] * b
        done = [False] * b
        starts = [list(s) for s in seqs]  # the proposer starts from the ids before the first new token
        out = self._emit([[int(t)] for t in tokens], seqs, made, done)
        pending = [[int(t)] for t in tokens]  # chosen, not yet in the target's cache
        self.timings.token_ms.append((now() - t0) * 1e3)
        yield out
        self.proposer.start(self.rows, starts)  # after the first token: a draft's prefill is not in the TTFT
        while True:
            if self.halted is not None:
                done = [d or bool(h) for d, h in zip(done, self.halted)]
            if all(done):
                break
            out = self._round(state, seqs, pending, made, done)
            stamp = (now() - t0) * 1e3
            self.timings.token_ms.extend([stamp] * max(len(o) for o in out))
            yield out
        self.timings.e2e_ms = (now() - t0) * 1e3

    def _round(self, state: Any, seqs: list[list[int]], pending: list[list[int]], made: list[int],
               done: list[bool]) -> list[list[int]]:
        b, k, stats = len(seqs), self.k.next(), self.stats
        t = now()
        live = [i for i in range(b) if not done[i]]
        # at most k proposals a row, none past its budget (the target's own token ends every round), and a
        # refeed row's whole feed (re-fed + proposed) capped at k + 1
        want = [0 if done[i] else max(0, min(k, self.budget - made[i] - 1, k + 1 - len(pending[i]))) for i in range(b)]
        drafts, q = self.proposer.propose(seqs, want, self.cfg, self.rng) if any(want) else ([[]] * b, [None] * b)
        proposed_at = now()
        width = max(len(pending[i]) + len(drafts[i]) for i in range(b))
        feed = np.full((b, width), self.pad, np.int64)
        for i in range(b):
            row = pending[i] + drafts[i] if not done[i] else [self.pad]
            feed[i, :len(row)] = row
            feed[i, len(row):] = row[-1]  # filler: never accepted (acceptance stops at the row's proposals)
        logits = self.backend.verify(state, feed)
        accepted, new = self._judge(logits, pending, drafts, q, made, done)
        stats.target_steps += 1
        stats.row_steps += len(live)
        stats.proposed += sum(len(drafts[i]) for i in live)
        stats.accepted += sum(accepted[i] for i in live)
        stats.fed += b * width
        kept = [len(pending[i]) + accepted[i] for i in range(b)]  # fed tokens each row keeps
        if self.realign:
            stats.refed += sum(width - len(pending[i]) - len(drafts[i]) for i in live)
            self.backend.trim_rows(state, np.array([width - (kept[i] if not done[i] else 0) for i in range(b)]))
        else:
            common = min(kept[i] for i in live)
            stats.refed += sum(width - len(drafts[i]) - 1 for i in live)
            self.backend.trim(state, width - common)
        # the step's cost: verify and rewind (a cache form that copies to rewind pays it per round)
        self.k.update(sum(accepted[i] for i in live), sum(accepted[i] < len(drafts[i]) for i in live),
                      max(len(drafts[i]) for i in live), width, now() - proposed_at, proposed_at - t)
        outs = [drafts[i][:accepted[i]] + [new[i]] if not done[i] else [] for i in range(b)]
        for i in range(b):  # what each row has chosen and the target has not cached
            if done[i]:
                pending[i] = [self.pad]
            elif self.realign:
                pending[i] = [new[i]]
            else:
                pending[i] = (pending[i] + drafts[i][:accepted[i]])[common:] + [new[i]]
        self.proposer.accepted([accepted[i] if not done[i] else 0 for i in range(b)])
        out = self._emit(outs, seqs, made, done)
        stats.emitted += sum(len(outs[i]) for i in live)
        return out

    def _judge(self, logits: np.ndarray, pending: list[list[int]], drafts: list[list[int]],
               q: list[np.ndarray | None], made: list[int], done: list[bool]) -> tuple[list[int], list[int]]:
        """Per row: how many proposals the target keeps, and its own next token after them."""
        b = len(drafts)
        accepted, new = [0] * b, [self.pad] * b
        greedy = None if self.cfg.do_sample else \
            select(logits.reshape(-1, logits.shape[-1]), self.cfg, self.rng, self.banned).reshape(b, -1)
        for i in range(b):
            if done[i]:
                continue
            at = len(pending[i]) - 1  # logits[i, at] follow the row's last chosen token
            d = drafts[i]
            if greedy is not None:
                a = 0
                while a < len(d) and greedy[i, at + a] == d[a]:
                    a += 1
                token = int(greedy[i, at + a])
            else:
                a, token = accept_sampled(distribution(logits[i, at:at + len(d) + 1], self.cfg, self.banned), d, q[i],
                                          self.rng)
            accepted[i] = a
            if self.last is not None and made[i] + a == self.budget - 1:
                token = self.last  # the forced last token, as the plain loop ends a full-length row
            new[i] = token
        return accepted, new

    def _emit(self, outs: list[list[int]], seqs: list[list[int]], made: list[int], done: list[bool]) -> list[list[int]]:
        """Cut each row's new tokens at its stop id or budget; record them in its sequence."""
        for i, toks in enumerate(outs):
            if done[i]:
                outs[i] = []
                continue
            for n, t in enumerate(toks):
                if t in self.eos or made[i] + n + 1 >= self.budget:
                    del toks[n + 1:]
                    done[i] = True
                    break
            made[i] += len(toks)
            seqs[i] += toks
        return outs


def accept_sampled(p: np.ndarray, d: list[int], q: np.ndarray | None, rng: np.random.Generator) -> tuple[int, int]:
    """Rejection sampling over one row's proposals d: p [len(d) + 1, V] the target's distributions after
    the row's last token and after each proposal, q [len(d), V] the draft's (None: one-hot on d).
    Returns (proposals kept, the next token); the tokens come out distributed as p."""
    for j, x in enumerate(d):
        qx = 1.0 if q is None else float(q[j, x])
        if rng.random() * qx < p[j, x]:  # u < p(x) / q(x), without dividing by a zero q
            continue
        rest = p[j].copy()
        if q is None:
            rest[x] = 0.0
        else:
            rest = np.maximum(rest - q[j], 0.0)
        total = float(rest.sum())
        # total 0: p equals q here, so x was kept with probability 1 and this is not reached; guard anyway
        return j, int(draw((rest / total)[None] if total > 0 else p[j][None], rng)[0])
    return len(d), int(draw(p[len(d)][None], rng)[0])


def run(backend: StepBackend, rows: list[list[int]], cfg: GenerationConfig, gen: dict, proposer: Proposer,
        draft_tokens: int = 5, strategy: str = "auto",
        halt: Callable[[int, int], bool] | None = None) -> tuple[list[list[int]], Timings, Speculation]:
    """Run to the end: the new ids per row (cut at and including the stop token), the clock, the statistics.
    `halt(row, token)` as in loop.run."""
    timings = Timings()
    stats = Speculation(proposer.name, draft_tokens)
    halted = np.zeros(len(rows) if isinstance(rows, (list, tuple)) else 0, bool) if halt else None
    out: list[list[int]] = [[] for _ in rows]
    stopped = [False] * len(rows)
    for new in steps(backend, rows, cfg, gen, timings, proposer, draft_tokens, stats, strategy, halted):
        for i, toks in enumerate(new):
            for t in toks:
                if stopped[i]:
                    break
                out[i].append(t)
                if halt is not None and halt(i, t):
                    stopped[i] = halted[i] = True  # type: ignore[index]
    return out, timings, stats
