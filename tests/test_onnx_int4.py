"""ONNX with 4-bit weights (MatMulNBits): every constant-weight matmul quantized, the tied LM head
included, the embedding tables looked up in 4-bit blocks (GatherBlockQuantized, one stored tensor with
a tied head), parity within the int4 tolerance, and bytes read per token counted from the graph."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import onnx
import pytest

from edgeseq.artifact import manifest as mf
from edgeseq.export.pipeline import export

FAMILIES = ["llama", "gpt2", "t5"]


@pytest.fixture(scope="module")
def int4_artifacts(hf_dirs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("int4")
    return {f: (export(str(hf_dirs[f]), root / f, weights="int4", quiet=True), root / f)[1] for f in FAMILIES}


def _constant_matmuls(path: Path) -> list[str]:
    """Float matmuls whose weight is a stored constant (what int4 should have replaced)."""
    model = onnx.load(str(path), load_external_data=False)
    consts = {i.name for i in model.graph.initializer if len(i.dims) == 2}
    return [n.op_type for n in model.graph.node if n.op_type in ("MatMul", "Gemm") and n.input[1] in consts]


@pytest.mark.parametrize("family", FAMILIES)
def test_int4_export_quantizes_every_weight_matmul_and_passes_parity(int4_artifacts: dict[str, Path],
                                                                     artifacts: dict[str, Path], family: str) -> None:
    m = mf.read(int4_artifacts[family])
    assert m.quantization == "int4" and m.format == "onnx"
    assert m.parity["status"] == "passed" and m.parity["tolerance_rule"] == {"atol": 2.0, "rtol": 0.5}
    for name, comp in m.components.items():
        graph = int4_artifacts[family] / comp.file
        ops = {n.op_type for n in onnx.load(str(graph), load_external_data=False).graph.node}
        assert "MatMulNBits" in ops, name
        assert _constant_matmuls(graph) == [], name  # the LM head too (GPT-2's is tied to the embedding)
        assert _float_tables(graph, m.dims) == [], name  # embeddings looked up in 4-bit blocks
        assert ("GatherBlockQuantized" in ops) == (name != "decoder_init"), name  # T5: encoder and decoder step
    fp32 = mf.read(artifacts[family])
    assert m.model["bytes_read_per_token"] * 3 < fp32.model["bytes_read_per_token"]
    if family == "llama":  # q/k/v and gate/up merged: 4 matmuls per layer, plus the LM head
        nodes = onnx.load(str(int4_artifacts[family] / "decoder.onnx"), load_external_data=False).graph.node
        assert sum(n.op_type == "MatMulNBits" for n in nodes) == 4 * m.dims["num_layers"] + 1


def _float_tables(path: Path, dims: dict[str, Any]) -> list[str]:
    """Float32 vocab x hidden initializers (an embedding table, or a float LM head, either way round)."""
    model = onnx.load(str(path), load_external_data=False)
    shape = {dims["vocab_size"], dims["hidden_size"]}
    return [i.name for i in model.graph.initializer
            if i.data_type == onnx.TensorProto.FLOAT and len(i.dims) == 2 and set(i.dims) == shape]


def _lookups(path: Path) -> tuple[list[Any], dict[str, Any]]:
    graph = onnx.load(str(path), load_external_data=False).graph
    return [n for n in graph.node if n.op_type == "GatherBlockQuantized"], {i.name: i for i in graph.initializer}


def test_int4_tied_embedding_is_one_stored_table_shared_with_the_head(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A tied Llama at int4: the lookup reads the LM head's MatMulNBits blocks (one stored table, none in
    float32), no byte of it counted as a lookup, and 32 greedy tokens equal those of the int4 export with
    a float32 lookup table (the form before the tables were quantized), which is also larger."""
    from edgeseq import load
    from edgeseq.export import lookup_quant
    from edgeseq.generate.config import GenerationConfig
    from family_checks import TINY, save_tiny

    src = save_tiny(dict(TINY["llama"], tie_word_embeddings=True), tmp_path / "src")
    m = export(str(src), tmp_path / "q", weights="int4", quiet=True)
    assert m.parity["status"] == "passed"
    gathers, inits = _lookups(tmp_path / "q" / "decoder.onnx")
    nodes = onnx.load(str(tmp_path / "q" / "decoder.onnx"), load_external_data=False).graph.node
    heads = [n for n in nodes if n.op_type == "MatMulNBits" and n.input[1] == gathers[0].input[0]]
    assert len(gathers) == 1 and len(heads) == 1
    vocab, hidden = m.dims["vocab_size"], m.dims["hidden_size"]
    assert list(inits[gathers[0].input[0]].dims) == [vocab, hidden // 32, 16]
    assert _float_tables(tmp_path / "q" / "decoder.onnx", m.dims) == []
    assert m.components["decoder"].lookup_bytes == 0
    assert m.model["bytes_read_per_token"] == m.components["decoder"].weight_bytes

    monkeypatch.setattr(lookup_quant, "quantize_lookups", lambda *args: 0)
    before = export(str(src), tmp_path / "float-table", weights="int4", quiet=True)
    assert before.components["decoder"].weight_bytes - m.components["decoder"].weight_bytes >= vocab * hidden * 4 * 0.7
    cfg = GenerationConfig(max_new_tokens=32, ignore_eos=True)
    prompt = [[5, 9, 44, 17, 230, 8]]
    assert load(tmp_path / "q").generate_ids(prompt, cfg).ids == \
        load(tmp_path / "float-table").generate_ids(prompt, cfg).ids


@pytest.mark.parametrize("weights,bits", [("w4a8", 4), ("w8a8", 8)])
def test_int8_compute_passes_its_parity_bound(hf_dirs: dict[str, Path], tmp_path: Path, weights: str,
                                              bits: int) -> None:
    """w4a8 / w8a8: MatMulNBits with 4- / 8-bit weights and accuracy_level 4 (activations quantized to int8
    as each matmul runs), checked against PyTorch at the w8a8 bound; the engine reports int8 compute."""
    from edgeseq import load
    from edgeseq.generate.config import GenerationConfig

    m = export(str(hf_dirs["llama"]), tmp_path / weights, weights=weights, quiet=True)
    assert m.quantization == weights and m.parity["status"] == "passed"
    assert m.parity["tolerance_rule"] == {"atol": 4.0, "rtol": 0.5}
    nodes = onnx.load(str(tmp_path / weights / "decoder.onnx"), load_external_data=False).graph.node
    attrs = {(a.name, a.i) for n in nodes if n.op_type == "MatMulNBits" for a in n.attribute
             if a.name in ("accuracy_level", "bits")}
    assert attrs == {("accuracy_level", 4), ("bits", bits)}
    # the tiny Llama's embedding is untied: its own table in `bits`-bit blocks, all of it a lookup
    gathers, inits = _lookups(tmp_path / weights / "decoder.onnx")
    assert [(a.name, a.i) for a in gathers[0].attribute if a.name == "bits"] == [("bits", bits)]
    vocab, hidden = m.dims["vocab_size"], m.dims["hidden_size"]
    assert list(inits[gathers[0].input[0]].dims) == [vocab, hidden // 32, 32 * bits // 8]
    assert m.components["decoder"].lookup_bytes == vocab * hidden * bits // 8 + vocab * hidden // 32 * 4
    model = load(tmp_path / weights)
    assert model.backend.precision == "int8"
    out = model.generate_ids([[5, 9, 44, 17]], GenerationConfig(max_new_tokens=5, ignore_eos=True))
    assert len(out.ids[0]) == 5


def test_int4_artifact_generates(int4_artifacts: dict[str, Path]) -> None:
    from edgeseq import load
    from edgeseq.generate.config import GenerationConfig

    for family in FAMILIES:
        out = load(int4_artifacts[family]).generate_ids([[5, 9, 44, 17]], GenerationConfig(max_new_tokens=5,
                                                                                            ignore_eos=True))
        assert len(out.ids[0]) == 5


def test_lookup_tables_are_read_one_row_per_token(artifacts: dict[str, Path], hf_dirs: dict[str, Path]) -> None:
    """fp32: GPT-2's tied token table is also the LM head, so all of it is read per token (only its
    position table is a pure lookup); the tiny Llama's embedding is its own table."""
    from transformers import AutoConfig

    gpt2 = mf.read(artifacts["gpt2"]).components["decoder"]
    assert gpt2.lookup_bytes == 256 * 64 * 4  # wpe: n_positions x n_embd float32
    llama = mf.read(artifacts["llama"])
    cfg = AutoConfig.from_pretrained(hf_dirs["llama"])
    assert llama.components["decoder"].lookup_bytes == cfg.vocab_size * cfg.hidden_size * 4
    assert llama.model["bytes_read_per_token"] == llama.components["decoder"].weight_bytes - \
        cfg.vocab_size * cfg.hidden_size * 4


@pytest.mark.parametrize("family", FAMILIES)
def test_int8_gemm_export_replaces_every_weight_matmul(hf_dirs: dict[str, Path], tmp_path: Path, family: str,
                                                       monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    """w8a8-token: every constant-weight matmul runs as MatMulIntegerToFloat on int8 weights, its input
    quantized per row by one QuantizeLinear per distinct input; parity at the w8a8 bound; a batch of two
    prompts of different lengths generates; the engine reports int8 compute. A manifest that records 8-bit
    weights (as older exports had) on a CPU whose kernel saturates makes `edgeseq generate` warn."""
    from edgeseq import load
    from edgeseq.generate.config import GenerationConfig

    m = export(str(hf_dirs[family]), tmp_path / family, weights="w8a8-token", quiet=True)
    assert m.quantization == "w8a8-token" and m.parity["status"] == "passed"
    assert m.parity["tolerance_rule"] == {"atol": 4.0, "rtol": 0.5}
    assert {c.int8_weight_range for c in m.components.values()} == {63}  # 7 bits: no CPU's kernel saturates
    for name, comp in m.components.items():
        graph = onnx.load(str(tmp_path / family / comp.file), load_external_data=False).graph
        assert _constant_matmuls(tmp_path / family / comp.file) == [], name
        gemms = [n for n in graph.node if n.op_type == "MatMulIntegerToFloat"]
        assert gemms, name
        int8 = {i.name for i in graph.initializer if i.data_type == onnx.TensorProto.INT8}
        assert all(n.input[1] in int8 for n in gemms), name
        assert {n.input[0] for n in gemms} <= {n.output[0] for n in graph.node if n.op_type == "QuantizeLinear"}
    if family == "llama":
        nodes = onnx.load(str(tmp_path / family / "decoder.onnx"), load_external_data=False).graph.node
        assert sum(n.op_type == "MatMulIntegerToFloat" for n in nodes) == 4 * m.dims["num_layers"] + 1
    model = load(tmp_path / family)
    assert model.backend.precision == "int8" and "warning" not in model.backend.placement()
    out = model.generate_ids([[5, 9, 44, 17], [7, 8]], GenerationConfig(max_new_tokens=5, ignore_eos=True))
    assert [len(r) for r in out.ids] == [5, 5]
    if family == "llama":
        import json

        from edgeseq.cli import main
        from edgeseq.runtimes.engines import ort_int8

        doc = json.loads((tmp_path / family / "edgeseq.json").read_text())
        for c in doc["components"].values():
            c["int8_weight_range"] = 127
        (tmp_path / family / "edgeseq.json").write_text(json.dumps(doc))
        monkeypatch.setattr(ort_int8, "saturates", lambda: True)
        capsys.readouterr()
        assert main(["generate", str(tmp_path / family), "hi", "--max-new-tokens", "2"]) == 0
        assert "warning: int8 weights up to 127" in capsys.readouterr().err


@pytest.mark.parametrize("weight_bits", [7, 8])
def test_int8_gemm_scales_activations_per_row(weight_bits: int) -> None:
    """One row a thousand times larger than the others: quantized per row, every row keeps ~1% accuracy
    (a scale shared by the whole tensor would round the small rows to zero) on every CPU, because the
    weights use 7 bits. With the weights widened to 8 bits, accuracy is lost exactly where the probe says
    this CPU's u8 x s8 kernel saturates (AVX2 without VNNI: 13% error on the big row)."""
    import numpy as np
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    from edgeseq.export.passes import quantize_int8_gemm
    from edgeseq.runtimes.engines import ort_int8

    rng = np.random.default_rng(0)
    w = rng.standard_normal((64, 16)).astype(np.float32)
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, None, 64])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(w, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 10
    quantize_int8_gemm(model)
    assert [n.op_type for n in model.graph.node][-1] == "MatMulIntegerToFloat"
    inits = {i.name: i for i in model.graph.initializer}
    q = numpy_helper.to_array(inits["w.int8"])
    assert np.abs(q).max() == ort_int8.WEIGHT_RANGE == 63
    if weight_bits == 8:  # the same weights at 8 bits, as exports before 7-bit weights wrote them
        scale = numpy_helper.to_array(inits["w.scale"])
        wide = np.abs(w).max(axis=0) / 127
        inits["w.int8"].CopyFrom(numpy_helper.from_array(np.clip(np.round(w / wide), -127, 127).astype(np.int8),
                                                         "w.int8"))
        inits["w.scale"].CopyFrom(numpy_helper.from_array(wide.astype(np.float32), "w.scale"))
        assert not np.allclose(scale, wide)
    x = rng.standard_normal((2, 3, 64)).astype(np.float32)
    x[1, 2] *= 1000
    y = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    ref = x @ w
    err = np.linalg.norm(y - ref, axis=-1) / np.linalg.norm(ref, axis=-1)
    if weight_bits == 8:
        assert (err.max() >= 0.02) == ort_int8.saturates(), (err, ort_int8.saturates())
    else:
        assert err.max() < 0.02, err


@pytest.mark.parametrize("weight_range, saturating, warned", [(63, True, False), (127, True, True), (0, True, True),
                                                              (127, False, False)])
def test_stale_int8_weights_are_named(weight_range: int, saturating: bool, warned: bool,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A w8a8-token artifact with 8-bit weights (recorded 127, or unrecorded: exported before 7-bit weights)
    on a CPU whose kernel saturates: the backend's placement warns and names the fix; 7-bit weights, or a
    CPU that sums exactly, give no warning."""
    from types import SimpleNamespace

    from edgeseq.runtimes.engines import ort_int8

    monkeypatch.setattr(ort_int8, "saturates", lambda: saturating)
    m = SimpleNamespace(quantization="w8a8-token", components={"decoder": SimpleNamespace(int8_weight_range=weight_range)})
    why = ort_int8.stale_weights(m)
    assert (why is not None) == warned
    if why:
        assert "re-export" in why and "saturates" in why
    assert ort_int8.stale_weights(SimpleNamespace(quantization="w4a8", components=m.components)) is None


def test_saturation_probe_is_the_built_graph() -> None:
    """The probe graph shipped for runtime-only installs (no onnx there) is what build_probe() makes."""
    from edgeseq.runtimes.engines import ort_int8

    assert ort_int8.PROBE.read_bytes() == ort_int8.build_probe()


def test_openvino_refuses_the_integer_gemm_and_names_the_fix(hf_dirs: dict[str, Path], tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """A plain graph (no ONNX Runtime attention kernel) with w8a8-token's integer GEMM: OpenVINO cannot
    convert its per-row QuantizeLinear; loading says so and names OpenVINO's own int8 export."""
    pytest.importorskip("openvino", reason="the openvino extra is not installed")
    from edgeseq import load
    from edgeseq.errors import ArtifactError

    export(str(hf_dirs["gpt2"]), tmp_path / "plain", weights="w8a8-token", quiet=True, ort_kernels=False)
    with pytest.raises(ArtifactError, match="integer GEMM") as e:
        load(tmp_path / "plain", engine="openvino")
    assert "GroupQueryAttention" not in str(e.value) and "--format openvino --weights int8" in e.value.hint
