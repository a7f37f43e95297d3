"""Llama-shaped decoder families (qwen2, qwen3, mistral, phi3): tiny random models exported, parity-gated
and generating what transformers generates on the same weights (tests/family_checks.py)."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import LITERT_MISSING, TFLITE_SHAPE
from family_checks import BASE, DECODERS, PROMPTS, check_family, hf_model, save_tiny

from edgeseq.errors import UnsupportedArchitectureError

TINY = DECODERS
# 22 tokens of edgeseq's test tokenizer: past Mistral's window of 8, within TFLITE_SHAPE's 24
LONG = "A lighthouse keeper kept a careful log"
needs_litert = pytest.mark.skipif(bool(LITERT_MISSING), reason=f"{LITERT_MISSING} not installed: "
                                  "pip install 'edgeseq[tflite]' -c constraints.txt")


@pytest.fixture(scope="module")
def src(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("decoders")
    return {name: save_tiny(kw, root / name) for name, kw in TINY.items()}


def _ops(out: Path) -> set[str]:
    import onnx

    return {n.op_type for f in out.glob("*.onnx") for n in onnx.load(str(f), load_external_data=False).graph.node}


@pytest.mark.parametrize("name", ["qwen2-tied", "qwen2-untied", "qwen3", "mistral", "phi3"])
def test_onnx_matches_transformers(name: str, src: dict[str, Path], tmp_path: Path) -> None:
    family = name.split("-")[0]
    check_family(src[name], tmp_path / name, family, prompts=[*PROMPTS, LONG] if family == "mistral" else PROMPTS)
    assert "GroupQueryAttention" in _ops(tmp_path / name)  # the fused kernel route, sliding window included


def test_qwen2_heads_tied_and_untied(src: dict[str, Path]) -> None:
    tied, untied = hf_model(src["qwen2-tied"]), hf_model(src["qwen2-untied"])
    assert tied.lm_head.weight is tied.model.embed_tokens.weight
    assert not torch.equal(untied.lm_head.weight, untied.model.embed_tokens.weight)


def test_qwen2_sliding_layers(src: dict[str, Path], tmp_path: Path) -> None:
    assert hf_model(src["qwen2-windowed"]).config.layer_types == ["full_attention", "sliding_attention"]
    check_family(src["qwen2-windowed"], tmp_path / "w", "qwen2", beams=False, prompts=[LONG])


def test_mistral_window_changes_the_output(src: dict[str, Path]) -> None:
    """The sliding-window checks mean something: on LONG, window 8 and no window disagree."""
    hf = hf_model(src["mistral"])
    ids = torch.randint(4, 1024, (1, 22), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        windowed = hf(ids).logits
        hf.config.sliding_window = None
        full = hf(ids).logits
    assert torch.allclose(windowed[:, :8], full[:, :8], atol=1e-5)
    assert not torch.allclose(windowed[:, -1], full[:, -1], atol=1e-3)


def test_phi3_longrope_short_factors_and_capped_positions(src: dict[str, Path], tmp_path: Path) -> None:
    model = check_family(src["phi3-longrope"], tmp_path / "p", "phi3", beams=False, prompts=[LONG])
    assert model.manifest.dims["max_positions"] == 128  # original_max_position_embeddings: short factors only
    assert "GroupQueryAttention" not in _ops(tmp_path / "p")  # partial rotary: the plain route


def test_unsupported_rope_is_refused(tmp_path: Path) -> None:
    from edgeseq.models import resolve

    d = save_tiny(dict(BASE, model_type="qwen2", rope_scaling=dict(rope_type="dynamic", factor=2.0)), tmp_path / "q")
    with pytest.raises(UnsupportedArchitectureError, match="rope type 'dynamic'"):
        resolve(str(d))


def test_qwen3_openvino(src: dict[str, Path], tmp_path: Path) -> None:
    pytest.importorskip("openvino")
    check_family(src["qwen3"], tmp_path / "ov", "qwen3", fmt="openvino")


@needs_litert
@pytest.mark.parametrize("name", ["qwen3", "mistral"])
def test_tflite_matches_transformers(name: str, src: dict[str, Path], tmp_path: Path) -> None:
    from edgeseq.steps.static import StaticShape

    check_family(src[name], tmp_path / name, name, fmt="tflite", prompts=[LONG],
                 shape=StaticShape(**TFLITE_SHAPE))  # type: ignore[arg-type]


def test_qwen_prompts_start_without_bos(src: dict[str, Path]) -> None:
    """Qwen configs name <|endoftext|> as BOS, but the models are trained without one: prompts get none."""
    from edgeseq.models import resolve

    for name in ("qwen2-tied", "qwen3"):
        gen = resolve(str(src[name])).generation
        assert gen.bos_token_id == 3 and not gen.add_bos
    assert resolve(str(src["mistral"])).generation.add_bos  # Llama-style families keep it
