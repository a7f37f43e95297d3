"""What the evaluation reports, from the logits of the checked artifact and of its float reference
at the same positions (teacher-forced, quality/teacher.py):

- perplexity: exp of the mean negative log-likelihood of the target tokens (the checked artifact's,
  and the reference's beside it);
- KL divergence KL(reference || checked) of the next-token distributions, in nats: the mean and the
  99th percentile over positions (llama.cpp's perplexity tool reports the same statistic against
  fp16 logits);
- top-1 agreement: the share of positions where both put the same token first;
- greedy divergence: in free greedy generation from the same prompts, the first step where the
  checked artifact's token differs from the reference's (None: not within the steps run).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..generate.search import log_softmax


@dataclass
class Tally:
    """Per-position figures gathered over slices, reduced by `summary`."""
    nll: list[float] = field(default_factory=list)
    nll_ref: list[float] = field(default_factory=list)
    kl: list[float] = field(default_factory=list)
    agree: list[bool] = field(default_factory=list)

    def add(self, got: np.ndarray, ref: np.ndarray, targets: np.ndarray) -> None:
        """Logits [n, V] of the checked artifact and the reference before `targets` [n]."""
        v = min(got.shape[-1], ref.shape[-1])  # a padded vocabulary: compare the shared ids
        lg, lr = log_softmax(got[:, :v], np.float64), log_softmax(ref[:, :v], np.float64)
        rows = np.arange(len(targets))
        self.nll += (-lg[rows, targets]).tolist()
        self.nll_ref += (-lr[rows, targets]).tolist()
        self.kl += (np.exp(lr) * (lr - lg)).sum(axis=-1).clip(min=0).tolist()
        self.agree += (lg.argmax(-1) == lr.argmax(-1)).tolist()

    def summary(self) -> dict[str, Any]:
        n = len(self.nll)
        if not n:
            return {"tokens": 0}
        kl = np.array(self.kl)
        return {"tokens": n, "perplexity": round(math.exp(float(np.mean(self.nll))), 4),
                "reference_perplexity": round(math.exp(float(np.mean(self.nll_ref))), 4),
                "kl_mean": round(float(kl.mean()), 6), "kl_p99": round(float(np.percentile(kl, 99)), 6),
                "top1_agreement": round(float(np.mean(self.agree)), 4)}


def first_divergence(got: list[int], ref: list[int]) -> int | None:
    """The first step where two greedy runs differ (None: they agree over the shorter one)."""
    return next((i for i, (a, b) in enumerate(zip(got, ref)) if a != b), None)
