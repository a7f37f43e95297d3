"""Extension points filled by their modules: each module of a package may declare one record (an
engine's `ENGINE`, a format's `FORMAT`), found by listing the package, so that adding one is adding
one module. Modules import their heavy libraries inside functions: reading declarations loads none."""
from __future__ import annotations

import importlib
import pkgutil
from typing import Any, Generic, TypeVar

from .errors import UsageError

T = TypeVar("T")


class Declared(Generic[T]):
    """The records of one extension point (each with `name` and `rank`), read on first use."""

    def __init__(self, package: str, attribute: str, kind: type[T], what: str, add_one: str) -> None:
        self.package, self.attribute, self.kind, self.what, self.add_one = package, attribute, kind, what, add_one
        self._found: dict[str, tuple[T, str]] | None = None

    def found(self) -> dict[str, tuple[T, str]]:
        """name -> (record, module name), in listing order (rank, then name)."""
        if self._found is None:
            found: dict[str, tuple[Any, str]] = {}
            for info in pkgutil.iter_modules(importlib.import_module(self.package).__path__):
                module = f"{self.package}.{info.name}"
                record: Any = getattr(importlib.import_module(module), self.attribute, None)
                if isinstance(record, self.kind):
                    assert record.name not in found, f"{record.name} declared by {found[record.name][1]} and {module}"
                    found[record.name] = (record, module)
            self._found = dict(sorted(found.items(), key=lambda kv: (kv[1][0].rank, kv[0])))
        return self._found

    def records(self) -> dict[str, T]:
        return {n: r for n, (r, _) in self.found().items()}

    def get(self, name: str, known_also: str = "") -> T:
        """The record called `name`; a UsageError listing the known ones and how to add one."""
        found = self.found()
        if name not in found:
            raise UsageError(f"unknown {self.what} '{name}'",
                             f"{self.what}s: {', '.join(found)}{known_also}; {self.add_one}")
        return found[name][0]

    def module(self, name: str) -> Any:
        """The module that declares `name` (imported)."""
        self.get(name)
        return importlib.import_module(self.found()[name][1])
