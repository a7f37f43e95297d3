"""--native ovgenai: a tiny decoder-only OpenVINO artifact loads in openvino.genai's LLMPipeline, its
greedy tokens equal edgeseq's own engines', and generate / profile run it on edgeseq's clock."""
from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest

import edgeseq
from edgeseq.errors import ArtifactError, UsageError
from edgeseq.generate.config import GenerationConfig

MISSING = next((m for m in ("openvino_genai", "openvino_tokenizers") if importlib.util.find_spec(m) is None), None)
pytestmark = pytest.mark.skipif(MISSING is not None, reason=f"{MISSING} not installed: pip install 'edgeseq[ovgenai]'")

PROMPT = [3, 17, 250, 31, 999, 4, 512, 8, 77]
STEPS = 32


@pytest.fixture(scope="module")
def native(hf_dirs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from edgeseq.export.pipeline import export

    root = tmp_path_factory.mktemp("ovgenai")
    for weights in ("fp32", "int8"):
        export(str(hf_dirs["llama"]), root / weights, format="openvino", weights=weights, quiet=True,
               native=("ovgenai",))
    return {w: root / w for w in ("fp32", "int8")}


def greedy(path: Path, engine: str) -> list[int]:
    model = edgeseq.load(path, engine=engine)
    out = model.generate_ids([PROMPT], GenerationConfig(max_new_tokens=STEPS, ignore_eos=True))
    return out.ids[0]


@pytest.mark.parametrize("weights", ["fp32", "int8"])
def test_export_check_passes_and_tokens_match_openvino(native: dict[str, Path], weights: str) -> None:
    art = native[weights]
    record = json.loads((art / "edgeseq.json").read_text())["native"]["ovgenai"]
    assert record["check"]["status"] == "passed", record["check"]
    assert "openvino_model.xml" in record["files"] and "openvino_tokenizer.xml" in record["files"]
    # the stateful IR reads the artifact's own weights file (one inode), not a copy
    assert (art / "openvino_model.bin").stat().st_ino == (art / "decoder.bin").stat().st_ino
    got = greedy(art, "ovgenai")
    assert len(got) == STEPS
    assert got == greedy(art, "openvino")


def test_tokens_match_onnxruntime_on_an_onnx_export(native: dict[str, Path], artifacts: dict[str, Path]) -> None:
    assert greedy(native["fp32"], "ovgenai") == greedy(artifacts["llama"], "onnxruntime")


def test_profile_row_is_timed_at_f32(native: dict[str, Path]) -> None:
    from edgeseq.profile.runner import ProfileConfig, profile_artifact

    cfg = ProfileConfig(engine="ovgenai", input_lens=[16], output_lens=[8], warmup=1, reps=2, threads=1)
    (row,) = profile_artifact(native["fp32"], cfg.validate())
    assert row.status == "ok" and row.engine == "ovgenai" and row.precision == "f32"
    ttft, tpot = row.median("ttft_ms"), row.median("tpot_ms")
    assert math.isfinite(ttft) and ttft > 0 and math.isfinite(tpot) and tpot > 0


def test_cli_generate(native: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    from edgeseq.cli import main

    assert main(["generate", str(native["fp32"]), "--engine", "ovgenai", "--max-new-tokens", "4", "hello"]) == 0
    assert capsys.readouterr().out.strip()


def test_refusals(native: dict[str, Path], hf_dirs: dict[str, Path], artifacts: dict[str, Path],
                  tmp_path: Path) -> None:
    from edgeseq.export.pipeline import export

    plain = tmp_path / "plain"  # the artifact as exported without --native ovgenai
    plain.mkdir()
    manifest = json.loads((native["fp32"] / "edgeseq.json").read_text())
    extra = set(manifest.pop("native")["ovgenai"]["files"])
    manifest["files"] = {k: v for k, v in manifest["files"].items() if k not in extra}
    for name in manifest["files"]:
        (plain / name).write_bytes((native["fp32"] / name).read_bytes())
    (plain / "edgeseq.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="no openvino.genai files") as e:
        edgeseq.load(plain, engine="ovgenai")
    assert "--native ovgenai" in e.value.hint
    with pytest.raises(UsageError, match="needs --format openvino"):
        export(str(hf_dirs["llama"]), tmp_path / "onnx", format="onnx", quiet=True, native=("ovgenai",))
    with pytest.raises(UsageError, match="does not run text encoder-decoder"):
        export(str(hf_dirs["t5"]), tmp_path / "t5", format="openvino", quiet=True, native=("ovgenai",))
    with pytest.raises(ArtifactError, match="cannot run a onnx artifact"):  # the engine reads --format openvino only
        edgeseq.load(artifacts["llama"], engine="ovgenai")


def test_sliding_window_models_are_refused(tmp_path: Path) -> None:
    """LLMPipeline's default (paged) attention reads every key: a windowed layer's tokens differ from the
    third on (measured when the refusal was off), so the export refuses instead of failing its check."""
    from family_checks import DECODERS, save_tiny

    from edgeseq.export.pipeline import export

    src = save_tiny(DECODERS["qwen2-windowed"], tmp_path / "hf")
    with pytest.raises(UsageError, match="sliding-window"):
        export(str(src), tmp_path / "art", format="openvino", quiet=True, native=("ovgenai",))
