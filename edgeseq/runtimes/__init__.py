"""Engines, registered in one table as names mapped to lazily imported implementations."""
from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from ..errors import ArtifactError, MissingDependencyError, UsageError
from ..artifact.manifest import Manifest
from .base import BackendOptions, State, StepBackend

# engine -> (module, class, pip extra / package that brings it, formats it reads)
ENGINES: dict[str, tuple[str, str, str, tuple[str, ...]]] = {
    "onnxruntime": ("edgeseq.runtimes.engines.onnxruntime", "OnnxRuntimeBackend", "onnxruntime", ("onnx",)),
    # OpenVINO reads ONNX graphs too, so an ONNX artifact can be compared on both engines
    "openvino": ("edgeseq.runtimes.engines.openvino", "OpenVinoBackend", "'edgeseq[openvino]'", ("openvino", "onnx")),
    "litert": ("edgeseq.runtimes.engines.litert", "LiteRtBackend", "'edgeseq[litert]'", ("tflite",)),
    # the PyTorch reference: rebuilds the model from the manifest's source, so it reads any artifact
    "torch": ("edgeseq.reference.torch_runner", "TorchBackend", "'edgeseq[export]'", ("onnx", "openvino", "tflite")),
}
# engine -> its class for static-shape artifacts (steps/static.py); engines not listed cannot run them
STATIC_CLASSES = {"onnxruntime": "OnnxRuntimeStaticBackend", "litert": "LiteRtBackend",
                  "openvino": "OpenVinoStaticBackend",
                  "torch": "TorchBackend"}  # torch runs its own dynamic-shape modules, not the static graphs
DEFAULT_ENGINE = {"onnx": "onnxruntime", "openvino": "openvino", "tflite": "litert"}


def engine_module(engine: str) -> Any:
    if engine not in ENGINES:
        raise UsageError(f"unknown engine '{engine}'", f"engines: {', '.join(ENGINES)}")
    module, _, package, _ = ENGINES[engine]
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise MissingDependencyError(f"engine {engine} needs a package that is not installed ({e.name})",
                                     f"pip install {package}") from e


def refusal(engine: str, manifest: Manifest) -> str | None:
    """Why `engine` cannot run this artifact at all (e.g. OpenVINO and ONNX Runtime's own kernels), or None."""
    check = getattr(engine_module(engine), "refusal", None)
    return check(manifest) if check else None


def refusal_fix(engine: str, manifest: Manifest) -> str:
    """The export that avoids what `refusal` names ("" when the engine says none)."""
    fix = getattr(engine_module(engine), "refusal_fix", None)
    return fix(manifest) if fix else ""


def device_engine(manifest: Manifest, device: str) -> str:
    """The engine for an artifact on `device` when none is named: the format's own if it has an
    available row for the device, else the first other engine that runs the artifact's graphs and
    has one (an ONNX artifact on `npu` goes to OpenVINO's NPU where ONNX Runtime has none). The
    torch reference is never picked: it does not run the artifact's graphs."""
    from ..errors import EdgeseqError
    from . import devices

    own = DEFAULT_ENGINE.get(manifest.format, "")
    if device.partition(":")[0] == "cpu":
        return own
    order = [own] + [e for e, v in ENGINES.items() if e not in (own, "torch") and manifest.format in v[3]
                     and (not manifest.static or e in STATIC_CLASSES)]
    for engine in order:
        try:
            module, rows = engine_module(engine), devices.rows(engine, device)
        except EdgeseqError:  # not installed, or no such device class for this engine
            continue
        if engine != own and refusal(engine, manifest):  # cannot run these graphs on any device
            continue
        if any(module.probe(r) is None for r in rows):
            return engine
    return own  # none has it: the format's own engine says which rows exist and why each is unavailable


def open_backend(artifact: Path, manifest: Manifest, device: str = "cpu", engine: str | None = None,
                 options: BackendOptions | None = None) -> StepBackend:
    if not engine:
        engine = device_engine(manifest, device)
        if engine != DEFAULT_ENGINE.get(manifest.format, ""):
            import sys

            print(f"edgeseq: {device}: {DEFAULT_ENGINE.get(manifest.format)} has none here; using --engine {engine}",
                  file=sys.stderr)
    if engine not in ENGINES:
        raise UsageError(f"unknown engine '{engine}'", f"engines: {', '.join(ENGINES)}")
    if manifest.format not in ENGINES[engine][3]:
        raise ArtifactError(f"engine {engine} cannot run a {manifest.format} artifact",
                            f"use --engine {DEFAULT_ENGINE.get(manifest.format, '?')} or export with --format "
                            f"{ENGINES[engine][3][0]}")
    name = ENGINES[engine][1]
    if manifest.static:
        if engine not in STATIC_CLASSES:
            raise ArtifactError(f"engine {engine} cannot run a static-shape artifact ({artifact})",
                                f"use --engine {' or '.join(STATIC_CLASSES)}, or export without --target npu")
        name = STATIC_CLASSES[engine]
    cls = getattr(engine_module(engine), name)
    return cls(Path(artifact), manifest, device, options or BackendOptions())  # type: ignore[no-any-return]


__all__ = ["ENGINES", "DEFAULT_ENGINE", "BackendOptions", "State", "StepBackend", "open_backend", "engine_module"]
