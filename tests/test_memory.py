"""Memory: the profile's breakdown (load peak apart from generation peak, the parts, the estimate) and
--max-memory, which refuses before anything loads or runs."""
from __future__ import annotations

from pathlib import Path

import pytest

import edgeseq
from edgeseq.artifact import manifest as mf
from edgeseq.cli import main
from edgeseq.profile.report import table
from edgeseq.profile.runner import ProfileConfig, profile_artifact
from edgeseq.resources import ResourceError, estimate


def _one_cache_bytes(m: mf.Manifest, positions: int) -> int:
    d = m.dims  # K and V per layer, float32
    return 2 * d["num_layers"] * d["num_kv_heads"] * d["head_dim"] * 4 * positions


def test_profile_splits_load_and_generation_memory(artifacts: dict[str, Path]) -> None:
    art = artifacts["llama"]
    m = mf.read(art)
    results = profile_artifact(art, ProfileConfig(input_lens=[8, 64], output_lens=[4], warmup=0, reps=1, threads=1))
    for r in results:
        mem = r.memory
        assert r.peak_rss_mb == mem["peak_mb"] == max(mem["load_peak_mb"], mem["generate_peak_mb"])
        assert mem["load_peak_mb"] >= mem["runtime_mb"] > 0 and mem["workspace_mb"] >= 0
        assert mem["kv_cache_mb"] == round(_one_cache_bytes(m, r.input_len + r.output_len) / 2**20, 1)
        want = estimate(m, "onnxruntime", 1, r.input_len, r.output_len).as_mb()
        assert mem["estimate_mb"] == want and want["total"] > want["weights"] > 0
        assert r.to_dict()["memory"] == mem
    # the longer prompt's estimate holds a longer cache and a larger workspace
    short, long_ = (r.memory["estimate_mb"] for r in results)
    assert long_["kv_cache"] > short["kv_cache"] and long_["workspace"] > short["workspace"]
    top = max(results, key=lambda r: r.memory["generate_peak_mb"])  # the note shows the artifact's largest case
    assert f"generation peak {top.memory['generate_peak_mb']:.0f} at in={top.input_len} out=4" in table(results)


def _never(*_: object, **__: object) -> None:
    raise AssertionError("the artifact was loaded although the budget refused it")


def test_max_memory_refuses_a_profile_before_loading(artifacts: dict[str, Path], monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    import edgeseq.profile.runner as runner

    monkeypatch.setattr(runner, "open_runner", _never)
    assert main(["profile", str(artifacts["gpt2"]), "--no-bandwidth", "--max-memory", "1"]) == 11
    err = capsys.readouterr().err
    assert "over --max-memory 1 MB" in err and "raise --max-memory" in err
    assert main(["profile", str(artifacts["gpt2"]), "--max-memory", "0"]) == 2
    assert "--max-memory must be a positive number" in capsys.readouterr().err


def test_max_memory_on_load_and_on_each_request(artifacts: dict[str, Path]) -> None:
    art = artifacts["gpt2"]
    m = mf.read(art)
    with pytest.raises(ResourceError, match="loading gpt2 on onnxruntime needs about"):
        edgeseq.load(art, max_memory_mb=1)
    # a budget the weights fit, and a short request, but not a long one
    base = estimate(m, "onnxruntime").total
    short = estimate(m, "onnxruntime", 1, 8, 4).total - base
    long_ = estimate(m, "onnxruntime", 1, 100, 4).total - base
    assert long_ > 2 * short
    model = edgeseq.load(art, max_memory_mb=(base + 2 * short) / 2**20)
    assert len(model.generate_ids([[5] * 8], max_new_tokens=4).ids[0]) == 4
    with pytest.raises(ResourceError, match="1 x 1 rows of 100 \\+ 4 tokens on onnxruntime"):
        model.generate_ids([[5] * 100], max_new_tokens=4)


def test_generate_cli_checks_the_budget_before_loading(artifacts: dict[str, Path], monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    import edgeseq.api as api

    monkeypatch.setattr(api, "load", _never)
    assert main(["generate", str(artifacts["llama"]), "hello there", "--max-memory", "2"]) == 11
    assert "generating 128 tokens after a" in capsys.readouterr().err


@pytest.fixture(scope="module")
def plain_llama(hf_dirs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny Llama with plain attention: OpenVINO runs it (paged), ONNX Runtime as arrays."""
    from edgeseq.export.pipeline import export

    out = tmp_path_factory.mktemp("plain") / "llama"
    export(str(hf_dirs["llama"]), out, quiet=True, ort_kernels=False)
    return out


@pytest.mark.parametrize("engine, graph", [("onnxruntime", "fused"), ("onnxruntime", "plain"),
                                           ("openvino", "plain")])
def test_a_long_prompt_prefills_in_slices_with_the_same_logits(artifacts: dict[str, Path], plain_llama: Path,
                                                               engine: str, graph: str,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """A one-row prompt longer than prefill_chunk is fed slice by slice (smaller activations); the logits
    after it, and after the next decode steps, are the whole prompt's."""
    import numpy as np

    pytest.importorskip(engine)
    art = artifacts["llama"] if graph == "fused" else plain_llama
    ids = np.arange(3, 43, dtype=np.int64)[None, :]  # 40 tokens: slices of 16, 16 and 8

    def walk(chunk: int | None) -> list[np.ndarray]:
        backend = edgeseq.load(art, engine=engine).backend
        monkeypatch.setattr(backend, "prefill_chunk", chunk)
        widths: list[int] = []
        step = backend._step
        monkeypatch.setattr(backend, "_step", lambda s, i, *a: (widths.append(i.shape[1]), step(s, i, *a))[1])
        state = backend.new_state(1)
        out = [backend.prefill(state, ids)]
        out += [backend.decode(state, np.array([t])) for t in (5, 9, 11)]
        assert widths == ([16, 16, 8] if chunk else [40]) + [1, 1, 1]
        return out

    for got, want in zip(walk(16), walk(None)):
        np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)
