"""Model families: one module per family in this folder, each registering one `Family` record.

A record says which Hugging Face `model_type`s (and GGUF architectures) the family reads, how to
read its shapes from a config, its generation quirks, and the step modules the exporters convert
(steps/: shared attention, norm, rotary and cache blocks). Sources, presets and the step dispatch
ask this registry; no other module names a family. Modules are found here and imported on the
first lookup, so a family that needs torch costs nothing until a model is resolved or exported.

Adding a family: a new module here whose last line is `register(Family(...))`, plus at most one
line in models/presets.py for a random-weight preset of it.
"""
from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, get_args

from ...errors import UnsupportedArchitectureError
from ..spec import Dims, Kind

if TYPE_CHECKING:
    from torch import nn

def hf_config(model_type: str, kw: dict[str, Any]) -> Any:
    """A transformers config of `model_type` with the fields `kw` (the default `Family.preset_config`)."""
    from transformers import AutoConfig

    return AutoConfig.for_model(model_type, **kw)


def hf_model(config: Any) -> Any:
    """A float32 transformers model with random weights for `config` (the default `Family.build`)."""
    import torch

    from ..sources import auto_class

    return auto_class(config).from_config(config, dtype=torch.float32)


@dataclass(frozen=True)
class Family:
    """What edgeseq knows about one model family; `ModelSpec.family` (and manifests) record `name`."""

    name: str
    model_types: Mapping[str, Kind]  # Hugging Face config model_type -> the kind it exports as
    dims: Callable[[Any], Dims]  # config -> the shapes the runtime allocates with
    # step module classes, each built around the float32 model
    decoder: Callable[[Any], nn.Module] | None = None  # decoder-only: one step for prefill and decode
    encoder: Callable[[Any], nn.Module] | None = None  # encoder-decoder: these three
    decoder_init: Callable[[Any], nn.Module] | None = None
    decoder_step: Callable[[Any], nn.Module] | None = None
    gguf_architectures: tuple[str, ...] = ()  # GGUF `general.architecture` values transformers reads as this
    prepend_bos: bool = True  # False: never add BOS to prompts, though the config names one (GPT-2)
    # presets: the config fields of a PRESETS line (model_type removed) -> a config; config -> model
    preset_config: Callable[[str, dict[str, Any]], Any] = hf_config
    build: Callable[[Any], Any] = hf_model
    # a family with its own model format: reads a directory whose config.json names one of its
    # model_types, returning the float32 model and the files its source hash covers
    load_dir: Callable[[Path], tuple[Any, list[Path]]] | None = None
    # speech models: (model, tokenizer.json text) -> the manifest's `audio` section (how the runtime
    # makes the encoder's input from audio; families/whisper.py); None: the encoder reads token ids
    audio: Callable[[Any, str | None], dict[str, Any]] | None = None

    def validate(self) -> None:
        """Reject a record the exporters could not use (a programming error in the family module)."""
        if not self.name or not self.model_types:
            raise ValueError("a family needs a name and at least one model_type")
        for mt, kind in self.model_types.items():
            if kind not in get_args(Kind):
                raise ValueError(f"family {self.name}: model_type {mt!r} has kind {kind!r}, "
                                 f"not one of {get_args(Kind)}")
        kinds = set(self.model_types.values())
        if "decoder-only" in kinds and self.decoder is None:
            raise ValueError(f"family {self.name} reads decoder-only models but declares no decoder step")
        if "encoder-decoder" in kinds and None in (self.encoder, self.decoder_init, self.decoder_step):
            raise ValueError(f"family {self.name} reads encoder-decoder models but lacks encoder, decoder_init "
                             "or decoder_step")


_REGISTRY: dict[str, Family] = {}
_discovered = False


def register(family: Family) -> Family:
    """Add `family` (replacing one of the same name); a model type or GGUF architecture belongs to one family."""
    family.validate()
    for other in _REGISTRY.values():
        if other.name == family.name:
            continue
        if clash := (set(other.model_types) & set(family.model_types)) | \
                (set(other.gguf_architectures) & set(family.gguf_architectures)):
            raise ValueError(f"family {family.name} claims {sorted(clash)}, already read by family {other.name}")
    _REGISTRY[family.name] = family
    return family


def unregister(name: str) -> None:
    _REGISTRY.pop(name, None)


def registered() -> dict[str, Family]:
    """Every family, by name (imports the family modules on the first call)."""
    global _discovered
    if not _discovered:
        for info in pkgutil.iter_modules(__path__):
            if not info.name.startswith("_"):
                importlib.import_module(f"{__name__}.{info.name}")  # its last line registers it
        _discovered = True
    return dict(_REGISTRY)


def model_types() -> dict[str, tuple[str, Kind]]:
    """Every model_type edgeseq reads -> (family name, kind)."""
    return {mt: (f.name, kind) for f in registered().values() for mt, kind in f.model_types.items()}


def for_model_type(model_type: str | None, source: str) -> tuple[Family, Kind]:
    """The family reading `model_type` and its kind; an error listing the supported types otherwise."""
    for f in registered().values():
        if model_type in f.model_types:
            return f, f.model_types[model_type]
    raise UnsupportedArchitectureError(
        f"unsupported architecture '{model_type}' in {source}; supported: {', '.join(sorted(model_types()))}",
        "export a model of a supported family or a preset (edgeseq export preset:NAME), or add a family: "
        "one module in edgeseq/models/families/")


def for_gguf(architecture: str, source: str) -> Family:
    """The family reading GGUF files of `architecture`; an error listing the supported ones otherwise."""
    archs = {a: f for f in registered().values() for a in f.gguf_architectures}
    if architecture not in archs:
        raise UnsupportedArchitectureError(
            f"unsupported GGUF architecture '{architecture}' in {source}; supported: {', '.join(sorted(archs))}",
            "export a GGUF of a supported architecture, or the model's Hugging Face directory")
    return archs[architecture]


def get(name: str) -> Family:
    """The family recorded as `name` (a ModelSpec's or a manifest's `family`)."""
    fams = registered()
    if name not in fams:
        raise UnsupportedArchitectureError(
            f"no model family '{name}' in this edgeseq; known: {', '.join(sorted(fams))}",
            "use the edgeseq version that exported this model, or re-export it with this one")
    return fams[name]
