"""ONNX Runtime with the KV cache on the provider's device (option `device_cache`, default on GPU providers).

The step's present.* outputs are bound (IO binding) to the provider's device, so ONNX Runtime writes
them into device memory and they stay there as OrtValues: the next step binds them as its past.*
inputs. Per step only the ids, mask and positions go up and the logits come down, which is also
where the step's clock stops (copying them waits for the device). An encoder-decoder's cross-attention
cache goes up once per request (again after a beam reorder replaces it). Beam reorders and rewinds of
the self-attention cache go through the host: ONNX Runtime has no device gather outside a graph,
and those are rare on a GPU's decode path.

On the CPU provider (`device_cache=True`) the same form runs with OrtValues in host memory: that is
how the form is tested on a machine without a GPU.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ..base import State
from ..cache import CacheForm, HeldCache

if TYPE_CHECKING:
    from .onnxruntime import OnnxRuntimeBackend


@dataclass
class _Uploaded(HeldCache):
    """The device copies of a request's cross-attention cache, and which State.cross dict they copy."""

    source: Any = None
    values: dict[str, Any] = field(default_factory=dict)


class DeviceValues(CacheForm[_Uploaded]):
    name = "device-values"

    def __init__(self, backend: OnnxRuntimeBackend) -> None:
        super().__init__(backend)
        self.session = backend.sessions[self.component]
        self.inputs = backend._inputs[self.component]
        self.outputs = backend._outputs[self.component]
        self.where = backend.ort_device
        self.fp = backend._fp

    def describe(self) -> str:
        return f"OrtValues on {self.where[0]}:{self.where[1]}, bound each step (IO binding)"

    def _value(self, a: np.ndarray) -> Any:
        import onnxruntime as ort

        return ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(a), *self.where)

    def new(self, state: State) -> None:
        state.mask = np.zeros((state.batch, 0), np.int64)
        state.caches = {n: self._value(a) for n, a in self.arrays(state.batch, 0).items()}
        state.held = _Uploaded()

    def step(self, state: State, feeds: dict[str, Any], signature: str | None = None) -> np.ndarray:
        held: _Uploaded = state.held  # type: ignore[assignment]
        if state.cross and held.source is not state.cross:  # encode, or a reorder that replaced it
            held.source, held.values = state.cross, {k: self._value(v) for k, v in state.cross.items()}
        io = self.session.io_binding()
        for name, v in feeds.items():
            if name not in self.inputs:
                continue
            v = held.values.get(name, v)
            if isinstance(v, np.ndarray):
                io.bind_cpu_input(name, np.ascontiguousarray(v))
            else:
                io.bind_ortvalue_input(name, v)
        for name in self.outputs:
            if name == "logits":
                io.bind_output(name, "cpu")
            else:
                io.bind_output(name, self.where[0], self.where[1])
        self.fp.run(self.session.run_with_iobinding, io)
        out = dict(zip(self.outputs, io.get_outputs()))
        state.caches = {self._next[n]: v for n, v in out.items() if n != "logits"}
        return out["logits"].numpy()  # type: ignore[no-any-return]

    def reorder(self, state: State, rows: np.ndarray) -> None:
        state.caches = {k: self._value(v.numpy()[rows]) for k, v in state.caches.items()}

    def forget(self, state: State, keep: int, real: np.ndarray) -> None:
        state.caches = {k: self._value(v.numpy()[:, :, :keep]) for k, v in state.caches.items()}
