"""CTranslate2 Whisper checkpoints (model.bin + config.json + tokenizer.json, the layout faster-whisper
uses) -> float32 transformers WhisperForConditionalGeneration.

model.bin (little-endian): uint32 binary version, string spec name, uint32 spec revision, uint32 variable
count, then per variable: string name, uint8 rank, uint32 dims x rank, uint8 dtype id, uint32 byte count,
raw data; then uint32 alias count and (alias, target) string pairs. A string is a uint16 length that
counts a trailing NUL, then the bytes. Quantized weights (int8, int16) store `<name>_scale` beside them;
an alias also stands for its target's scale.
"""
from __future__ import annotations

import json
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ModelFileError

# CTranslate2's DataType ids; bfloat16 is read as its raw 16 bits and widened by _bf16_to_f32
_DTYPES: dict[int, np.dtype] = {0: np.dtype("<f4"), 1: np.dtype("i1"), 2: np.dtype("<i2"), 3: np.dtype("<i4"),
                                4: np.dtype("<f2"), 5: np.dtype("<u2")}
_BF16 = 5
_READABLE_VERSIONS = range(4, 7)  # 4: dtype ids and byte counts per variable; 3+: aliases
_GELU = 3  # CTranslate2's Activation.GELU


@dataclass(frozen=True)
class Ct2Meta:
    """The header of a model.bin."""

    binary_version: int
    spec: str
    revision: int


class _Cursor:
    def __init__(self, data: memoryview, path: Path) -> None:
        self.data, self.pos, self.path = data, 0, path

    def take(self, n: int) -> memoryview:
        if self.pos + n > len(self.data):
            raise ModelFileError(f"{self.path} ends early (needs {self.pos + n} bytes, has {len(self.data)})",
                                 "the file is truncated or not a CTranslate2 model.bin: copy it again")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def u(self, fmt: str) -> int:
        return int(struct.unpack("<" + fmt, self.take(struct.calcsize(fmt)))[0])

    def string(self) -> str:
        raw = bytes(self.take(self.u("H")))
        return raw.rstrip(b"\0").decode("utf-8")


def _bf16_to_f32(bits: np.ndarray) -> np.ndarray:
    return (bits.astype(np.uint32) << 16).view(np.float32)


def read_model_bin(path: str | Path) -> tuple[dict[str, np.ndarray], dict[str, str], Ct2Meta]:
    """All variables of a CTranslate2 model.bin as numpy arrays in their stored dtype (bfloat16 widened to
    float32; scalars as 0-d arrays), the aliases (alias name -> variable name), and the header."""
    path = Path(path)
    cur = _Cursor(memoryview(path.read_bytes()), path)
    version = cur.u("I")
    if version not in _READABLE_VERSIONS:
        raise ModelFileError(f"{path} has CTranslate2 binary version {version}; edgeseq reads versions "
                             f"{_READABLE_VERSIONS.start}-{_READABLE_VERSIONS.stop - 1}",
                             "convert the model again with a current ct2-transformers-converter")
    meta = Ct2Meta(version, cur.string(), cur.u("I"))
    variables: dict[str, np.ndarray] = {}
    for _ in range(cur.u("I")):
        name = cur.string()
        shape = tuple(cur.u("I") for _ in range(cur.u("B")))
        type_id, nbytes = cur.u("B"), cur.u("I")
        if type_id not in _DTYPES:
            raise ModelFileError(f"{path}: variable {name} has unknown dtype id {type_id}",
                                 "convert the model again with a current ct2-transformers-converter")
        dtype = _DTYPES[type_id]
        if nbytes != dtype.itemsize * int(np.prod(shape, dtype=np.int64)):
            raise ModelFileError(f"{path}: variable {name} holds {nbytes} bytes, not {shape} x {dtype}",
                                 "the file is damaged: copy or convert it again")
        array = np.frombuffer(cur.take(nbytes), dtype=dtype).reshape(shape)
        variables[name] = _bf16_to_f32(array) if type_id == _BF16 else array
    aliases = {}
    for _ in range(cur.u("I")):
        alias = cur.string()
        aliases[alias] = cur.string()
    return variables, aliases, meta


def is_ct2_dir(path: Path) -> bool:
    """A directory in CTranslate2's layout: model.bin beside a config.json that is not transformers'
    (CTranslate2's config has no `model_type`)."""
    if not (path / "model.bin").is_file() or not (path / "config.json").is_file():
        return False
    try:
        return "model_type" not in json.loads((path / "config.json").read_text())
    except (OSError, ValueError, TypeError):
        return False


class _Weights:
    """Variables by CTranslate2 name, aliases resolved and quantized weights de-quantized to float32."""

    def __init__(self, variables: dict[str, np.ndarray], aliases: dict[str, str], path: Path) -> None:
        self.variables, self.aliases, self.path = variables, aliases, path

    def _raw(self, name: str) -> np.ndarray | None:
        name = self.aliases.get(name, name)
        return self.variables.get(name)

    def has(self, name: str) -> bool:
        return self._raw(name) is not None

    def scalar(self, name: str) -> int | None:
        v = self._raw(name)
        return None if v is None else int(v.reshape(-1)[0])

    def get(self, name: str) -> np.ndarray:
        """float32 copy of `name`: int8 weights are stored as round(w * scale) with one scale per output
        row (per output channel for convolutions), int16 as round(w * scale) with one scale."""
        v = self._raw(name)
        if v is None:
            raise ModelFileError(f"{self.path} has no variable {name}",
                                 "the file is not a complete CTranslate2 Whisper model: convert it again")
        if self.has(name + "_zero"):
            raise ModelFileError(f"{self.path}: {name} is stored in a pre-quantized (AWQ) form",
                                 "convert from the float checkpoint instead (quantization float16, int8 or none)")
        if v.dtype.kind == "f":
            return v.astype(np.float32)
        scale = self._raw(name + "_scale")
        if scale is None:
            raise ModelFileError(f"{self.path}: {name} is {v.dtype} without a {name}_scale",
                                 "convert the model again with a current ct2-transformers-converter")
        scale = scale.astype(np.float32)
        if scale.ndim == 1:  # per output row/channel
            scale = scale.reshape((-1,) + (1,) * (v.ndim - 1))
        return v.astype(np.float32) / scale


def _token_ids(path: Path) -> dict[str, int]:
    file = path / "tokenizer.json"
    if not file.is_file():
        raise ModelFileError(f"{path} has no tokenizer.json",
                             "convert with --copy_files tokenizer.json, or copy the model's tokenizer.json there")
    data = json.loads(file.read_text())
    ids = {t["content"]: int(t["id"]) for t in data.get("added_tokens", [])}
    for need in ("<|endoftext|>", "<|startoftranscript|>"):
        if need not in ids:
            raise ModelFileError(f"{file} has no {need} token", "use the tokenizer.json of this Whisper model")
    return ids


def _count_layers(weights: _Weights, stack: str) -> int:
    pat = re.compile(rf"^{stack}/layer_(\d+)/")
    found = {int(m.group(1)) for n in weights.variables if (m := pat.match(n))}
    assert found == set(range(len(found))), f"{stack} layers are not numbered 0..n-1: {sorted(found)}"
    return len(found)


def _heads(weights: _Weights, stack: str, d_model: int) -> int:
    """CTranslate2 stores `<stack>/num_heads`; files without it: d_model // 64, the head size of every
    published Whisper size."""
    heads = weights.scalar(f"{stack}/num_heads")
    heads = d_model // 64 if heads is None else heads
    if heads <= 0 or d_model % heads:
        raise ModelFileError(f"{weights.path}: {stack} has {heads} heads for d_model {d_model}",
                             "the file is not a consistent Whisper model: convert it again")
    return heads


def whisper_config(weights: _Weights, ct2_config: dict[str, Any], ids: dict[str, int]) -> Any:
    """transformers' WhisperConfig from the stored shapes, head counts and special tokens."""
    from transformers import WhisperConfig

    d_model, mels, _ = weights.get("encoder/conv1/weight").shape
    act = weights.scalar("decoder/activation")
    if act is not None and act != _GELU:
        raise ModelFileError(f"{weights.path}: decoder activation {act} is not GELU, so this is no Whisper",
                             "edgeseq reads CTranslate2 Whisper models only")
    eot, sot = ids["<|endoftext|>"], ids["<|startoftranscript|>"]
    return WhisperConfig(
        vocab_size=weights.get("decoder/embeddings/weight").shape[0], num_mel_bins=mels, d_model=d_model,
        encoder_layers=_count_layers(weights, "encoder"), decoder_layers=_count_layers(weights, "decoder"),
        encoder_attention_heads=_heads(weights, "encoder", d_model),
        decoder_attention_heads=_heads(weights, "decoder", d_model),
        encoder_ffn_dim=weights.get("encoder/layer_0/ffn/linear_0/weight").shape[0],
        decoder_ffn_dim=weights.get("decoder/layer_0/ffn/linear_0/weight").shape[0],
        max_source_positions=weights.get("encoder/position_encodings/encodings").shape[0],
        max_target_positions=weights.get("decoder/position_encodings/encodings").shape[0],
        # Whisper's tokenizer: <|endoftext|> is bos, eos and pad; decoding starts at <|startoftranscript|>
        pad_token_id=eot, bos_token_id=eot, eos_token_id=eot, decoder_start_token_id=sot,
        activation_function="gelu", scale_embedding=False, tie_word_embeddings=_tied(weights))


def _tied(weights: _Weights) -> bool:
    target = weights.aliases.get("decoder/projection/weight")
    return target == "decoder/embeddings/weight" or not weights.has("decoder/projection/weight")


def _state_dict(weights: _Weights, config: Any) -> dict[str, np.ndarray]:
    """HF parameter name -> float32 array. CTranslate2 fuses q/k/v (self-attention) and k/v (cross-attention)
    and fills the missing k bias with zeros; it is dropped, as HF's k_proj has none (a k bias adds the
    same q.b to every score of a query, which softmax cancels, so dropping it changes nothing)."""
    e = config.d_model
    out: dict[str, np.ndarray] = {}

    def linear(hf: str, ct2: str, bias: bool = True) -> None:
        out[f"{hf}.weight"] = weights.get(f"{ct2}/weight")
        if bias:
            out[f"{hf}.bias"] = weights.get(f"{ct2}/bias")

    def norm(hf: str, ct2: str) -> None:
        out[f"{hf}.weight"], out[f"{hf}.bias"] = weights.get(f"{ct2}/gamma"), weights.get(f"{ct2}/beta")

    def split(hf: str, names: list[str], ct2: str) -> None:
        w, b = weights.get(f"{ct2}/weight"), weights.get(f"{ct2}/bias")
        assert w.shape[0] == e * len(names), f"{ct2} has {w.shape[0]} rows, expected {e * len(names)}"
        for i, n in enumerate(names):
            out[f"{hf}.{n}.weight"] = w[i * e:(i + 1) * e]
            if n != "k_proj":
                out[f"{hf}.{n}.bias"] = b[i * e:(i + 1) * e]

    def layer(hf: str, ct2: str, cross: bool) -> None:
        split(f"{hf}.self_attn", ["q_proj", "k_proj", "v_proj"], f"{ct2}/self_attention/linear_0")
        linear(f"{hf}.self_attn.out_proj", f"{ct2}/self_attention/linear_1")
        norm(f"{hf}.self_attn_layer_norm", f"{ct2}/self_attention/layer_norm")
        if cross:
            linear(f"{hf}.encoder_attn.q_proj", f"{ct2}/attention/linear_0")
            split(f"{hf}.encoder_attn", ["k_proj", "v_proj"], f"{ct2}/attention/linear_1")
            linear(f"{hf}.encoder_attn.out_proj", f"{ct2}/attention/linear_2")
            norm(f"{hf}.encoder_attn_layer_norm", f"{ct2}/attention/layer_norm")
        linear(f"{hf}.fc1", f"{ct2}/ffn/linear_0")
        linear(f"{hf}.fc2", f"{ct2}/ffn/linear_1")
        norm(f"{hf}.final_layer_norm", f"{ct2}/ffn/layer_norm")

    for conv in ("conv1", "conv2"):
        linear(f"model.encoder.{conv}", f"encoder/{conv}")
    out["model.encoder.embed_positions.weight"] = weights.get("encoder/position_encodings/encodings")
    for i in range(config.encoder_layers):
        layer(f"model.encoder.layers.{i}", f"encoder/layer_{i}", cross=False)
    norm("model.encoder.layer_norm", "encoder/layer_norm")
    out["model.decoder.embed_tokens.weight"] = weights.get("decoder/embeddings/weight")
    out["model.decoder.embed_positions.weight"] = weights.get("decoder/position_encodings/encodings")
    for i in range(config.decoder_layers):
        layer(f"model.decoder.layers.{i}", f"decoder/layer_{i}", cross=True)
    norm("model.decoder.layer_norm", "decoder/layer_norm")
    out["proj_out.weight"] = (out["model.decoder.embed_tokens.weight"] if config.tie_word_embeddings
                              else weights.get("decoder/projection/weight"))
    if weights.has("decoder/projection/bias") and np.any(weights.get("decoder/projection/bias")):
        raise ModelFileError(f"{weights.path}: the output projection has a bias, which Whisper has not",
                             "edgeseq reads CTranslate2 Whisper models only")
    return out


def _generation_config(model: Any, ct2_config: dict[str, Any], ids: dict[str, int]) -> None:
    """transformers' Whisper generation settings from CTranslate2's config.json and the tokenizer's
    special tokens. Language and task ids are set for multilingual models only: with `lang_to_id`
    present, transformers would detect a language and insert its token, which English-only models lack."""
    gen, config = model.generation_config, model.config
    multilingual = config.vocab_size >= 51865
    gen.decoder_start_token_id = config.decoder_start_token_id
    gen.bos_token_id, gen.eos_token_id, gen.pad_token_id = (config.bos_token_id, config.eos_token_id,
                                                           config.pad_token_id)
    gen.suppress_tokens = [int(t) for t in ct2_config.get("suppress_ids") or []]
    gen.begin_suppress_tokens = [int(t) for t in ct2_config.get("suppress_ids_begin") or []]
    gen.alignment_heads = [[int(a), int(b)] for a, b in ct2_config.get("alignment_heads") or []]
    gen.forced_decoder_ids = None
    gen.max_length = config.max_target_positions
    gen.is_multilingual = multilingual
    if "<|notimestamps|>" in ids:
        gen.no_timestamps_token_id = ids["<|notimestamps|>"]
        gen.max_initial_timestamp_index = 50  # the first timestamp at most 1 s in, as OpenAI's decoder
    if "<|startofprev|>" in ids:
        gen.prev_sot_token_id = ids["<|startofprev|>"]
    if multilingual:
        by_id = {i: s for s, i in ids.items()}
        langs = {by_id[i]: i for i in ct2_config.get("lang_ids") or [] if i in by_id}
        # the tokenizer's language tokens lie between <|startoftranscript|> and <|translate|>
        sot, tr = ids["<|startoftranscript|>"], ids.get("<|translate|>", -1)
        langs.update({s: i for s, i in ids.items() if sot < i < tr and re.fullmatch(r"<\|[a-z]{2,3}\|>", s)})
        gen.lang_to_id = dict(sorted(langs.items(), key=lambda kv: kv[1]))
        gen.task_to_id = {t: ids[f"<|{t}|>"] for t in ("transcribe", "translate") if f"<|{t}|>" in ids}


def load_whisper_dir(path: str | Path) -> tuple[Any, list[Path]]:
    """A CTranslate2 Whisper directory as a float32 WhisperForConditionalGeneration (eval mode, generation
    settings filled in), and the files it was read from."""
    import torch
    from transformers import WhisperForConditionalGeneration

    path = Path(path)
    variables, aliases, meta = read_model_bin(path / "model.bin")
    if meta.spec != "WhisperSpec":
        raise ModelFileError(f"{path / 'model.bin'} holds a CTranslate2 {meta.spec}, not a WhisperSpec",
                             "edgeseq reads CTranslate2 Whisper models only; for others use the HF checkpoint")
    ct2_config = json.loads((path / "config.json").read_text())
    ids = _token_ids(path)
    weights = _Weights(variables, aliases, path / "model.bin")
    config = whisper_config(weights, ct2_config, ids)
    state = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in _state_dict(weights, config).items()}
    with torch.device("meta"):
        model = WhisperForConditionalGeneration(config)
    missing, unexpected = model.load_state_dict(state, strict=False, assign=True)
    assert not unexpected, f"unexpected parameters {unexpected}"
    model.tie_weights()
    left = [n for n, p in [*model.named_parameters(), *model.named_buffers()] if p.is_meta]
    assert not left and set(missing) <= {"proj_out.weight"}, f"not loaded: {left or missing}"
    model.model.encoder.embed_positions.requires_grad_(False)
    model.eval()
    _generation_config(model, ct2_config, ids)
    files = [path / "model.bin", path / "config.json", path / "tokenizer.json"]
    return model, files
