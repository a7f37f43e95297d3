"""A quiet console: every command, run as a user runs it (a child process, so what native libraries
write to file descriptors 1 and 2 is seen too), prints only edgeseq's own lines. A dependency that
starts printing something new fails here, and its line says what to capture."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# edgeseq's stderr: steps and their details, results, warnings, errors with hints and the log,
# compare's notes, its own progress bars (tqdm's default format, named by edgeseq)
STDERR_OK = re.compile("|".join([
    r"\[\d+/\d+\] ", r"      \S", r"wrote ", r"(warning|error|hint|log|failed|interrupted): ", r"exporting \S+ to ",
    r"compare '", r"edgeseq: ", r"\[\d+ tokens; tokenize ",
    r"(export|parity|quantize|profile|profile --auto|compare): +\d+%\|[^|]*\| *[\d?]+/[\d?]+ \[",
]))
# edgeseq's tables on stdout: the header, the column row and rule, rows (each starting with an
# artifact's label), the footnotes, compare's ratio lines; devices' and verify's rows
STDOUT_TABLE = [r"host: ", r"engine \S", r"medians of ", r"command: ", r"artifact +engine ", r"-+$",
                r"(WARNING|TIMEOUT|nodes on the NPU|weights moved into huge pages|memory \S+ \(MB\): )", r"\* ",
                r"\S+ \S+ in=\d+: "]


def lines(text: str) -> list[str]:
    """Every line as a terminal would show it last: tqdm redraws with carriage returns."""
    return [ln for part in text.split("\n") for ln in part.split("\r") if ln.strip()]


def foreign(text: str, allowed: re.Pattern[str]) -> list[str]:
    return [ln for ln in lines(text) if not allowed.match(ln)]


def run(tmp: Path, *args: str, code: str | None = None) -> subprocess.CompletedProcess[str]:
    """`python -m edgeseq ARGS` (or the Python `code`), with logs and caches under `tmp`."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), XDG_STATE_HOME=str(tmp / "state"),
               XDG_CACHE_HOME=str(tmp / "cache"))
    env.pop("HF_HUB_DISABLE_PROGRESS_BARS", None)  # the bars a user sees unless edgeseq hides them
    cmd = [sys.executable, "-c", code] if code else [sys.executable, "-m", "edgeseq", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp, timeout=600)


def table_ok(labels: list[str]) -> re.Pattern[str]:
    return re.compile("|".join(STDOUT_TABLE + [re.escape(x) + r"\s" for x in labels]))


@pytest.fixture(scope="module")
def exported(hf_dirs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """`edgeseq export` of the tiny llama, in a child process: (its tmp dir, the artifact)."""
    tmp = tmp_path_factory.mktemp("console")
    r = run(tmp, "export", str(hf_dirs["llama"]), "--out", str(tmp / "llama"), "--parity-steps", "2")
    assert r.returncode == 0, r.stderr
    assert foreign(r.stdout + r.stderr, STDERR_OK) == []
    assert re.search(r"^\[1/4\] loading .*\n\[2/4\] exporting", r.stderr, re.M)
    log = tmp / "llama.export.log"  # beside the artifact: the steps and anything a library printed
    assert "[4/4] writing manifest" in log.read_text()
    return tmp, tmp / "llama"


def test_export_prints_only_edgeseq_lines(exported: tuple[Path, Path]) -> None:
    tmp, art = exported
    assert (art / "edgeseq.json").is_file()
    assert "llama.export.log" not in json.loads((art / "edgeseq.json").read_text())["files"]


def test_generate_prints_only_the_text(exported: tuple[Path, Path]) -> None:
    import edgeseq

    tmp, art = exported
    r = run(tmp, "generate", str(art), "hello there", "--max-new-tokens", "4", "--raw", "--stats")
    assert r.returncode == 0, r.stderr
    want = "".join(edgeseq.load(art).stream("hello there", max_new_tokens=4, chat=False))
    assert r.stdout == want + "\n"
    assert foreign(r.stderr, STDERR_OK) == [] and "tokens; tokenize" in r.stderr


def test_generate_on_torch_keeps_its_noise_in_the_log(exported: tuple[Path, Path]) -> None:
    """The torch reference imports transformers (and whatever it pulls in) and loads weights: the
    noisiest load there is. The terminal shows the text; the log keeps the rest, if any."""
    tmp, art = exported
    r = run(tmp, "generate", str(art), "hello", "--max-new-tokens", "3", "--raw", "--engine", "torch")
    assert r.returncode == 0, r.stderr
    assert len(lines(r.stdout)) <= 1 and foreign(r.stderr, STDERR_OK) == []


def test_profile_and_compare_print_only_their_tables(exported: tuple[Path, Path]) -> None:
    tmp, art = exported
    r = run(tmp, "profile", str(art), "--input-len", "8", "--output-len", "2", "--reps", "1", "--warmup", "0",
            "--no-bandwidth")
    assert r.returncode == 0, r.stderr
    assert foreign(r.stdout, table_ok(["llama"])) == [] and "TTFT ms" in r.stdout
    assert foreign(r.stderr, STDERR_OK) == [] and "profile: 100%" in r.stderr
    import shutil

    twin = shutil.copytree(art, tmp / "twin")  # compare takes two models (an artifact stands for itself)
    r = run(tmp, "compare", str(art), str(twin), "--input-lens", "8", "--output-len", "2", "--reps", "1", "--warmup", "0",
            "--no-bandwidth", "--no-plots", "--out", str(tmp / "cmp"))
    assert r.returncode == 0, r.stderr
    assert foreign(r.stdout, table_ok(["llama", "twin"])) == [] and "TTFT ms" in r.stdout
    assert foreign(r.stderr, STDERR_OK) == []


def test_demo_prints_only_edgeseq_lines(hf_dirs: dict[str, Path], exported: tuple[Path, Path],
                                       tmp_path: Path) -> None:
    """The demo exports in child processes; their whole output is in OUT/logs/, none on the terminal."""
    suite = tmp_path / "tiny.yaml"
    suite.write_text(f"models: [{hf_dirs['llama']}, {exported[1]}]\ninput_lens: [8]\noutput_len: 2\nreps: 1\nwarmup: 0\n"
                     "parity_steps: 2\n")
    code = ("import sys\nfrom edgeseq.cli import commands, main\n"
            f"commands.DEMO_SUITE = {str(suite)!r}\nsys.exit(main(['demo', '--out', 'demo']))")
    r = run(tmp_path, code=code)
    assert r.returncode == 0, r.stderr
    assert foreign(r.stdout, table_ok(["llama"])) == [] and "TTFT ms" in r.stdout
    assert foreign(r.stderr, STDERR_OK) == [] and "exporting" in r.stderr
    logs = sorted(p.name for p in (tmp_path / "demo" / "logs").iterdir())
    assert any(n.endswith(".export.log") for n in logs), logs


def test_verify_and_devices_print_only_their_rows(exported: tuple[Path, Path]) -> None:
    tmp, art = exported
    r = run(tmp, "verify", str(art))
    assert r.returncode == 0 and r.stderr == "" and re.fullmatch(r"ok  \S+: \d+ files, .*\n", r.stdout)
    r = run(tmp, "devices")
    rows = re.compile(r"engine +device +status|\S+ +\S+ +(available|missing) |engines: ")
    assert r.returncode == 0 and r.stderr == "" and foreign(r.stdout, rows) == []


def test_quiet_prints_only_results(hf_dirs: dict[str, Path], exported: tuple[Path, Path]) -> None:
    tmp, art = exported
    r = run(tmp, "export", str(hf_dirs["llama"]), "--out", str(tmp / "q"), "--parity-steps", "2", "--quiet")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "" and lines(r.stderr) == [f"wrote {tmp / 'q'} ({_mb(tmp / 'q')} MB)"]
    r = run(tmp, "-q", "profile", str(art), "--input-len", "8", "--output-len", "2", "--reps", "1", "--warmup", "0",
            "--no-bandwidth")
    assert r.returncode == 0 and r.stderr == "" and "TTFT ms" in r.stdout


def test_verbose_shows_what_libraries_print(exported: tuple[Path, Path]) -> None:
    """--verbose captures nothing: the steps and the bars are there, and no log is kept."""
    tmp, art = exported
    r = run(tmp, "profile", str(art), "--input-len", "8", "--output-len", "2", "--reps", "1", "--warmup", "0",
            "--no-bandwidth", "--verbose")
    assert r.returncode == 0 and "profile: 100%" in r.stderr and "TTFT ms" in r.stdout
    r2 = run(tmp, "--verbose", "export", str(ROOT / "no-such-model"), "--out", str(tmp / "v"))
    assert r2.returncode == 3 and "error: no model at" in r2.stderr
    assert "log:" not in r2.stderr and not (tmp / "v.export.log").exists()


def test_failed_export_names_its_log(hf_dirs: dict[str, Path], tmp_path: Path) -> None:
    """An export that fails after it started: the error, the hint, and the log that holds the steps
    and whatever the libraries printed."""
    from transformers import BertConfig

    bad = tmp_path / "bert"
    BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64).save_pretrained(bad)
    r = run(tmp_path, "export", str(bad), "--out", str(tmp_path / "out"))
    assert r.returncode == 4, r.stderr
    log = tmp_path / "out.export.log"
    assert f"log: {log}" in r.stderr and foreign(r.stderr, STDERR_OK) == []
    text = log.read_text()
    assert "[1/4] loading" in text and "error: unsupported architecture 'bert'" in text


def test_import_and_load_print_nothing(exported: tuple[Path, Path]) -> None:
    """The Python API: importing edgeseq and loading an artifact (on the torch reference too, the
    noisy one) print nothing; what dependencies printed goes to the `edgeseq` logger at DEBUG."""
    tmp, art = exported
    code = ("import edgeseq\nm = edgeseq.load(%r)\nt = edgeseq.load(%r, engine='torch')\n"
            "t.generate('hi', max_new_tokens=2)\n" % (str(art), str(art)))
    r = run(tmp, code=code)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "" and r.stderr == ""


def _mb(art: Path) -> str:
    m = json.loads((art / "edgeseq.json").read_text())
    return f"{sum(f['bytes'] for f in m['files'].values()) / 1e6:.1f}"
