"""The artifact manifest (`edgeseq.json`): a versioned description of everything in an artifact.

The runtime reads only this file to know which graphs exist, what their inputs, outputs and caches
are called, which tokens end generation and whether the export passed its parity check.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ArtifactError

SCHEMA_VERSION = 1
TARGETS = ("cpu", "npu")
MANIFEST = "edgeseq.json"
TOKENIZER = "tokenizer.json"


@dataclass
class ComponentInfo:
    """One graph file: names, dtypes and symbolic shapes of its inputs and outputs."""

    file: str
    inputs: list[dict[str, Any]]  # {"name", "dtype", "shape": [int | str]}
    outputs: list[dict[str, Any]]
    cache_inputs: list[str] = field(default_factory=list)
    cache_outputs: list[str] = field(default_factory=list)
    weight_bytes: int = 0  # bytes of the weights stored in this graph
    matmul_weights: int = 0  # weights one token is multiplied with in this graph (0: not recorded)
    lookup_bytes: int = 0  # bytes of tables read one row per token (embedding lookups), part of weight_bytes
    # static-shape formats: signature name -> tokens (or encoder positions) it takes; {} = dynamic shapes
    signatures: dict[str, int] = field(default_factory=dict)
    # formats with one graph file per signature (ONNX for NPUs): signature name -> file; {} = all in `file`
    signature_files: dict[str, str] = field(default_factory=dict)
    # ONNX Runtime contrib ops the graph uses (com.microsoft: GroupQueryAttention, MatMulNBits); [] = none
    contrib_ops: list[str] = field(default_factory=list)
    # the largest |int8 weight| of w8a8-token's integer GEMM (runtimes/engines/ort_int8.py); 0 = none or not recorded
    int8_weight_range: int = 0


@dataclass
class Manifest:
    format: str  # onnx
    engine: str  # default engine for this format
    kind: str  # decoder-only | encoder-decoder
    model: dict[str, Any]  # name, family, source, source_kind, source_hash, random_weights, params, notes
    dims: dict[str, int]
    components: dict[str, ComponentInfo]
    generation: dict[str, Any]
    dtype: str = "float32"
    quantization: str | None = None
    parity: dict[str, Any] = field(default_factory=lambda: {"status": "not run"})
    tools: dict[str, str] = field(default_factory=dict)
    files: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> {"bytes", "sha256"}
    created: str = ""
    # static shapes (TFLite): max_input, max_output, cache_length, buckets (, cross_length, ring); None = dynamic
    static: dict[str, Any] | None = None
    target: str = "cpu"  # what the graphs were shaped for: cpu (any engine) | npu (static, HTP-ready ONNX)
    # speech models: sampling rate, mel settings, window length and the prompt's special tokens
    # (models/families/whisper.py); None = the encoder reads token ids
    audio: dict[str, Any] | None = None
    # files a native app runtime loads beside edgeseq's (export --native): runtime name -> {"files": [...],
    # "check": its greedy tokens against edgeseq's own engine on the parity prompt} (export/native/)
    native: dict[str, Any] = field(default_factory=dict)
    # a quantized artifact's quality against the PyTorch model it comes from, on a budget of the built-in
    # texts (quality/evaluate.py at_export): perplexity, KL divergence, top-1 and greedy agreement
    quality: dict[str, Any] | None = None
    schema_version: int = SCHEMA_VERSION

    @property
    def random_weights(self) -> bool:
        return bool(self.model.get("random_weights"))

    @property
    def label(self) -> str:
        tag = " (random weights)" if self.random_weights else ""
        return f"{self.model.get('name', '?')}{tag}"

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    def write(self, directory: Path) -> None:
        (directory / MANIFEST).write_text(self.to_json())

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "manifest") -> "Manifest":
        if not isinstance(data, dict):
            raise ArtifactError(f"{where} is not a JSON object", "re-export the artifact")
        version = data.get("schema_version")
        if not isinstance(version, int):
            raise ArtifactError(f"{where} has no integer schema_version", "re-export the artifact")
        if version > SCHEMA_VERSION:
            raise ArtifactError(f"{where} has schema version {version}; this edgeseq reads up to {SCHEMA_VERSION}",
                                "upgrade edgeseq: pip install -U edgeseq")
        try:
            _check_types(data)
            comps = {k: ComponentInfo(**v) for k, v in data["components"].items()}
            fields = {k: data[k] for k in ("format", "engine", "kind", "model", "dims", "generation")}
            optional = {k: data[k] for k in ("dtype", "quantization", "parity", "tools", "files", "created", "static",
                                                  "target", "audio", "native", "quality")
                        if k in data}
            return cls(components=comps, schema_version=version, **fields, **optional)
        except (KeyError, TypeError, AttributeError, ValueError) as e:
            raise ArtifactError(f"{where} is missing or has a malformed field ({e})", "re-export the artifact") from e


_DIMS = ("hidden_size", "num_layers", "num_heads", "num_kv_heads", "head_dim", "vocab_size", "max_positions")
_STEP = {"decoder-only": ("decoder",), "encoder-decoder": ("encoder", "decoder_init", "decoder_step")}


def _check_types(data: dict[str, Any]) -> None:
    """Reject a manifest whose fields have the wrong types before anything relies on them."""
    def need(ok: bool, what: str) -> None:
        if not ok:
            raise ValueError(what)

    for key in ("format", "engine", "kind"):
        need(isinstance(data[key], str), f"'{key}' must be a string")
    need(data["kind"] in _STEP, f"'kind' must be one of {list(_STEP)}")
    for key in ("model", "dims", "generation", "components"):
        need(isinstance(data[key], dict), f"'{key}' must be an object")
    for key in _DIMS:
        v = data["dims"].get(key)
        need(isinstance(v, int) and not isinstance(v, bool) and v > 0, f"dims.{key} must be a positive integer")
    for name in _STEP[data["kind"]]:
        comp = data["components"].get(name)
        need(isinstance(comp, dict) and isinstance(comp.get("file"), str), f"components.{name}.file is missing")
        for key in ("cache_inputs", "cache_outputs"):
            need(all(isinstance(x, str) for x in comp.get(key, [])) and isinstance(comp.get(key, []), list),
                 f"components.{name}.{key} must be a list of names")
        for key in ("weight_bytes", "matmul_weights", "lookup_bytes"):
            v = comp.get(key, 0)
            need(isinstance(v, int) and not isinstance(v, bool) and v >= 0,
                 f"components.{name}.{key} must be a non-negative integer")
    gen = data["generation"]
    need(isinstance(gen.get("eos_token_ids", []), list) and all(isinstance(x, int) for x in gen.get("eos_token_ids", [])),
         "generation.eos_token_ids must be a list of integers")
    for key in ("pad_token_id", "decoder_start_token_id", "bos_token_id", "forced_bos_token_id", "forced_eos_token_id"):
        need(gen.get(key) is None or isinstance(gen[key], int), f"generation.{key} must be an integer")
    for key in ("suppress_token_ids", "begin_suppress_token_ids"):
        need(gen.get(key) is None or (isinstance(gen[key], list) and all(isinstance(x, int) for x in gen[key])),
             f"generation.{key} must be a list of integers")
    need(data["kind"] == "decoder-only" or isinstance(gen.get("decoder_start_token_id"), int),
         "generation.decoder_start_token_id is missing")
    need(gen.get("chat_template") is None or isinstance(gen["chat_template"], str), "chat_template must be text")
    files = data.get("files", {})
    need(isinstance(files, dict) and all(isinstance(v, dict) and isinstance(v.get("bytes"), int)
                                         for v in files.values()), "files must map names to {bytes, sha256}")
    need(all(isinstance(k, str) and "/" not in k and "\\" not in k and k not in ("", ".", "..")
             for k in files), "files must be plain file names inside the artifact")
    need(isinstance(data.get("parity", {}), dict), "'parity' must be an object")
    audio = data.get("audio")
    need(audio is None or (isinstance(audio, dict) and all(
        isinstance(audio.get(k), int) and audio[k] > 0 for k in ("sampling_rate", "n_mels", "frames", "n_fft",
                                                                 "hop_length", "chunk_seconds"))
        and isinstance(audio.get("tokens"), dict) and isinstance(audio["tokens"].get("start"), int)),
         "'audio' must give sampling_rate, n_mels, frames, n_fft, hop_length, chunk_seconds and tokens.start")
    need(data.get("target", "cpu") in TARGETS, f"'target' must be one of {list(TARGETS)}")
    need(data.get("target", "cpu") == "cpu" or data.get("static") is not None, "an npu target needs 'static' shapes")
    static = data.get("static")
    if static is not None:
        need(isinstance(static, dict), "'static' must be an object")
        for key in ("max_input", "max_output", "cache_length"):
            need(isinstance(static.get(key), int) and static[key] > 0, f"static.{key} must be a positive integer")
        need(isinstance(static.get("buckets"), list) and all(isinstance(b, int) and b > 0 for b in static["buckets"]),
             "static.buckets must be a list of positive integers")
        ring = static.get("ring", {})
        need(isinstance(ring, dict) and all(isinstance(v, int) and 0 < v < static["cache_length"]
                                            for v in ring.values()),
             "static.ring must map cache names to ring lengths shorter than static.cache_length")
        for name in _STEP[data["kind"]]:
            sigs = data["components"][name].get("signatures")
            need(isinstance(sigs, dict) and bool(sigs) and all(isinstance(v, int) and v > 0 for v in sigs.values()),
                 f"components.{name}.signatures must map names to token counts")
            files_of = data["components"][name].get("signature_files", {})
            need(isinstance(files_of, dict) and all(isinstance(v, str) and "/" not in v and "\\" not in v
                                                     and v not in ("", ".", "..") for v in files_of.values())
                 and (not files_of or set(files_of) == set(sigs)),
                 f"components.{name}.signature_files must name one plain file per signature")


def read(directory: str | Path, check_files: bool = True) -> Manifest:
    """Read and check an artifact directory's manifest and that its files exist with the recorded sizes."""
    d = Path(directory)
    if not d.is_dir():
        raise ArtifactError(f"no artifact directory at {d}", "export one first: edgeseq export MODEL --out DIR")
    path = d / MANIFEST
    if not path.exists():
        raise ArtifactError(f"{d} has no {MANIFEST}: not an edgeseq artifact, or an export that did not finish",
                            "re-run edgeseq export")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ArtifactError(f"{path} is not valid JSON ({e})", "re-export the artifact") from e
    m = Manifest.from_dict(data, str(path))
    if check_files:
        for name, info in m.files.items():
            _check_file(d, name, info, full=False)
    return m


def _check_file(d: Path, name: str, info: dict[str, Any], full: bool) -> None:
    f = d / name
    hint = "copy the whole directory again or re-export"
    if not f.is_file():
        raise ArtifactError(f"artifact {d} is missing {name}", hint)
    if f.stat().st_size != info.get("bytes"):
        raise ArtifactError(f"{f} has {f.stat().st_size} bytes, the manifest says {info.get('bytes')}: "
                            "truncated or replaced", hint)
    if full and info.get("sha256") and sha256(f) != info["sha256"]:
        raise ArtifactError(f"{f} does not match the SHA-256 in the manifest: altered or corrupted", hint)
    if not full and info.get("quick_sha256") and _quick_sha256(f) != info["quick_sha256"]:
        raise ArtifactError(f"{f} does not match the manifest (first/last MiB differ): altered or replaced", hint)


def verify(directory: str | Path) -> Manifest:
    """Check every file's size and full SHA-256 against the manifest (`edgeseq verify`)."""
    m = read(directory, check_files=False)
    for name, info in m.files.items():
        _check_file(Path(directory), name, info, full=True)
    return m


def hash_into(h: Any, path: Path) -> None:
    """Feed a file to a hashlib object in 4 MiB chunks (graphs can be GBs)."""
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            h.update(chunk)


def sha256(path: Path) -> str:
    """A file's full SHA-256, hex."""
    h = hashlib.sha256()
    hash_into(h, path)
    return h.hexdigest()


def identity(directory: str | Path) -> str:
    """An artifact's identity: the SHA-256 of its manifest, which holds every file's SHA-256 (the key of
    the caches that hold copies of it: compare --ray's nodes, --on's devices)."""
    return sha256(Path(directory) / MANIFEST)


def _quick_sha256(path: Path, span: int = 1 << 20) -> str:
    """Hash of the first and last MiB: cheap enough for every load, catches a replaced file whose
    size happens to match (a full hash of a large graph would add noticeably to each load)."""
    h = hashlib.sha256()
    size = path.stat().st_size
    with open(path, "rb") as fh:
        h.update(fh.read(span))
        if size > span:
            fh.seek(max(span, size - span))
            h.update(fh.read(span))
    return h.hexdigest()


def file_record(path: Path) -> dict[str, Any]:
    return {"bytes": path.stat().st_size, "sha256": sha256(path), "quick_sha256": _quick_sha256(path)}
