"""Typed engine options: one dataclass per engine, declared by the engine module.

An engine's settings are fields of a pure dataclass (defaults = the engine's behaviour when nothing
is asked). Callers pass the dataclass itself or a dict of field names (`edgeseq.load(...,
engine_options={"kv_buffer": False})`, CLI `--engine-option kv_buffer=0`); `coerce` turns either
into a validated instance, and a name or value the engine does not know is a UsageError that lists
the valid ones. The library reads no environment for these settings.
"""
from __future__ import annotations

import dataclasses
import sys
import typing
from dataclasses import dataclass, fields
from typing import Any, Mapping, TypeVar

from ..errors import UsageError

O = TypeVar("O", bound="EngineOptions")
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


@dataclass(frozen=True)
class EngineOptions:
    """Settings every engine takes. Subclasses add their own fields (with a `help` in metadata)."""

    huge_pages: bool | None = dataclasses.field(
        default=None, metadata={"help": "move the loaded weights onto transparent huge pages (Linux); "
                                        "default: the engine's own choice"})

    def validate(self: O) -> O:
        """Check every field against its declared type; return self."""
        for f, kind in _types(type(self)).items():
            value = getattr(self, f)
            if not _fits(value, kind):
                raise UsageError(f"engine option {f}={value!r} is not {_type_name(kind)}",
                                 f"{type(self).__name__}: {describe(type(self))}")
        return self

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _types(cls: type[EngineOptions]) -> dict[str, Any]:
    hints = typing.get_type_hints(cls, vars(sys.modules[cls.__module__]))
    return {f.name: hints[f.name] for f in fields(cls)}


def _allowed(kind: Any) -> tuple[type, ...]:
    args = typing.get_args(kind)
    return tuple(a for a in args) if args else (kind,)


def _fits(value: Any, kind: Any) -> bool:
    for t in _allowed(kind):
        if t is type(None) and value is None:
            return True
        if t is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return True
        if t is int and isinstance(value, bool):
            continue
        if t is not type(None) and isinstance(value, t):
            return True
    return False


def _type_name(kind: Any) -> str:
    return " or ".join("None" if t is type(None) else t.__name__ for t in _allowed(kind))


def _parse(name: str, text: str, kind: Any) -> Any:
    """A value given as text (CLI) -> the field's type."""
    low = text.strip().lower()
    for t in _allowed(kind):
        if t is type(None) and low in ("none", "default", ""):
            return None
        if t is bool and low in _TRUE + _FALSE:
            return low in _TRUE
        if t in (int, float):
            try:
                return t(low)
            except ValueError:
                continue
        if t is str:
            return text
    raise UsageError(f"engine option {name}={text!r} is not {_type_name(kind)}",
                     "booleans: 1/0, true/false, on/off; None: none or default")


def describe(cls: type[EngineOptions]) -> str:
    """'name (type, default X), ...' for errors and help."""
    return ", ".join(f"{f} ({_type_name(k)}, default {getattr(cls(), f)!r})" for f, k in _types(cls).items())


def table(cls: type[EngineOptions]) -> list[tuple[str, str, Any, str]]:
    """(name, type, default, meaning) per option, for docs and `--help`."""
    kinds = _types(cls)
    return [(f.name, _type_name(kinds[f.name]), getattr(cls(), f.name), f.metadata.get("help", ""))
            for f in fields(cls)]


def coerce(cls: type[O], given: O | Mapping[str, Any] | None, engine: str) -> O:
    """`given` (an instance, a dict of names -> values or texts, or None) as a validated `cls`."""
    if given is None:
        return cls().validate()
    if isinstance(given, EngineOptions):
        if not isinstance(given, cls):
            raise UsageError(f"{type(given).__name__} are not options of engine {engine}",
                             f"pass {cls.__name__} or a dict of: {describe(cls)}")
        return given.validate()
    kinds = _types(cls)
    unknown = sorted(set(given) - set(kinds))
    if unknown:
        raise UsageError(f"engine {engine} has no option {', '.join(unknown)}",
                         f"{engine} options: {describe(cls)}")
    values = {k: _parse(k, v, kinds[k]) if isinstance(v, str) and str not in _allowed(kinds[k]) else v
              for k, v in given.items()}
    return cls(**values).validate()


def check_threads(threads: Any) -> None:
    """The one check of a thread count, for every command and the API: None (engine default) or >= 1."""
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise UsageError(f"threads must be an integer >= 1, got {threads!r}",
                         "pass --threads 2 (or threads=2), the core count, or leave it out for the engine's default")


def parse_pairs(pairs: list[str] | None) -> dict[str, str]:
    """CLI `NAME=VALUE` items -> {name: text}; checked against the engine once it is known."""
    out: dict[str, str] = {}
    for item in pairs or []:
        name, eq, value = item.partition("=")
        if not eq or not name.strip():
            raise UsageError(f"--engine-option '{item}' is not NAME=VALUE", "e.g. --engine-option kv_buffer=0")
        out[name.strip().replace("-", "_")] = value
    return out
