"""`edgeseq export | generate | transcribe | profile | compare | devices | verify | demo`: the command line.

Every user-facing failure is an EdgeseqError: printed as one line naming the fix, with a distinct
exit code per class; `--debug` shows the traceback instead.
"""
from __future__ import annotations

import argparse
import signal
import traceback
from collections.abc import Sequence
from pathlib import Path

from ..console import console, log_dir, session
from ..errors import EdgeseqError
from .commands import COMMANDS
from .parser import build_parser


def main(argv: Sequence[str] | None = None) -> int:
    ap = build_parser()
    a = ap.parse_args(argv)
    if not a.command:
        ap.print_help()
        return 2
    level = "verbose" if a.verbose else "quiet" if a.quiet else "normal"
    with session(level, log_path(a)):
        return _run(a)


def _run(a: argparse.Namespace) -> int:
    """The command, with every failure as edgeseq's lines (and the log that holds what else was printed)."""
    try:
        return COMMANDS[a.command](a)
    except EdgeseqError as e:
        if a.debug:
            traceback.print_exc(file=console.err)
        console.result(f"error: {e.message}")
        if e.hint:
            console.result(f"hint: {e.hint}")
        _name_log()
        return e.exit_code
    except KeyboardInterrupt:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # more Ctrl-Cs (as `timeout` relays them) cannot cut the exit
        console.result("\ninterrupted")
        return 130
    except Exception as e:  # a bug, not a user error: say so, keep the trace one flag away
        if a.debug:
            raise
        console.result(f"internal error: {type(e).__name__}: {e}")
        console.result("hint: re-run with --debug and report the traceback")
        _name_log()
        return 70


def _name_log() -> None:
    log = console.kept_log()
    if log is not None:
        console.result(f"log: {log} (the steps, and what the libraries printed)")


def log_path(a: argparse.Namespace) -> Path:
    """Where a command's log is kept: an export's beside its --out (OUT.export.log), compare's and
    demo's in OUT/logs/, the others' under the cache folder, one per command (the latest run)."""
    if a.command == "export":
        out = Path(a.out)
        return out.parent / f"{out.name}.export.log"
    if a.command in ("compare", "demo"):
        return Path(a.out) / "logs" / f"{a.command}.log"
    return log_dir() / f"{a.command}.log"


__all__ = ["main", "build_parser"]
