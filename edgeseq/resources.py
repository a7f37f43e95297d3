"""Memory estimates, checked before work starts so a request that cannot fit is refused up front:
against the memory this host has free (`check_fits`) and against a budget the user sets
(`--max-memory`, `check_budget`). `estimate` splits what a request holds into the parts the profile
measures (profile/runner.py: runtime, weights, KV cache, workspace), so each can be checked against it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .errors import EdgeseqError, UsageError

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


def cache_bytes(manifest: Any, rows: int, input_len: int, output_len: int) -> int:
    """One float32 copy of a request's caches at its longest: self-attention K/V for every position (an
    encoder-decoder's decoder: its output positions) plus an encoder-decoder's cross-attention K/V."""
    d = manifest.dims
    per_pos = 2 * d["num_layers"] * d["num_kv_heads"] * d["head_dim"] * 4
    positions = input_len + output_len if manifest.kind == "decoder-only" else output_len + 1 + input_len
    return int(per_pos * rows * positions)


def kv_bytes(manifest: Any, batch: int, input_len: int, output_len: int, beams: int = 1) -> int:
    """Float32 caches of a request: self-attention K/V for every position, plus cross-attention K/V
    over the input for an encoder-decoder; and the logits of one step."""
    rows = batch * beams
    # x2: a step holds its past and present caches
    return 2 * cache_bytes(manifest, rows, input_len, output_len) + rows * manifest.dims["vocab_size"] * 4


def weight_bytes(manifest: Any) -> int:
    return int(sum(f["bytes"] for f in manifest.files.values()))


def check_fits(needed: int, what: str, hint: str) -> None:
    free = available_bytes()
    if free is not None and needed > free:
        raise ResourceError(f"{what} needs about {needed / 2**20:.0f} MiB but only {free / 2**20:.0f} MiB "
                            "of memory is available", hint)


# the interpreter, numpy, tokenizers and an engine's library, resident before any weights load
RUNTIME_BYTES = 64 * 2**20


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes a request is expected to hold resident at its peak, in the parts the profile measures."""
    runtime: int  # the interpreter and the engine's library
    weights: int  # the weights as the engine holds them (file bytes x the engine's `weights_resident`)
    kv_cache: int  # the caches at the longest length, past and present, and one step's logits
    workspace: int  # a step's largest activations at these lengths

    @property
    def total(self) -> int:
        return self.runtime + self.weights + self.kv_cache + self.workspace

    def as_mb(self) -> dict[str, float]:
        parts = {"runtime": self.runtime, "weights": self.weights, "kv_cache": self.kv_cache,
                 "workspace": self.workspace, "total": self.total}
        return {k: round(v / 2**20, 1) for k, v in parts.items()}


def estimate(manifest: Any, engine: str | None = None, batch: int = 1, input_len: int = 0, output_len: int = 0,
             beams: int = 1) -> MemoryEstimate:
    """What `engine` holds for a request of `batch` x `beams` rows of `input_len` + `output_len` tokens
    (lengths 0: the weights alone, what a load needs). The workspace is an allowance for the prefill's
    activations and the engine's arenas, sized as one layer's attention scores [rows, heads, T, T] and a
    few [rows, T, 4 x hidden] tensors of its MLP in float32 (a long one-row prompt runs in slices, so
    this overstates the activations and covers the arenas; estimate against measured in
    docs/performance.md)."""
    from .runtimes import registry

    weights = manifest.quantization or "fp32"
    factor = registry.spec(engine).resident_factor(weights) if engine in registry.names() else 1.0
    d, rows = manifest.dims, batch * beams
    kv = kv_bytes(manifest, batch, input_len, output_len, beams) if input_len or output_len else 0
    t = input_len
    work = (rows * d["num_heads"] * t * t + 3 * rows * t * 4 * d["hidden_size"]) * 4 if t else 0
    return MemoryEstimate(RUNTIME_BYTES, int(weight_bytes(manifest) * factor), kv, int(work))


def check_max_memory(max_mb: float | None) -> None:
    if max_mb is not None and not (isinstance(max_mb, (int, float)) and max_mb > 0):
        raise UsageError(f"--max-memory must be a positive number of MB, got {max_mb!r}",
                         "pass the memory the app may use, e.g. --max-memory 300")


def check_budget(need: MemoryEstimate, max_mb: float | None, what: str, hint: str) -> None:
    """Refuse, before anything loads or runs, a request whose estimate exceeds the user's --max-memory."""
    if max_mb is not None and need.total > max_mb * 2**20:
        parts = ", ".join(f"{k} {v:.0f}" for k, v in need.as_mb().items() if k != "total" and v)
        raise ResourceError(f"{what} needs about {need.total / 2**20:.0f} MB ({parts}), over --max-memory "
                            f"{max_mb:.0f} MB", hint)
