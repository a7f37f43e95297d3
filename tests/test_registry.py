"""The engine and format registries (declared by their modules), typed engine options, and the
runtime flags every running command shares."""
from __future__ import annotations

import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import edgeseq
from edgeseq.cli import main
from edgeseq.cli.parser import build_parser
from edgeseq.errors import MissingDependencyError, UsageError
from edgeseq.export import formats
from edgeseq.runtimes import registry
from edgeseq.runtimes.engines import onnxruntime as ort_engine, openvino as ov_engine
from edgeseq.runtimes.options import EngineOptions, coerce, parse_pairs

ENGINE_MODULES = {"onnxruntime", "openvino", "litert", "ovgenai", "litertlm", "ortgenai"}  # runtimes/engines/


def test_every_engine_module_is_declared() -> None:
    assert set(registry.names()) == ENGINE_MODULES
    for name, s in registry.engines().items():
        assert s.devices and all(r.engine == name for r in s.devices), name
        assert issubclass(s.options, EngineOptions)
        module = registry.declared_module(name)
        assert hasattr(module, s.backend) and (s.static_backend is None or hasattr(module, s.static_backend))
    # helper modules of the engines folder declare nothing
    pkg = sorted(m.name for m in pkgutil.iter_modules(edgeseq.runtimes.engines.__path__))
    assert {"openvino_state", "openvino_paged", "qnn", "ort_int8"} <= set(pkg) - ENGINE_MODULES


def test_every_format_is_declared_and_read_by_its_engine() -> None:
    assert list(formats.formats()) == ["onnx", "openvino", "tflite"]
    for name, f in formats.formats().items():
        assert name in registry.spec(f.engine).formats  # the default engine reads it
        assert f.weights[0] == "fp32"
    assert formats.spec("tflite").static and formats.spec("onnx").npu_exporter


def test_reading_the_declarations_imports_no_engine_or_torch() -> None:
    code = ("import sys; from edgeseq.runtimes import registry; from edgeseq.export import formats; "
            "registry.engines(); formats.formats(); "
            "print([m for m in ('torch', 'onnx', 'onnxruntime', 'openvino', 'ai_edge_litert') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_torch_is_no_engine_row() -> None:
    assert "torch" not in registry.names()
    assert all(r.engine != "torch" for r in registry.device_rows())


def test_unknown_engine_and_format_list_the_known_and_the_fix() -> None:
    with pytest.raises(UsageError, match="unknown engine 'tensorrt'") as e:
        registry.spec("tensorrt")
    assert "onnxruntime, openvino, litert" in e.value.hint and "edgeseq/runtimes/engines/" in e.value.hint
    with pytest.raises(UsageError, match="unknown format 'gguf'") as e:
        formats.spec("gguf")
    assert "onnx, openvino, tflite" in e.value.hint and "edgeseq/export/formats/" in e.value.hint


def test_missing_engine_package_names_the_pip_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "openvino" else real(name, *a))
    with pytest.raises(MissingDependencyError, match="openvino") as e:
        registry.module("openvino")
    assert "edgeseq[openvino]" in e.value.hint


def test_option_coercion_and_validation() -> None:
    o = registry.options_for("onnxruntime", {"kv_buffer": "0", "huge_pages": "on"})
    assert o == ort_engine.OnnxRuntimeOptions(kv_buffer=False, huge_pages=True)
    assert registry.options_for("onnxruntime", None) == ort_engine.OnnxRuntimeOptions()  # today's defaults
    assert registry.options_for("openvino", ov_engine.OpenVinoOptions(paged=False)).paged is False
    with pytest.raises(UsageError, match="engine onnxruntime has no option paged") as e:
        registry.options_for("onnxruntime", {"paged": False})
    assert "kv_buffer" in e.value.hint and "flush_denormals" in e.value.hint
    with pytest.raises(UsageError, match="kv_buffer='maybe'"):
        registry.options_for("onnxruntime", {"kv_buffer": "maybe"})
    with pytest.raises(UsageError, match="is not bool"):
        ort_engine.OnnxRuntimeOptions(kv_buffer=3).validate()  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="are not options of engine onnxruntime"):
        coerce(ort_engine.OnnxRuntimeOptions, ov_engine.OpenVinoOptions(), "onnxruntime")
    with pytest.raises(UsageError, match="NAME=VALUE"):
        parse_pairs(["kv_buffer"])
    assert parse_pairs(["kv-buffer=0", "paged=1"]) == {"kv_buffer": "0", "paged": "1"}


def test_load_takes_engine_options(artifacts: dict[str, Path]) -> None:
    m = edgeseq.load(artifacts["llama"], engine_options={"kv_buffer": False})
    assert m.backend.engine_options == ort_engine.OnnxRuntimeOptions(kv_buffer=False)
    m = edgeseq.load(artifacts["llama"], engine_options=ort_engine.OnnxRuntimeOptions(flush_denormals=False))
    assert m.backend.engine_options.flush_denormals is False
    with pytest.raises(UsageError, match="has no option stateful"):
        edgeseq.load(artifacts["llama"], engine_options={"stateful": False})


def test_cli_bad_engine_option_is_a_usage_error(artifacts: dict[str, Path], capsys: pytest.CaptureFixture[str]
                                                ) -> None:
    code = main(["generate", str(artifacts["llama"]), "hi", "--max-new-tokens", "2", "--engine-option", "nope=1"])
    assert code == UsageError.exit_code
    err = capsys.readouterr().err
    assert "no option nope" in err and "kv_buffer" in err


def test_profile_json_records_the_effective_options(artifacts: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "p.json"
    assert main(["profile", str(artifacts["llama"]), "--input-len", "8", "--output-len", "4", "--reps", "1",
                 "--warmup", "0", "--no-bandwidth", "--engine-option", "kv_buffer=0", "--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    opts = doc["results"][0]["engine_options"]
    assert opts == {"huge_pages": None, "kv_buffer": False, "flush_denormals": True, "prepack": True,
                    "device_cache": None}
    assert doc["protocol"]["engine_options"] == {"kv_buffer": "0"}


def test_running_commands_share_the_runtime_flags() -> None:
    ap = build_parser()
    sub = next(a for a in ap._actions if a.dest == "command").choices  # type: ignore[attr-defined]

    def flags(cmd: str) -> set[str]:
        return {o for a in sub[cmd]._actions for o in a.option_strings}

    runtime = {"--device", "--engine", "--threads", "--precision", "--delegate", "--engine-option"}
    for cmd in ("generate", "profile", "compare"):
        assert runtime <= flags(cmd), cmd
    a = ap.parse_args(["compare", "x", "y", "--delegate", "/lib/d.so", "--engine-option", "paged=0"])
    assert a.delegate == "/lib/d.so" and a.engine_option == ["paged=0"] and a.device is None
    help_text = sub["profile"].format_help()
    assert all(name in help_text for name in registry.names())  # --engine help from the registry


def test_compare_passes_delegate_and_options_to_the_profile(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from edgeseq.compare import Suite, sweep

    suite = Suite(models=["a", "b"], delegate="/lib/d.so", engine_options={"paged": "0"})
    cfg = sweep.config(suite, [8])
    assert cfg.delegate == "/lib/d.so" and cfg.engine_options == {"paged": "0"}
    plain = Suite(models=["a", "b"])
    # a suite without them keeps the point keys of earlier stores
    assert len(json.loads(sweep.point_key(plain, "a", "onnx", "fp32", 8))) == 11
    assert sweep.point_key(suite, "a", "onnx", "fp32", 8) != sweep.point_key(plain, "a", "onnx", "fp32", 8)


def test_no_ort_kernels_is_an_export_option(hf_dirs: dict[str, Path], tmp_path: Path) -> None:
    from edgeseq.export.pipeline import export

    with pytest.raises(UsageError, match="--no-ort-kernels applies to --format onnx"):
        export(str(hf_dirs["gpt2"]), tmp_path / "x", format="openvino", ort_kernels=False)
    m = export(str(hf_dirs["llama"]), tmp_path / "plain", quiet=True, ort_kernels=False, parity_steps=2)
    assert all("GroupQueryAttention" not in c.contrib_ops for c in m.components.values())
    assert m.engine == "onnxruntime"  # the format's declared engine, the default engine when loading
