"""Model sources and their description (ModelSpec). Resolving a source needs the `export` extra."""
from typing import Any

from .presets import PRESETS
from .sources import PACKAGED, known_names, resolve
from .spec import Dims, GenerationDefaults, ModelSpec

__all__ = ["PRESETS", "PACKAGED", "FAMILIES", "Dims", "GenerationDefaults", "ModelSpec", "known_names", "resolve"]


def __getattr__(name: str) -> Any:
    """`FAMILIES` on demand: reading it imports the family modules (and torch)."""
    if name == "FAMILIES":
        from .families import model_types

        return model_types()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
