"""Where a decode step's time goes, by ONNX Runtime op type, for decoder graphs with
GroupQueryAttention: an edgeseq ONNX artifact and onnxruntime-genai's model-builder output (or two
edgeseq artifacts), run in one process by the same onnxruntime with edgeseq's session options, each in
a bare IO-binding loop: the KV cache appended in place (past and present bound to one buffer of
--input-len + --output-len positions, as onnxruntime-genai sizes it under the protocol), the logits
bound to a fresh array, greedy argmax, nothing else per token. What differs is the graph only.

Protocol: batch 1, --input-len prompt tokens (ids 100, 101, ...), --output-len tokens, 2 threads.
After --warmup generations each, the loops alternate for --reps rounds (decode tokens/s, medians
and per-round ratios to the first graph); then sessions with ONNX Runtime's profiler on alternate for
--profile-rounds generations, whose kernel times are summed per op type over each generation's decode
steps (medians over generations). The profiler adds several microseconds a node, so a graph with more
nodes looks slower under it than it runs: the per-op table explains the step, the unprofiled rates
are the speed.

    PYTHONPATH=. .venv/bin/python benchmarks/op_times.py \\
        benchmarks/work/smollm2-135m-instruct-onnx-w4a8 benchmarks/work/ortgenai-smollm2-135m-instruct-int4

Prints the rates and a Markdown table; writes every number to --out/op_times.json.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from vs_transformers import protocol_args, save_report  # noqa: E402


class Graph:
    """One decoder graph in a bare decode loop. edgeseq artifact: edgeseq.json names decoder.onnx,
    caches past.i.key -> present.i.key, logits [B, V]; model-builder folder: genai_config.json names
    the file, caches past_key_values.i.key -> present.i.key, logits [B, T, V]."""

    def __init__(self, folder: Path, threads: int, capacity: int, profile_prefix: str | None = None) -> None:
        import onnxruntime as ort

        from edgeseq.runtimes.engines.onnxruntime import _Sessions

        if (folder / "genai_config.json").exists():
            dec = json.loads((folder / "genai_config.json").read_text())["model"]["decoder"]
            file, kv, head = dec["filename"], dec["num_key_value_heads"], dec["head_size"]
            self.past, self.label = "past_key_values.", f"{folder.name} (model builder)"
        elif (folder / "edgeseq.json").exists():
            manifest = json.loads((folder / "edgeseq.json").read_text())
            file, kv, head = (manifest["components"]["decoder"]["file"], manifest["dims"]["num_kv_heads"],
                              manifest["dims"]["head_dim"])
            self.past, self.label = "past.", f"{folder.name} (edgeseq)"
        else:
            sys.exit(f"{folder}: neither an edgeseq artifact (edgeseq.json) nor a model-builder folder "
                     "(genai_config.json): pass the folder that holds one")
        import onnx

        ops = {n.op_type for n in onnx.load(str(folder / file), load_external_data=False).graph.node}
        if "GroupQueryAttention" not in ops:
            sys.exit(f"{folder / file}: no GroupQueryAttention node, so no cache to append in place; this compares "
                     "fused decoder graphs (an edgeseq ONNX export of a Llama-family model, model-builder output)")
        # edgeseq's own session options (spinning, denormals flushed), whichever graph runs
        so = _Sessions._session_options(SimpleNamespace(options=SimpleNamespace(threads=threads, extra={})))
        if profile_prefix:
            so.enable_profiling, so.profile_file_prefix = True, profile_prefix
        self.session = ort.InferenceSession(str(folder / file), so, providers=["CPUExecutionProvider"])
        inputs = {i.name: i for i in self.session.get_inputs()}
        if not any(i.type == "tensor(float)" and n.startswith(self.past) for n, i in inputs.items()):
            sys.exit(f"{folder}: no float32 {self.past}* cache inputs; this compares fp32-cache decoder graphs")
        self.positions = "position_ids" in inputs
        logits = next(o for o in self.session.get_outputs() if o.name == "logits")
        self.vocab, self.per_position = logits.shape[-1], len(logits.shape) == 3
        self.buffers = {n: np.zeros((1, kv, capacity, head), np.float32) for n in inputs if n.startswith(self.past)}
        self.io = self.session.io_binding()
        for name, buf in self.buffers.items():
            value = ort.OrtValue.ortvalue_from_numpy(buf)
            self.io.bind_ortvalue_input(name, value)
            self.io.bind_ortvalue_output("present." + name[len(self.past):], value)

    def step(self, ids: list[int], total: int) -> int:
        self.io.bind_cpu_input("input_ids", np.array([ids], np.int64))
        self.io.bind_cpu_input("attention_mask", np.ones((1, total), np.int64))
        if self.positions:
            self.io.bind_cpu_input("position_ids", np.arange(total - len(ids), total, dtype=np.int64)[None])
        shape = [1, len(ids), self.vocab] if self.per_position else [1, self.vocab]
        logits = np.empty(shape, np.float32)
        self.io.bind_output("logits", "cpu", 0, np.float32, shape, logits.ctypes.data)
        self.session.run_with_iobinding(self.io)
        return int(logits.reshape(-1, self.vocab)[-1].argmax())

    def generate(self, input_len: int, output_len: int) -> tuple[float, list[int]]:
        """Decode tokens/s (steps after the first token) and the tokens."""
        for buf in self.buffers.values():
            buf[:] = 0
        tokens = [self.step(list(range(100, 100 + input_len)), input_len)]
        start = time.perf_counter()
        for i in range(output_len - 1):
            tokens.append(self.step([tokens[-1]], input_len + 1 + i))
        return (output_len - 1) / (time.perf_counter() - start), tokens


def op_times(session: Any, output_len: int) -> list[dict[str, Any]]:
    """A profiled session's generations (each --output-len runs, the first the prefill): per generation,
    ms per decode step of the whole run, of all kernels and of each op type (with nodes per step)."""
    events = json.loads(Path(session.end_profiling()).read_text())
    runs = sorted((e["ts"], e["ts"] + e["dur"]) for e in events
                  if e.get("cat") == "Session" and e["name"] == "model_run")
    gens = [runs[i + 1:i + output_len] for i in range(0, len(runs) - output_len + 1, output_len)]
    out = []
    for decode in gens:
        per: dict[str, float] = {}
        nodes: dict[str, int] = {}
        for e in events:
            if e.get("cat") == "Node" and e["name"].endswith("_kernel_time") \
                    and decode[0][0] <= e["ts"] <= decode[-1][1]:
                op = e["args"].get("op_name", "?")
                per[op] = per.get(op, 0.0) + e["dur"]
                nodes[op] = nodes.get(op, 0) + 1
        n = len(decode)
        out.append({"run_ms": sum(b - a for a, b in decode) / n / 1000, "kernels_ms": sum(per.values()) / n / 1000,
                    "ops": {op: {"ms": t / n / 1000, "nodes": nodes[op] // n} for op, t in per.items()}})
    return out


def alternate(graphs: list[Graph], rounds: int, input_len: int, output_len: int) -> list[list[float]]:
    """Each graph's decode tokens/s per round, the order reversed every other round."""
    rates: list[list[float]] = [[] for _ in graphs]
    for r in range(rounds):
        for k in (range(len(graphs)) if r % 2 == 0 else reversed(range(len(graphs)))):
            rates[k].append(graphs[k].generate(input_len, output_len)[0])
    return rates


def median_profile(gens: list[dict[str, Any]]) -> dict[str, Any]:
    """Per figure, the median over the profiled generations."""
    ops = {op for g in gens for op in g["ops"]}
    return {"run_ms": statistics.median(g["run_ms"] for g in gens),
            "kernels_ms": statistics.median(g["kernels_ms"] for g in gens),
            "ops": {op: {"ms": statistics.median(g["ops"].get(op, {"ms": 0.0})["ms"] for g in gens),
                         "nodes": max(g["ops"].get(op, {"nodes": 0})["nodes"] for g in gens)} for op in ops}}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("graphs", nargs="+", type=Path, help="edgeseq ONNX artifacts or model-builder folders")
    protocol_args(p)  # --reps: alternating rounds, one generation a graph each; --work is not used
    p.add_argument("--profile-rounds", type=int, default=3)
    a = p.parse_args()
    capacity = a.input_len + a.output_len
    graphs = [Graph(g, a.threads, capacity) for g in a.graphs]
    alternate(graphs, a.warmup, a.input_len, a.output_len)
    rates = alternate(graphs, a.reps, a.input_len, a.output_len)
    del graphs
    with tempfile.TemporaryDirectory() as tmp:
        profiled = [Graph(g, a.threads, capacity, profile_prefix=f"{tmp}/graph{k}") for k, g in enumerate(a.graphs)]
        alternate(profiled, a.profile_rounds, a.input_len, a.output_len)
        rows = []
        for g, pg, r in zip(a.graphs, profiled, rates):
            gens = op_times(pg.session, a.output_len)
            rows.append({"graph": str(g), "label": pg.label, "decode_tok_s": r, **median_profile(gens),
                         "profiled_generations": gens})
    save_report(a, rows, "op_times.json")
    first = rows[0]["decode_tok_s"]
    for row in rows:
        ratios = [x / y for x, y in zip(row["decode_tok_s"], first)]
        print(f"{row['label']}: decode {statistics.median(row['decode_tok_s']):.1f} tok/s (median of {a.reps}), "
              f"{statistics.median(ratios):.3f}x the first graph (per round {min(ratios):.2f}-{max(ratios):.2f})")
    ops = sorted({op for row in rows for op in row["ops"]},
                 key=lambda op: -max(row["ops"].get(op, {"ms": 0})["ms"] for row in rows))
    print("\nprofiled decode step, ms (nodes per step):\n")
    print("| op type | " + " | ".join(row["label"] for row in rows) + " |")
    print("|---" * (len(rows) + 1) + "|")
    for op in ops:
        cells = [f"{row['ops'][op]['ms']:.3f} ({row['ops'][op]['nodes']})" if op in row["ops"] else "-" for row in rows]
        print(f"| {op} | " + " | ".join(cells) + " |")
    print("| all kernels | " + " | ".join(f"{row['kernels_ms']:.3f}" for row in rows) + " |")
    print("| whole run | " + " | ".join(f"{row['run_ms']:.3f}" for row in rows) + " |")


if __name__ == "__main__":
    main()
