"""edgeseq's static decoder step under LiteRT-LM's signature contract (export/native/litertlm.py):
inputs `tokens` [1,T] and `input_pos` [T], caches `kv_cache_k_<layer>` / `kv_cache_v_<layer>`,
logits [1,1,V] from `decode`."""
from __future__ import annotations

import torch
from torch import nn


def cache_name(name: str) -> str:
    """edgeseq's cache tensor name as LiteRT-LM's: past.3.key -> kv_cache_k_3 (present.* likewise)."""
    _, layer, kv = name.split(".")
    return f"kv_cache_{kv[0]}_{layer}"


class LiteRtLmStep(nn.Module):
    """edgeseq's static decoder step (`steps.static.Named`) under LiteRT-LM's signature contract."""

    def __init__(self, named: nn.Module, caches: list[str], presents: list[str], length: int, logits: bool) -> None:
        super().__init__()
        self.named, self.caches, self.presents, self.length, self.logits = named, caches, presents, length, logits

    def forward(self, tokens: torch.Tensor, input_pos: torch.Tensor, **kv: torch.Tensor) -> dict[str, torch.Tensor]:
        t = tokens.shape[1]
        # the new tokens take consecutive slots from the first one's position; LiteRT-LM's right-padding
        # (position 0) then lands after the real tokens, where causality hides it and decode overwrites it
        slots = torch.clamp(input_pos[:1].long() + torch.arange(t), max=self.length - 1)  # [T]
        mask = (torch.arange(self.length) <= slots[-1]).long()[None]  # [1, C]
        feeds = {"input_ids": tokens.long(), "attention_mask": mask, "position_ids": slots[None],
                 "cache_position": slots}
        feeds.update({n.replace(".", "_"): kv[cache_name(n)] for n in self.caches})
        out = self.named(**feeds)
        result = {cache_name(n): out[n] for n in self.presents}
        if self.logits:
            result["logits"] = out["logits"][:, None, :]  # [1, 1, V]
        return result
