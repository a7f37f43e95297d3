"""Model sources and their description (ModelSpec). Resolving a source needs the `export` extra."""
from .presets import PRESETS
from .sources import PACKAGED, known_names, resolve
from .spec import FAMILIES, Dims, GenerationDefaults, ModelSpec

__all__ = ["PRESETS", "PACKAGED", "FAMILIES", "Dims", "GenerationDefaults", "ModelSpec", "known_names", "resolve"]
