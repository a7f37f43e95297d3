"""Agreement of an artifact on a device with a reference run on the CPU: the same tokens, teacher-forced.

Both backends are fed the reference's greedy tokens step by step (so one early flip does not make
every later step differ), and each step's logits are compared: the share of steps whose top-1
token agrees, and the largest logit difference (absolute, and relative to the reference's largest
logit). Used for NPU recipes, where the device computes in float16 or quantized types.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .auto import forced_logits


def agreement(device_backend: Any, reference: Any, prompt: list[int], steps: int = 32) -> dict[str, Any]:
    """Teacher-forced comparison of `device_backend` with `reference` over `steps` greedy steps."""
    gen = reference.manifest.generation
    tokens, ref = forced_logits(reference, prompt, gen, None, steps)
    _, got = forced_logits(device_backend, prompt, gen, tokens, steps)
    agree = got.argmax(-1) == ref.argmax(-1)
    diff = np.abs(got - ref).max(axis=-1)
    return {"steps": steps, "token_agreement": round(float(agree.mean()), 4),
            "first_disagreement": None if agree.all() else int(np.argmin(agree)),
            "max_abs_logit_diff": round(float(diff.max()), 4),
            "max_rel_logit_diff": round(float(diff.max() / max(float(np.abs(ref).max()), 1e-9)), 4),
            "reference_tokens": tokens}
