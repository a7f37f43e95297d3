"""The torch-compile engine (`--engine torch-compile`): the step modules rebuilt from the artifact's
source, as the torch reference does, run for speed on a GPU (and on the CPU, where it is tested).

- The KV cache is preallocated on the device in length buckets and written in place at the step's
  slots (slot_pool.py): no cache is copied or grown per step.
- The steps run through torch.compile (dynamic shapes: one compile serves every prompt length,
  batch and bucket); on CUDA each decode step of a (batch, bucket, cross length) is captured once as
  a CUDA graph and replayed (slot_pool.Replay).
- Weights in the precision asked (bf16 / f16 parameters, not autocast over float32 ones; float32
  buffers), or int8 weight-only linear layers (`weights=int8`, weights.py). Half precision runs the
  float32 glue of the step modules (masks, rotary tables) under autocast, so mixed operands meet.
- Greedy decoding takes the argmax on the device: a decode step returns `DeviceLogits`, and only
  the chosen ids (or, for sampling and beams, the logits) cross to the host.
- Encoder-decoder: the encoder and the cross-attention caches run once per request, then the
  decoder step as above.

Like the torch reference it runs PyTorch, none of the artifact's graphs: it times the model the
artifact was exported from, and placement() says so.
"""
from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import shutil
import types
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import UsageError
from ..runtimes.base import State, StepBackend, step_name
from ..runtimes.cache import CacheForm
from ..runtimes.options import EngineOptions
from ..runtimes.static import free_slots
from .torch_runner import TorchBackend

NAME = "torch-compile"
# --precision -> the parameters' dtype; default: bfloat16 on a GPU, float32 on the CPU
_DTYPES = {"f32": "float32", "bf16": "bfloat16", "f16": "float16"}
_WEIGHTS = ("float", "int8")


def _help(text: str) -> dict[str, str]:
    return {"help": text}


@dataclass(frozen=True)
class CompileOptions(EngineOptions):
    compile: bool = dataclasses.field(default=True, metadata=_help(
        "run the steps through torch.compile (off: the same preallocated-cache path, eager)"))
    cuda_graphs: bool = dataclasses.field(default=True, metadata=_help(
        "replay each decode step as a CUDA graph (CUDA only)"))
    dynamic: bool = dataclasses.field(default=True, metadata=_help(
        "compile with dynamic shapes (one compile for every length and batch); off: one per shape"))
    weights: str = dataclasses.field(default="float", metadata=_help(
        "float: parameters in the --precision dtype; int8: int8 weight-only linear layers"))
    min_bucket: int = dataclasses.field(default=256, metadata=_help(
        "the smallest KV-cache bucket (slots); buckets double up to the model's positions"))

    def validate(self) -> "CompileOptions":
        super().validate()
        if self.weights not in _WEIGHTS:
            raise UsageError(f"engine option weights={self.weights!r} is not one of {', '.join(_WEIGHTS)}",
                             "use --engine-option weights=int8 (or float)")
        if self.min_bucket < 1:
            raise UsageError(f"engine option min_bucket={self.min_bucket} must be >= 1", "e.g. min_bucket=256")
        return self


def compiler_missing() -> str | None:
    """Why torch.compile cannot build CPU kernels here (None: it can): inductor compiles C++."""
    if shutil.which("g++") or shutil.which("c++") or shutil.which("clang++"):
        return None
    return "no C++ compiler on PATH: torch.compile builds CPU kernels with one (apt-get install g++)"


def _own_code(fn: Any) -> Any:
    """`fn` with a code object of its own. Dynamo keeps compiled graphs per code object: closures of one
    def share it, so two loaded models would share (and evict) each other's graphs and guards."""
    return types.FunctionType(fn.__code__.replace(), fn.__globals__, fn.__name__, fn.__defaults__, fn.__closure__)


class DeviceLogits:
    """Logits [B, V] still on the device. `argmax` runs there and brings back B ids; anything else
    (sampling, beams, a caller reading the array) copies them to the host once, as float32."""

    def __init__(self, tensor: Any) -> None:
        self.tensor = tensor
        self._host: np.ndarray | None = None

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.tensor.shape)

    def argmax(self, axis: int = -1) -> np.ndarray:
        if self._host is not None:
            return self._host.argmax(axis=axis)
        return self.tensor.argmax(dim=axis).cpu().numpy()  # type: ignore[no-any-return]

    def host(self) -> np.ndarray:
        if self._host is None:
            self._host = self.tensor.float().cpu().numpy()
        return self._host

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        return self.host() if dtype is None else self.host().astype(dtype)

    def __getitem__(self, key: Any) -> Any:
        return self.host()[key]

    def __getattr__(self, name: str) -> Any:  # ndarray's other methods and attributes, on the host copy
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.host(), name)


class DeviceSlots(CacheForm[Any]):
    """The cache as a slot_pool.Lease in State.held: mask [B, C] over the bucket, State.slots used."""

    name = "device-slots"

    def __init__(self, backend: "CompiledBackend") -> None:
        super().__init__(backend)
        self.backend = backend

    def describe(self) -> str:
        return f"preallocated on {self.backend.torch_device} in buckets from {self.backend.pool.min_bucket} slots"

    def new(self, state: State) -> None:
        state.slots = 0
        state.caches = {}
        if self.backend.manifest.kind == "decoder-only":  # an encoder-decoder's lease waits for its cross length
            self.backend.lease(state, state.batch, self.backend.pool.min_bucket, 0)
        else:
            state.mask = np.zeros((state.batch, self.backend.pool.min_bucket), np.int64)

    def step(self, state: State, feeds: dict[str, Any], signature: str | None = None) -> np.ndarray:
        raise NotImplementedError("CompiledBackend._step runs the step")  # the form's step is not used

    def reorder(self, state: State, rows: np.ndarray) -> None:
        # beams tile the cross caches only when the batch changes (StepBackend.reorder's `cross`)
        self.backend.reorder_rows(state, rows, cross=len(rows) != state.batch)

    def trim(self, state: State, keep: int) -> None:
        free_slots(state, keep)


class CompiledBackend(TorchBackend):
    engine = NAME
    options_class = CompileOptions
    prefill_chunk = None  # the compiled step takes any prompt length; slicing it would only add steps

    def _load(self) -> None:
        import torch

        from .slot_pool import SlotPool
        from .weights import cast_parameters, int8_linears

        opts: CompileOptions = self.engine_options
        asked = str(self.options.precision or "f32")
        if asked not in (*_DTYPES, "default"):
            raise UsageError(f"the {NAME} engine has no precision '{asked}'", "use --precision f32 | bf16 | f16")
        self._open_device()
        if asked == "default":
            asked = "bf16" if self.cuda else "f32"
        self.dtype = getattr(torch, _DTYPES[asked])
        self.autocast = None if asked == "f32" else self.dtype
        if opts.compile and self.cuda and importlib.util.find_spec("triton") is None:
            raise UsageError(f"the {NAME} engine compiles GPU kernels with Triton, which is not installed",
                             "pip install triton (it ships with CUDA builds of torch), or --engine-option compile=0")
        if opts.compile and not self.cuda and compiler_missing():
            raise UsageError(f"the {NAME} engine cannot compile for the CPU here: {compiler_missing()}",
                             "install a C++ compiler, or run it eager with --engine-option compile=0")
        spec, comps = self._rebuild(picks=False)
        steps = [c.module for c in comps]
        if opts.weights == "int8":
            int8_linears([spec.model, *steps], self.dtype)
        for root in (spec.model, *steps):  # the steps share the model's layers; a step may hold more
            cast_parameters(root, self.dtype)
        self._place(spec, comps)
        step = self.step_component = step_name(self.manifest)
        self._inputs[step] = [*self._inputs[step][:3], "logits_index", *self._inputs[step][3:]]
        d = self.manifest.dims
        cache = self.manifest.components[step].cache_inputs
        self.pool = SlotPool([n for n in cache if n.startswith("past.")], [n for n in cache if n.startswith("cross.")],
                             int(d["num_kv_heads"]), int(d["head_dim"]), self.dtype, self.torch_device,
                             min(opts.min_bucket, int(d["max_positions"])), int(d["max_positions"]))
        kv = self.modules[step].kv
        kv.inplace = True
        self.graphs = self.cuda and opts.cuda_graphs
        self.lazy_logits = self.cuda  # the argmax on the device (tests turn it on for the CPU)
        self._calls = {name: self._compiled(self._component_call(name, kv if name == step else None))
                       for name in self.modules}
        self.precision = asked + (" (int8 weight-only linears)" if opts.weights == "int8" else "")
        if self.manifest.quantization:
            self.precision += f" (source weights, not the artifact's {self.manifest.quantization})"

    def _component_call(self, name: str, kv: Any) -> Any:
        """A plain function of tensors for one component; the step's also takes the logits positions (or
        None) and the slots, which it sets on the step's KVWrite for the call, and returns only the
        logits (its caches are written in place)."""
        module = self.modules[name]
        if kv is None:
            def plain(*args: Any) -> Any:
                return module(*args)
            return _own_code(plain)

        def step(ids: Any, mask: Any, third: Any, picks: Any, slots: Any, *caches: Any) -> Any:
            kv.slots, kv.picks = slots, picks
            try:
                return module(ids, mask, third, *caches)[0]
            finally:
                kv.slots, kv.picks = None, None
        return _own_code(step)

    def _compiled(self, fn: Any) -> Any:
        opts: CompileOptions = self.engine_options
        if not opts.compile:
            return fn
        import torch

        limits = torch._dynamo.config
        for knob in ("cache_size_limit", "recompile_limit"):  # one per shape when dynamic is off
            if hasattr(limits, knob):
                setattr(limits, knob, max(getattr(limits, knob), 64))
        return torch.compile(fn, dynamic=opts.dynamic)

    def _settle(self) -> None:
        if self.engine_options.compile:
            self.warm_up()  # compiles prefill and decode now, timed as load, not in the first request

    def cache_form(self) -> CacheForm[Any]:
        return DeviceSlots(self)

    def _context(self) -> Any:
        import torch

        half = contextlib.nullcontext() if self.autocast is None else torch.autocast(self.torch_device.type,
                                                                                      self.autocast)
        stack = contextlib.ExitStack()
        stack.enter_context(torch.inference_mode())
        stack.enter_context(half)
        return stack

    def run(self, component: str, feeds: dict[str, Any]) -> dict[str, Any]:
        """Encoder and decoder_init (the step runs through `_step`)."""
        with self._context():
            outs = self._calls[component](*(self._tensor(feeds[n]) for n in self._inputs[component]))
        outs = (outs,) if not isinstance(outs, (tuple, list)) else outs
        return dict(zip(self._outputs[component], outs))

    # -- leases ---------------------------------------------------------------------------------------
    def lease(self, state: State, batch: int, length: int, cross: int) -> Any:
        """Give `state` buffers for (batch, length, cross), returning the lease it held before (or None)."""
        old = state.held
        state.held = self.pool.take(batch, length, cross)
        if state.mask is None or state.mask.shape != (batch, length):
            mask = np.zeros((batch, length), np.int64)
            if state.mask is not None and state.mask.shape[0] == batch:
                n = min(length, state.mask.shape[1])
                mask[:, :n] = state.mask[:, :n]
            state.mask = mask
        return old

    def _room(self, state: State, need: int) -> None:
        """A bucket of at least `need` slots: the state's, or the next one its rows move to."""
        held = state.held.buffers
        if need <= held.key[1]:
            return
        batch, _, cross = held.key
        old_lease = self.lease(state, batch, self.pool.bucket(need), cross)  # held until copied from
        old, new = old_lease.buffers, state.held.buffers
        used = int(state.slots or 0)
        with self._context():
            for dst, src in zip(new.past, old.past):
                dst[:, :, :used].copy_(src[:, :, :used])
            for dst, src in zip(new.cross, old.cross):
                dst.copy_(src)

    reorder = StepBackend.reorder  # through the cache form (DeviceSlots.reorder), not the reference's arrays

    def reorder_rows(self, state: State, rows: np.ndarray, cross: bool) -> None:
        """Row i of the buffers becomes row rows[i]: in place at the same batch, else into a new lease
        (the cross caches follow whenever the batch changes)."""
        import torch

        if state.held is None:  # an encoder-decoder before encode: nothing cached yet
            return
        old = state.held.buffers
        idx = torch.as_tensor(np.asarray(rows, np.int64), device=self.torch_device)
        with self._context():
            if len(rows) == old.key[0]:
                for t in (*old.past, *(old.cross if cross else ())):
                    t.copy_(t.index_select(0, idx))
                return
            new = self.pool.take(len(rows), old.key[1], old.key[2])
            for dst, src in zip((*new.buffers.past, *new.buffers.cross), (*old.past, *old.cross)):
                dst.copy_(src.index_select(0, idx))
        state.held = new

    # -- the steps --------------------------------------------------------------------------------------
    def encode(self, state: State, ids: np.ndarray, mask: np.ndarray) -> None:
        hidden = self.run("encoder", {"input_ids": ids, "attention_mask": mask})["encoder_hidden_states"]
        self._attach(state, hidden, mask, exact=False)

    def encode_audio(self, state: State, features: np.ndarray) -> None:
        hidden = self.encoder_hidden(features)
        self._attach(state, hidden, np.ones(hidden.shape[:2], np.int64), exact=True)

    def _attach(self, state: State, hidden: Any, mask: np.ndarray, exact: bool) -> None:
        """The cross-attention caches of the encoder's output, in a lease whose cross length is the
        input's, rounded up to a power of two (text: fewer shapes to capture) or exact (audio windows)."""
        cross = list(self.run("decoder_init", {"encoder_hidden_states": hidden}).values())
        s = int(cross[0].shape[2])
        length = s if exact else max(16, 1 << (s - 1).bit_length())
        self.lease(state, state.batch, self.pool.min_bucket, length)
        with self._context():
            for dst, src in zip(state.held.buffers.cross, cross):
                dst[:, :, :s].copy_(src)
        state.encoder_mask = np.pad(mask.astype(np.int64), ((0, 0), (0, length - s)))
        self._sync()

    def _step(self, state: State, ids: np.ndarray, new_mask: np.ndarray, pos: np.ndarray,
              picks: np.ndarray | None = None) -> Any:
        import torch

        assert state.mask is not None and state.slots is not None
        if state.held is None:
            from ..errors import InputError

            raise InputError("encoder-decoder model: call encode() before prefill()")
        t, start = ids.shape[1], state.slots
        self._room(state, start + t)
        buffers = state.held.buffers
        mask = state.mask
        mask[:, start:start + t] = new_mask
        third = pos if self.manifest.kind == "decoder-only" else state.encoder_mask
        slots = np.arange(start, start + t, dtype=np.int64)
        with self._context():
            if t == 1 and picks is None:
                logits = self._decode(buffers, (ids, mask, third, slots))
            else:
                # positions copied: a [B, T] view of them may carry a zero stride, which would recompile
                feeds = [self._tensor(x) for x in (ids, mask, np.array(third), slots)]
                p = None if picks is None else self._tensor(picks)
                logits = self._calls[self.step_component](*feeds[:3], p, feeds[3], *buffers.past, *buffers.cross)
                if t > 1 and self.cuda:
                    torch.cuda.synchronize(self.torch_device)  # prefill's clock stops when its logits exist
        state.slots = start + t
        state.positions = pos[:, -1] + 1
        if self.lazy_logits and t == 1 and picks is None:
            return DeviceLogits(logits.clone() if self.graphs else logits)
        return logits.float().cpu().numpy()

    def _decode(self, buffers: Any, arrays: tuple[np.ndarray, ...]) -> Any:
        """One token per row: through the buffers' replay (a CUDA graph on CUDA), made at the first decode.
        The host arrays are copied straight into the replay's static tensors on the device."""
        import torch

        from .slot_pool import Replay

        if buffers.replay is None:
            step = self._calls[self.step_component]
            buffers.replay = Replay(lambda i, m, t, s, *c: step(i, m, t, None, s, *c), buffers,
                                    [a.shape for a in arrays], self.torch_device, self.graphs)
        return buffers.replay(*(torch.from_numpy(a) for a in arrays))

    def placement(self) -> dict[str, Any]:
        opts: CompileOptions = self.engine_options
        out = super().placement()
        out["dtype"] = str(self.dtype).removeprefix("torch.") + (" parameters, int8 weight-only linears"
                                                                 if opts.weights == "int8" else " parameters")
        out["compiled"] = "torch.compile" + (" (dynamic shapes)" if opts.dynamic else " (static shapes)") \
            if opts.compile else "eager"
        out["cuda_graphs"] = "per (batch, cache bucket, cross length)" if self.graphs else "off"
        out["cache_buckets"] = [list(k) for k in self.pool.held()]
        out.update(self._cache_placement())
        out["note"] = ("PyTorch (torch-compile engine): the exporters' step modules rebuilt from the source, "
                       "with a preallocated device cache; none of the artifact's graphs run")
        return out
