"""Search strategies: greedy, repetition penalty and beam search equal transformers' generate token
for token; diverse beam search equals a brute-force reference; the caller-owned Generator."""
from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import torch

import edgeseq
from edgeseq.errors import InputError, UsageError
from edgeseq.generate.config import GenerationConfig

PROMPTS = ["The quick brown fox", "A lighthouse keeper kept a careful log"]


@pytest.fixture(scope="module")
def hf_models(hf_dirs: dict[str, Path]) -> dict[str, object]:
    from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM

    return {f: (AutoModelForSeq2SeqLM if f == "t5" else AutoModelForCausalLM).from_pretrained(str(d)).eval()
            for f, d in hf_dirs.items()}


def _hf(hf: object, family: str, ids: list[int], **kw: object) -> list[int]:
    with torch.no_grad():
        out = hf.generate(input_ids=torch.tensor([ids]), do_sample=False, pad_token_id=0, **kw)  # type: ignore[attr-defined]
    return out[0, (1 if family == "t5" else len(ids)):].tolist()


def _same(mine: list[int], ref: list[int]) -> bool:
    """transformers pads a finished sequence with pad id 0 up to the batch's longest."""
    return ref[: len(mine)] == mine and all(t == 0 for t in ref[len(mine):])


BEAMS = [dict(num_beams=4), dict(num_beams=3, length_penalty=0.5), dict(num_beams=4, early_stopping=True),
         dict(num_beams=2, early_stopping="never", length_penalty=2.0), dict(num_beams=4, repetition_penalty=1.3),
         dict(num_beams=4, length_penalty=-2.0)]  # the last favours short hypotheses: stop tokens end beams


@pytest.mark.parametrize("kw", BEAMS, ids=lambda k: ",".join(f"{a}={b}" for a, b in k.items()))
def test_beam_search_equals_transformers(kw: dict, artifacts: dict[str, Path], hf_models: dict, family: str) -> None:
    model = edgeseq.load(artifacts[family])
    finished_early = 0  # cases where a stop token ended the best hypothesis before max_new_tokens
    for prompt in PROMPTS:
        ids = model.encode(prompt)
        free = model.generate_ids([ids], GenerationConfig(max_new_tokens=16, stop_token_ids=[], **kw)).ids[0]
        for stop in (None, free[0], free[2]):  # stop tokens that do occur, so hypotheses finish early
            cfg = GenerationConfig(max_new_tokens=16, stop_token_ids=None if stop is None else [stop], **kw)
            mine = model.generate_ids([ids], cfg).ids[0]
            ref = _hf(hf_models[family], family, ids, max_new_tokens=16,
                      **({} if stop is None else {"eos_token_id": stop}), **kw)
            assert _same(mine, ref), (prompt, stop, mine, ref)
            finished_early += len(mine) < 16
    if kw.get("length_penalty", 0) < 0:
        assert finished_early, "no case exercised hypotheses finished by a stop token"


def test_greedy_with_repetition_penalty_equals_transformers(artifacts: dict[str, Path], hf_models: dict,
                                                             family: str) -> None:
    model = edgeseq.load(artifacts[family])
    ids = model.encode(PROMPTS[0])
    mine = model.generate_ids([ids], GenerationConfig(max_new_tokens=20, repetition_penalty=1.5,
                                                      ignore_eos=True)).ids[0]
    ref = _hf(hf_models[family], family, ids, max_new_tokens=20, min_new_tokens=20, repetition_penalty=1.5)
    assert mine == ref


def test_batched_beams_equal_single(artifacts: dict[str, Path]) -> None:
    model = edgeseq.load(artifacts["gpt2"])
    cfg = GenerationConfig(max_new_tokens=10, num_beams=3, num_return_sequences=2)
    both = model.generate(PROMPTS, config=cfg)
    assert both.sequences is not None and all(len(s) == 2 for s in both.sequences)
    for p, seqs in zip(PROMPTS, both.sequences):
        assert model.generate(p, config=cfg).sequences == [seqs]


def _brute_force_diverse(hf: object, ids: list[int], beams: int, groups: int, penalty: float, steps: int) -> list[int]:
    """Diverse beam search written the slow, obvious way: full forward passes without a cache, one
    beam at a time, no stop token (every beam runs `steps` tokens; the best final score wins)."""
    size = beams // groups
    live = [[(0.0 if i == 0 else -1e9, []) for i in range(size)] for _ in range(groups)]
    for _ in range(steps):
        picked: list[int] = []
        for g in range(groups):
            cands = []
            for j, (score, toks) in enumerate(live[g]):
                with torch.no_grad():
                    logits = hf(input_ids=torch.tensor([ids + toks])).logits[0, -1].double()  # type: ignore[operator]
                logp = torch.log_softmax(logits, -1).numpy()
                for t in range(len(logp)):
                    cands.append((score + logp[t] - penalty * picked.count(t), j, t))
            cands.sort(key=lambda c: -c[0])
            live[g] = [(s, live[g][j][1] + [t]) for s, j, t in cands[:size]]
            picked += [t for _, j, t in cands[:size]]
    return max((b for grp in live for b in grp), key=lambda b: b[0])[1]


@pytest.mark.parametrize("groups, penalty", [(2, 0.0), (2, 1.5), (3, 0.7)])
def test_diverse_beam_search_equals_brute_force(groups: int, penalty: float, artifacts: dict[str, Path],
                                               hf_models: dict) -> None:
    model = edgeseq.load(artifacts["llama"])
    ids = model.encode(PROMPTS[1])
    beams, steps = 2 * groups, 6
    cfg = GenerationConfig(max_new_tokens=steps, num_beams=beams, num_beam_groups=groups,
                           diversity_penalty=penalty, stop_token_ids=[])
    got = model.generate_ids([ids], cfg)
    assert got.ids[0] == _brute_force_diverse(hf_models["llama"], ids, beams, groups, penalty, steps)


def test_diversity_penalty_changes_groups(artifacts: dict[str, Path]) -> None:
    model = edgeseq.load(artifacts["llama"])
    cfg = dict(max_new_tokens=6, num_beams=4, num_beam_groups=2, num_return_sequences=4, stop_token_ids=[])
    plain = model.generate(PROMPTS[0], **cfg).sequences[0]
    diverse = model.generate(PROMPTS[0], diversity_penalty=5.0, **cfg).sequences[0]
    first = lambda seqs: {s[0] for s in seqs}  # noqa: E731
    assert len(first(diverse)) >= len(first(plain)) and len(first(diverse)) >= 2


def test_generator_matches_generate_and_rewinds(artifacts: dict[str, Path], family: str) -> None:
    model = edgeseq.load(artifacts[family])
    cfg = GenerationConfig(max_new_tokens=10, ignore_eos=True)
    expect = model.generate(PROMPTS[0], config=cfg).ids[0]
    gen = model.generator(PROMPTS[0], config=cfg)
    got = []
    while not gen.done:
        got.append(gen.next_token())
    assert got == expect and gen.tokens == expect
    with pytest.raises(InputError, match="generator is done"):
        gen.next_token()
    gen.rewind(4)  # back to 6 tokens: the next 4 must come out the same again
    assert gen.tokens == expect[:6] and not gen.done
    again = [gen.next_token() for _ in range(4)]
    assert again == expect[6:]


def test_generator_append_tokens(artifacts: dict[str, Path]) -> None:
    """Appending ids continues from them exactly as if they had been in the prompt."""
    model = edgeseq.load(artifacts["llama"])
    cfg = GenerationConfig(max_new_tokens=5, ignore_eos=True)
    a, b = model.encode("one two three"), model.tokenizer.encode(" four five", add_special_tokens=False).ids
    gen = model.generator(a, config=cfg)
    gen.next_token()
    gen.rewind(1)
    gen.append_tokens(b)
    got = [gen.next_token() for _ in range(5)]
    assert got == model.generate_ids([a + b], cfg).ids[0]
    with pytest.raises(InputError, match="cannot rewind"):
        gen.rewind(1000)


def test_threads_share_one_model(artifacts: dict[str, Path], family: str) -> None:
    model = edgeseq.load(artifacts[family])
    prompts = [f"prompt number {i} about the sea" for i in range(6)]
    cfg = GenerationConfig(max_new_tokens=12, ignore_eos=True)
    alone = [model.generate(p, config=cfg).ids[0] for p in prompts]
    beams = [model.generate(p, config=GenerationConfig(max_new_tokens=8, num_beams=3)).ids[0] for p in prompts[:2]]
    results: dict[int, list[int]] = {}

    def work(i: int) -> None:
        if i < 6:
            results[i] = model.generate(prompts[i], config=cfg).ids[0]
        else:
            results[i] = model.generate(prompts[i - 6], config=GenerationConfig(max_new_tokens=8, num_beams=3)).ids[0]

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [results[i] for i in range(6)] == alone and [results[6], results[7]] == beams


@pytest.mark.parametrize("kw, message", [
    (dict(num_beams=4, num_beam_groups=3), "divisible by num_beam_groups"),
    (dict(num_beams=2, diversity_penalty=0.5), "needs num_beam_groups > 1"),
    (dict(do_sample=True, temperature=-1.0), "temperature must be > 0"),
    (dict(do_sample=True, top_p=0.0), "top_p must be in (0, 1]"),
    (dict(num_beams=2, do_sample=True), "beam search with sampling"),
    (dict(num_beams=2, num_return_sequences=3), "num_return_sequences (3) > num_beams (2)"),
    (dict(repetition_penalty=0.0), "repetition_penalty must be > 0"),
    (dict(early_stopping="sometimes"), "early_stopping must be"),
    (dict(num_beams=0), "num_beams must be an integer >= 1"),
])
def test_invalid_configs(kw: dict, message: str) -> None:
    with pytest.raises(UsageError) as e:
        GenerationConfig(**kw).validate()
    assert message in e.value.message and e.value.hint


def test_batch_with_an_empty_prompt(artifacts: dict[str, Path]) -> None:
    with pytest.raises(InputError, match="empty prompt"):
        edgeseq.load(artifacts["gpt2"]).generate(["fine", ""], max_new_tokens=2)


def test_repetition_penalty_math() -> None:
    from edgeseq.generate.search import penalize_repeats

    s = np.array([[2.0, -2.0, 1.0]], np.float32)
    out = penalize_repeats(s, np.array([[0, 1, 0]]), 2.0)
    assert out.tolist() == [[1.0, -4.0, 1.0]]
