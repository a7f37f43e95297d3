"""--native ovgenai on Whisper: a tiny Whisper's OpenVINO artifact loads in openvino.genai's WhisperPipeline
(English-only and multilingual), the export's check passes, and transcribe / profile through
--engine ovgenai give edgeseq's own OpenVINO engine's ids; what the pipeline does not take through
edgeseq (timestamps, language detection, features without audio) is refused with the fix."""
from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
import wave
from pathlib import Path

import numpy as np
import pytest

import edgeseq
from edgeseq.audio.testset import voice_like
from edgeseq.errors import UsageError

MISSING = next((m for m in ("openvino_genai", "openvino_tokenizers") if importlib.util.find_spec(m) is None), None)
pytestmark = pytest.mark.skipif(MISSING is not None, reason=f"{MISSING} not installed: pip install 'edgeseq[ovgenai]'")

SPEECH = voice_like(9.0, 16000, seed=4)
NEW = 12


@pytest.fixture(scope="module")
def native(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from test_whisper import EN, EN_GEN, ML, ML_GEN, save_whisper

    from edgeseq.export.pipeline import export

    root = tmp_path_factory.mktemp("ovgenai-whisper")
    out = {}
    for name, ids, gen in (("en", EN, EN_GEN), ("ml", ML, ML_GEN)):
        src = save_whisper(root / f"src-{name}", ids, gen)
        export(str(src), root / name, format="openvino", quiet=True, native=("ovgenai",))
        out[name] = root / name
        if name == "en":  # int8 weights: decoder_init is one merged matmul, split back per variable
            export(str(src), root / "en-int8", format="openvino", weights="int8", quiet=True, native=("ovgenai",))
            out["en-int8"] = root / "en-int8"
    return out


@pytest.mark.parametrize("name,language", [("en", None), ("ml", "de"), ("en-int8", None)])
def test_check_passes_and_transcripts_match_openvino(native: dict[str, Path], name: str,
                                                     language: str | None) -> None:
    art = native[name]
    record = json.loads((art / "edgeseq.json").read_text())["native"]["ovgenai"]
    assert record["check"]["status"] == "passed" and record["check"]["against"] == "openvino", record["check"]
    assert {"openvino_encoder_model.xml", "openvino_decoder_model.xml", "preprocessor_config.json",
            "generation_config.json"} <= set(record["files"])
    # the pipeline's IRs read the artifact's own weights files (one inode each), not copies
    assert (art / "openvino_encoder_model.bin").stat().st_ino == (art / "encoder.bin").stat().st_ino
    assert (art / "openvino_decoder_model.bin").stat().st_ino == (art / "decoder_step.bin").stat().st_ino
    gen = json.loads((art / "generation_config.json").read_text())
    assert gen["suppress_tokens"] == [5, 7, 11] and gen["is_multilingual"] == (name == "ml")
    got = edgeseq.load(art, engine="ovgenai").transcribe(SPEECH, max_new_tokens=NEW, language=language)
    want = edgeseq.load(art, engine="openvino").transcribe(SPEECH, max_new_tokens=NEW, language=language)
    assert got.ids == want.ids and len(got.ids[0]) == NEW, (got.ids, want.ids)
    assert got.timings["ttft_ms"] > 0


def test_profile_row_is_timed(native: dict[str, Path]) -> None:
    from edgeseq.profile.runner import ProfileConfig, profile_artifact

    cfg = ProfileConfig(engine="ovgenai", output_lens=[8], warmup=1, reps=2, threads=1)
    (row,) = profile_artifact(native["en"], cfg.validate())
    assert row.status == "ok" and row.engine == "ovgenai" and row.precision == "f32", row.status
    assert math.isfinite(row.median("ttft_ms")) and row.median("tpot_ms") > 0


def test_cli_transcribe(native: dict[str, Path], tmp_path: Path) -> None:
    wav = tmp_path / "clip.wav"
    pcm = (voice_like(4.0, 16000, seed=5) * 32767).astype(np.int16)
    with wave.open(str(wav), "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(16000), w.writeframes(pcm.tobytes())

    def run(*a: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "edgeseq", "transcribe", str(native["en"]), str(wav),
                               "--max-new-tokens", "8", "--json", *a], capture_output=True, text=True, timeout=300)

    mine, theirs = run("--engine", "ovgenai"), run("--engine", "openvino")
    assert mine.returncode == 0, mine.stderr
    assert json.loads(mine.stdout)["text"] == json.loads(theirs.stdout)["text"]
    stamped = run("--engine", "ovgenai", "--timestamps")
    assert stamped.returncode != 0 and "--timestamps" in stamped.stderr and "Traceback" not in stamped.stderr


def test_refusals(native: dict[str, Path]) -> None:
    from edgeseq.export.parity import parity_features
    from edgeseq.generate.config import GenerationConfig
    from edgeseq.generate.loop import run
    from edgeseq.generate.speech import prompt

    ml = edgeseq.load(native["ml"], engine="ovgenai")
    with pytest.raises(UsageError, match="does not detect the language") as e:  # edgeseq's loop detects it
        ml.transcribe(SPEECH, max_new_tokens=4)
    assert "--language" in e.value.hint
    en = edgeseq.load(native["en"], engine="ovgenai")
    with pytest.raises(UsageError, match="timestamp"):
        en.transcribe(SPEECH, max_new_tokens=4, timestamps=True)
    m = en.manifest
    cfg = GenerationConfig(max_new_tokens=4, ignore_eos=True).validate()
    with pytest.raises(UsageError, match="needs the audio samples"):  # features alone: the pipeline makes its own
        run(en.backend, [prompt(m.audio["tokens"])], cfg, m.generation, features=parity_features(m.audio))
