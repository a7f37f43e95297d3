"""ModelSpec: what an exporter needs to know about a model, independent of where it came from."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Kind = Literal["decoder-only", "encoder-decoder"]


@dataclass
class Dims:
    """Shapes the runtime needs to allocate caches and check prompt lengths."""

    hidden_size: int
    num_layers: int  # decoder layers (the ones with a self-attention KV cache)
    num_heads: int
    num_kv_heads: int
    head_dim: int
    vocab_size: int
    max_positions: int
    num_encoder_layers: int = 0
    sliding_window: int = 0  # some layers mask keys this many positions back or more (0: none do)

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass
class GenerationDefaults:
    """Token ids and templates the generation loop needs; stored in the manifest."""

    eos_token_ids: list[int]
    bos_token_id: int | None = None
    pad_token_id: int = 0
    decoder_start_token_id: int | None = None  # encoder-decoder only
    # encoder-decoder: the first generated token is forced to this (BART-CNN's BOS, mBART-50's
    # language code): the decoder starts from [decoder_start_token_id, forced_bos_token_id]
    forced_bos_token_id: int | None = None
    forced_eos_token_id: int | None = None  # a run that reaches max_new_tokens ends with it (BART, Marian)
    suppress_token_ids: list[int] | None = None  # never generated (Marian's pad: its bad_words_ids)
    begin_suppress_token_ids: list[int] | None = None  # not generated first (Whisper: blank and EOS)
    add_bos: bool = False  # prepend bos_token_id to prompts (edgeseq encodes them without special tokens)
    chat_template: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class ModelSpec:
    """A resolved model source: the torch model plus everything the artifact must record."""

    name: str
    family: str
    kind: Kind
    dims: Dims
    generation: GenerationDefaults
    tokenizer_json: str  # serialized `tokenizers.Tokenizer`
    source: str  # what the user typed, resolved (path, preset name, hub id)
    source_kind: str  # preset | hf-dir | hub | gguf | packaged
    source_hash: str
    random_weights: bool
    model: Any = field(repr=False, default=None)  # transformers PreTrainedModel (or a family's own), float32, eval()
    notes: list[str] = field(default_factory=list)
    audio: dict[str, Any] | None = None  # speech models: the manifest's audio section (Family.audio)

    @property
    def num_params(self) -> int:
        seen: set[int] = set()
        total = 0
        for p in self.model.parameters():
            if p.data_ptr() not in seen:  # tied weights count once
                seen.add(p.data_ptr())
                total += p.numel()
        return total

