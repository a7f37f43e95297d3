"""Ring KV caches (steps/attention.py KVWrite.cache): in static graphs a sliding-window layer whose
window is shorter than the cache keeps only window rows. Tiny Mistral (every layer sliding) and
Gemma 3 (sliding and full layers), window 8, against transformers with the prompt and the generated
tokens well past the window."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import edgeseq
from edgeseq.errors import InputError
from edgeseq.generate.config import GenerationConfig

from conftest import LITERT_MISSING, TFLITE_SHAPE
from family_checks import DECODERS, GEMMA3, hf_generate, hf_model, same, save_tiny

PROMPT = "The quick brown fox jumps over the lazy dog again and again"  # 21 tokens with the test tokenizer
NEW = 30
CONFIGS = {"mistral": DECODERS["mistral"], "gemma": GEMMA3}
CASES = [pytest.param("mistral", "tflite", marks=pytest.mark.skipif(LITERT_MISSING is not None,
                                                                    reason=f"{LITERT_MISSING} not installed")),
         pytest.param("gemma", "tflite", marks=pytest.mark.skipif(LITERT_MISSING is not None,
                                                                  reason=f"{LITERT_MISSING} not installed")),
         ("mistral", "npu"), ("gemma", "npu")]


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("ring")
    return {name: save_tiny(cfg, root / name) for name, cfg in CONFIGS.items()}


def _export(src: Path, out: Path, fmt: str, **shape_kw: Any) -> edgeseq.Model:
    from edgeseq.export.pipeline import export
    from edgeseq.steps.static import StaticShape

    kw: dict[str, Any] = dict(format="onnx", target="npu") if fmt == "npu" else dict(format="tflite")
    m = export(str(src), out, quiet=True, shape=StaticShape(**TFLITE_SHAPE, **shape_kw), **kw)  # type: ignore[arg-type]
    assert m.parity["status"] == "passed", m.parity
    return edgeseq.load(out)


@pytest.mark.parametrize("family,fmt", CASES)
def test_ring_caches_match_transformers(sources: dict[str, Path], tmp_path: Path, family: str, fmt: str) -> None:
    model = _export(sources[family], tmp_path / fmt, fmt)
    static, window = model.manifest.static, CONFIGS[family]["sliding_window"]
    assert static is not None
    c_len = static["cache_length"]
    windows = ([window] * 2 if family == "mistral"
               else [window if t == "sliding_attention" else None for t in GEMMA3["layer_types"]])
    want = {f"past.{i}.{kv}": w for i, w in enumerate(windows) if w for kv in ("key", "value")}
    assert static["ring"] == want
    shapes = {d["name"]: d["shape"] for d in model.manifest.components["decoder"].inputs}
    lengths = {n: shapes[n][2] for n in model.manifest.components["decoder"].cache_inputs}
    assert lengths == {n: want.get(n, c_len) for n in lengths}
    assert set(lengths.values()) == ({window} if family == "mistral" else {window, c_len})

    hf = hf_model(sources[family])
    ids = model.encode(PROMPT)
    assert len(ids) > 2 * window and len(ids) + NEW > 4 * window
    pad = int(model.manifest.generation["pad_token_id"])
    greedy: list[int] = []
    for kw in (dict(num_beams=1), dict(num_beams=3)):
        cfg = GenerationConfig(max_new_tokens=NEW, ignore_eos=True, **kw)
        mine = model.generate_ids([ids], cfg).ids[0]
        ref = hf_generate(hf, model, ids, max_new_tokens=NEW, min_new_tokens=NEW, **kw)
        assert len(mine) == NEW and same(mine, ref, pad), (fmt, kw, mine, ref)
        greedy = greedy or mine

    # a ring forgets what it overwrote: rewinding one token is exact, more is refused and changes nothing
    gen = model.generator(ids, config=GenerationConfig(max_new_tokens=NEW, ignore_eos=True))
    assert [gen.next_token() for _ in range(12)] == greedy[:12]
    gen.rewind(1)
    assert gen.next_token() == greedy[11]
    with pytest.raises(InputError, match="ring caches"):
        gen.rewind(5)
    assert gen.next_token() == greedy[12]


def test_ring_off_keeps_full_caches(sources: dict[str, Path], tmp_path: Path) -> None:
    model = _export(sources["mistral"], tmp_path / "npu", "npu", ring=False)
    static = model.manifest.static
    assert static is not None and "ring" not in static
    shapes = [d["shape"][2] for d in model.manifest.components["decoder"].inputs if d["name"].startswith("past.")]
    assert shapes == [static["cache_length"]] * 4
    gen = model.generator(model.encode(PROMPT), config=GenerationConfig(max_new_tokens=NEW, ignore_eos=True))
    first = [gen.next_token() for _ in range(12)]
    gen.rewind(5)
    assert [gen.next_token() for _ in range(5)] == first[7:]
