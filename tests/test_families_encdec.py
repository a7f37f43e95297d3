"""BART, mBART, Marian and mT5 from tiny random Hugging Face models: export, parity gate, and greedy
and beam output equal to transformers' generate on the same weights (tests/family_checks.py).

The tiny configs keep transformers' generation neutral where the public configs are not:
forced_eos_token_id (BART's and Marian's configs force EOS at the length limit, which edgeseq
does not do) is None. mBART sets forced_bos_token_id (as mBART-50 does) in generation_config.json,
where transformers 5 keeps it, so both sides force it."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import LITERT_MISSING
from family_checks import ENCODER_DECODERS, check_family, save_tiny

TINY = ENCODER_DECODERS
FORCED_BOS = 5


def tiny(name: str, path: Path) -> Path:
    src = save_tiny(TINY[name], path)
    if name == "mbart":
        gen_file = src / "generation_config.json"
        gen_file.write_text(json.dumps({**json.loads(gen_file.read_text()), "forced_bos_token_id": FORCED_BOS}))
    return src


@pytest.mark.parametrize("name,family", [("bart", "bart"), ("mbart", "bart"), ("marian", "marian"), ("mt5", "t5")])
def test_onnx_matches_transformers(tmp_path: Path, name: str, family: str) -> None:
    model = check_family(tiny(name, tmp_path / "src"), tmp_path / "out", family)
    gen = model.manifest.generation
    assert gen["forced_bos_token_id"] == (FORCED_BOS if name == "mbart" else None)
    assert gen["decoder_start_token_id"] == TINY[name]["decoder_start_token_id"]


def test_forced_bos_counts_but_is_not_returned(tmp_path: Path) -> None:
    """max_new_tokens counts the forced token (as transformers does); the Generator agrees with generate."""
    import edgeseq
    from edgeseq.export.pipeline import export
    from edgeseq.generate.config import GenerationConfig

    export(str(tiny("mbart", tmp_path / "src")), tmp_path / "out", quiet=True)
    model = edgeseq.load(tmp_path / "out")
    ids = model.encode("The quick brown fox")
    cfg = GenerationConfig(max_new_tokens=6, ignore_eos=True)
    got = model.generate_ids([ids], cfg).ids[0]
    assert len(got) == 5  # the forced token, then five chosen ones
    gen = model.generator(ids, config=cfg)
    assert gen.sequence[:2] == [TINY["mbart"]["decoder_start_token_id"], FORCED_BOS]
    stepped = []
    while not gen.done:
        stepped.append(gen.next_token())
    assert stepped == got


def test_bart_openvino(tmp_path: Path) -> None:
    check_family(tiny("bart", tmp_path / "src"), tmp_path / "out", "bart", fmt="openvino")


@pytest.mark.skipif(LITERT_MISSING is not None, reason=f"{LITERT_MISSING} not installed: pip install 'edgeseq[tflite]'")
def test_marian_tflite(tmp_path: Path) -> None:
    from edgeseq.steps.static import StaticShape

    check_family(tiny("marian", tmp_path / "src"), tmp_path / "out", "marian", fmt="tflite",
                 shape=StaticShape(max_input=32, max_output=40, buckets=(8,)))  # the longer prompt: 29 ids


def _set_generation(src: Path, **fields: object) -> None:
    gen_file = src / "generation_config.json"
    gen_file.write_text(json.dumps({**json.loads(gen_file.read_text()), **fields}))


def test_forced_eos_and_suppressed_tokens_match_transformers(tmp_path: Path) -> None:
    """BART's forced_eos_token_id ends a run that reaches max_new_tokens; Marian's bad_words_ids (its
    pad) are never generated: greedy, beam and the Generator as transformers' generate."""
    import edgeseq
    from edgeseq.generate.config import GenerationConfig

    bart = tiny("bart", tmp_path / "bart-src")
    _set_generation(bart, forced_eos_token_id=2)
    model = check_family(bart, tmp_path / "bart", "bart")
    assert model.manifest.generation["forced_eos_token_id"] == 2
    ids = model.encode("The quick brown fox")
    cfg = GenerationConfig(max_new_tokens=7, stop_token_ids=[])  # no stop token: every run reaches the limit
    assert model.generate_ids([ids], cfg).ids[0][-1] == 2
    assert model.generate_ids([ids], GenerationConfig(max_new_tokens=7, num_beams=3, stop_token_ids=[])).ids[0][-1] == 2
    gen = model.generator(ids, config=cfg)
    while not gen.done:
        last = gen.next_token()
    assert last == 2

    marian = tiny("marian", tmp_path / "marian-src")
    edgeseq.export_model(str(marian), tmp_path / "free", quiet=True)
    free = edgeseq.load(tmp_path / "free").generate_ids([ids], GenerationConfig(max_new_tokens=12)).ids[0]
    ban = free[1]  # a token the model does choose
    _set_generation(marian, bad_words_ids=[[ban]])
    model = check_family(marian, tmp_path / "marian", "marian")
    assert model.manifest.generation["suppress_token_ids"] == [ban]
    for kw in ({}, {"num_beams": 3}):
        assert ban not in model.generate_ids([ids], GenerationConfig(max_new_tokens=12, **kw)).ids[0]
