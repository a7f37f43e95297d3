"""Engines: `open_backend` picks the engine's class from the registry (runtimes/registry.py) and opens
an artifact with it. The default engine is the one the artifact was exported for (`Manifest.engine`)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ..artifact.manifest import Manifest
from ..errors import ArtifactError, EdgeseqError
from . import registry
from .base import BackendOptions, State, StepBackend
from .options import EngineOptions


def engine_module(engine: str) -> Any:
    """The engine's module; a MissingDependencyError naming the pip extra when its library is absent."""
    return registry.module(engine)


def default_engine(manifest: Manifest) -> str:
    """The engine the artifact was exported for; for a manifest naming none known, the first reader
    of its format."""
    if manifest.engine in registry.names():
        return manifest.engine
    readers = registry.readers(manifest.format)
    return readers[0] if readers else manifest.engine


def refusal(engine: str, manifest: Manifest) -> str | None:
    """Why `engine` cannot run this artifact at all (e.g. OpenVINO and ONNX Runtime's own kernels), or None."""
    check = getattr(engine_module(engine), "refusal", None)
    return check(manifest) if check else None


def refusal_fix(engine: str, manifest: Manifest) -> str:
    """The export that avoids what `refusal` names ("" when the engine says none)."""
    fix = getattr(engine_module(engine), "refusal_fix", None)
    return fix(manifest) if fix else ""


def runs(engine: str, manifest: Manifest) -> bool:
    """Whether the engine reads this artifact's format and shapes (installed or not)."""
    s = registry.spec(engine)
    return manifest.format in s.formats and (not manifest.static or s.static_backend is not None)


def device_engine(manifest: Manifest, device: str) -> str:
    """The engine for an artifact on `device` when none is named: the artifact's own if it has an
    available row for the device, else the first other engine that runs the artifact's graphs and
    has one (an ONNX artifact on `npu` goes to OpenVINO's NPU where ONNX Runtime has none)."""
    from . import devices

    own = default_engine(manifest)
    if device.partition(":")[0] == "cpu":
        return own
    order = [own] + [e for e in registry.names() if e != own and runs(e, manifest)]
    for engine in order:
        try:
            module, rows = engine_module(engine), devices.rows(engine, device)
        except EdgeseqError:  # not installed, or no such device class for this engine
            continue
        if engine != own and refusal(engine, manifest):  # cannot run these graphs on any device
            continue
        if any(module.probe(r) is None for r in rows):
            return engine
    return own  # none has it: the artifact's own engine says which rows exist and why each is unavailable


def open_backend(artifact: Path, manifest: Manifest, device: str = "cpu", engine: str | None = None,
                 options: BackendOptions | None = None) -> StepBackend:
    """Open `artifact` on `engine` (None: the artifact's own, or the engine that has `device`)."""
    if not engine:
        engine = device_engine(manifest, device)
        if engine != default_engine(manifest):
            from ..console import console

            console.result(f"edgeseq: {device}: {default_engine(manifest)} has none here; using --engine {engine}")
    s = registry.spec(engine)
    if manifest.format not in s.formats:
        readers = registry.readers(manifest.format) or ["torch-compile", "torch"]  # a source-only artifact
        raise ArtifactError(f"engine {engine} cannot run a {manifest.format} artifact",
                            f"use --engine {' or '.join(readers)} or export with --format {s.formats[0]}")
    name = s.backend
    if manifest.static:
        if s.static_backend is None:
            static = [e for e in registry.readers(manifest.format) if registry.spec(e).static_backend]
            raise ArtifactError(f"engine {engine} cannot run a static-shape artifact ({artifact})",
                                f"use --engine {' or '.join(static)}, or export without --target npu")
        name = s.static_backend
    options = options or BackendOptions()
    # checked against the engine's dataclass before anything loads: a wrong name fails fast
    typed = registry.options_for(engine, options.engine_options)
    cls = getattr(engine_module(engine), name)
    opened: StepBackend = cls(Path(artifact), manifest, device, BackendOptions(
        threads=options.threads, precision=options.precision, delegate=options.delegate, engine_options=typed,
        max_memory_mb=options.max_memory_mb))
    return opened


__all__ = ["BackendOptions", "EngineOptions", "State", "StepBackend", "open_backend", "engine_module",
           "default_engine", "device_engine", "refusal", "refusal_fix", "runs"]
