"""Putting an export in place: `--out` checked before the model loads, one writer per `--out` (a lock),
the temporary directory (its mode from the umask), the final rename (an atomic exchange with
--overwrite), Ctrl-C handled once however often it comes, and what killed exports left swept away."""
from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import shutil
import signal
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import UsageError


def _unwritable(out: Path, e: OSError) -> UsageError:
    return UsageError(f"cannot write --out {out}: {e.strerror or e} ({e.filename or out.parent})",
                      "choose a directory you can write (a writable file system, a folder you own)")


@contextmanager
def claimed(out: Path, overwrite: bool) -> Iterator[Path]:
    """Before loading anything: make `out`'s parent, take its lock and make the hidden temporary
    directory the export writes into. Yields that directory; removes it on the way out. A second
    export to the same `out` while this one runs is refused (exit 2), never raced."""
    lock = out.parent / f".{out.name}.lock"
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as e:
        raise _unwritable(out, e) from e
    held = False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            # the holder removes the file when done: a lock on a file no longer at that path is not the lock
            held = os.stat(lock).st_ino == os.fstat(fd).st_ino
        except (BlockingIOError, FileNotFoundError):
            pass
        if not held:
            raise UsageError(f"another export is writing {out} now", "wait for it to finish, or choose another --out")
        if out.exists() and not overwrite:  # finished by another export since the first check
            raise UsageError(f"output directory {out} already exists", "pass --overwrite or choose another --out")
        sweep(out.parent)
        try:
            tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-{os.getpid()}-", dir=out.parent))
        except OSError as e:
            raise _unwritable(out, e) from e
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o777 & ~mask)  # mkdtemp makes 0700: the artifact follows the umask like any directory
        with _one_interrupt():  # removing the temporary directory included
            try:
                yield tmp
            finally:
                if tmp.exists():
                    shutil.rmtree(tmp, ignore_errors=True)
    finally:
        if held:
            lock.unlink(missing_ok=True)  # before releasing: a writer that opened it then sees it is stale
        os.close(fd)


def commit(tmp: Path, out: Path, overwrite: bool) -> None:
    """Move the finished `tmp` to `out`. Without overwrite an existing `out` is never replaced; with it the
    two directories are exchanged in one step where the system can (Linux renameat2), so `out` is always
    either the old artifact or the new one; the old one is then removed with `tmp`."""
    if not out.exists():
        tmp.rename(out)
        return
    if not overwrite:
        raise UsageError(f"output directory {out} already exists", "pass --overwrite or choose another --out")
    if _exchange(tmp, out):
        return
    old = out.parent / f".{out.name}.old-{os.getpid()}"
    out.rename(old)
    tmp.rename(out)
    shutil.rmtree(old, ignore_errors=True)


def _exchange(a: Path, b: Path) -> bool:
    libc = ctypes.CDLL(None, use_errno=True)
    fn = getattr(libc, "renameat2", None)
    if fn is None:
        return False
    at_fdcwd, rename_exchange = -100, 2
    if fn(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    if ctypes.get_errno() in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP):
        return False  # a file system without the exchange: the two-rename fallback
    raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()), str(b))


@contextmanager
def _one_interrupt() -> Iterator[None]:
    """The first Ctrl-C stops the export; later ones (a terminal or `timeout` relaying it to the process
    group) are ignored until its cleanup is done, so cleanup is never cut short."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    before = signal.getsignal(signal.SIGINT)

    def first(signum: int, frame: object) -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, first if before is signal.default_int_handler else before)
    try:
        yield
    except KeyboardInterrupt:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        raise
    finally:
        signal.signal(signal.SIGINT, before)  # the CLI ignores any further ones while it exits (130)


def sweep(parent: Path) -> None:
    """Delete the temporary directories of exports into `parent` that were killed (their process is gone)."""
    for d in list(parent.glob(".*.partial-*")) + list(parent.glob(".*.old-*")):
        try:
            pid = int(d.name.rsplit("-", 2)[-2] if ".partial-" in d.name else d.name.rsplit("-", 1)[1])
        except (IndexError, ValueError):
            continue
        if d.is_dir() and not _alive(pid):
            shutil.rmtree(d, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
