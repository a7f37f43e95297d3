"""ONNX Runtime's fused attention (export/steps/fused.py) and the KV cache in buffers it appends to in
place (runtimes/onnxruntime.py): same logits as the cache handed over as arrays, through everything
the loop does to a cache, and the same tokens as the plain graph."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import onnx
import pytest
from conftest import cache_walk

import edgeseq
from edgeseq import manifest as mf
from edgeseq.export.pipeline import export
from edgeseq.generate.config import GenerationConfig
from edgeseq.runtimes import open_backend
from edgeseq.runtimes.base import BackendOptions


@pytest.fixture(scope="module")
def plain_llama(hf_dirs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny Llama exported with plain attention (EDGESEQ_ORT_KERNELS=0), which OpenVINO also runs."""
    d = tmp_path_factory.mktemp("plain") / "llama"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("EDGESEQ_ORT_KERNELS", "0")
        export(str(hf_dirs["llama"]), d, quiet=True)
    return d


def _ops(path: Path) -> set[str]:
    return {n.op_type for n in onnx.load(str(path), load_external_data=False).graph.node}


def _backends(d: Path, **extra: object) -> tuple[object, object, mf.Manifest]:
    m = mf.read(d)
    held, plain = (open_backend(d, m, "cpu", "onnxruntime", BackendOptions(extra={"kv_buffer": b, **extra}))
                   for b in (True, False))
    return held, plain, m


def test_llama_attention_is_one_kernel_and_the_manifest_says_so(artifacts: dict[str, Path]) -> None:
    d = artifacts["llama"]
    m = mf.read(d)
    assert m.components["decoder"].contrib_ops == ["GroupQueryAttention"]
    ops = _ops(d / m.components["decoder"].file)
    assert "GroupQueryAttention" in ops and "Softmax" not in ops  # rotary, cache append and softmax inside
    assert m.parity["status"] == "passed"
    assert mf.read(artifacts["gpt2"]).components["decoder"].contrib_ops == []  # families without the kernel


@pytest.mark.parametrize("weights", ["fp32", "w4a8"])
def test_buffers_match_the_handed_over_cache(artifacts: dict[str, Path], hf_dirs: dict[str, Path],
                                             tmp_path: Path, weights: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Left-padded batch, beam tiling, composed reorders, rewinds (conftest.cache_walk), and buffers that
    grow (first capacity cut to 16 positions here: a 12-token prompt and 10 steps cross a doubling)."""
    from edgeseq.runtimes import onnxruntime as ort_engine

    monkeypatch.setattr(ort_engine, "MIN_CAPACITY", 16)
    d = artifacts["llama"] if weights == "fp32" else tmp_path / "w4a8"
    if weights != "fp32":
        export(str(hf_dirs["llama"]), d, weights=weights, quiet=True)
    held, plain, m = _backends(d)
    assert "kv_cache" in held.placement() and "kv_cache" not in plain.placement()  # type: ignore[attr-defined]
    for got, want in zip(cache_walk(held, m), cache_walk(plain, m)):
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)
    s_held, s_plain = held.new_state(1), plain.new_state(1)  # type: ignore[attr-defined]
    ids = np.arange(4, 4 + 12)[None]
    for b, s in ((held, s_held), (plain, s_plain)):
        b.prefill(s, ids)  # type: ignore[attr-defined]
    for t in range(10):  # 12 -> 22 positions: the buffers grow from 16 to 32
        tok = np.array([t + 5])
        np.testing.assert_allclose(held.decode(s_held, tok), plain.decode(s_plain, tok),  # type: ignore[attr-defined]
                                   atol=1e-4, rtol=0)
    assert s_held.held.arrays["past.0.key"].shape[2] == 32


def test_fused_graph_matches_the_plain_graph(artifacts: dict[str, Path], plain_llama: Path) -> None:
    """The same walk (left-padded rows included: the kernel rotates by cache slot, the plain graph by
    position) through the fused graph with buffers and through the plain graph."""
    assert "GroupQueryAttention" not in _ops(plain_llama / "decoder.onnx")
    fused, m = open_backend(artifacts["llama"], mf.read(artifacts["llama"]), "cpu", "onnxruntime", BackendOptions()), \
        mf.read(plain_llama)
    plain = open_backend(plain_llama, m, "cpu", "onnxruntime", BackendOptions())
    for got, want in zip(cache_walk(fused, m), cache_walk(plain, m)):
        np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)


def test_generation_through_buffers_equals_the_plain_graph(artifacts: dict[str, Path], plain_llama: Path) -> None:
    """Greedy (batched: a left-padded row) and beam search give the plain graph's tokens."""
    fused, plain = edgeseq.load(artifacts["llama"]), edgeseq.load(plain_llama)
    prompts = ["the cat sat on", "a longer prompt about dogs and the weather"]
    for cfg in (GenerationConfig(max_new_tokens=12, ignore_eos=True),
                GenerationConfig(max_new_tokens=8, num_beams=3, ignore_eos=True)):
        assert [fused.generate(p, config=cfg).ids for p in prompts] == [plain.generate(p, config=cfg).ids
                                                                       for p in prompts]
    cfg = GenerationConfig(max_new_tokens=12, ignore_eos=True)
    assert fused.generate(prompts, config=cfg).ids == plain.generate(prompts, config=cfg).ids
    if importlib.util.find_spec("openvino") is not None:
        assert edgeseq.load(plain_llama, engine="openvino").generate(prompts[0], config=cfg).ids == \
            fused.generate(prompts[0], config=cfg).ids


def test_openvino_refuses_the_fused_graph_and_names_the_fix(artifacts: dict[str, Path]) -> None:
    pytest.importorskip("openvino", reason="the openvino extra is not installed")
    from edgeseq.errors import ArtifactError

    with pytest.raises(ArtifactError, match="GroupQueryAttention") as e:
        edgeseq.load(artifacts["llama"], engine="openvino")
    assert "--format openvino" in e.value.hint and "EDGESEQ_ORT_KERNELS=0" in e.value.hint
