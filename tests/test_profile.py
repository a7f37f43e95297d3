"""The profiler's protocol and reports (figures themselves are a benchmark's job, not a test's)."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from edgeseq.profile.report import add_ratios, markdown, table
from edgeseq.profile.runner import ProfileConfig, napkin, profile_artifact
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


def test_report_ratios_and_formats(artifacts: dict[str, Path]) -> None:
    cfg = ProfileConfig(input_lens=[8], output_lens=[4], warmup=0, reps=2, threads=1)
    res = profile_artifact(artifacts["llama"], cfg) + profile_artifact(artifacts["gpt2"], cfg)
    add_ratios(res)
    assert res[0]["vs_first"]["ttft_ratio"] == 1.0
    assert res[1]["vs_first"]["decode_tok_s_ratio"] == pytest.approx(
        res[1]["decode_tok_s"] / res[0]["decode_tok_s"], rel=1e-2)
    text = table(res)
    assert "tok/s vs 1st" in text and "threads 1" in text
    doc = {"edgeseq_version": "x", "host": {"cpu": "c", "cores": 2}, "bandwidth_gb_s": None, "results": res}
    md = markdown(doc)
    assert md.count("\n| ") == 3  # header + two rows
    json.dumps(doc)
