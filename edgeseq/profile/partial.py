"""A sweep's results, appended one JSON line per finished case, so an interrupted profile loses
nothing and `--resume` continues where it stopped."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..errors import UsageError
from .report import json_safe


class PartialReport:
    """`PATH.partial.jsonl`: a header line with the options, then one line per finished case."""

    def __init__(self, json_path: str | Path, header: dict[str, Any], resume: bool) -> None:
        self.path = Path(f"{json_path}.partial.jsonl")
        self.results: list[dict[str, Any]] = []
        if resume and self.path.exists():
            lines = []
            for x in self.path.read_text().splitlines():
                try:
                    lines.append(json.loads(x))
                except json.JSONDecodeError:  # the line a kill cut short: that case runs again
                    continue
            if not lines or lines[0].get("header") != json_safe(header):
                raise UsageError(f"{self.path} was written with other options or artifacts",
                                 "resume with the same options, or drop --resume to start again")
            self.results = lines[1:]
        else:
            if resume:
                raise UsageError(f"nothing to resume: {self.path} does not exist", "run without --resume")
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text(json.dumps({"header": json_safe(header)}) + "\n")

    def add(self, result: dict[str, Any]) -> None:
        with open(self.path, "a") as f:  # one line per case; a kill mid-line loses only that case
            f.write(json.dumps(json_safe(result)) + "\n")
            f.flush()

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)
