"""The architecture of "Return of the Encoder" (Elfeki, Liu, Voegele, 2025), written from its description.

Blocks: pre-norm RMSNorm; attention with grouped query heads, rotary position embeddings on
self-attention only (encoder positions centred: position i of an L-token input is i - (L-1)//2),
no rotary on cross-attention; a non-gated MLP with tanh-approximated GELU; a bias on every linear
layer; input and output embeddings tied. The encoder-decoder has encoder blocks (self-attention,
MLP) and decoder blocks (self-attention, cross-attention, MLP); the decoder-only baseline stacks
the encoder's block shape with causal attention.

`PaperModel.forward` is the reference: a full pass over whole sequences, no cache, attention
through torch's scaled_dot_product_attention with K/V repeated per query head, norms in plain
float32 (no export-time switch changes them). The exported step modules (models/families/paper.py)
share only the weights and the rotary tables with it, so the parity gate checks their cache
handling, grouped attention and norms against independent code.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..steps.attention import rotary, rotate

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
MODEL_TYPES = ("paper-encdec", "paper-deconly")


@dataclass
class PaperConfig:
    model_type: str = "paper-encdec"  # or paper-deconly
    vocab_size: int = 32128
    hidden_size: int = 1024
    num_heads: int = 6
    num_kv_heads: int = 3
    head_dim: int = 64
    intermediate_size: int = 4096
    num_encoder_layers: int = 20  # 0 for decoder-only
    num_layers: int = 10  # decoder layers
    rope_theta: float = 10000.0
    rms_norm_eps: float = 1e-6
    max_positions: int = 8192
    pad_token_id: int = 0
    eos_token_id: int = 1
    bos_token_id: int | None = None
    decoder_start_token_id: int | None = 0

    def __post_init__(self) -> None:
        if self.model_type not in MODEL_TYPES:
            raise ValueError(f"model_type must be one of {MODEL_TYPES}, got {self.model_type!r}")
        if self.num_heads % self.num_kv_heads:
            raise ValueError(f"num_heads ({self.num_heads}) must be a multiple of num_kv_heads ({self.num_kv_heads})")

    @property
    def is_encoder_decoder(self) -> bool:
        return self.model_type == "paper-encdec"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class RMSNorm(nn.Module):
    def __init__(self, width: int, eps: float) -> None:
        super().__init__()
        self.weight, self.eps = nn.Parameter(torch.ones(width)), eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps))


class Attention(nn.Module):
    def __init__(self, c: PaperConfig) -> None:
        super().__init__()
        self.q = nn.Linear(c.hidden_size, c.num_heads * c.head_dim)
        self.k = nn.Linear(c.hidden_size, c.num_kv_heads * c.head_dim)
        self.v = nn.Linear(c.hidden_size, c.num_kv_heads * c.head_dim)
        self.o = nn.Linear(c.num_heads * c.head_dim, c.hidden_size)


class MLP(nn.Module):
    def __init__(self, c: PaperConfig) -> None:
        super().__init__()
        self.up, self.down = nn.Linear(c.hidden_size, c.intermediate_size), nn.Linear(c.intermediate_size, c.hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(F.gelu(self.up(x), approximate="tanh"))


class Block(nn.Module):
    def __init__(self, c: PaperConfig, cross: bool) -> None:
        super().__init__()
        self.self_norm, self.self_attn = RMSNorm(c.hidden_size, c.rms_norm_eps), Attention(c)
        self.cross_norm = RMSNorm(c.hidden_size, c.rms_norm_eps) if cross else None
        self.cross_attn = Attention(c) if cross else None
        self.mlp_norm, self.mlp = RMSNorm(c.hidden_size, c.rms_norm_eps), MLP(c)


def centred_positions(attention_mask: torch.Tensor) -> torch.Tensor:
    """Encoder positions [B, S] from a 1/0 mask (padding anywhere): real token i of L gets i - (L-1)//2.

    Kept as the paper describes it, though with rotary embeddings on self-attention only, a shift
    shared by a whole row cancels in q.k: outputs equal those of positions counted from 0 up to
    float rounding (the parity test relies on a different fault to show the gate can fail)."""
    index = torch.cumsum(attention_mask, dim=1) - 1
    length = attention_mask.sum(dim=1, keepdim=True)
    return index - torch.div(length - 1, 2, rounding_mode="floor")


class PaperModel(nn.Module):
    def __init__(self, config: PaperConfig) -> None:
        super().__init__()
        c = self.config = config
        self.embed = nn.Embedding(c.vocab_size, c.hidden_size)
        nn.init.normal_(self.embed.weight, std=c.hidden_size**-0.5)  # logits of order 1 through the tied head
        self.encoder = nn.ModuleList(Block(c, cross=False) for _ in range(c.num_encoder_layers))
        self.encoder_norm = RMSNorm(c.hidden_size, c.rms_norm_eps) if c.is_encoder_decoder else None
        self.decoder = nn.ModuleList(Block(c, cross=c.is_encoder_decoder) for _ in range(c.num_layers))
        self.decoder_norm = RMSNorm(c.hidden_size, c.rms_norm_eps)
        self.lm_head = nn.Linear(c.hidden_size, c.vocab_size, bias=False)
        self.lm_head.weight = self.embed.weight  # tied
        inv = 1.0 / c.rope_theta ** (torch.arange(0, c.head_dim, 2, dtype=torch.float32) / c.head_dim)
        self.register_buffer("inv_freq", inv, persistent=False)

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embed

    def get_output_embeddings(self) -> nn.Linear:
        return self.lm_head

    # -- reference forward (no cache) ----------------------------------------------------------------
    def _attend(self, a: Attention, x: torch.Tensor, kv_from: torch.Tensor, visible: torch.Tensor,
                q_pos: torch.Tensor | None, k_pos: torch.Tensor | None) -> torch.Tensor:
        c = self.config
        b, t, s = x.shape[0], x.shape[1], kv_from.shape[1]
        q = a.q(x).view(b, t, c.num_heads, c.head_dim).transpose(1, 2)
        k = a.k(kv_from).view(b, s, c.num_kv_heads, c.head_dim).transpose(1, 2)
        v = a.v(kv_from).view(b, s, c.num_kv_heads, c.head_dim).transpose(1, 2)
        if q_pos is not None and k_pos is not None:
            q, k = rotate(q, *rotary(q_pos, self.inv_freq)), rotate(k, *rotary(k_pos, self.inv_freq))
        rep = c.num_heads // c.num_kv_heads
        o = F.scaled_dot_product_attention(q, k.repeat_interleave(rep, 1), v.repeat_interleave(rep, 1),
                                           attn_mask=visible)
        return a.o(o.transpose(1, 2).reshape(b, t, c.num_heads * c.head_dim))

    def _run(self, blocks: nn.ModuleList, x: torch.Tensor, pos: torch.Tensor, visible: torch.Tensor,
             memory: torch.Tensor | None = None, memory_visible: torch.Tensor | None = None) -> torch.Tensor:
        for blk in blocks:
            h = blk.self_norm(x)
            x = x + self._attend(blk.self_attn, h, h, visible, pos, pos)
            if blk.cross_attn is not None and memory is not None:
                x = x + self._attend(blk.cross_attn, blk.cross_norm(x), memory, memory_visible, None, None)
            x = x + blk.mlp(blk.mlp_norm(x))
        return x

    def forward(self, input_ids: torch.Tensor, decoder_input_ids: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None) -> SimpleNamespace:
        """Logits for every position: of the decoder input (encoder-decoder) or of input_ids."""
        mask = torch.ones_like(input_ids) if attention_mask is None else attention_mask
        keys = mask[:, None, None, :].bool()  # [B, 1, 1, S]
        if not self.config.is_encoder_decoder:
            t = input_ids.shape[1]
            causal = torch.ones(t, t, dtype=torch.bool).tril()[None, None] & keys
            pos = (torch.cumsum(mask, 1) - 1).clamp(min=0)
            x = self._run(self.decoder, self.embed(input_ids), pos, causal)
            return SimpleNamespace(logits=self.lm_head(self.decoder_norm(x)))
        assert decoder_input_ids is not None, "encoder-decoder: pass decoder_input_ids"
        memory = self._run(self.encoder, self.embed(input_ids), centred_positions(mask), keys)
        memory = self.encoder_norm(memory)
        t = decoder_input_ids.shape[1]
        causal = torch.ones(t, t, dtype=torch.bool).tril()[None, None]
        pos = torch.arange(t)[None].expand(decoder_input_ids.shape[0], t)
        y = self._run(self.decoder, self.embed(decoder_input_ids), pos, causal, memory, keys)
        return SimpleNamespace(logits=self.lm_head(self.decoder_norm(y)))

    # -- saving and loading (an edgeseq model directory: config.json + model.safetensors) -------------
    def save(self, directory: str | Path) -> None:
        from safetensors.torch import save_model

        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        (d / CONFIG_FILE).write_text(json.dumps(self.config.to_dict(), indent=2))
        save_model(self, str(d / WEIGHTS_FILE))


def is_paper_dir(directory: Path) -> bool:
    try:
        return json.loads((directory / CONFIG_FILE).read_text()).get("model_type") in MODEL_TYPES
    except (OSError, ValueError, AttributeError):
        return False


def load(directory: str | Path) -> PaperModel:
    from safetensors.torch import load_model

    d = Path(directory)
    model = PaperModel(PaperConfig(**json.loads((d / CONFIG_FILE).read_text())))
    load_model(model, str(d / WEIGHTS_FILE))
    return model.eval()
