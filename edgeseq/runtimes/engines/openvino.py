"""OpenVINO engine: one compiled model per component, device from the device table.

On the CPU the decoder step keeps its KV cache as OpenVINO state (openvino_state.py: the graph is
rewritten at load so the plugin's fused attention grows the cache in place; the `EngineState` cache
form): a `State` then holds its own infer request, beam reorders become the step's `beam_idx`, and a
rewind rewrites the variables. The cache is stored in the compute precision (f32 or bf16) unless `precision` is
"default" (the plugin's own choice, u8 on recent CPUs). The option `stateful=False`
(`OpenVinoOptions`) keeps the exported explicit-cache graph. A
decoder-only step goes one step further where OpenVINO's paged-attention transformation applies
(openvino_paged.py, the `PagedBlocks` form): the cache lives in block tensors the State allocates,
pad slots are not fed, beams share blocks. The option `paged=False` keeps the state form.

Inference precision is set explicitly (f32 unless asked otherwise: OpenVINO's CPU plugin would
pick bf16 on CPUs that have it) and the precision the compiled model reports is recorded. Compiled
blobs are cached in CACHE_DIR (a folder per precision), so a second load of the same graphs skips
compilation; paged steps compile every time (OpenVINO does not read their blobs back).

The NPU plugin compiles static shapes only: it runs the static ONNX graphs of `--target npu`
(`OpenVinoStaticBackend`, one compiled model per signature); dynamic artifacts are refused there.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ...errors import ArtifactError, DeviceError, UsageError, first_line
from .. import devices
from . import openvino_paged as ov_paged, openvino_state as ov_state
from ..base import StepBackend
from ..cache import CacheForm
from ..options import EngineOptions
from ..registry import EngineSpec
from ..host import mapped
from ..host.disk_cache import cache_room
from ..static import StaticStepBackend

PRECISIONS = {"f32": "f32", "bf16": "bf16", "f16": "f16", "default": None}


@dataclass(frozen=True)
class OpenVinoOptions(EngineOptions):
    stateful: bool = field(default=True, metadata={
        "help": "on the CPU, keep the decoder step's KV cache as OpenVINO state; False runs the exported "
                "explicit-cache graph"})
    paged: bool = field(default=True, metadata={
        "help": "decoder-only steps in the stateful form use paged attention where OpenVINO's transformation "
                "applies; False keeps the plain state form"})


ENGINE = EngineSpec(
    name="openvino", backend="OpenVinoBackend", static_backend="OpenVinoStaticBackend", package="openvino",
    install="pip install 'edgeseq[openvino]'",
    # OpenVINO reads ONNX graphs too, so an ONNX artifact can be compared on both engines
    formats=("openvino", "onnx"), options=OpenVinoOptions, precisions=("f32", "bf16"), rank=10,
    weights_resident=(("fp32", 1.45), ("*", 1.9)), devices=(
        devices.DeviceRow("openvino", "cpu", "", "CPU", "pip install 'edgeseq[openvino]'"),
        devices.DeviceRow("openvino", "gpu", "intel", "GPU",
                          "Intel GPU driver (compute runtime) + pip install 'edgeseq[openvino]'"),
        devices.DeviceRow("openvino", "npu", "intel", "NPU", "Intel NPU driver + pip install 'edgeseq[openvino]'"),
        devices.DeviceRow("openvino", "auto", "", "AUTO", "pip install 'edgeseq[openvino]'")))


def _type_name(t: Any) -> str:
    """An ov.Type property as "f32", "bf16", "u8", ..."""
    return t.to_string() if hasattr(t, "to_string") else str(t)


# ONNX Runtime ops in an artifact's graphs that OpenVINO cannot run: (why, the export that avoids them).
# OpenVINO 2026.4 reads GroupQueryAttention but fails on a batch of 2 (a Reshape), and its present outputs
# do not have the cache's shape, so the cache cannot become state either. w8a8-token's per-row
# QuantizeLinear (blocked over a dynamic row) and MatMulIntegerToFloat do not convert ("Cannot get length
# of dynamic dimension").
_FOREIGN = {"GroupQueryAttention": ("attends with ONNX Runtime's GroupQueryAttention kernel, which OpenVINO does not run",
                                    "a plain ONNX graph: edgeseq export ... --no-ort-kernels"),
            "MatMulIntegerToFloat": ("multiplies with ONNX Runtime's integer GEMM (--weights w8a8-token), which "
                                     "OpenVINO does not convert", "OpenVINO's own int8 weights: edgeseq export MODEL "
                                     "--format openvino --weights int8")}


def _foreign(manifest: Any) -> list[tuple[str, str]]:
    ops = {op for c in manifest.components.values() for op in c.contrib_ops}
    return [v for op, v in _FOREIGN.items() if op in ops]


def refusal(manifest: Any) -> str | None:
    """Why this engine cannot run an artifact on any device, or None."""
    return "; ".join(why for why, _ in _foreign(manifest)) or None


def refusal_fix(manifest: Any) -> str:
    return " / ".join(fix for _, fix in _foreign(manifest))


def probe(row: devices.DeviceRow) -> str | None:
    try:
        import openvino as ov
    except ImportError:
        return "openvino is not installed"
    if row.target == "AUTO":
        return None
    have = ov.Core().available_devices
    return None if any(d.split(".")[0] == row.target for d in have) else f"OpenVINO sees no {row.target} " \
        f"(has: {', '.join(have)})"


class OpenVinoBackend(StepBackend):
    engine = "openvino"
    options_class = OpenVinoOptions
    compile_cache = True
    _stateful: str | None = None  # the component whose cache is OpenVINO state
    _state_names: tuple[str, ...] = ()
    _paged: set[str] | None = None  # that component's inputs as exported, where it runs paged (openvino_paged.py)
    paged_refused: str | None = None  # why the engine refused the paged form, where it did (the state form runs)

    def _load(self) -> None:
        why = refusal(self.manifest)
        if why:
            raise ArtifactError(f"{self.artifact} {why}",
                                "run it with --engine onnxruntime, export for OpenVINO (edgeseq export MODEL "
                                "--format openvino), or export " + refusal_fix(self.manifest))
        self.target, config = self._configure()
        if self.target == "NPU":
            raise DeviceError(f"{self.artifact} has dynamic shapes; the OpenVINO NPU plugin compiles static ones only",
                              "re-export with --format onnx --target npu and run it with --engine openvino")
        step = "decoder" if self.manifest.kind == "decoder-only" else "decoder_step"
        stateful = self.engine_options.stateful
        self.compiled: dict[str, Any] = {}
        with self._released():
            for name, comp in self.manifest.components.items():
                if name == step and self.target == "CPU" and stateful:
                    paged = self.manifest.kind == "decoder-only" and self.engine_options.paged
                    if paged and self.manifest.dims.get("sliding_window"):  # the paged kernel drops the masks
                        paged, self.paged_refused = False, "sliding-window layers (the paged kernel attends to " \
                                                           "all keys)"
                    self.compiled[name] = self._compile_stateful(name, comp.file, config, paged)
                else:
                    self.compiled[name] = self._compile(comp.file, config)
        self._after_compile()
        # a port can carry several tensor names (converting ONNX contrib ops such as MatMulNBits adds
        # some; which one get_any_name() returns differs between a fresh compile and the cache):
        # take the name the manifest declares
        self._outputs = {n: [self._declared(o.get_names(), n, "outputs") for o in c.outputs]
                         for n, c in self.compiled.items()}
        self._inputs = {n: {self._declared(i.get_names(), n, "inputs") for i in c.inputs} - {ov_state.BEAM}
                        for n, c in self.compiled.items()}
        if self._paged is not None:
            self._inputs[step] = self._paged
        self._local = threading.local()  # an infer request per thread: one model shared by threads

    def graph_inputs(self, component: str) -> set[str]:
        held = set(self._state_names) if component == self._stateful else set()
        return self._inputs[component] | held

    def cache_form(self) -> CacheForm[Any]:
        """The step's cache as engine state, or in paged blocks, where the load made it so (_compile_stateful)."""
        if not self._stateful:
            return super().cache_form()
        compiled = self.compiled[self._stateful]
        if self._paged is not None:
            return ov_paged.PagedBlocks(self, compiled, f"engine blocks (paged attention), {self.kv_precision}")
        refused = f" (paged attention refused: {self.paged_refused})" if self.paged_refused else ""
        return ov_state.EngineState(self, compiled, self._inputs[self._stateful], self._outputs[self._stateful],
                                    f"engine state, {self.kv_precision}{refused}")

    def _configure(self) -> tuple[str, dict[str, Any]]:
        """The device row's target and the compile configuration (precision, threads, cache)."""
        import openvino as ov

        row = devices.pick(self.engine, self.device, probe, "OpenVINO", "device")
        self.device_label, target = row.label, row.target
        wanted = str(self.options.precision or "f32")
        if wanted not in PRECISIONS:
            raise UsageError(f"unknown --precision '{wanted}'", f"one of {', '.join(PRECISIONS)}")
        self._wanted = wanted
        config: dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": "1"}
        folder = cache_room("openvino", sum(c.weight_bytes for c in self.manifest.components.values()))
        if folder is not None:
            # one folder per precision: OpenVINO keys a blob by the graph alone (2026.4), so an f32 load
            # after a bf16 one of the same graph read the bf16 blob back (wrong logits);
            # the KV cache is stored in the compute precision, so this also keys its precision
            config["CACHE_DIR"] = str(folder / wanted)
        if PRECISIONS[wanted] and target != "NPU":  # the NPU plugin computes in its own types
            config["INFERENCE_PRECISION_HINT"] = PRECISIONS[wanted]
        if self.options.threads and target == "CPU":
            config["INFERENCE_NUM_THREADS"] = int(self.options.threads)
        self._core, self._config = ov.Core(), config
        return target, config

    def _settle(self) -> None:
        """On the CPU, the plugin packs some weights only at the first inference of each shape class (a
        matmul fused with its activation runs a kernel whose weight layout depends on the token count), reading
        the mapped weights again: warm_up runs those shapes now, inside `_released`, so the load holds the
        packed copies and not the file's pages as well, and no request pays for the packing."""
        if self.target == "CPU" and not self.manifest.static:
            with self._released():
                self.warm_up()

    def _released(self) -> mapped.Released:
        """While compiling, give back the pages of the mapped IR .bin files and cached blobs: the CPU plugin
        copies every weight into its own layout and keeps the files mapped, so each page it read would stay
        resident beside the copy (host/mapped.py). Pages it reads again later (an embedding table's rows, a
        weight it runs in place) fault back in from the page cache."""
        cache = self._config.get("CACHE_DIR")
        return mapped.Released([self.artifact, *([cache] if cache else [])])

    def _compile(self, file: str, config: dict[str, Any]) -> Any:
        try:
            return self._core.compile_model(str(self.artifact / file), self.target, config)
        except RuntimeError as e:
            raise ArtifactError(f"OpenVINO cannot load {file} of {self.artifact} on {self.target}: {first_line(e)}",
                                f"check it with `edgeseq verify {self.artifact}`, or re-export") from e

    def _compile_stateful(self, name: str, file: str, config: dict[str, Any], paged: bool) -> Any:
        """The step graph with its cache as OpenVINO state (openvino_state.py), in blocks where `paged` and the
        transformation applies (openvino_paged.py), or as exported where it has no cache."""
        try:
            model = self._core.read_model(str(self.artifact / file))
        except RuntimeError:
            return self._compile(file, config)  # _compile words the error
        ov_state.unfold_grouped_queries(model)
        names = ov_state.make_stateful(model)
        if not names:
            return self._compile(file, config)
        plain = {p.get_output_tensor(0).get_any_name() for p in model.get_parameters()} - {ov_state.BEAM}
        kv = PRECISIONS[self._wanted]
        config = {**config, **({"KV_CACHE_PRECISION": kv} if kv else {})}
        blocks = ov_paged.make_paged(model) if paged else None
        compiled = None
        if blocks is not None:
            try:
                # OpenVINO 2026.4 writes a blob for a paged graph but never reads it back (its attention nodes'
                # runtime info does not survive serialization: LOADED_FROM_CACHE stays False), and writing
                # the blob only slows each compile
                compiled = self._core.compile_model(blocks, self.target,
                                                    {k: v for k, v in config.items() if k != "CACHE_DIR"})
                self._paged = plain
            except RuntimeError as e:
                # e.g. a bf16 cache on a CPU without bf16: the AVX2 paged kernel takes f32, f16 or u8 blocks
                # while the state form converts; keep the state form and say why in placement()
                self.paged_refused = first_line(e)
        try:
            if compiled is None:
                compiled = self._core.compile_model(model, self.target, config)
        except RuntimeError as e:
            raise ArtifactError(f"OpenVINO cannot compile the stateful form of {file} of {self.artifact}: "
                                f"{first_line(e)}",
                                "run it with the exported cache (--engine-option stateful=0) or --engine onnxruntime"
                                ) from e
        self._stateful, self._state_names = name, tuple(names)
        try:
            self.kv_precision = _type_name(compiled.get_property("KV_CACHE_PRECISION"))
        except RuntimeError:
            self.kv_precision = kv or "device default"
        return compiled

    def _after_compile(self) -> None:
        """The precision the compiled models report."""
        any_model = next(iter(self.compiled.values()))
        try:
            self.precision = _type_name(any_model.get_property("INFERENCE_PRECISION_HINT"))
        except RuntimeError:  # a device without the property (e.g. some GPU drivers, the NPU)
            self.precision = PRECISIONS[self._wanted] or "device default"

    def _request(self, component: str) -> Any:
        reqs = getattr(self._local, "requests", None)
        if reqs is None:
            reqs = self._local.requests = {}
        if component not in reqs:
            reqs[component] = self.compiled[component].create_infer_request()
        return reqs[component]

    def _declared(self, names: set[str], component: str, side: str) -> str:
        declared = {d["name"] for d in getattr(self.manifest.components[component], side)}
        hit = sorted(names & declared)
        return hit[0] if hit else sorted(names)[0]

    def run(self, component: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        wanted = self._inputs[component]
        req = self._request(component)
        # share_inputs: the engine reads the numpy buffers in place (infer is synchronous, they outlive it);
        # share_outputs=False: results are copies, so a cache fed back next step is never overwritten
        res = req.infer({k: v for k, v in feeds.items() if k in wanted}, share_inputs=True, share_outputs=False)
        return {name: np.asarray(res[i]) for i, name in enumerate(self._outputs[component])}

    def placement(self) -> dict[str, Any]:
        out: dict[str, Any] = {"device": self.target, "precision": self.precision, **self._cache_placement()}
        if self.manifest.quantization in ("int8", "int4"):  # the CPU plugin's default for compressed weights
            try:
                group = int(next(iter(self.compiled.values())).get_property("DYNAMIC_QUANTIZATION_GROUP_SIZE"))
            except (RuntimeError, TypeError, ValueError):
                group = 0
            if group:
                out["activations"] = f"int8, quantized per token in groups of {group}"
        if self.target == "AUTO":
            try:
                out["execution_devices"] = list(next(iter(self.compiled.values())).get_property("EXECUTION_DEVICES"))
            except RuntimeError:
                pass
        return out


class OpenVinoStaticBackend(OpenVinoBackend, StaticStepBackend):
    """Static-shape ONNX artifacts (`--target npu`): one compiled model per (component, signature);
    the way onto Intel NPUs, and runnable on CPU and GPU as well."""

    def _load(self) -> None:
        self.target, config = self._configure()
        self.compiled = {}
        with self._released():
            for name, comp in self.manifest.components.items():
                for sig, file in (comp.signature_files or {s: comp.file for s in comp.signatures}).items():
                    self.compiled[(name, sig)] = self._compile(file, config)
        self._after_compile()
        self._outputs = {k: [self._declared(o.get_names(), k[0], "outputs") for o in c.outputs]
                         for k, c in self.compiled.items()}
        self._inputs = {k: {self._declared(i.get_names(), k[0], "inputs") for i in c.inputs}
                        for k, c in self.compiled.items()}
        self._local = threading.local()

    def graph_inputs(self, component: str) -> set[str]:
        return set(self._inputs[(component, list(self.manifest.components[component].signatures)[-1])])

    def invoke(self, component: str, signature: str, feeds: dict[str, Any]) -> dict[str, Any]:
        return OpenVinoBackend.run(self, (component, signature), feeds)  # type: ignore[arg-type]

    def run(self, component: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return StaticStepBackend.run(self, component, feeds)

    def placement(self) -> dict[str, Any]:
        return {**OpenVinoBackend.placement(self), **StaticStepBackend.placement(self)}
