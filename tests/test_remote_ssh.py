"""`--on ssh://...` against a real sshd on 127.0.0.1 (a free port, throwaway host and user keys), stopped
after the tests. The device's Python is this Python's base interpreter (no edgeseq, no numpy in it),
so edgeseq there is the wheel installed into a fresh venv in a temporary cache."""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from edgeseq.cli import main
from edgeseq.errors import RemoteError
from edgeseq.remote import copy, install, run
from edgeseq.remote.target import Target, parse

SSHD = "/usr/sbin/sshd"
BASE_PYTHON = getattr(sys, "_base_executable", sys.executable)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _missing() -> str | None:
    if not Path(SSHD).exists():
        return f"{SSHD} is absent (Debian: apt-get install openssh-server; scripts/setup.sh installs it)"
    if not shutil.which("ssh") or not shutil.which("ssh-keygen"):
        return "the ssh client (ssh, ssh-keygen) is absent"
    if not Path("/run/sshd").is_dir() and os.geteuid() != 0:
        return "sshd needs its privilege-separation folder /run/sshd, which only root can make"
    return None


@pytest.fixture(scope="session")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    why = _missing()
    if why:
        pytest.skip(why)
    d = tmp_path_factory.mktemp("sshd")
    for key in ("host", "user", "stranger"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / key)], check=True)
    shutil.copy(d / "user.pub", d / "authorized_keys")
    port = _free_port()
    (d / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {d / 'host'}\nAuthorizedKeysFile {d / 'authorized_keys'}\n"
        f"PidFile {d / 'sshd.pid'}\nStrictModes no\nUsePAM no\nPermitRootLogin prohibit-password\n"
        "PasswordAuthentication no\nKbdInteractiveAuthentication no\n")
    Path("/run/sshd").mkdir(exist_ok=True)
    proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(d / "sshd_config")], stderr=open(d / "sshd.log", "w"))
    try:
        for _ in range(100):
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.05)
        else:
            pytest.skip(f"sshd did not start: {(d / 'sshd.log').read_text()[-300:]}")
        user = os.environ.get("USER") or "root"
        yield {"dir": d, "port": port, "user": user, "cache": tmp_path_factory.mktemp("remote-cache"),
               "xdg": tmp_path_factory.mktemp("local-cache")}
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _client(sshd: dict[str, Any], key: str = "user") -> str:
    return (f"-i {sshd['dir'] / key} -o IdentitiesOnly=yes -o IdentityAgent=none -o StrictHostKeyChecking=no "
            "-o UserKnownHostsFile=/dev/null -o LogLevel=ERROR")


@pytest.fixture
def device(sshd: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The loopback device's URL, with this session's client options and local wheel cache."""
    monkeypatch.setenv("EDGESEQ_SSH_OPTIONS", _client(sshd))
    monkeypatch.setenv("XDG_CACHE_HOME", str(sshd["xdg"]))
    monkeypatch.delenv("EDGESEQ_WHEELHOUSE", raising=False)
    url = f"ssh://{sshd['user']}@127.0.0.1:{sshd['port']}?python={BASE_PYTHON}&cache={sshd['cache']}"
    yield url
    parse(url).close()


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


PROTOCOL = ["--input-len", "16,32", "--output-len", "8", "--reps", "3", "--no-bandwidth"]


def test_profile_over_ssh_gives_the_local_rows_and_copies_once(paper_artifacts: dict[str, Path], device: str,
                                                               tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    art = str(paper_artifacts["paper-deconly"])
    code, _, err = _cli(capsys, "profile", art, *PROTOCOL, "--json", str(tmp_path / "here.json"))
    assert code == 0, err
    code, out, err = _cli(capsys, "profile", art, *PROTOCOL, "--on", device, "--json", str(tmp_path / "there.json"))
    assert code == 0, err
    here = json.loads((tmp_path / "here.json").read_text())["results"]
    there_doc = json.loads((tmp_path / "there.json").read_text())
    there = there_doc["results"]
    same = ("model", "artifact", "input_len", "output_len", "batch", "engine", "device", "weights", "gen_head", "key")
    assert [{k: r[k] for k in same} for r in there] == [{k: r[k] for k in same} for r in here]
    for a, b in zip(here, there):  # measured there, in the same unit: the same machine, but shared with
        # other jobs (a 6x swing of a 1 ms TTFT has been seen), so only a unit slip (1000x) fails this
        for metric in ("ttft_ms", "tpot_ms"):
            assert b[metric] > 0 and 0.02 < b[metric] / a[metric] < 50, (metric, a[metric], b[metric])
        assert b["host"]["cpu"] and b["on"] == parse(device).url
    assert there_doc["host"]["cores"] == os.cpu_count() and there_doc["on"] == parse(device).url
    assert "copied" in err or "nothing copied" in err
    # edgeseq there is the installed wheel in the device's venv, not this checkout
    target = parse(device)
    remote = install.ensure(target)
    where = target.run([remote.python, "-c", "import edgeseq; print(edgeseq.__file__)"]).strip()
    assert where.startswith(str(Path(remote.probe["venv"]))) and "site-packages" in where
    # a second run copies nothing: neither wheels nor the artifact
    again, sent = run.profile(remote, [art], run.profile_argv(_cfg(), bandwidth=False))
    assert (remote.copied.files, remote.copied.bytes, sent.files, sent.bytes) == (0, 0, 0, 0)
    assert [r.gen_head for r in again.results] == [r["gen_head"] for r in here]


def _cfg() -> Any:
    from edgeseq.profile.runner import ProfileConfig

    return ProfileConfig(input_lens=[16, 32], output_lens=[8], reps=3, threads=2).validate()


def test_a_copy_killed_midway_resumes_and_is_verified(paper_artifacts: dict[str, Path], device: str,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from edgeseq.remote import artifacts

    from edgeseq.artifact import manifest as mf

    art = paper_artifacts["paper-encdec"]
    total = sum(f.stat().st_size for f in art.iterdir() if f.is_file())
    target = parse(device)
    remote = install.ensure(target)
    monkeypatch.setattr(copy, "CHUNK", 1 << 16)
    # Cut inside the largest file, three chunks in: a pipe holds one chunk, so by then that file's
    # session is under way. (Cut while a session is still starting, ssh rightly opens a connection of
    # its own and the copy goes through, which is not the case under test.)
    names = list(mf.read(art).files)
    big = max(names, key=lambda n: (art / n).stat().st_size)
    at = sum((art / n).stat().st_size for n in names[:names.index(big)]) + 3 * copy.CHUNK
    assert (art / big).stat().st_size > 4 * copy.CHUNK
    killed: list[int] = []

    def cut(sent: int) -> None:  # the connection dies once part of the artifact is over it
        if sent >= at and not killed:
            pid = target.master_pid()
            assert pid is not None
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)

    with pytest.raises(RemoteError) as e:
        artifacts.ensure(remote, art, progress=cut)
    assert killed and "\n" not in e.value.message and e.value.hint
    final = f"{remote.cache}/artifacts/{artifacts.key(art)}"
    assert not Path(final).exists() and Path(final + ".partial").is_dir()
    there, sent = artifacts.ensure(remote, art)  # a new connection, from where the first stopped
    assert there == final and Path(final).is_dir() and not Path(final + ".partial").exists()
    assert 0 < sent.bytes < total
    assert target.run([remote.python, "-m", "edgeseq", "verify", final]).startswith("ok")
    _, again = artifacts.ensure(remote, art)
    assert (again.files, again.bytes) == (0, 0)


def test_unreachable_and_refused_logins_are_one_line_with_a_hint(sshd: dict[str, Any], device: str,
                                                                 monkeypatch: pytest.MonkeyPatch,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    closed = _free_port()
    code, _, err = _cli(capsys, "devices", "--on", f"ssh://root@127.0.0.1:{closed}")
    lines = err.strip().splitlines()
    assert code == RemoteError.exit_code and len(lines) == 2, err
    assert lines[0].startswith("error: cannot reach 127.0.0.1") and "Connection refused" in lines[0]
    assert lines[1].startswith("hint:") and f"-p {closed}" in lines[1]

    monkeypatch.setenv("EDGESEQ_SSH_OPTIONS", _client(sshd, key="stranger"))
    code, _, err = _cli(capsys, "devices", "--on", device)
    lines = err.strip().splitlines()
    assert code == RemoteError.exit_code and len(lines) == 2, err
    assert lines[0].startswith("error: login to") and "Permission denied" in lines[0]
    assert lines[1].startswith("hint:") and "ssh-copy-id" in lines[1]


def test_compare_on_two_devices_runs_them_in_parallel(paper_artifacts: dict[str, Path], sshd: dict[str, Any],
                                                      device: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    second = device.replace(f"cache={sshd['cache']}", f"cache={tmp_path / 'second-device'}")
    spans: dict[str, list[tuple[str, float, float]]] = {}
    lock = threading.Lock()
    real_ensure, real_profile = install.ensure, run.profile

    def timed(kind: str, fn: Any, name: Any) -> Any:
        def wrapper(*a: Any, **kw: Any) -> Any:
            t0 = time.monotonic()
            try:
                return fn(*a, **kw)
            finally:
                with lock:
                    spans.setdefault(name(a), []).append((kind, t0, time.monotonic()))
        return wrapper

    monkeypatch.setattr(install, "ensure", timed("install", real_ensure, lambda a: a[0].cache))
    monkeypatch.setattr(run, "profile", timed("profile", real_profile, lambda a: a[0].target.cache))
    arts = [str(paper_artifacts["paper-encdec"]), str(paper_artifacts["paper-deconly"])]
    out = tmp_path / "report"
    code, _, err = _cli(capsys, "compare", *arts, "--input-lens", "16", "--output-len", "8", "--reps", "2",
                        "--no-plots", "--no-bandwidth", "--out", str(out), "--on", device, "--on", second)
    assert code == 0, err
    points = json.loads((out / "results.json").read_text())["points"]
    assert sorted((p["on"], p["input_len"]) for p in points) == sorted(
        [(parse(device).url, 16)] * 2 + [(parse(second).url, 16)] * 2)
    assert len(spans) == 2
    (a_start, a_end), (b_start, b_end) = [(min(s for _, s, _ in v), max(e for _, _, e in v)) for v in spans.values()]
    assert a_start < b_end and b_start < a_end  # the two devices worked at the same time
    for v in spans.values():  # each device: one profile at a time
        profiles = sorted((s, e) for k, s, e in v if k == "profile")
        assert len(profiles) == 2 and profiles[0][1] <= profiles[1][0], spans
    # the second run measures nothing again
    code, _, err = _cli(capsys, "compare", *arts, "--input-lens", "16", "--output-len", "8", "--reps", "2",
                        "--no-plots", "--no-bandwidth", "--out", str(out), "--on", device, "--on", second)
    assert code == 0 and "0 point(s) to measure" in err


def test_device_checks_name_the_fix() -> None:
    t = Target("board", "pi", 2222)
    with pytest.raises(RemoteError, match="needs CPython >= 3.10") as e:
        install.check_python(t, {"python": [3, 8, 10], "implementation": "CPython"})
    assert "?python=" in str(e.value.hint)
    with pytest.raises(RemoteError, match="MiB free") as e:
        install.check_space(t, {"free": 10 << 20, "cache": "/home/pi/.cache/edgeseq-remote"}, 500 << 20, "copying x")
    assert "?cache=" in str(e.value.hint)
    full = t.error(1, "cat: write error: No space left on device\n", "copying x")
    assert "no disk space" in full.message and "?cache=" in str(full.hint)
    key = t.error(255, "Host key verification failed.\n", "probe")
    assert "host key" in key.message
    pip = install._install_error(t, {"python": [3, 11, 2], "platform": "linux-aarch64", "cache": "/c"},
                                 {"error": "pip", "output": "ERROR: No matching distribution found for openvino"},
                                 ["openvino"])
    assert "openvino" in pip.message and "linux-aarch64" in pip.message and "EDGESEQ_WHEELHOUSE" in str(pip.hint)
    for bad in ("pi@board", "ssh://pi@board/path", "ssh://pi@board:99999", "ssh://pi@board?user=x"):
        with pytest.raises(Exception, match="--on"):
            parse(bad)
    assert parse("ssh://pi@board:2222?python=python3.12").python == "python3.12"
