"""GenerationConfig: pure settings with a validate() that rejects conflicting or out-of-range values."""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import UsageError


@dataclass
class GenerationConfig:
    max_new_tokens: int = 128
    do_sample: bool = False
    temperature: float = 1.0
    top_k: int = 0  # 0 = off
    top_p: float = 1.0  # 1.0 = off
    seed: int | None = None
    stop_token_ids: list[int] | None = None  # None = the artifact's EOS ids
    ignore_eos: bool = False  # forced length: mask EOS so exactly max_new_tokens come out (profiling)

    def validate(self) -> "GenerationConfig":
        if not isinstance(self.max_new_tokens, int) or self.max_new_tokens < 1:
            raise UsageError(f"max_new_tokens must be a positive integer, got {self.max_new_tokens!r}",
                             "pass --max-new-tokens 1 or more")
        if not self.temperature > 0:
            raise UsageError(f"temperature must be > 0, got {self.temperature!r}",
                             "use greedy decoding (do_sample=False) for deterministic output")
        if not isinstance(self.top_k, int) or self.top_k < 0:
            raise UsageError(f"top_k must be an integer >= 0 (0 = off), got {self.top_k!r}",
                             "pass --top-k 0 (off) or a positive count such as 50")
        if not 0 < self.top_p <= 1:
            raise UsageError(f"top_p must be in (0, 1], got {self.top_p!r}",
                             "pass --top-p between 0 and 1, e.g. 0.9 (1 turns it off)")
        if not self.do_sample and (self.temperature != 1.0 or self.top_k or self.top_p != 1.0):
            raise UsageError("temperature, top_k and top_p only apply when sampling",
                             "set do_sample=True (CLI: --sample, or any of them implies it)")
        return self
