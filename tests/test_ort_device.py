"""ONNX Runtime with the KV cache as OrtValues on the provider's device (ort_device.py): on GPU providers by
default, on the CPU provider with `device_cache=True`, which is how the form is checked here. Greedy,
beams, a rewind and an encoder-decoder's cross cache must give what the engine's usual forms give."""
from __future__ import annotations

from pathlib import Path

import pytest

import edgeseq
from edgeseq.runtimes.devices import rows
from edgeseq.runtimes.engines import onnxruntime as ort_engine

PROMPTS = ["The quick brown fox", "A lighthouse keeper kept a careful log of every ship"]
CUDA_WHY = ort_engine.probe(rows("onnxruntime", "gpu:cuda")[0])


def _same(art: Path, device: str = "cpu", options: dict | None = None) -> edgeseq.Model:
    usual = edgeseq.load(art)
    model = edgeseq.load(art, device=device, engine_options=options)
    assert model.backend.kv_cache.name == "device-values"
    cfg = edgeseq.GenerationConfig(max_new_tokens=20, ignore_eos=True)
    assert model.generate(PROMPTS, config=cfg).ids == usual.generate(PROMPTS, config=cfg).ids
    beams = edgeseq.GenerationConfig(max_new_tokens=8, num_beams=3, num_return_sequences=2)
    assert model.generate(PROMPTS, config=beams).sequences == usual.generate(PROMPTS, config=beams).sequences
    g = model.generator("one two three", max_new_tokens=8, ignore_eos=True)
    first = [g.next_token() for _ in range(5)]
    g.rewind(3)
    assert [g.next_token() for _ in range(3)] == first[2:]
    return model


@pytest.mark.parametrize("family", ["llama", "t5"])
def test_device_values_on_the_cpu_provider(artifacts: dict[str, Path], family: str) -> None:
    model = _same(artifacts[family], options={"device_cache": True})
    assert model.backend.placement()["kv_cache"] == "OrtValues on cpu:0, bound each step (IO binding)"
    assert edgeseq.load(artifacts[family]).backend.kv_cache.name != "device-values"  # not the CPU's default


@pytest.mark.skipif(CUDA_WHY is not None, reason=f"onnxruntime gpu:cuda: {CUDA_WHY}")
def test_cuda_keeps_the_cache_on_the_gpu(artifacts: dict[str, Path]) -> None:
    model = _same(artifacts["llama"], device="gpu:cuda")
    assert model.backend.placement()["kv_cache"].startswith("OrtValues on cuda:0")
