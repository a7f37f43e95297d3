"""The PyTorch reference runner. `--engine torch` names it, but it is no engine of the registry: it
rebuilds the model from the artifact's recorded source and runs none of the artifact's graphs."""
from __future__ import annotations

from pathlib import Path
from typing import Any

NAME = "torch"  # what --engine / edgeseq.load(engine=...) call the reference


def open_runner(artifact: Path, manifest: Any, device: str = "cpu", engine: str | None = None,
                options: Any = None) -> Any:
    """The backend for `engine`: the PyTorch reference for NAME, else the registry's engine
    (runtimes.open_backend). Callers that take a user's --engine open through here."""
    from ..runtimes import BackendOptions, open_backend

    if engine != NAME:
        return open_backend(artifact, manifest, device, engine, options)
    from .torch_runner import TorchBackend

    # takes the common options only (threads, precision, huge_pages): StepBackend checks them
    return TorchBackend(Path(artifact), manifest, device, options or BackendOptions())


def device_rows() -> tuple[Any, ...]:
    """The reference's devices, for `edgeseq devices`."""
    from .torch_runner import ROWS

    return ROWS
