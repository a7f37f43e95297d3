"""NPU target: static ONNX graphs for Qualcomm HTP (`--target npu`), their QDQ recipes, and runs on
onnxruntime-qnn's HTP simulator with the placement report. Export and CPU-provider tests run
everywhere; the simulator tests skip through the QNN probe where onnxruntime-qnn is absent."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

import edgeseq
from edgeseq.artifact import manifest as mf
from edgeseq.cli import main
from edgeseq.errors import DeviceError, InputError, UsageError
from edgeseq.export.pipeline import export
from edgeseq.runtimes.engines import qnn

QNN_MISSING = qnn.probe()
needs_qnn = pytest.mark.skipif(QNN_MISSING is not None, reason=f"{QNN_MISSING}: pip install onnxruntime-qnn")
CFG = edgeseq.GenerationConfig(max_new_tokens=16, ignore_eos=True)


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Compiled graphs go to a cache of this test session's, not the user's."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.getbasetemp() / "xdg-cache"))


def test_one_graph_per_signature_sharing_one_weight_file(npu_artifacts: dict[str, Path], artifacts: dict[str, Path],
                                                          family: str) -> None:
    d = npu_artifacts[family]
    data = json.loads((d / "edgeseq.json").read_text())
    assert data["target"] == "npu" and data["format"] == "onnx" and data["static"]["buckets"] == [8, 24]
    for name, comp in data["components"].items():
        assert set(comp["signature_files"]) == set(comp["signatures"])
        assert all((d / f).is_file() for f in comp["signature_files"].values())
        assert (d / f"{name}.weights").is_file()
    graphs = sum(len(c["signature_files"]) for c in data["components"].values())
    assert graphs == (5 if family == "t5" else 3)
    # weights are stored once per component, not once per signature: each weight file holds no more than
    # the component's dynamic graph, and no graph keeps a tensor of 1 KB or more inline
    import onnx

    dynamic = mf.read(artifacts[family]).components
    for name in data["components"]:  # each component's file holds its dynamic graph's tensors once (+ alignment)
        assert (d / f"{name}.weights").stat().st_size <= dynamic[name].weight_bytes + 64 * 1024
    for comp in data["components"].values():
        for f in comp["signature_files"].values():
            inline = [i.name for i in onnx.load(str(d / f), load_external_data=False).graph.initializer
                      if i.data_location != onnx.TensorProto.EXTERNAL and len(i.raw_data) >= 1024]
            assert not inline, (f, inline)
    assert data["parity"]["status"] == "passed" and data["parity"]["max_abs_diff"] < 1e-4


def test_cpu_provider_matches_dynamic_onnx(npu_artifacts: dict[str, Path], artifacts: dict[str, Path],
                                           family: str) -> None:
    npu, ref = edgeseq.load(npu_artifacts[family]), edgeseq.load(artifacts[family])
    assert type(npu.backend).__name__ == "OnnxRuntimeStaticBackend"
    for prompt in ("The quick brown fox", "A lighthouse keeper"):
        assert npu.generate(prompt, config=CFG).ids == ref.generate(prompt, config=CFG).ids
    two = ["one two", "a longer second one"]
    assert npu.generate(two, config=CFG).ids == ref.generate(two, config=CFG).ids


def test_static_limits_are_errors(npu_artifacts: dict[str, Path]) -> None:
    model = edgeseq.load(npu_artifacts["llama"])
    with pytest.raises(InputError, match="longer than this artifact's largest prefill bucket"):
        model.generate_ids([list(range(5, 40))], config=CFG)


def test_w8a16_records_its_recipe_and_quantizes_every_graph(npu_artifacts: dict[str, Path]) -> None:
    import onnx

    for name in ("llama-w8a16", "t5-w8a16"):
        d = npu_artifacts[name]
        data = json.loads((d / "edgeseq.json").read_text())
        assert data["quantization"] == "w8a16" and data["parity"]["status"] == "passed"
        assert data["parity"]["tolerance_rule"] == {"atol": 2.0, "rtol": 0.2}
        for comp in data["components"].values():
            for f in comp["signature_files"].values():
                ops = {n.op_type for n in onnx.load(str(d / f), load_external_data=False).graph.node}
                assert {"QuantizeLinear", "DequantizeLinear"} <= ops
        float_weights = sum(f.stat().st_size for f in npu_artifacts[name.split("-")[0]].glob("*.weights"))
        # uint8, not float32 (plus a uint8 copy of a tied LM head, transposed for its MatMul)
        assert sum(f.stat().st_size for f in d.glob("*.weights")) < 0.5 * float_weights
        assert not list(d.glob("*.data"))  # the quantizer's own weight files are gone


def test_bad_input(npu_artifacts: dict[str, Path], artifacts: dict[str, Path], hf_dirs: dict[str, Path],
                   tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(UsageError, match="--target npu is not available for --format tflite"):
        export(str(hf_dirs["llama"]), tmp_path / "x", format="tflite", target="npu")
    with pytest.raises(UsageError, match="npu weights: fp32, w8a16, w8a8, w4a16"):
        export(str(hf_dirs["llama"]), tmp_path / "x", target="npu", weights="int4")
    with pytest.raises(UsageError, match="unknown --target"):
        export(str(hf_dirs["llama"]), tmp_path / "x", target="gpu")
    # no NPU provider on the host: the error names each row and why it is unavailable
    monkeypatch.setattr(qnn, "probe", lambda: "onnxruntime-qnn is not installed")
    with pytest.raises(DeviceError) as e:
        edgeseq.load(npu_artifacts["llama"], device="npu")
    assert "npu:qnn onnxruntime-qnn is not installed" in e.value.message
    assert "npu:openvino" in e.value.message and "pip install 'edgeseq[qnn]'" in e.value.hint
    assert main(["export", str(hf_dirs["llama"]), "--target", "npu", "--format", "openvino", "--out",
                 str(tmp_path / "y")]) != 0


@needs_qnn
def test_dynamic_artifact_on_htp_says_to_reexport(artifacts: dict[str, Path]) -> None:
    with pytest.raises(DeviceError, match="re-export it with --target npu"):
        edgeseq.load(artifacts["llama"], device="npu")


@needs_qnn
def test_htp_simulator_runs_every_node(npu_artifacts: dict[str, Path], family: str) -> None:
    model = edgeseq.load(npu_artifacts[family], device="npu")
    assert model.backend.provider == "QNNExecutionProvider" and model.backend.device_label == "npu:qnn"
    placement = model.backend.placement()["npu"]
    assert placement["node_share"] == 1.0 and placement["fallback_ops"] == {}
    assert placement["simulated"] == qnn.SIMULATED
    assert all(g["weight_share"] == 1.0 for g in placement["graphs"].values())
    # float graphs run on HTP in float16: greedy tokens as on the CPU provider (tiny models' logits
    # are near-uniform, so compare the logits, not only the tokens)
    cpu = edgeseq.load(npu_artifacts[family])
    got, ref = model.generate("The quick brown fox", config=CFG), cpu.generate("The quick brown fox", config=CFG)
    agree = np.mean([a == b for a, b in zip(got.ids[0], ref.ids[0])])
    assert agree >= 0.75, (got.ids, ref.ids)


@needs_qnn
def test_htp_compile_is_cached(npu_artifacts: dict[str, Path]) -> None:
    first = edgeseq.load(npu_artifacts["gpt2"], device="npu").backend
    again = edgeseq.load(npu_artifacts["gpt2"], device="npu").backend
    graphs = again.placement()["npu"]["graphs"]
    assert {g["compiled"] for g in graphs.values()} == {"cached"}
    assert again.placement()["npu"]["node_share"] == first.placement()["npu"]["node_share"]


@needs_qnn
def test_w8a16_runs_every_node_on_htp(npu_artifacts: dict[str, Path]) -> None:
    for name in ("llama-w8a16", "t5-w8a16"):
        model = edgeseq.load(npu_artifacts[name], device="npu")
        assert model.backend.placement()["npu"]["node_share"] == 1.0
        assert model.backend.precision == "int (QDQ)"
        assert len(model.generate("one two", config=CFG).ids[0]) == 16


@needs_qnn
def test_fallback_nodes_are_reported(tmp_path: Path) -> None:
    """A graph with an op HTP rejects (an integer Neg) runs it on the CPU provider, and the report
    names it, its reason and the share of nodes left on the NPU."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper

    g = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["a"], name="relu"), helper.make_node("Sigmoid", ["a"], ["y"], name="sig"),
         helper.make_node("Neg", ["i"], ["j"], name="neg")], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8]),
         helper.make_tensor_value_info("i", TensorProto.INT64, [4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8]),
         helper.make_tensor_value_info("j", TensorProto.INT64, [4])])
    path = tmp_path / "g.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)], ir_version=9), str(path))
    s, report = qnn.session(path, ort.SessionOptions(), qnn.provider_options(False), None)
    assert report["fallback_ops"] == {"Neg": 1} and report["fallback_reasons"]["Neg"]
    assert report["nodes"] == 3 and report["node_share"] == pytest.approx(2 / 3, abs=1e-3)
    y, j = s.run(None, {"x": np.ones((1, 8), np.float32), "i": np.arange(4)})
    assert j.tolist() == [0, -1, -2, -3] and np.allclose(y, 1 / (1 + np.exp(-1)), atol=1e-2)


@needs_qnn
def test_profile_marks_simulated_and_reports_node_share(npu_artifacts: dict[str, Path], tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "p.json"
    assert main(["profile", str(npu_artifacts["llama"]), "--device", "npu", "--input-len", "8", "--output-len", "4",
                 "--reps", "1", "--warmup", "0", "--no-bandwidth", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "npu:qnn*" in text and "simulated: timings are not device timings" in text
    r = json.loads(out.read_text())["results"][0]
    assert r["simulated"] == qnn.SIMULATED and r["node_share"] == 1.0 and r["device"] == "npu:qnn"
    assert r["placement"]["static"]["prefill_bucket"] == 8


@pytest.mark.skipif(importlib.util.find_spec("openvino") is None,
                    reason="openvino not installed: pip install 'edgeseq[openvino]'")
def test_openvino_runs_the_static_graphs(npu_artifacts: dict[str, Path], family: str) -> None:
    """The graphs an Intel NPU would compile, on OpenVINO's CPU plugin: the ONNX Runtime tokens."""
    ov = edgeseq.load(npu_artifacts[family], engine="openvino")
    assert type(ov.backend).__name__ == "OpenVinoStaticBackend" and ov.backend.precision == "f32"
    ref = edgeseq.load(npu_artifacts[family])
    two = ["The quick brown fox", "a longer second one"]
    assert ov.generate(two, config=CFG).ids == ref.generate(two, config=CFG).ids
    assert ov.backend.placement()["static"]["cache_length"] == (40 if family == "t5" else 64)


def test_a_bare_npu_goes_to_the_engine_that_has_one(npu_artifacts: dict[str, Path],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Without --engine, `npu` takes the format's own engine if it has an NPU here, else the next
    engine that runs the graphs and has one; with none, the format's own (whose error lists the rows)."""
    from edgeseq.artifact.manifest import read
    from edgeseq.runtimes import device_engine
    from edgeseq.runtimes.engines import openvino

    m = read(npu_artifacts["llama"])
    assert device_engine(m, "cpu") == "onnxruntime"
    monkeypatch.setattr(qnn, "probe", lambda: "onnxruntime-qnn is not installed")
    monkeypatch.setattr(openvino, "probe", lambda row: None if row.target == "NPU" else "absent")
    assert device_engine(m, "npu") == "openvino"
    monkeypatch.setattr(openvino, "probe", lambda row: "absent")
    assert device_engine(m, "npu") == "onnxruntime"


@needs_qnn
def test_int4_weights(hf_dirs: dict[str, Path], npu_artifacts: dict[str, Path], tmp_path: Path) -> None:
    """w4a16: int4 weights packed two to a byte in the shared weight file; every node on HTP."""
    from edgeseq.steps.static import StaticShape

    from conftest import TFLITE_SHAPE

    m = export(str(hf_dirs["llama"]), tmp_path / "w4", target="npu", weights="w4a16",
               shape=StaticShape(**TFLITE_SHAPE), quiet=True)  # type: ignore[arg-type]
    assert m.quantization == "w4a16" and m.parity["status"] == "passed"
    w8 = (npu_artifacts["llama-w8a16"] / "decoder.weights").stat().st_size
    assert (tmp_path / "w4" / "decoder.weights").stat().st_size < 0.85 * w8
    model = edgeseq.load(tmp_path / "w4", device="npu")
    assert model.backend.placement()["npu"]["node_share"] == 1.0
    assert len(model.generate("one two", config=CFG).ids[0]) == 16
