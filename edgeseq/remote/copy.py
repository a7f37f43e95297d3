"""Copy a set of files to a folder on a remote device once, resumably, verified on arrival.

Files land in `FINAL.partial/` and are appended from where an interrupted copy stopped (byte
offsets, over the ssh connection itself: `cat >>`, so the device needs no scp, sftp or rsync). When
every file is there, the remote helper checks each one's SHA-256 and renames the folder to FINAL;
a file that does not match is deleted and sent again. A FINAL folder that exists is complete, so a
second run copies nothing.
"""
from __future__ import annotations

import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..errors import RemoteError
from .target import Target

CHUNK = 1 << 20  # bytes written to the connection per step (and between progress calls)
PASSES = 2  # a file that arrives wrong is sent once more before the copy gives up


@dataclass
class CopyStats:
    """What a push sent: files written to (or appended to), and bytes over the connection."""
    files: int = 0
    bytes: int = 0

    def __iadd__(self, other: "CopyStats") -> "CopyStats":
        self.files += other.files
        self.bytes += other.bytes
        return self


def push(target: Target, files: dict[str, tuple[Path, str]], final: str,
         progress: Callable[[int], None] | None = None, what: str = "files") -> CopyStats:
    """Make remote folder `final` hold `files` (name -> (local path, SHA-256)); the bytes sent.
    `progress` is told the bytes sent so far after each chunk."""
    stats = CopyStats()
    for _ in range(PASSES):
        state = target.agent("stage", final)
        if state["final"]:
            return stats
        part = final + ".partial"
        for name, (path, _digest) in files.items():
            size, there = path.stat().st_size, state["partial"].get(name, 0)
            if there == size:
                continue
            if there > size:  # not this file: start it again
                target.run(["rm", "-f", f"{part}/{name}"], what=f"copying {what}")
                there = 0
            stats.files += 1
            stats.bytes += _append(target, path, f"{part}/{name}", there, stats.bytes, progress, what)
        bad = target.agent("verify", final, _spec(files))["bad"]
        if not bad:
            return stats
    raise RemoteError(f"{', '.join(bad)} arrived altered on {target.name} twice (SHA-256 differs)",
                      "check the device's storage and free space, then run again")


def _spec(files: dict[str, tuple[Path, str]]) -> str:
    import json

    return json.dumps({name: digest for name, (_path, digest) in files.items()})


def _append(target: Target, path: Path, remote: str, offset: int, sent_before: int,
            progress: Callable[[int], None] | None, what: str) -> int:
    """Send `path` from byte `offset` to the end of `remote`; the bytes sent. A broken connection
    leaves what arrived in place, for the next run to append to."""
    cmd = f"cat >> {shlex.quote(remote)}"
    proc = subprocess.Popen(target.ssh_argv(cmd), stdin=subprocess.PIPE, stderr=subprocess.PIPE)
    sent = 0
    assert proc.stdin is not None and proc.stderr is not None
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            for block in iter(lambda: f.read(CHUNK), b""):
                proc.stdin.write(block)
                proc.stdin.flush()
                sent += len(block)
                if progress is not None:
                    progress(sent_before + sent)
        proc.stdin.close()
    except BrokenPipeError:
        pass  # the connection went away: its exit status and stderr say why
    err = proc.stderr.read().decode(errors="replace")
    code = proc.wait()
    if code != 0:
        raise target.error(code, err, f"copying {what}")
    return sent
