"""`edgeseq profile --auto`: the fastest engine and compute precision for an artifact that stays
within tolerance.

Candidates: every installed engine that reads the artifact's format, at each compute precision it
offers (OpenVINO: f32 and bf16; ONNX Runtime: its float32). Each is checked first: fed the same
32 greedy tokens as the reference (the artifact's own engine at float32; teacher-forced through
the KV cache), its logits must stay within the parity tolerance of the artifact's weights, or of
the compute precision where that is looser (accuracy.py TOLERANCE). Candidates that pass are
profiled under the usual protocol; the winner has the lowest median end-to-end time.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, Callable


from ..artifact import manifest as mf
from ..errors import EdgeseqError
from ..accuracy import LOOSENESS, forced_logits, judge, prompt_ids
from ..runtimes import BackendOptions, default_engine, engine_module, open_backend, refusal, refusal_fix, registry
from .runner import ProfileConfig, iter_profile

STEPS = 32


def candidates(m: mf.Manifest) -> list[tuple[str, str]]:
    """(engine, precision) for every installed engine that reads the artifact's format, at each
    compute precision the engine declares. Native runtimes (runtimes/native.py) are not candidates: they
    return tokens, not logits to check, and their check is the export's (--native)."""
    out = []
    for engine in registry.readers(m.format):
        try:
            module = engine_module(engine)
        except EdgeseqError:  # not installed here: not a candidate
            continue
        if getattr(getattr(module, registry.spec(engine).backend, None), "native", False):
            continue  # a native runtime runs its own loop: no logits to judge (runtimes/native.py)
        out += [(engine, p) for p in registry.spec(engine).precisions]
    return out


def _rule(weights: str, precision: str) -> str:
    compute = "bf16" if "bf16" in precision else "fp16" if "16" in precision else "fp32"
    return max(weights, compute, key=LOOSENESS.index)


def run(path: str | Path, cfg: ProfileConfig, tick: Callable[[], None] | None = None,
        bandwidth_gb_s: float | None = None) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Check then profile every candidate; (profile results of those within tolerance, every check)."""
    p = Path(path)
    m = mf.read(p)
    gen = m.generation
    ids = prompt_ids((p / mf.TOKENIZER).read_text(), m.kind, gen, m.dims["vocab_size"])
    weights = m.quantization or "fp32"
    ref = open_backend(p, m, cfg.device, default_engine(m), BackendOptions(threads=cfg.threads, precision="f32"))
    ref_tokens, ref_logits = forced_logits(ref, ids, gen, None)
    del ref
    checks, results = [], []
    for engine, precision in candidates(m):
        why = refusal(engine, m)
        if why:  # e.g. OpenVINO and a graph with ONNX Runtime's own kernels: nothing to check
            fix = refusal_fix(engine, m)
            checks.append({"engine": engine, "precision": precision, "asked": precision, "status": "skipped",
                           "error": f"{why}; to try it, export with --format {engine}" + (f" or {fix}" if fix else "")})
            continue
        options = BackendOptions(threads=cfg.threads, precision=precision)
        try:
            backend = open_backend(p, m, cfg.device, engine, options)
            _, got = forced_logits(backend, ids, gen, ref_tokens)
            chosen = [int(t) for t in got.argmax(-1)]
            verdict = judge(got, ref_logits, chosen, _rule(weights, backend.precision))
            check = {"engine": engine, "precision": backend.precision, "asked": precision, **verdict}
            del backend
        except EdgeseqError as e:
            check = {"engine": engine, "precision": precision, "asked": precision, "status": "error",
                     "error": e.message}
        checks.append(check)
        if check["status"] != "passed":
            continue
        one = replace(cfg, engine=engine, precision=precision)
        for r in iter_profile(p, one, tick, bandwidth_gb_s):
            r["auto_check"] = {k: check[k] for k in ("status", "max_abs_diff", "tolerance", "tokens_agree")}
            results.append(r)
    return results, checks


def winner(results: list[dict[str, Any]]) -> dict[str, Any] | None:
    ok = [r for r in results if r.get("status") == "ok" and r["e2e_ms"] == r["e2e_ms"]]
    return min(ok, key=lambda r: r["e2e_ms"]) if ok else None
