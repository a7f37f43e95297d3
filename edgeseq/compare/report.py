"""`edgeseq compare`'s report: results.json, index.md and the plots, from the sweep's rows.

Headline ratios follow the paper's two numbers: "first-token latency X% lower" is
1 - TTFT(enc-dec) / TTFT(dec-only), and "throughput Nx" is decode tok/s(enc-dec) / (dec-only), for
the same format, weights and input length. With models of one kind, every model is set against
the first one instead (and the report says so).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from ..artifact import manifest as mf
from ..profile.cost import flops
from ..profile.result import ProfileResult, RunHeader, RunReport

# models whose parameter counts differ by more than this are labelled: their ratios mix the effect of
# the architecture with that of the size
SIZE_TOLERANCE = 0.10

# "Return of the Encoder" (arXiv 2501.16273), shared/reference notes: the claim and Figure 1(a)
# (values read off the plot, seconds; decoder-only / encoder-decoder per input length).
PAPER = {"ttft_lower": 0.47, "throughput_ratio": 4.7,
         "figure_1a": {512: (0.3, 0.1), 1024: (1.3, 0.2), 2048: (2.7, 0.3), 4096: (12.0, 0.4), 8192: (45.0, 1.4)}}


def series(row: ProfileResult) -> str:
    return f"{row.get('label') or row['source']} / {row['format']} {row['weights']}"


def host_label(row: ProfileResult) -> str | None:
    """The kind of host a row was measured on (CPU model and cores), for rows a cluster node recorded
    (`compare --ray`); None for rows measured by this process."""
    h = row.get("host")
    return f"{h.get('cpu', '?')}, {h.get('cores', '?')} cores" if isinstance(h, dict) else None


def hosts(rows: list[ProfileResult]) -> dict[str, dict[str, Any]]:
    """Per kind of host: its nodes (host name and node id) and their measured bandwidths."""
    out: dict[str, dict[str, Any]] = {}
    for r in rows:
        label = host_label(r)
        if label is None or r["status"] != "ok":
            continue
        h = out.setdefault(label, {"nodes": [], "bandwidth_gb_s": []})
        name = f"{r['host'].get('hostname', '?')} ({str(r['host'].get('node_id', ''))[:8]})"
        if name not in h["nodes"]:
            h["nodes"].append(name)
            if r["host"].get("bandwidth_gb_s"):
                h["bandwidth_gb_s"].append(r["host"]["bandwidth_gb_s"])
    return out


def models(rows: list[ProfileResult]) -> dict[str, dict[str, Any]]:
    """Per artifact: kind, parameters, size, tokenizer and the arithmetic at each measured length."""
    out: dict[str, dict[str, Any]] = {}
    for r in rows:
        if r["status"] != "ok" or r["artifact"] in out:
            continue
        m = mf.read(r["artifact"], check_files=False)
        out[r["artifact"]] = {"series": series(r), "kind": m.kind, "params": m.model.get("params"),
                              "random_weights": m.random_weights, "artifact_bytes": r["artifact_bytes"],
                              "tokenizer_sha256": m.files.get(mf.TOKENIZER, {}).get("sha256"), "manifest": m}
    for r in rows:
        if r["status"] == "ok":
            m = out[r["artifact"]]["manifest"]
            r["flops"] = flops(m, r["input_len"], r["output_len"])
    return out


def size_gap(params_a: int | None, params_b: int | None) -> float | None:
    """How much larger the larger model is than the smaller (0.25: 25% more parameters); None if unknown."""
    if not params_a or not params_b:
        return None
    return round(max(params_a, params_b) / min(params_a, params_b) - 1, 3)


def size_text(gap: float | None) -> str:
    """The label a ratio carries: matched sizes, or a warning that the comparison is not like for like."""
    if gap is None:
        return "sizes unknown"
    if gap > SIZE_TOLERANCE:
        return f"sizes differ by {gap:.0%}: not a like-for-like comparison"
    return f"sizes matched (within {gap:.0%})"


def params_text(n: int | None) -> str:
    """A parameter count as people say it: 134.5M, 237.1K."""
    if not n:
        return "?"
    return f"{n / 1e6:.1f}M" if n >= 1e6 else f"{n / 1e3:.1f}K"


def headline(rows: list[ProfileResult], info: dict[str, dict[str, Any]]) -> tuple[list[dict[str, Any]], str]:
    """Ratio rows: enc-dec against dec-only per (format, weights, input length), else against the first."""
    ok = [r for r in rows if r["status"] == "ok"]
    kinds = {info[r["artifact"]]["kind"] for r in ok}
    out = []
    mode = "encoder-decoder vs decoder-only" if kinds == {"encoder-decoder", "decoder-only"} else "vs the first model"
    by_case: dict[tuple[str, str, int, Any, str | None], list[dict[str, Any]]] = {}
    for r in ok:  # pairs on one device (`on`: compare --on's) and one kind of host (compare --ray's nodes) only
        by_case.setdefault((r["format"], r["weights"], r["input_len"], r.get("on"), host_label(r)), []).append(r)
    for (fmt, weights, n, _, host), group in by_case.items():
        if mode.startswith("encoder"):
            pairs = [(a, b) for a in group if a["kind"] == "encoder-decoder" for b in group if b["kind"] == "decoder-only"]
        else:
            pairs = [(a, group[0]) for a in group[1:]]
        for a, b in pairs:
            pa, pb = info[a["artifact"]]["params"], info[b["artifact"]]["params"]
            out.append({"format": fmt, "weights": weights, "input_len": n, "a": a.get("label") or a["source"],
                        "b": b.get("label") or b["source"], "params_a": pa, "params_b": pb,
                        "size_gap": size_gap(pa, pb),
                        "ttft_a_ms": a["ttft_ms"], "ttft_b_ms": b["ttft_ms"],
                        "ttft_lower": _round(1 - a["ttft_ms"] / b["ttft_ms"]),
                        "decode_ratio": _round(a["decode_tok_s"] / b["decode_tok_s"]),
                        "e2e_ratio": _round(b["e2e_ms"] / a["e2e_ms"]), **({"host": host} if host else {})})
    return out, mode


def _round(x: float) -> float:
    return round(x, 3) if math.isfinite(x) else math.nan


def write(suite: Any, rows: list[ProfileResult], out: Path, header: RunHeader, complete: bool = True,
          plots: bool = True) -> RunReport:
    """results.json, index.md and the plots; the report returned is what they hold."""
    info = models(rows)
    ratios, mode = headline(rows, info)
    warnings = []
    kinds = {v["kind"] for v in info.values()}
    if len(kinds) == 1:
        warnings.append(f"all models are {kinds.pop()}: ratios are against the first model, not enc-dec vs dec-only")
    toks = {v["tokenizer_sha256"] for v in info.values()}
    if len(toks) > 1:
        warnings.append("the models have different tokenizers: lengths are counts of each model's own tokens, so "
                        "the same input length is the same number of tokens, not the same text")
    warnings += list(dict.fromkeys(
        f"{r['a']} ({params_text(r['params_a'])} params) vs {r['b']} ({params_text(r['params_b'])} params): "
        f"{size_text(r['size_gap'])}" for r in ratios if (r["size_gap"] or 0) > SIZE_TOLERANCE))
    report = RunReport(header, rows, complete, results_key="points", sections={
        "suite": suite.as_dict(), "warnings": warnings, "ratio_mode": mode,
        "models": {k: {kk: vv for kk, vv in v.items() if kk != "manifest"} for k, v in info.items()},
        "ratios": ratios, **({"hosts": hosts(rows)} if hosts(rows) else {})})
    report.write_json(out / "results.json")
    images = []
    if plots:
        from .plots import draw

        images = draw(rows, out)
    (out / "index.md").write_text(markdown(report, images))
    return report


def summary_lines(report: RunReport) -> list[str]:
    """The ratios as the terminal prints them, each with both models' sizes and its size label."""
    return [f"{r['format']} {r['weights']} in={r['input_len']}: {r['a']} ({params_text(r.get('params_a'))} params) "
            f"vs {r['b']} ({params_text(r.get('params_b'))} params): TTFT {lower_text(r['ttft_lower'])}, decode "
            f"{_fmt(r['decode_ratio'], '{:.2f}x')}, end-to-end {_fmt(r['e2e_ratio'], '{:.2f}x')} "
            f"[{size_text(r.get('size_gap'))}]" + (f" on {r['host']}" if r.get("host") else "")
            for r in report.sections["ratios"]]


def lower_text(x: float) -> str:
    """1 - a/b as "47% lower", or "30% higher" when a is the slower."""
    if not math.isfinite(x):
        return "-"
    return f"{x * 100:.0f}% lower" if x >= 0 else f"{-x * 100:.0f}% higher"


def _fmt(v: Any, spec: str) -> str:
    return "-" if v is None or (isinstance(v, float) and not math.isfinite(v)) else spec.format(v)


def markdown(report: RunReport, images: list[str]) -> str:
    doc = report.sections
    s, rows = doc["suite"], report.results
    ok = [r for r in rows if r["status"] == "ok"]
    lines = [*([s["description"], ""] if s["description"] else [])]
    lines += [f"> warning: {w}" for w in doc["warnings"]] + ([""] if doc["warnings"] else [])
    if doc["ratios"]:
        lines += [f"## Headline ratios ({doc['ratio_mode']})", "",
                  f"TTFT lower = 1 - TTFT(A) / TTFT(B) (the paper: {PAPER['ttft_lower']:.0%}); decode = tok/s(A) / "
                  f"tok/s(B) (the paper: {PAPER['throughput_ratio']}x); end-to-end = time(B) / time(A) for the whole "
                  "request.", "",
                  "| format | weights | in | A | params A | B | params B | TTFT A ms | TTFT B ms | TTFT lower | "
                  "decode A/B | end-to-end | sizes |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        lines += [f"| {r['format']} | {r['weights']} | {r['input_len']} | {r['a']} | {params_text(r.get('params_a'))} | "
                  f"{r['b']} | {params_text(r.get('params_b'))} | "
                  f"{_fmt(r['ttft_a_ms'], '{:.1f}')} | {_fmt(r['ttft_b_ms'], '{:.1f}')} | "
                  f"{lower_text(r['ttft_lower'])} | {_fmt(r['decode_ratio'], '{:.2f}x')} | "
                  f"{_fmt(r['e2e_ratio'], '{:.2f}x')} | {size_text(r.get('size_gap'))} |" for r in doc["ratios"]]
        lines.append("")
    lines.append("## Measurements")
    groups = doc.get("hosts") or {}
    if groups:  # rows from Ray nodes: which, and grouped when the kinds of host differ
        lines += ["", f"Measured on {sum(len(h['nodes']) for h in groups.values())} Ray node(s)"
                  + (", grouped by kind of host (ratios set rows of one kind against each other):"
                     if len(groups) > 1 else ":")]
        lines += [f"- {label}: {', '.join(h['nodes'])}" + (f"; copy bandwidth {', '.join(map(str, h['bandwidth_gb_s']))} "
                  "GB/s" if h["bandwidth_gb_s"] else "") for label, h in groups.items()]
    for label in list(groups) if len(groups) > 1 else [None]:
        lines += ([""] + [f"### {label}"] if label else []) + ["", *_TABLE_HEAD]
        lines += [_table_row(r) for r in ok if label is None or host_label(r) == label]
    lines += ["", "GFLOP counts linear layers and attention (2 per multiply-add), from the manifest's recorded "
              "weights per graph; MB read/token = weights one decode step reads + its KV cache (float32) at the "
              "mean position. Peak RSS: the process's peak for the point, the larger of its load's and its generation's "
              "(memory_vs_input.png plots the generation's against the input length).", ""]
    models_ = doc["models"]
    if models_:
        lines += ["## Models", "", "| model / format weights | kind | parameters | size MB |", "|---|---|---|---|"]
        lines += [f"| {v['series']} | {v['kind']} | {_fmt(v['params'], '{:,}')} | {v['artifact_bytes'] / 1e6:.0f} |"
                  for v in models_.values()]
        lines.append("")
    bad = [r for r in rows if r["status"] != "ok"]
    if bad:
        lines += ["## Points that did not finish", ""]
        lines += [f"- {r['source']} {r['format']} {r['weights']} in={r['input_len']}: {r['status']}"
                  + (f": {r['error']}" if r.get("error") else "") for r in bad]
        lines.append("")
    if any(str(r.get("source", "")).startswith("preset:paper-") for r in rows):
        fig = PAPER["figure_1a"]
        lines += ["## The paper's numbers, for reference", "",
                  f"Return of the Encoder (arXiv 2501.16273): encoder-decoder {PAPER['ttft_lower']:.0%} lower "
                  f"first-token latency and {PAPER['throughput_ratio']}x throughput on a Qualcomm Hexagon NPU "
                  "(int8/int16). Figure 1(a), inference time (s) vs input length, read off the plot:", "",
                  "| input tokens | " + " | ".join(str(k) for k in fig) + " |", "|---|" + "---|" * len(fig),
                  "| decoder-only | " + " | ".join(f"~{v[0]}" for v in fig.values()) + " |",
                  "| encoder-decoder | " + " | ".join(f"~{v[1]}" for v in fig.values()) + " |", ""]
    if images:
        lines += ["## Plots", ""] + [f"![{Path(i).stem}]({i})" for i in images] + [""]
    return report.markdown(f"edgeseq compare: {s['name']}", lines)


_TABLE_HEAD = ["| model / format weights | kind | in | TTFT ms | TPOT ms | decode tok/s | e2e ms | peak RSS MB "
               "| size MB | GFLOP to 1st token | GFLOP/token | MB read/token | parity | KL | top-1 |",
               "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]


def _table_row(r: ProfileResult) -> str:
    f, q = r.get("flops") or {}, r.get("quality") or {}
    return (f"| {series(r)} | {r['kind']} | {r['input_len']} | {r['ttft_ms']:.1f} | {r['tpot_ms']:.2f} | "
            f"{r['decode_tok_s']:.1f} | {r['e2e_ms']:.0f} | {r['peak_rss_mb']:.0f} | "
            f"{r['artifact_bytes'] / 1e6:.0f} | {_fmt(f.get('first_token', math.nan) / 1e9, '{:.3g}')} | "
            f"{_fmt(f.get('per_token', math.nan) / 1e9, '{:.3g}')} | "
            f"{r['napkin']['bytes_per_token'] / 1e6:.0f} | {r['parity']} | {_fmt(q.get('kl_mean', math.nan), '{:.3f}')} | "
            f"{_fmt(q.get('top1_agreement', math.nan), '{:.0%}')} |")
