"""`--native ortgenai` on Whisper: a tiny Whisper (English-only and multilingual) exported with
onnxruntime-genai's files, checked there, transcribing through `--engine ortgenai` with the same ids
as edgeseq's ONNX Runtime engine (Whisper's suppressed ids included: the tiny model's favourite token is
one), profiled through the CLI, and the cases it refuses as one-line errors."""
from __future__ import annotations

import json
import math
import sys
import wave
from pathlib import Path

import numpy as np
import onnx
import pytest

import edgeseq
from edgeseq.artifact import manifest as mf
from edgeseq.audio.testset import voice_like
from edgeseq.cli import main
from edgeseq.export.pipeline import export
from edgeseq.runtimes import devices
from edgeseq.runtimes.engines.ortgenai import probe

sys.path.insert(0, str(Path(__file__).parent))
from test_whisper import EN, EN_GEN, ML, ML_GEN, save_whisper  # noqa: E402

MISSING = probe(devices.DeviceRow("ortgenai", "cpu", "", "cpu", ""))
pytestmark = pytest.mark.skipif(MISSING is not None, reason=f"onnxruntime-genai cannot run here: {MISSING}")

SPEECH = voice_like(6.0, 16000, seed=4)
FAVOURITE = 28160  # the tiny English model's (seed 0) greedy choice at every step when nothing is suppressed


def _source(path: Path, ids: dict, gen: dict, seed: int, extra_suppressed: list[int]) -> Path:
    src = save_whisper(path, ids, gen, seed=seed)
    config = src / "generation_config.json"
    doc = json.loads(config.read_text())
    doc["suppress_tokens"] = sorted(set(doc["suppress_tokens"]) | set(extra_suppressed))
    config.write_text(json.dumps(doc))
    return src


@pytest.fixture(scope="module")
def en(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("og-whisper")
    export(str(_source(root / "src", EN, EN_GEN, 0, [FAVOURITE])), root / "art", native=("ortgenai",), quiet=True)
    return root / "art"


def test_export_writes_checked_files_that_share_the_weights(en: Path) -> None:
    m = mf.read(en)
    record = m.native["ortgenai"]
    assert record["check"]["status"] == "passed" and record["check"]["first_mismatch"] is None, record
    assert record["check"]["steps"] == 32 and FAVOURITE not in record["check"]["tokens"]
    assert set(record["files"]) == {"genai_config.json", "tokenizer_config.json", "encoder.ortgenai.onnx",
                                    "decoder_step.ortgenai.onnx"}
    assert set(record["files"]) <= set(m.files)
    enc = onnx.load(str(en / "encoder.ortgenai.onnx"), load_external_data=False).graph
    dec = onnx.load(str(en / "decoder_step.ortgenai.onnx"), load_external_data=False).graph
    layers = int(m.dims["num_layers"])
    assert [i.name for i in enc.input] == ["audio_features"]
    assert {o.name for o in enc.output} == {"encoder_hidden_states"} | {f"cross.{i}.{kv}" for i in range(layers)
                                                                         for kv in ("key", "value")}
    assert {i.name for i in dec.input} == {"input_ids"} | set(m.components["decoder_step"].cache_inputs)
    dims = dec.output[0].type.tensor_type.shape.dim
    assert dec.output[0].name == "logits" and len(dims) == 3 and dims[1].dim_value == 1
    for g in (enc, dec):  # every stored weight lives in the artifact's one shared data file: nothing copied
        assert {e.value for t in g.initializer for e in t.external_data if e.key == "location"} == {"weights.data"}
    config = json.loads((en / "genai_config.json").read_text())["model"]
    assert config["type"] == "whisper" and config["decoder"]["num_hidden_layers"] == layers


def test_suppressed_ids_decide_and_the_engines_agree(en: Path) -> None:
    """Without the suppressed ids the tiny model picks FAVOURITE; with them both engines pick the same
    other tokens, token for token, on speech other than the check's test signal."""
    from edgeseq.generate.config import GenerationConfig
    from edgeseq.generate.loop import run
    from edgeseq.audio import log_mel

    own = edgeseq.load(en)
    gen = dict(own.manifest.generation, suppress_token_ids=[5, 7, 11])
    feats = log_mel(SPEECH[: 16000 * 30])[None].astype(np.float32)
    free, _ = run(own.backend, [[50257, 50362]], GenerationConfig(max_new_tokens=4).validate(), gen, features=feats)
    assert free[0][0] == FAVOURITE
    want = own.transcribe(SPEECH, max_new_tokens=32)
    got = edgeseq.load(en, engine="ortgenai", threads=2).transcribe(SPEECH, max_new_tokens=32)
    assert got.ids == want.ids and FAVOURITE not in got.ids[0] and got.text == want.text


def test_multilingual_with_a_language(tmp_path: Path) -> None:
    src = _source(tmp_path / "src", ML, ML_GEN, 1, [])
    m = export(str(src), tmp_path / "art", native=("ortgenai",), quiet=True)
    assert m.native["ortgenai"]["check"]["status"] == "passed", m.native
    want = edgeseq.load(tmp_path / "art").transcribe(SPEECH, language="de", max_new_tokens=16)
    got = edgeseq.load(tmp_path / "art", engine="ortgenai").transcribe(SPEECH, language="de", max_new_tokens=16)
    assert got.ids == want.ids and got.language == "de"


def _one_line_error(capsys: pytest.CaptureFixture[str], code: int, *needles: str) -> None:
    _, err = capsys.readouterr()
    assert code not in (0, 1) and "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "hint: " in err, err
    for needle in needles:
        assert needle in err, err


def test_cli_transcribe_profile_and_refusals(en: Path, tmp_path: Path, hf_dirs: dict[str, Path],
                                             capsys: pytest.CaptureFixture[str]) -> None:
    wav = tmp_path / "clip.wav"
    with wave.open(str(wav), "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(16000)
        w.writeframes((SPEECH * 32767).astype(np.int16).tobytes())
    capsys.readouterr()
    assert main(["transcribe", str(en), str(wav), "--engine", "ortgenai", "--max-new-tokens", "8", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["text"] == edgeseq.load(en).transcribe(wav, max_new_tokens=8).text
    report = tmp_path / "p.json"
    assert main(["profile", str(en), "--engine", "ortgenai", "--threads", "2", "--output-len", "8", "--reps", "2",
                 "--warmup", "1", "--json", str(report), "--no-bandwidth"]) == 0
    rows = json.loads(report.read_text())["results"]
    assert len(rows) == 1 and rows[0]["engine"] == "ortgenai"
    assert math.isfinite(rows[0]["ttft_ms"]) and rows[0]["tpot_ms"] > 0
    capsys.readouterr()
    code = main(["transcribe", str(en), str(wav), "--engine", "ortgenai", "--timestamps"])
    _one_line_error(capsys, code, "timestamp", "drop --engine")
    # a text encoder-decoder: refused before the model loads, saying why
    code = main(["export", str(hf_dirs["t5"]), "--native", "ortgenai", "--out", str(tmp_path / "t5")])
    _one_line_error(capsys, code, "does not run text encoder-decoder models", "Whisper", "drop --native ortgenai")
    assert not (tmp_path / "t5").exists()
