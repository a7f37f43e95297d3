"""Every (engine, cache form) pair through one walk: the forms of runtimes/cache.py must behave alike.

Each case opens an engine on a tiny artifact with the options that select one form, checks that the
backend picked that form, and walks conftest.cache_walk (a left-padded batch of two, prefill, decodes,
beam tiling and composed reorders, rewinds and re-decodes). Its logits must be those of the explicit
arrays form of ONNX Runtime on the dynamic ONNX artifact. A pair this host cannot run skips through
its engine's probe, which says why."""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
from conftest import LITERT_MISSING, cache_walk

from edgeseq.accuracy import TOLERANCE
from edgeseq.artifact import manifest as mf
from edgeseq.errors import InputError
from edgeseq.reference import open_runner
from edgeseq.runtimes.base import BackendOptions


def _ov_missing() -> str | None:
    return None if importlib.util.find_spec("openvino") else "openvino not installed: pip install 'edgeseq[openvino]'"


def _qnn_missing() -> str | None:
    from edgeseq.runtimes.engines import qnn

    why = qnn.probe()
    return f"{why}: pip install onnxruntime-qnn" if why else None


def _litert_missing() -> str | None:
    return f"{LITERT_MISSING} not installed: pip install 'edgeseq[tflite]'" if LITERT_MISSING else None


@dataclass(frozen=True)
class Pair:
    engine: str
    form: str  # CacheForm.name the backend must pick
    artifact: str  # the fixture holding the artifacts: artifacts, ov_ir, npu_artifacts, tflite_artifacts
    families: tuple[str, ...] = ("llama", "t5")
    device: str = "cpu"
    extra: dict[str, Any] = field(default_factory=dict)
    rule: str = "fp32"  # accuracy.TOLERANCE row against the reference
    missing: Callable[[], str | None] = lambda: None  # the probe: why this host cannot run the pair


PAIRS = [
    Pair("onnxruntime", "arrays", "artifacts", extra={"kv_buffer": False}),
    Pair("onnxruntime", "buffers", "artifacts", extra={"kv_buffer": True}),
    Pair("onnxruntime", "device-values", "artifacts", extra={"device_cache": True}),  # a GPU's default, on the CPU
    # the compiled PyTorch engine's leased slots, eager here (tests/test_compiled_engine.py compiles them)
    Pair("torch-compile", "device-slots", "artifacts", extra={"compile": False, "min_bucket": 16}),
    Pair("openvino", "arrays", "ov_ir", extra={"precision": "f32", "stateful": False}, missing=_ov_missing),
    Pair("openvino", "state", "ov_ir", extra={"precision": "f32", "paged": False}, missing=_ov_missing),
    # encoder-decoder steps keep the state form: paged attention is decoder-only
    Pair("openvino", "paged", "ov_ir", ("llama",), extra={"precision": "f32", "paged": True}, missing=_ov_missing),
    Pair("onnxruntime", "slots", "npu_artifacts"),
    Pair("openvino", "slots", "npu_artifacts", extra={"precision": "f32"}, missing=_ov_missing),
    Pair("litert", "slots", "tflite_artifacts", missing=_litert_missing),
    # HTP computes a float graph in float16; its simulator is slow, so one family
    Pair("onnxruntime", "slots", "npu_artifacts", ("llama",), device="npu", rule="fp16", missing=_qnn_missing),
]
CASES = [pytest.param(p, f, id=f"{p.engine}{'-' + p.device if p.device != 'cpu' else ''}-{p.form}-{f}")
         for p in PAIRS for f in p.families]


@pytest.fixture(scope="module")
def ov_ir(hf_dirs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The tiny Llama and T5 as OpenVINO IR."""
    from edgeseq.export.pipeline import export

    root = tmp_path_factory.mktemp("forms-ov")
    return {f: (export(str(hf_dirs[f]), root / f, format="openvino", quiet=True), root / f)[1] for f in ("llama", "t5")}


@pytest.fixture(scope="module")
def reference(artifacts: dict[str, Path]) -> Callable[[str], list[np.ndarray]]:
    """The walk's logits through ONNX Runtime's explicit arrays on the dynamic ONNX artifact, per family."""
    done: dict[str, list[np.ndarray]] = {}

    def walk(family: str) -> list[np.ndarray]:
        if family not in done:
            m = mf.read(artifacts[family])
            b = open_runner(artifacts[family], m, "cpu", "onnxruntime", BackendOptions(engine_options={"kv_buffer": False}))
            done[family] = cache_walk(b, m)
        return done[family]

    return walk


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Compiled graphs (QNN, OpenVINO, XNNPACK weights) go to this session's cache, not the user's."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.getbasetemp() / "xdg-cache"))


@pytest.mark.parametrize("pair,family", CASES)
def test_cache_form_walk(pair: Pair, family: str, request: pytest.FixtureRequest,
                         reference: Callable[[str], list[np.ndarray]]) -> None:
    why = pair.missing()
    if why:
        pytest.skip(why)
    d = request.getfixturevalue(pair.artifact)[family]
    m = mf.read(d)
    options = dict(pair.extra)  # the engine's typed options, plus the common precision setting
    precision = options.pop("precision", "f32")
    b = open_runner(d, m, pair.device, pair.engine, BackendOptions(precision=precision, engine_options=options))
    assert b.kv_cache.name == pair.form, f"{pair.engine} picked {type(b.kv_cache).__name__}"
    described = (b.placement() or {}).get("kv_cache")
    assert (described is None) == (pair.form in ("arrays", "slots")), described  # the held forms say what they are
    tol = TOLERANCE[pair.rule]
    for i, (got, want) in enumerate(zip(cache_walk(b, m), reference(family), strict=True)):
        assert got.shape == want.shape, i
        np.testing.assert_allclose(got, want, atol=tol["atol"] + tol["rtol"] * float(np.abs(want).max()), rtol=0,
                                   err_msg=f"step {i} of the walk")
    s = b.new_state(1)
    with pytest.raises(InputError, match="cannot rewind 1 positions of a cache holding 0"):
        b.trim(s, 1)
