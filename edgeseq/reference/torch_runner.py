"""The PyTorch reference (`--engine torch`): the exporters' own step modules, run eagerly on the CPU or a CUDA GPU.

Artifacts hold graphs, not torch weights, so this engine rebuilds the model from the source the
manifest records (`model.source`, `model.seed`) and refuses when that source's hash no longer
matches the export. It runs the same step modules every exporter converts (steps/, models/families/), so its
inputs, outputs and caches are the artifact's, and any format's manifest will do.

Caches stay on the device as torch tensors between steps; only the logits come back as numpy.
That copy is the synchronisation point: a CUDA step is timed until its logits exist, so TTFT and
TPOT include the device's work, not just the kernel launches.
"""
from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ArtifactError, EdgeseqError, MissingDependencyError, UsageError
from ..runtimes import devices
from ..runtimes.base import State, StepBackend

# --precision -> autocast dtype (None: plain float32). The step modules build float32 masks and
# rotary tables, so half precision runs under torch.autocast (matmuls in half, weights and caches
# float32) rather than with the modules cast to half.
_AUTOCAST = {"f32": None, "default": None, "f16": "float16", "bf16": "bfloat16"}


def probe(row: devices.DeviceRow) -> str | None:
    """None when the row can run here, else the reason it cannot."""
    import importlib.util

    if importlib.util.find_spec("torch") is None:
        return "torch is not installed"
    if importlib.util.find_spec("transformers") is None:
        return "transformers is not installed (the torch engine rebuilds the model with it)"
    if row.target != "cuda":
        return None
    import torch

    if torch.version.cuda is None:
        return f"torch has no CUDA device (torch {torch.__version__} is a CPU-only build)"
    if not torch.cuda.is_available():
        return (f"torch has no CUDA device (torch {torch.__version__}, CUDA {torch.version.cuda}: no GPU or "
                "driver visible)")
    return None


def detail(row: devices.DeviceRow) -> str:
    """What `edgeseq devices` says of a row (asked of missing rows too: it must not fail on them)."""
    if probe(row) is not None:
        return row.target
    import torch

    if row.target == "cuda":
        return f"cuda:0 ({torch.cuda.get_device_name(0)}; torch {torch.__version__}, CUDA {torch.version.cuda})"
    return f"cpu (torch {torch.__version__}; rebuilds the model from the manifest's source)"


def rows_of(engine: str) -> tuple[devices.DeviceRow, ...]:
    """A PyTorch engine's devices (not rows of the engine table: it runs none of the artifact's graphs)."""
    return (devices.DeviceRow(engine, "cpu", "", "cpu", "pip install 'edgeseq[export]'"),
            devices.DeviceRow(engine, "gpu", "cuda", "cuda", "a CUDA build of torch (pip install torch --index-url "
                              "https://download.pytorch.org/whl/cu12x)"))


ROWS = rows_of("torch")


def _row(device: str, engine: str = "torch") -> devices.DeviceRow:
    return devices.pick(engine, device, probe, f"the {engine} engine", "device", rows_of(engine))


def rebuild(artifact: Path, model: dict[str, Any]) -> Any:
    """The artifact's model as the exporter saw it (a ModelSpec), from the manifest's `model` section.

    The source's hash must match the export's: otherwise the torch engine would time or check a
    different model than the artifact holds."""
    from ..models import resolve

    source, want = model.get("source"), model.get("source_hash")
    seed = int(model.get("seed", 0))  # manifests written before the seed was recorded used 0
    fix = (f"restore the model at {source} as it was exported, or re-export the artifact from the current "
           "source; the other engines run the artifact's own graphs without it")
    if not source or not want:
        raise ArtifactError(f"the torch engine rebuilds the model from its source, and the manifest of {artifact} "
                            "records none", "re-export the artifact with this edgeseq")
    try:
        spec = resolve(str(source), seed=seed)
    except MissingDependencyError:
        raise
    except EdgeseqError as e:
        raise ArtifactError(f"the torch engine rebuilds the model from its source, and the source of {artifact} "
                            f"({source}) cannot be loaded here: {e.message}", fix) from e
    if spec.source_hash != want:
        if str(source).startswith("preset:") and "seed" not in model:  # random weights from an unrecorded seed
            fix = f"this manifest predates recorded seeds: re-export it (edgeseq export {source} --seed N)"
        raise ArtifactError(f"the torch engine rebuilds the model from its source, and {source} has changed since "
                            f"{artifact} was exported (source hash {spec.source_hash[:19]}..., the manifest says "
                            f"{str(want)[:19]}...)", fix)
    return spec


class TorchBackend(StepBackend):
    """The step modules on torch.device('cpu' | 'cuda'), under inference mode, caches resident."""

    engine = "torch"

    def _load(self) -> None:
        import torch

        asked = str(self.options.precision or "f32")
        if asked not in _AUTOCAST:
            raise UsageError(f"the torch engine has no precision '{asked}'",
                             f"use --precision {' | '.join(p for p in _AUTOCAST if p != 'default')}")
        self._open_device()
        self.dtype = torch.float32  # weights, caches and the logits handed back
        half = _AUTOCAST[asked]
        self.autocast = None if half is None else getattr(torch, half)
        self._place(*self._rebuild())
        self.precision = "f32" if half is None else f"{asked} (autocast)"
        if self.manifest.quantization:  # the source's float weights, not the artifact's compressed ones
            self.precision += f" (source weights, not the artifact's {self.manifest.quantization})"

    def _open_device(self) -> None:
        """The torch device of the asked row; on the CPU the thread count (torch's one intra-op pool)."""
        import torch

        row = _row(self.device, self.engine)
        self.device_label = row.label
        self.torch_device = torch.device("cuda", torch.cuda.current_device()) if row.target == "cuda" \
            else torch.device("cpu")
        self.cuda = self.torch_device.type == "cuda"
        if self.options.threads and not self.cuda:
            torch.set_num_threads(self.options.threads)  # process-wide
        if self.cuda:
            torch.cuda.reset_peak_memory_stats(self.torch_device)

    def _rebuild(self, picks: bool = True) -> tuple[Any, list[Any]]:
        """The artifact's source model (a ModelSpec) and its step components (steps.components),
        checked against the manifest's."""
        from ..console import muffled
        from ..steps import components

        with muffled("rebuilding the torch model"):  # transformers' import and weight-loading lines
            spec = rebuild(self.artifact, self.manifest.model)
        comps = components(spec, picks=picks)
        have, want = {c.name for c in comps}, set(self.manifest.components)
        if have != want:
            raise ArtifactError(f"the rebuilt model's steps {sorted(have)} are not the artifact's {sorted(want)}",
                                "re-export the artifact with this edgeseq")
        return spec, comps

    def _place(self, spec: Any, comps: list[Any]) -> None:
        """The model and its step modules (which share its weights) on the device, in eval mode."""
        import torch

        with torch.inference_mode():
            spec.model.to(self.torch_device)
            self.modules = {c.name: c.module.to(self.torch_device).eval() for c in comps}
        self._inputs = {c.name: list(c.inputs) for c in comps}
        self._outputs = {c.name: list(c.outputs) for c in comps}

    def graph_inputs(self, component: str) -> set[str]:
        return set(self._inputs[component])

    def _tensor(self, v: Any) -> Any:
        """A feed on the device: caches already are; numpy ids, masks, positions and floats are copied."""
        import torch

        if isinstance(v, torch.Tensor):
            return v
        t = torch.from_numpy(np.ascontiguousarray(v))
        if t.is_floating_point():
            t = t.to(self.dtype)
        return t.to(self.torch_device)

    def run(self, component: str, feeds: dict[str, Any]) -> dict[str, Any]:
        import torch

        half = contextlib.nullcontext() if self.autocast is None else torch.autocast(self.torch_device.type,
                                                                                      self.autocast)
        with torch.inference_mode(), half:
            args = [self._tensor(feeds[name]) for name in self._inputs[component]]
            outs = self.modules[component](*args)
            if isinstance(outs, torch.Tensor):
                outs = (outs,)
            result: dict[str, Any] = dict(zip(self._outputs[component], outs))
            if "logits" in result:  # copying to the host waits for the device: the step's clock stops here
                result["logits"] = result["logits"].float().cpu().numpy()
        return result

    # -- cache bookkeeping on torch tensors (runtimes/base.py's works on numpy) ----------------------------
    def new_state(self, batch: int) -> State:
        import torch

        state = super().new_state(batch)
        state.caches = {k: torch.zeros(tuple(v.shape), dtype=self.dtype, device=self.torch_device)
                        for k, v in state.caches.items()}
        return state

    def encode(self, state: State, ids: np.ndarray, mask: np.ndarray) -> None:
        super().encode(state, ids, mask)
        self._sync()

    def encode_audio(self, state: State, features: np.ndarray) -> None:
        super().encode_audio(state, features)
        self._sync()

    def _sync(self) -> None:
        if self.cuda:  # the encoder's output stays on the device: wait for it so encode_ms is its real time
            import torch

            torch.cuda.synchronize(self.torch_device)

    def reorder(self, state: State, rows: np.ndarray, cross: bool = False) -> None:
        import torch

        idx = torch.as_tensor(np.asarray(rows, np.int64), device=self.torch_device)
        with torch.inference_mode():
            state.caches = {k: self._tensor(v).index_select(0, idx) for k, v in state.caches.items()}
            if cross:
                state.cross = {k: self._tensor(v).index_select(0, idx) for k, v in state.cross.items()}
        state.batch = len(rows)
        assert state.mask is not None and state.positions is not None
        state.mask, state.positions = state.mask[rows], state.positions[rows]
        if cross:
            state.encoder_mask = None if state.encoder_mask is None else state.encoder_mask[rows]

    def trim(self, state: State, n: int) -> None:
        import torch

        with torch.inference_mode():  # slicing works on tensors as on arrays; keep it out of autograd
            super().trim(state, n)

    def placement(self) -> dict[str, Any]:
        import torch

        dtype = "float32" if self.autocast is None else f"autocast {str(self.autocast).removeprefix('torch.')}"
        out: dict[str, Any] = {"device": str(self.torch_device), "dtype": dtype,
                               "source": self.manifest.model.get("source"),
                               "note": "PyTorch reference: the exporters' step modules, eager, rebuilt from the "
                                       "source"}
        if self.cuda:
            out["device"] = f"{self.torch_device} ({torch.cuda.get_device_name(self.torch_device)})"
            out["peak_device_memory_mb"] = self.memory()
        return out

    def memory(self) -> float | None:
        """Peak device memory allocated by torch since this backend loaded, in MiB (None on the CPU)."""
        import torch

        if not self.cuda:
            return None
        return round(torch.cuda.max_memory_allocated(self.torch_device) / 2**20, 1)
