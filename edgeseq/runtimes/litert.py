"""LiteRT engine (ai-edge-litert's Interpreter) for TFLite artifacts: XNNPACK on CPU, delegates for
GPU and NPU.

One interpreter per component; signatures are run by name through signature runners, inputs
mapped by the names the manifest records (`signature_name`), never by position. The runner copies
inputs in and outputs out on each call, the fixed-size cache included: that copy is part of what
this engine costs from Python and is measured as such. GPU and NPU rows need a delegate library
(`delegate` option / `--delegate PATH`), which ai-edge-litert does not ship for Linux x86-64.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ArtifactError, DeviceError
from . import devices
from .static import StaticStepBackend


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


class LiteRtBackend(StaticStepBackend):
    engine = "litert"

    def _load(self) -> None:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # "Created TensorFlow Lite XNNPACK delegate" per load
        from ai_edge_litert.interpreter import Interpreter, load_delegate

        delegate_path = self.options.extra.get("delegate")
        rows = devices.rows(self.engine, self.device)
        reasons = [probe(r, delegate_path) for r in rows]
        if all(reasons):
            raise DeviceError(f"LiteRT cannot run on {self.device} here: {reasons[0]}",
                              "install one of: " + "; ".join(r.install for r in rows))
        self.target = rows[reasons.index(None)].target
        delegates = []
        if self.target != "XNNPACK":
            try:
                delegates = [load_delegate(delegate_path)]
            except (ValueError, OSError) as e:
                raise DeviceError(f"cannot load delegate {delegate_path}: {e}",
                                  "pass the vendor's TFLite delegate library built for this host") from e
        self.precision = "f32 (weights int8, int8 compute)" if self.manifest.quantization == "int8" else "f32"
        self.interpreters: dict[str, Any] = {}
        self._runners: dict[tuple[str, str], Any] = {}
        self._in: dict[str, dict[str, tuple[str, Any]]] = {}
        for name, comp in self.manifest.components.items():
            try:
                it = Interpreter(model_path=str(self.artifact / comp.file), num_threads=self.options.threads,
                                 experimental_delegates=delegates or None)
            except (ValueError, RuntimeError) as e:
                first = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
                raise ArtifactError(f"LiteRT cannot load {comp.file} of {self.artifact}: {first}",
                                    f"check it with `edgeseq verify {self.artifact}`, or re-export") from e
            self.interpreters[name] = it
            have = set(it.get_signature_list())
            missing = sorted(set(comp.signatures) - have)
            if missing:
                raise ArtifactError(f"{comp.file} lacks signatures {missing} that the manifest lists",
                                    "re-export the artifact; do not edit edgeseq.json by hand")
            # manifest name -> (signature input name, dtype the file takes: int64 inputs became int32)
            self._in[name] = {d["name"]: (d.get("signature_name", d["name"]), np.dtype(d["dtype"])) for d in comp.inputs}

    def graph_inputs(self, component: str) -> set[str]:
        return set(self._in[component])

    def _runner(self, component: str, signature: str) -> Any:
        key = (component, signature)
        if key not in self._runners:
            self._runners[key] = self.interpreters[component].get_signature_runner(signature)
        return self._runners[key]

    def invoke(self, component: str, signature: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        names = self._in[component]
        args = {names[k][0]: np.asarray(v, names[k][1]) for k, v in feeds.items() if k in names}
        return self._runner(component, signature)(**args)  # type: ignore[no-any-return]

    def placement(self) -> dict[str, Any]:
        out = super().placement()
        out["target"] = self.target
        return out
