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
from edgeseq.artifact import manifest as mf
from edgeseq.export.pipeline import export
from edgeseq.generate.config import GenerationConfig
from edgeseq.runtimes import open_backend
from edgeseq.runtimes.base import BackendOptions


FUSED = ["llama", "t5"]  # the families whose (self-)attention is the kernel; step graph of each
STEP = {"llama": "decoder", "t5": "decoder_step"}


@pytest.fixture(scope="module")
def plain(hf_dirs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The tiny Llama and T5 exported with plain attention (ort_kernels=False), which OpenVINO also runs."""
    root, out = tmp_path_factory.mktemp("plain"), {}
    for f in FUSED:
        export(str(hf_dirs[f]), root / f, quiet=True, ort_kernels=False)
        out[f] = root / f
    return out


def _ops(path: Path) -> set[str]:
    return {n.op_type for n in onnx.load(str(path), load_external_data=False).graph.node}


def _backends(d: Path, **extra: object) -> tuple[object, object, mf.Manifest]:
    m = mf.read(d)
    held, plain = (open_backend(d, m, "cpu", "onnxruntime", BackendOptions(engine_options={"kv_buffer": b, **extra}))
                   for b in (True, False))
    return held, plain, m


def test_attention_is_one_kernel_and_the_manifest_says_so(artifacts: dict[str, Path]) -> None:
    d = artifacts["llama"]
    m = mf.read(d)
    assert m.components["decoder"].contrib_ops == ["GroupQueryAttention"]
    ops = _ops(d / m.components["decoder"].file)
    assert "GroupQueryAttention" in ops and "Softmax" not in ops  # rotary, cache append and softmax inside
    assert m.parity["status"] == "passed"
    m = mf.read(artifacts["t5"])  # T5: the decoder's self-attention; its cross-attention stays plain
    assert {n: c.contrib_ops for n, c in m.components.items()} == \
        {"encoder": [], "decoder_init": [], "decoder_step": ["GroupQueryAttention"]}
    ops = _ops(artifacts["t5"] / m.components["decoder_step"].file)
    assert "GroupQueryAttention" in ops and "Softmax" in ops and m.parity["status"] == "passed"
    assert mf.read(artifacts["gpt2"]).components["decoder"].contrib_ops == []  # families without the kernel


@pytest.mark.parametrize("family,weights", [("llama", "fp32"), ("llama", "w4a8"), ("t5", "fp32")])
def test_buffers_match_the_handed_over_cache(artifacts: dict[str, Path], hf_dirs: dict[str, Path], tmp_path: Path,
                                             family: str, weights: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Left-padded batch, beam tiling, composed reorders, rewinds (conftest.cache_walk), and buffers that
    grow (first capacity cut to 16 positions here: 22 positions cross a doubling)."""
    from edgeseq.runtimes.engines import onnxruntime as ort_engine

    monkeypatch.setattr(ort_engine, "MIN_CAPACITY", 16)
    d = artifacts[family] if weights == "fp32" else tmp_path / "w4a8"
    if weights != "fp32":
        export(str(hf_dirs[family]), d, weights=weights, quiet=True)
    held, plain, m = _backends(d)
    assert "kv_cache" in held.placement() and "kv_cache" not in plain.placement()  # type: ignore[attr-defined]
    for got, want in zip(cache_walk(held, m), cache_walk(plain, m)):
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)
    s_held, s_plain = held.new_state(1), plain.new_state(1)  # type: ignore[attr-defined]
    ids = np.arange(4, 4 + 12)[None]
    for b, s in ((held, s_held), (plain, s_plain)):
        if m.kind == "decoder-only":  # 12 prompt positions + 10 steps
            b.prefill(s, ids)  # type: ignore[attr-defined]
        else:  # the decoder start token + 21 steps
            b.encode(s, ids, np.ones_like(ids))  # type: ignore[attr-defined]
            b.prefill(s, np.zeros((1, 1), np.int64))  # type: ignore[attr-defined]
    while s_held.length < 22:  # the buffers grow from 16 to 32
        tok = np.array([s_held.length + 5])
        np.testing.assert_allclose(held.decode(s_held, tok), plain.decode(s_plain, tok),  # type: ignore[attr-defined]
                                   atol=1e-4, rtol=0)
    assert s_held.held.arrays["past.0.key"].shape[2] == 32


@pytest.mark.parametrize("family", FUSED)
def test_fused_graph_matches_the_plain_graph(artifacts: dict[str, Path], plain: dict[str, Path], family: str) -> None:
    """The same walk (left-padded rows included: the kernel rotates by cache slot, the plain graph by
    position) through the fused graph with buffers and through the plain graph."""
    m = mf.read(plain[family])
    assert "GroupQueryAttention" not in _ops(plain[family] / m.components[STEP[family]].file)
    fused = open_backend(artifacts[family], mf.read(artifacts[family]), "cpu", "onnxruntime", BackendOptions())
    unfused = open_backend(plain[family], m, "cpu", "onnxruntime", BackendOptions())
    for got, want in zip(cache_walk(fused, m), cache_walk(unfused, m)):
        np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)


@pytest.mark.parametrize("family", FUSED)
def test_generation_through_buffers_equals_the_plain_graph(artifacts: dict[str, Path], plain: dict[str, Path],
                                                           family: str) -> None:
    """Greedy (batched: a left-padded row) and beam search give the plain graph's tokens."""
    fused, unfused = edgeseq.load(artifacts[family]), edgeseq.load(plain[family])
    prompts = ["the cat sat on", "a longer prompt about dogs and the weather"]
    for cfg in (GenerationConfig(max_new_tokens=12, ignore_eos=True),
                GenerationConfig(max_new_tokens=8, num_beams=3, ignore_eos=True)):
        assert [fused.generate(p, config=cfg).ids for p in prompts] == [unfused.generate(p, config=cfg).ids
                                                                       for p in prompts]
    cfg = GenerationConfig(max_new_tokens=12, ignore_eos=True)
    assert fused.generate(prompts, config=cfg).ids == unfused.generate(prompts, config=cfg).ids
    if importlib.util.find_spec("openvino") is not None:
        assert edgeseq.load(plain[family], engine="openvino").generate(prompts[0], config=cfg).ids == \
            fused.generate(prompts[0], config=cfg).ids


@pytest.mark.parametrize("family", FUSED)
def test_openvino_refuses_the_fused_graph_and_names_the_fix(artifacts: dict[str, Path], family: str) -> None:
    pytest.importorskip("openvino", reason="the openvino extra is not installed")
    from edgeseq.errors import ArtifactError

    with pytest.raises(ArtifactError, match="GroupQueryAttention") as e:
        edgeseq.load(artifacts[family], engine="openvino")
    assert "--format openvino" in e.value.hint and "--no-ort-kernels" in e.value.hint
