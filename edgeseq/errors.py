"""One exception hierarchy. Every error a user can cause says what went wrong and how to fix it.

The CLI prints `error: <message>` plus `hint: <fix>` and exits with the class's `exit_code`;
`--debug` shows the traceback instead.
"""
from __future__ import annotations

import re


class EdgeseqError(Exception):
    """Base class: a message and a hint that names the fix."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message} (hint: {self.hint})"


class UsageError(EdgeseqError):
    """Conflicting or out-of-range options."""

    exit_code = 2


class ModelNotFoundError(EdgeseqError):
    """Unknown preset, missing directory, unreachable hub id."""

    exit_code = 3


class ModelFileError(ModelNotFoundError):
    """A model file that is truncated, corrupt or not of the format its name says."""


class UnsupportedArchitectureError(EdgeseqError):
    exit_code = 4


class MissingDependencyError(EdgeseqError):
    """An optional package (an engine, the export toolchain) is not installed."""

    exit_code = 5


class ArtifactError(EdgeseqError):
    """An artifact directory that is missing files, altered, or from a newer edgeseq."""

    exit_code = 6


class ExportError(EdgeseqError):
    exit_code = 7


class ParityError(ExportError):
    """The exported graphs disagree with the PyTorch reference beyond the tolerance."""

    exit_code = 8


class DeviceError(EdgeseqError):
    """A device that this engine or host does not have."""

    exit_code = 9


class InputError(EdgeseqError):
    """A prompt that cannot be run: empty, too long for the model."""

    exit_code = 10


class RemoteError(EdgeseqError):
    """A remote device (`--on ssh://...`) that cannot be reached, logged into, installed on or run on."""

    exit_code = 13


def require(module: str, extra: str) -> None:
    """Raise MissingDependencyError naming the pip extra when `module` cannot be imported."""
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise MissingDependencyError(
            f"this needs the Python package '{module}', which is not installed",
            f"pip install 'edgeseq[{extra}]' -c constraints.txt",
        )


_WHERE = re.compile(r"^(Exception from \S+:\d+:|Check '.*' failed at \S+:\d+:)$")


def first_line(e: BaseException) -> str:
    """An engine's exception as one short line for an error message (engines raise multi-line C++ text):
    its first line that says what went wrong, past OpenVINO's source-location lines."""
    lines = [x.strip() for x in str(e).strip().splitlines() if x.strip()]
    said = [x for x in lines if not _WHERE.match(x)]
    return (said or lines)[0][:200] if lines else type(e).__name__
