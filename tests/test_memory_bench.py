"""benchmarks/memory.py's pieces that need no export: the peer wrapper's load / generation marks on a stand-in
peer script, and the goals read off result rows."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH))

COMMON = '''
def measure(a, run_once):
    return {"ids": run_once()}

def emit(a, tool, m, prompt, precision, versions, notes=""):
    print("the timing line, which the wrapper replaces")
'''
# a stand-in peer: 200 MB held after "loading", 300 MB more touched and freed while "generating"
PEER = '''
import os, sys
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common as C
model = bytearray(200 * 2**20)
def run_once():
    scratch = bytearray(300 * 2**20)
    del scratch
    return [1, 2]
m = C.measure(None, run_once)
C.emit(None, "fake", m, list(range(int(sys.argv[1]))), "fp32", {})
'''


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="VmHWM reset is Linux's")
def test_peer_wrapper_marks_load_and_generation_apart(tmp_path: Path) -> None:
    (tmp_path / "_common.py").write_text(COMMON)
    (tmp_path / "peer_fake.py").write_text(textwrap.dedent(PEER))
    r = subprocess.run([sys.executable, str(BENCH / "memory_peer.py"), "--script", str(tmp_path / "peer_fake.py"),
                        "--", "7"], capture_output=True, text=True, check=True)
    row = json.loads(r.stdout.strip().splitlines()[-1])
    assert row["in_len"] == 7 and row["new_tokens"] == 2
    assert row["load_peak_mb"] - row["rss_before_load_mb"] >= 190  # the model, not yet the scratch
    assert row["load_peak_mb"] - row["rss_before_load_mb"] < 290
    assert row["gen_peak_mb"] - row["after_load_mb"] >= 290  # the scratch on top of the loaded model


def _row(tool: str, weights: str, artifact: float, peak: float, gen2048: float) -> dict:
    from memory import CLASS

    return {"model": "smollm2-135m-instruct", "tool": tool, "weights": weights, "class": CLASS[weights],
            "artifact_mb": artifact, "peak_mb": peak, "gen_peak_128_mb": peak, "gen_peak_2048_mb": gen2048,
            "peak_over_weights": round(peak / artifact, 2)}


def test_goals_name_each_check_with_its_figures() -> None:
    from memory import goals

    rows = [_row("edgeseq onnxruntime", "fp32", 517, 700, 900), _row("edgeseq openvino", "fp32", 516, 1280, 1500),
            _row("edgeseq onnxruntime", "int4", 95, 250, 400), _row("onnxruntime-genai", "fp32", 519, 650, 950),
            _row("onnxruntime-genai", "int4", 86, 261, 380)]
    out = goals(rows, [128, 2048])
    assert "- met: smollm2-135m-instruct edgeseq onnxruntime fp32 peak <= 1.5x weights: 700 MB / 517 MB = 1.35x" in out
    assert any(x.startswith("- NOT met: smollm2-135m-instruct edgeseq openvino fp32 peak") for x in out)
    assert any(x.startswith("- met: SmolLM2 4-bit artifact <= ~100 MB and peak < 300 MB") for x in out)
    # fp32: peak 700 > the peer's 650 (not met); 4-bit: artifact 95 > 86 (not met), @2048 400 > 380 (not met)
    assert any(x.startswith("- NOT met: smollm2-135m-instruct fp32 peak MB @128") and "700 vs onnxruntime-genai fp32 650"
               in x for x in out)
    assert any(x.startswith("- met: smollm2-135m-instruct fp32 gen peak MB @2048") for x in out)
    assert any(x.startswith("- NOT met: smollm2-135m-instruct 4-bit artifact MB") for x in out)
