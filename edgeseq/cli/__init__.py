"""`edgeseq export | generate | profile | compare | devices | verify | demo`: the command line.

Every user-facing failure is an EdgeseqError: printed as one line naming the fix, with a distinct
exit code per class; `--debug` shows the traceback instead.
"""
from __future__ import annotations

import signal
import sys
import traceback
from collections.abc import Sequence

from ..errors import EdgeseqError
from .commands import COMMANDS
from .parser import build_parser


def main(argv: Sequence[str] | None = None) -> int:
    ap = build_parser()
    a = ap.parse_args(argv)
    if not a.command:
        ap.print_help()
        return 2
    try:
        return COMMANDS[a.command](a)
    except EdgeseqError as e:
        if a.debug:
            traceback.print_exc()
        print(f"error: {e.message}", file=sys.stderr)
        if e.hint:
            print(f"hint: {e.hint}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # more Ctrl-Cs (as `timeout` relays them) cannot cut the exit
        print("\ninterrupted", file=sys.stderr)
        return 130
    except Exception as e:  # a bug, not a user error: say so, keep the trace one flag away
        if a.debug:
            raise
        print(f"internal error: {type(e).__name__}: {e}", file=sys.stderr)
        print("hint: re-run with --debug and report the traceback", file=sys.stderr)
        return 70


__all__ = ["main", "build_parser"]
