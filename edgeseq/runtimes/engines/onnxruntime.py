"""ONNX Runtime engine: one InferenceSession per graph, execution provider from the device table.

A step graph whose attention is ONNX Runtime's GroupQueryAttention (steps/fused.py) keeps its
KV cache, on the CPU provider, in buffers [B, Hkv, capacity, D] that the kernel appends to in place:
each is bound (IO binding) as both a past input and the matching present output, so no step copies
the cache. That is the `BoundBuffers` cache form (runtimes/cache.py): a `State` holds its buffers
(`_Buffers`); they grow by doubling, a beam reorder gathers their rows, a rewind only shortens the
mask (the kernel reads total_sequence_length from it).
The option `kv_buffer=False` (`OnnxRuntimeOptions`) runs the same graph with the cache handed over
as arrays, as for plain graphs.

Sessions compute subnormal floats as zero (option `flush_denormals`; False keeps them). On the
calling thread the CPU flags for it are in force only while a session loads or runs
(runtimes/host/fpenv.py): the caller's own code keeps its floating-point environment.

Dynamic-shape artifacts run on `OnnxRuntimeBackend` (one graph per component); static-shape ones
(`--target npu`: one graph per signature) on `OnnxRuntimeStaticBackend`, which is also the way onto
Qualcomm's NPU (runtimes/engines/qnn.py): HTP compiles fixed shapes only.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import ArtifactError, DeviceError, first_line
from .. import devices
from ..host import fpenv
from . import ort_int8, qnn
from ..base import State, StepBackend
from ..options import EngineOptions
from ..registry import EngineSpec
from ..cache import CacheForm, HeldCache
from ..static import StaticStepBackend


@dataclass(frozen=True)
class OnnxRuntimeOptions(EngineOptions):
    kv_buffer: bool = field(default=True, metadata={
        "help": "GroupQueryAttention graphs on the CPU provider keep the KV cache in buffers the kernel appends "
                "to in place; False hands it over as arrays each step"})
    flush_denormals: bool = field(default=True, metadata={
        "help": "compute subnormal floats as zero (faster attention on x86); False keeps them"})
    prepack: bool = field(default=True, metadata={
        "help": "repack matmul weights at load into the kernels' layout; False keeps one copy of the weights "
                "(less memory, slower matmuls: docs/performance.md)"})
    device_cache: bool | None = field(default=None, metadata={
        "help": "keep the KV cache as OrtValues on the provider's device, bound each step (IO binding), only the "
                "logits copied to the host; default: on GPU providers (CUDA, TensorRT)"})


ENGINE = EngineSpec(
    name="onnxruntime", backend="OnnxRuntimeBackend", static_backend="OnnxRuntimeStaticBackend",
    package="onnxruntime", install="pip install edgeseq (onnxruntime is a base dependency)",
    formats=("onnx",), options=OnnxRuntimeOptions, rank=0,
    weights_resident=(("fp32", 1.2), ("int4", 1.5), ("w4a8", 2.1), ("*", 1.5)), devices=(
        devices.DeviceRow("onnxruntime", "cpu", "", "CPUExecutionProvider", "pip install onnxruntime"),
        devices.DeviceRow("onnxruntime", "gpu", "cuda", "CUDAExecutionProvider",
                          "pip install onnxruntime-gpu (NVIDIA CUDA)"),
        devices.DeviceRow("onnxruntime", "gpu", "tensorrt", "TensorrtExecutionProvider",
                          "pip install onnxruntime-gpu + TensorRT"),
        devices.DeviceRow("onnxruntime", "gpu", "dml", "DmlExecutionProvider",
                          "pip install onnxruntime-directml (Windows)"),
        devices.DeviceRow("onnxruntime", "gpu", "coreml", "CoreMLExecutionProvider", "onnxruntime on macOS"),
        devices.DeviceRow("onnxruntime", "npu", "qnn", "QNNExecutionProvider",
                          "pip install 'edgeseq[qnn]' (onnxruntime-qnn: Qualcomm HTP)"),
        devices.DeviceRow("onnxruntime", "npu", "openvino", "OpenVINOExecutionProvider",
                          "pip install onnxruntime-openvino"),
        devices.DeviceRow("onnxruntime", "npu", "vitisai", "VitisAIExecutionProvider", "AMD Ryzen AI software")))


def available_targets() -> list[str]:
    import onnxruntime as ort

    return list(ort.get_available_providers())


def probe(row: devices.DeviceRow) -> str | None:
    """None when the row can run here, else the reason it cannot."""
    try:
        have = available_targets()
    except ImportError:
        return "onnxruntime is not installed"
    if row.target == qnn.EP:  # a plugin provider: present once its package registers it
        return qnn.probe()
    return None if row.target in have else f"{row.target} not in this onnxruntime build"


def detail(row: devices.DeviceRow) -> str:
    """What `edgeseq devices` says of an available row."""
    if row.target == qnn.EP and qnn.simulated():
        return (f"{row.target} (the HTP simulator on this x86-64 host: timings are not device timings; "
                "static graphs only: --target npu)")
    return row.target


def flush_denormals(options: OnnxRuntimeOptions) -> bool:
    """Whether sessions compute subnormal floats as zero."""
    return options.flush_denormals


def _row(engine: str, device: str) -> devices.DeviceRow:
    return devices.pick(engine, device, probe, "onnxruntime", "provider")


class _Sessions:
    """Session options and loading shared by both backends."""

    artifact: Path
    options: Any
    engine_options: Any
    manifest: Any

    def _session_options(self) -> Any:
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.inter_op_num_threads = 1
        if self.options.threads:
            so.intra_op_num_threads = self.options.threads
        so.log_severity_level = 3
        # Workers spin between the nodes of one run (a decode step is hundreds of small nodes; waking a
        # sleeping worker for each slows decoding) and stop spinning when the run ends, so a pool idling
        # after decoder_step steals no core from the next request's encoder (spinning without the stop
        # slowed t5-small's TTFT).
        so.add_session_config_entry("session.intra_op.allow_spinning", "1")
        so.add_session_config_entry("session.force_spinning_stop", "1")
        if flush_denormals(self.engine_options):
            # Subnormal floats (below 1.2e-38) computed as zero: on x86 each subnormal operand or result
            # costs a microcode assist, and attention meets many (exp of the scores far below a row's
            # maximum), so the prefill gains (benchmarks/denormals.py). ONNX Runtime sets the flags on
            # its threads; `_fp` sets them on the calling thread for the span of each load and call only.
            so.add_session_config_entry("session.set_denormal_as_zero", "1")
        if not self.engine_options.prepack:  # the packed copy would sit beside the weights as read
            so.add_session_config_entry("session.disable_prepacking", "1")
        return so

    @functools.cached_property
    def _fp(self) -> fpenv.EngineEnv:
        """Subnormals flushed on the calling thread while a session loads or runs, if wanted
        (runtimes/host/fpenv.py)."""
        return fpenv.EngineEnv(flush_denormals(self.engine_options))

    def _open(self, file: str, provider: str) -> Any:
        import onnxruntime as ort

        path = self.artifact / file
        try:
            if provider == qnn.EP:
                quantized = self.manifest.quantization is not None
                sha = self.manifest.files.get(file, {}).get("sha256")
                s, report = self._fp.run(qnn.session, path, self._session_options(),
                                          qnn.provider_options(quantized), sha)
                self.npu_reports[file] = report
                return s
            providers = [provider] + (["CPUExecutionProvider"] if provider != "CPUExecutionProvider" else [])
            return self._fp.run(ort.InferenceSession, str(path), self._session_options(), providers=providers)
        except Exception as e:  # ORT raises its own pybind types for unreadable or invalid graphs
            raise ArtifactError(f"onnxruntime cannot load {file} of {self.artifact} on {provider}: {first_line(e)}",
                                f"check it with `edgeseq verify {self.artifact}`, or re-export") from e

    def _cpu_notes(self) -> dict[str, str]:
        """The placement entries for the flag set in `_session_options` (CPU provider only) and for
        a w8a8-token artifact whose 8-bit weights this CPU's integer GEMM saturates (ort_int8.py)."""
        cpu = getattr(self, "provider", None) == "CPUExecutionProvider"
        out = {"denormals": "flushed to zero"} if cpu and flush_denormals(self.engine_options) else {}
        stale = ort_int8.stale_weights(self.manifest) if cpu else None
        return {**out, "warning": stale} if stale else out

    def _npu_placement(self) -> dict[str, Any]:
        """One report over all graphs: node and weight shares, fallbacks per op type."""
        reports = self.npu_reports
        nodes = sum(r["nodes"] for r in reports.values())
        on = sum(r["nodes_on_npu"] for r in reports.values())
        fallback: dict[str, int] = {}
        reasons: dict[str, str] = {}
        for r in reports.values():
            for op, n in r["fallback_ops"].items():
                fallback[op] = fallback.get(op, 0) + n
            reasons.update(r["fallback_reasons"])
        return {"node_share": round(on / nodes, 4) if nodes else 0.0, "nodes": nodes, "nodes_on_npu": on,
                "fallback_ops": fallback, "fallback_reasons": reasons,
                "simulated": qnn.SIMULATED if qnn.simulated() else False,
                "graphs": {f: {k: r[k] for k in ("node_share", "weight_share", "nodes", "compiled")}
                           for f, r in reports.items()}}


GPU_PROVIDERS = ("CUDAExecutionProvider", "TensorrtExecutionProvider")  # their memory is the GPU's
MIN_CAPACITY = 256  # cache positions a request's first buffers hold (SmolLM2-135M: 46 kB a position)
PER_TOKEN = {"input_ids", "attention_mask", "position_ids", "logits_index"}  # step inputs that change every token


@dataclass
class _Buffers(HeldCache):
    """One request's KV cache as buffers ONNX Runtime writes in place: past input name -> [B, Hkv, C, D],
    with OrtValues over the same memory for the IO binding."""

    arrays: dict[str, np.ndarray]
    values: dict[str, Any] = field(default_factory=dict)
    io: Any = None  # the request's IO binding
    bound: bool = False  # the IO binding holds `values` (rebound only when they change)

    def reserve(self, length: int) -> None:
        """Room for `length` positions: the buffers doubled (contents kept) when they hold fewer."""
        cap = next(iter(self.arrays.values())).shape[2]
        if length > cap or not self.values:
            new = max(length, 2 * cap, MIN_CAPACITY) if length > cap else cap
            self._replace({k: _grown(v, new) for k, v in self.arrays.items()})

    def take(self, rows: np.ndarray) -> None:
        self._replace({k: v[rows] for k, v in self.arrays.items()})

    def _replace(self, arrays: dict[str, np.ndarray]) -> None:
        import onnxruntime as ort

        self.arrays = arrays
        self.values = {k: ort.OrtValue.ortvalue_from_numpy(v) for k, v in arrays.items()}
        self.bound = False


def _grown(a: np.ndarray, capacity: int) -> np.ndarray:
    out = np.zeros(a.shape[:2] + (capacity,) + a.shape[3:], a.dtype)
    out[:, :, :a.shape[2]] = a
    return out


class OnnxRuntimeBackend(_Sessions, StepBackend):
    engine = "onnxruntime"
    options_class = OnnxRuntimeOptions
    huge_pages_help = True  # its decode gains from huge pages (benchmarks/huge_pages.py)
    _in_place: str | None = None  # the component whose cache lives in `_Buffers`

    def _load(self) -> None:
        row = _row(self.engine, self.device)
        if row.target == qnn.EP:
            raise DeviceError(f"{self.artifact} has dynamic shapes; Qualcomm HTP compiles fixed shapes only",
                              "re-export it with --target npu (edgeseq export MODEL --format onnx --target npu)")
        self.provider, self.device_label = row.target, row.label
        # MatMulNBits accuracy_level 4 and the integer GEMM of w8a8-token: matmuls run in int8
        if self.manifest.quantization in ("w4a8", "w8a8", "w8a8-token"):
            self.precision = "int8"
        self.npu_reports: dict[str, dict[str, Any]] = {}
        self.sessions = {name: self._open(comp.file, self.provider) for name, comp in self.manifest.components.items()}
        self._outputs = {n: [o.name for o in s.get_outputs()] for n, s in self.sessions.items()}
        self._inputs = {n: {i.name for i in s.get_inputs()} for n, s in self.sessions.items()}
        step = "decoder" if self.manifest.kind == "decoder-only" else "decoder_step"
        gpu = self.provider in GPU_PROVIDERS
        self.device_cache = gpu if self.engine_options.device_cache is None else self.engine_options.device_cache
        self.ort_device = ("cuda", 0) if gpu else ("cpu", 0)  # where the cache's OrtValues live
        wanted = self.engine_options.kv_buffer and not self.device_cache
        if wanted and self.provider == "CPUExecutionProvider" \
                and "GroupQueryAttention" in self.manifest.components[step].contrib_ops:
            self._in_place = step
            # bound each step: what changes every token; the rest (an encoder-decoder's cross-attention
            # cache and encoder mask, fixed for a request) with the past.* buffers, only when they change
            fed = sorted(n for n in self._inputs[step] if not n.startswith("past."))
            self._fed = [n for n in fed if n in PER_TOKEN]
            self._fed_once = [n for n in fed if n not in PER_TOKEN]
            logits = next(o for o in self.sessions[step].get_outputs() if o.name == "logits")
            # the graph's own width (a manifest edited by hand may say otherwise; the graph is what runs)
            self._vocab = logits.shape[-1] if isinstance(logits.shape[-1], int) else self.manifest.dims["vocab_size"]

    def graph_inputs(self, component: str) -> set[str]:
        return set(self._inputs[component])

    def run(self, component: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        wanted = self._inputs[component]
        outs = self._fp.run(self.sessions[component].run, None, {k: v for k, v in feeds.items() if k in wanted})
        return dict(zip(self._outputs[component], outs))

    def cache_form(self) -> CacheForm[Any]:
        if self.device_cache:
            from .ort_device import DeviceValues

            return DeviceValues(self)
        return BoundBuffers(self) if self._in_place else super().cache_form()

    def placement(self) -> dict[str, Any]:
        out = {"provider": self.provider, "note": "whole graph assigned to one provider by ORT"}
        return {**out, **self._cache_placement(), **self._cpu_notes()}


class BoundBuffers(CacheForm[_Buffers]):
    """The cache in buffers the kernel appends to: bound once per request as both the past.* input and
    the present.* output of the step, rebound only when the buffers are replaced (grown, reordered)."""

    name = "buffers"
    holes = False  # the kernel rotates by cache slot

    def __init__(self, backend: OnnxRuntimeBackend) -> None:
        super().__init__(backend)
        self.session = backend.sessions[self.component]
        self.fed, self.fed_once, self.vocab = backend._fed, backend._fed_once, backend._vocab
        self.fp = backend._fp

    def describe(self) -> str:
        return "buffers appended in place (GroupQueryAttention, IO binding)"

    def new(self, state: State) -> None:
        state.mask = np.zeros((state.batch, 0), np.int64)
        state.held = _Buffers(self.arrays(state.batch, 0))  # [B, Hkv, 0, D]: grown at the first step

    def step(self, state: State, feeds: dict[str, Any], signature: str | None = None) -> np.ndarray:
        held: _Buffers = state.held  # type: ignore[assignment]  # not self.held(): two calls a token
        held.reserve(feeds["attention_mask"].shape[1])
        if held.io is None:
            held.io = self.session.io_binding()
        if not held.bound:  # past.i.x in, present.i.x out: one buffer. Bound once per state: that
            # spares each step re-binding every buffer and reading back every output
            for name, value in held.values.items():
                held.io.bind_ortvalue_input(name, value)
                held.io.bind_ortvalue_output(name.replace("past.", "present.", 1), value)
            for name in self.fed_once:  # a reorder of the cross cache replaces the buffers too: rebound then
                held.io.bind_cpu_input(name, feeds[name])
            held.bound = True
        for name in self.fed:
            held.io.bind_cpu_input(name, feeds[name])
        # each step's logits go to a new array, handed over as they are: a copy out of one bound buffer
        # costs more, the most where the two addresses collide modulo 4 KiB
        picked = feeds.get("logits_index")  # a verify step returns several positions per row
        rows = state.batch if picked is None else state.batch * len(picked)
        logits = np.empty((rows, self.vocab), np.float32)
        held.io.bind_output("logits", "cpu", 0, np.float32, list(logits.shape), logits.ctypes.data)
        self.fp.run(self.session.run_with_iobinding, held.io)
        return logits

    def reorder(self, state: State, rows: np.ndarray) -> None:
        self.held(state).take(np.asarray(rows))

    def forget(self, state: State, keep: int, real: np.ndarray) -> None:
        """Nothing: the kernel reads how much of the buffers is valid from the mask, cut by trim."""


class OnnxRuntimeStaticBackend(_Sessions, StaticStepBackend):
    """Static-shape ONNX artifacts: one session per (component, signature) graph."""

    engine = "onnxruntime"
    options_class = OnnxRuntimeOptions
    compile_cache = True  # on HTP, compiled graphs are cached (a second load reads them)

    def _load(self) -> None:
        row = _row(self.engine, self.device)
        self.provider, self.device_label = row.target, row.label
        self.npu_reports = {}
        self.sessions: dict[tuple[str, str], Any] = {}
        for name, comp in self.manifest.components.items():
            files = comp.signature_files or {sig: comp.file for sig in comp.signatures}
            for sig, file in files.items():
                self.sessions[(name, sig)] = self._open(file, self.provider)
        self._io = {key: ([o.name for o in s.get_outputs()],
                          {i.name: _NP_TYPES.get(i.type, np.float32) for i in s.get_inputs()})
                    for key, s in self.sessions.items()}
        if self.provider == qnn.EP:
            self.precision = "int (QDQ)" if self.manifest.quantization else "f16 (HTP)"

    def graph_inputs(self, component: str) -> set[str]:
        sig = list(self.manifest.components[component].signatures)[-1]
        return set(self._io[(component, sig)][1])

    def invoke(self, component: str, signature: str, feeds: dict[str, Any]) -> dict[str, Any]:
        outputs, types = self._io[(component, signature)]
        given = {k: (v if v.dtype == types[k] else v.astype(types[k])) for k, v in feeds.items() if k in types}
        return dict(zip(outputs, self._fp.run(self.sessions[(component, signature)].run, None, given)))

    def placement(self) -> dict[str, Any]:
        out = {"provider": self.provider, **super().placement(), **self._cpu_notes()}
        if self.provider == qnn.EP:
            out["npu"] = self._npu_placement()
        return out


_NP_TYPES = {"tensor(float)": np.float32, "tensor(int64)": np.int64, "tensor(int32)": np.int32,
             "tensor(float16)": np.float16, "tensor(bool)": np.bool_}
