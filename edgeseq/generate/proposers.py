"""Proposers for speculative decoding (speculate.py): what a row's next tokens probably are.

`PromptLookup` copies what followed the latest earlier occurrence of the row's last n tokens, in the
prompt (an encoder-decoder's input too) or the text so far: no second model, and it pays off where the
output repeats the input (summaries, rewrites, extraction). `DraftModel` runs a cheaper artifact with
the same tokenizer (a smaller model, or the same model at lower precision) a few steps ahead.
`LookupThenDraft` takes a lookup's proposal where three tokens or more match, else the draft's.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..runtimes.base import State, StepBackend
from .config import GenerationConfig
from .loop import Timings, banned_ids, start
from .search import distribution, draw, select

Proposals = tuple[list[list[int]], list[np.ndarray | None]]  # tokens per row; their draft distributions (None: one-hot)


class Proposer(ABC):
    name = "?"

    @abstractmethod
    def start(self, rows: list[list[int]], seqs: list[list[int]]) -> None:
        """A new request: its prompt rows (an encoder-decoder's encoder input) and each row's decoder-side ids."""

    @abstractmethod
    def propose(self, seqs: list[list[int]], want: list[int], cfg: GenerationConfig,
                rng: np.random.Generator) -> Proposals:
        """Up to want[i] tokens to follow seqs[i] (each row's ids so far), per row."""

    def accepted(self, counts: list[int]) -> None:
        """How many of the last proposals each row kept (a proposer with a cache forgets the rest)."""


class PromptLookup(Proposer):
    """Match the row's last n tokens (n from `longest` down to `shortest`) against its earlier text and
    propose what followed the latest match."""

    name = "lookup"

    def __init__(self, longest: int = 3, shortest: int = 1) -> None:
        self.longest, self.shortest = longest, shortest
        self.context: list[list[int]] = []

    def start(self, rows: list[list[int]], seqs: list[list[int]]) -> None:
        # an encoder-decoder's output copies from its input, which its decoder-side ids do not hold
        self.context = [[] if r == s[:len(r)] else list(r) for r, s in zip(rows, seqs)]

    def propose(self, seqs: list[list[int]], want: list[int], cfg: GenerationConfig,
                rng: np.random.Generator) -> Proposals:
        out = [self.lookup(self.context[i] + seqs[i], n) if n else [] for i, n in enumerate(want)]
        return out, [None] * len(out)

    def lookup(self, text: list[int], k: int) -> list[int]:
        ids = np.asarray(text)
        for n in range(min(self.longest, len(ids) - 1), self.shortest - 1, -1):
            # every earlier window of n tokens with a token after it: the last window itself is excluded
            windows = np.lib.stride_tricks.sliding_window_view(ids[:-1], n)
            hits = np.flatnonzero((windows == ids[-n:]).all(axis=1))
            if len(hits):
                j = int(hits[-1]) + n
                return [int(t) for t in ids[j:j + k]]
        return []


class DraftModel(Proposer):
    """A draft artifact's own cache, kept level with each row's chosen ids: each round it feeds what it
    has not seen, proposes k tokens (feeding k - 1 of them) and then forgets the ones the target rejected.
    Rows share one batched cache where the draft's cache can forget per row (`StepBackend.holes`), else
    each row has its own."""

    def __init__(self, backend: StepBackend, gen: dict, name: str = "draft") -> None:
        self.backend, self.gen, self.name = backend, gen, name
        self.groups: list[tuple[list[int], State]] = []
        self.counts: list[int] = []  # per row: its ids the draft has cached
        self.fed: dict[int, int] = {}  # rows fed proposals last round -> how many

    @staticmethod
    def check(target: StepBackend, draft: StepBackend) -> None:
        """The draft must speak the target's vocabulary and be the same kind of model."""
        t, d = target.manifest, draft.manifest
        if t.kind != d.kind or int(t.dims["vocab_size"]) != int(d.dims["vocab_size"]):
            raise InputError(f"the draft {draft.artifact.name} ({d.kind}, vocabulary {d.dims['vocab_size']}) does not "
                             f"match {target.artifact.name} ({t.kind}, vocabulary {t.dims['vocab_size']})",
                             "draft with an artifact of the same model family and tokenizer")
        same = [_read(p.artifact / "tokenizer.json") for p in (target, draft)]
        if same[0] != same[1]:
            raise InputError(f"the draft {draft.artifact.name} has another tokenizer than {target.artifact.name}",
                             "draft with an artifact exported from a model with the same tokenizer")
        if d.audio:
            raise InputError("a speech model cannot draft", "draft with a text model")

    def start(self, rows: list[list[int]], seqs: list[list[int]]) -> None:
        b = len(rows)
        parts = [list(range(b))] if self.backend.holes or b == 1 else [[i] for i in range(b)]
        self.groups = []
        for part in parts:
            state, _, _, _ = start(self.backend, [rows[i] for i in part], self.gen, Timings())
            self.groups.append((part, state))
        self.counts = [len(s) for s in seqs]
        self.fed = {}

    def propose(self, seqs: list[list[int]], want: list[int], cfg: GenerationConfig,
                rng: np.random.Generator) -> Proposals:
        k = max(want)
        tokens: list[list[int]] = [[] for _ in seqs]
        dists: list[np.ndarray | None] = [None] * len(seqs)
        banned = banned_ids(cfg, self.gen)
        pad = int(self.gen.get("pad_token_id") or 0)
        self.fed = {}
        for part, state in self.groups:
            if len(part) == 1 and not want[part[0]]:
                continue  # a row of its own that wants nothing now catches up later
            tails = [seqs[i][self.counts[i]:] or [pad] for i in part]  # [pad]: a stopped row, fed to keep the batch
            width = max(len(t) for t in tails)
            ids = np.full((len(part), width), pad, np.int64)
            mask = np.zeros_like(ids)
            for r, t in enumerate(tails):
                ids[r, width - len(t):], mask[r, width - len(t):] = t, 1
            logits = self.backend.prefill(state, ids, mask)
            picked, probs = [], []
            for step in range(k):
                if cfg.do_sample:
                    p = distribution(logits, cfg, banned)
                    tok = draw(p, rng)
                    probs.append(p)
                else:
                    tok = select(logits, cfg, rng, banned)
                picked.append(tok)
                if step < k - 1:
                    logits = self.backend.decode(state, tok)
            for r, i in enumerate(part):
                n = want[i]
                tokens[i] = [int(t[r]) for t in picked[:n]]
                if probs and n:
                    dists[i] = np.stack([p[r] for p in probs[:n]])
                self.counts[i] = len(seqs[i]) + k - 1
                self.fed[i] = k - 1
        return tokens, dists

    def accepted(self, counts: list[int]) -> None:
        for part, state in self.groups:
            forget = [self.fed[i] - min(counts[i], self.fed[i]) if i in self.fed else 0 for i in part]
            if any(forget):
                self.backend.trim_rows(state, np.array(forget))
            for i, n in zip(part, forget):
                self.counts[i] -= n


def _read(path: Path) -> bytes:
    return path.read_bytes() if path.exists() else b""


class LookupThenDraft(Proposer):
    """A row's proposal from the prompt where its last three tokens occurred before (a copy run is cheap
    and long), else from the draft. The draft only runs for rounds where some row needs it."""

    def __init__(self, draft: DraftModel) -> None:
        self.lookup, self.draft = PromptLookup(longest=3, shortest=3), draft
        self.name = f"lookup+{draft.name}"
        self.used: list[bool] = []  # rows whose last proposal was the draft's

    def start(self, rows: list[list[int]], seqs: list[list[int]]) -> None:
        self.lookup.start(rows, seqs)
        self.draft.start(rows, seqs)

    def propose(self, seqs: list[list[int]], want: list[int], cfg: GenerationConfig,
                rng: np.random.Generator) -> Proposals:
        tokens, dists = self.lookup.propose(seqs, want, cfg, rng)
        need = [n if n and not t else 0 for t, n in zip(tokens, want)]
        self.used = [bool(n) for n in need]
        if any(need):
            drafted, q = self.draft.propose(seqs, need, cfg, rng)
            for i, n in enumerate(need):
                if n:
                    tokens[i], dists[i] = drafted[i], q[i]
        else:
            self.draft.fed = {}
        return tokens, dists

    def accepted(self, counts: list[int]) -> None:
        # the draft's own proposals, cached where it ran, are kept only where they were the ones checked
        self.draft.accepted([c if used else 0 for c, used in zip(counts, self.used)])
