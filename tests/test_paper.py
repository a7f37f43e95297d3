"""The paper family ("Return of the Encoder"): the presets' parameter counts, the parity gate for
both kinds (and that it fails on a wrong encoder position), batched generation, and the arithmetic
recorded for `compare` (weights multiplied per graph, FLOPs)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import TINY_PAPER, make_paper_dir
from edgeseq.artifact import manifest as mf
from edgeseq.models.paper import PaperConfig, PaperModel, centred_positions
from edgeseq.models.presets import preset_config
from edgeseq.profile.cost import flops


def _count(name: str) -> int:
    with torch.device("meta"):  # shapes only: no 1.3 GB of weights
        model = PaperModel(preset_config(name))
    return sum(p.numel() for p in model.parameters())  # the tied head is the embedding: counted once


def test_presets_match_the_paper() -> None:
    enc_dec, dec_only = _count("paper-encdec-330m"), _count("paper-deconly-330m")
    assert enc_dec == 332_042_240  # the count the paper's repository states
    assert dec_only == 329_793_792 and abs(dec_only / enc_dec - 1) < 0.05
    c = preset_config("paper-encdec-330m")
    assert (c.num_encoder_layers, c.num_layers, c.hidden_size, c.num_heads, c.num_kv_heads, c.head_dim,
            c.intermediate_size, c.vocab_size) == (20, 10, 1024, 6, 3, 64, 4096, 32128)


def test_centred_positions_follow_the_real_length() -> None:
    right = centred_positions(torch.tensor([[1, 1, 1, 1, 0], [1, 1, 1, 1, 1]]))
    assert right[0, :4].tolist() == [-1, 0, 1, 2] and right[1].tolist() == [-2, -1, 0, 1, 2]
    left = centred_positions(torch.tensor([[0, 0, 1, 1, 1]]))
    assert left[0, 2:].tolist() == [-1, 0, 1]


def test_the_reference_ignores_export_time_graph_forms() -> None:
    """The reference's norms are its own: the float16-safe form NPU exports trace does not reach it."""
    from edgeseq.steps.attention import scaled_norms

    torch.manual_seed(0)
    model = PaperModel(PaperConfig(**TINY_PAPER["paper-deconly"])).eval()
    x = torch.tensor([[3, 5, 9, 11]])
    with torch.no_grad():
        plain = model(x).logits
        with scaled_norms():
            assert torch.equal(model(x).logits, plain)


@pytest.mark.parametrize("name", list(TINY_PAPER))
def test_parity_passes_for_both_kinds(paper_artifacts: dict[str, Path], name: str) -> None:
    m = mf.read(paper_artifacts[name])
    assert m.model["family"] == "paper" and m.kind == ("encoder-decoder" if "encdec" in name else "decoder-only")
    assert m.parity["status"] == "passed" and m.parity["steps"] == 32 and m.parity["tokens_agree"]
    assert m.parity["max_abs_diff"] < 1e-4
    assert m.parity["reference"].startswith("edgeseq PaperModel")  # not transformers: this family is ours
    assert m.dims["num_kv_heads"] == 2 and m.dims["num_heads"] == 4


def test_parity_fails_when_the_encoder_positions_are_wrong(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The gate can fail: an export whose encoder spaces positions two apart is caught. (Positions
    counted from 0 instead of centred would pass, rightly: rotary attention depends only on position
    differences, so a shift that is the same for a whole row cancels.)"""
    from edgeseq.export import pipeline
    from edgeseq.models.families import paper as steps

    monkeypatch.setattr(steps, "centred_positions", lambda mask: 2 * (torch.cumsum(mask, 1) - 1))
    src = make_paper_dir("paper-encdec", tmp_path / "src")
    m = pipeline.export(str(src), tmp_path / "bad", quiet=True, keep_failed=True)
    assert m.parity["status"] == "failed" and m.parity["max_abs_diff"] > m.parity["tolerance"]


def test_batched_prompts_of_different_lengths_match_single_runs(paper_artifacts: dict[str, Path]) -> None:
    from edgeseq import load
    from edgeseq.generate.config import GenerationConfig

    cfg = GenerationConfig(max_new_tokens=6, ignore_eos=True)
    rows = [[5, 9, 44, 17, 8, 90, 31], [12, 7, 3]]
    for name in TINY_PAPER:
        model = load(paper_artifacts[name])
        together = model.generate_ids(rows, cfg).ids
        alone = [model.generate_ids([r], cfg).ids[0] for r in rows]
        assert together == alone, name


def test_reference_greedy_equals_the_artifact(paper_artifacts: dict[str, Path], tmp_path: Path) -> None:
    """Greedy decoding by full forward passes of the reference model (no cache) gives the artifact's tokens."""
    from edgeseq import load
    from edgeseq.generate.config import GenerationConfig

    from edgeseq.models.paper import load as load_dir

    ref = load_dir(make_paper_dir("paper-encdec", tmp_path / "src"))
    prompt = [5, 9, 44, 17, 8, 90, 31]
    dec = [0]
    with torch.no_grad():
        for _ in range(8):
            logits = ref(torch.tensor([prompt]), decoder_input_ids=torch.tensor([dec])).logits[0, -1]
            dec.append(int(logits.argmax()))
    got = load(paper_artifacts["paper-encdec"]).generate_ids([prompt], GenerationConfig(max_new_tokens=8,
                                                                                       ignore_eos=True)).ids[0]
    assert got == dec[1:]


def _layer_weights(c: dict) -> tuple[int, int]:
    h, q, kv, ff = c["hidden_size"], c["num_heads"] * c["head_dim"], c["num_kv_heads"] * c["head_dim"], \
        c["intermediate_size"]
    attn = h * q + 2 * h * kv + q * h
    return attn, 2 * h * ff


def test_matmul_weights_count_what_each_graph_multiplies(paper_artifacts: dict[str, Path],
                                                         artifacts: dict[str, Path]) -> None:
    c = TINY_PAPER["paper-encdec"]
    attn, mlp = _layer_weights(c)
    head = c["vocab_size"] * c["hidden_size"]
    cross_kv = 2 * c["hidden_size"] * c["num_kv_heads"] * c["head_dim"]
    comps = mf.read(paper_artifacts["paper-encdec"]).components
    assert comps["encoder"].matmul_weights == c["num_encoder_layers"] * (attn + mlp)
    assert comps["decoder_init"].matmul_weights == c["num_layers"] * cross_kv
    # the step calls self-attention, the cross-attention's q and o, the MLP and the head; not cross k/v
    assert comps["decoder_step"].matmul_weights == c["num_layers"] * (2 * attn + mlp - cross_kv) + head
    t5 = mf.read(artifacts["t5"]).components
    assert t5["decoder_step"].matmul_weights + t5["decoder_init"].matmul_weights > t5["encoder"].matmul_weights


def test_flops_grow_as_the_architecture_says(paper_artifacts: dict[str, Path]) -> None:
    enc = mf.read(paper_artifacts["paper-encdec"])
    dec = mf.read(paper_artifacts["paper-deconly"])
    c = TINY_PAPER["paper-deconly"]
    attn, mlp = _layer_weights(c)
    body, head = c["num_layers"] * (attn + mlp), c["vocab_size"] * c["hidden_size"]
    per_pair = 4 * c["num_heads"] * c["head_dim"] * c["num_layers"]
    f = flops(dec, 10, 4)
    assert f is not None and f["first_token"] == 2 * body * 10 + 2 * head + per_pair * 10 * 11 / 2
    assert f["per_token"] == 2 * body + 2 * head + per_pair * (10 + 2)
    # decoder-only: the prompt's work grows with every layer; encoder-decoder: the decode step does not
    # grow with the prompt except through cross-attention
    g1, g2 = flops(enc, 10, 4), flops(enc, 100, 4)
    assert g1 and g2 and g2["per_token"] - g1["per_token"] == pytest.approx(
        4 * 4 * 16 * TINY_PAPER["paper-encdec"]["num_layers"] * 90)
    old = mf.read(paper_artifacts["paper-encdec"])
    for comp in old.components.values():
        comp.matmul_weights = 0
    assert flops(old, 10, 4) is None  # an artifact from before the count was recorded


def test_paper_dir_round_trip(tmp_path: Path) -> None:
    from edgeseq.models import resolve

    src = make_paper_dir("paper-deconly", tmp_path / "src")
    spec = resolve(str(src))
    assert spec.family == "paper" and spec.kind == "decoder-only" and spec.source_kind == "hf-dir"
    assert spec.generation.add_bos and spec.generation.bos_token_id == 3
    torch.manual_seed(0)  # make_paper_dir's seed: the same weights, built again
    built = PaperModel(PaperConfig(**json.loads((src / "config.json").read_text())))
    x = torch.tensor([[3, 5, 9, 11]])
    with torch.no_grad():
        assert np.array_equal(built(x).logits.numpy(), spec.model(x).logits.numpy())
    assert spec.model.lm_head.weight is spec.model.embed.weight  # still tied after loading
