"""`--native ortgenai`: edgeseq's decoder-only ONNX artifacts loaded by onnxruntime-genai (fp32 and int4,
a Llama-like model and GPT-2), greedy tokens equal to edgeseq's ONNX Runtime engine's, profiled and
generated through the CLI, and the cases it refuses as one-line errors."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import onnx
import pytest

import edgeseq
from edgeseq.artifact import manifest as mf
from edgeseq.cli import main
from edgeseq.export.pipeline import export
from edgeseq.runtimes import devices
from edgeseq.runtimes.engines.ortgenai import probe

MISSING = probe(devices.DeviceRow("ortgenai", "cpu", "", "cpu", ""))
pytestmark = pytest.mark.skipif(MISSING is not None, reason=f"onnxruntime-genai cannot run here: {MISSING}")

CASES = {"llama": ("llama", "fp32"), "llama-int4": ("llama", "int4"), "gpt2": ("gpt2", "fp32")}


@pytest.fixture(scope="module")
def native(hf_dirs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("ortgenai")
    for name, (family, weights) in CASES.items():
        export(str(hf_dirs[family]), root / name, weights=weights, native=("ortgenai",), quiet=True)
    return {name: root / name for name in CASES}


@pytest.mark.parametrize("case", list(CASES))
def test_export_writes_checked_files_that_share_the_weights(native: dict[str, Path], case: str) -> None:
    art = native[case]
    m = mf.read(art)
    record = m.native["ortgenai"]
    assert record["check"]["status"] == "passed" and record["check"]["first_mismatch"] is None
    assert record["check"]["steps"] == 32 and record["runtime"] == "onnxruntime-genai"
    assert set(record["files"]) == {"genai_config.json", "tokenizer_config.json", "decoder.ortgenai.onnx"}
    assert set(record["files"]) <= set(m.files)  # hashed like every other file of the artifact
    graph = onnx.load(str(art / "decoder.ortgenai.onnx"), load_external_data=False)
    assert "logits_index" not in {i.name for i in graph.graph.input}
    dims = graph.graph.output[0].type.tensor_type.shape.dim
    assert graph.graph.output[0].name == "logits" and len(dims) == 3 and dims[1].dim_value == 1
    # every stored weight of the extra graph lives in the artifact's one data file: nothing copied
    external = {e.value for t in graph.graph.initializer for e in t.external_data if e.key == "location"}
    assert external == {"decoder.onnx.data"}
    assert (art / "decoder.ortgenai.onnx").stat().st_size < (art / "decoder.onnx").stat().st_size * 1.1
    if case == "llama-int4":
        assert "MatMulNBits" in {n.op_type for n in graph.graph.node}
    search = json.loads((art / "genai_config.json").read_text())["search"]
    # a cache appended in place where GroupQueryAttention makes every present (llama), else grown by Concat (gpt2)
    assert search["past_present_share_buffer"] == ("GroupQueryAttention" in m.components["decoder"].contrib_ops)
    assert search["past_present_share_buffer"] == (case != "gpt2")
    config = json.loads((art / "genai_config.json").read_text())["model"]
    assert config["decoder"]["filename"] == "decoder.ortgenai.onnx"
    assert config["decoder"]["num_hidden_layers"] == m.dims["num_layers"]
    assert config["decoder"]["inputs"]["past_key_names"] % 0 in m.components["decoder"].cache_inputs


@pytest.mark.parametrize("case", list(CASES))
def test_greedy_tokens_equal_onnxruntime_engine(native: dict[str, Path], case: str) -> None:
    ids = [[5, 17, 42, 99, 7, 300, 12, 64, 8, 250]]
    want = edgeseq.load(native[case]).generate_ids(ids, max_new_tokens=32, ignore_eos=True)
    model = edgeseq.load(native[case], engine="ortgenai", threads=2)
    assert model.backend.engine == "ortgenai"
    got = model.generate_ids(ids, max_new_tokens=32, ignore_eos=True)
    assert got.ids == want.ids and len(got.ids[0]) == 32
    assert len(got.timings.token_ms) == 32 and got.timings.token_ms == sorted(got.timings.token_ms)


def test_an_app_loop_with_the_config_defaults_gets_the_same_tokens(native: dict[str, Path]) -> None:
    """What an app's own loop does (the C example): no search options, so the shared cache buffer holds
    the config's max_length (the model's context) positions, more than the request fills."""
    import onnxruntime_genai as og

    ids = [5, 17, 42, 99, 7, 300, 12, 64]
    want = edgeseq.load(native["llama"]).generate_ids([ids], max_new_tokens=20, ignore_eos=True).ids[0]
    model = og.Model(str(native["llama"]))
    generator = og.Generator(model, og.GeneratorParams(model))
    generator.append_tokens(np.asarray([ids], np.int32))
    got = []
    while len(got) < 20 and not generator.is_done():
        generator.generate_next_token()
        got.append(int(generator.get_next_tokens()[0]))
    del generator
    eos = set(mf.read(native["llama"]).generation["eos_token_ids"])
    cut = next((i + 1 for i, t in enumerate(want) if t in eos), len(want))  # it stops at EOS by itself
    assert got == want[:cut]


def test_stop_ids_end_the_run_and_sampling_is_seeded(native: dict[str, Path]) -> None:
    model = edgeseq.load(native["llama"], engine="ortgenai")
    forced = model.generate_ids([[5, 6, 7, 8]], max_new_tokens=12, ignore_eos=True).ids[0]
    stop = forced[5]
    cut = model.generate_ids([[5, 6, 7, 8]], max_new_tokens=12, stop_token_ids=[stop]).ids[0]
    assert cut == forced[:forced.index(stop) + 1]
    a, b = (model.generate_ids([[5, 6, 7, 8]], max_new_tokens=12, do_sample=True, temperature=1.5,
                               seed=3, ignore_eos=True).ids[0] for _ in range(2))
    assert a == b and len(a) == 12


def test_threads_set_the_runtime_intra_op_pool(native: dict[str, Path]) -> None:
    """ONNX Runtime's intra-op pool has threads - 1 workers (the caller is one): 4 threads add three more
    workers than 1 does. Counted in a fresh process each, where no other test's threads come and go."""
    import subprocess
    import sys

    if not Path("/proc/self/task").is_dir():
        pytest.skip("no /proc here to count threads")
    code = ("import os, sys, edgeseq; m = edgeseq.load(sys.argv[1], engine='ortgenai', threads=int(sys.argv[2])); "
            "print(len(os.listdir('/proc/self/task')))")

    def threads_after_load(n: int) -> int:
        out = subprocess.run([sys.executable, "-c", code, str(native["llama"]), str(n)], capture_output=True,
                             text=True, check=True).stdout
        return int(out.strip().splitlines()[-1])

    one, four = threads_after_load(1), threads_after_load(4)
    assert four - one == 3


def test_tokenizer_files_load_in_onnxruntime_genai(native: dict[str, Path]) -> None:
    import onnxruntime_genai as og
    from tokenizers import Tokenizer

    art = native["llama"]
    text = "the cat sat on the mat"
    want = Tokenizer.from_file(str(art / "tokenizer.json")).encode(text).ids
    got = og.Tokenizer(og.Model(str(art))).encode(text)
    assert list(np.asarray(got)) == want


def test_cli_generate_and_profile(native: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    art = str(native["llama"])
    assert main(["generate", art, "--engine", "ortgenai", "hello there", "--max-new-tokens", "6"]) == 0
    out, _ = capsys.readouterr()
    assert out.endswith("\n") and out.strip()
    report = tmp_path / "p.json"
    assert main(["profile", art, "--engine", "ortgenai", "--threads", "2", "--input-len", "16", "--output-len", "8",
                 "--reps", "2", "--warmup", "1", "--json", str(report), "--no-bandwidth"]) == 0
    rows = json.loads(report.read_text())["results"]
    assert len(rows) == 1 and rows[0]["engine"] == "ortgenai"
    assert math.isfinite(rows[0]["ttft_ms"]) and math.isfinite(rows[0]["tpot_ms"]) and rows[0]["tpot_ms"] > 0


def _one_line_error(capsys: pytest.CaptureFixture[str], code: int, *needles: str) -> None:
    _, err = capsys.readouterr()
    assert code not in (0, 1) and "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "hint: " in err, err  # progress lines may come first (export's steps)
    for needle in needles:
        assert needle in err, err


def test_refusals(artifacts: dict[str, Path], hf_dirs: dict[str, Path], tmp_path: Path,
                  capsys: pytest.CaptureFixture[str]) -> None:
    # an artifact exported without --native ortgenai
    code = main(["generate", str(artifacts["llama"]), "--engine", "ortgenai", "hi", "--max-new-tokens", "2"])
    _one_line_error(capsys, code, "genai_config.json", "re-export with --native ortgenai")
    # a format onnxruntime-genai does not read: refused before the model loads
    code = main(["export", str(hf_dirs["llama"]), "--format", "tflite", "--native", "ortgenai",
                 "--out", str(tmp_path / "x")])
    _one_line_error(capsys, code, "--native ortgenai needs --format onnx")
    assert not (tmp_path / "x").exists()
    # encoder-decoders: onnxruntime-genai runs only Whisper and Marian-SSRU ones
    code = main(["export", str(hf_dirs["t5"]), "--native", "ortgenai", "--out", str(tmp_path / "t5")])
    _one_line_error(capsys, code, "does not run text encoder-decoder models", "Whisper")
    assert not (tmp_path / "t5").exists()
    code = main(["generate", str(artifacts["t5"]), "--engine", "ortgenai", "hi", "--max-new-tokens", "2"])
    _one_line_error(capsys, code, "encoder-decoder", "--engine onnxruntime")


def test_compare_with_a_native_engine_exports_with_its_files(hf_dirs: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "cmp"
    code = main(["compare", str(hf_dirs["llama"]), str(hf_dirs["gpt2"]), "--engine", "ortgenai", "--input-lens", "8", "--output-len", "4",
                 "--reps", "1", "--warmup", "0", "--no-bandwidth", "--no-plots", "--parity-steps", "4",
                 "--out", str(out)])
    assert code == 0
    arts = sorted((out / "artifacts").iterdir())
    assert len(arts) == 2 and all(a.name.endswith("-onnx-fp32-ortgenai") for a in arts)
    assert all(mf.read(a).native["ortgenai"]["check"]["status"] == "passed" for a in arts)
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert [(r["status"], r["engine"]) for r in rows] == [("ok", "ortgenai")] * 2
