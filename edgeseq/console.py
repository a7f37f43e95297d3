"""edgeseq's own output, kept apart from what its dependencies print.

The command line prints only edgeseq's lines (numbered steps, its progress bars, results, errors
with hints). While a command runs, file descriptors 1 and 2 go to a log file: whatever a
dependency writes there (Python warnings, logging, tqdm bars, native libraries) lands in the log,
next to edgeseq's own lines, and edgeseq writes to the terminal through duplicates of the original
descriptors (`console.out`, `console.err`). `--verbose` leaves the descriptors alone; `--quiet`
prints results and errors only. Library use (`edgeseq.load`) captures the few noisy calls with
`muffled()` and hands their text to the `edgeseq` logger at DEBUG.
"""
from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

LEVELS = ("quiet", "normal", "verbose")
_PROGRESS_ENV = "HF_HUB_DISABLE_PROGRESS_BARS"  # transformers' and the hub's bars (weight loading, shards)


class Console:
    """Where edgeseq's lines go: the terminal while a command captures the descriptors, else the
    current sys.stdout / sys.stderr (so library callers and test harnesses see them as before)."""

    def __init__(self) -> None:
        self.level = "normal"
        self.log: Path | None = None  # where the log is kept when the command ends
        self._out: TextIO | None = None
        self._err: TextIO | None = None
        self._log_fd: int | None = None
        self._noted = 0  # bytes of edgeseq's own lines in the log
        self.said = False  # a step was announced: the log tells a story worth keeping

    @property
    def out(self) -> TextIO:
        return self._out or sys.stdout

    @property
    def err(self) -> TextIO:
        return self._err or sys.stderr

    @property
    def quiet(self) -> bool:
        return self.level == "quiet"

    @property
    def capturing(self) -> bool:
        return self._log_fd is not None

    def say(self, msg: str, show: bool = True) -> None:
        """A step or progress line: on stderr when `show` and not --quiet; always in the log."""
        self.said = True
        if show and not self.quiet:
            print(msg, file=self.err, flush=True)
        self.note(msg)

    def result(self, msg: str, stderr: bool = True) -> None:
        """A result, a warning or an error: printed at every level, and in the log."""
        print(msg, file=self.err if stderr else self.out, flush=True)
        self.note(msg)

    def note(self, msg: str) -> None:
        """Into the log only (in order with what dependencies wrote), when capturing."""
        if self._log_fd is None:
            return
        sys.stdout.flush()
        sys.stderr.flush()
        data = (msg + "\n").encode(errors="replace")
        os.write(self._log_fd, data)
        self._noted += len(data)

    def foreign_bytes(self) -> int:
        """How much of the log dependencies wrote (everything that is not edgeseq's own lines)."""
        if self._log_fd is None:
            return 0
        sys.stdout.flush()
        sys.stderr.flush()
        return os.fstat(self._log_fd).st_size - self._noted

    def kept_log(self) -> Path | None:
        """The log that will be kept when the command ends, if any (named in error messages)."""
        return self.log if self.capturing and (self.said or self.foreign_bytes() > 0) else None


console = Console()


def _terminal(stream: TextIO, fd: int) -> TextIO | None:
    """A new stream on a duplicate of `fd` when `stream` writes to it; None when it writes elsewhere
    (a test harness or notebook object), which is then used as it is."""
    try:
        if stream.fileno() != fd:
            return None
    except (AttributeError, OSError, ValueError):
        return None
    return open(os.dup(fd), "w", buffering=1, encoding=getattr(stream, "encoding", None) or "utf-8",
                errors=getattr(stream, "errors", None) or "replace", closefd=True)


@contextlib.contextmanager
def session(level: str, log: Path | None) -> Iterator[Console]:
    """One command's output. `log` None or level verbose: nothing captured. Otherwise descriptors 1
    and 2 write to a temporary file, moved to `log` at the end when it holds a step or anything a
    dependency wrote (an empty one is deleted)."""
    assert level in LEVELS, level
    console.level, console.said, console._noted = level, False, 0
    if log is None or level == "verbose":
        try:
            yield console
        finally:
            console.level = "normal"
        return
    sys.stdout.flush()
    sys.stderr.flush()
    fd, tmp = tempfile.mkstemp(prefix="edgeseq-", suffix=".log")
    os.close(fd)
    log_fd = os.open(tmp, os.O_WRONLY | os.O_APPEND)
    out, err = _terminal(sys.stdout, 1), _terminal(sys.stderr, 2)
    console._out, console._err = out or sys.stdout, err or sys.stderr
    saved = [os.dup(1), os.dup(2)]
    env_set = _PROGRESS_ENV not in os.environ
    if env_set:
        os.environ[_PROGRESS_ENV] = "1"  # transformers reads it at import
    _hf_bars_off()
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    console.log, console._log_fd = log, log_fd
    try:
        yield console
    finally:
        keep = console.kept_log() is not None
        sys.stdout.flush()
        sys.stderr.flush()
        for fd_, old in zip((1, 2), saved):
            os.dup2(old, fd_)
            os.close(old)
        os.close(log_fd)
        for s in (out, err):
            if s is not None:
                s.close()
        console._out = console._err = None
        console._log_fd, console.level = None, "normal"
        if env_set:  # the hub reads it once, at import: its bars stay off in this process (a CLI run)
            os.environ.pop(_PROGRESS_ENV, None)
        if keep:
            log.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(tmp, log)
        else:
            os.unlink(tmp)


def _hf_bars_off() -> None:
    """transformers' bars when it is already imported (the environment variable covers a later import)."""
    tf = sys.modules.get("transformers.utils.logging")
    if tf is not None:
        tf.disable_progress_bar()


@contextlib.contextmanager
def muffled(what: str) -> Iterator[None]:
    """For library calls that make dependencies print (importing torch and transformers, loading
    weights): inside a command, a no-op (its session captures everything); otherwise descriptors
    1 and 2 into a temporary file whose text goes to the `edgeseq` logger at DEBUG."""
    if console.capturing or console.level == "verbose":
        yield
        return
    from .runtimes.host.fds import redirected

    fd, tmp = tempfile.mkstemp(prefix="edgeseq-", suffix=".log")
    os.close(fd)
    try:
        with redirected((1, 2), tmp):
            yield
        text = Path(tmp).read_text(errors="replace").strip()
        if text:
            logging.getLogger("edgeseq").debug("%s printed:\n%s", what, text)
    finally:
        os.unlink(tmp)


def log_dir() -> Path:
    """Logs of commands without a directory of their own: $XDG_STATE_HOME/edgeseq/logs (default
    ~/.local/state/edgeseq/logs), apart from the engine caches that `edgeseq cache --clear` deletes."""
    return Path(os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")) / "edgeseq" / "logs"
