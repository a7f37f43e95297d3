"""Export -> parity -> artifact, for every family; greedy output equal to transformers' generate."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import edgeseq
from edgeseq.artifact import manifest as mf
from edgeseq.errors import ParityError


def test_manifest_describes_artifact(artifacts: dict[str, Path], family: str) -> None:
    d = artifacts[family]
    data = json.loads((d / "edgeseq.json").read_text())
    assert data["schema_version"] == mf.SCHEMA_VERSION
    assert data["format"] == "onnx" and data["dtype"] == "float32"
    expect = ["decoder"] if family != "t5" else ["encoder", "decoder_init", "decoder_step"]
    assert list(data["components"]) == expect
    step = data["components"][expect[-1]]
    layers = 2
    assert [n for n in step["cache_outputs"]] == [f"present.{i}.{kv}" for i in range(layers) for kv in ("key", "value")]
    assert step["weight_bytes"] > 0
    names = [i["name"] for i in step["inputs"]]
    assert names[:2] == ["input_ids", "attention_mask"] and "past.0.key" in names
    assert data["parity"]["status"] == "passed" and data["parity"]["steps"] == 32
    assert len(data["parity"]["per_step_max_abs_diff"]) == 32
    assert data["parity"]["max_abs_diff"] <= data["parity"]["tolerance"]
    assert data["model"]["source_hash"].startswith("sha256:") and data["model"]["family"] == family
    assert {"torch", "transformers", "onnxruntime"} <= set(data["tools"])
    for name, rec in data["files"].items():  # every file is recorded with its real size
        assert (d / name).stat().st_size == rec["bytes"]
    assert "tokenizer.json" in data["files"]
    assert not list(d.parent.glob(".*partial*")), "temporary export directory left behind"


def _hf_greedy(hf_dir: Path, family: str, ids: list[int], n: int) -> list[int]:
    from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM

    cls = AutoModelForSeq2SeqLM if family == "t5" else AutoModelForCausalLM
    model = cls.from_pretrained(str(hf_dir)).eval()
    with torch.no_grad():
        out = model.generate(input_ids=torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                             max_new_tokens=n, min_new_tokens=n, do_sample=False, num_beams=1)
    return out[0, (0 if family == "t5" else len(ids)):].tolist()[-n:]


def test_greedy_equals_transformers_generate(artifacts: dict[str, Path], hf_dirs: dict[str, Path], family: str) -> None:
    model = edgeseq.load(artifacts[family])
    ids = model.encode("The quick brown fox jumps over the lazy dog")
    n = 24
    got = model.generate_ids([ids], edgeseq.GenerationConfig(max_new_tokens=n, ignore_eos=True)).ids[0]
    assert got == _hf_greedy(hf_dirs[family], family, ids, n)


def test_parity_gate_fails_on_wrong_graph(hf_dirs: dict[str, Path], tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from edgeseq.export.pipeline import export
    from edgeseq.models.families.llama import LlamaStep

    real = LlamaStep.forward

    def skewed(self, *a):  # a graph whose logits drift 5% from the model's
        out = real(self, *a)
        return (out[0] * 1.05, *out[1:])

    monkeypatch.setattr(LlamaStep, "forward", skewed)
    out = tmp_path / "bad"
    with pytest.raises(ParityError, match="parity check failed"):
        export(str(hf_dirs["llama"]), out, quiet=True)
    assert not out.exists() and not list(tmp_path.glob(".*"))
    m = export(str(hf_dirs["llama"]), out, quiet=True, keep_failed=True)
    assert m.parity["status"] == "failed"
    assert mf.read(out).parity["status"] == "failed"


def test_interrupted_export_leaves_nothing(hf_dirs: dict[str, Path], tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from edgeseq.export import parity, pipeline

    def interrupt(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(parity, "check", interrupt)
    with pytest.raises(KeyboardInterrupt):
        pipeline.export(str(hf_dirs["gpt2"]), tmp_path / "x", quiet=True)
    assert list(tmp_path.iterdir()) == []


def test_overwrite_replaces_only_after_success(artifacts: dict[str, Path], hf_dirs: dict[str, Path],
                                               tmp_path: Path) -> None:
    from edgeseq.export.pipeline import export

    out = tmp_path / "a"
    out.mkdir()
    (out / "keep.txt").write_text("old")
    export(str(hf_dirs["gpt2"]), out, overwrite=True, quiet=True, parity_steps=0)
    assert not (out / "keep.txt").exists()
    m = mf.read(out)
    assert m.parity["status"] == "skipped"


@pytest.mark.parametrize("family", ["llama", "gpt2"])  # decoder-only: the prompt goes through the cache
def test_prefill_in_chunks_equals_one_prefill(artifacts: dict[str, Path], family: str) -> None:
    """The cache carries state: prompt fed in two chunks gives the logits of one pass."""
    model = edgeseq.load(artifacts[family])
    b = model.backend
    ids = np.array([model.encode("a b c d e f g h i j")])
    s1 = b.new_state(1)
    whole = b.prefill(s1, ids)
    s2 = b.new_state(1)
    b.prefill(s2, ids[:, :4])
    parts = b.prefill(s2, ids[:, 4:])
    np.testing.assert_allclose(whole, parts, atol=1e-4)
    assert s2.length == ids.shape[1]  # (engines that hold the cache themselves keep State.caches empty)


def test_t5_v11_variant_gated_untied(tmp_path: Path) -> None:
    """Flan-T5 / T5 v1.1 shape: gated-GELU MLP and no decoder-output scaling."""
    from conftest import make_hf_dir

    from edgeseq.export.pipeline import export

    d = make_hf_dir("t5", tmp_path / "hf", feed_forward_proj="gated-gelu", tie_word_embeddings=False)
    m = export(str(d), tmp_path / "art", quiet=True)
    assert m.parity["status"] == "passed" and m.parity["tokens_agree"]


def test_parity_gate_passes_a_model_whose_answer_ends_within_the_window(tmp_path: Path) -> None:
    """The gate masks EOS so that its run has every step; the reference's choice is taken with EOS
    masked too. A correct export of a model whose greedy answer ends early (its reference picks EOS
    inside the window) passes, and the manifest records where the reference would have stopped."""
    from family_checks import save_tiny
    from tokenizers import Tokenizer

    from family_checks import TINY
    from edgeseq.accuracy import prompt_ids
    from edgeseq.export.pipeline import export

    src = save_tiny(dict(TINY["llama"], tie_word_embeddings=False, num_attention_heads=2, num_key_value_heads=1),
                    tmp_path / "src")  # untied head, head_dim 32
    from transformers import AutoModelForCausalLM

    hf = AutoModelForCausalLM.from_pretrained(str(src)).eval()
    gen = {"add_bos": True, "bos_token_id": 3}
    ids = prompt_ids(Tokenizer.from_file(str(src / "tokenizer.json")).to_str(), "decoder-only", gen, 1024)
    with torch.no_grad():
        greedy = hf.generate(torch.tensor([ids]), max_new_tokens=6, do_sample=False, eos_token_id=None,
                             pad_token_id=0)[0, len(ids):].tolist()
    eos = next(t for t in greedy[2:] if t not in greedy[:2])  # an answer that ends at its third token or later
    cfg = json.loads((src / "config.json").read_text())
    (src / "config.json").write_text(json.dumps({**cfg, "eos_token_id": eos}))
    m = export(str(src), tmp_path / "art", quiet=True, parity_steps=8)
    assert m.parity["status"] == "passed", m.parity
    assert m.parity["reference_banned_steps"], m.parity  # the reference alone would have chosen EOS there
    assert m.parity["max_abs_diff"] <= m.parity["tolerance"]
