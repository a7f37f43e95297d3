"""The one engine table, built from the engine modules' own declarations.

Every module in `edgeseq/runtimes/engines/` that defines `ENGINE = EngineSpec(...)` is an engine:
adding one is that module plus its pip extra in pyproject.toml. Engine modules import their engine
library (onnxruntime, openvino, ai_edge_litert) inside functions only, so reading the declarations
costs nothing; an engine whose library is absent is refused, when used, with the pip extra to install.
"""
from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from ..declarations import Declared
from ..errors import MissingDependencyError
from .devices import DeviceRow
from .options import EngineOptions

PACKAGE = "edgeseq.runtimes.engines"
ADD_ONE = "a new engine is a module in edgeseq/runtimes/engines/ that declares ENGINE = EngineSpec(...)"


@dataclass(frozen=True)
class EngineSpec:
    name: str  # --engine NAME
    backend: str  # the module's class for dynamic-shape artifacts
    package: str  # the importable library the engine runs on
    install: str  # what brings that library: a pip command naming the extra
    formats: tuple[str, ...]  # artifact formats it reads
    devices: tuple[DeviceRow, ...]  # its rows of the device table, in order of preference
    options: type[EngineOptions] = EngineOptions  # its typed settings
    static_backend: str | None = None  # its class for static-shape artifacts; None: it cannot run them
    precisions: tuple[str, ...] = ("f32",)  # compute precisions `profile --auto` tries
    rank: int = 50  # listing order (`edgeseq devices`, --engine help, the engine tried first on a device)
    # resident bytes per byte of weight files once loaded and warmed up (the engine's repacked copies
    # included), per --weights ("*": any other), as measured (docs/performance.md); --max-memory's
    # estimate (resources.estimate) scales an artifact's weight bytes by it
    weights_resident: tuple[tuple[str, float], ...] = (("*", 1.0),)

    def resident_factor(self, weights: str) -> float:
        table = dict(self.weights_resident)
        return table.get(weights, table.get("*", 1.0))


_TABLE = Declared(PACKAGE, "ENGINE", EngineSpec, "engine", ADD_ONE)


def engines() -> dict[str, EngineSpec]:
    """Every declared engine, name -> declaration, in listing order."""
    return _TABLE.records()


def names() -> list[str]:
    return list(_TABLE.found())


def spec(engine: str) -> EngineSpec:
    return _TABLE.get(engine, " (and torch, the PyTorch reference)")


def module(engine: str) -> ModuleType:
    """The engine's module, once its library is known to be installed (else the pip extra to install)."""
    s = spec(engine)
    if importlib.util.find_spec(s.package) is None:
        raise MissingDependencyError(f"engine {engine} needs the Python package '{s.package}', which is not "
                                     "installed", s.install)
    return _TABLE.module(engine)  # type: ignore[no-any-return]


def declared_module(engine: str) -> ModuleType:
    """The engine's module whether or not its library is installed (its probes say what is missing)."""
    spec(engine)
    return _TABLE.module(engine)  # type: ignore[no-any-return]


def readers(format: str) -> list[str]:
    """The engines that read artifacts of `format`."""
    return [n for n, s in engines().items() if format in s.formats]


def device_rows() -> list[DeviceRow]:
    return [r for s in engines().values() for r in s.devices]


def options_for(engine: str, given: Any) -> EngineOptions:
    """`given` (the engine's options dataclass, a dict, or None) as the engine's validated options."""
    from .options import coerce

    return coerce(spec(engine).options, given, engine)


def engine_help() -> str:
    """The --engine help text, from the declarations."""
    parts = [f"{n} ({', '.join(s.formats)})" for n, s in engines().items()]
    return ("engine and the formats it reads: " + "; ".join(parts) + "; torch: the PyTorch reference, rebuilt from "
            "the artifact's recorded source, on cpu or gpu:cuda; torch-compile: the same model compiled, with a "
            "preallocated cache and CUDA graphs (default: the engine the artifact was exported for)")
