"""ONNX Runtime sessions compute subnormal floats as zero (runtimes/onnxruntime.flush_denormals), while
the thread that loads and calls them keeps its own floating-point environment (runtimes/fpenv.py)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import edgeseq
from edgeseq.artifact import manifest as mf
from edgeseq.generate.config import GenerationConfig
from edgeseq.runtimes.host import fpenv
from edgeseq.runtimes.engines import onnxruntime as ort_engine
from edgeseq.runtimes import open_backend
from edgeseq.runtimes.base import BackendOptions

TINY, ONE = np.array([1e-39], np.float32), np.ones(1, np.float32)  # 1e-39: below float32's least normal


def _thread_keeps_subnormals() -> bool:
    return bool((TINY * ONE)[0] != 0)


class _Owner(ort_engine._Sessions):
    def __init__(self, folder: Path, flush: bool) -> None:
        self.artifact, self.manifest = folder, None
        self.options = BackendOptions(threads=1)
        self.engine_options = ort_engine.OnnxRuntimeOptions(flush_denormals=flush)


def test_switch() -> None:
    """On by default; the engine option turns it off; no environment variable is read."""
    assert ort_engine.flush_denormals(ort_engine.OnnxRuntimeOptions())
    assert not ort_engine.flush_denormals(ort_engine.OnnxRuntimeOptions(flush_denormals=False))


@pytest.mark.parametrize("flush", [True, False])
def test_the_session_flushes_and_the_calling_thread_does_not(tmp_path: Path, flush: bool) -> None:
    io = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1]) for n in "xyz"]
    m = helper.make_model(helper.make_graph([helper.make_node("Mul", ["x", "y"], ["z"])], "g", io[:2], io[2:]),
                          opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 9
    onnx.save(m, str(tmp_path / "mul.onnx"))
    assert _thread_keeps_subnormals()
    for _ in range(2):  # ONNX Runtime itself sets the flags on this thread for a process's first session only
        owner = _Owner(tmp_path, flush)
        session = owner._open("mul.onnx", "CPUExecutionProvider")
        assert _thread_keeps_subnormals()  # after the load
        got = owner._fp.run(session.run, None, {"x": TINY, "y": ONE})[0][0]
        assert _thread_keeps_subnormals()  # after a call
        assert got == 0.0 if flush else got == pytest.approx(1e-39, rel=1e-3)


def test_profiles_record_it_and_generation_leaves_the_thread_alone(artifacts: dict[str, Path]) -> None:
    d = artifacts["llama"]
    on, off = (open_backend(d, mf.read(d), "cpu", "onnxruntime", BackendOptions(engine_options={"flush_denormals": f}))
               for f in (True, False))
    assert on.placement()["denormals"] == "flushed to zero"  # type: ignore[attr-defined]
    assert "denormals" not in off.placement()  # type: ignore[attr-defined]
    model = edgeseq.load(d)
    model.generate_ids([[5, 6, 7]], GenerationConfig(max_new_tokens=3, ignore_eos=True))
    assert _thread_keeps_subnormals()


@pytest.mark.skipif(fpenv._LIBM is None or not fpenv._LAYOUT_KNOWN, reason="needs libm and a known fenv_t layout")
def test_each_caller_environment_gets_its_own_flushing_form() -> None:
    """The flushing environment is kept per caller environment: a call made under another rounding mode
    or with other exception flags raised runs under that mode (flushing), the caller's mode and flags
    are back afterwards, and the cache of flushing forms stays bounded."""
    import ctypes

    libm = fpenv._LIBM
    libm.fegetround.restype = ctypes.c_int
    upward, nearest = 0x800, 0x000  # x86-64 glibc FE_UPWARD, FE_TONEAREST
    env = fpenv.EngineEnv(True)
    seen = []

    def inside() -> None:
        seen.append((libm.fegetround(), (TINY * ONE)[0] == 0))

    assert _thread_keeps_subnormals()  # sets the sticky denormal flag, which feclearexcept leaves alone
    try:
        for mode in (nearest, upward, nearest, upward):
            libm.fesetround(mode)
            libm.feclearexcept(0x3D)  # FE_ALL_EXCEPT: the other sticky flags are part of the key too
            env.run(inside)
            assert libm.fegetround() == mode and _thread_keeps_subnormals()
    finally:
        libm.fesetround(nearest)
    assert seen == [(nearest, True), (upward, True), (nearest, True), (upward, True)]
    assert len(env._flushing) == 2
    libm.fetestexcept.restype = ctypes.c_int
    flags = [0x01, 0x04, 0x08, 0x10, 0x20]  # x86-64 glibc FE_INVALID, _DIVBYZERO, _OVERFLOW, _UNDERFLOW, _INEXACT
    downward = 0x400  # FE_DOWNWARD
    try:  # the sticky exception flags are part of the key: 3 modes x 32 flag sets, the cache stays bounded
        for mode in (nearest, upward, downward):
            for k in range(32):
                libm.fesetround(mode)
                libm.feclearexcept(0x3D)
                raised = sum(f for i, f in enumerate(flags) if k >> i & 1)
                if raised:
                    libm.feraiseexcept(raised)
                seen.clear()
                env.run(inside)
                after = libm.fetestexcept(0x3D)  # read first: numpy operations clear the flags
                assert after == raised and seen == [(mode, True)] and _thread_keeps_subnormals()
    finally:
        libm.fesetround(nearest)
        libm.feclearexcept(0x3D)
    assert 0 < len(env._flushing) <= 64
