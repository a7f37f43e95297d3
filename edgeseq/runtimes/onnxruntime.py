"""ONNX Runtime engine: one InferenceSession per graph, execution provider from the device table.

Dynamic-shape artifacts run on `OnnxRuntimeBackend` (one graph per component); static-shape ones
(`--target npu`: one graph per signature) on `OnnxRuntimeStaticBackend`, which is also the way onto
Qualcomm's NPU (runtimes/qnn.py): HTP compiles fixed shapes only.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ArtifactError, DeviceError, first_line
from . import devices, qnn
from .base import StepBackend
from .static import StaticStepBackend


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


def _row(engine: str, device: str) -> devices.DeviceRow:
    return devices.pick(engine, device, probe, "onnxruntime", "provider")


class _Sessions:
    """Session options and loading shared by both backends."""

    artifact: Path
    options: Any
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
        # sleeping worker for each cost 5-9% of the decode rate) and stop spinning when the run ends, so a
        # pool idling after decoder_step steals no core from the next request's encoder. Measured on 2
        # cores (`edgeseq profile`, 128/64, 5 runs each without spinning, 2 with): SmolLM2 decode 47.5 ->
        # 51.2 tok/s, t5-small 233 -> 253, TTFT unchanged; spinning without the stop raised t5-small's
        # TTFT from 26 to 60 ms.
        so.add_session_config_entry("session.intra_op.allow_spinning", "1")
        so.add_session_config_entry("session.force_spinning_stop", "1")
        return so

    def _open(self, file: str, provider: str) -> Any:
        import onnxruntime as ort

        path = self.artifact / file
        try:
            if provider == qnn.EP:
                quantized = self.manifest.quantization is not None
                sha = self.manifest.files.get(file, {}).get("sha256")
                s, report = qnn.session(path, self._session_options(), qnn.provider_options(quantized), sha)
                self.npu_reports[file] = report
                return s
            providers = [provider] + (["CPUExecutionProvider"] if provider != "CPUExecutionProvider" else [])
            return ort.InferenceSession(str(path), self._session_options(), providers=providers)
        except Exception as e:  # ORT raises its own pybind types for unreadable or invalid graphs
            raise ArtifactError(f"onnxruntime cannot load {file} of {self.artifact} on {provider}: {first_line(e)}",
                                f"check it with `edgeseq verify {self.artifact}`, or re-export") from e

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


class OnnxRuntimeBackend(_Sessions, StepBackend):
    engine = "onnxruntime"

    def _load(self) -> None:
        row = _row(self.engine, self.device)
        if row.target == qnn.EP:
            raise DeviceError(f"{self.artifact} has dynamic shapes; Qualcomm HTP compiles fixed shapes only",
                              "re-export it with --target npu (edgeseq export MODEL --format onnx --target npu)")
        self.provider, self.device_label = row.target, row.label
        if self.manifest.quantization == "w4a8":  # MatMulNBits accuracy_level 4: matmuls run in int8
            self.precision = "int8"
        self.npu_reports: dict[str, dict[str, Any]] = {}
        self.sessions = {name: self._open(comp.file, self.provider) for name, comp in self.manifest.components.items()}
        self._outputs = {n: [o.name for o in s.get_outputs()] for n, s in self.sessions.items()}
        self._inputs = {n: {i.name for i in s.get_inputs()} for n, s in self.sessions.items()}

    def graph_inputs(self, component: str) -> set[str]:
        return set(self._inputs[component])

    def run(self, component: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        wanted = self._inputs[component]
        outs = self.sessions[component].run(None, {k: v for k, v in feeds.items() if k in wanted})
        return dict(zip(self._outputs[component], outs))

    def placement(self) -> dict[str, Any]:
        return {"provider": self.provider, "note": "whole graph assigned to one provider by ORT"}


class OnnxRuntimeStaticBackend(_Sessions, StaticStepBackend):
    """Static-shape ONNX artifacts: one session per (component, signature) graph."""

    engine = "onnxruntime"
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
        return dict(zip(outputs, self.sessions[(component, signature)].run(None, given)))

    def placement(self) -> dict[str, Any]:
        out = {"provider": self.provider, **super().placement()}
        if self.provider == qnn.EP:
            out["npu"] = self._npu_placement()
        return out


_NP_TYPES = {"tensor(float)": np.float32, "tensor(int64)": np.int64, "tensor(int32)": np.int32,
             "tensor(float16)": np.float16, "tensor(bool)": np.bool_}
