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

from .errors import ArtifactError

SCHEMA_VERSION = 1
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
            comps = {k: ComponentInfo(**v) for k, v in data["components"].items()}
            fields = {k: data[k] for k in ("format", "engine", "kind", "model", "dims", "generation")}
            optional = {k: data[k] for k in ("dtype", "quantization", "parity", "tools", "files", "created")
                        if k in data}
            return cls(components=comps, schema_version=version, **fields, **optional)
        except (KeyError, TypeError, AttributeError) as e:
            raise ArtifactError(f"{where} is missing or has a malformed field ({e})", "re-export the artifact") from e


def read(directory: str | Path) -> Manifest:
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
    for name, info in m.files.items():
        f = d / name
        if not f.exists():
            raise ArtifactError(f"artifact {d} is missing {name}", "copy the whole directory again or re-export")
        if f.stat().st_size != info.get("bytes"):
            raise ArtifactError(f"{f} has {f.stat().st_size} bytes, the manifest says {info.get('bytes')}: "
                                "truncated or replaced", "copy the whole directory again or re-export")
    return m


def file_record(path: Path) -> dict[str, Any]:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            h.update(chunk)
    return {"bytes": path.stat().st_size, "sha256": h.hexdigest()}
