"""Tiny models built from configs in the tests (no network), saved as Hugging Face directories and
exported once per session; the real-weight path is covered by the README's main job."""
from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest

from family_checks import TINY  # noqa: E402  (tests/ is on the path)

FAMILIES = list(TINY)
# edgeseq's own paper family (models/paper.py), saved as an edgeseq model directory
TINY_PAPER = {
    "paper-encdec": dict(model_type="paper-encdec", vocab_size=1024, hidden_size=64, num_heads=4, num_kv_heads=2,
                         head_dim=16, intermediate_size=128, num_encoder_layers=3, num_layers=2, max_positions=256),
    "paper-deconly": dict(model_type="paper-deconly", vocab_size=1024, hidden_size=64, num_heads=4, num_kv_heads=2,
                          head_dim=16, intermediate_size=128, num_encoder_layers=0, num_layers=3, max_positions=256,
                          bos_token_id=3, decoder_start_token_id=None),
}


def make_hf_dir(family: str, path: Path, **overrides: object) -> Path:
    from family_checks import save_tiny

    return save_tiny(dict(TINY[family], **overrides), path)


def make_paper_dir(name: str, path: Path) -> Path:
    import torch

    from edgeseq.models.paper import PaperConfig, PaperModel
    from edgeseq.models.tokenizer import train_tokenizer

    torch.manual_seed(0)
    PaperModel(PaperConfig(**TINY_PAPER[name])).save(path)
    (path / "tokenizer.json").write_text(train_tokenizer())
    return path


@pytest.fixture(scope="session")
def paper_artifacts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from edgeseq.export.pipeline import export

    root = tmp_path_factory.mktemp("paper")
    out = {}
    for name in TINY_PAPER:
        export(str(make_paper_dir(name, root / f"{name}-src")), root / name, quiet=True)
        out[name] = root / name
    return out


@pytest.fixture(scope="session")
def hf_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("hf")
    return {f: make_hf_dir(f, root / f) for f in FAMILIES}


@pytest.fixture(scope="session")
def artifacts(hf_dirs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from edgeseq.export.pipeline import export

    root = tmp_path_factory.mktemp("art")
    return {f: (export(str(d), root / f, quiet=True), root / f)[1] for f, d in hf_dirs.items()}


LITERT_MISSING = next((m for m in ("litert_torch", "ai_edge_litert", "ai_edge_quantizer")
                       if importlib.util.find_spec(m) is None), None)
# small static shapes keep TFLite conversion fast: prompts up to 24 tokens in buckets 8 and 24, 40 new tokens
TFLITE_SHAPE = dict(max_input=24, max_output=40, buckets=(8,))


@pytest.fixture(scope="session")
def tflite_artifacts(hf_dirs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    if LITERT_MISSING:
        pytest.skip(f"{LITERT_MISSING} not installed: pip install 'edgeseq[tflite]' -c constraints.txt")
    from edgeseq.export.pipeline import export
    from edgeseq.steps.static import StaticShape

    root = tmp_path_factory.mktemp("tflite")
    for f, d in hf_dirs.items():
        export(str(d), root / f, format="tflite", shape=StaticShape(**TFLITE_SHAPE), quiet=True)  # type: ignore[arg-type]
    return {f: root / f for f in hf_dirs}


@pytest.fixture(scope="session")
def npu_artifacts(hf_dirs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Static ONNX graphs for Qualcomm HTP (--target npu), in TFLITE_SHAPE's small shapes."""
    from edgeseq.export.pipeline import export
    from edgeseq.steps.static import StaticShape

    shape = StaticShape(**TFLITE_SHAPE)  # type: ignore[arg-type]
    root = tmp_path_factory.mktemp("npu")
    out = {}
    for f, d in hf_dirs.items():
        export(str(d), root / f, target="npu", shape=shape, quiet=True)
        out[f] = root / f
    for f in ("llama", "t5"):  # the QDQ recipe the notes found to keep tokens
        export(str(hf_dirs[f]), root / f"{f}-w8a16", target="npu", weights="w8a16", shape=shape, quiet=True)
        out[f"{f}-w8a16"] = root / f"{f}-w8a16"
    return out


@pytest.fixture(params=FAMILIES)
def family(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def cache_walk(b: Any, m: Any) -> list[Any]:
    """Logits of every step of a walk through what the loop does to a cache: a left-padded batch of two
    prompts, beam tiling, composed reorders and rewinds (one right after a reorder that swaps the
    prompts' rows). Engines that hold the cache themselves must give what the handed-over cache gives."""
    import numpy as np

    ids = np.array([[0, 0, 5, 6, 7], [8, 9, 10, 11, 12]], np.int64)
    mask = (np.arange(5) >= np.array([[2], [0]])).astype(np.int64)
    s = b.new_state(2)
    if m.kind != "decoder-only":
        b.encode(s, ids, mask)
        logits = [b.prefill(s, np.zeros((2, 1), np.int64))]
    else:
        logits = [b.prefill(s, ids, mask)]
    logits.append(b.decode(s, np.array([3, 4])))
    b.reorder(s, np.array([0, 0, 1, 1]), cross=True)  # tile to 2 beams each
    logits.append(b.decode(s, np.array([20, 21, 22, 23])))
    b.reorder(s, np.array([1, 1, 3, 2]))
    b.reorder(s, np.array([0, 3, 1, 2]))  # two reorders before a step compose
    logits.append(b.decode(s, np.array([30, 31, 32, 33])))
    b.trim(s, 2)
    logits.append(b.decode(s, np.array([40, 41, 42, 43])))
    b.reorder(s, np.array([1, 2, 3, 0]))  # rows of the two prompts swap places
    b.trim(s, 1)  # a rewind right after a reorder applies the pending rows first
    logits.append(b.decode(s, np.array([50, 51, 52, 53])))
    return logits
