"""The NPU QDQ recipe's outlier handling (export/outliers.py, export/calibrate.py): the residual stream and
its norms stay float while MatMuls are int with per-channel weights, hot MatMuls stay float, calibrated
ranges are widened, attention's activation x activation MatMuls stay float at 16 bits. Tiny models and
hand-built graphs only."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from edgeseq.export import outliers


def _graph(path: Path) -> onnx.GraphProto:
    return onnx.load(str(path), load_external_data=False).graph


def test_qdq_graph_keeps_the_residual_stream_float(npu_artifacts: dict[str, Path]) -> None:
    for family, graph, layers in (("llama", "decoder.decode.onnx", 2), ("t5", "decoder_step.decode.onnx", 2)):
        float_graph = onnx.load(str(npu_artifacts[family] / graph))
        stream = set(outliers.float_path(float_graph))
        g = _graph(npu_artifacts[f"{family}-w8a16"] / graph)
        producer = {o: n for n in g.node for o in n.output}
        readers: dict[str, list[str]] = {}
        for n in g.node:
            for i in n.input:
                readers.setdefault(i, []).append(n.op_type)
        inits = {i.name for i in g.initializer}
        # residual Adds: on the stream, both inputs computed; their sums are never quantized
        residual = [n for n in g.node if n.op_type == "Add" and n.name in stream and not set(n.input) & inits]
        assert len(residual) >= 2 * layers, (family, [n.name for n in residual])
        for n in residual:
            assert "QuantizeLinear" not in readers.get(n.output[0], []), (family, n.name)
        # every weight MatMul reads int8 per-output-channel weights and a quantized activation
        core = set(outliers.attention_core(float_graph))
        matmuls = [n for n in g.node if n.op_type == "MatMul" and n.name not in stream | core]
        weighted = [n for n in matmuls if producer[n.input[1]].input[0] in inits]
        assert len(weighted) >= 4 * layers and len(weighted) == len(matmuls)
        for n in matmuls:
            assert all(producer[i].op_type == "DequantizeLinear" for i in n.input), (family, n.name)
        # attention's scores and probabilities x value MatMuls, and the nodes up to the output projection,
        # stay float: none is a Q/DQ unit (fed by Dequantize and read by Quantize), which onnxruntime-qnn
        # would run in integers; the MatMuls' outputs are never quantized
        kept = [n for n in g.node if n.name in core]
        assert sum(n.op_type == "MatMul" for n in kept) >= 2 * layers, (family, len(kept))
        for n in kept:
            fed = [producer[i].op_type for i in n.input if i in producer and producer[i].op_type != "Constant"]
            quantized_out = any("QuantizeLinear" in readers.get(o, []) for o in n.output)
            assert not (fed and set(fed) == {"DequantizeLinear"} and quantized_out), (family, n.name)
            assert not (n.op_type == "MatMul" and quantized_out), (family, n.name)
        for n in weighted:
            dq = producer[n.input[1]]
            axis = {a.name: helper.get_attribute_value(a) for a in dq.attribute}.get("axis")
            assert axis == 1, (family, n.name)
            w = next(i for i in g.initializer if i.name == dq.input[0])
            assert w.data_type == TensorProto.INT8, (family, n.name)


def _toy(scale: float) -> onnx.ModelProto:
    """ids -> embedding -> x + 1 -> MatMul(w1) -> MatMul(w2): the second MatMul's output is `scale` x larger."""
    rng = np.random.default_rng(0)
    emb, w1 = rng.standard_normal((300, 8)).astype(np.float32), rng.standard_normal((8, 8)).astype(np.float32)
    w2 = (rng.standard_normal((8, 8)) * scale).astype(np.float32)
    nodes = [helper.make_node("Gather", ["emb", "input_ids"], ["x"], name="embed"),
             helper.make_node("Add", ["x", "one"], ["r"], name="residual"),
             helper.make_node("MatMul", ["r", "w1"], ["h"], name="mm1"),
             helper.make_node("MatMul", ["h", "w2"], ["y"], name="mm2")]
    inits = [numpy_helper.from_array(a, n) for a, n in ((emb, "emb"), (w1, "w1"), (w2, "w2"),
                                                        (np.ones(8, np.float32), "one"))]
    g = helper.make_graph(nodes, "toy", [helper.make_tensor_value_info("input_ids", TensorProto.INT64, [1, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8])], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)


def test_float_path_stops_at_matmuls_and_hot_matmuls_are_found() -> None:
    model = _toy(500.0)
    assert outliers.float_path(model) == ["residual"]
    ranges = outliers.tensor_ranges(model, [{"input_ids": np.array([[1, 2, 3, 299]], np.int64)}])
    assert set(ranges) >= {"x", "r", "h", "y"}
    peaks = outliers.matmul_peaks(model, ranges)
    hot = {k for k, v in peaks.items() if v > 1000.0}
    assert outliers.hot_matmuls(model, hot) == ["mm2"]
    calm = _toy(1.0)
    calm_ranges = outliers.tensor_ranges(calm, [{"input_ids": np.array([[1, 2, 3, 299]], np.int64)}])
    assert max(outliers.matmul_peaks(calm, calm_ranges).values()) < 1000.0


def test_attention_core_runs_from_the_scores_to_the_output_projection() -> None:
    """q = x Wq; s = q x k'; p = Softmax(s / 8); o = p x v; y = o Wo: the core is the two activation
    MatMuls and what lies between and after them up to Wo, not the weight MatMuls."""
    rng = np.random.default_rng(0)
    nodes = [helper.make_node("MatMul", ["x", "wq"], ["q"], name="q_proj"),
             helper.make_node("MatMul", ["q", "kt"], ["s"], name="scores"),
             helper.make_node("Div", ["s", "eight"], ["s8"], name="scale"),
             helper.make_node("Softmax", ["s8"], ["p"], name="softmax", axis=-1),
             helper.make_node("MatMul", ["p", "v"], ["o"], name="mix"),
             helper.make_node("Transpose", ["o"], ["ot"], name="swap", perm=[1, 0]),
             helper.make_node("Transpose", ["ot"], ["o2"], name="back", perm=[1, 0]),
             helper.make_node("MatMul", ["o2", "wo"], ["y"], name="o_proj")]
    f = lambda *shape: rng.standard_normal(shape).astype(np.float32)  # noqa: E731
    g = helper.make_graph(nodes, "attn", [helper.make_tensor_value_info(n, TensorProto.FLOAT, shp) for n, shp in
                                          (("x", [2, 4]), ("kt", [4, 3]), ("v", [3, 4]))],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 4])],
                          [numpy_helper.from_array(a, n) for a, n in ((f(4, 4), "wq"), (f(4, 4), "wo"),
                                                                      (np.array(8.0, np.float32), "eight"))])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    assert set(outliers.attention_core(model)) == {"scores", "scale", "softmax", "mix", "swap", "back"}


def test_widened_ranges_keep_zero_bounds() -> None:
    got = outliers.widened({"a": (-2.0, 4.0), "b": (0.0, 1.0), "c": (3.0, 3.0)}, 0.5)
    assert (float(got["a"][0]["rmin"]), float(got["a"][0]["rmax"])) == (-5.0, 7.0)
    assert (float(got["b"][0]["rmin"]), float(got["b"][0]["rmax"])) == (0.0, 1.5)
    assert "c" not in got


def test_a_float_clip_becomes_max() -> None:
    g = helper.make_graph([helper.make_node("Clip", ["x", "lo"], ["y"], name="c")], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3])],
                          [numpy_helper.from_array(np.array(1.0, np.float32), "lo")])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    assert outliers.clips_to_max(model, ["c"]) == 1 and model.graph.node[0].op_type == "Max"
    import onnxruntime as ort

    s = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    assert s.run(None, {"x": np.array([0.5, 1.0, 7.0], np.float32)})[0].tolist() == [1.0, 1.0, 7.0]


def test_calibration_covers_a_first_token_in_decode_and_left_padded_prefills(npu_artifacts: dict[str, Path]) -> None:
    """What the graphs see in use: a one-token prompt runs the decode graph on an empty cache (where the
    first token's massive activation appears), a short prompt a left-padded prefill."""
    from edgeseq.artifact.manifest import read
    from edgeseq.export.calibrate import record

    art = npu_artifacts["llama"]
    samples = record(art, read(art))
    decode = samples[("decoder", "decode")]
    first = [f for f in decode if int(f["cache_position"][0]) == 0]
    assert first and all(int(f["attention_mask"].sum()) == 1 for f in first)
    prefills = [f for (c, sig), fs in samples.items() if sig != "decode" for f in fs]
    assert any(int(f["attention_mask"][0, 0]) == 0 and int(f["attention_mask"].sum()) > 1 for f in prefills)
