"""The torch-compile engine's KV cache: preallocated device buffers in length buckets, leased per request,
and the decode step replayed as a CUDA graph over a lease's buffers.

A lease holds, for a batch B, a cache bucket C and a cross length S (encoder-decoder), one
[B, Hkv, C, D] tensor per self-attention cache and one [B, Hkv, S, D] per cross-attention cache.
The step writes its new keys and values into them in place (steps/attention.py `KVWrite.inplace`),
so the tensors, and their addresses, live as long as the lease: that is what lets a CUDA graph
captured on them be replayed for every later decode step of any request that takes the same buffers.

Buckets double from the smallest (`min_bucket`) to the model's positions; a request whose cache
fills its bucket moves to the next one (its rows copied once). Buffers that no request holds are
kept for the next request of the same shape and dropped when one of another shape needs memory.
"""
from __future__ import annotations

import weakref
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from ..runtimes.cache import HeldCache

Key = tuple[int, int, int]  # (batch, cache bucket, cross length)


@dataclass(eq=False)
class Buffers:
    """One set of cache tensors and, once its first decode step ran, that step's replay."""

    key: Key
    past: list[torch.Tensor]
    cross: list[torch.Tensor]
    replay: "Replay | None" = None
    busy: bool = False


class Lease(HeldCache):
    """A request's buffers (State.held); they go back to the pool when the request's state is dropped."""

    def __init__(self, pool: "SlotPool", buffers: Buffers) -> None:
        self.buffers = buffers
        weakref.finalize(self, pool.give, buffers)


@dataclass
class SlotPool:
    past_names: list[str]
    cross_names: list[str]
    heads: int
    head_dim: int
    dtype: torch.dtype
    device: torch.device
    min_bucket: int
    max_length: int  # the model's positions: the largest bucket
    _sets: list[Buffers] = field(default_factory=list)

    def bucket(self, n: int) -> int:
        """The smallest bucket holding n slots: min_bucket doubled, capped at the model's positions."""
        c = self.min_bucket
        while c < n and c < self.max_length:
            c *= 2
        return min(c, self.max_length) if n <= self.max_length else n

    def take(self, batch: int, length: int, cross: int = 0) -> Lease:
        """A lease of zeroed buffers for (batch, length, cross): a free set of that shape, or a new one
        (after dropping the free sets of other shapes, so idle buffers never pile up)."""
        key = (batch, length, cross)
        free = next((b for b in self._sets if b.key == key and not b.busy), None)
        if free is None:
            self._sets = [b for b in self._sets if b.busy]
            shape = lambda n: (batch, self.heads, n, self.head_dim)  # noqa: E731
            with torch.inference_mode():  # as every tensor the steps see: one kind, one compiled graph
                free = Buffers(key, [torch.zeros(shape(length), dtype=self.dtype, device=self.device)
                                     for _ in self.past_names],
                               [torch.zeros(shape(cross), dtype=self.dtype, device=self.device)
                                for _ in self.cross_names])
            self._sets.append(free)
        else:
            with torch.inference_mode():
                for t in (*free.past, *free.cross):
                    t.zero_()
        free.busy = True
        return Lease(self, free)

    def give(self, buffers: Buffers) -> None:
        buffers.busy = False

    def held(self) -> list[Key]:
        """The shapes of the buffer sets allocated now (free or leased)."""
        return [b.key for b in self._sets]


Step = Callable[..., torch.Tensor]  # (ids, mask, third, slots, *past, *cross) -> logits


class Replay:
    """One decode step (T = 1) on a buffer set, with its plain inputs (ids [B,1], mask [B,C], positions or
    the encoder mask, slots [1]) copied into static tensors before each run.

    On CUDA the first call runs the step once (which compiles it and writes the step's own slot), then
    captures it as a CUDA graph; every call after that copies the inputs and replays the graph, so the
    step costs one launch instead of one per kernel. The rerun of the first step during replay writes
    the same keys and values again. Elsewhere (`graph=False`) each call runs the step on the static
    tensors: the same bookkeeping, without the capture."""

    def __init__(self, step: Step, buffers: Buffers, shapes: list[tuple[int, ...]], device: torch.device,
                 graph: bool) -> None:
        self.step, self.buffers, self.graph = step, buffers, graph
        with torch.inference_mode():  # int64 ids, mask, positions or encoder mask, slots; plain strides
            self.static = tuple(torch.zeros(s, dtype=torch.int64, device=device) for s in shapes)
        self.out: torch.Tensor | None = None
        self.cuda_graph: Any = None
        self.replays = 0

    def __call__(self, *inputs: torch.Tensor) -> torch.Tensor:
        """Run the step on `inputs` (host or device tensors of the static shapes), copied in first."""
        for dst, src in zip(self.static, inputs):
            dst.copy_(src, non_blocking=True)
        args = (*self.static, *self.buffers.past, *self.buffers.cross)
        if not self.graph:
            return self.step(*args)
        if self.cuda_graph is None:
            self._capture(args)
        self.cuda_graph.replay()
        self.replays += 1
        assert self.out is not None
        return self.out

    def _capture(self, args: tuple[torch.Tensor, ...]) -> None:
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            self.step(*args)  # compiles (outside the capture) and warms up the allocator
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            self.out = self.step(*args)
        self.cuda_graph = graph
