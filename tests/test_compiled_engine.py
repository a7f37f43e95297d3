"""The torch-compile engine on the CPU: the same step modules as the torch reference, with a preallocated
cache written in place, length buckets, buffer leases and the decode step's replay bookkeeping, compiled by
torch.compile. It must generate what the eager reference generates (greedy, beams, sampling, rewind,
several live requests), in every precision within bounds, and refuse bad options with the fix.
The CUDA graph capture itself needs a CUDA device (tested where there is one: benchmarks/gpu_check.sh)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import edgeseq
from edgeseq.accuracy import forced_logits, prompt_ids
from edgeseq.cli import main
from edgeseq.errors import UsageError
from edgeseq.reference import torch_runner
from edgeseq.reference.compiled import DeviceLogits, compiler_missing
from edgeseq.runtimes.devices import rows

torch = pytest.importorskip("torch")
CUDA_WHY = torch_runner.probe(rows("torch-compile", "gpu:cuda", torch_runner.rows_of("torch-compile"))[0])
PROMPTS = ["The quick brown fox", "A lighthouse keeper kept a careful log of every ship"]
EAGER = {"compile": False, "min_bucket": 16}  # small buckets: 40 new tokens cross two bucket boundaries


def _forced(model: edgeseq.Model, art: Path, tokens: list[int] | None = None) -> tuple[list[int], np.ndarray]:
    gen = model.manifest.generation
    ids = prompt_ids((art / "tokenizer.json").read_text(), model.kind, gen, model.manifest.dims["vocab_size"])
    return forced_logits(model.backend, ids, gen, tokens, steps=32)


def _same_as_reference(art: Path, options: dict, device: str = "cpu") -> edgeseq.Model:
    ref = edgeseq.load(art, engine="torch")
    model = edgeseq.load(art, device=device, engine="torch-compile", engine_options=options)
    cfg = edgeseq.GenerationConfig(max_new_tokens=40, ignore_eos=True)
    assert model.generate(PROMPTS, config=cfg).ids == ref.generate(PROMPTS, config=cfg).ids  # batch of 2, padded
    tokens, want = _forced(ref, art)
    _, got = _forced(model, art, tokens)
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)
    beams = edgeseq.GenerationConfig(max_new_tokens=8, num_beams=3, num_return_sequences=2)
    assert model.generate(PROMPTS, config=beams).sequences == ref.generate(PROMPTS, config=beams).sequences
    return model


@pytest.mark.parametrize("family", ["llama", "gpt2", "t5"])
def test_eager_slots_match_reference(artifacts: dict[str, Path], family: str) -> None:
    model = _same_as_reference(artifacts[family], EAGER)
    buckets = [tuple(k) for k in model.backend.placement()["cache_buckets"]]
    # the beams' request ended on 6 rows (2 prompts x 3 beams); the 2-row set it tiled from may stay, free,
    # until a set of another shape is made
    assert any(b == 6 for b, _, _ in buckets) and len(buckets) <= 2
    if model.kind == "encoder-decoder":  # cross lengths: the encoder's input rounded up to a power of two
        assert all(s >= 16 and s & (s - 1) == 0 for _, _, s in buckets)


def test_paper_encoder_decoder(paper_artifacts: dict[str, Path]) -> None:
    _same_as_reference(paper_artifacts["paper-encdec"], EAGER)


@pytest.mark.skipif(compiler_missing() is not None, reason=f"torch.compile on the CPU: {compiler_missing()}")
@pytest.mark.parametrize("family", ["llama", "t5"])
def test_compiled_matches_reference(artifacts: dict[str, Path], family: str) -> None:
    model = _same_as_reference(artifacts[family], {"min_bucket": 16})
    place = model.backend.placement()
    assert place["compiled"] == "torch.compile (dynamic shapes)" and place["cuda_graphs"] == "off"
    assert "none of the artifact's graphs run" in place["note"]


def test_buckets_grow_and_idle_buffers_do_not_pile_up(artifacts: dict[str, Path]) -> None:
    model = edgeseq.load(artifacts["llama"], engine="torch-compile", engine_options=EAGER)
    pool = model.backend.pool
    assert [pool.bucket(n) for n in (1, 16, 17, 33, 10_000)] == [16, 16, 32, 64, 10_000]
    g = model.generator("one two three", max_new_tokens=30, ignore_eos=True)
    first = [g.next_token() for _ in range(20)]
    assert g.state.held.buffers.key == (1, 32, 0)  # 3 prompt tokens + 20 > 16 slots
    buffers = g.state.held.buffers
    assert buffers.replay is not None and buffers.replay.static[1].shape == (1, 32)  # the step's mask, bucket-long
    del g  # its lease goes back to the pool
    again = model.generator("one two three", max_new_tokens=30, ignore_eos=True)
    assert [again.next_token() for _ in range(20)] == first
    assert again.state.held.buffers is buffers and buffers.replay.replays == 0  # no CUDA graph on the CPU
    assert pool.held() == [(1, 16, 0), (1, 32, 0)]  # one set per shape in use, reused
    del again
    model.generate(PROMPTS, max_new_tokens=4)  # another shape: the idle sets go
    assert {b for b, _, _ in pool.held()} == {2}


def test_live_requests_keep_their_own_buffers(artifacts: dict[str, Path]) -> None:
    model = edgeseq.load(artifacts["llama"], engine="torch-compile", engine_options=EAGER)
    alone = [model.generate(p, max_new_tokens=10, ignore_eos=True).ids[0] for p in PROMPTS]
    a, b = (model.generator(p, max_new_tokens=10, ignore_eos=True) for p in PROMPTS)
    assert a.state.held.buffers is not b.state.held.buffers
    steps = [(a.next_token(), b.next_token()) for _ in range(10)]  # interleaved
    assert [[x for x, _ in steps], [y for _, y in steps]] == alone


def test_rewind_frees_slots(artifacts: dict[str, Path]) -> None:
    model = edgeseq.load(artifacts["llama"], engine="torch-compile", engine_options=EAGER)
    g = model.generator("one two three", max_new_tokens=8, ignore_eos=True)
    first = [g.next_token() for _ in range(5)]
    g.rewind(3)
    assert [g.next_token() for _ in range(3)] == first[2:]


def test_verify_returns_each_positions_logits(artifacts: dict[str, Path]) -> None:
    """A speculative step's several tokens give the logits one-token steps give."""
    b = edgeseq.load(artifacts["llama"], engine="torch-compile", engine_options=EAGER).backend
    ids = np.array([[5, 9, 14]], np.int64)
    one = b.new_state(1)
    b.prefill(one, ids)
    steps = [np.asarray(b.decode(one, np.array([t]))) for t in (21, 8, 30)]
    many = b.new_state(1)
    b.prefill(many, ids)
    np.testing.assert_allclose(b.verify(many, np.array([[21, 8, 30]]))[0, :2], np.concatenate(steps[:2]), atol=1e-5)


@pytest.mark.parametrize(("precision", "weights", "bound"), [("bf16", "float", 0.05), ("f16", "float", 0.01),
                                                              ("f32", "int8", 0.05), ("bf16", "int8", 0.08)])
def test_half_and_int8_weights_stay_close(artifacts: dict[str, Path], precision: str, weights: str,
                                          bound: float) -> None:
    art = artifacts["llama"]
    tokens, want = _forced(edgeseq.load(art, engine="torch"), art)
    model = edgeseq.load(art, engine="torch-compile", precision=precision, engine_options={**EAGER, "weights": weights})
    _, got = _forced(model, art, tokens)
    scale = float(np.abs(want).max())
    assert float(np.abs(got - want).max()) <= bound * scale
    assert (got.argmax(-1) == np.array(tokens)).mean() >= 0.9
    want_dtype = {"bf16": "bfloat16", "f16": "float16", "f32": "float32"}[precision]
    assert model.backend.placement()["dtype"].startswith(want_dtype)
    if weights == "int8":
        layers = [m for m in model.backend.modules["decoder"].modules() if type(m).__name__ == "Int8Linear"]
        assert layers and all(m.weight.dtype == torch.int8 for m in layers)
        assert "int8 weight-only" in model.backend.precision


def test_device_logits_argmax_and_host_copy() -> None:
    t = torch.tensor([[0.1, 2.0, -1.0], [3.0, 0.0, 1.0]])
    lazy = DeviceLogits(t)
    assert lazy.shape == (2, 3) and lazy.argmax(axis=-1).tolist() == [1, 0]
    np.testing.assert_array_equal(np.asarray(lazy), t.numpy())
    assert lazy[1, 0] == 3.0 and lazy.astype(np.float64).dtype == np.float64


@pytest.mark.parametrize("config", [dict(), dict(do_sample=True, seed=3, top_k=20),
                                    dict(num_beams=2, num_return_sequences=2), dict(repetition_penalty=1.3)])
def test_logits_left_on_the_device_decode_the_same(artifacts: dict[str, Path], config: dict) -> None:
    """Decode steps that return DeviceLogits (as on CUDA) pick what host logits pick, in every search."""
    host = edgeseq.load(artifacts["llama"], engine="torch-compile", engine_options=EAGER)
    lazy = edgeseq.load(artifacts["llama"], engine="torch-compile", engine_options=EAGER)
    lazy.backend.lazy_logits = True
    state = lazy.backend.new_state(1)
    lazy.backend.prefill(state, np.array([[5, 9]], np.int64))
    assert isinstance(lazy.backend.decode(state, np.array([7])), DeviceLogits)
    cfg = edgeseq.GenerationConfig(max_new_tokens=12, **config)
    assert lazy.generate(PROMPTS, config=cfg).sequences == host.generate(PROMPTS, config=cfg).sequences


def test_source_only_artifact_runs_on_the_pytorch_engines(hf_dirs: dict[str, Path], tmp_path: Path) -> None:
    from edgeseq.errors import ArtifactError
    from edgeseq.export import source_only

    art = tmp_path / "src"
    m = source_only.write(str(hf_dirs["llama"]), art, "torch-compile")
    assert m.format == "source" and sorted(p.name for p in art.iterdir()) == ["edgeseq.json", "tokenizer.json"]
    model = edgeseq.load(art, engine_options=EAGER)  # its manifest names the engine
    assert model.backend.engine == "torch-compile"
    assert model.generate("hello", max_new_tokens=5).ids == edgeseq.load(art, engine="torch").generate(
        "hello", max_new_tokens=5).ids
    with pytest.raises(ArtifactError, match="cannot run a source artifact") as e:
        edgeseq.load(art, engine="onnxruntime")
    assert "--engine torch-compile or torch" in (e.value.hint or "")


def test_bad_options_and_precision_name_the_fix(artifacts: dict[str, Path]) -> None:
    with pytest.raises(UsageError, match="weights='int4' is not one of float, int8") as e:
        edgeseq.load(artifacts["llama"], engine="torch-compile", engine_options={"weights": "int4"})
    assert "weights=int8" in (e.value.hint or "")
    with pytest.raises(UsageError, match="no precision 'int8'"):
        edgeseq.load(artifacts["llama"], engine="torch-compile", precision="int8")
    with pytest.raises(UsageError, match="has no option graphs"):
        edgeseq.load(artifacts["llama"], engine="torch-compile", engine_options={"graphs": True})


def test_profile_records_the_engine_and_its_options(artifacts: dict[str, Path], tmp_path: Path) -> None:
    import json

    out = tmp_path / "p.json"
    assert main(["profile", str(artifacts["t5"]), "--engine", "torch-compile", "--engine-option", "compile=0",
                 "--input-len", "8", "--output-len", "6", "--reps", "1", "--warmup", "0", "--no-bandwidth",
                 "--json", str(out), "--quiet"]) == 0
    r = json.loads(out.read_text())["results"][0]
    assert r["engine"] == "torch-compile" and r["placement"]["compiled"] == "eager"
    assert r["engine_options"]["compile"] is False and r["decode_tok_s"] > 0
    assert main(["profile", str(artifacts["t5"]), "--engine", "torch-compile", "--engine-option", "graph=1",
                 "--no-bandwidth", "--quiet"]) == 2  # an unknown option, refused before anything loads


@pytest.mark.skipif(CUDA_WHY is not None, reason=f"torch-compile gpu:cuda: {CUDA_WHY}")
@pytest.mark.parametrize("family", ["llama", "t5"])
def test_cuda_graphs_match_reference(artifacts: dict[str, Path], family: str) -> None:
    model = _same_as_reference(artifacts[family], {"min_bucket": 16}, device="gpu")
    place = model.backend.placement()
    assert place["device"].startswith("cuda:") and place["cuda_graphs"].startswith("per (batch")
    replays = [b.replay.replays for b in model.backend.pool._sets if b.replay is not None]
    assert replays and max(replays) > 0
