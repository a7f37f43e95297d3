"""PNG plots for `edgeseq compare` (matplotlib, the `compare` extra): TTFT and decode rate against
input length, peak memory against input length (the KV cache is what grows), and artifact size beside
peak memory."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import require


def draw(rows: list[dict[str, Any]], out: Path) -> list[str]:
    """Write the plots into `out`; return their file names."""
    require("matplotlib", "compare")
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    from .report import series

    ok = [r for r in rows if r["status"] == "ok"]
    if not ok:
        return []
    lines: dict[str, list[dict[str, Any]]] = {}
    for r in ok:
        lines.setdefault(series(r), []).append(r)
    names = []
    for key, ylabel, fname, log in (("ttft_ms", "time to first token (ms)", "ttft_vs_input.png", True),
                                    ("decode_tok_s", "decode tokens/s", "decode_tok_s.png", False),
                                    ("peak_mb", "peak memory while generating (MB)", "memory_vs_input.png", False)):
        fig, ax = plt.subplots(figsize=(7, 5.5))
        for label, pts in lines.items():
            pts = sorted(pts, key=lambda r: r["input_len"])
            style = "-" if pts[0]["kind"] == "encoder-decoder" else "--"
            ax.plot([r["input_len"] for r in pts], [_value(r, key) for r in pts], style, marker="o", label=label)
        ax.set_xscale("log", base=2)
        lens = sorted({r["input_len"] for r in ok})
        ax.set_xticks(lens, [str(n) for n in lens])
        if log:
            ax.set_yscale("log")
        ax.set_xlabel("input tokens")
        ax.set_ylabel(ylabel)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=2)
        ax.set_title(f"{ylabel} (solid: encoder-decoder, dashed: decoder-only)", fontsize=9)
        fig.tight_layout()
        fig.savefig(out / fname, dpi=110)
        plt.close(fig)
        names.append(fname)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    labels = list(lines)
    size = [lines[k][0]["artifact_bytes"] / 1e6 for k in labels]
    peak = [max(r["peak_rss_mb"] for r in lines[k]) for k in labels]
    x = range(len(labels))
    ax.bar([i - 0.2 for i in x], size, 0.4, label="artifact size (MB)")
    ax.bar([i + 0.2 for i in x], peak, 0.4, label="peak RSS while profiling (MB)")
    ax.set_xticks(list(x), labels, rotation=20, ha="right", fontsize=7)
    ax.set_ylabel("MB")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "memory_size.png", dpi=110)
    plt.close(fig)
    return names + ["memory_size.png"]


def _value(r: dict[str, Any], key: str) -> float:
    """A row's figure; "peak_mb": the generation's peak (the KV cache grows with the input), or, in a report
    written before the profile split load from generation, the case's peak."""
    if key == "peak_mb":
        return float((r.get("memory") or {}).get("generate_peak_mb") or r["peak_rss_mb"])
    return float(r[key])
