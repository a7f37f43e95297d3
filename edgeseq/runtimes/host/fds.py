"""File descriptors redirected past Python, for engines whose native libraries print directly."""
from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator


@contextlib.contextmanager
def redirected(fds: tuple[int, ...], path: str = os.devnull) -> Iterator[None]:
    """File descriptors `fds` into `path` for the block (default: discarded). For engines whose
    native libraries print to stdout / stderr directly, past Python's sys.stdout and sys.stderr."""
    sys.stdout.flush()
    sys.stderr.flush()
    target = os.open(path, os.O_WRONLY | os.O_APPEND)
    saved = [os.dup(fd) for fd in fds]
    try:
        for fd in fds:
            os.dup2(target, fd)
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        for fd, old in zip(fds, saved):
            os.dup2(old, fd)
            os.close(old)
        os.close(target)
