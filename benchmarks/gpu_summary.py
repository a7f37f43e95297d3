"""The GPU check's summary (benchmarks/gpu_check.sh writes its inputs): edgeseq's torch-compile rows next to
transformers' compiled static-cache generate on the same machine in the same run, the issue's decode goals,
and the paper suite's rows grouped by input length.

    python benchmarks/gpu_summary.py OUT        # reads OUT/torch-compile-*.json, OUT/transformers-*.json,
                                                # OUT/paper-gpu/results.json; writes OUT/summary.json
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

# decode tok/s at batch 1, 128 prompt / 64 new tokens on an H100 (issue 33)
GOALS = {"smollm2-135m": 1500.0, "t5-small": 2000.0}


def _load(path: Path) -> Any:
    """A JSON file, or the JSON object on the last line of a worker's output."""
    try:
        text = path.read_text().strip()
        try:
            return json.loads(text)
        except ValueError:
            return json.loads(text.splitlines()[-1])
    except (OSError, ValueError, IndexError) as e:
        print(f"{path.name}: unreadable ({e})")
        return None


def host_facts() -> dict[str, Any]:
    """The GPU, its driver, torch and CUDA versions, the CPU: what the figures depend on."""
    import platform
    import subprocess

    import torch

    facts: dict[str, Any] = {"torch": torch.__version__, "cuda": torch.version.cuda, "cpu": platform.processor()
                             or platform.machine(), "python": platform.python_version()}
    if torch.cuda.is_available():
        facts["gpu"] = torch.cuda.get_device_name(0)
        try:
            facts["driver"] = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                             capture_output=True, text=True, timeout=30).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            facts["driver"] = "?"
    try:
        import triton

        facts["triton"] = triton.__version__
    except ImportError:
        facts["triton"] = None
    return facts


def main(out: Path) -> int:
    rows: list[dict[str, Any]] = []
    for f in sorted(out.glob("torch-compile-*.json")):
        doc = _load(f)
        for r in (doc or {}).get("results", []):
            name = r["model"].removeprefix("preset:")
            hf = _load(out / f"transformers-{name}-{f.stem.rsplit('-', 1)[1]}.json") or {}
            rows.append({"model": name, "precision": r["precision"], "device": (r.get("placement") or {}).get("device"),
                         "ttft_ms": r["ttft_ms"], "tpot_ms": r["tpot_ms"], "decode_tok_s": r["decode_tok_s"],
                         "peak_gpu_mb": (r.get("placement") or {}).get("peak_device_memory_mb"),
                         "transformers": {k: hf.get(k) for k in ("tool", "ttft_ms", "tpot_ms", "decode_tok_s",
                                                                 "compiled_by_generate", "versions")}})
    print(f"{'model':<14} {'prec':<6} {'TTFT ms':>8} {'tok/s':>8} {'HF TTFT':>8} {'HF tok/s':>9} {'vs HF':>6} "
          f"{'goal':>6}  met")
    met_all = True
    for r in rows:
        hf, goal = r["transformers"], GOALS.get(r["model"])
        ratio = r["decode_tok_s"] / hf["decode_tok_s"] if hf.get("decode_tok_s") else None
        met = goal is not None and r["decode_tok_s"] >= goal and ratio is not None and ratio > 1
        met_all &= met or goal is None
        r["vs_transformers"], r["goal_tok_s"], r["goal_met"] = ratio, goal, met
        print(f"{r['model']:<14} {r['precision']:<6} {r['ttft_ms']:>8.2f} {r['decode_tok_s']:>8.0f} "
              f"{hf.get('ttft_ms') or 0:>8.2f} {hf.get('decode_tok_s') or 0:>9.0f} "
              f"{(f'{ratio:.2f}x' if ratio else '-'):>6} {goal or '-':>6}  {'yes' if met else 'no'}")
    paper = _load(out / "paper-gpu" / "results.json") if (out / "paper-gpu" / "results.json").is_file() else None
    paper_rows = [{k: r.get(k) for k in ("model", "input_len", "output_len", "ttft_ms", "tpot_ms", "decode_tok_s",
                                        "precision", "status")} for r in (paper or {}).get("points", [])]
    if paper_rows:
        print("\npaper suite (torch-compile, gpu):")
        for r in sorted(paper_rows, key=lambda r: (r["input_len"] or 0, str(r["model"]))):
            if r["status"] == "ok":
                print(f"  in={r['input_len']:>5} {str(r['model']):<40} TTFT {r['ttft_ms']:>8.1f} ms  "
                      f"decode {r['decode_tok_s']:>7.0f} tok/s")
            else:
                print(f"  in={r['input_len']:>5} {str(r['model']):<40} {r['status']}")
    facts = host_facts()
    print("host:", ", ".join(f"{k} {v}" for k, v in facts.items()))
    (out / "summary.json").write_text(json.dumps({"host": facts, "rows": rows, "paper": paper_rows, "goals": GOALS},
                                                 indent=1))
    print(f"\nwrote {out / 'summary.json'}; goals met: {'all' if met_all and rows else 'not all'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
