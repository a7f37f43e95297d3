"""Gemma family (models/families/gemma.py): a tiny Gemma 3 text model with sliding-window and full
layers, exported to each format and checked against transformers on prompts longer than the window."""
from __future__ import annotations

from pathlib import Path

import pytest

from edgeseq.errors import UnsupportedArchitectureError

from conftest import LITERT_MISSING, TFLITE_SHAPE
from family_checks import GEMMA1, GEMMA3, check_family, save_tiny

# 21 and 6 tokens with the test tokenizer: the long one reaches past the sliding window of 8, within TFLite's 24
PROMPTS = ["The quick brown fox jumps over the lazy dog again and again", "one two"]


@pytest.fixture(scope="module")
def gemma3(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny(GEMMA3, tmp_path_factory.mktemp("gemma3") / "src")


@pytest.mark.parametrize("fmt", ["onnx", "openvino"])
def test_gemma3_matches_transformers(gemma3: Path, tmp_path: Path, fmt: str) -> None:
    model = check_family(gemma3, tmp_path / fmt, "gemma", fmt=fmt, prompts=PROMPTS)
    assert len(model.encode(PROMPTS[0])) > 2 * GEMMA3["sliding_window"]


@pytest.mark.skipif(LITERT_MISSING is not None, reason=f"{LITERT_MISSING} not installed: pip install 'edgeseq[tflite]'")
def test_gemma3_tflite_static_shapes(gemma3: Path, tmp_path: Path) -> None:
    from edgeseq.steps.static import StaticShape

    check_family(gemma3, tmp_path / "tflite", "gemma", fmt="tflite", prompts=PROMPTS,
                 shape=StaticShape(**TFLITE_SHAPE))  # type: ignore[arg-type]


def test_gemma1_matches_transformers(tmp_path: Path) -> None:
    check_family(save_tiny(GEMMA1, tmp_path / "src"), tmp_path / "onnx", "gemma", prompts=PROMPTS[:1])


def test_attention_softcapping_is_refused_by_name(tmp_path: Path) -> None:
    from edgeseq.models import resolve

    src = save_tiny(dict(GEMMA3, attn_logit_softcapping=50.0), tmp_path / "src")
    with pytest.raises(UnsupportedArchitectureError, match="attn_logit_softcapping"):
        resolve(str(src))


def test_gemma3_270m_preset_has_the_public_shape() -> None:
    from edgeseq.models.presets import preset_config

    c = preset_config("gemma3-270m")
    assert (c.hidden_size, c.num_hidden_layers, c.num_attention_heads, c.num_key_value_heads, c.head_dim) == \
        (640, 18, 4, 1, 256)
    assert c.layer_types[:6] == ["sliding_attention"] * 5 + ["full_attention"]
    assert c.rope_parameters["sliding_attention"]["rope_theta"] == 10000.0
    assert c.rope_parameters["full_attention"]["rope_theta"] == 1000000.0
