"""`edgeseq compare` end to end on tiny models: the report, resuming, failed points recorded while
the rest go on, the warnings of the issue's bad inputs, and the shipped suites."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import make_hf_dir
from edgeseq.cli import main
from edgeseq.compare import Suite, load_suite, suite_names
from edgeseq.compare.report import params_text

FAST = ["--output-len", "4", "--reps", "1", "--warmup", "0", "--no-bandwidth"]


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def _lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()]


def test_compare_writes_the_report_and_resumes(paper_artifacts: dict[str, Path], tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    arts = [str(paper_artifacts["paper-encdec"]), str(paper_artifacts["paper-deconly"])]
    out = tmp_path / "r"
    code, stdout, _ = run_cli(capsys, "compare", *arts, "--input-lens", "8,32", "--out", str(out), *FAST)
    assert code == 0 and "TTFT" in stdout and "decode" in stdout
    doc = json.loads((out / "results.json").read_text())
    assert doc["ratio_mode"] == "encoder-decoder vs decoder-only"
    assert len(doc["warnings"]) == 1 and "sizes differ by" in doc["warnings"][0]  # the only warning: see below
    assert [(r["input_len"], r["status"]) for r in doc["points"]] == [(8, "ok"), (32, "ok")] * 2
    r = doc["ratios"][0]
    assert r["ttft_lower"] == pytest.approx(1 - r["ttft_a_ms"] / r["ttft_b_ms"], abs=1e-3)
    assert all(p["flops"]["first_token"] > 0 for p in doc["points"])
    # the tiny encoder-decoder has more layers than the tiny decoder-only: each ratio says so, with both sizes
    assert r["params_a"] > r["params_b"] > 0 and r["size_gap"] > 0.1
    enc, dec = (params_text(doc["models"][a]["params"]) for a in arts)
    said = f"{r['a']} ({enc} params) vs {r['b']} ({dec} params)"
    assert stdout.count(said) == 2 and stdout.count("not a like-for-like comparison") == 2
    index = (out / "index.md").read_text()
    assert "## Headline ratios (encoder-decoder vs decoder-only)" in index and "| onnx | fp32 | 32 |" in index
    assert index.count("not a like-for-like comparison |") == 2 and f"| {enc} |" in index
    assert index.count("host: ") == 1 and index.count("command: `edgeseq") == 1  # the header, once
    for png in ("ttft_vs_input.png", "decode_tok_s.png", "memory_vs_input.png", "memory_size.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(_lines(out / "results.jsonl")) == 4
    # again with one more length: only the two new points are measured
    code, _, _ = run_cli(capsys, "compare", *arts, "--input-lens", "8,32,16", "--out", str(out), *FAST)
    assert code == 0
    added = _lines(out / "results.jsonl")[4:]
    assert sorted(p["input_len"] for p in added) == [16, 16]
    assert len(json.loads((out / "results.json").read_text())["points"]) == 6


def test_a_failed_point_is_recorded_and_the_rest_go_on(paper_artifacts: dict[str, Path], tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    # 300 input tokens exceed the tiny encoder-decoder's 256 positions; the missing preset cannot be exported
    out = tmp_path / "r"
    code, _, err = run_cli(capsys, "compare", str(paper_artifacts["paper-encdec"]), "preset:no-such-model",
                           "--input-lens", "8,300", "--out", str(out), "--no-plots", *FAST)
    assert code == 1
    rows = {(Path(p["source"]).name, p["input_len"]): p for p in json.loads((out / "results.json").read_text())["points"]}
    assert rows[("paper-encdec", 8)]["status"] == "ok"
    assert rows[("paper-encdec", 300)]["status"] == "failed" and "maximum of 256" in rows[("paper-encdec", 300)]["error"]
    assert rows[("preset:no-such-model", 8)]["status"] == "failed"
    assert "unknown preset" in rows[("preset:no-such-model", 8)]["error"]
    assert "failed: preset:no-such-model" in err
    index = (out / "index.md").read_text()
    assert "## Points that did not finish" in index and not (out / "ttft_vs_input.png").exists()
    # failed points are tried again by the next run; finished ones are not
    run_cli(capsys, "compare", str(paper_artifacts["paper-encdec"]), "preset:no-such-model",
            "--input-lens", "8,300", "--out", str(out), "--no-plots", *FAST)
    again = _lines(out / "results.jsonl")[4:]
    assert sorted((Path(p["source"]).name, p["input_len"]) for p in again) == \
        [("paper-encdec", 300), ("preset:no-such-model", 8), ("preset:no-such-model", 300)]


def test_same_kind_and_other_tokenizers_are_said(artifacts: dict[str, Path], tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    from edgeseq.export.pipeline import export
    from edgeseq.models.tokenizer import train_tokenizer

    src = make_hf_dir("llama", tmp_path / "src")
    (src / "tokenizer.json").write_text(train_tokenizer(vocab_size=600))
    export(str(src), tmp_path / "other-tok", quiet=True, parity_steps=0)
    out = tmp_path / "r"
    code, out_text, err = run_cli(capsys, "compare", str(artifacts["llama"]), str(tmp_path / "other-tok"),
                                  "--input-lens", "8", "--out", str(out), "--no-plots", *FAST)
    assert code == 0
    doc = json.loads((out / "results.json").read_text())
    assert doc["ratio_mode"] == "vs the first model" and len(doc["ratios"]) == 1
    assert any("all models are decoder-only" in w for w in doc["warnings"])
    assert any("different tokenizers" in w for w in doc["warnings"])
    assert "warning: all models are decoder-only" in err
    # one architecture, one size: the ratio is labelled matched, with no size warning
    assert doc["ratios"][0]["size_gap"] == 0.0 and "sizes matched" in out_text
    assert "like-for-like" not in out_text + err + (out / "index.md").read_text()


def test_size_labels() -> None:
    from edgeseq.compare.report import size_gap, size_text

    assert size_gap(100, 110) == 0.1 and "matched" in size_text(size_gap(100, 110))
    assert size_text(size_gap(135_490_560, 134_515_008)) == "sizes matched (within 1%)"
    assert size_text(size_gap(250, 100)) == "sizes differ by 150%: not a like-for-like comparison"
    assert size_gap(None, 5) is None and size_text(None) == "sizes unknown"
    assert params_text(134_515_008) == "134.5M" and params_text(237_120) == "237.1K"


@pytest.mark.parametrize("args, says", [
    (["compare", "preset:t5-small"], "at least two models"),
    (["compare", "a", "b", "--formats", "tflight"], "unknown format 'tflight'"),
    (["compare", "a", "b", "--weights", "int8"], "no format among ['onnx'] writes weights ['int8']"),
    (["compare", "a", "b", "--input-lens", "0"], "input lengths must be positive"),
    (["compare", "a", "b", "--output-len", "1"], "output_len must be an integer >= 2"),
    (["compare", "--suite", "nope"], "no suite 'nope'"),
    (["compare", "a", "b", "--on", "ssh://root@127.0.0.1:1", "--ray"], "--on and --ray are two ways"),
])
def test_bad_compare_input_is_one_clear_line(args: list[str], says: str, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(capsys, *args, "--out", str(tmp_path / "r"))
    assert code == 2 and says in err and "Traceback" not in err
    assert not (tmp_path / "r").exists()  # refused before anything was written


def test_suite_files_are_checked(tmp_path: Path) -> None:
    from edgeseq.errors import UsageError

    bad = tmp_path / "bad.yaml"
    bad.write_text("models: [a, b]\nrepz: 3\n")
    with pytest.raises(UsageError, match="unknown field"):
        load_suite(str(bad))
    bad.write_text("models: [a, b\n")
    with pytest.raises(UsageError, match="not valid YAML"):
        load_suite(str(bad))
    bad.write_text("models: [a, b]\nreps: 0\n")
    with pytest.raises(UsageError, match="reps must be"):
        load_suite(str(bad)).validate()


def test_shipped_suites() -> None:
    assert {"quick", "paper"} <= set(suite_names())
    quick, paper = load_suite("quick").validate(), load_suite("paper").validate()
    assert quick.models == ["smollm2-135m-instruct", "preset:paper-encdec-135m"]
    assert paper.models == ["preset:paper-encdec-330m", "preset:paper-deconly-330m"]
    assert ("openvino", "int8") in paper.pairs() and ("onnx", "int8") not in paper.pairs()
    assert Suite(models=["a", "b"]).validate().input_lens == [128, 512]
    # the repository's profiles/ is the package's folder, so an installed edgeseq ships the same files
    root = Path(__file__).resolve().parent.parent / "profiles"
    assert sorted(p.name for p in root.glob("*.yaml")) == sorted(f"{n}.yaml" for n in suite_names())


def test_a_suite_on_a_device_takes_its_per_device_fields(tmp_path: Path) -> None:
    from edgeseq.errors import UsageError

    paper = load_suite("paper")
    gpu = paper.on("gpu:cuda").validate()
    assert (gpu.device, gpu.engine, gpu.precision, gpu.threads) == ("gpu:cuda", "torch-compile", "bf16", None)
    assert gpu.input_lens == [512, 1024, 2048, 4096, 8192] and gpu.models == paper.models
    cpu = paper.on("cpu")
    assert (cpu.engine, cpu.input_lens) == (None, [128, 512, 1024, 2048])
    bad = tmp_path / "bad.yaml"
    bad.write_text("models: [a, b]\nper_device: {gpu: {models: [c, d]}}\n")
    with pytest.raises(UsageError, match="per_device cannot set models"):
        load_suite(str(bad)).on("gpu")
    bad.write_text("models: [a, b]\nper_device: {gpu: 3}\n")
    with pytest.raises(UsageError, match="per_device must map a device class to fields"):
        load_suite(str(bad)).on("gpu")


def test_a_sweep_on_a_pytorch_engine_writes_source_only_artifacts(hf_dirs: dict[str, Path], tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "r"
    code, _, err = run_cli(capsys, "compare", str(hf_dirs["llama"]), str(hf_dirs["t5"]), "--engine", "torch-compile",
                           "--engine-option", "compile=0", "--input-lens", "8", *FAST, "--out", str(out), "--no-plots")
    assert code == 0, err
    arts = sorted(p.name for p in (out / "artifacts").iterdir())
    assert len(arts) == 2 and all(a.endswith("-source") for a in arts)
    assert {p.name for p in (out / "artifacts" / arts[0]).iterdir()} == {"edgeseq.json", "tokenizer.json"}
    rows = json.loads((out / "results.json").read_text())["points"]
    assert [(r["format"], r["engine"], r["status"]) for r in rows] == [("source", "torch-compile", "ok")] * 2
    assert "parity not passed" not in err  # the PyTorch engines run the source, not graphs a parity check covers


def test_ctrl_c_keeps_finished_points_and_the_next_run_finishes(paper_artifacts: dict[str, Path], tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    from edgeseq.compare import sweep

    real = sweep.iter_profile

    def stops_after_one(*a: object, **k: object):  # Ctrl-C while the second length is being measured
        gen = real(*a, **k)
        yield next(gen)
        raise KeyboardInterrupt

    monkeypatch.setattr(sweep, "iter_profile", stops_after_one)
    arts = [str(paper_artifacts["paper-encdec"]), str(paper_artifacts["paper-deconly"])]
    out = tmp_path / "r"
    code, _, err = run_cli(capsys, "compare", *arts, "--input-lens", "8,16", "--out", str(out), "--no-plots", *FAST)
    assert code == 130 and "run the same command to resume" in err
    doc = json.loads((out / "results.json").read_text())
    assert doc["complete"] is False and [p["input_len"] for p in doc["points"]] == [8]
    monkeypatch.setattr(sweep, "iter_profile", real)
    code, _, _ = run_cli(capsys, "compare", *arts, "--input-lens", "8,16", "--out", str(out), "--no-plots", *FAST)
    assert code == 0 and len(_lines(out / "results.jsonl")) == 4
    assert json.loads((out / "results.json").read_text())["complete"] is True


def test_rows_of_different_hosts_are_grouped_and_never_set_against_each_other(
        paper_artifacts: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Rows recorded by cluster nodes (`compare --ray`) carry their host's facts; two kinds of host give
    two tables and ratios within each kind only."""
    from edgeseq.compare import report, sweep
    from edgeseq.profile.result import RunHeader

    arts = [str(paper_artifacts["paper-encdec"]), str(paper_artifacts["paper-deconly"])]
    out = tmp_path / "r"
    assert run_cli(capsys, "compare", *arts, "--input-lens", "8,32", "--out", str(out), "--no-plots", *FAST)[0] == 0
    suite = Suite(models=arts, input_lens=[8, 32], output_len=4, reps=1, warmup=0).validate()
    rows = sweep.rows_for(suite, sweep.open_store(out))
    for r in rows:  # the 8-token points on one kind of host, the 32-token points on another
        cpu = "CPU A" if r.input_len == 8 else "CPU B"
        r.extra["host"] = {"cpu": cpu, "cores": 4, "hostname": f"box-{cpu[-1]}", "node_id": f"{cpu[-1]}" * 8,
                           "bandwidth_gb_s": 10.0}
    (tmp_path / "grouped").mkdir()
    done = report.write(suite, rows, tmp_path / "grouped", RunHeader.here(), plots=False)
    index = (tmp_path / "grouped" / "index.md").read_text()
    assert "### CPU A, 4 cores" in index and "### CPU B, 4 cores" in index and "grouped by kind of host" in index
    tables = index[index.index("## Measurements"):]
    assert tables.index("### CPU A") < tables.index("| encoder-decoder | 8 |") < tables.index("### CPU B") \
        < tables.index("| encoder-decoder | 32 |")
    assert [(r["input_len"], r["host"]) for r in done.sections["ratios"]] == [(8, "CPU A, 4 cores"),
                                                                            (32, "CPU B, 4 cores")]
    assert done.sections["hosts"]["CPU A, 4 cores"]["nodes"] == ["box-A (AAAAAAAA)"]
    assert report.summary_lines(done)[0].endswith("on CPU A, 4 cores")
    # rows of one process (no host facts): one table, as before
    plain = (out / "index.md").read_text()
    assert "###" not in plain and "Ray node" not in plain
