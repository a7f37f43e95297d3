"""TFLite / LiteRT: static-shape export (fixed-length KV cache, prefill buckets) for every family,
parity, generation against the ONNX path, limits as clear errors. Skips through a probe when
litert-torch / ai-edge-litert are not installed."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

import edgeseq
from edgeseq.cli import main
from edgeseq.errors import ArtifactError, DeviceError, InputError, UsageError
from edgeseq.export.pipeline import export
from edgeseq.steps.static import StaticShape

from conftest import LITERT_MISSING, TFLITE_SHAPE, make_paper_dir

needs_litert = pytest.mark.skipif(LITERT_MISSING is not None,
                                  reason=f"{LITERT_MISSING} not installed: pip install 'edgeseq[tflite]' -c constraints.txt")
SHAPE = StaticShape(**TFLITE_SHAPE)
CFG = edgeseq.GenerationConfig(max_new_tokens=16, ignore_eos=True)


@needs_litert
def test_artifact_describes_its_shapes(tflite_artifacts: dict[str, Path], family: str) -> None:
    data = json.loads((tflite_artifacts[family] / "edgeseq.json").read_text())
    assert data["format"] == "tflite" and data["engine"] == "litert"
    assert data["static"]["buckets"] == [8, 24] and data["static"]["max_output"] == 40
    if family == "t5":
        assert data["static"]["cache_length"] == 40 and data["static"]["cross_length"] == 24
        assert data["components"]["encoder"]["signatures"] == {"encode_8": 8, "encode_24": 24}
        assert data["components"]["decoder_step"]["signatures"] == {"decode": 1}
    else:
        assert data["static"]["cache_length"] == 64
        assert data["components"]["decoder"]["signatures"] == {"prefill_8": 8, "prefill_24": 24, "decode": 1}
        names = {i["name"]: i["signature_name"] for i in data["components"]["decoder"]["inputs"]}
        assert names["past.0.key"] == "past_0_key" and names["cache_position"] == "cache_position"
    p = data["parity"]
    assert p["status"] == "passed" and p["steps"] == 32 and p["max_abs_diff"] < 1e-4
    assert p["prompt_tokens"] <= 24  # the parity prompt is cut to what the artifact takes


@needs_litert
def test_same_tokens_as_onnx_runtime(tflite_artifacts: dict[str, Path], artifacts: dict[str, Path], family: str) -> None:
    lite, ort = edgeseq.load(tflite_artifacts[family]), edgeseq.load(artifacts[family])
    assert lite.backend.engine == "litert"
    for prompt in ("The quick brown fox", "A lighthouse keeper"):
        assert lite.generate(prompt, config=CFG).ids == ort.generate(prompt, config=CFG).ids
    # batches and beams run row by row through the batch-1 signatures
    two = ["one two", "a longer second one"]
    assert lite.generate(two, config=CFG).ids == ort.generate(two, config=CFG).ids
    beams = edgeseq.GenerationConfig(max_new_tokens=8, num_beams=3)
    assert lite.generate("one two", config=beams).ids == ort.generate("one two", config=beams).ids


@needs_litert
def test_paper_family(tmp_path: Path) -> None:
    for name in ("paper-encdec", "paper-deconly"):
        m = export(str(make_paper_dir(name, tmp_path / f"{name}-src")), tmp_path / name, format="tflite",
                   shape=SHAPE, quiet=True)
        assert m.parity["status"] == "passed" and m.parity["max_abs_diff"] < 1e-4


@needs_litert
def test_limits_are_errors(tflite_artifacts: dict[str, Path]) -> None:
    lite = edgeseq.load(tflite_artifacts["llama"])
    long_prompt = list(range(4, 4 + 30))  # 30 tokens > max_input 24
    with pytest.raises(InputError, match="largest prefill bucket .24.*--max-input 30"):
        lite.generate_ids([long_prompt], config=CFG)
    with pytest.raises(InputError, match="KV cache holds 64 positions"):
        lite.generate_ids([list(range(4, 28))], config=edgeseq.GenerationConfig(max_new_tokens=45, ignore_eos=True))
    # exactly filling the cache is fine: a 24-token prompt and 40 new tokens
    out = lite.generate_ids([list(range(4, 28))], config=edgeseq.GenerationConfig(max_new_tokens=40, ignore_eos=True))
    assert len(out.ids[0]) == 40
    t5 = edgeseq.load(tflite_artifacts["t5"])
    with pytest.raises(InputError, match="largest encoder bucket .24."):
        t5.generate_ids([list(range(4, 34))], config=CFG)


@needs_litert
def test_bucket_and_padding_in_profile(tflite_artifacts: dict[str, Path], tmp_path: Path) -> None:
    from edgeseq.profile.runner import ProfileConfig, profile_artifact

    rows = profile_artifact(tflite_artifacts["llama"], ProfileConfig(input_lens=[5], output_lens=[4], reps=1, warmup=0))
    static = rows[0]["placement"]["static"]
    assert static["prefill_bucket"] == 8 and static["prefill_padding"] == 3 and static["cache_length"] == 64
    with pytest.raises(UsageError, match="--max-input 30"):
        profile_artifact(tflite_artifacts["llama"], ProfileConfig(input_lens=[30], output_lens=[4], reps=1, warmup=0))


@needs_litert
def test_generator_rewind(tflite_artifacts: dict[str, Path], artifacts: dict[str, Path]) -> None:
    """A caller-owned loop that appends and rewinds (trim) follows the dynamic-shape path token for token."""
    outs = []
    for art in (tflite_artifacts["gpt2"], artifacts["gpt2"]):
        g = edgeseq.load(art).generator([5, 6, 7, 8, 9], config=CFG)
        first = [g.next_token() for _ in range(4)]
        g.rewind(3)
        g.append_tokens([12, 13])
        outs.append((first, [g.next_token() for _ in range(4)], g.sequence))
    assert outs[0] == outs[1]


@needs_litert
def test_int8_weights(hf_dirs: dict[str, Path], tmp_path: Path) -> None:
    sizes = {}
    for w in ("fp32", "fp16", "int8", "int8-wo"):
        m = export(str(hf_dirs["llama"]), tmp_path / w, format="tflite", weights=w, shape=SHAPE, quiet=True)
        assert m.parity["status"] == "passed", m.parity
        assert m.quantization == (None if w == "fp32" else w)
        sizes[w] = m.components["decoder"].weight_bytes
    assert sizes["int8"] < 0.5 * sizes["fp32"] and sizes["int8-wo"] < 0.5 * sizes["fp32"]
    assert sizes["fp16"] < 0.75 * sizes["fp32"]


@needs_litert
def test_bad_input(hf_dirs: dict[str, Path], tflite_artifacts: dict[str, Path], tmp_path: Path) -> None:
    src = str(hf_dirs["llama"])
    with pytest.raises(UsageError, match="exceed --max-input 16"):
        StaticShape(max_input=16, buckets=(8, 32))
    with pytest.raises(UsageError, match="positive integers"):
        StaticShape(buckets=(0, 8))
    with pytest.raises(UsageError, match="maximum|positions"):
        export(src, tmp_path / "big", format="tflite", shape=StaticShape(max_input=200, max_output=100), quiet=True)
    with pytest.raises(UsageError, match="static-shape formats"):
        export(src, tmp_path / "onnx", format="onnx", shape=SHAPE, quiet=True)
    with pytest.raises(UsageError, match="not available for --format tflite"):
        export(src, tmp_path / "x", format="tflite", weights="int4", quiet=True)
    assert not (tmp_path / "big").exists() and not (tmp_path / "x").exists()
    # a truncated graph is caught by the manifest's size record before LiteRT reads it
    copy = tmp_path / "copy"
    import shutil

    shutil.copytree(tflite_artifacts["llama"], copy)
    f = copy / "decoder.tflite"
    f.write_bytes(f.read_bytes()[:1000])
    with pytest.raises(ArtifactError, match="truncated or replaced"):
        edgeseq.load(copy)
    # GPU / NPU rows need a delegate library
    with pytest.raises(DeviceError, match="--delegate"):
        edgeseq.load(tflite_artifacts["llama"], device="npu")
    with pytest.raises(DeviceError, match="does not exist"):
        edgeseq.load(tflite_artifacts["llama"], device="gpu", delegate=str(tmp_path / "libnone.so"))
    # an ONNX engine asked to run a tflite artifact
    with pytest.raises(ArtifactError, match="cannot run a tflite artifact"):
        edgeseq.load(tflite_artifacts["llama"], engine="onnxruntime")


@needs_litert
def test_cli_export_flags(hf_dirs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cli"
    rc = main(["export", str(hf_dirs["gpt2"]), "--format", "tflite", "--max-input", "16", "--max-output", "8",
               "--prefill-buckets", "4", "--parity-steps", "8", "--out", str(out), "--quiet"])
    assert rc == 0
    data = json.loads((out / "edgeseq.json").read_text())
    assert data["static"] == {"max_input": 16, "max_output": 8, "cache_length": 24, "buckets": [4, 16]}
    assert data["parity"]["steps"] == 8
    assert main(["export", str(hf_dirs["gpt2"]), "--format", "tflite", "--prefill-buckets", "0,4",
                 "--out", str(tmp_path / "bad")]) != 0
    assert "positive integers" in capsys.readouterr().err


@needs_litert
def test_compare_sizes_static_exports(hf_dirs: dict[str, Path], tmp_path: Path) -> None:
    """`edgeseq compare` exports a static format with one bucket per input length: no point is padded."""
    from edgeseq.compare.sweep import ensure_artifact

    art = ensure_artifact(str(hf_dirs["gpt2"]), "tflite", "fp32", tmp_path, 4, lambda s: None, ([12, 6], 5))
    static = json.loads((art / "edgeseq.json").read_text())["static"]
    assert static == {"max_input": 12, "max_output": 5, "cache_length": 17, "buckets": [6, 12]}


@needs_litert
def test_packed_weight_cache(tflite_artifacts: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """XNNPACK's packed weights are cached per graph content: a second load maps them, results unchanged;
    another model never picks up this one's file."""
    from edgeseq.runtimes.host.disk_cache import cache_dir as engine_cache_dir

    def cache_dir() -> Path:
        return engine_cache_dir("litert")

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    first = edgeseq.load(tflite_artifacts["llama"])
    files = sorted(p.name for p in cache_dir().iterdir())
    sha = json.loads((tflite_artifacts["llama"] / "edgeseq.json").read_text())["files"]["decoder.tflite"]["sha256"]
    assert files == [f"{sha[:16]}-{__import__('importlib.metadata').metadata.version('ai-edge-litert')}.xnnpack"]
    again = edgeseq.load(tflite_artifacts["llama"])
    assert first.generate("one two three", config=CFG).ids == again.generate("one two three", config=CFG).ids
    edgeseq.load(tflite_artifacts["gpt2"])
    assert len(list(cache_dir().iterdir())) == 2 and not list(cache_dir().glob("*.partial"))
