"""Generation over the runtime: batching with padding, sampling options, streaming, no torch."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import edgeseq
from edgeseq.generate.config import GenerationConfig
from edgeseq.generate.search import select


def test_batched_rows_equal_single_rows(artifacts: dict[str, Path], family: str) -> None:
    model = edgeseq.load(artifacts[family])
    prompts = ["The quick brown fox", "A lighthouse keeper kept a careful log of every ship"]
    cfg = GenerationConfig(max_new_tokens=12, ignore_eos=True)
    batched = model.generate(prompts, config=cfg).ids
    single = [model.generate(p, config=cfg).ids[0] for p in prompts]
    assert batched == single


def test_rows_stop_on_their_own(artifacts: dict[str, Path]) -> None:
    model = edgeseq.load(artifacts["llama"])
    free = model.generate(["one two", "three"], max_new_tokens=8).ids
    stop = free[0][2]  # make row 0's third token a stop token
    out = model.generate(["one two", "three"], config=GenerationConfig(max_new_tokens=8, stop_token_ids=[stop])).ids
    assert out[0] == free[0][:3]
    row1 = free[1][: free[1].index(stop) + 1] if stop in free[1] else free[1]
    assert out[1] == row1


def test_sampling_seeded_and_filters() -> None:
    rng_logits = np.random.default_rng(1).normal(size=(3, 50)).astype(np.float32)
    greedy = select(rng_logits, GenerationConfig(), np.random.default_rng(0))
    assert greedy.tolist() == rng_logits.argmax(-1).tolist()
    k1 = select(rng_logits, GenerationConfig(do_sample=True, top_k=1), np.random.default_rng(0))
    assert k1.tolist() == greedy.tolist()
    p_tiny = select(rng_logits, GenerationConfig(do_sample=True, top_p=1e-6), np.random.default_rng(0))
    assert p_tiny.tolist() == greedy.tolist()
    a = [select(rng_logits, GenerationConfig(do_sample=True, temperature=2.0), np.random.default_rng(7)).tolist()
         for _ in range(2)]
    assert a[0] == a[1]
    # top_k=5: every draw among the 5 largest logits
    top5 = np.argsort(-rng_logits, axis=-1)[:, :5]
    rng = np.random.default_rng(3)
    for _ in range(50):
        t = select(rng_logits, GenerationConfig(do_sample=True, top_k=5), rng)
        assert all(t[i] in top5[i] for i in range(3))


def test_greedy_with_banned_ids_equals_masking_them() -> None:
    """Forced lengths ban the stop ids: greedy then takes each row's first maximum among the other ids,
    whether or not a row's maximum is banned, ties included (the fast path skips the masked copy)."""
    logits = np.array([[1.0, 5.0, 5.0, 0.0],   # tie: banned 1 first, 2 later -> 2
                       [9.0, 1.0, 2.0, 3.0],   # maximum 0 not banned -> 0
                       [0.0, 7.0, 1.0, 7.0]],  # banned 1 ties with 3 -> 3
                      np.float32)
    got = select(logits, GenerationConfig(), np.random.default_rng(0), banned=[1])
    assert got.tolist() == [2, 0, 3]
    rng = np.random.default_rng(4)
    for _ in range(200):
        x = rng.integers(0, 4, size=(3, 9)).astype(np.float32)  # small integers: many ties
        banned = rng.choice(9, size=int(rng.integers(1, 4)), replace=False).tolist()
        masked = x.copy()
        masked[:, banned] = -np.inf
        assert select(x, GenerationConfig(), rng, banned=banned).tolist() == masked.argmax(-1).tolist()
        assert not np.isinf(x).any()  # the caller's logits untouched


def test_sampled_generation_reproducible(artifacts: dict[str, Path]) -> None:
    model = edgeseq.load(artifacts["gpt2"])
    runs = [model.generate("hello there", do_sample=True, temperature=0.8, top_p=0.9, seed=5, max_new_tokens=10).ids
            for _ in range(2)]
    assert runs[0] == runs[1]


def test_stream_pieces_join_to_text(artifacts: dict[str, Path], family: str) -> None:
    model = edgeseq.load(artifacts[family])
    cfg = GenerationConfig(max_new_tokens=16)
    pieces = list(model.stream("The quick brown fox", config=cfg))
    assert "".join(pieces) == model.generate("The quick brown fox", config=cfg).texts[0]
    assert all("\ufffd" not in p for p in pieces)


def test_stream_never_splits_multibyte(artifacts: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """Byte-level tokens of an emoji arrive one by one; the stream shows it only when complete."""
    model = edgeseq.load(artifacts["llama"])
    emoji_ids = model.tokenizer.encode("é🙂", add_special_tokens=False).ids
    assert len(emoji_ids) >= 3  # several byte tokens
    from edgeseq import api

    def fake_steps(backend, rows, cfg, gen, timings, **kw):
        for t in emoji_ids:
            yield np.array([t])

    monkeypatch.setattr(api, "steps", fake_steps)
    pieces = list(model.stream("x", max_new_tokens=len(emoji_ids)))
    assert "".join(pieces) == "é🙂" and all("\ufffd" not in p for p in pieces)


def test_timings_follow_the_clock(artifacts: dict[str, Path]) -> None:
    g = edgeseq.load(artifacts["t5"]).generate("one two three", config=GenerationConfig(max_new_tokens=6,
                                                                                         ignore_eos=True))
    t = g.timings
    assert len(t.token_ms) == 6 and t.token_ms == sorted(t.token_ms)
    assert 0 < t.encode_ms <= t.prefill_ms <= t.ttft_ms <= t.e2e_ms
    gaps = np.diff(t.token_ms)
    assert t.tpot_ms == pytest.approx(float(np.median(gaps)))
    assert t.decode_tok_s == pytest.approx(5 / ((t.token_ms[-1] - t.token_ms[0]) / 1e3))


def test_runtime_imports_no_torch(artifacts: dict[str, Path]) -> None:
    code = ("import sys, edgeseq; m = edgeseq.load(sys.argv[1]); m.generate('hi there', max_new_tokens=4); "
            "bad = [k for k in ('torch', 'transformers', 'onnx') if k in sys.modules]; "
            "sys.exit(f'imported {bad}' if bad else 0)")
    r = subprocess.run([sys.executable, "-c", code, str(artifacts["llama"])], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_chat_template_rendered(artifacts: dict[str, Path]) -> None:
    model = edgeseq.load(artifacts["llama"])
    model.gen_defaults = dict(model.gen_defaults, chat_template=(
        "{% for m in messages %}<s>{{ m['role'] }}: {{ m['content'] }}</s>{% endfor %}"
        "{% if add_generation_prompt %}<s>assistant:{% endif %}"))
    ids = model.encode("hello", chat=True)
    assert model.tokenizer.decode(ids, skip_special_tokens=False).replace(" ", "").startswith("<s>user:hello</s>")


def test_trailing_partial_character_is_the_same_in_stream_and_generate(artifacts: dict[str, Path],
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Generation that ends inside a multi-byte character: both give U+FFFD for it (as decode() does)."""
    model = edgeseq.load(artifacts["llama"])
    cut = model.tokenizer.encode("é🙂", add_special_tokens=False).ids[:-1]  # the emoji's last byte never comes
    from edgeseq import api

    def fake_steps(backend, rows, cfg, gen, timings, **kw):
        for t in cut:
            yield np.array([t])

    monkeypatch.setattr(api, "steps", fake_steps)
    streamed = "".join(model.stream("x", max_new_tokens=len(cut)))
    assert streamed == model.decode(cut) and streamed.startswith("é") and streamed.endswith("\ufffd")


def test_stop_text_holds_back_what_could_become_a_stop() -> None:
    from edgeseq.generate.text import StopText

    s = StopText(["###"])
    assert [s.push(p) for p in ("a#", "#", "#b")] == ["a", "", ""] and s.hit  # the stop and what follows: dropped
    s = StopText(["###", "\n\n"])
    assert [s.push(p) for p in ("a#", "#x", "\n")] == ["a", "##x", ""] and s.flush() == "\n" and not s.hit


def _multi_token_stop(model: edgeseq.Model, ids: list[int], start: int) -> str:
    """A stop string that spans two tokens of a generation: the text of tokens at, at+1 (from `start`),
    where each of the two adds some text."""
    for at in range(start, len(ids) - 2):
        before, mid, after = (model.decode(ids[:n]) for n in (at, at + 1, at + 2))
        if len(before) < len(mid) < len(after) and after.startswith(mid) and mid.startswith(before) \
                and after[len(before):].strip():
            return after[len(before):]
    raise AssertionError("no two text-bearing tokens in a row")


def test_stop_strings(artifacts: dict[str, Path]) -> None:
    """A stop string spanning two tokens ends the row, is not returned, and streaming never shows it;
    in a batch each row stops on its own; beams cut each sequence."""
    model = edgeseq.load(artifacts["llama"])
    prompts = ["The quick brown fox", "A lighthouse keeper kept a careful log"]
    cfg = dict(max_new_tokens=16, ignore_eos=True)
    free = model.generate(prompts, **cfg)
    stop = _multi_token_stop(model, free.ids[0], 0)
    want = [t[: t.find(stop)] if stop in t else t for t in free.texts]
    out = model.generate(prompts, stop=[stop], **cfg)
    assert out.texts == want and stop not in out.texts[0]
    assert out.ids[0] == free.ids[0][: len(out.ids[0])] and len(out.ids[0]) < len(free.ids[0])
    # the ids end on the token that completed the stop string
    assert stop in model.decode(out.ids[0]) and stop not in model.decode(out.ids[0][:-1])
    if stop not in free.texts[1]:
        assert out.ids[1] == free.ids[1]  # the other row runs on
    pieces = list(model.stream(prompts[0], stop=[stop], **cfg))
    assert "".join(pieces) == want[0]
    shown = ""
    for p in pieces:  # nothing shown was ever the start of the stop string at the end of what was shown
        shown += p
        held = any(stop.startswith(shown[-k:]) for k in range(1, min(len(shown), len(stop)) + 1))
        assert not held or shown == want[0]
    beams = model.generate(prompts[0], num_beams=2, max_new_tokens=16)
    bstop = _multi_token_stop(model, beams.ids[0], 0)
    cut = model.generate(prompts[0], num_beams=2, max_new_tokens=16, stop=[bstop])
    assert cut.texts[0] == beams.texts[0][: beams.texts[0].find(bstop)]
    assert all(bstop not in model.decode(s[:-1]) for s in cut.sequences[0])


def test_stop_option_errors(artifacts: dict[str, Path]) -> None:
    from edgeseq.errors import UsageError

    model = edgeseq.load(artifacts["llama"])
    for bad in ([""], [3], "", [None]):
        with pytest.raises(UsageError, match="stop must be"):
            model.generate("hi", stop=bad)
    with pytest.raises(UsageError, match="stop strings apply to text"):
        model.generator("hi", stop=["x"])
