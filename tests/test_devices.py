"""The device table: parsing, clear errors, and one generated test per row that runs where the
row's probe says the device exists and otherwise skips with the probe's reason."""
from __future__ import annotations

from pathlib import Path

import pytest

import edgeseq
from edgeseq.errors import DeviceError
from edgeseq.export import native
from edgeseq.reference import NAMES as PYTORCH, device_rows as reference_rows, torch_runner
from edgeseq.runtimes import registry
from edgeseq.runtimes.devices import parse, rows, table

# every engine's rows, and the PyTorch engines' (not engines of the registry: --engine torch / torch-compile);
# the native runtimes' rows (CPU only) need artifacts exported with --native: tests/test_native_*.py generate on them
NATIVE = set(native.names())
ROWS = [r for r in table() if r.engine not in NATIVE] + list(reference_rows())


def test_parse() -> None:
    assert parse("cpu") == ("cpu", "") and parse("NPU:qnn") == ("npu", "qnn")
    with pytest.raises(DeviceError, match="unknown device 'tpu'"):
        parse("tpu")


def test_rows_by_vendor() -> None:
    assert [r.target for r in rows("onnxruntime", "gpu:cuda")] == ["CUDAExecutionProvider"]
    assert len(rows("onnxruntime", "npu")) >= 3
    with pytest.raises(DeviceError, match="no device 'gpu:foo'"):
        rows("onnxruntime", "gpu:foo")


@pytest.mark.parametrize("row", ROWS, ids=lambda r: f"{r.engine}-{r.device}-{r.vendor or 'default'}")
def test_generate_on_each_device_row(row, artifacts: dict[str, Path], request: pytest.FixtureRequest) -> None:
    module = torch_runner if row.engine in PYTORCH else registry.declared_module(row.engine)
    why = module.probe(row)
    if why is not None:
        pytest.skip(f"{row.engine} {row.device}:{row.vendor}: {why}")
    device = row.label
    # ONNX: both onnxruntime and openvino read it (gpt2 for openvino: llama's ONNX graph attends with an
    # ONNX Runtime kernel); litert reads the TFLite export of the same model, Qualcomm HTP its static
    # --target npu export
    family = "gpt2" if row.engine == "openvino" else "llama"
    art = request.getfixturevalue("tflite_artifacts")["llama"] if row.engine == "litert" else \
        request.getfixturevalue("npu_artifacts")["llama"] if row.label == "npu:qnn" else artifacts[family]
    model = edgeseq.load(art, device=device, engine=row.engine)
    cpu = edgeseq.load(artifacts[family], device="cpu")
    cfg = edgeseq.GenerationConfig(max_new_tokens=8, ignore_eos=True)
    assert model.generate("hello world", config=cfg).ids == cpu.generate("hello world", config=cfg).ids
