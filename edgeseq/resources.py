"""Memory estimates, checked before work starts so a request that cannot fit is refused up front."""
from __future__ import annotations

from typing import Any

from .errors import EdgeseqError

# Engines keep the weights once and need working space for optimisation at load time; 1.5x the
# weight bytes covers the resident peak of ONNX Runtime's CPU provider while it loads a model.
LOAD_FACTOR = 1.5


class ResourceError(EdgeseqError):
    """A request that would not fit in this host's memory."""

    exit_code = 11


def available_bytes() -> int | None:
    """MemAvailable from /proc/meminfo (None where the OS does not say)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def kv_bytes(manifest: Any, batch: int, input_len: int, output_len: int, beams: int = 1) -> int:
    """Float32 caches of a request: self-attention K/V for every position, plus cross-attention K/V
    over the input for an encoder-decoder; and the logits of one step."""
    d = manifest.dims
    heads = d["num_kv_heads"]
    per_pos = 2 * d["num_layers"] * heads * d["head_dim"] * 4
    rows = batch * beams
    if manifest.kind == "decoder-only":
        cache = per_pos * rows * (input_len + output_len)
    else:
        cache = per_pos * rows * (output_len + 1 + input_len)  # self + cross
    return int(cache * 2 + rows * d["vocab_size"] * 4)  # x2: a step holds its past and present caches


def weight_bytes(manifest: Any) -> int:
    return int(sum(f["bytes"] for f in manifest.files.values()))


def check_fits(needed: int, what: str, hint: str) -> None:
    free = available_bytes()
    if free is not None and needed > free:
        raise ResourceError(f"{what} needs about {needed / 2**20:.0f} MiB but only {free / 2**20:.0f} MiB "
                            "of memory is available", hint)
