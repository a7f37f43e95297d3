"""The one resumable store: results appended one JSON line each as they finish, so an interrupted
run loses nothing and the next run measures only what is missing.

`profile --json PATH` keeps `PATH.partial.jsonl` (a header line with the options first, checked by
`--resume`); `compare --out OUT` keeps `OUT/results.jsonl` (no header: a point's key holds
everything that changes its figures). Files written by earlier versions read the same way.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..errors import UsageError
from .result import ProfileResult, json_safe


class ResultStore:
    """JSON lines of results keyed by `key_field`; the latest line per key wins, a line a kill cut short is dropped."""

    def __init__(self, path: str | Path, key_field: str = "key") -> None:
        self.path = Path(path)
        self.key_field = key_field
        self.header: dict[str, Any] | None = None
        self.rows: dict[str, ProfileResult] = {}
        if self.path.exists():
            for i, line in enumerate(self.path.read_text().splitlines()):
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:  # the line a kill cut short: that case runs again
                    continue
                if not isinstance(row, dict):
                    continue
                if i == 0 and "header" in row:
                    self.header = row["header"]
                elif row.get(key_field) is not None:
                    self.rows[row[key_field]] = ProfileResult.from_dict(row)

    @classmethod
    def resumable(cls, json_path: str | Path, header: dict[str, Any], resume: bool) -> "ResultStore":
        """`profile`'s store next to its JSON report: continued with --resume when written with the same
        `header` (options and artifacts), otherwise started afresh."""
        path = Path(f"{json_path}.partial.jsonl")
        if resume:
            if not path.exists():
                raise UsageError(f"nothing to resume: {path} does not exist", "run without --resume")
            store = cls(path)
            if store.header != json_safe(header):
                raise UsageError(f"{path} was written with other options or artifacts",
                                 "resume with the same options, or drop --resume to start again")
            return store
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"header": json_safe(header)}) + "\n")
        return cls(path)

    @property
    def results(self) -> list[ProfileResult]:
        return list(self.rows.values())

    def finished(self, key: str) -> bool:
        row = self.rows.get(key)
        return row is not None and row.status == "ok"

    def add(self, result: ProfileResult) -> None:
        key = result[self.key_field]
        assert key is not None, f"a stored result needs its {self.key_field}"
        self.rows[key] = result
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a") as f:  # one line per result; a kill mid-line loses only that one
            f.write(json.dumps(json_safe(result)) + "\n")
            f.flush()

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)
