"""Speculative decoding (generate/speculate.py): the output of every row equals its own plain batch-1
output, on every engine and cache form that verifies, at batch sizes 1 to 8, with proposals that are
right for some rows and wrong for others; sampling keeps the target's distribution."""
from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from family_checks import TINY, save_tiny

import edgeseq
from edgeseq.errors import InputError, UsageError
from edgeseq.generate.config import GenerationConfig
from edgeseq.generate.loop import run
from edgeseq.generate.proposers import PromptLookup, Proposals, Proposer
from edgeseq.generate.speculate import AdaptiveK, accept_sampled, run as speculate
from edgeseq.generate.search import distribution

OV = importlib.util.find_spec("openvino") is not None
needs_ov = pytest.mark.skipif(not OV, reason="openvino not installed: pip install 'edgeseq[openvino]'")


class Oracle(Proposer):
    """Proposes each row's known plain greedy continuation, wrong at chosen places: row r's proposal at
    output index i is corrupted where (i + r) % wrong_every == 0, so rows accept different counts."""

    name = "oracle"

    def __init__(self, outputs: list[list[int]], wrong_every: int, vocab: int) -> None:
        self.outputs, self.every, self.vocab = outputs, wrong_every, vocab
        self.made: list[int] = []

    def start(self, rows: list[list[int]], seqs: list[list[int]]) -> None:
        self.base = [len(s) for s in seqs]

    def propose(self, seqs: list[list[int]], want: list[int], cfg: GenerationConfig,
                rng: np.random.Generator) -> Proposals:
        out = []
        for r, (s, n) in enumerate(zip(seqs, want)):
            at = len(s) - self.base[r]
            right = self.outputs[r][at:at + n]
            out.append([t if (at + j + r) % self.every else (t + 1 + r) % self.vocab for j, t in enumerate(right)])
        return out, [None] * len(out)


def _rows(batch: int) -> list[list[int]]:
    rng = np.random.default_rng(batch)
    return [[int(x) for x in rng.integers(5, 900, 4 + 3 * r)] for r in range(batch)]  # ragged: left padding


def _plain(model: edgeseq.Model, rows: list[list[int]], cfg: GenerationConfig) -> list[list[int]]:
    return [run(model.backend, [r], cfg, model.gen_defaults)[0][0] for r in rows]


def _check_equal(model: edgeseq.Model, batch: int, strategy: str = "auto", every: int = 3,
                 tokens: int = 20) -> dict[str, Any]:
    cfg = GenerationConfig(max_new_tokens=tokens, ignore_eos=True).validate()
    rows = _rows(batch)
    want = _plain(model, rows, cfg)
    oracle = Oracle(want, every, int(model.manifest.dims["vocab_size"]))
    got, timings, stats = speculate(model.backend, rows, cfg, model.gen_defaults, oracle, 4, strategy)
    for r in range(batch):
        assert got[r] == want[r], f"row {r} of {batch}: speculative output differs from its batch-1 greedy output"
    s = stats.as_dict()
    assert 0 < s["acceptance_rate"] < 1, s  # the oracle is wrong somewhere and right somewhere
    assert s["target_steps"] < tokens  # accepted proposals saved steps
    assert len(timings.token_ms) >= max(len(w) for w in want)
    return s


@pytest.fixture(scope="module")
def arts(hf_dirs: dict[str, Path], artifacts: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
         ) -> dict[str, Path]:
    """Tiny Llama / GPT-2 / T5: the ONNX artifacts (GroupQueryAttention where the family fuses), a plain
    ONNX graph and OpenVINO IR of Llama and T5, and a second Llama (other weights) to draft with."""
    from edgeseq.export.pipeline import export

    root = tmp_path_factory.mktemp("spec")
    out = {f"{f}-onnx": artifacts[f] for f in ("llama", "gpt2", "t5")}
    export(str(hf_dirs["llama"]), root / "llama-plain", ort_kernels=False, quiet=True)
    out["llama-plain"] = root / "llama-plain"
    if OV:
        for f in ("llama", "t5"):
            export(str(hf_dirs[f]), root / f"{f}-ov", format="openvino", quiet=True)
            out[f"{f}-ov"] = root / f"{f}-ov"
    other = save_tiny(dict(TINY["llama"]), root / "llama-other-src", seed=7)
    export(str(other), root / "llama-other", quiet=True)
    out["llama-other"] = root / "llama-other"
    return out


FORMS = [  # (artifact, engine, engine options, cache form, batches)
    ("llama-onnx", "onnxruntime", {}, "buffers", (1,)),  # GroupQueryAttention: several new tokens at batch 1 only
    ("llama-plain", "onnxruntime", {}, "arrays", (1, 2, 4, 8)),
    ("gpt2-onnx", "onnxruntime", {}, "arrays", (3,)),
    ("t5-onnx", "onnxruntime", {}, "buffers", (1,)),
    ("llama-ov", "openvino", {}, "paged", (1, 2, 4, 8)),
    ("llama-ov", "openvino", {"paged": False}, "state", (3,)),
    ("llama-ov", "openvino", {"stateful": False}, "arrays", (3,)),
    ("t5-ov", "openvino", {}, "state", (3,)),
    ("llama-plain", "torch", {}, "arrays", (3,)),
]


@pytest.mark.parametrize("name,engine,options,form,batches", FORMS,
                         ids=[f"{f[0]}-{f[1]}-{f[3]}" for f in FORMS])
def test_greedy_equals_plain(arts: dict[str, Path], name: str, engine: str, options: dict, form: str,
                             batches: tuple[int, ...]) -> None:
    if name not in arts:
        pytest.skip("openvino not installed: pip install 'edgeseq[openvino]'")
    model = edgeseq.load(arts[name], engine=engine, engine_options=options or None)
    assert model.backend.kv_cache.name == form
    for batch in batches:
        for strategy in (("realign", "refeed") if model.backend.holes and batch > 1 else ("auto",)):
            s = _check_equal(model, batch, strategy)
            auto = "realign" if model.backend.holes else "refeed"
            assert s["strategy"] == (strategy if strategy != "auto" else auto)
            if strategy == "refeed" and batch > 1:
                assert s["refed"] > 0  # rows that accepted more fed their tokens again


def test_stop_token_cuts_rows(arts: dict[str, Path]) -> None:
    """A stop id inside a row's accepted proposals ends that row there, as in the plain loop."""
    model = edgeseq.load(arts["llama-plain"])
    rows = _rows(3)
    free = GenerationConfig(max_new_tokens=16, ignore_eos=True).validate()
    outs = _plain(model, rows, free)
    stop = outs[1][5]
    cfg = GenerationConfig(max_new_tokens=16, stop_token_ids=[stop]).validate()
    want = _plain(model, rows, cfg)
    assert want[1][-1] == stop and len(want[1]) <= 6
    got, _, _ = speculate(model.backend, rows, cfg, model.gen_defaults, Oracle(outs, 4, 1024), 5)
    assert got == want


def test_draft_artifact_and_lookup_api(arts: dict[str, Path]) -> None:
    """Through the API: a draft with other weights (natural partial acceptance) and prompt lookup keep
    greedy output; the result carries the acceptance statistics; stream() gives the same text."""
    model = edgeseq.load(arts["llama-plain"])
    prompts = ["the cat sat on the mat and the cat sat on the", "one two three one two three one"]
    plain = model.generate(prompts, max_new_tokens=24, ignore_eos=True)
    for spec in (str(arts["llama-other"]), "lookup", str(arts["llama-plain"]), "lookup+" + str(arts["llama-other"])):
        got = model.generate(prompts, max_new_tokens=24, ignore_eos=True, speculate=spec, draft_tokens=3)
        assert got.ids == plain.ids, spec
        assert got.speculation is not None and got.speculation["target_steps"] >= 1
    same = model.generate(prompts, max_new_tokens=24, ignore_eos=True, speculate=str(arts["llama-plain"]))
    assert same.speculation["acceptance_rate"] == 1.0  # a draft that is the model itself is always right
    assert same.speculation["target_steps"] < 24 / 2
    text = "".join(model.stream(prompts[0], max_new_tokens=24, ignore_eos=True, speculate="lookup"))
    assert text == plain.texts[0]


def test_draft_for_encoder_decoder(arts: dict[str, Path]) -> None:
    model = edgeseq.load(arts["t5-onnx"])
    plain = model.generate("translate this text please", max_new_tokens=12, ignore_eos=True)
    got = model.generate("translate this text please", max_new_tokens=12, ignore_eos=True,
                         speculate=str(arts["t5-onnx"]), draft_tokens=4)
    assert got.ids == plain.ids and got.speculation["acceptance_rate"] == 1.0


def test_refusals(arts: dict[str, Path]) -> None:
    model = edgeseq.load(arts["llama-onnx"])
    with pytest.raises(UsageError, match="GroupQueryAttention .* batch 1"):
        model.generate(["a b", "c d e"], speculate="lookup")
    with pytest.raises(UsageError, match="beam search"):
        model.generate("a b", speculate="lookup", num_beams=2)
    with pytest.raises(UsageError, match="neither 'lookup' nor an artifact"):
        model.generate("a b", speculate="lokup")
    with pytest.raises(UsageError, match="must be a draft artifact"):
        model.generate("a b", speculate="lookup+lookup")
    with pytest.raises(UsageError, match="draft_tokens"):
        model.generate("a b", speculate="lookup", draft_tokens=0)
    with pytest.raises(InputError, match="does not match"):  # another kind of model
        model.generate("a b", speculate=str(arts["t5-onnx"]))


def test_static_artifact_refused(npu_artifacts: dict[str, Path]) -> None:
    model = edgeseq.load(npu_artifacts["llama"])
    with pytest.raises(InputError, match="cannot check several proposed tokens"):
        model.generate("a b", speculate="lookup")


def test_prompt_lookup_proposes_latest_match() -> None:
    p = PromptLookup(longest=3)
    assert p.lookup([1, 2, 3, 9, 1, 2, 3, 7, 8, 1, 2, 3], 2) == [7, 8]  # the latest earlier "1 2 3"
    assert p.lookup([5, 6, 7, 5, 6], 3) == [7, 5, 6]  # "5 6" matched at the start
    assert p.lookup([1, 2, 3, 4], 3) == []  # no earlier occurrence of "4"
    p.start([[10, 11, 12, 13]], [[0]])  # an encoder-decoder: its input is searched too
    assert p.propose([[0, 11]], [2], GenerationConfig(), np.random.default_rng(0))[0] == [[12, 13]]


def test_adaptive_k() -> None:
    """k follows the measured acceptance and costs: long runs when proposals are kept and cheap, none
    (with a probe every few rounds) when they are rejected or when wider steps cost too much."""
    k = AdaptiveK(6, slope=0.06, probe=3)
    k.update(kept=0, rejected=0, longest=0, width=1, verify_s=0.010, propose_s=0.0)  # a plain step, timed
    for _ in range(10):  # every proposal kept, free proposals: propose the most
        k.update(kept=6, rejected=0, longest=6, width=7, verify_s=0.012, propose_s=0.0)
    assert k.next() == 6
    for _ in range(25):  # the first proposal always rejected: stop proposing
        k.update(kept=0, rejected=1, longest=2, width=3, verify_s=0.011, propose_s=0.0)
    assert [k.next() for _ in range(3)] == [0, 0, 1]  # the third round probes with one proposal
    k = AdaptiveK(6)
    for width, seconds in ((1, 0.010), (2, 0.030), (3, 0.050), (7, 0.080)):  # a batch: steps grow with width
        k.update(kept=4, rejected=1, longest=5, width=width, verify_s=seconds, propose_s=0.0)
    assert k.next() == 0
    k = AdaptiveK(6, probe=3)  # no plain step timed yet: every third round is one
    k.update(kept=6, rejected=0, longest=6, width=7, verify_s=0.012, propose_s=0.0)
    assert [k.next() for _ in range(3)] == [6, 6, 0]


@pytest.mark.parametrize("draft", ["one-hot", "distribution"])
def test_rejection_sampling_keeps_target_distribution(draft: str) -> None:
    """The first token accept_sampled emits is distributed as the target's p, whatever the draft's q."""
    rng = np.random.default_rng(0)
    p = np.array([[0.5, 0.2, 0.2, 0.1, 0.0], [0.1, 0.1, 0.1, 0.1, 0.6]])
    q = np.array([[0.05, 0.05, 0.1, 0.4, 0.4]])
    n, counts = 20000, np.zeros(5)
    for _ in range(n):
        if draft == "one-hot":
            x, dist = 3, None
        else:
            x, dist = int(rng.choice(5, p=q[0])), q
        kept, token = accept_sampled(p, [x], dist, rng)
        counts[x if kept else token] += 1
    tv = 0.5 * float(np.abs(counts / n - p[0]).sum())
    assert tv < 0.015, (counts / n, p[0])
    assert counts[4] == 0  # a token the target gives no mass never comes out


def test_sampling_matches_target_end_to_end(arts: dict[str, Path]) -> None:
    """Two sampled tokens (the second through a verify step): their joint frequencies over many seeded runs
    match the target's exact joint distribution (chi-square), with proposals always offered."""
    model = edgeseq.load(arts["llama-plain"])
    b, gen = model.backend, model.gen_defaults
    cfg = GenerationConfig(max_new_tokens=2, do_sample=True, top_k=3, ignore_eos=True).validate()
    prompt = [5, 17, 230, 9]
    s = b.new_state(1)
    p1 = distribution(b.prefill(s, np.array([prompt])), cfg)[0]
    joint: dict[tuple[int, int], float] = {}
    for t1 in np.flatnonzero(p1):
        p2 = distribution(b.prefill(b.new_state(1), np.array([prompt + [int(t1)]])), cfg)[0]
        for t2 in np.flatnonzero(p2):
            joint[(int(t1), int(t2))] = float(p1[t1] * p2[t2])

    class Always(Proposer):  # proposes the target's most likely second token, or a fixed one
        name = "always"

        def start(self, rows: list[list[int]], seqs: list[list[int]]) -> None:
            pass

        def propose(self, seqs: list[list[int]], want: list[int], cfg: GenerationConfig,
                    rng: np.random.Generator) -> Proposals:
            return [[max((k for k in joint if k[0] == seqs[0][-1]), key=joint.get)[1]][:want[0]]], [None]

    n = 1500
    seen: dict[tuple[int, int], int] = {}
    for seed in range(n):
        c = GenerationConfig(max_new_tokens=2, do_sample=True, top_k=3, ignore_eos=True, seed=seed).validate()
        got, _, _ = speculate(b, [prompt], c, gen, Always(), 1)
        key = (got[0][0], got[0][1])
        assert key in joint, key
        seen[key] = seen.get(key, 0) + 1
    chi2 = sum((seen.get(k, 0) - n * p) ** 2 / (n * p) for k, p in joint.items() if n * p >= 1)
    dof = len(joint) - 1
    assert chi2 < dof + 4 * (2 * dof) ** 0.5, (chi2, dof)  # about the 99.9th percentile for these dof
