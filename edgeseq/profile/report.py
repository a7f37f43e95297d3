"""Profile reports: a terminal table, Markdown and JSON; ratios against the first artifact."""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

COLUMNS = [  # (header, key or function, format)
    ("artifact", "label", "{}"), ("engine", "engine", "{}"),
    ("dev", lambda r: r["device"] + ("*" if r.get("simulated") else ""), "{}"), ("weights", "weights", "{}"),
    ("prec", "precision", "{}"),
    ("in", "input_len", "{}"), ("out", "output_len", "{}"), ("b", "batch", "{}"),
    ("TTFT ms", "ttft_ms", "{:.1f}"), ("TPOT ms", "tpot_ms", "{:.2f}"), ("tok/s", "decode_tok_s", "{:.1f}"),
    ("e2e ms", "e2e_ms", "{:.0f}"), ("load ms", "load_ms", "{:.0f}"), ("RSS MB", "peak_rss_mb", "{:.0f}"),
    ("size MB", lambda r: r["artifact_bytes"] / 1e6, "{:.1f}"), ("GB/s", lambda r: r["napkin"]["achieved_gb_s"], "{:.1f}"),
    ("parity", "parity", "{}"),
]


def add_ratios(results: list[dict[str, Any]]) -> None:
    """Each case's TTFT and decode rate relative to the first artifact's result for the same case."""
    base: dict[tuple[int, int, int], dict[str, Any]] = {}
    for r in results:
        key = (r["input_len"], r["output_len"], r["batch"])
        b = base.setdefault(key, r)
        r["vs_first"] = {"artifact": b["artifact"], "ttft_ratio": _ratio(r["ttft_ms"], b["ttft_ms"]),
                         "decode_tok_s_ratio": _ratio(r["decode_tok_s"], b["decode_tok_s"])}


def _ratio(a: float, b: float) -> float:
    return round(a / b, 3) if b and not math.isnan(a) and not math.isnan(b) else math.nan


def _cells(r: dict[str, Any], with_ratios: bool) -> list[str]:
    cells = []
    for _, key, fmt in COLUMNS:
        v = key(r) if callable(key) else r.get(key)
        cells.append("-" if v is None or (isinstance(v, float) and math.isnan(v)) else fmt.format(v))
    if with_ratios:
        cells += [f"{r['vs_first']['ttft_ratio']:.2f}x", f"{r['vs_first']['decode_tok_s_ratio']:.2f}x"]
    return cells


def _headers(with_ratios: bool) -> list[str]:
    return [h for h, _, _ in COLUMNS] + (["TTFT vs 1st", "tok/s vs 1st"] if with_ratios else [])


def table(results: list[dict[str, Any]]) -> str:
    multi = len({r["artifact"] for r in results}) > 1
    rows = [_headers(multi)] + [_cells(r, multi) for r in results]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.rjust(w) if j >= 5 else c.ljust(w) for j, (c, w) in enumerate(zip(row, widths)))
             for row in rows]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines) + "\n" + footnotes(results)


def footnotes(results: list[dict[str, Any]]) -> str:
    notes = []
    if any(r["random_weights"] for r in results):
        notes.append("(random weights): preset shapes with random weights; timing depends on shape, not weights.")
    bad = sorted({r["label"] for r in results if r["parity"] != "passed"})
    if bad:
        notes.append(f"WARNING: parity not passed for {', '.join(bad)}: its outputs are not checked against PyTorch.")
    late = [f"{r['label']} in={r['input_len']} out={r['output_len']} b={r['batch']}" for r in results
            if r.get("status") == "timeout"]
    if late:
        notes.append(f"TIMEOUT (past --time-limit, no figures): {'; '.join(late)}.")
    sim = sorted({r["label"] for r in results if r.get("simulated")})
    if sim:
        notes.append(f"* {sim_note(results)}: {', '.join(sim)} ran on a device simulator (the QNN HTP simulator "
                     "on x86-64); its figures show the graphs run there, not how fast a device runs them.")
    shares = [f"{r['label']} {r['node_share']:.0%}" for r in results if r.get("node_share") is not None]
    if shares:
        notes.append(f"nodes on the NPU: {'; '.join(dict.fromkeys(shares))} (placement in the JSON report).")
    huge = [f"{r['label']} {r['huge_pages']['mb']} MB" for r in results if (r.get("huge_pages") or {}).get("mb")]
    if huge:
        notes.append(f"weights moved into huge pages at load (load ms includes it): {'; '.join(dict.fromkeys(huge))}.")
    r0 = results[0]
    notes.append(f"medians of {r0['reps']} runs after {r0['warmup']} warm-up; forced decoding (EOS masked); "
                 f"threads {r0['threads']}; prec = the compute precision the engine reports.")
    return "\n".join(notes)


def sim_note(results: list[dict[str, Any]]) -> str:
    return next(str(r["simulated"]) for r in results if r.get("simulated"))


def markdown(doc: dict[str, Any]) -> str:
    results = doc["results"]
    multi = len({r["artifact"] for r in results}) > 1
    head = _headers(multi)
    out = ["# edgeseq profile", "", f"host: {doc['host']['cpu']}, {doc['host']['cores']} cores; "
           f"edgeseq {doc['edgeseq_version']}; bandwidth (numpy copy): {doc.get('bandwidth_gb_s') or '-'} GB/s", "",
           "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    out += ["| " + " | ".join(_cells(r, multi)) + " |" for r in results]
    out += ["", footnotes(results).replace("\n", "\n\n"), ""]
    return "\n".join(out)


def write_json(doc: dict[str, Any], path: str | Path) -> None:
    Path(path).write_text(json.dumps(json_safe(doc), indent=2, allow_nan=False, default=str))


def json_safe(o: Any) -> Any:
    """NaN (a metric that does not apply or a timed-out case) -> null, tuples -> lists: valid JSON
    that reads back equal to what was written."""
    if isinstance(o, float) and math.isnan(o):
        return None
    if isinstance(o, dict):
        return {k: json_safe(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [json_safe(v) for v in o]
    return o
