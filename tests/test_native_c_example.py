"""The C example (examples/ortgenai_c): built with CMake against the onnxruntime-genai library the
Python wheel ships, it opens an artifact exported with `--native ortgenai` through the runtime's C
API; its greedy tokens equal edgeseq's own ORT engine's over 32 steps, and a wrong folder is one
line of error with a non-zero exit."""
from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "ortgenai_c"
STEPS = 32
PROMPT = [3, 17, 99, 250, 7, 400]  # ids of the test tokenizer (vocab 1024); 3 is its BOS


def missing() -> str | None:
    """Why the example cannot be built here, or None."""
    if not shutil.which("cmake"):
        return "cmake is not installed (apt-get install cmake)"
    if not any(shutil.which(c) for c in (os.environ.get("CC", "cc"), "gcc", "clang")):
        return "no C compiler (apt-get install gcc)"
    spec = importlib.util.find_spec("onnxruntime_genai")
    if spec is None or not spec.submodule_search_locations:
        return "onnxruntime-genai is not installed (pip install 'edgeseq[ortgenai]')"
    if not list(Path(spec.submodule_search_locations[0]).glob("libonnxruntime-genai.*")):
        return "this onnxruntime-genai wheel ships no libonnxruntime-genai library to link"
    return None


pytestmark = pytest.mark.skipif(missing() is not None, reason=str(missing()))


def build_example(build: Path) -> Path:
    """Configure and build the example into `build` (the library found through this Python)."""
    for cmd in (["cmake", "-S", str(EXAMPLE), "-B", str(build), f"-DPYTHON={sys.executable}"],
                ["cmake", "--build", str(build)]):
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, f"{' '.join(cmd)} failed:\n{done.stdout}\n{done.stderr}"
    return build / "generate"


def run_example(binary: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # no ORT_LIB_PATH: the build's RPATH alone must let the library find onnxruntime
    env = {k: v for k, v in os.environ.items() if k != "ORT_LIB_PATH"}
    return subprocess.run([str(binary), "--threads", "2", *args], capture_output=True, text=True, timeout=120,
                          env=env)


@pytest.fixture(scope="module")
def binary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_example(tmp_path_factory.mktemp("ortgenai_c") / "build")


@pytest.fixture(scope="module")
def artifact(hf_dirs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    from edgeseq.export.pipeline import export

    out = tmp_path_factory.mktemp("cexample") / "llama"
    export(str(hf_dirs["llama"]), out, quiet=True, native=("ortgenai",))
    return out


def test_c_example_matches_edgeseq_engine(binary: Path, artifact: Path) -> None:
    import edgeseq

    want = edgeseq.load(artifact).generate_ids([PROMPT], max_new_tokens=STEPS, ignore_eos=True).ids[0]
    done = run_example(binary, "--ids", "--ignore-eos", str(artifact), " ".join(map(str, PROMPT)), str(STEPS))
    assert done.returncode == 0, done.stderr
    ids_line, text = done.stdout.split("\n", 1)
    got = [int(t) for t in ids_line.split()]
    assert len(want) == STEPS and got == want
    assert text.strip(), "the example prints the new tokens' text after their ids"


@pytest.mark.parametrize("text", ["the quick brown fox jumps over the lazy dog", "<s>the quick brown fox"])
def test_c_example_text_prompt_tokenizes_as_edgeseq(binary: Path, artifact: Path, text: str) -> None:
    """A text prompt goes through the runtime's tokenizer (the artifact's tokenizer files) to the
    same prompt ids as edgeseq's, hence the same greedy continuation: BOS added once, also where the
    prompt starts with it (as a chat template's does)."""
    import edgeseq

    model = edgeseq.load(artifact)
    assert model.encode(text)[:2] == [3, 420], "the test tokenizer's BOS (3) then 'the' (420)"
    want = model.generate_ids([model.encode(text)], max_new_tokens=STEPS, ignore_eos=True).ids[0]
    done = run_example(binary, "--ignore-eos", str(artifact), text, str(STEPS))
    assert done.returncode == 0, done.stderr
    assert [int(t) for t in done.stdout.split("\n", 1)[0].split()] == want


def one_line_error(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode != 0 and done.stdout == "", done.stdout
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    return lines[0]


def test_c_example_wrong_folder_is_one_line_error(binary: Path, tmp_path: Path) -> None:
    assert "genai_config.json" in one_line_error(run_example(binary, str(tmp_path / "no-such-artifact"), "hello", "4"))


def test_c_example_runtime_error_is_one_line(binary: Path, artifact: Path) -> None:
    """An id outside the vocabulary fails inside onnxruntime: its own log stays quiet, the API's error is the line."""
    assert "Gather" in one_line_error(run_example(binary, "--ids", str(artifact), "3 5000000", "4"))
