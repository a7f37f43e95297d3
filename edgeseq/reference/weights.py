"""Weights of the torch-compile engine: half-precision parameters and int8 weight-only linear layers.

Only parameters change dtype: buffers (rotary inverse frequencies, position tables) stay float32,
so positions keep their precision. Int8 weight-only keeps one int8 matrix and one scale per output
channel; its forward dequantizes into the activation dtype right before the matmul, a pattern
torch.compile fuses into the matmul's load on a GPU (the weight is read from memory as int8).
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


def cast_parameters(model: nn.Module, dtype: torch.dtype) -> None:
    """Every floating parameter of `model` in `dtype` (tied parameters stay tied: cast in place)."""
    with torch.no_grad():
        for p in model.parameters():
            if p.is_floating_point() and p.dtype != dtype:
                p.data = p.data.to(dtype)


class Int8Linear(nn.Module):
    """y = x W^T + b with W stored as int8 [out, in] and a float scale per output row (symmetric)."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, dtype: torch.dtype) -> None:
        super().__init__()
        w = weight.detach().float()
        scale = w.abs().amax(dim=1).clamp(min=1e-12) / 127.0
        self.register_buffer("weight", torch.round(w / scale[:, None]).clamp(-127, 127).to(torch.int8))
        self.register_buffer("scales", scale.to(dtype))
        self.register_buffer("bias", None if bias is None else bias.detach().to(dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.linear(x, self.weight.to(x.dtype)) * self.scales.to(x.dtype)
        return y if self.bias is None else y + self.bias.to(x.dtype)


def int8_linears(roots: list[nn.Module], dtype: torch.dtype) -> int:
    """Replace every nn.Linear (and GPT-2's Conv1D, its transpose) under `roots` by an Int8Linear; returns
    how many. A layer reached from several roots (the model and the step modules that hold its parts)
    becomes one Int8Linear. Embedding tables stay in float (a lookup reads one row, not the matrix)."""
    made: dict[int, Int8Linear] = {}
    swaps: list[tuple[nn.Module, str, nn.Module]] = []
    for root in roots:
        for parent in root.modules():
            for name, child in parent.named_children():
                if id(child) not in made:
                    if isinstance(child, nn.Linear):
                        made[id(child)] = Int8Linear(child.weight, child.bias, dtype)
                    elif type(child).__name__ == "Conv1D":  # transformers' GPT-2 projection: weight [in, out]
                        weight: Any = child.weight
                        made[id(child)] = Int8Linear(weight.t(), getattr(child, "bias", None), dtype)
                if id(child) in made:
                    swaps.append((parent, name, made[id(child)]))
    for parent, name, module in swaps:
        setattr(parent, name, module)
    return len(made)
