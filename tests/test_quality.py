"""`edgeseq eval` and the quality figures export writes for quantized artifacts (edgeseq/quality/)."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from edgeseq.artifact import manifest as mf
from edgeseq.cli import main
from edgeseq.errors import UsageError
from edgeseq.quality import EvalConfig, evaluate
from edgeseq.quality.metrics import Tally, first_divergence
from edgeseq.quality.texts import chats, paragraphs

SMALL = dict(tokens=96, prompts=2, steps=12)


def test_the_figures_match_their_definitions_on_a_small_case() -> None:
    ref = np.log(np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]]))
    got = np.log(np.array([[0.5, 0.4, 0.1], [0.1, 0.1, 0.8]]))
    t = Tally()
    t.add(got, ref, np.array([0, 2]))
    s = t.summary()
    kl0 = 0.7 * math.log(0.7 / 0.5) + 0.2 * math.log(0.2 / 0.4)  # KL(ref || got) of the first position; 0 at the second
    assert s["kl_mean"] == pytest.approx(kl0 / 2, abs=1e-6) and s["kl_p99"] == pytest.approx(kl0 * 0.99, abs=1e-3)
    assert s["perplexity"] == pytest.approx(math.exp(-(math.log(0.5) + math.log(0.8)) / 2), rel=1e-4)
    assert s["reference_perplexity"] == pytest.approx(math.exp(-(math.log(0.7) + math.log(0.8)) / 2), rel=1e-4)
    assert s["top1_agreement"] == 1.0 and s["tokens"] == 2
    t.add(np.log(np.array([[0.1, 0.8, 0.1]])), np.log(np.array([[0.8, 0.1, 0.1]])), np.array([1]))
    assert t.summary()["top1_agreement"] == pytest.approx(2 / 3, abs=1e-4)
    assert first_divergence([1, 2, 3], [1, 2, 4]) == 2 and first_divergence([1, 2], [1, 2, 3]) is None


def test_the_texts_ship_with_the_package() -> None:
    assert len(paragraphs()) >= 15 and sum(len(p.split()) for p in paragraphs()) > 1500
    assert len(chats()) >= 10 and all(c["user"] and c["assistant"] for c in chats())


@pytest.mark.parametrize("family", ["llama", "t5"])
def test_an_fp32_artifact_follows_its_source(artifacts: dict[str, Path], family: str) -> None:
    r = evaluate(artifacts[family], EvalConfig(**SMALL))
    assert r["tokens"] > 40 and r["reference"] == "source" and r["weights"] == "fp32"
    assert r["kl_mean"] < 1e-4 and r["top1_agreement"] >= 0.98
    assert r["perplexity"] == pytest.approx(r["reference_perplexity"], rel=1e-3)
    assert r["greedy"]["prompts"] == 2 and r["greedy"]["token_agreement"] == 1.0


def test_an_artifact_against_itself_is_exactly_equal(artifacts: dict[str, Path]) -> None:
    r = evaluate(artifacts["llama"], EvalConfig(reference=str(artifacts["llama"]), **SMALL))
    assert r["kl_mean"] == 0.0 and r["top1_agreement"] == 1.0 and r["perplexity"] == r["reference_perplexity"]
    assert r["greedy"]["first_divergence"] == [None, None] and r["greedy"]["forced_agreement"] == 1.0


def test_a_reference_that_reads_other_ids_is_refused(artifacts: dict[str, Path], tmp_path: Path) -> None:
    import shutil

    other = tmp_path / "other-tokenizer"
    shutil.copytree(artifacts["gpt2"], other)
    doc = json.loads((other / mf.TOKENIZER).read_text())
    doc["added_tokens"] = doc.get("added_tokens", []) + [{"id": 999, "content": "<other>", "single_word": False,
                                                          "lstrip": False, "rstrip": False, "normalized": False,
                                                          "special": True}]
    (other / mf.TOKENIZER).write_text(json.dumps(doc))
    m = mf.read(other, check_files=False)
    m.files[mf.TOKENIZER] = mf.file_record(other / mf.TOKENIZER)
    m.write(other)
    with pytest.raises(UsageError, match="another tokenizer"):
        evaluate(artifacts["llama"], EvalConfig(reference=str(other), **SMALL))
    with pytest.raises(UsageError, match="is encoder-decoder"):
        evaluate(artifacts["llama"], EvalConfig(reference=str(artifacts["t5"]), **SMALL))
    with pytest.raises(UsageError, match="--steps"):
        EvalConfig(steps=0).validate()


def test_a_static_artifact_is_scored_one_token_at_a_time(tflite_artifacts: dict[str, Path]) -> None:
    r = evaluate(tflite_artifacts["llama"], EvalConfig(**SMALL))
    assert r["engine"] == "litert" and r["tokens"] > 40
    assert r["kl_mean"] < 1e-3 and r["top1_agreement"] >= 0.95


def test_a_quantized_export_records_its_quality_and_profile_shows_it(hf_dirs: dict[str, Path], tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    from edgeseq.export.pipeline import export

    m = export(str(hf_dirs["llama"]), tmp_path / "int4", weights="int4", quiet=True, quality_tokens=64)
    q = m.quality
    assert q is not None and q["tokens"] == 64 and 0 < q["kl_mean"] < 1 and 0 < q["top1_agreement"] <= 1
    assert mf.read(tmp_path / "int4").quality == q  # in the manifest on disk, covered by its hashes
    # the same artifact, scored by `edgeseq eval`, gives the same figures on the same tokens
    r = evaluate(tmp_path / "int4", EvalConfig(tokens=64, prompts=q["greedy"]["prompts"], steps=q["greedy"]["steps"]))
    assert r["kl_mean"] == pytest.approx(q["kl_mean"], rel=1e-3) and r["top1_agreement"] == q["top1_agreement"]
    code = main(["profile", str(tmp_path / "int4"), "--input-len", "8", "--output-len", "4", "--reps", "1",
                 "--no-bandwidth", "--json", str(tmp_path / "p.json")])
    assert code == 0
    row = json.loads((tmp_path / "p.json").read_text())["results"][0]
    assert row["quality"]["kl_mean"] == q["kl_mean"] and row["quality"]["top1_agreement"] == q["top1_agreement"]
    assert "top-1" in capsys.readouterr().out
    fp32 = export(str(hf_dirs["llama"]), tmp_path / "fp32", quiet=True)
    assert fp32.quality is None  # fp32 is the reference's precision: nothing to score


def test_eval_cli_prints_the_table_and_writes_json(artifacts: dict[str, Path], tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["eval", str(artifacts["gpt2"]), "--tokens", "48", "--prompts", "1", "--steps", "8",
                 "--json", str(tmp_path / "e.json")])
    out = capsys.readouterr().out
    assert code == 0 and "KL mean" in out and "greedy: 1 prompts x 8 tokens" in out
    doc = json.loads((tmp_path / "e.json").read_text())
    assert doc["tokens"] == 48 and doc["sets"]["prose"]["tokens"] == 48
    code = main(["eval", str(artifacts["gpt2"]), "--sets", "poetry"])
    assert code == UsageError.exit_code and "unknown text set" in capsys.readouterr().err


@pytest.mark.parametrize("family", ["llama", "t5"])
def test_a_divergence_margin_is_the_references_log_probability_gap(artifacts: dict[str, Path], family: str) -> None:
    """At a first difference the report gives the reference's log p(its token) - log p(the other's)."""
    from edgeseq import api
    from edgeseq.generate.config import GenerationConfig
    from edgeseq.generate.loop import run
    from edgeseq.generate.search import log_softmax
    from edgeseq.quality.evaluate import _forced, _margin

    ref = api.load(artifacts[family])
    ids = [5, 9, 17, 4, 30]
    want = run(ref.backend, [ids], GenerationConfig(max_new_tokens=6, ignore_eos=True).validate(), ref.gen_defaults)[0][0]
    logits = []  # the reference's logits before each of its first tokens, step by step
    state = ref.backend.new_state(1)
    if ref.kind == "encoder-decoder":
        src = np.array([ids], np.int64)
        ref.backend.encode(state, src, np.ones_like(src))
        logits.append(ref.backend.prefill(state, np.array([[int(ref.gen_defaults["decoder_start_token_id"])]])))
    else:
        logits.append(ref.backend.prefill(state, np.array([ids], np.int64)))
    for t in want[:3]:
        logits.append(ref.backend.decode(state, np.array([t], np.int64)))
    at = 3
    other = int(np.argsort(np.asarray(logits[at])[-1])[-2])  # the reference's second choice there
    got = want[:at] + [other] + want[at + 1:]
    logp = log_softmax(np.asarray(logits[at])[-1:], np.float64)[0]
    assert int(np.argmax(np.asarray(logits[at])[-1])) == want[at]  # the steps read back its greedy run
    m = _margin(ref.backend, ids, want, got, at)
    assert m == pytest.approx(float(logp[want[at]] - logp[other]), abs=1e-3) and m >= 0
    # fed its own greedy tokens the model chooses each of them again; a wrong last token costs one step
    cfg = GenerationConfig(max_new_tokens=len(want), ignore_eos=True).validate()
    assert _forced(ref, ids, want, cfg) == len(want)
    wrong = want[:-1] + [(want[-1] + 1) % int(ref.backend.manifest.dims["vocab_size"])]
    assert _forced(ref, ids, wrong, cfg) == len(want) - 1
