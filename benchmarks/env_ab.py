"""Two settings of one engine option, same artifacts, same run: the loop behind
benchmarks/huge_pages.py and benchmarks/denormals.py. Each setting runs in its own process under the
protocol of benchmarks/vs_transformers.py; the two alternate (order flipped each round) for --rounds
rounds, each process 1 warm-up + ceil(reps / rounds) timed runs, medians over all rounds' samples, so
that a drift of this shared machine touches both alike."""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from vs_openvino import ensure_export  # noqa: E402
from vs_peers import merge_rounds  # noqa: E402
from vs_transformers import _worker, print_pairs, protocol_args, save_report  # noqa: E402

Case = tuple[str, str, str, str]  # (source, format, weights, OpenVINO precision)


def parser(doc: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=doc.split("\n")[0])
    protocol_args(p)
    p.add_argument("--rounds", type=int, default=3, help="alternating processes per setting")
    return p


def run_pairs(a: argparse.Namespace, cases: list[Case], settings: dict[str, dict[str, str]],
              what: str) -> list[dict]:
    """One row per case: its model, format, weights and each setting's merged result (with load_ms)."""
    arts = [(c, ensure_export(c[0], Path(a.work) / f"{c[0].split(':')[-1]}-{c[1]}-{c[2]}", c[1], c[2]))
            for c in cases]
    a.reps = -(-a.reps // a.rounds)
    runs: dict[tuple[int, str], list[dict]] = {}
    for rnd in range(a.rounds):
        for i, ((source, _, _, precision), art) in enumerate(arts):
            order = list(settings) if rnd % 2 == 0 else list(settings)[::-1]
            for name in order:
                print(f"round {rnd + 1}/{a.rounds}: {art.name} {what} {name}", file=sys.stderr, flush=True)
                runs.setdefault((i, name), []).append(_worker("edgeseq", a, source, art, precision=precision,
                                                              options=settings[name]))
    rows = []
    for i, ((source, fmt, weights, precision), art) in enumerate(arts):
        got = {name: merge_rounds(runs[(i, name)]) for name in settings}
        for name, res in got.items():
            if "error" in res:
                sys.exit(f"{art.name} {what} {name}: {res['error']}")
            res["load_ms"] = statistics.median(r["load_ms"] for r in runs[(i, name)])
        rows.append({"model": source, "format": fmt, "weights": weights, "precision": precision, **got})
    return rows


def main(doc: str, cases: list[Case], settings: dict[str, dict[str, str]], what: str, report: str,
         lead: list) -> None:
    """A whole A/B script: run the cases under both settings (the first is the baseline), write --out/report,
    print the Markdown table of the second against the first."""
    a = parser(doc).parse_args()
    rows = run_pairs(a, cases, settings, what)
    save_report(a, rows, report)
    print_pairs(rows, *settings, lead)
