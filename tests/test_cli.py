"""The CLI end to end, and every bad input of the foundation issue: one line naming the fix, a
distinct non-zero exit code, no traceback, nothing half-written."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from edgeseq.cli import main


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_export_generate_profile_end_to_end(hf_dirs: dict[str, Path], tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    art = tmp_path / "t5"
    code, _, err = run_cli(capsys, "export", str(hf_dirs["t5"]), "--out", str(art))
    assert code == 0 and "parity passed" in err
    code, out, _ = run_cli(capsys, "generate", str(art), "translate this", "--max-new-tokens", "5")
    assert code == 0 and out.endswith("\n")
    code, out, _ = run_cli(capsys, "generate", str(art), "translate this", "--top-k", "5", "--seed", "1",
                           "--max-new-tokens", "5", "--stats")
    assert code == 0
    j, md = tmp_path / "p.json", tmp_path / "p.md"
    code, out, _ = run_cli(capsys, "profile", str(art), "--input-len", "8,16", "--output-len", "4", "--reps", "2",
                           "--warmup", "0", "--json", str(j), "--markdown", str(md), "--no-bandwidth")
    assert code == 0 and "TTFT ms" in out and out.count("t5 ") >= 2
    doc = json.loads(j.read_text())
    assert [r["input_len"] for r in doc["results"]] == [8, 16]
    assert "| TTFT ms |" in md.read_text().replace("|TTFT ms|", "| TTFT ms |")


def test_devices_lists_table(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "devices")
    assert code == 0 and "onnxruntime   cpu" in out and "npu:qnn" in out


@pytest.mark.parametrize("args, code, message", [
    (["export", "preset:nope", "--out", "{tmp}/x"], 3, "unknown preset 'nope'"),
    (["export", "./no/such/dir", "--out", "{tmp}/x"], 3, "no model at"),
    (["export", "{bert}", "--out", "{tmp}/x"], 4, "unsupported architecture 'bert'"),
    (["export", "{llama}", "--out", "{tmp}", "--parity-steps", "1"], 2, "already exists"),
    (["export", "{llama}", "--out", "{tmp}/x", "--format", "coreml"], 2, "unknown format"),
    (["generate", "{art}", "hello", "--device", "tpu"], 9, "unknown device 'tpu'"),
    (["generate", "{art}", "hello", "--device", "gpu:cuda"], 9, "no gpu:cuda provider"),
    (["generate", "{art}", "hello", "--engine", "nope"], 2, "unknown engine"),
    (["generate", "{art}", "   "], 10, "empty prompt"),
    (["generate", "{art}", "word " * 300], 10, "exceeds the model's maximum of 256 positions"),
    (["generate", "{art}", "hello", "--temperature", "0"], 2, "temperature must be > 0"),
    (["generate", "{art}", "hello", "--top-p", "1.5"], 2, "top_p must be in (0, 1]"),
    (["generate", "{art}", "hello", "--top-k", "-1"], 2, "top_k must be an integer >= 0"),
    (["generate", "{art}", "hello", "--max-new-tokens", "0"], 2, "max_new_tokens must be a positive integer"),
    (["generate", "{tmp}/missing", "hello"], 6, "no artifact directory"),
    (["profile", "{art}", "--output-len", "1"], 2, "output length must be >= 2"),
    (["profile", "{art}", "--reps", "0"], 2, "--reps >= 1"),
])
def test_bad_input_is_one_clear_line(args: list[str], code: int, message: str, hf_dirs: dict[str, Path],
                                     artifacts: dict[str, Path], tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    bert = tmp_path / "bert"
    if "{bert}" in args:
        from transformers import BertConfig

        bert.mkdir()
        BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64).save_pretrained(bert)
    fmt = dict(tmp=str(tmp_path), art=str(artifacts["llama"]), llama=str(hf_dirs["llama"]), bert=str(bert))
    got, out, err = run_cli(capsys, *[a.format(**fmt) for a in args])
    assert got == code, err
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and message in errors[0], err
    assert "Traceback" not in err and "hint: " in err
    assert not list(tmp_path.glob(".*partial*"))


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def test_artifact_missing_file(artifacts: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    art = _copy(artifacts["gpt2"], tmp_path / "a")
    (art / "decoder.onnx").unlink()
    code, _, err = run_cli(capsys, "generate", str(art), "hi")
    assert code == 6 and "missing decoder.onnx" in err


def test_artifact_truncated_file(artifacts: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    art = _copy(artifacts["gpt2"], tmp_path / "a")
    data = (art / "decoder.onnx").read_bytes()
    (art / "decoder.onnx").write_bytes(data[: len(data) // 2])
    code, _, err = run_cli(capsys, "profile", str(art), "--no-bandwidth")
    assert code == 6 and "truncated or replaced" in err


def test_artifact_from_newer_schema(artifacts: dict[str, Path], tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    art = _copy(artifacts["gpt2"], tmp_path / "a")
    data = json.loads((art / "edgeseq.json").read_text())
    data["schema_version"] = 99
    (art / "edgeseq.json").write_text(json.dumps(data))
    code, _, err = run_cli(capsys, "generate", str(art), "hi")
    assert code == 6 and "schema version 99" in err and "upgrade edgeseq" in err


def test_artifact_manifest_missing_key(artifacts: dict[str, Path], tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    art = _copy(artifacts["gpt2"], tmp_path / "a")
    data = json.loads((art / "edgeseq.json").read_text())
    del data["components"]
    (art / "edgeseq.json").write_text(json.dumps(data))
    code, _, err = run_cli(capsys, "generate", str(art), "hi")
    assert code == 6 and "malformed field" in err


def test_failed_parity_artifact_warns(hf_dirs: dict[str, Path], artifacts: dict[str, Path], tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    art = _copy(artifacts["gpt2"], tmp_path / "a")
    data = json.loads((art / "edgeseq.json").read_text())
    data["parity"]["status"] = "failed"
    (art / "edgeseq.json").write_text(json.dumps(data))
    code, _, err = run_cli(capsys, "generate", str(art), "hi", "--max-new-tokens", "2")
    assert code == 0 and "FAILED its parity check" in err
    code, out, _ = run_cli(capsys, "profile", str(art), "--reps", "1", "--warmup", "0", "--output-len", "2",
                           "--input-len", "4", "--no-bandwidth")
    assert "WARNING: parity not passed" in out


def test_hub_id_offline_is_clear(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code, _, err = run_cli(capsys, "export", "someone/some-model", "--out", str(tmp_path / "x"))
    assert code == 3 and "could not fetch 'someone/some-model'" in err


def test_demo_runs_the_main_job(hf_dirs: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                capsys: pytest.CaptureFixture[str]) -> None:
    """The README's main job (the quick compare suite), on tiny models: exports in child processes,
    one table, the report; a second run reuses every finished point."""
    from edgeseq.cli import commands as cli

    suite = tmp_path / "tiny.yaml"
    suite.write_text(f"models: [{hf_dirs['llama']}, {hf_dirs['t5']}]\ninput_lens: [8]\noutput_len: 4\n"
                     "reps: 1\nwarmup: 0\n")
    monkeypatch.setattr(cli, "DEMO_SUITE", str(suite))
    code, out, _ = run_cli(capsys, "demo", "--out", str(tmp_path / "demo"))
    assert code == 0 and "tok/s vs 1st" in out and "TTFT" in out
    assert json.loads((tmp_path / "demo" / "results.json").read_text())["complete"] is True
    code, _, err = run_cli(capsys, "demo", "--out", str(tmp_path / "demo"))
    assert code == 0 and "exporting" not in err


def test_cache_lists_and_clears(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                capsys: pytest.CaptureFixture[str]) -> None:
    """`edgeseq cache` shows each engine's cache size; --clear ENGINE deletes one, --clear all of them,
    an unknown name is a usage error that lists the caches."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert main(["cache"]) == 0 and "no engine caches" in capsys.readouterr().out
    for engine, size in (("openvino", 3 << 20), ("litert", 1 << 20)):
        (tmp_path / "edgeseq" / engine).mkdir(parents=True)
        (tmp_path / "edgeseq" / engine / "blob").write_bytes(b"\0" * size)
    assert main(["cache"]) == 0
    out = capsys.readouterr().out
    assert "openvino" in out and "3 MiB" in out and "litert" in out
    assert main(["cache", "--clear", "nope"]) == 2
    assert "caches here: litert, openvino" in capsys.readouterr().err
    assert main(["cache", "--clear", "openvino"]) == 0
    assert not (tmp_path / "edgeseq" / "openvino").exists() and (tmp_path / "edgeseq" / "litert").exists()
    assert main(["cache", "--clear"]) == 0 and not (tmp_path / "edgeseq" / "litert").exists()


def test_engine_cache_evicts_least_recently_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Before an engine writes a new entry, its cache drops the entries used longest ago until the new
    one fits under EDGESEQ_CACHE_GB; recently used entries stay."""
    import os

    from edgeseq.runtimes.host.disk_cache import cache_room

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setenv("EDGESEQ_CACHE_GB", str(10 / 1024))  # 10 MiB
    folder = tmp_path / "edgeseq" / "openvino"
    folder.mkdir(parents=True)
    for i, name in enumerate(["old", "mid", "new"]):  # 3 MiB each, used at t = 1000, 2000, 3000
        (folder / name).write_bytes(b"\0" * (3 << 20))
        os.utime(folder / name, (1000.0 * (i + 1), 1000.0 * (i + 1)))
    os.utime(folder / "old", (5000.0, 1000.0))  # read last (a cache hit): now the most recently used
    assert cache_room("openvino", 1 << 20) == folder  # 9 + 1 MiB fit: nothing goes
    assert sorted(p.name for p in folder.iterdir()) == ["mid", "new", "old"]
    assert cache_room("openvino", 3 << 20) == folder  # 9 + 3 MiB do not: the least recently used goes
    assert sorted(p.name for p in folder.iterdir()) == ["new", "old"]
    monkeypatch.setenv("EDGESEQ_CACHE_GB", "0")
    cache_room("openvino", 1)
    assert not list(folder.iterdir())
