"""Subnormal floats flushed to zero on the calling thread while an engine runs, and only then.

ONNX Runtime, asked to compute subnormal floats as zero, sets the CPU's flags for it (x86: the FTZ and
DAZ bits of MXCSR) on its own threads, and on the calling thread only while the process's first
session is created, where it then leaves them: numpy, torch or a test library on that thread would
see subnormal values vanish (hypothesis refuses to run: "we can't represent subnormal floats right
now"), and a second model's calls on that thread would not flush. `EngineEnv` sets the flags itself,
for the span of a session's load or call, and gives the thread its own environment back afterwards:
C's fegetenv / fesetenv (libm) save and load the whole environment, the MXCSR word included, cheaply
enough to do around every call. The word's place in fenv_t is known here for Linux on x86-64;
elsewhere the calling thread keeps its environment and only the engine's own threads flush.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import platform
import sys
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")
_ENV_BYTES = 256  # room for any platform's fenv_t (x86-64 glibc: 32 bytes)
# x86-64 glibc: fenv_t ends with the MXCSR word; bit 15 flushes subnormal results to zero (FTZ), bit 6
# reads subnormal operands as zero (DAZ)
_MXCSR_AT, _FTZ_DAZ = 28, 0x8040
_LAYOUT_KNOWN = sys.platform.startswith("linux") and platform.machine() in ("x86_64", "AMD64")


def _libm() -> Any | None:
    try:
        lib = ctypes.CDLL(ctypes.util.find_library("m") or "libm.so.6")
        lib.fegetenv.restype = lib.fesetenv.restype = ctypes.c_int
        return lib
    except (OSError, AttributeError):
        return None


_LIBM = _libm()


def _saved() -> Any:
    env = ctypes.create_string_buffer(_ENV_BYTES)
    _LIBM.fegetenv(env)
    return env


def _flushing(env: Any) -> Any:
    """A copy of `env` that flushes subnormals (or `env` itself where the layout is not known)."""
    if not _LAYOUT_KNOWN:
        return env
    out = ctypes.create_string_buffer(env.raw, _ENV_BYTES)
    word = ctypes.c_uint32.from_buffer(out, _MXCSR_AT)
    word.value |= _FTZ_DAZ
    return out


class EngineEnv:
    """`run(fn, ...)`: fn (an engine's load or call) with subnormals flushed on this thread when `flush`;
    the thread's environment, whatever fn did to it, is its own again afterwards. The flushing form of
    each caller environment seen is built once, not per call: a decode step's Python runs on caches the
    engine has just evicted, where building it each call costs the most."""

    def __init__(self, flush: bool) -> None:
        self.flush = flush and _LIBM is not None
        self._flushing: dict[bytes, Any] = {}  # a caller's environment -> its copy that flushes

    def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        if not self.flush:
            return fn(*args, **kwargs)
        caller = _saved()
        key = caller.raw
        flushing = self._flushing.get(key)
        if flushing is None:
            if len(self._flushing) >= 64:  # keys hold the sticky exception flags: few in practice, bounded
                self._flushing.clear()
            flushing = self._flushing[key] = _flushing(caller)
        _LIBM.fesetenv(flushing)
        try:
            return fn(*args, **kwargs)
        finally:
            _LIBM.fesetenv(caller)
