"""OpenVINO: export to IR for both kinds and every weight format, run on the openvino engine.
Skips through a probe when openvino (or NNCF, for int8/int4) is not installed."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from conftest import cache_walk

import edgeseq
from edgeseq.cli import main
from edgeseq.export.pipeline import export

needs_ov = pytest.mark.skipif(importlib.util.find_spec("openvino") is None,
                              reason="openvino not installed: pip install 'edgeseq[openvino]'")
needs_nncf = pytest.mark.skipif(importlib.util.find_spec("nncf") is None,
                                reason="nncf not installed: pip install 'edgeseq[compress]'")
CFG = edgeseq.GenerationConfig(max_new_tokens=16, ignore_eos=True)


@pytest.fixture(scope="module")
def ov_artifacts(hf_dirs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    if importlib.util.find_spec("openvino") is None:
        pytest.skip("openvino not installed: pip install 'edgeseq[openvino]'")
    root = tmp_path_factory.mktemp("ov")
    return {f: (export(str(d), root / f, format="openvino", quiet=True), root / f)[1] for f, d in hf_dirs.items()}


@needs_ov
def test_ir_artifact_and_parity(ov_artifacts: dict[str, Path], family: str) -> None:
    d = ov_artifacts[family]
    data = json.loads((d / "edgeseq.json").read_text())
    assert data["format"] == "openvino" and data["engine"] == "openvino" and data["quantization"] is None
    step = "decoder" if family != "t5" else "decoder_step"
    assert data["components"][step]["file"] == f"{step}.xml" and f"{step}.bin" in data["files"]
    assert not list(d.glob("*.onnx")) and not list(d.glob(".*staging"))
    assert data["parity"]["status"] == "passed" and "precision f32" in data["parity"]["engine"]


@needs_ov
def test_same_tokens_as_onnx_runtime(ov_artifacts: dict[str, Path], artifacts: dict[str, Path], family: str) -> None:
    ov = edgeseq.load(ov_artifacts[family])
    ort = edgeseq.load(artifacts[family])
    assert ov.backend.engine == "openvino" and ov.backend.precision == "f32"
    for p in ("The quick brown fox", "A lighthouse keeper"):
        assert ov.generate(p, config=CFG).ids == ort.generate(p, config=CFG).ids
    beams = edgeseq.GenerationConfig(max_new_tokens=8, num_beams=3)
    assert ov.generate("one two", config=beams).ids == ort.generate("one two", config=beams).ids


@needs_ov
def test_onnx_artifact_on_openvino_engine(artifacts: dict[str, Path]) -> None:
    ov = edgeseq.load(artifacts["gpt2"], engine="openvino")
    ort = edgeseq.load(artifacts["gpt2"])
    assert ov.generate("hello", config=CFG).ids == ort.generate("hello", config=CFG).ids


@needs_ov
@needs_nncf
@pytest.mark.parametrize("weights", ["fp16", "int8", "int4"])
def test_compressed_weights(weights: str, hf_dirs: dict[str, Path], tmp_path: Path,
                            capsys: pytest.CaptureFixture[str]) -> None:
    m = export(str(hf_dirs["llama"]), tmp_path / "a", format="openvino", weights=weights, quiet=True)
    assert m.quantization == weights and m.parity["status"] == "passed"
    from edgeseq.accuracy import TOLERANCE

    assert m.parity["tolerance_rule"] == TOLERANCE[weights] and m.parity["max_abs_diff"] > 0
    if weights == "int4":  # a tiny model: warned, not refused
        assert "int4 saves little" in capsys.readouterr().err
    assert m.files["decoder.bin"]["bytes"] > 0
    import openvino as ov

    # int8 / int4: matmuls that read one input (q/k/v, gate/up) were merged before compression
    readers = [(op.input_value(0).get_node().get_friendly_name(), op.input_value(0).get_index())
               for op in ov.Core().read_model(str(tmp_path / "a" / "decoder.xml")).get_ops()
               if op.get_type_name() == "MatMul" and op.input_value(1).get_node().get_type_name() != "Parameter"]
    shared = len(readers) - len(set(readers))
    assert (shared == 0) if weights in ("int8", "int4") else (shared > 0)
    out = edgeseq.load(tmp_path / "a").generate("hello", config=CFG)
    assert len(out.ids[0]) == 16


@needs_ov
def test_profile_records_precision(ov_artifacts: dict[str, Path], artifacts: dict[str, Path], tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    j = tmp_path / "p.json"
    code = main(["profile", str(artifacts["llama"]), str(ov_artifacts["llama"]), "--input-len", "8",
                 "--output-len", "4", "--reps", "1", "--warmup", "0", "--no-bandwidth", "--json", str(j)])
    assert code == 0
    res = json.loads(j.read_text())["results"]
    assert [r["engine"] for r in res] == ["onnxruntime", "openvino"]
    assert res[1]["precision"] == "f32" and res[1]["placement"]["device"] == "CPU"
    assert res[1]["load_warm_ms"] > 0
    code = main(["profile", str(ov_artifacts["llama"]), "--precision", "default", "--input-len", "8",
                 "--output-len", "4", "--reps", "1", "--warmup", "0", "--no-bandwidth", "--json", str(j)])
    assert code == 0 and json.loads(j.read_text())["results"][0]["precision"] in ("bf16", "f32", "f16")


@needs_ov
@pytest.mark.parametrize("args, code, message", [
    (["--device", "npu"], 9, "no npu device"),
    (["--device", "gpu"], 9, "no gpu device"),
    (["--precision", "f8"], 2, "unknown --precision 'f8'"),
])
def test_openvino_bad_input(args: list[str], code: int, message: str, ov_artifacts: dict[str, Path],
                            capsys: pytest.CaptureFixture[str]) -> None:
    got = main(["generate", str(ov_artifacts["gpt2"]), "hi", "--max-new-tokens", "2", *args])
    err = capsys.readouterr().err
    if got == 0:
        pytest.skip(f"this host has the device: {args}")
    assert got == code and message in err


def test_onnx_format_has_no_int8_weights(hf_dirs: dict[str, Path], tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export", str(hf_dirs["gpt2"]), "--out", str(tmp_path / "x"), "--weights", "int8"]) == 2
    assert "--format openvino" in capsys.readouterr().err


def test_missing_openvino_names_the_extra(hf_dirs: dict[str, Path], tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name in ("openvino", "nncf")
                        else real(name, *a))
    assert main(["export", str(hf_dirs["gpt2"]), "--out", str(tmp_path / "x"), "--format", "openvino"]) == 5
    assert "edgeseq[openvino]" in capsys.readouterr().err
    assert main(["export", str(hf_dirs["gpt2"]), "--out", str(tmp_path / "y"), "--format", "openvino",
                 "--weights", "int8"]) == 5


@needs_ov
def test_low_disk_runs_uncached(ov_artifacts: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                capsys: pytest.CaptureFixture[str]) -> None:
    """With less free disk than a compiled blob and the margin, the engine compiles without its cache
    and says so (a blob cut short by a full disk crashed later loads); with room it caches."""
    import collections
    import shutil

    from edgeseq.runtimes.host import disk_cache as base

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(base, "_LOW_DISK_SAID", set())  # the note is said once per engine and process
    usage = collections.namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(1 << 40, 1 << 40, base.CACHE_MARGIN // 2))
    prompt = "one two three"
    cfg = edgeseq.GenerationConfig(max_new_tokens=4, ignore_eos=True)
    uncached = edgeseq.load(ov_artifacts["t5"]).generate(prompt, config=cfg).ids
    assert "not caching openvino's compiled graphs" in capsys.readouterr().err
    assert not (tmp_path / "edgeseq" / "openvino").exists()
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(1 << 40, 0, 1 << 40))
    assert edgeseq.load(ov_artifacts["t5"]).generate(prompt, config=cfg).ids == uncached
    assert any((tmp_path / "edgeseq" / "openvino").iterdir())


def _fused_layers(backend: object, component: str) -> list[str]:
    ops = backend.compiled[component].get_runtime_model().get_ops()  # type: ignore[attr-defined]
    return [op.get_rt_info()["layerType"].astype(str) for op in ops]


@needs_ov
@pytest.mark.parametrize("paged", [False, True], ids=["state", "paged"])
def test_cache_held_by_the_engine_matches_explicit_cache(ov_artifacts: dict[str, Path], family: str,
                                                         paged: bool) -> None:
    """The CPU step with its cache as OpenVINO state (runtimes/ov_state.py), or in paged-attention
    blocks (runtimes/ov_paged.py, decoder-only), gives the logits of the exported explicit-cache graph
    through everything the loop does to a cache: a left-padded batch, beam tiling and reorders (the
    step's beam_idx; shared blocks, copied before a write), and rewinds."""
    import numpy as np

    from edgeseq.artifact import manifest as mf
    from edgeseq.runtimes import open_backend
    from edgeseq.runtimes.base import BackendOptions

    d = ov_artifacts[family]
    m = mf.read(d)
    held, plain = (open_backend(d, m, "cpu", "openvino",
                                BackendOptions(precision="f32", engine_options={"stateful": s, "paged": paged}))
                   for s in (True, False))
    step = "decoder" if m.kind == "decoder-only" else "decoder_step"
    form = "blocks (paged attention)" if paged and family != "t5" else "state"  # t5 keeps the state form
    assert held.placement()["kv_cache"] == f"engine {form}, f32" and "kv_cache" not in plain.placement()
    assert "MemoryInput" not in _fused_layers(plain, step)
    if form == "state" and family == "llama":  # grouped-query attention unfolded for the fused kernel
        assert "ScaledDotProductAttention" in _fused_layers(held, step)
    if form != "state":
        assert "PagedAttention" in _fused_layers(held, step)
    for got, want in zip(cache_walk(held, m), cache_walk(plain, m)):
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)


@needs_ov
def test_paged_cache_across_block_boundaries(ov_artifacts: dict[str, Path]) -> None:
    """Paged attention over more tokens than one block holds (32 at f32): rows grow new blocks, beams
    share full blocks and copy a shared partial one before writing, a rewind across a block boundary
    gives the blocks back; the logits stay those of the explicit cache throughout, and again when the
    next request reuses the finished one's blocks and infer request."""
    import numpy as np

    from edgeseq.artifact import manifest as mf
    from edgeseq.runtimes import open_backend
    from edgeseq.runtimes.base import BackendOptions

    d = ov_artifacts["llama"]
    m = mf.read(d)
    paged, plain = (open_backend(d, m, "cpu", "openvino",
                                 BackendOptions(precision="f32", engine_options={"stateful": s, "paged": s}))
                    for s in (True, False))
    assert paged.placement()["kv_cache"] == "engine blocks (paged attention), f32"
    rng = np.random.default_rng(0)
    ids = rng.integers(5, 200, (2, 40))
    mask = (np.arange(40) >= np.array([[7], [0]])).astype(np.int64)

    def walk(b: object) -> list[np.ndarray]:
        s = b.new_state(2)  # type: ignore[attr-defined]
        out = [b.prefill(s, ids, mask)]  # type: ignore[attr-defined]
        b.reorder(s, np.array([0, 0, 1, 1]))  # type: ignore[attr-defined]
        for step in range(34):  # rows reach 67 and 74 tokens: the third block
            out.append(b.decode(s, np.arange(4) + 10 * step))  # type: ignore[attr-defined]
            if step % 5 == 4:
                b.reorder(s, np.array([1, 0, 3, 3]))  # type: ignore[attr-defined]
        b.trim(s, 12)  # back across a block boundary
        b.reorder(s, np.array([2, 2, 0, 1]))  # type: ignore[attr-defined]
        out += [b.decode(s, np.arange(4) + 7 * step) for step in range(8)]  # type: ignore[attr-defined]
        return out

    assert paged.new_state(1).held.block == 32, "this walk assumes 32-token blocks"
    want = walk(plain)
    for got, expected in zip(walk(paged), want):
        np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)
    spare = list(paged.kv_cache.spare)  # type: ignore[attr-defined]
    assert len(spare) == 1, "a finished request's paged cache is kept for the next one"
    for got, expected in zip(walk(paged), want):  # that cache again: reset, its blocks still hold the old walk
        np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)
    assert paged.kv_cache.spare == spare  # type: ignore[attr-defined]


@needs_ov
def test_paged_form_the_engine_refuses_falls_back_to_state(ov_artifacts: dict[str, Path],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """When the engine will not compile the paged step (OpenVINO's AVX2 paged kernel takes no bf16 cache,
    which a CPU without bf16 is asked for by --precision bf16), the state form runs and placement() says why,
    in the engine's words rather than its source location."""
    import numpy as np
    import openvino as ov

    from edgeseq.artifact import manifest as mf
    from edgeseq.runtimes import open_backend
    from edgeseq.runtimes.base import BackendOptions

    compile_model = ov.Core.compile_model

    def refuse_paged(self: ov.Core, model: object, *args: object, **kw: object) -> object:
        if isinstance(model, ov.Model) and any(op.get_type_name() == "PagedAttentionExtension"
                                               for op in model.get_ordered_ops()):
            raise RuntimeError("Exception from src/inference/src/cpp/core.cpp:117:\n"
                               "Check 'all_of(f32, k, v)' failed at src/executor_pa.cpp:2938:\n"
                               "expect kvcache type f32, current: bf16 , bf16\n")
        return compile_model(self, model, *args, **kw)

    d = ov_artifacts["llama"]
    m = mf.read(d)
    ids = np.array([[5, 9, 44, 17]])
    state = open_backend(d, m, "cpu", "openvino", BackendOptions(precision="f32", engine_options={"paged": False}))
    monkeypatch.setattr(ov.Core, "compile_model", refuse_paged)
    b = open_backend(d, m, "cpu", "openvino", BackendOptions(precision="f32", engine_options={"paged": True}))
    assert b.placement()["kv_cache"] == ("engine state, f32 (paged attention refused: expect kvcache type f32, "
                                         "current: bf16 , bf16)")
    np.testing.assert_allclose(b.prefill(b.new_state(1), ids), state.prefill(state.new_state(1), ids), atol=1e-6)


@needs_ov
def test_cached_blob_of_another_precision_is_not_reused(ov_artifacts: dict[str, Path], tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """OpenVINO's compiled-model cache keys a blob by graph, not by inference / KV-cache precision: an f32
    load after a bf16 one read the bf16 blob back (SmolLM2: logits off by 0.019, parity failed). Each
    precision caches in its own folder, so the f32 load computes in f32 (= an uncached f32 load)."""
    import numpy as np

    from edgeseq.artifact import manifest as mf
    from edgeseq.runtimes import open_backend
    from edgeseq.runtimes.base import BackendOptions

    d = ov_artifacts["llama"]
    m = mf.read(d)
    ids = np.arange(5, 40)[None]

    def logits(precision: str) -> np.ndarray:
        b = open_backend(d, m, "cpu", "openvino", BackendOptions(precision=precision))
        return b.prefill(b.new_state(1), ids)

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "none"))
    monkeypatch.setattr("edgeseq.runtimes.engines.openvino.cache_room", lambda *a: None)
    fresh_f32, fresh_bf16 = logits("f32"), logits("bf16")
    monkeypatch.undo()
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    logits("bf16")  # writes its blob first
    np.testing.assert_allclose(logits("f32"), fresh_f32, atol=1e-6, rtol=0)
    if np.abs(fresh_bf16 - fresh_f32).max() > 1e-6:  # a CPU without bf16 computes both in f32
        assert np.abs(logits("bf16") - fresh_f32).max() > 1e-6
