"""Where HTP's float16 drifts from the CPU: SmolLM2-135M-Instruct truncated to N decoder layers, its
--target npu prefill graph (32 tokens) run on onnxruntime-qnn's HTP simulator and on ONNX Runtime's
CPU provider with the same inputs; prints the largest logit and KV-cache differences per N.

    .venv/bin/python benchmarks/htp_layers.py 1 4 11 12 13 30
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np


def main() -> None:
    import onnxruntime as ort
    import torch

    from edgeseq.export.formats import onnx_npu
    from edgeseq.accuracy import prompt_ids
    from edgeseq.steps.static import StaticShape, static_components
    from edgeseq.models import resolve
    from edgeseq.runtimes.engines import qnn

    spec = resolve("smollm2-135m-instruct")
    ids = (prompt_ids(spec.tokenizer_json, spec.kind, spec.generation.as_dict(), spec.dims.vocab_size) * 2)[:32]
    layers = list(spec.model.model.layers)
    shape = StaticShape(32, 8, ())
    for n in map(int, sys.argv[1:] or ["12", "13", "30"]):
        spec.model.model.layers = torch.nn.ModuleList(layers[:n])
        spec.dims.num_layers = n
        comp = static_components(spec, shape)[0]
        comp.signatures = {"prefill_32": comp.signatures["prefill_32"]}
        work = Path(tempfile.mkdtemp(prefix=f"htp-layers-{n}-"))
        graph = work / onnx_npu.export_component(comp, work, "fp32").file
        cpu = ort.InferenceSession(str(graph), providers=["CPUExecutionProvider"])
        htp, report = qnn.session(graph, ort.SessionOptions(), qnn.provider_options(False), None)
        slots = shape.cache_length(spec.kind)
        feeds = {"input_ids": np.array([ids], np.int64), "attention_mask": np.zeros((1, slots), np.int64),
                 "position_ids": np.arange(32, dtype=np.int64)[None], "cache_position": np.arange(32, dtype=np.int64)}
        feeds["attention_mask"][:, :32] = 1
        feeds.update({i.name: np.zeros(i.shape, np.float32) for i in cpu.get_inputs() if i.name.startswith("past")})
        a, b = cpu.run(None, feeds), htp.run(None, feeds)
        print(f"{n:>2} layers: max |logits diff| {np.abs(a[0] - b[0]).max():.3g}, max |KV diff| "
              f"{max(np.abs(x - y).max() for x, y in zip(a[1:], b[1:])):.3g}, top-1 {a[0].argmax()} vs "
              f"{b[0].argmax()}, nodes on HTP {report['node_share']:.0%}", flush=True)


if __name__ == "__main__":
    main()
