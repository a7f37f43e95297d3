"""The profiler's protocol and reports (figures themselves are a benchmark's job, not a test's)."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from edgeseq.profile.report import add_ratios, markdown, table, text
from edgeseq.profile.result import ProfileResult, RunHeader, RunReport
from edgeseq.profile.runner import ProfileConfig, napkin, profile_artifact
from edgeseq.profile.store import ResultStore
from edgeseq.profile.stats import summarize
from edgeseq.artifact import manifest as mf


def test_summarize_matches_numpy() -> None:
    xs = [5.0, 1.0, 3.0, 9.0, 7.0, 2.0]
    s = summarize(xs)
    assert s["median"] == np.median(xs) and s["p90"] == pytest.approx(np.percentile(xs, 90))
    assert s["p99"] == pytest.approx(np.percentile(xs, 99)) and s["mean"] == pytest.approx(np.mean(xs))
    assert s["std"] == pytest.approx(np.std(xs, ddof=1)) and s["n"] == 6
    assert math.isnan(summarize([])["median"])


def test_profile_sweep_keeps_raw_samples(artifacts: dict[str, Path], family: str) -> None:
    cfg = ProfileConfig(input_lens=[8, 24], output_lens=[5], batch_sizes=[1, 2], warmup=1, reps=3, threads=1)
    ticks = []
    res = profile_artifact(artifacts[family], cfg, tick=lambda: ticks.append(1), bandwidth_gb_s=10.0)
    assert len(res) == 4 and len(ticks) == 4 * (1 + 3)
    assert [(r["input_len"], r["batch"]) for r in res] == [(8, 1), (8, 2), (24, 1), (24, 2)]
    for r in res:
        assert len(r["samples"]["ttft_ms"]) == 3
        assert r["ttft_ms"] == pytest.approx(float(np.median(r["samples"]["ttft_ms"])))
        assert r["stats"]["tpot_ms"]["n"] == 3
        assert r["ttft_ms"] >= r["prefill_ms"] > 0 and r["decode_tok_s"] > 0 and r["tokenize_ms"] > 0
        assert (r["encode_ms"] > 0) == (family == "t5")
        assert r["load_ms"] > 0 and r["first_run_ms"] > 0 and r["peak_rss_mb"] > 0
        assert r["artifact_bytes"] == sum(p.stat().st_size for p in artifacts[family].iterdir())
        assert r["parity"] == "passed" and r["precision"] == "float32"
        # a tiny model's weights fill no mapping worth collapsing; the record says what was done
        assert r["huge_pages"]["mb"] == 0 and r["huge_pages"]["status"] in ("nothing to do", "off")
        assert r["napkin"]["bytes_per_token"] > r["napkin"]["weight_bytes_per_token"] > 0
        assert "share_of_bandwidth" in r["napkin"]


def test_napkin_math_by_hand() -> None:
    m = mf.Manifest(format="onnx", engine="onnxruntime", kind="decoder-only",
                    model={"name": "x", "bytes_read_per_token": 1_000_000},
                    dims={"num_layers": 2, "num_kv_heads": 3, "head_dim": 4}, components={}, generation={})
    n = napkin(m, in_len=10, out_len=4, batch=1, tok_s=100.0, bw=1.0)
    kv = 2 * 2 * 3 * 4 * 4 * (10 + 2)  # K and V x layers x heads x dim x 4 B x mean position
    assert n["kv_bytes_per_token"] == kv and n["bytes_per_token"] == 1_000_000 + kv
    assert n["achieved_gb_s"] == pytest.approx((1_000_000 + kv) * 100 / 1e9, abs=0.01)


def test_report_ratios_and_formats(artifacts: dict[str, Path], tmp_path: Path) -> None:
    cfg = ProfileConfig(input_lens=[8], output_lens=[4], warmup=0, reps=2, threads=1)
    res = profile_artifact(artifacts["llama"], cfg) + profile_artifact(artifacts["gpt2"], cfg)
    add_ratios(res)
    assert res[0]["vs_first"]["ttft_ratio"] == 1.0
    assert res[1]["vs_first"]["decode_tok_s_ratio"] == pytest.approx(
        res[1]["decode_tok_s"] / res[0]["decode_tok_s"], rel=1e-2)
    assert "tok/s vs 1st" in table(res)
    report = RunReport(RunHeader("x", {"cpu": "c", "cores": 2, "python": "3"}, None, cfg.__dict__), res)
    shown = text(report)
    assert "threads 1" in shown and "host: c, 2 cores" in shown and "edgeseq x" in shown
    assert "onnxruntime " in shown.splitlines()[0]  # the engine's package version beside edgeseq's
    md = markdown(report)
    assert md.count("\n| ") == 3  # header + two rows
    assert md.count("host: c, 2 cores") == 1 and md.count("medians of 2 runs") == 1  # the run header, once
    report.write_json(tmp_path / "r.json")
    back = json.loads((tmp_path / "r.json").read_text())
    assert set(back) == {"edgeseq_version", "host", "bandwidth_gb_s", "protocol", "complete", "results"}
    assert back["results"][1]["vs_first"]["decode_tok_s_ratio"] == res[1]["vs_first"]["decode_tok_s_ratio"]


# the keys a profile result has in the JSON reports (benchmark scripts and tests read them): the old ones plus
# engine_options, the engine's typed options in effect
RESULT_KEYS = {"artifact", "model", "label", "kind", "random_weights", "format", "engine", "device", "simulated",
               "node_share", "placement", "precision", "engine_options", "weights", "quantization", "parity", "quality", "threads", "input_len",
               "output_len", "batch", "warmup", "reps", "load_ms", "first_run_ms", "huge_pages", "artifact_bytes",
               "tokenize_ms", "encode_ms", "prefill_ms", "ttft_ms", "tpot_ms", "decode_tok_s", "e2e_ms", "stats",
               "samples", "gen_head", "napkin", "status", "key", "peak_rss_mb", "memory", "rss_before_load_mb", "load_warm_ms"}


def test_result_round_trips_through_json(artifacts: dict[str, Path], tmp_path: Path) -> None:
    cfg = ProfileConfig(input_lens=[8], output_lens=[4], warmup=0, reps=3, threads=1)
    r = profile_artifact(artifacts["llama"], cfg)[0]
    assert isinstance(r, ProfileResult)
    d = r.to_dict()
    assert set(d) == RESULT_KEYS
    assert d["ttft_ms"] == r.ttft_ms == d["stats"]["ttft_ms"]["median"]
    report = RunReport(RunHeader("x", {"cpu": "c", "cores": 2}), [r])
    report.write_json(tmp_path / "r.json")
    loaded = json.loads((tmp_path / "r.json").read_text())
    back = RunReport.from_dict(loaded)
    assert back.results[0] == ProfileResult.from_dict(loaded["results"][0])
    assert back.results[0].samples["ttft_ms"] == r.samples["ttft_ms"]
    again = json.loads(json.dumps(back.to_dict(), default=str).replace("NaN", "null"))
    assert again == loaded  # written, read, written again: the same JSON
    # an old result carries derived keys and a key this version does not know: kept, recomputed
    old = {**loaded["results"][0], "ttft_ms": -1.0, "something_new": 7}
    got = ProfileResult.from_dict(old)
    assert got.ttft_ms == r.ttft_ms and got.to_dict()["something_new"] == 7


def test_a_point_that_never_ran_writes_only_what_it_has() -> None:
    r = ProfileResult(status="failed", input_len=8, output_len=4, format="onnx", weights="fp32",
                      extra={"source": "preset:x", "point": "k", "error": "no such model"})
    assert r.to_dict() == {"status": "failed", "input_len": 8, "output_len": 4, "format": "onnx", "weights": "fp32",
                           "source": "preset:x", "point": "k", "error": "no such model"}
    assert ProfileResult.from_dict(r.to_dict()) == r
    late = ProfileResult(status="timeout", input_len=8, time_limit_s=1.0)  # no samples: NaN medians, null in JSON
    d = json.loads(json.dumps(RunReport(RunHeader("x", {}), [late]).to_dict()["results"][0]).replace("NaN", "null"))
    assert d["ttft_ms"] is None and d["time_limit_s"] == 1.0
    assert math.isnan(ProfileResult.from_dict(d).ttft_ms)


def test_store_resumes_and_reads_old_files(artifacts: dict[str, Path], tmp_path: Path) -> None:
    cfg = ProfileConfig(input_lens=[8, 12], output_lens=[4], warmup=0, reps=1, threads=1)
    res = profile_artifact(artifacts["llama"], cfg)
    header = {"protocol": cfg.__dict__, "artifacts": ["a"]}
    store = ResultStore.resumable(tmp_path / "p.json", header, resume=False)
    store.add(res[0])
    with open(store.path, "a") as f:
        f.write('{"cut short by a ki')  # the line a kill interrupts
    again = ResultStore.resumable(tmp_path / "p.json", header, resume=True)
    assert [r.key for r in again.results] == [res[0].key] and again.results[0] == res[0]
    assert again.finished(str(res[0].key)) and not again.finished(str(res[1].key))
    from edgeseq.errors import UsageError

    with pytest.raises(UsageError, match="other options"):
        ResultStore.resumable(tmp_path / "p.json", {**header, "artifacts": ["b"]}, resume=True)
    with pytest.raises(UsageError, match="nothing to resume"):
        ResultStore.resumable(tmp_path / "q.json", header, resume=True)
    # a file written by the dict-based stores of earlier versions: header line, then plain result dicts
    old = tmp_path / "old.json.partial.jsonl"
    old.write_text(json.dumps({"header": header}) + "\n" + json.dumps(json.loads(json.dumps(
        res[1].to_dict(), default=str).replace("NaN", "null"))) + "\n")
    got = ResultStore.resumable(tmp_path / "old.json", header, resume=True).results
    assert len(got) == 1 and got[0].samples["ttft_ms"] == res[1].samples["ttft_ms"]
    # compare's store: keyed by point, the latest line per point winning
    points = ResultStore(tmp_path / "results.jsonl", key_field="point")
    failed = ProfileResult(status="failed", input_len=8, extra={"point": "p1", "error": "x"})
    points.add(failed)
    res[0].extra["point"] = "p1"
    points.add(res[0])
    reread = ResultStore(tmp_path / "results.jsonl", key_field="point")
    assert reread.finished("p1") and reread.rows["p1"].ttft_ms == res[0].ttft_ms
