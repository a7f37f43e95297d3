"""Profile reports: a terminal table, Markdown and JSON; ratios against the first artifact.

The header above the table (host, versions, engine, device, precision, protocol) is the run
report's (result.RunReport.header_lines); the notes below it are about particular results.
"""
from __future__ import annotations

import math
from typing import Any

from .result import ProfileResult, RunReport, json_safe, write_json
from .stats import summarize

__all__ = ["COLUMNS", "add_ratios", "footnotes", "json_safe", "markdown", "table", "text", "write_json"]

COLUMNS = [  # (header, key or function, format)
    ("artifact", "label", "{}"), ("engine", "engine", "{}"),
    ("dev", lambda r: f"{r.device}{'*' if r.simulated else ''}", "{}"), ("weights", "weights", "{}"),
    ("prec", "precision", "{}"),
    ("in", "input_len", "{}"), ("out", "output_len", "{}"), ("b", "batch", "{}"),
    ("TTFT ms", "ttft_ms", "{:.1f}"), ("TPOT ms", "tpot_ms", "{:.2f}"), ("tok/s", "decode_tok_s", "{:.1f}"),
    ("e2e ms", "e2e_ms", "{:.0f}"), ("load ms", "load_ms", "{:.0f}"), ("RSS MB", "peak_rss_mb", "{:.0f}"),
    ("size MB", lambda r: r.artifact_bytes / 1e6, "{:.1f}"), ("GB/s", lambda r: r.napkin.get("achieved_gb_s"), "{:.1f}"),
    ("parity", "parity", "{}"),
    ("KL", lambda r: (r.quality or {}).get("kl_mean"), "{:.3f}"),
    ("top-1", lambda r: (r.quality or {}).get("top1_agreement"), "{:.0%}"),
]


def add_ratios(results: list[ProfileResult]) -> None:
    """Each case's TTFT and decode rate relative to the first artifact's result for the same case."""
    base: dict[tuple[Any, Any, Any], ProfileResult] = {}
    for r in results:
        b = base.setdefault((r.input_len, r.output_len, r.batch), r)
        r.extra["vs_first"] = {"artifact": b.artifact, "ttft_ratio": _ratio(r.ttft_ms, b.ttft_ms),
                               "decode_tok_s_ratio": _ratio(r.decode_tok_s, b.decode_tok_s)}


def _ratio(a: float, b: float) -> float:
    return round(a / b, 3) if b and not math.isnan(a) and not math.isnan(b) else math.nan


def _cells(r: ProfileResult, with_ratios: bool) -> list[str]:
    cells = []
    for _, key, fmt in COLUMNS:
        v = key(r) if callable(key) else r[key]
        cells.append("-" if v is None or (isinstance(v, float) and math.isnan(v)) else fmt.format(v))
    if with_ratios:
        cells += [f"{r.extra['vs_first']['ttft_ratio']:.2f}x", f"{r.extra['vs_first']['decode_tok_s_ratio']:.2f}x"]
    return cells


def _headers(with_ratios: bool) -> list[str]:
    return [h for h, _, _ in COLUMNS] + (["TTFT vs 1st", "tok/s vs 1st"] if with_ratios else [])


def text(report: RunReport) -> str:
    """What the terminal shows: the run's header, the table, the notes."""
    ok = [r for r in report.results if r.status != "failed"]
    return "\n".join(report.header_lines()) + "\n" + table(ok)


def table(results: list[ProfileResult]) -> str:
    multi = len({r.artifact for r in results}) > 1
    rows = [_headers(multi)] + [_cells(r, multi) for r in results]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.rjust(w) if j >= 5 else c.ljust(w) for j, (c, w) in enumerate(zip(row, widths)))
             for row in rows]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines) + "\n" + footnotes(results)


def footnotes(results: list[ProfileResult]) -> str:
    """Notes on particular results (the run's protocol and random-weights note are in its header)."""
    notes = []
    from ..reference import NAMES as PYTORCH

    # the PyTorch engines run the source model itself, none of the graphs a parity check covers
    bad = sorted({str(r.label) for r in results if r.parity != "passed" and r.engine not in PYTORCH})
    if bad:
        notes.append(f"WARNING: parity not passed for {', '.join(bad)}: its outputs are not checked against PyTorch.")
    late = [f"{r.label} in={r.input_len} out={r.output_len} b={r.batch}" for r in results
            if r.status == "timeout"]
    if late:
        notes.append(f"TIMEOUT (past --time-limit, no figures): {'; '.join(late)}.")
    sim = sorted({str(r.label) for r in results if r.simulated})
    if sim:
        notes.append(f"* {sim_note(results)}: {', '.join(sim)} ran on a device simulator (the QNN HTP simulator "
                     "on x86-64); its figures show the graphs run there, not how fast a device runs them.")
    shares = [f"{r.label} {r.node_share:.0%}" for r in results if r.node_share is not None]
    if shares:
        notes.append(f"nodes on the NPU: {'; '.join(dict.fromkeys(shares))} (placement in the JSON report).")
    speech = [r for r in results if r.get("audio_seconds") and r.status == "ok"]
    for r in speech:  # the front end and the real-time factor, which a text profile does not have
        got = r["speech_samples"]
        notes.append(f"speech {r.label}: {r['audio']}; per run (medians) front end "
                     f"{summarize(got['features_ms'])['median']:.1f} ms, encoder {r.median('encode_ms'):.1f} ms, "
                     f"real-time factor {summarize(got['real_time_factor'])['median']:.3f} "
                     "(front end + encoder + forced decoding, over the audio's length)")
    for r in (r for r in results if r.get("speculation") and r.status == "ok"):
        sp = r["speculation"]
        notes.append(f"speculation {r.label} in={r.input_len} b={r.batch} ({sp['proposer']}, up to {sp['draft_tokens']} "
                     f"proposed, {sp['strategy']}): {sp['acceptance_rate']:.0%} of proposals accepted, "
                     f"{sp['mean_accepted']:.2f} accepted and {sp['tokens_per_step']:.2f} tokens per target step "
                     "(the timed runs together)")
    notes += memory_notes(results)
    huge = [f"{r.label} {(r.huge_pages or {})['mb']} MB" for r in results if (r.huge_pages or {}).get("mb")]
    if huge:
        notes.append(f"weights moved into huge pages at load (load ms includes it): {'; '.join(dict.fromkeys(huge))}.")
    return "\n".join(notes)


def memory_notes(results: list[ProfileResult]) -> list[str]:
    """Per artifact, its largest case's memory: the load's peak, the generation's split into parts, the estimate."""
    biggest: dict[str, ProfileResult] = {}
    for r in results:
        if r.memory and r.status == "ok":
            b = biggest.get(str(r.artifact))
            if b is None or r.memory["generate_peak_mb"] > b.memory["generate_peak_mb"]:
                biggest[str(r.artifact)] = r
    out = []
    for r in biggest.values():
        m, est = r.memory, r.memory["estimate_mb"]
        out.append(f"memory {r.label} (MB): load peak {m['load_peak_mb']:.0f}; generation peak "
                   f"{m['generate_peak_mb']:.0f} at in={r.input_len} out={r.output_len} b={r.batch} = runtime "
                   f"{m['runtime_mb']:.0f} + weights {m['weights_mb']:.0f} + KV cache {m['kv_cache_mb']:.0f} + workspace "
                   f"{m['workspace_mb']:.0f}; estimate {est['total']:.0f} (runtime {est['runtime']:.0f}, weights "
                   f"{est['weights']:.0f}, KV {est['kv_cache']:.0f}, workspace {est['workspace']:.0f}), what --max-memory "
                   "checks")
    return out


def sim_note(results: list[ProfileResult]) -> str:
    return next(str(r.simulated) for r in results if r.simulated)


def markdown(report: RunReport) -> str:
    results = report.results
    multi = len({r.artifact for r in results}) > 1
    head = _headers(multi)
    body = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    body += ["| " + " | ".join(_cells(r, multi)) + " |" for r in results]
    body += ["", footnotes(results).replace("\n", "\n\n"), ""]
    return report.markdown("edgeseq profile", body)
