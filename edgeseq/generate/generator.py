"""Generator: a caller-owned loop over one sequence (append tokens, next token, done, rewind)."""
from __future__ import annotations

import numpy as np

from ..errors import InputError
from ..runtimes.base import StepBackend
from .config import GenerationConfig
from .loop import banned_ids, check_ids, first_banned, forced_last, forced_prefix, stop_ids
from .search import select


class Generator:
    """Owns one request's cache. The caller drives it:

        gen = model.generator("Once upon a time")
        while not gen.done:
            token = gen.next_token()
        gen.rewind(3)               # forget the last 3 tokens (cache included)
        gen.append_tokens([...])    # feed more ids (a user's turn, a forced prefix)

    `max_new_tokens` counts the tokens produced since the last append_tokens() (or the start).
    """

    def __init__(self, backend: StepBackend, gen: dict, cfg: GenerationConfig, prompt: list[int]) -> None:
        if backend.manifest.audio:
            raise InputError("a Generator starts from a text prompt; this artifact's encoder reads audio",
                             "use model.transcribe(audio)")
        self.vocab = int(backend.manifest.dims["vocab_size"])
        check_ids([prompt], self.vocab)
        prompt = [int(i) for i in prompt]
        if cfg.num_beams > 1:
            raise InputError("a Generator follows one sequence; beam search keeps several",
                             "use model.generate(..., num_beams=N) for beam search")
        self.backend, self.cfg = backend, cfg.validate()
        self.limit = int(backend.manifest.dims["max_positions"])
        self.eos = set(stop_ids(cfg, gen))
        self._banned, self._first, self._last = banned_ids(cfg, gen), first_banned(cfg, gen), forced_last(cfg, gen)
        self._rng = np.random.default_rng(cfg.seed)
        self.state = backend.new_state(1)
        self.tokens: list[int] = []  # tokens this generator produced (not the prompt or appended ids)
        if backend.manifest.kind == "decoder-only":
            self._check_len(len(prompt))
            self._seq = list(prompt)  # decoder-side ids: fed to the cache, or pending
        else:
            ids = np.array([prompt], np.int64)
            backend.encode(self.state, ids, np.ones_like(ids))
            self._seq = [int(gen["decoder_start_token_id"]), *forced_prefix(backend.manifest.kind, gen)]
        self._pending = list(self._seq)
        self._new = len(self._seq) - 1 if backend.manifest.kind == "encoder-decoder" else 0  # a forced token counts
        self.done = False

    @property
    def sequence(self) -> list[int]:
        """Every decoder-side id so far: the prompt (decoder-only) or the start token, then the rest."""
        return list(self._seq)

    def _check_len(self, n: int) -> None:
        if n > self.limit:
            raise InputError(f"{n} positions exceed the model's maximum of {self.limit}",
                             "rewind, or start a new generator with a shorter prompt")

    def append_tokens(self, ids: list[int]) -> None:
        """Feed more ids; generation continues after them (done is cleared)."""
        if not ids:
            raise InputError("append_tokens() got no ids", "pass a non-empty list of token ids")
        check_ids([ids], self.vocab)
        self._check_len(len(self._seq) + len(ids))
        self._seq += [int(i) for i in ids]
        self._pending += [int(i) for i in ids]
        self._new, self.done = 0, False

    def next_token(self) -> int:
        """Run the pending ids through the model and pick the next token."""
        if self.done:
            raise InputError("the generator is done (stop token or max_new_tokens reached)",
                             "append_tokens() to continue, rewind(), or start a new generator")
        logits = self.backend.prefill(self.state, np.array([self._pending], np.int64))
        history = np.array([self._seq], np.int64)
        if self._last is not None and self._new + 1 >= self.cfg.max_new_tokens:
            token = self._last
        else:
            banned = self._banned if self.tokens else self._first  # the first choice: begin-suppressed ids too
            token = int(select(logits, self.cfg, self._rng, banned, history)[0])
        self._seq.append(token)
        self.tokens.append(token)
        self._pending = [token]
        self._new += 1
        self.done = (token in self.eos and not self.cfg.ignore_eos) or self._new >= self.cfg.max_new_tokens \
            or len(self._seq) >= self.limit
        return token

    def rewind(self, n: int) -> None:
        """Forget the last n ids (generated or appended) and their cache entries."""
        if not 0 <= n < len(self._seq):
            raise InputError(f"cannot rewind {n} of {len(self._seq)} ids", "keep at least one id")
        if n == 0:
            return
        from_pending = min(n, len(self._pending))
        refeed = from_pending == len(self._pending)  # re-feed the last kept id so the next step has its logits
        cached = n - from_pending + refeed
        self.backend.trim(self.state, cached)  # first: a cache that cannot forget (a ring) leaves all as it was
        del self._seq[-n:]
        self.tokens = self.tokens[: max(0, len(self.tokens) - n)]
        self._pending = [self._seq[-1]] if refeed else self._pending[: len(self._pending) - from_pending]
        self._new, self.done = max(0, self._new - n), False
