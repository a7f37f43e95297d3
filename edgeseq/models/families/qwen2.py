"""Qwen2 family (Qwen2, Qwen2.5): Llama-shaped with q/k/v biases (fused.packed carries them), a tied or
untied LM head, and sliding-window attention on the layers the config's layer_types name."""
from __future__ import annotations

from typing import Any

from ..spec import Dims
from . import Family, register
from .llama import LlamaStep, check_rope, preset_config
from .llama import dims as llama_dims


def layer_window(c: Any, layer: int) -> int | None:
    """transformers' rule: a layer typed "sliding_attention" sees the last `sliding_window` tokens (the
    config sets sliding_window to None unless use_sliding_window)."""
    types = getattr(c, "layer_types", None)
    if c.sliding_window is None or not types or types[layer] != "sliding_attention":
        return None
    return int(c.sliding_window)


class Qwen2Step(LlamaStep):
    """LlamaStep's contract; only the per-layer window differs (q/k/v biases ride in the projections)."""

    def __init__(self, hf: Any) -> None:
        super().__init__(hf)
        self.windows = [layer_window(hf.config, i) for i in range(len(self.layers))]

    def window(self, layer: int) -> int | None:
        return self.windows[layer]


def dims(c: Any) -> Dims:
    check_rope(c)
    d = llama_dims(c)
    d.sliding_window = max((layer_window(c, i) or 0) for i in range(c.num_hidden_layers))
    return d


# Qwen is trained without a BOS prefix: its config names <|endoftext|> as BOS, its tokenizer adds none
register(Family("qwen2", {"qwen2": "decoder-only"}, dims, decoder=Qwen2Step, gguf_architectures=("qwen2",),
                preset_config=preset_config, prepend_bos=False))
