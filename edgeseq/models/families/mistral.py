"""Mistral family: Llama-shaped, with sliding-window attention on every layer when the config's
sliding_window is set (None: full causal attention, as Llama). The window is part of the additive
mask, so the fused kernel route (steps/fused.py) and static shapes keep it."""
from __future__ import annotations

from typing import Any

from ..spec import Dims
from . import Family, register
from .llama import LlamaStep, check_rope
from .llama import dims as llama_dims


class MistralStep(LlamaStep):
    def __init__(self, hf: Any) -> None:
        super().__init__(hf)
        w = hf.config.sliding_window
        self.sliding = None if w is None else int(w)

    def window(self, layer: int) -> int | None:
        return self.sliding


def dims(c: Any) -> Dims:
    check_rope(c)
    d = llama_dims(c)
    d.sliding_window = int(c.sliding_window or 0)
    return d


# llama.cpp writes Mistral GGUFs as architecture "llama" (transformers reads them as mistral by name)
register(Family("mistral", {"mistral": "decoder-only"}, dims, decoder=MistralStep))
