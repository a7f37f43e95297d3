"""`edgeseq profile --auto`: every installed engine and compute precision is checked against the
artifact's own engine at float32, only those within tolerance are profiled, the fastest is named."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgeseq.cli import main

FAST = ["--input-len", "8", "--output-len", "4", "--reps", "1", "--warmup", "0", "--no-bandwidth"]


def test_auto_checks_profiles_and_names_the_fastest(artifacts: dict[str, Path], tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("openvino", reason="the openvino extra is not installed: only one engine to try")
    out = tmp_path / "auto.json"  # gpt2: llama's ONNX graphs attend with an ONNX Runtime kernel (OpenVINO refuses)
    code = main(["profile", str(artifacts["gpt2"]), "--auto", "--json", str(out), *FAST])
    stdout = capsys.readouterr().out
    assert code == 0 and "fastest within tolerance" in stdout
    doc = json.loads(out.read_text())
    checks = doc["checks"][str(artifacts["gpt2"])]
    assert [(c["engine"], c["asked"]) for c in checks] == [("onnxruntime", "f32"), ("openvino", "f32"),
                                                            ("openvino", "bf16")]
    assert checks[0]["status"] == "passed" and checks[0]["max_abs_diff"] == 0.0  # the reference itself
    passed = {(c["engine"], c["precision"]) for c in checks if c["status"] == "passed"}
    assert {(r["engine"], r["precision"]) for r in doc["results"]} == passed
    best = doc["winners"][str(artifacts["gpt2"])]
    assert best["e2e_ms"] == min(r["e2e_ms"] for r in doc["results"])


def test_a_setting_outside_tolerance_is_not_profiled(artifacts: dict[str, Path], tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("openvino", reason="the openvino extra is not installed: only one engine to try")
    from edgeseq import accuracy

    zero = {"atol": 0.0, "rtol": 0.0}  # only bit-identical logits pass: OpenVINO's differ in the last bits
    monkeypatch.setitem(accuracy.TOLERANCE, "fp32", zero)
    monkeypatch.setitem(accuracy.TOLERANCE, "bf16", zero)
    out = tmp_path / "auto.json"
    # gpt2: a plain ONNX graph, which OpenVINO runs too (Llama and T5 attend with ONNX Runtime's kernel)
    assert main(["profile", str(artifacts["gpt2"]), "--auto", "--json", str(out), *FAST]) == 0
    doc = json.loads(out.read_text())
    assert {r["engine"] for r in doc["results"]} == {"onnxruntime"}
    assert [c["status"] for c in doc["checks"][str(artifacts["gpt2"])]] == ["passed", "failed", "failed"]
    assert "openvino f32: failed" in capsys.readouterr().out


def test_auto_refuses_an_explicit_engine(artifacts: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["profile", str(artifacts["llama"]), "--auto", "--engine", "openvino", *FAST]) == 2
    assert "--auto chooses the engine" in capsys.readouterr().err


def test_an_engine_that_cannot_run_the_graphs_is_skipped_not_tried(artifacts: dict[str, Path], tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """Llama's ONNX graphs attend with ONNX Runtime's kernel: --auto says OpenVINO was skipped and why, and a
    device with no ONNX Runtime row does not fall back to OpenVINO for them (it does for gpt2's plain graphs)."""
    pytest.importorskip("openvino", reason="the openvino extra is not installed: only one engine to try")
    from edgeseq.artifact.manifest import read
    from edgeseq.runtimes import device_engine
    from edgeseq.runtimes.engines import onnxruntime, openvino

    out = tmp_path / "auto.json"
    assert main(["profile", str(artifacts["llama"]), "--auto", "--json", str(out), *FAST]) == 0
    checks = json.loads(out.read_text())["checks"][str(artifacts["llama"])]
    assert [(c["engine"], c["status"]) for c in checks] == [("onnxruntime", "passed"), ("openvino", "skipped"),
                                                            ("openvino", "skipped")]
    printed = capsys.readouterr().out
    assert "openvino f32: skipped (attends with ONNX Runtime's GroupQueryAttention" in printed
    assert "--no-ort-kernels" in printed  # the export that avoids it
    monkeypatch.setattr(onnxruntime, "probe", lambda row: None if row.target == "CPUExecutionProvider" else "absent")
    monkeypatch.setattr(openvino, "probe", lambda row: None)
    assert device_engine(read(artifacts["gpt2"]), "gpu") == "openvino"
    assert device_engine(read(artifacts["llama"]), "gpu") == "onnxruntime"  # whose error names the missing rows
