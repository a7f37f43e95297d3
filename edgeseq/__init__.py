"""edgeseq: export, run and profile small language models on edge devices.

    import edgeseq
    model = edgeseq.load("smol/")                      # an artifact written by `edgeseq export`
    print(model.generate("Hello", max_new_tokens=32).texts[0])
    for piece in model.stream("Tell me a story", chat=True):
        print(piece, end="")

Loading and generating import no torch; `edgeseq.export_model` needs the `export` extra.
"""
from __future__ import annotations

from typing import Any

from .api import Generation, Model, load
from .errors import EdgeseqError
from .generate.config import GenerationConfig

__version__ = "0.1.0"


def export_model(source: str, out: str, **options: Any) -> Any:
    """Export `source` (preset:NAME, a packaged name, a HF dir, a .gguf) to an artifact directory."""
    from .export.pipeline import export as _export

    return _export(source, out, **options)


__all__ = ["load", "export_model", "Model", "Generation", "GenerationConfig", "EdgeseqError", "__version__"]
