"""The runtime-only install: the wheel in a clean venv (no torch, no transformers) loads an
exported artifact and generates. Needs the package registry, as CI has."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = """
import importlib.util, sys
import edgeseq
for banned in ("torch", "transformers", "onnx"):
    assert importlib.util.find_spec(banned) is None, banned + " is installed in the runtime venv"
m = edgeseq.load(sys.argv[1])
out = m.generate("hello there", max_new_tokens=6, ignore_eos=True)
print(len(out.ids[0]), "".join(m.stream("hello there", max_new_tokens=3)) is not None)
"""


def _run(*cmd: str) -> str:
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 0, f"{' '.join(cmd)}\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}"
    return r.stdout


def test_wheel_in_clean_venv_generates(artifacts: dict[str, Path], tmp_path: Path) -> None:
    _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path / "dist"), str(ROOT))
    wheel = next((tmp_path / "dist").glob("edgeseq-*.whl"))
    venv = tmp_path / "venv"
    _run(sys.executable, "-m", "venv", str(venv))
    py = str(venv / "bin" / "python")
    _run(py, "-m", "pip", "install", "-q", "-c", str(ROOT / "constraints.txt"), str(wheel))
    out = _run(py, "-c", SCRIPT, str(artifacts["llama"]))
    assert out.split() == ["6", "True"]
    size = sum(f.stat().st_size for f in venv.rglob("*") if f.is_file()) / 2**20
    print(f"runtime venv: {size:.0f} MiB")
