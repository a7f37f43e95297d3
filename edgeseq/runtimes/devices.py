"""The one device table: (engine, device) -> what the engine is asked for, and a probe per row.

Devices are `cpu | gpu | npu`, optionally with a vendor suffix (`gpu:cuda`, `npu:qnn`). A row lists
the engine's providers in order of preference; the first one present on this host is used.
"""
from __future__ import annotations

from collections.abc import Callable
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


TABLE: list[DeviceRow] = [
    DeviceRow("onnxruntime", "cpu", "", "CPUExecutionProvider", "pip install onnxruntime"),
    DeviceRow("onnxruntime", "gpu", "cuda", "CUDAExecutionProvider", "pip install onnxruntime-gpu (NVIDIA CUDA)"),
    DeviceRow("onnxruntime", "gpu", "tensorrt", "TensorrtExecutionProvider", "pip install onnxruntime-gpu + TensorRT"),
    DeviceRow("onnxruntime", "gpu", "dml", "DmlExecutionProvider", "pip install onnxruntime-directml (Windows)"),
    DeviceRow("onnxruntime", "gpu", "coreml", "CoreMLExecutionProvider", "onnxruntime on macOS"),
    DeviceRow("onnxruntime", "npu", "qnn", "QNNExecutionProvider", "pip install onnxruntime-qnn (Qualcomm HTP)"),
    DeviceRow("onnxruntime", "npu", "openvino", "OpenVINOExecutionProvider", "pip install onnxruntime-openvino"),
    DeviceRow("onnxruntime", "npu", "vitisai", "VitisAIExecutionProvider", "AMD Ryzen AI software"),
    DeviceRow("openvino", "cpu", "", "CPU", "pip install openvino"),
    DeviceRow("openvino", "gpu", "intel", "GPU", "Intel GPU driver (compute runtime) + pip install openvino"),
    DeviceRow("openvino", "npu", "intel", "NPU", "Intel NPU driver + pip install openvino"),
    DeviceRow("openvino", "auto", "", "AUTO", "pip install openvino"),
    DeviceRow("litert", "cpu", "", "XNNPACK", "pip install ai-edge-litert"),
    DeviceRow("litert", "gpu", "delegate", "GPU delegate", "a LiteRT GPU delegate library (--delegate PATH)"),
    DeviceRow("litert", "npu", "delegate", "NPU delegate", "a vendor NPU delegate library, e.g. Qualcomm QNN's "
              "(--delegate PATH)"),
    DeviceRow("torch", "cpu", "", "cpu", "pip install 'edgeseq[export]'"),
    DeviceRow("torch", "gpu", "cuda", "cuda", "a CUDA build of torch (pip install torch --index-url "
              "https://download.pytorch.org/whl/cu12x)"),
]


def pick(engine: str, device: str, probe: Callable[[DeviceRow], str | None], name: str, what: str) -> DeviceRow:
    """The first of `engine`'s rows for `device` that `probe` finds usable here; else a DeviceError
    that lists every row with the reason it is unavailable and what would bring it."""
    found = rows(engine, device)
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


def rows(engine: str, device: str) -> list[DeviceRow]:
    kind, vendor = parse(device)
    found = [r for r in TABLE if r.engine == engine and r.device == kind and (not vendor or r.vendor == vendor)]
    if not found:
        known = sorted({f"{r.device}:{r.vendor}" if r.vendor else r.device for r in TABLE if r.engine == engine})
        raise DeviceError(f"engine {engine} has no device '{device}'", f"{engine} devices: {', '.join(known)}")
    return found
