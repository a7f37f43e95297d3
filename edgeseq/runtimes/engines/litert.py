"""LiteRT engine (ai-edge-litert) for TFLite artifacts: XNNPACK on CPU, delegates for GPU and NPU.

CPU runs LiteRT's `CompiledModel` on tensor buffers, and the KV cache stays in them: a step's
`present.*` output buffers are the next step's `past.*` inputs (`Resident`), so no step copies the
cache in or out of Python (the Interpreter's signature runner copies every cache tensor both ways,
a large share of each decode step; benchmarks/vs_litert.py).
Buffers a step replaced go back to a pool (the `ResidentSlots` cache form, runtimes/cache.py). Code
that needs the cache as numpy (batches run row by row, beam reordering) reads it with `np.asarray`.
XNNPACK packs the weights of every signature separately unless given a weight-cache file: edgeseq
keeps one per graph in ~/.cache/edgeseq/litert, so the signatures share one packed copy and a second
load maps it (a fraction of the peak memory of one packed copy per signature).
GPU and NPU rows load a delegate library (`delegate` option / `--delegate PATH`, which ai-edge-litert
does not ship for Linux x86-64) into the classic `Interpreter`, whose runners copy inputs and outputs.
Inputs are mapped by the names the manifest records (`signature_name`), never by position.
"""
from __future__ import annotations

import atexit
import os
import threading
import weakref
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import ArtifactError, DeviceError, first_line
from .. import devices
from ..base import State
from ..registry import EngineSpec
from ..cache import CacheForm
from ..host.disk_cache import cache_room
from ..host.fds import redirected
from ..static import StaticSlots, StaticStepBackend


ENGINE = EngineSpec(
    name="litert", backend="LiteRtBackend", static_backend="LiteRtBackend", package="ai_edge_litert",
    install="pip install 'edgeseq[litert]'", formats=("tflite",), rank=20,
    weights_resident=(("*", 1.7),), devices=(
        devices.DeviceRow("litert", "cpu", "", "XNNPACK", "pip install 'edgeseq[litert]'"),
        devices.DeviceRow("litert", "gpu", "delegate", "GPU delegate",
                          "a LiteRT GPU delegate library (--delegate PATH)"),
        devices.DeviceRow("litert", "npu", "delegate", "NPU delegate",
                          "a vendor NPU delegate library, e.g. Qualcomm QNN's (--delegate PATH)")))


def probe(row: devices.DeviceRow, delegate: str | None = None) -> str | None:
    """None when the row can run here, else the reason it cannot."""
    try:
        import ai_edge_litert.interpreter  # noqa: F401
    except ImportError:
        return "ai-edge-litert is not installed"
    if row.device == "cpu":
        return None
    if not delegate:
        return f"no {row.device.upper()} delegate library given (pass --delegate PATH)"
    return None if Path(delegate).is_file() else f"delegate library {delegate} does not exist"


_ENV: Any = None  # one LiteRT environment per process: it registers the accelerators once


def _quiet_stderr() -> Any:
    """LiteRT's runtime logs ~20 INFO / WARNING lines per environment and model to file descriptor 2
    (accelerator registration, vendor plugins absent on this host) and has no switch for it."""
    return redirected((2,))


def _environment() -> Any:
    global _ENV
    if _ENV is None:
        from ai_edge_litert.compiled_model import _create_default_environment
        from ai_edge_litert.tensor_buffer import TensorBuffer

        with _quiet_stderr():
            _ENV = _create_default_environment()
            # the first buffer write of a process sets up an environment of its own, as loudly
            TensorBuffer.create_from_host_memory(np.zeros(16, np.float32)).write(np.zeros(16, np.float32))
        # the environment logs each accelerator again when the process tears it down
        atexit.register(lambda: os.dup2(os.open(os.devnull, os.O_WRONLY), 2))
    return _ENV


class Resident:
    """A cache tensor that lives in a LiteRT tensor buffer between steps."""

    def __init__(self, buffer: Any, shape: tuple[int, ...], key: tuple[str, str]) -> None:
        self.buffer, self.shape, self.key = buffer, shape, key

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        out = self.buffer.read(int(np.prod(self.shape)), np.float32).reshape(self.shape)
        return out if dtype is None else out.astype(dtype)


class LiteRtBackend(StaticStepBackend):
    engine = "litert"
    compile_cache = True  # packed weights are cached: a second load maps them (reported as load_warm_ms)

    def _load(self) -> None:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # "Created TensorFlow Lite XNNPACK delegate" per load
        delegate_path = self.options.delegate
        rows = devices.rows(self.engine, self.device)
        reasons = [probe(r, delegate_path) for r in rows]
        if all(reasons):
            raise DeviceError(f"LiteRT cannot run on {self.device} here: {reasons[0]}",
                              "install one of: " + "; ".join(r.install for r in rows))
        self.target = rows[reasons.index(None)].target
        self.precision = "f32 (weights int8, int8 compute)" if self.manifest.quantization == "int8" else "f32"
        self._lock = threading.Lock()  # one model, many threads: runs and the buffer pool are serialised
        self._in: dict[str, dict[str, tuple[str, Any]]] = {}
        self._out_shapes: dict[tuple[str, str], dict[str, tuple[int, ...]]] = {}
        self._caches = {n: frozenset(c.cache_outputs) for n, c in self.manifest.components.items()}
        self.models: dict[str, Any] = {}
        for name, comp in self.manifest.components.items():
            # manifest name -> (signature input name, dtype the file takes: int64 inputs became int32)
            self._in[name] = {d["name"]: (d.get("signature_name", d["name"]), np.dtype(d["dtype"])) for d in comp.inputs}
            try:
                digest = self.manifest.files.get(comp.file, {}).get("sha256", "")[:16]
                self.models[name] = self._open(self.artifact / comp.file, delegate_path, digest)
            except (ValueError, RuntimeError) as e:
                raise ArtifactError(f"LiteRT cannot load {comp.file} of {self.artifact}: {first_line(e)}",
                                    f"check it with `edgeseq verify {self.artifact}`, or re-export") from e
            missing = sorted(set(comp.signatures) - set(self.models[name].get_signature_list()))
            if missing:
                raise ArtifactError(f"{comp.file} lacks signatures {missing} that the manifest lists",
                                    "re-export the artifact; do not edit edgeseq.json by hand")
        self._buffers: dict[tuple[str, str, str], Any] = {}  # (component, signature, name) -> input / logits buffer
        self._pool: dict[tuple[str, str], list[Any]] = {}  # (component, output) -> free cache buffers
        self._runners: dict[tuple[str, str], Any] = {}
        # the array last written into each input buffer: feeding the same (never mutated) array again
        # skips the copy; state arrays are replaced, not changed in place, when they change
        self._fed: dict[tuple[str, str, str], Any] = {}

    def _open(self, path: Path, delegate_path: str | None, digest: str) -> Any:
        if self.target == "XNNPACK":
            from importlib.metadata import version

            from ai_edge_litert.compiled_model import CompiledModel
            from ai_edge_litert.cpu_options import CpuOptions
            from ai_edge_litert.hardware_accelerator import HardwareAccelerator
            from ai_edge_litert.options import Options

            # packed weights depend on the graph's bytes and the runtime's version, not on threads;
            # without the manifest's hash (an export's own parity run) nothing identifies the bytes:
            # no cache then (a name alone would hand one model another's weights)
            folder = cache_room("litert", path.stat().st_size) if digest else None
            final = folder / f"{digest}-{version('ai-edge-litert')}.xnnpack" if folder else None
            # a new cache is written under a name of this process's own, then renamed into place
            # (the mapping stays valid), so two processes never write the same file
            target = final if final is None or final.is_file() else final.with_suffix(f".{os.getpid()}.partial")
            if target is not None:
                target.parent.mkdir(parents=True, exist_ok=True)
            cpu = CpuOptions(num_threads=self.options.threads or 0, xnnpack_weight_cache_path=str(target or ""))
            env = _environment()
            with _quiet_stderr():
                model = CompiledModel.from_file(str(path), options=Options(HardwareAccelerator.CPU, cpu_options=cpu),
                                                environment=env)
            if final is not None and target != final and target is not None and target.is_file():
                os.replace(target, final)
            return model
        from ai_edge_litert.interpreter import Interpreter, load_delegate

        try:
            delegate = load_delegate(delegate_path)
        except (ValueError, OSError) as e:
            raise DeviceError(f"cannot load delegate {delegate_path}: {e}",
                              "pass the vendor's TFLite delegate library built for this host") from e
        return Interpreter(model_path=str(path), num_threads=self.options.threads, experimental_delegates=[delegate])

    def graph_inputs(self, component: str) -> set[str]:
        return set(self._in[component])

    def invoke(self, component: str, signature: str, feeds: dict[str, Any]) -> dict[str, Any]:
        names = self._in[component]
        with self._lock:
            if self.target != "XNNPACK":  # a delegate: the Interpreter's runner, numpy in and out
                key = (component, signature)
                if key not in self._runners:
                    self._runners[key] = self.models[component].get_signature_runner(signature)
                args = {names[k][0]: np.asarray(v, names[k][1]) for k, v in feeds.items() if k in names}
                return self._runners[key](**args)  # type: ignore[no-any-return]
            return self._run_compiled(component, signature, feeds)

    def _run_compiled(self, component: str, signature: str, feeds: dict[str, Any]) -> dict[str, Any]:
        model, names, caches = self.models[component], self._in[component], self._caches[component]
        inputs = {}
        for k, v in feeds.items():
            if k not in names:
                continue
            sig_name, dtype = names[k]
            if isinstance(v, Resident):
                inputs[sig_name] = v.buffer
                continue
            buf = self._buffer(model, component, signature, sig_name, "in")
            key = (component, signature, sig_name)
            last = self._fed.get(key)
            if last is None or last() is not v:  # the cross-attention cache is fed unchanged every step
                buf.write(np.ascontiguousarray(v, dtype))
                self._fed[key] = weakref.ref(v) if isinstance(v, np.ndarray) else None
            inputs[sig_name] = buf
        shapes = self._shapes(model, component, signature)
        outputs = {o: (self._pooled(model, component, signature, o) if o in caches
                       else self._buffer(model, component, signature, o, "out")) for o in shapes}
        model.run_by_name(signature, inputs, outputs)
        result: dict[str, Any] = {}
        for o, buf in outputs.items():
            shape = shapes[o]
            result[o] = Resident(buf, shape, (component, o)) if o in caches else \
                buf.read(int(np.prod(shape)), np.float32).reshape(shape)
        return result

    def _shapes(self, model: Any, component: str, signature: str) -> dict[str, tuple[int, ...]]:
        """Output shapes of one signature (an encoder bucket's hidden states are as long as the bucket)."""
        key = (component, signature)
        if key not in self._out_shapes:
            self._out_shapes[key] = {o: tuple(d["shape"]) for o, d in model.get_output_tensor_details(signature).items()}
        return self._out_shapes[key]

    def _buffer(self, model: Any, component: str, signature: str, name: str, side: str) -> Any:
        key = (component, signature, name)
        if key not in self._buffers:
            make = model.create_input_buffer_by_name if side == "in" else model.create_output_buffer_by_name
            with _quiet_stderr():  # the first buffer of a model sets up its accelerators, loudly
                self._buffers[key] = make(signature, name)
        return self._buffers[key]

    def _pooled(self, model: Any, component: str, signature: str, name: str) -> Any:
        free = self._pool.setdefault((component, name), [])
        if free:
            return free.pop()
        with _quiet_stderr():
            return model.create_output_buffer_by_name(signature, name)

    def cache_form(self) -> CacheForm[Any]:
        return ResidentSlots(self)

    def placement(self) -> dict[str, Any]:
        out = super().placement()
        out["target"] = self.target
        return out


class ResidentSlots(StaticSlots):
    """Static slots whose tensors stay in LiteRT buffers between steps (`Resident`): a step's replaced
    buffers go back to the backend's pool; a reorder reads the rows out as numpy."""

    def __init__(self, backend: LiteRtBackend) -> None:
        super().__init__(backend)
        self.lock, self.pool = backend._lock, backend._pool

    def release(self, old: dict[str, Any]) -> None:
        """The cache buffers a step replaced: nothing refers to them any more, reuse them."""
        with self.lock:
            for v in old.values():
                if isinstance(v, Resident):
                    self.pool.setdefault(v.key, []).append(v.buffer)

    def reorder(self, state: State, rows: np.ndarray) -> None:
        state.caches = {k: np.asarray(v)[rows] for k, v in state.caches.items()}
