"""Comparison suites: which models, formats, weights, device and lengths `edgeseq compare` sweeps.

A suite is a YAML file (edgeseq/profiles/*.yaml ships `quick` and `paper`; `profiles/` at the
repository root points there) or the same options given on the command line, which win over the
file's. Every field is checked here, before anything is exported or timed.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from ..errors import UsageError, require
from ..runtimes.options import check_threads

SUITES_DIR = Path(__file__).resolve().parent.parent / "profiles"


@dataclass
class Suite:
    name: str = "custom"
    description: str = ""
    models: list[str] = field(default_factory=list)  # model sources (exported here) or artifact directories
    formats: list[str] = field(default_factory=lambda: ["onnx"])
    weights: list[str] = field(default_factory=lambda: ["fp32"])
    device: str = "cpu"
    engine: str | None = None
    precision: str = "f32"
    delegate: str | None = None  # LiteRT: a GPU / NPU delegate library
    engine_options: dict[str, Any] = field(default_factory=dict)  # the engine's own settings, NAME -> value
    input_lens: list[int] = field(default_factory=lambda: [128, 512])
    output_len: int = 64
    warmup: int = 1
    reps: int = 3
    threads: int | None = 2
    parity_steps: int = 32
    time_limit: float | None = None  # seconds per point (warm-up + reps); past it the point is a timeout
    # per device class, the fields that change when the suite runs there (`--device gpu`: the GPU engine and
    # the lengths a GPU takes); `on(device)` applies them, and the command line still wins over them
    per_device: dict[str, dict[str, Any]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def validate(self) -> "Suite":
        from ..export.formats import formats

        WEIGHTS = {n: f.weights for n, f in formats().items()}

        if len(self.models) < 2:
            raise UsageError(f"compare needs at least two models, got {len(self.models)}",
                             "e.g. edgeseq compare preset:paper-encdec-330m preset:paper-deconly-330m, "
                             "or --suite quick")
        if len(set(self.models)) != len(self.models):
            raise UsageError("a model is listed twice", "list each model once")
        for f in self.formats:
            if f not in WEIGHTS:
                raise UsageError(f"unknown format '{f}' in formats", f"formats: {', '.join(WEIGHTS)}")
        known = sorted({w for ws in WEIGHTS.values() for w in ws})
        for w in self.weights:
            if w not in known:
                raise UsageError(f"unknown weights '{w}'", f"weights: {', '.join(known)}")
        if not any(w in WEIGHTS[f] for f in self.formats for w in self.weights):
            raise UsageError(f"no format among {self.formats} writes weights {self.weights}",
                             "; ".join(f"{f}: {', '.join(WEIGHTS[f])}" for f in self.formats))
        if not self.input_lens or any(not isinstance(n, int) or n < 1 for n in self.input_lens):
            raise UsageError(f"input lengths must be positive integers, got {self.input_lens}", "e.g. 128,512")
        checks = [(isinstance(self.output_len, int) and self.output_len >= 2, "output_len must be an integer >= 2"),
                  (isinstance(self.warmup, int) and self.warmup >= 0, "warmup must be an integer >= 0"),
                  (isinstance(self.reps, int) and self.reps >= 1, "reps must be an integer >= 1"),
                  (isinstance(self.engine_options, dict), "engine_options must be a mapping NAME: value"),
                  (isinstance(self.parity_steps, int) and self.parity_steps >= 0, "parity_steps must be >= 0"),
                  (self.time_limit is None or (isinstance(self.time_limit, (int, float)) and self.time_limit > 0),
                   "time_limit must be a positive number of seconds")]
        check_threads(self.threads)
        for ok, what in checks:
            if not ok:
                raise UsageError(f"suite '{self.name}': {what}", "fix the suite file or the command-line option")
        return self

    def on(self, device: str) -> "Suite":
        """This suite as it runs on `device` (cpu | gpu | npu, with or without a vendor): its per_device
        entry for that device class applied, the device set."""
        if not isinstance(self.per_device, dict) or not all(isinstance(v, dict) for v in self.per_device.values()):
            raise UsageError(f"suite '{self.name}': per_device must map a device class to fields",
                             "e.g. per_device: {gpu: {engine: torch-compile, input_lens: [512, 1024]}}")
        over = dict(self.per_device.get(device.partition(":")[0].lower()) or {})
        bad = sorted(set(over) - set(_FIELDS) | set(over) & set(_FIXED))
        if bad:
            raise UsageError(f"suite '{self.name}': per_device cannot set {', '.join(bad)}",
                             f"fields it can set: {', '.join(f for f in _FIELDS if f not in _FIXED)}")
        return replace(self, **_lists(over), device=device)

    def pairs(self) -> list[tuple[str, str]]:
        """(format, weights) combinations that exist: onnx has fp32 only, openvino compresses."""
        from ..export.formats import spec

        return [(f, w) for f in self.formats for w in self.weights if w in spec(f).weights]


def suite_names() -> list[str]:
    return sorted(p.stem for p in SUITES_DIR.glob("*.yaml"))


def load_suite(name_or_path: str) -> Suite:
    """A suite by name (shipped with edgeseq) or by path to a YAML file."""
    require("yaml", "compare")
    import yaml

    path = Path(name_or_path)
    if not path.suffix:
        path = SUITES_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        raise UsageError(f"no suite '{name_or_path}'", f"suites: {', '.join(suite_names())}, or a path to a .yaml file")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise UsageError(f"{path} is not valid YAML ({e})", "fix the file") from e
    if not isinstance(data, dict):
        raise UsageError(f"{path} must hold a mapping of suite fields", f"fields: {', '.join(_FIELDS)}")
    unknown = sorted(set(data) - set(_FIELDS))
    if unknown:
        raise UsageError(f"{path}: unknown field(s) {', '.join(unknown)}", f"fields: {', '.join(_FIELDS)}")
    data.setdefault("name", path.stem)
    return Suite(**_lists(data))


def _lists(data: dict[str, Any]) -> dict[str, Any]:
    """Suite fields given as one value where a list is due, as lists."""
    return {k: [v] if k in ("models", "formats", "weights", "input_lens") and not isinstance(v, list) else v
            for k, v in data.items()}


_FIELDS = [f.name for f in fields(Suite)]
_FIXED = ("name", "models", "device", "per_device")  # what per_device cannot change
