"""One graph call at a time: where a QDQ NPU artifact's error comes from, without a cache's drift.

The float `--target npu` artifact reads the built-in texts teacher-forced on the CPU provider; every
decode call's inputs (its cache included) are recorded and fed, unchanged, to the QDQ artifact's decode
graph on ONNX Runtime's CPU provider and, with --htp, on onnxruntime-qnn's HTP simulator. Printed per
run: the KL divergence of each call's next-token distribution against the float graph's (mean, median,
max), and the residual stream's relative error after each residual Add (median over calls, the
largest channel left out: SmolLM2's massive activation would hide the rest). Simulator timings are not
device timings and are not printed.

    .venv/bin/python benchmarks/npu_step_diff.py --reference FP32_NPU_DIR --artifact W8A16_NPU_DIR --tokens 24 --htp
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def record(reference: Path, tokens: int) -> list[dict[str, np.ndarray]]:
    """Inputs of every decode call while the float artifact reads the built-in texts teacher-forced."""
    from edgeseq import api
    from edgeseq.quality import teacher, texts

    model = api.load(reference, threads=2)
    calls: list[dict[str, np.ndarray]] = []
    invoke = model.backend.invoke

    def recording(component: str, signature: str, feeds: dict[str, Any]) -> dict[str, Any]:
        if signature == "decode":
            calls.append({k: np.asarray(v) for k, v in feeds.items()})
        return invoke(component, signature, feeds)

    model.backend.invoke = recording  # type: ignore[method-assign]
    for case in texts.cases(model, tokens):
        for _ in teacher.logits(model.backend, teacher.fit(case, model.backend)):
            pass
    return calls


def residual_adds(reference: Path, graph: str) -> list[str]:
    """Outputs of the float graph's residual Adds (on the stream, both inputs computed)."""
    import onnx

    from edgeseq.export.outliers import float_path

    m = onnx.load(str(reference / graph), load_external_data=False)
    stream, inits = set(float_path(m)), {i.name for i in m.graph.initializer}
    return [n.output[0] for n in m.graph.node if n.op_type == "Add" and n.name in stream and not set(n.input) & inits]


def session(directory: Path, graph: str, watch: list[str], provider: str) -> Any:
    """A session of `directory/graph` with the `watch` tensors it computes added as outputs."""
    import onnx
    import onnxruntime as ort

    from edgeseq.runtimes.engines import qnn

    m = onnx.load(str(directory / graph), load_external_data=False)
    made, have = {o for n in m.graph.node for o in n.output}, {o.name for o in m.graph.output}
    m.graph.output.extend(onnx.helper.make_tensor_value_info(t, onnx.TensorProto.FLOAT, None)
                          for t in watch if t in made and t not in have)
    path = directory / graph.replace(".onnx", ".stepdiff.onnx")  # beside the weights file it names
    onnx.save(m, str(path))
    try:
        if provider == "htp":
            return qnn.session(path, ort.SessionOptions(), qnn.provider_options(True), None)[0]
        so = ort.SessionOptions()
        so.intra_op_num_threads = 2
        return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    finally:
        path.unlink(missing_ok=True)


def run(s: Any, calls: list[dict[str, np.ndarray]]) -> list[dict[str, np.ndarray]]:
    names = [o.name for o in s.get_outputs()]
    wanted = {i.name for i in s.get_inputs()}
    return [dict(zip(names, s.run(None, {k: v for k, v in c.items() if k in wanted}))) for c in calls]


def kl(p_logits: np.ndarray, q_logits: np.ndarray) -> float:
    from edgeseq.generate.search import log_softmax

    lp, lq = log_softmax(p_logits, np.float64), log_softmax(q_logits, np.float64)
    return float((np.exp(lp) * (lp - lq)).sum())


def stream_error(base: list[dict[str, np.ndarray]], got: list[dict[str, np.ndarray]], adds: list[str]) -> list[float]:
    out = []
    for t in adds:
        errs = []
        for b, g in zip(base, got):
            if t not in b or t not in g or b[t].shape[-1] < 2:  # a norm's per-row sum, not the stream
                continue
            x, y = b[t].reshape(-1)[-b[t].shape[-1]:], g[t].reshape(-1)[-b[t].shape[-1]:]
            keep = np.ones(x.shape, bool)
            keep[np.argmax(np.abs(x))] = False
            errs.append(np.linalg.norm((x - y)[keep]) / max(np.linalg.norm(x[keep]), 1e-12))
        if errs:
            out.append(float(np.median(errs)))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reference", required=True, help="the float --target npu artifact")
    p.add_argument("--artifact", required=True, help="a QDQ --target npu artifact of the same shape")
    p.add_argument("--tokens", type=int, default=24, help="target tokens of the built-in texts read (a decode call each, but for a chat prompt's first)")
    p.add_argument("--htp", action="store_true", help="also on the HTP simulator (slow)")
    a = p.parse_args()
    ref, art = Path(a.reference), Path(a.artifact)
    graph = next(f.name for f in ref.glob("*.decode.onnx"))
    calls = record(ref, a.tokens)
    adds = residual_adds(ref, graph)
    base = run(session(ref, graph, adds, "cpu"), calls)
    for provider in ("cpu", "htp") if a.htp else ("cpu",):
        got = run(session(art, graph, adds, provider), calls)
        kls = np.array([kl(b["logits"].reshape(-1, b["logits"].shape[-1])[-1], g["logits"].reshape(-1, g["logits"].shape[-1])[-1])
                        for b, g in zip(base, got)])
        err = stream_error(base, got, adds)
        print(f"{provider}: {len(kls)} decode calls, KL mean {kls.mean():.4f} median {np.median(kls):.4f} max {kls.max():.4f}")
        print(f"  per call: {' '.join(f'{k:.3f}' for k in kls)}")
        print(f"  residual stream relative error by residual Add: {' '.join(f'{e:.4f}' for e in err)}")


if __name__ == "__main__":
    main()
