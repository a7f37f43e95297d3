"""The profiling protocol: per artifact and case, load, cold run, warm-up, timed repetitions.

Every number comes from the generation loop's one clock (generate/loop.py), so it means the same
on every engine. Decoding is forced to the full output length (EOS masked) so runs are comparable.
"""
from __future__ import annotations

import gc
import itertools
import math
import platform
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..artifact import manifest as mf
from ..errors import UsageError
from ..runtimes.options import check_threads, coerce
from ..generate.config import GenerationConfig
from ..generate.loop import TimeLimitError, Timings, run
from ..generate.proposers import Proposer
from ..generate.speculate import Speculation, run as speculate
from ..resources import (LOAD_FACTOR, cache_bytes, check_budget, check_fits, check_max_memory, estimate, kv_bytes,
                         weight_bytes)
from ..reference import NAMES as PYTORCH, open_runner, options_class
from ..runtimes import BackendOptions, default_engine, device_engine, registry
from .memory import Loaded, PeakRSS, rss_mb
from .prompts import prompt_ids
from .result import METRICS, ProfileResult


@dataclass
class ProfileConfig:
    input_lens: list[int] = field(default_factory=lambda: [128])
    output_lens: list[int] = field(default_factory=lambda: [64])
    batch_sizes: list[int] = field(default_factory=lambda: [1])
    warmup: int = 1
    reps: int = 5
    threads: int | None = 2
    device: str = "cpu"
    engine: str | None = None
    precision: str = "f32"  # engines that choose a compute precision (OpenVINO) are told this one
    delegate: str | None = None  # LiteRT: a GPU / NPU delegate library
    engine_options: dict[str, Any] = field(default_factory=dict)  # the engine's own settings (runtimes/options.py)
    audio: str | None = None  # speech artifacts: an audio file (profile/speech.py) ...
    audio_seconds: float | None = None  # ... or seconds of a synthetic signal (default: one 30 s window)
    speculate: str | None = None  # "lookup" or a draft artifact: speculative decoding (generate/speculate.py)
    draft_tokens: int = 5  # the most tokens proposed per step when speculating
    max_memory_mb: float | None = None  # refuse, before loading, a profile whose estimate exceeds this

    def validate(self) -> "ProfileConfig":
        for name in ("input_lens", "output_lens", "batch_sizes"):
            vals = getattr(self, name)
            if not vals or any(not isinstance(v, int) or v < 1 for v in vals):
                flag = "--" + {"batch_sizes": "batch"}.get(name, name[:-1]).replace("_", "-")
                raise UsageError(f"{flag} must be positive integers, got {vals}",
                                 f"pass a comma list such as {flag} {'1,4' if name == 'batch_sizes' else '128,512'}")
        if any(v < 2 for v in self.output_lens):
            raise UsageError("output length must be >= 2: time per output token needs two tokens",
                             "pass --output-len 2 or more (64 is the usual protocol)")
        if self.warmup < 0 or self.reps < 1:
            raise UsageError(f"need --warmup >= 0 and --reps >= 1, got {self.warmup} and {self.reps}",
                             "the usual protocol is --warmup 1 --reps 5")
        check_threads(self.threads)
        check_max_memory(self.max_memory_mb)
        return self

    def cases(self, m: mf.Manifest | None = None) -> list[tuple[int, int, int]]:
        """(input length, output length, batch) per case; a speech artifact's input is its encoder's
        positions (one window of audio), whatever --input-len says."""
        ins = [int(m.audio["encoder_positions"])] if m is not None and m.audio else self.input_lens
        return list(itertools.product(ins, self.output_lens, self.batch_sizes))


def check_cases(m: mf.Manifest, cfg: ProfileConfig, where: str) -> None:
    """Refuse, before anything runs, an unknown engine or engine option and a case longer than the
    model's maximum positions."""
    engine = cfg.engine or default_engine(m)
    if engine in PYTORCH:
        coerce(options_class(engine), cfg.engine_options, engine)  # UsageError naming the options
    else:
        registry.options_for(engine, cfg.engine_options)  # UsageError naming the engines or the options
    limit = int(m.dims["max_positions"])
    if (cfg.audio is not None or cfg.audio_seconds is not None) and not m.audio:
        raise UsageError(f"{where} is not a speech model: --audio and --audio-seconds apply to Whisper artifacts",
                         "drop them; text artifacts are profiled with --input-len")
    if m.audio:
        if cfg.speculate:
            raise UsageError(f"{where} is a speech model: speculative decoding covers text models",
                             "drop --speculate")
        return _check_speech_cases(m, cfg, where)
    for in_len, out_len, _ in cfg.cases(m):
        need = in_len + out_len if m.kind == "decoder-only" else max(in_len, out_len + 1)
        if need > limit:
            raise UsageError(f"{where}: --input-len {in_len} with --output-len {out_len} exceeds the model's "
                             f"maximum of {limit} positions", "profile shorter lengths for this artifact")
        st = m.static
        if st and (in_len > st["max_input"] or out_len > st["max_output"]):
            raise UsageError(f"{where}: a static-shape artifact compiled for prompts up to {st['max_input']} and "
                             f"{st['max_output']} new tokens cannot run --input-len {in_len} --output-len {out_len}",
                             f"re-export with --max-input {max(in_len, st['max_input'])} "
                             f"--max-output {max(out_len, st['max_output'])}")


def _check_speech_cases(m: mf.Manifest, cfg: ProfileConfig, where: str) -> None:
    """A speech artifact's cases: the encoder reads one window, the decoder its prompt and --output-len tokens."""
    from ..generate.loop import decoder_room
    from .speech import prompt

    room, n, out = decoder_room(m), len(prompt(m.audio["tokens"])), max(cfg.output_lens)  # type: ignore[index]
    if n + out > room:
        raise UsageError(f"{where}: --output-len {out} after the {n}-token decoder prompt exceeds the {room} decoder "
                         "positions this artifact has" + (" (its static cache)" if m.static else ""),
                         f"profile --output-len {room - n} or less"
                         + (", or re-export with a larger --max-output" if m.static else ""))


def case_key(artifact: str | Path, in_len: int, out_len: int, batch: int) -> str:
    """Identifies a finished case in a partial report, for --resume."""
    return f"{Path(artifact).resolve()}|{in_len}|{out_len}|{batch}"


def profile_artifact(path: str | Path, cfg: ProfileConfig, tick: Callable[[], None] | None = None,
                     bandwidth_gb_s: float | None = None) -> list[ProfileResult]:
    """Profile one artifact over every case of `cfg`; one result per case."""
    return list(iter_profile(path, cfg, tick, bandwidth_gb_s))


def iter_profile(path: str | Path, cfg: ProfileConfig, tick: Callable[[], None] | None = None,
                 bandwidth_gb_s: float | None = None, skip: frozenset[str] = frozenset(),
                 time_limit_s: float | None = None) -> Iterator[ProfileResult]:
    """Yield each case's result as soon as it is measured (so an interrupted sweep keeps them).

    Cases whose key is in `skip` are not run. A case that passes `time_limit_s` (warm-up and
    repetitions together) yields a result with status "timeout" and the sweep goes on."""
    from tokenizers import Tokenizer

    p = Path(path)
    m = mf.read(p)
    check_cases(m, cfg, str(p))
    cases = [c for c in cfg.cases(m) if case_key(p, *c) not in skip]
    if not cases:
        return
    engine = _import_engine(m, cfg)
    worst = max(kv_bytes(m, b, i, o) for i, o, b in cases)
    check_fits(int(weight_bytes(m) * LOAD_FACTOR) + worst, f"profiling {p.name} (weights + largest case's cache)",
               "profile smaller batches or lengths, or close other programs")
    need = {c: estimate(m, engine, c[2], c[0], c[1]) for c in cases}
    check_budget(max(need.values(), key=lambda e: e.total), cfg.max_memory_mb,
                 f"profiling {p.name} (its largest case)", "raise --max-memory, or profile shorter lengths or "
                 "smaller batches, or a lower-bit artifact")
    tok = Tokenizer.from_file(str(p / mf.TOKENIZER))
    if m.audio:
        from . import speech

        samples, seconds, label = speech.audio_input(cfg.audio, cfg.audio_seconds, m.audio)
    rss_before = rss_mb()
    with PeakRSS() as load_peak:
        backend, cold_ms, warm_ms = _open(p, m, cfg)
        proposer = _proposer(p, m, backend, tok, cfg) if cfg.speculate else None
    loaded = Loaded(rss_before, load_peak.peak_mb, rss_mb())
    for in_len, out_len, batch in cases:
        deadline = None if time_limit_s is None else time.perf_counter() + time_limit_s
        count, front, specs = cfg.warmup + cfg.reps, [], []
        with PeakRSS() as gen_peak:
            if m.audio:  # one window of audio in place of the prompt (profile/speech.py)
                runs, first_run_ms, head, status, front = speech.runs(backend, m, samples, out_len, batch, count,
                                                                      deadline, tick)
            else:
                runs, first_run_ms, head, status = _text_runs(backend, m, tok, in_len, out_len, batch, count, deadline,
                                                              tick, proposer, cfg, specs)
        res = _result(p, m, backend, cfg, in_len, out_len, batch, runs[cfg.warmup:], first_run_ms, head,
                      bandwidth_gb_s)
        if m.audio:
            res.extra.update(speech.extras(front[cfg.warmup:], runs[cfg.warmup:], seconds, label))
        if proposer is not None:
            res.extra["speculation"] = Speculation.total(specs[cfg.warmup:]).as_dict()
        res.status, res.key = status, case_key(p, in_len, out_len, batch)
        res.memory = loaded.breakdown(gen_peak.peak_mb, cache_bytes(m, batch, in_len, out_len),
                                      need[(in_len, out_len, batch)])
        res.peak_rss_mb, res.rss_before_load_mb = res.memory["peak_mb"], round(rss_before, 1)
        res.load_ms, res.load_warm_ms = round(cold_ms, 2), warm_ms
        if status == "timeout":
            res.time_limit_s = time_limit_s
        yield res


def _import_engine(m: mf.Manifest, cfg: ProfileConfig) -> str:
    """The engine that will run the artifact, its library imported now, so the memory resident before the load
    (the runtime) is measured apart from the weights."""
    import importlib

    engine = cfg.engine or device_engine(m, cfg.device)
    package = "torch" if engine in PYTORCH else registry.spec(engine).package
    try:
        importlib.import_module(package)
    except ImportError:
        pass  # opening the backend says which extra to install
    return engine


def _open(p: Path, m: mf.Manifest, cfg: ProfileConfig) -> tuple[Any, float, float | None]:
    """The backend, its cold load time, and where the engine caches compiled graphs, a second load's time (the
    first backend is released before it, so the load peak is one load's, not two)."""
    options = BackendOptions(threads=cfg.threads, precision=cfg.precision, delegate=cfg.delegate,
                             engine_options=cfg.engine_options)
    backend = open_runner(p, m, cfg.device, cfg.engine, options)
    cold_ms = backend.load_ms
    if not backend.compile_cache:
        return backend, cold_ms, None
    del backend  # load again: the compiled blobs are cached now
    gc.collect()
    backend = open_runner(p, m, cfg.device, cfg.engine, options)
    return backend, cold_ms, round(backend.load_ms, 2)


def _proposer(p: Path, m: mf.Manifest, backend: Any, tok: Any, cfg: ProfileConfig) -> Proposer:
    """The proposer of --speculate (a draft artifact is loaded once, with the same threads)."""
    from ..api import Model

    return Model(p, m, backend, tok).proposer(cfg.speculate)  # type: ignore[arg-type]


def _text_runs(backend: Any, m: mf.Manifest, tok: Any, in_len: int, out_len: int, batch: int, count: int,
               deadline: float | None, tick: Callable[[], None] | None, proposer: Proposer | None = None,
               cfg: ProfileConfig | None = None, specs: list[Speculation] | None = None
               ) -> tuple[list[Timings], float, list[int], str]:
    """`count` runs from a prompt of exactly `in_len` ids: their timings (stopping at a time-limit
    overrun), the first run's wall time (tokenizing included), the last run's first row of ids and the status.
    With a proposer the runs speculate, each run's statistics appended to `specs`."""
    rows = [prompt_ids(tok, in_len, m.dims["vocab_size"])] * batch
    # the text these ids decode to: tokenizing it is timed per run (the loop itself gets ids, so that
    # every engine is fed exactly the same tokens)
    text = tok.decode(rows[0], skip_special_tokens=False)
    gcfg = GenerationConfig(max_new_tokens=out_len, ignore_eos=True).validate()
    runs: list[Timings] = []
    ids: list[list[int]] = [[]]
    first = math.nan
    for _ in range(count):
        t = time.perf_counter()
        tok.encode_batch([text] * batch, add_special_tokens=False)
        tokenize_ms = (time.perf_counter() - t) * 1e3
        try:
            if proposer is not None and cfg is not None:
                ids, timings, stats = speculate(backend, rows, gcfg, m.generation, proposer, cfg.draft_tokens)
                if specs is not None:
                    specs.append(stats)
            else:
                ids, timings = run(backend, rows, gcfg, m.generation, deadline=deadline)
        except TimeLimitError:
            return runs, first, ids[0], "timeout"
        timings.tokenize_ms = tokenize_ms
        if not runs:
            first = (time.perf_counter() - t) * 1e3
        runs.append(timings)
        if tick:
            tick()
    return runs, first, ids[0], "ok"


def _result(p: Path, m: mf.Manifest, backend: Any, cfg: ProfileConfig, in_len: int, out_len: int, batch: int,
            runs: list[Timings], first_run_ms: float, gen_ids: list[int], bw: float | None) -> ProfileResult:
    placement = backend.placement() or {}
    npu = placement.get("npu") or {}
    res = ProfileResult(
        artifact=str(p), model=m.model.get("name"), label=m.label, kind=m.kind, random_weights=m.random_weights,
        format=m.format, engine=backend.engine,
        device=getattr(backend, "device_label", cfg.device),  # the row chosen: npu -> npu:qnn
        simulated=npu.get("simulated", False), node_share=npu.get("node_share"), placement=placement,
        precision=backend.precision,
        engine_options=backend.engine_options.as_dict(),  # the effective settings, defaults included
        weights=m.quantization or "fp32", quantization=m.quantization,
        parity=m.parity.get("status"), quality=quality_summary(m.quality), threads=cfg.threads, input_len=in_len, output_len=out_len, batch=batch,
        warmup=cfg.warmup, reps=cfg.reps, load_ms=round(backend.load_ms, 2), first_run_ms=round(first_run_ms, 2),
        huge_pages=backend.huge_pages,
        artifact_bytes=sum(f["bytes"] for f in m.files.values()) + (p / mf.MANIFEST).stat().st_size,
        samples={k: [round(getattr(t, k), 4) for t in runs] for k in METRICS},  # empty after a timeout
        gen_head=gen_ids[:8])
    res.napkin = napkin(m, in_len, out_len, batch, res.decode_tok_s, bw)
    return res


def quality_summary(q: dict[str, Any] | None) -> dict[str, Any] | None:
    """What a profile row carries of an artifact's quality figures (quality/): the all-sets summary."""
    if not q:
        return None
    keep = ("tokens", "perplexity", "reference_perplexity", "kl_mean", "kl_p99", "top1_agreement")
    return {**{k: q[k] for k in keep if k in q}, "greedy_agreement": (q.get("greedy") or {}).get("token_agreement")}


def napkin(m: mf.Manifest, in_len: int, out_len: int, batch: int, tok_s: float, bw: float | None) -> dict[str, Any]:
    """Bytes one decode step reads (weights once + the KV cache at the mean position) and the GB/s
    that the measured decode rate implies; decode_tok_s counts steps, each producing `batch` tokens."""
    d = m.dims
    kv_heads = d["num_kv_heads"]
    per_pos = 2 * d["num_layers"] * kv_heads * d["head_dim"] * 4 * batch  # K and V, float32
    mean_pos = (in_len + out_len / 2) if m.kind == "decoder-only" else out_len / 2
    cross = 2 * d["num_layers"] * kv_heads * d["head_dim"] * 4 * batch * in_len if m.kind != "decoder-only" else 0
    weights = int(m.model.get("bytes_read_per_token", 0))
    per_step = weights + int(per_pos * mean_pos) + cross
    out: dict[str, Any] = {"weight_bytes_per_token": weights, "kv_bytes_per_token": int(per_pos * mean_pos) + cross,
                           "bytes_per_token": per_step, "achieved_gb_s": round(per_step * tok_s / 1e9, 2)}
    if bw:
        out["bandwidth_gb_s"] = round(bw, 2)
        out["share_of_bandwidth"] = round(per_step * tok_s / 1e9 / bw, 3)
        out["bound_tok_s"] = round(bw * 1e9 / per_step, 1)
    return out


def host_info() -> dict[str, Any]:
    import os

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), cpu)
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(), "os": platform.platform()}
