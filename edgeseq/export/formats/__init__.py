"""The one format table, built from the exporter modules' own declarations.

Every module here that defines `FORMAT = FormatSpec(...)` is an artifact format: adding one is that
module plus the engine that reads it (runtimes/engines/). Exporter modules import torch and their
converters inside functions only, so reading the declarations costs nothing.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType

from ...declarations import Declared
from ...errors import require

ADD_ONE = "a new format is a module in edgeseq/export/formats/ that declares FORMAT = FormatSpec(...)"


@dataclass(frozen=True)
class FormatSpec:
    name: str  # --format NAME
    weights: tuple[str, ...]  # --weights it writes (the first is the default, fp32)
    engine: str  # the engine that reads it by default (recorded as Manifest.engine)
    static: bool = False  # compiles fixed shapes (steps/static.py)
    npu_exporter: str | None = None  # --target npu: the module of static, NPU-ready graphs
    npu_weights: tuple[str, ...] = ()  # and the weights that one writes
    requires: tuple[tuple[str, str], ...] = ()  # (importable module, pip extra) exporting needs
    options: tuple[str, ...] = ()  # keyword options its export_component takes (onnx: ort_kernels)
    rank: int = 50  # listing order (--format help, errors)
    # (--weights, what an audio encoder gets instead): recipes that moved the real Whisper tiny.en
    # encoder's output past the parity bound keep that graph at a finer one (docs/speech.md)
    audio_encoder: tuple[tuple[str, str], ...] = ()

    def component_weights(self, inputs: list[str], weights: str) -> str:
        """The weights one graph is written with: `weights`, or for an audio encoder (log-mel features
        in) its substitute in `audio_encoder`."""
        return dict(self.audio_encoder).get(weights, weights) if inputs[:1] == [AUDIO_INPUT] else weights


AUDIO_INPUT = "input_features"  # a speech encoder's input (models/families/whisper.py)


_TABLE = Declared(__name__, "FORMAT", FormatSpec, "format", ADD_ONE)


def formats() -> dict[str, FormatSpec]:
    return _TABLE.records()


def spec(format: str) -> FormatSpec:
    return _TABLE.get(format)


def exporter(format: str, target: str = "cpu") -> ModuleType:
    """The module that writes `format` for `target` (cpu: any engine; npu: static NPU graphs), after
    checking the packages exporting needs (a MissingDependencyError names the pip extra)."""
    s = spec(format)
    require("torch", "export")
    require("onnx", "export")
    for module, extra in s.requires:
        require(module, extra)
    if target == "npu":
        assert s.npu_exporter, f"{format} has no npu exporter"
        return importlib.import_module(s.npu_exporter)
    return _TABLE.module(format)  # type: ignore[no-any-return]
