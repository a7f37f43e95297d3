"""The PyTorch engines. `--engine torch` (the reference: the step modules, eager) and `--engine
torch-compile` (compiled, with a preallocated cache and CUDA graphs: reference/compiled.py) are no
engines of the registry: they rebuild the model from the artifact's recorded source and run none of
the artifact's graphs."""
from __future__ import annotations

from pathlib import Path
from typing import Any

NAME = "torch"  # what --engine / edgeseq.load(engine=...) call the reference
COMPILED = "torch-compile"  # the compiled PyTorch engine
NAMES = (NAME, COMPILED)


def open_runner(artifact: Path, manifest: Any, device: str = "cpu", engine: str | None = None,
                options: Any = None) -> Any:
    """The backend for `engine`: a PyTorch engine for one of NAMES, else the registry's engine
    (runtimes.open_backend). Callers that take a user's --engine open through here."""
    from ..runtimes import BackendOptions, default_engine, open_backend

    if engine is None and default_engine(manifest) in NAMES:  # a source-only artifact (export/source_only.py)
        engine = default_engine(manifest)
    if engine not in NAMES:
        return open_backend(artifact, manifest, device, engine, options)
    if engine == COMPILED:
        from .compiled import CompiledBackend as Backend
    else:
        from .torch_runner import TorchBackend as Backend
    # the common options (threads, precision, huge_pages), and torch-compile's own: StepBackend checks them
    return Backend(Path(artifact), manifest, device, options or BackendOptions())


def options_class(engine: str) -> Any:
    """The engine options dataclass of a PyTorch engine."""
    if engine == COMPILED:
        from .compiled import CompileOptions

        return CompileOptions
    from ..runtimes.options import EngineOptions

    return EngineOptions


def device_rows() -> tuple[Any, ...]:
    """The PyTorch engines' devices, for `edgeseq devices`."""
    from .torch_runner import rows_of

    return (*rows_of(NAME), *rows_of(COMPILED))
