"""GenerationConfig: pure settings with a validate() that rejects conflicting or out-of-range values."""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Literal

from ..errors import UsageError


@dataclass
class GenerationConfig:
    """How to pick tokens. Defaults: greedy, up to 128 new tokens, stop at the artifact's EOS.

    Sampling: do_sample with temperature, top_k (0 = off), top_p (1 = off) and seed.
    Beam search: num_beams > 1 with length_penalty (score = sum log p / length ** length_penalty)
    and early_stopping (True: stop when num_beams hypotheses are done; False: stop when no running
    beam can still beat them; "never": the canonical search to max length).
    Diverse beam search: num_beam_groups > 1 splits the beams into groups; each group's token
    scores are lowered by diversity_penalty x how often earlier groups chose that token this step.
    repetition_penalty > 1 discourages tokens already in the sequence (prompt included).
    """

    max_new_tokens: int = 128
    do_sample: bool = False
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    seed: int | None = None
    repetition_penalty: float = 1.0
    num_beams: int = 1
    num_beam_groups: int = 1
    diversity_penalty: float = 0.0
    length_penalty: float = 1.0
    early_stopping: bool | Literal["never"] = False
    num_return_sequences: int = 1
    stop_token_ids: list[int] | None = None  # None = the artifact's EOS ids
    ignore_eos: bool = False  # forced length: mask EOS so exactly max_new_tokens come out (profiling)
    stop: list[str] | None = None  # text that ends a row (not returned); applied by the API, which has the tokenizer

    @classmethod
    def from_options(cls, **options: Any) -> "GenerationConfig":
        """A config from keyword options; a name it does not have is a UsageError listing the accepted ones."""
        known = [f.name for f in fields(cls)]
        unknown = sorted(set(options) - set(known))
        if unknown:
            raise UsageError(f"unknown generation option{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}",
                             f"accepted: {', '.join(known)} (or pass config=GenerationConfig(...))")
        return cls(**options)

    def validate(self) -> "GenerationConfig":
        def bad(msg: str, hint: str) -> UsageError:
            return UsageError(msg, hint)

        for name in ("temperature", "top_p", "repetition_penalty", "diversity_penalty", "length_penalty"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise bad(f"{name} must be a number, got {v!r}", "pass a float such as 1.0")
        for name in ("do_sample", "ignore_eos"):
            if not isinstance(getattr(self, name), bool):
                raise bad(f"{name} must be True or False, got {getattr(self, name)!r}", "pass a bool")
        if self.seed is not None and (isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0):
            raise bad(f"seed must be an integer >= 0 or None, got {self.seed!r}", "e.g. seed=0")
        if self.stop_token_ids is not None and (not isinstance(self.stop_token_ids, (list, tuple)) or any(
                isinstance(t, bool) or not isinstance(t, int) for t in self.stop_token_ids)):
            raise bad(f"stop_token_ids must be a list of token ids, got {self.stop_token_ids!r}",
                      "e.g. stop_token_ids=[2], or None for the artifact's EOS")
        if isinstance(self.max_new_tokens, bool) or not isinstance(self.max_new_tokens, int) \
                or self.max_new_tokens < 1:
            raise bad(f"max_new_tokens must be a positive integer, got {self.max_new_tokens!r}",
                      "pass --max-new-tokens 1 or more")
        if not self.temperature > 0:
            raise bad(f"temperature must be > 0, got {self.temperature!r}",
                      "use greedy decoding (do_sample=False) for deterministic output")
        if isinstance(self.top_k, bool) or not isinstance(self.top_k, int) or self.top_k < 0:
            raise bad(f"top_k must be an integer >= 0 (0 = off), got {self.top_k!r}",
                      "pass --top-k 0 (off) or a positive count such as 50")
        if not 0 < self.top_p <= 1:
            raise bad(f"top_p must be in (0, 1], got {self.top_p!r}",
                      "pass --top-p between 0 and 1, e.g. 0.9 (1 turns it off)")
        if not self.repetition_penalty > 0:
            raise bad(f"repetition_penalty must be > 0, got {self.repetition_penalty!r}",
                      "1.0 is off; values such as 1.1-1.3 discourage repeats")
        if not self.do_sample and (self.temperature != 1.0 or self.top_k or self.top_p != 1.0):
            raise bad("temperature, top_k and top_p only apply when sampling",
                      "set do_sample=True (CLI: --sample, or any of them implies it)")
        for name in ("num_beams", "num_beam_groups", "num_return_sequences"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise bad(f"{name} must be an integer >= 1, got {v!r}", f"pass {name}=1 to turn it off")
        if self.num_beams > 1 and self.do_sample:
            raise bad("beam search with sampling is not supported", "use num_beams=1 with do_sample, or greedy beams")
        if self.num_beams % self.num_beam_groups:
            raise bad(f"num_beams ({self.num_beams}) must be divisible by num_beam_groups ({self.num_beam_groups})",
                      f"e.g. num_beams={self.num_beam_groups * 2}, num_beam_groups={self.num_beam_groups}")
        if self.diversity_penalty < 0 or (self.diversity_penalty and self.num_beam_groups == 1):
            raise bad(f"diversity_penalty {self.diversity_penalty} needs num_beam_groups > 1 and must be >= 0",
                      "set num_beam_groups to 2 or more, or diversity_penalty=0")
        if self.num_return_sequences > self.num_beams:
            raise bad(f"num_return_sequences ({self.num_return_sequences}) > num_beams ({self.num_beams})",
                      "return at most as many sequences as there are beams")
        if self.early_stopping not in (True, False, "never"):
            raise bad(f"early_stopping must be True, False or 'never', got {self.early_stopping!r}",
                      "False is the default")
        if isinstance(self.stop, str):
            self.stop = [self.stop]
        if self.stop is not None and (not isinstance(self.stop, (list, tuple))
                                      or any(not isinstance(x, str) or not x for x in self.stop)):
            raise bad(f"stop must be a list of non-empty strings, got {self.stop!r}", 'e.g. stop=["\\n\\n", "###"]')
        return self
