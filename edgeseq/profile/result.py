"""Typed results: one profiled case (`ProfileResult`) and a run's report (`RunReport`: header + results).

Both write their JSON through `to_dict()`, whose keys are those the reports have always had, and
read old JSON back with `from_dict()`. A result keeps the raw samples only; the medians and the
median/p90/p99/mean/std summaries are derived from them. The run header (host, versions, engine,
device, precision, protocol, random-weights note) is rendered in one place: `RunReport.header_lines`.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from .stats import summarize

METRICS = ("tokenize_ms", "encode_ms", "prefill_ms", "ttft_ms", "tpot_ms", "decode_tok_s", "e2e_ms")
RANDOM_WEIGHTS_NOTE = "(random weights): preset shapes with random weights; timing depends on shape, not weights."


@dataclass
class ProfileResult:
    """One case (artifact x input length x output length x batch) as measured, or a point that did not run.

    Fields are the JSON keys; keys a caller adds (a compare point's `source` and `point`, `vs_first`,
    `flops`, `auto_check`, `error`) live in `extra` and are written beside them."""
    status: str = "ok"  # ok | timeout | failed
    input_len: int | None = None
    output_len: int | None = None
    batch: int | None = None
    artifact: str | None = None
    model: str | None = None
    label: str | None = None
    kind: str | None = None
    random_weights: bool = False
    format: str | None = None
    engine: str | None = None
    device: str | None = None
    simulated: Any = False  # False, or the simulator's name
    node_share: float | None = None
    placement: dict[str, Any] = field(default_factory=dict)
    precision: str | None = None
    engine_options: dict[str, Any] | None = None  # the engine's typed options in effect
    weights: str | None = None
    quantization: str | None = None
    parity: str | None = None
    quality: dict[str, Any] | None = None  # the manifest's quality figures (a quantized artifact against PyTorch)
    threads: int | None = None
    warmup: int | None = None
    reps: int | None = None
    load_ms: float | None = None
    first_run_ms: float | None = None
    huge_pages: dict[str, Any] | None = None
    artifact_bytes: int | None = None
    samples: dict[str, list[float]] = field(default_factory=dict)  # metric -> one value per timed run
    gen_head: list[int] = field(default_factory=list)
    napkin: dict[str, Any] = field(default_factory=dict)
    key: str | None = None
    peak_rss_mb: float | None = None  # the process's peak for this case: its load or its generation
    memory: dict[str, Any] = field(default_factory=dict)  # the breakdown (profile/memory.py Loaded.breakdown)
    rss_before_load_mb: float | None = None
    load_warm_ms: float | None = None
    time_limit_s: float | None = None  # written only for a timed-out case
    extra: dict[str, Any] = field(default_factory=dict)

    # -- derived ---------------------------------------------------------------------------------
    @property
    def stats(self) -> dict[str, dict[str, float]]:
        return {k: summarize(self.samples.get(k, [])) for k in METRICS}

    def median(self, metric: str) -> float:
        return summarize(self.samples.get(metric, []))["median"]

    @property
    def ttft_ms(self) -> float:
        return self.median("ttft_ms")

    @property
    def tpot_ms(self) -> float:
        return self.median("tpot_ms")

    @property
    def decode_tok_s(self) -> float:
        return self.median("decode_tok_s")

    @property
    def e2e_ms(self) -> float:
        return self.median("e2e_ms")

    # -- JSON ------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The report's keys; a point that never ran writes only what it has."""
        out: dict[str, Any] = {}
        for f in fields(self):
            if f.name in ("extra", "samples", "gen_head", "napkin", "key", "peak_rss_mb", "memory",
                          "rss_before_load_mb",
                          "load_warm_ms", "time_limit_s"):
                continue
            out[f.name] = getattr(self, f.name)
        if self.status == "failed":
            out = {k: v for k, v in out.items() if v is not None and k in _POINT_KEYS}
            return {**out, **self.extra}
        stats = self.stats
        out.update({k: stats[k]["median"] for k in METRICS})
        out.update(stats=stats, samples=self.samples, gen_head=self.gen_head, napkin=self.napkin, key=self.key,
                   peak_rss_mb=self.peak_rss_mb, memory=self.memory, rss_before_load_mb=self.rss_before_load_mb,
                   load_warm_ms=self.load_warm_ms)
        if self.status == "timeout":
            out["time_limit_s"] = self.time_limit_s
        return {**out, **self.extra}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ProfileResult":
        """A result from its JSON (any edgeseq version's): derived keys are recomputed from the samples."""
        known = {f.name for f in fields(cls)} - {"extra"}
        kw = {k: v for k, v in d.items() if k in known}
        kw["samples"] = {k: [math.nan if x is None else x for x in v] for k, v in (d.get("samples") or {}).items()}
        for k in ("placement", "napkin", "memory"):
            kw[k] = kw.get(k) or {}
        kw["gen_head"] = kw.get("gen_head") or []
        extra = {k: v for k, v in d.items() if k not in known and k not in _DERIVED}
        return cls(**kw, extra=extra)

    # -- reading by JSON key, for code written against the dict form ---------------------------
    def __getitem__(self, key: str) -> Any:
        if key in _FIELD_NAMES:
            return getattr(self, key)
        if key in METRICS:
            return self.median(key)
        if key == "stats":
            return self.stats
        return self.extra[key]

    def __setitem__(self, key: str, value: Any) -> None:
        if key in _FIELD_NAMES:
            setattr(self, key, value)
        elif key in _DERIVED:
            raise KeyError(f"{key} is derived from the samples; set samples instead")
        else:
            self.extra[key] = value

    def __contains__(self, key: str) -> bool:
        return key in _FIELD_NAMES or key in _DERIVED or key in self.extra

    def get(self, key: str, default: Any = None) -> Any:
        return self[key] if key in self else default


_FIELD_NAMES = frozenset(f.name for f in fields(ProfileResult)) - {"extra"}
_DERIVED = frozenset(METRICS) | {"stats"}
_POINT_KEYS = frozenset({"status", "input_len", "output_len", "format", "weights", "artifact"})


@dataclass
class RunHeader:
    """What a run's figures depend on beside the results themselves."""
    edgeseq_version: str
    host: dict[str, Any]
    bandwidth_gb_s: float | None = None
    protocol: dict[str, Any] | None = None  # the ProfileConfig (profile); compare writes its suite instead
    command: str | None = None

    @classmethod
    def here(cls, bandwidth_gb_s: float | None = None, protocol: dict[str, Any] | None = None,
             command: str | None = None) -> "RunHeader":
        """This host and this edgeseq."""
        from .. import __version__
        from .runner import host_info

        return cls(__version__, host_info(), round(bandwidth_gb_s, 2) if bandwidth_gb_s else None, protocol, command)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"edgeseq_version": self.edgeseq_version, "host": self.host,
                               "bandwidth_gb_s": self.bandwidth_gb_s}
        if self.protocol is not None:
            out["protocol"] = self.protocol
        if self.command is not None:
            out["command"] = self.command
        return out

    def host_line(self, versions: dict[str, str] | None = None) -> str:
        """Host, versions and copy bandwidth: the header's first line, for every report and benchmark."""
        host = self.host
        bw = self.bandwidth_gb_s if isinstance(self.bandwidth_gb_s, (int, float)) else None
        return (f"host: {host.get('cpu', '?')}, {host.get('cores', '?')} cores; Python {host.get('python', '?')}; "
                f"edgeseq {self.edgeseq_version}" + "".join(f"; {n} {v}" for n, v in (versions or {}).items())
                + f"; copy bandwidth {bw or '-'} GB/s")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RunHeader":
        return cls(d.get("edgeseq_version", "?"), d.get("host") or {}, d.get("bandwidth_gb_s"), d.get("protocol"),
                   d.get("command"))


@dataclass
class RunReport:
    """A run: its header, its results and the sections a command adds (compare's ratios, --auto's checks)."""
    header: RunHeader
    results: list[ProfileResult]
    complete: bool = True
    sections: dict[str, Any] = field(default_factory=dict)
    results_key: str = "results"  # `compare` has always called them "points"

    def to_dict(self) -> dict[str, Any]:
        return {**self.header.to_dict(), "complete": self.complete, **self.sections,
                self.results_key: [r.to_dict() for r in self.results]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RunReport":
        key = "points" if "points" in d else "results"
        header_keys = {"edgeseq_version", "host", "bandwidth_gb_s", "protocol", "command", "complete", key}
        return cls(RunHeader.from_dict(d), [ProfileResult.from_dict(r) for r in d.get(key, [])],
                   d.get("complete", True), {k: v for k, v in d.items() if k not in header_keys}, key)

    def write_json(self, path: str | Path) -> None:
        write_json(self.to_dict(), path)

    def header_lines(self) -> list[str]:
        """The one rendering of the header: host and versions, what ran where, the protocol, caveats."""
        h, rs = self.header, [r for r in self.results if r.status != "failed"]
        lines = [h.host_line(engine_versions(rs))]
        if rs:
            lines.append(f"engine {_values(rs, 'engine')}; device {_values(rs, 'device')}; "
                         f"precision {_values(rs, 'precision')}; weights {_values(rs, 'weights')}; "
                         f"threads {_values(rs, 'threads')}")
            lines.append(f"medians of {_values(rs, 'reps')} runs after {_values(rs, 'warmup')} warm-up; forced "
                         "decoding (EOS masked); prec = the compute precision the engine reports")
        if h.command:
            lines.append(f"command: `{h.command}`")
        if any(r.random_weights for r in rs):
            lines.append(RANDOM_WEIGHTS_NOTE)
        return lines

    def markdown(self, title: str, body: list[str]) -> str:
        """`# title`, the header once, then the command's own sections."""
        return "\n".join([f"# {title}", "", *(ln + "  " for ln in self.header_lines()), "", *body])


def _values(rs: list[ProfileResult], name: str) -> str:
    vals = list(dict.fromkeys(str(getattr(r, name)) for r in rs))
    return ", ".join(vals) if vals else "-"


_DISTRIBUTIONS = (("ort", "onnxruntime"), ("onnxruntime", "onnxruntime"), ("openvino", "openvino"),
                  ("litert", "ai-edge-litert"), ("qnn", "onnxruntime-qnn"), ("torch", "torch"))


def engine_versions(rs: list[ProfileResult]) -> dict[str, str]:
    """The installed version of each engine's package among `rs` (left out when not found)."""
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str] = {}
    for engine in dict.fromkeys(r.engine for r in rs if r.engine):
        dist = next((d for prefix, d in _DISTRIBUTIONS if engine.startswith(prefix)), None)
        if dist and dist not in out:
            try:
                out[dist] = version(dist)
            except PackageNotFoundError:
                continue
    return out


def write_json(doc: dict[str, Any], path: str | Path) -> None:
    Path(path).write_text(json.dumps(json_safe(doc), indent=2, allow_nan=False, default=str))


def json_safe(o: Any) -> Any:
    """NaN (a metric that does not apply or a timed-out case) -> null, tuples -> lists, results -> their
    dicts: valid JSON that reads back equal to what was written."""
    if isinstance(o, float) and math.isnan(o):
        return None
    if isinstance(o, (ProfileResult, RunReport, RunHeader)):
        return json_safe(o.to_dict())
    if isinstance(o, dict):
        return {k: json_safe(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [json_safe(v) for v in o]
    return o
