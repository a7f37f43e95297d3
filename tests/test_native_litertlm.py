"""`--native litertlm`: a tiny decoder-only tflite export bundled for LiteRT-LM, checked at export,
run through edgeseq.load / generate / profile on engine litertlm, and refused where it cannot run."""
from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import LITERT_MISSING, TFLITE_SHAPE, make_hf_dir

MISSING = LITERT_MISSING or next((m for m in ("litert_lm", "litert_lm_builder") if importlib.util.find_spec(m) is None),
                                 None)
pytestmark = pytest.mark.skipif(MISSING is not None, reason=f"{MISSING} not installed: pip install 'edgeseq[litertlm]'")
# the test tokenizer has 610 tokens: a vocabulary no larger keeps every id a text LiteRT-LM can stream
VOCAB = 610


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "edgeseq", *args], capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def bundled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from edgeseq.export.pipeline import export
    from edgeseq.steps.static import StaticShape

    root = tmp_path_factory.mktemp("litertlm")
    src = make_hf_dir("llama", root / "hf", vocab_size=VOCAB)
    export(str(src), root / "art", format="tflite", shape=StaticShape(**TFLITE_SHAPE), quiet=True,  # type: ignore[arg-type]
           native=("litertlm",))
    return root / "art"


def test_export_writes_a_checked_bundle(bundled: Path) -> None:
    m = json.loads((bundled / "edgeseq.json").read_text())
    record = m["native"]["litertlm"]
    assert record["files"] == ["model.litertlm"] and record["runtime"] == "LiteRT-LM"
    assert record["check"]["status"] == "passed", record["check"]
    assert "model.litertlm" in m["files"]
    assert sorted(p.name for p in bundled.iterdir()) == ["decoder.tflite", "edgeseq.json", "model.litertlm",
                                                         "tokenizer.json"]  # no runtime cache left in the artifact


def test_greedy_tokens_equal_litert_engine(bundled: Path) -> None:
    """32 greedy tokens through edgeseq.load on both engines: equal as text (LiteRT-LM streams text)."""
    import edgeseq
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(bundled / "tokenizer.json"))
    ids = tok.encode("The weather on the coast", add_special_tokens=False).ids
    want = edgeseq.load(bundled).generate_ids([ids], max_new_tokens=32, ignore_eos=True).ids[0]
    got = edgeseq.load(bundled, engine="litertlm").generate_ids([ids], max_new_tokens=32, ignore_eos=True).ids[0]
    assert len(got) == len(want) == 32
    assert tok.decode(got, skip_special_tokens=False) == tok.decode(want, skip_special_tokens=False)


def test_profile_row_on_litertlm(bundled: Path, tmp_path: Path) -> None:
    out = tmp_path / "p.json"
    r = cli("profile", str(bundled), "--engine", "litertlm", "--input-len", "16", "--output-len", "8",
            "--reps", "2", "--warmup", "1", "--json", str(out))
    assert r.returncode == 0, r.stderr[-2000:]
    row = json.loads(out.read_text())["results"][0]
    assert row["engine"] == "litertlm"
    assert math.isfinite(row["ttft_ms"]) and math.isfinite(row["tpot_ms"]) and row["tpot_ms"] > 0


def test_artifact_without_bundle_is_refused(tmp_path: Path, bundled: Path) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    for f in ("decoder.tflite", "edgeseq.json", "tokenizer.json"):
        (plain / f).write_bytes((bundled / f).read_bytes())
    m = json.loads((plain / "edgeseq.json").read_text())
    m["native"] = {}
    m["files"].pop("model.litertlm")
    (plain / "edgeseq.json").write_text(json.dumps(m))
    r = cli("generate", str(plain), "hi", "--engine", "litertlm", "--max-new-tokens", "2")
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert "re-export with --format tflite --native litertlm" in r.stderr


def test_wrong_format_and_kind_are_refused(tmp_path: Path) -> None:
    r = cli("export", "preset:gpt2", "--format", "onnx", "--native", "litertlm", "--out", str(tmp_path / "x"))
    assert r.returncode != 0 and "Traceback" not in r.stderr and "--native litertlm needs --format tflite" in r.stderr
    from edgeseq.errors import UsageError
    from edgeseq.export import native

    with pytest.raises(UsageError, match="does not run encoder-decoder"):
        native.validate(["litertlm"], "tflite", "encoder-decoder")
