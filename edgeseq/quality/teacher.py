"""Teacher-forced next-token logits of an artifact on a case: the model reads the case's ids and its
distribution before each target token is kept, whatever it would have chosen itself. Engines whose
step returns every position's logits (dynamic ONNX / OpenVINO, PyTorch) score a slice of tokens per
step; static-shape artifacts (TFLite, NPU) one token per step."""
from __future__ import annotations

from typing import Any, Iterator

import numpy as np

from .texts import Case

CHUNK = 128  # tokens per step where the step returns every position's logits: [CHUNK, vocab] floats at a time


def room(backend: Any) -> int:
    """The most decoder positions one case may use on this artifact."""
    m = backend.manifest
    if m.static:
        return int(m.static.get("cache_length") or m.static.get("max_output", 128))
    return int(m.dims["max_positions"])


def prompt_room(backend: Any) -> int | None:
    """The longest prompt (decoder-only) or encoder input a static artifact takes; None: dynamic."""
    m = backend.manifest
    return int(m.static["max_input"]) if m.static else None


def fit(case: Case, backend: Any) -> Case:
    """The case cut to what the artifact holds: a static artifact's prompt to its last max_input ids, the
    target to the cache's remaining positions."""
    m = backend.manifest
    most = prompt_room(backend)
    ctx = case.context if most is None else case.context[-most:]
    left = room(backend) - (len(ctx) if m.kind == "decoder-only" else 1)
    return Case(case.set, ctx, case.target[:max(left, 1)])


def logits(backend: Any, case: Case) -> Iterator[np.ndarray]:
    """The logits [n, vocab] before each target token, in slices of consecutive targets."""
    m = backend.manifest
    state = backend.new_state(1)
    if m.kind == "decoder-only":
        read, fed = case.context, case.context + case.target[:-1]
    else:
        src = np.array([case.context], np.int64)
        backend.encode(state, src, np.ones_like(src))
        start = int(m.generation.get("decoder_start_token_id") or 0)
        read, fed = [start], [start] + case.target[:-1]
    first = len(read) - 1  # the position whose logits predict target[0]
    if getattr(backend, "picks", False) and not m.static:
        pos = 0
        while pos < len(fed):
            chunk = np.array([fed[pos:pos + CHUNK]], np.int64)
            out = backend.verify(state, chunk)[0]
            lo = max(first - pos, 0)
            if lo < out.shape[0]:
                yield np.asarray(out[lo:], np.float32)
            pos += chunk.shape[1]
        return
    yield np.asarray(backend.prefill(state, np.array([read], np.int64)), np.float32)
    for token in case.target[:-1]:
        yield np.asarray(backend.decode(state, np.array([token], np.int64)), np.float32)
