"""The torch engine: the exporters' step modules rebuilt from the manifest's source, run eagerly.

On the CPU it must generate what the ONNX graphs generate (it is their reference); on a CUDA GPU
the same, where this host has one (otherwise skipped with the probe's reason); a source that is
gone or changed since the export is refused with the fix named."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import edgeseq
from edgeseq.cli import main
from edgeseq.errors import ArtifactError, DeviceError
from edgeseq.accuracy import prompt_ids
from edgeseq.accuracy import forced_logits
from edgeseq.reference import torch_runner as torch_engine
from edgeseq.runtimes.devices import rows

pytest.importorskip("torch")
CUDA_WHY = torch_engine.probe(rows("torch", "gpu:cuda", torch_engine.ROWS)[0])
PROMPTS = ["The quick brown fox", "A lighthouse keeper kept a careful log of every ship"]


def _same_as_onnx(art: Path, device: str) -> None:
    ort, pt = edgeseq.load(art), edgeseq.load(art, device=device, engine="torch")
    cfg = edgeseq.GenerationConfig(max_new_tokens=12, ignore_eos=True)
    assert pt.generate(PROMPTS, config=cfg).ids == ort.generate(PROMPTS, config=cfg).ids  # batch of 2, padded
    # logits over 16 teacher-forced steps through the cache (the ONNX run's greedy tokens)
    gen = ort.manifest.generation
    ids = prompt_ids((art / "tokenizer.json").read_text(), ort.kind, gen, ort.manifest.dims["vocab_size"])
    tokens, want = forced_logits(ort.backend, ids, gen, None, steps=16)
    _, got = forced_logits(pt.backend, ids, gen, tokens, steps=16)
    np.testing.assert_allclose(got, want, atol=1e-3, rtol=0)
    beams = edgeseq.GenerationConfig(max_new_tokens=8, num_beams=3, num_return_sequences=2)
    assert pt.generate(PROMPTS, config=beams).sequences == ort.generate(PROMPTS, config=beams).sequences


@pytest.mark.parametrize("family", ["llama", "gpt2", "t5"])
def test_cpu_matches_onnx(artifacts: dict[str, Path], family: str) -> None:
    _same_as_onnx(artifacts[family], "cpu")


@pytest.mark.skipif(CUDA_WHY is not None, reason=f"torch gpu:cuda: {CUDA_WHY}")
@pytest.mark.parametrize("family", ["llama", "t5"])
def test_cuda_matches_onnx(artifacts: dict[str, Path], family: str) -> None:
    _same_as_onnx(artifacts[family], "gpu:cuda")
    model = edgeseq.load(artifacts[family], device="gpu", engine="torch")
    model.generate("hello", max_new_tokens=4)
    place = model.backend.placement()
    assert place["device"].startswith("cuda:") and place["peak_device_memory_mb"] > 0


def test_caches_stay_torch_tensors_and_rewind(artifacts: dict[str, Path]) -> None:
    import torch

    model = edgeseq.load(artifacts["llama"], engine="torch")
    g = model.generator("one two three", max_new_tokens=6, ignore_eos=True)
    first = [g.next_token() for _ in range(4)]
    assert all(isinstance(v, torch.Tensor) for v in g.state.caches.values())
    g.rewind(2)
    again = [g.next_token() for _ in range(2)]
    assert again == first[2:]
    place = model.backend.placement()
    assert place["device"] == "cpu" and place["dtype"] == "float32" and model.backend.precision == "f32"


def test_manifest_records_seed(artifacts: dict[str, Path]) -> None:
    doc = json.loads((artifacts["llama"] / "edgeseq.json").read_text())
    assert doc["model"]["seed"] == 0


def test_rebuild_passes_the_recorded_seed(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import edgeseq.models

    seen: list[int] = []

    class Spec:
        source_hash = "sha256:x"

    def fake(source: str, seed: int = 0) -> Spec:
        seen.append(seed)
        return Spec()

    monkeypatch.setattr(edgeseq.models, "resolve", fake)
    torch_engine.rebuild(tmp_path, {"source": "preset:t5-small", "source_hash": "sha256:x", "seed": 7})
    torch_engine.rebuild(tmp_path, {"source": "preset:t5-small", "source_hash": "sha256:x"})  # older manifest
    assert seen == [7, 0]


def _moved(artifacts: dict[str, Path], hf_dirs: dict[str, Path], tmp_path: Path) -> tuple[Path, Path]:
    """A copy of the llama artifact whose manifest points at a copy of its source directory."""
    src, art = tmp_path / "src", tmp_path / "art"
    shutil.copytree(hf_dirs["llama"], src)
    shutil.copytree(artifacts["llama"], art)
    doc = json.loads((art / "edgeseq.json").read_text())
    doc["model"]["source"] = str(src)
    (art / "edgeseq.json").write_text(json.dumps(doc))
    return src, art


def test_changed_or_missing_source_is_refused(artifacts: dict[str, Path], hf_dirs: dict[str, Path],
                                              tmp_path: Path) -> None:
    src, art = _moved(artifacts, hf_dirs, tmp_path)
    edgeseq.load(art, engine="torch")  # the copy is byte-identical: accepted
    cfg = json.loads((src / "config.json").read_text())
    (src / "config.json").write_text(json.dumps({**cfg, "rms_norm_eps": 1e-3}))
    with pytest.raises(ArtifactError, match="rebuilds the model from its source, and .* has changed") as e:
        edgeseq.load(art, engine="torch")
    assert e.value.hint and "re-export" in e.value.hint
    shutil.rmtree(src)
    with pytest.raises(ArtifactError, match="cannot be loaded here"):
        edgeseq.load(art, engine="torch")
    assert edgeseq.load(art).generate("hello", max_new_tokens=2).ids  # the artifact's own graphs need no source


def test_devices_table_lists_torch(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["devices"]) == 0
    out = capsys.readouterr().out
    lines = [ln for ln in out.splitlines() if ln.startswith("torch ")]
    assert len(lines) == 2 and "available" in lines[0] and "gpu:cuda" in lines[1]
    if CUDA_WHY:
        assert "missing" in lines[1] and CUDA_WHY in lines[1] and "CUDA build of torch" in lines[1]
    assert "torch" in out.splitlines()[-1]  # the engines line


@pytest.mark.skipif(CUDA_WHY is None, reason="this host has a CUDA device")
def test_gpu_without_cuda_names_why(artifacts: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    assert CUDA_WHY and "torch has no CUDA device" in CUDA_WHY
    with pytest.raises(DeviceError, match="torch engine has no gpu device on this host: gpu:cuda torch has no CUDA"):
        edgeseq.load(artifacts["llama"], device="gpu", engine="torch")
    assert main(["profile", str(artifacts["t5"]), "--engine", "torch", "--device", "gpu", "--no-bandwidth"]) == 9
    assert "torch has no CUDA device" in capsys.readouterr().err


def test_profile_on_torch(artifacts: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "p.json"
    assert main(["profile", str(artifacts["t5"]), "--engine", "torch", "--input-len", "8", "--output-len", "4",
                 "--reps", "1", "--warmup", "0", "--no-bandwidth", "--json", str(out)]) == 0
    r = json.loads(out.read_text())["results"][0]
    assert r["engine"] == "torch" and r["device"] == "cpu" and r["precision"] == "f32"
    assert r["placement"]["device"] == "cpu" and r["ttft_ms"] > 0


@pytest.mark.parametrize("fmt, static", [("openvino", None), ("tflite", {"max_input": 24, "max_output": 40,
                                                                          "cache_length": 64, "buckets": [8, 24]})])
def test_any_format_manifest_will_do(artifacts: dict[str, Path], tmp_path: Path, fmt: str, static: dict | None) -> None:
    """Only the manifest is read: an artifact of another format (static shapes included) runs the same."""
    art = tmp_path / fmt
    shutil.copytree(artifacts["llama"], art)
    doc = json.loads((art / "edgeseq.json").read_text())
    if static:  # a static export's decoder: one signature per prefill bucket, and decode
        doc["components"]["decoder"]["signatures"] = {"prefill_8": 8, "prefill_24": 24, "decode": 1}
    (art / "edgeseq.json").write_text(json.dumps({**doc, "format": fmt, "static": static}))
    cfg = edgeseq.GenerationConfig(max_new_tokens=6, ignore_eos=True)
    want = edgeseq.load(artifacts["llama"]).generate("hello world", config=cfg).ids
    assert edgeseq.load(art, engine="torch").generate("hello world", config=cfg).ids == want
