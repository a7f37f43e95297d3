"""What the benchmarks that run each row in its own process share (whisper.py, speculate.py): running a
row's worker and reading the one JSON line it prints, and a table cell of an optional figure."""
from __future__ import annotations

import json
import os
import subprocess


def run_row(cmd: list[str], threads: int) -> dict:
    """Run a row's worker with `threads` intra-op threads; its last stdout line as JSON, or {"error": ...}."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if r.returncode != 0:
        lines = r.stderr.strip().splitlines()
        return {"error": lines[-1][:300] if lines else f"exit {r.returncode}"}
    try:
        return json.loads(r.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        return {"error": f"no JSON line in the output: {r.stdout.strip()[-200:]!r}"}


def cell(x: float | None, fmt: str) -> str:
    """A figure formatted for a table, '-' where there is none."""
    return "-" if x is None else format(x, fmt)


def run_rounds(plan: list[dict], rounds: int, threads: int) -> dict[str, list[dict]]:
    """Every row of `plan` that has a "cmd", once per round, round-robin (a drift in the machine's speed
    touches every row alike); each row's results by its "row" label."""
    import sys

    runs: dict[str, list[dict]] = {r["row"]: [] for r in plan}
    for rnd in range(rounds):
        for r in plan:
            if "cmd" in r:
                print(f"timing {r['row']} (round {rnd + 1}/{rounds})", file=sys.stderr, flush=True)
                runs[r["row"]].append(run_row(r["cmd"], threads))
    return runs
