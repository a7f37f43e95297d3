"""The device table: (engine, device) -> what the engine is asked for, and a probe per row.

Devices are `cpu | gpu | npu`, optionally with a vendor suffix (`gpu:cuda`, `npu:qnn`). A row lists
the engine's providers in order of preference; the first one present on this host is used. Each
engine module declares its own rows (`EngineSpec.devices`); `table()` gathers them.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ..errors import DeviceError

DEVICES = ("cpu", "gpu", "npu", "auto")  # auto: the engine picks (OpenVINO AUTO)


@dataclass(frozen=True)
class DeviceRow:
    engine: str
    device: str  # cpu | gpu | npu
    vendor: str  # suffix accepted after "device:"
    target: str  # what the engine is asked for (onnxruntime: execution provider name)
    install: str  # what brings it to a host that lacks it

    @property
    def label(self) -> str:
        """The device as a user names it: npu:qnn, gpu:cuda, cpu."""
        return f"{self.device}:{self.vendor}" if self.vendor else self.device


def table() -> list[DeviceRow]:
    """Every engine's rows, as the engine modules declare them (runtimes/registry.py)."""
    from .registry import device_rows

    return device_rows()


def pick(engine: str, device: str, probe: Callable[[DeviceRow], str | None], name: str, what: str,
         among: Sequence[DeviceRow] | None = None) -> DeviceRow:
    """The first of `engine`'s rows for `device` that `probe` finds usable here; else a DeviceError
    that lists every row with the reason it is unavailable and what would bring it. `among`: rows
    other than the engine table's (the PyTorch reference's)."""
    found = rows(engine, device, among)
    reasons = [(r, probe(r)) for r in found]
    usable = [r for r, why in reasons if why is None]
    if not usable:
        raise DeviceError(f"{name} has no {device} {what} on this host: "
                          + "; ".join(f"{r.label} {why}" for r, why in reasons),
                          "install one of: " + "; ".join(r.install for r in found))
    return usable[0]


def parse(device: str) -> tuple[str, str]:
    """'gpu:cuda' -> ('gpu', 'cuda'); validates the device class."""
    kind, _, vendor = device.lower().partition(":")
    if kind not in DEVICES:
        raise DeviceError(f"unknown device '{device}'", f"use one of {', '.join(DEVICES)} (optionally with a "
                          "vendor suffix such as gpu:cuda or npu:qnn); `edgeseq devices` lists this host's")
    return kind, vendor


def rows(engine: str, device: str, among: Sequence[DeviceRow] | None = None) -> list[DeviceRow]:
    kind, vendor = parse(device)
    if among is None:
        from .registry import spec

        among = spec(engine).devices
    found = [r for r in among if r.engine == engine and r.device == kind and (not vendor or r.vendor == vendor)]
    if not found:
        known = sorted({f"{r.device}:{r.vendor}" if r.vendor else r.device for r in among if r.engine == engine})
        raise DeviceError(f"engine {engine} has no device '{device}'", f"{engine} devices: {', '.join(known)}")
    return found
