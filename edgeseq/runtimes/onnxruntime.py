"""ONNX Runtime engine: one InferenceSession per component, execution provider from the device table."""
from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import ArtifactError, DeviceError
from . import devices
from .base import StepBackend


def available_targets() -> list[str]:
    import onnxruntime as ort

    return list(ort.get_available_providers())


def probe(row: devices.DeviceRow) -> str | None:
    """None when the row can run here, else the reason it cannot."""
    try:
        have = available_targets()
    except ImportError:
        return "onnxruntime is not installed"
    return None if row.target in have else f"{row.target} not in this onnxruntime build"


class OnnxRuntimeBackend(StepBackend):
    engine = "onnxruntime"

    def _load(self) -> None:
        import onnxruntime as ort

        rows = devices.rows(self.engine, self.device)
        have = available_targets()
        usable = [r for r in rows if r.target in have]
        if not usable:
            raise DeviceError(
                f"onnxruntime on this host has no {self.device} provider (has: {', '.join(have)})",
                "install one of: " + "; ".join(r.install for r in rows))
        self.provider = usable[0].target
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.inter_op_num_threads = 1
        if self.options.threads:
            so.intra_op_num_threads = self.options.threads
        so.log_severity_level = 3
        # Each session has its own thread pool; a pool that spin-waits after decode_step steals a core
        # from the encoder of the next request (measured on 2 cores: t5-small TTFT 58 -> 31 ms with
        # spinning off, decode rate within 5%).
        spin = "1" if self.options.extra.get("spin") else "0"
        so.add_session_config_entry("session.intra_op.allow_spinning", spin)
        providers = [self.provider] + (["CPUExecutionProvider"] if self.provider != "CPUExecutionProvider" else [])
        self.sessions: dict[str, Any] = {}
        for name, comp in self.manifest.components.items():
            try:
                self.sessions[name] = ort.InferenceSession(str(self.artifact / comp.file), so, providers=providers)
            except Exception as e:  # ORT raises its own pybind types for unreadable or invalid graphs
                first = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
                raise ArtifactError(f"onnxruntime cannot load {comp.file} of {self.artifact}: {first}",
                                    f"check it with `edgeseq verify {self.artifact}`, or re-export") from e
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
