"""One peer row of benchmarks/memory.py: a shared peer script (../shared/peers) run unchanged inside this
process, with the memory marks edgeseq's rows get. Runs under the peer venv's python (no edgeseq there).

The peer's engine modules (--import) are imported first, so that what follows is the model's own memory on
top of the same kind of baseline edgeseq's rows have (interpreter + engine library). Then the kernel's
peak resident set (VmHWM) is reset, as edgeseq/profile/memory.py does (loaded here from its file: it needs
only the standard library), and the peer script runs. Its `_common.measure` (called after the model is
loaded, around the generate calls) is wrapped: on entry the high-water mark so far is the load peak; it is
reset, and the mark after the runs is the generation peak. `_common.emit` prints this row's JSON line
instead of the timing one. Pass the peer script `--warmup 0 --reps 1`: one generate call.

    venv/bin/python memory_peer.py --script ../shared/peers/peer_ovgenai.py --import openvino_genai \
        -- --model DIR --tokenizer DIR/tokenizer.json --in-len 128 --out-len 32 --warmup 0 --reps 1
"""
from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import runpy
import sys
from pathlib import Path
from typing import Any, Callable

MEMORY = Path(__file__).resolve().parents[1] / "edgeseq" / "profile" / "memory.py"


def _memory_module() -> Any:
    spec = importlib.util.spec_from_file_location("edgeseq_profile_memory", MEMORY)
    assert spec is not None and spec.loader is not None, MEMORY
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # its dataclasses look their module up while the class is made
    spec.loader.exec_module(mod)
    return mod


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--script", required=True, help="the peer script (../shared/peers/peer_*.py)")
    p.add_argument("--import", dest="imports", default="", help="comma-separated modules to import before the "
                   "marks start (the peer's engine): their memory is the baseline, not the load")
    p.add_argument("peer_args", nargs=argparse.REMAINDER, help="-- then the peer script's arguments")
    a = p.parse_args()
    args = a.peer_args[1:] if a.peer_args[:1] == ["--"] else a.peer_args
    mem = _memory_module()
    script = Path(a.script).resolve()
    sys.path.insert(0, str(script.parent))
    import _common as C  # the peer script's own import finds this module object, patched below

    for name in filter(None, a.imports.split(",")):
        importlib.import_module(name)
    marks: dict[str, Any] = {"rss_before_load_mb": mem.rss_mb()}
    load = mem.PeakRSS().__enter__()  # a block that ends when the process does: only its peak is read
    measure: Callable = C.measure

    def measured(pa: argparse.Namespace, run_once: Callable) -> dict:
        marks.update(load_peak_mb=load.peak_mb, after_load_mb=mem.rss_mb())
        with mem.PeakRSS() as gen:
            m = measure(pa, run_once)
            marks["gen_peak_mb"] = gen.peak_mb
        return m

    def emit(pa: argparse.Namespace, tool: str, m: dict, prompt: list[int], precision: str, versions: dict,
             notes: str = "") -> None:
        print(json.dumps({"tool": tool, **{k: round(v, 1) for k, v in marks.items()}, "in_len": len(prompt),
                          "new_tokens": len(m["ids"]), "precision": precision, "versions": versions, "notes": notes}),
              flush=True)

    C.measure, C.emit = measured, emit
    sys.argv = [str(script), *args]
    runpy.run_path(str(script), run_name="__main__")


if __name__ == "__main__":
    main()
