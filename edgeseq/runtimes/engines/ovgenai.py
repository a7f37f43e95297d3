"""openvino.genai engine: an `--format openvino` artifact exported with `--native ovgenai` run by
`openvino_genai.LLMPipeline` (decoder-only) or `WhisperPipeline` (Whisper: ovgenai_whisper.py), which run
the whole token loop themselves (runtimes/native.py).

The pipeline gets the prompt as token ids (no tokenization in the timed region) and a streamer that
hands each new id to edgeseq's loop as it arrives; generate() runs on a helper thread so tokens can
be yielded one at a time. Greedy unless sampling is asked for; with no stop ids the length is forced
(min_new_tokens = max_new_tokens, EOS ignored), the profile protocol's form.

Settings: threads -> INFERENCE_NUM_THREADS (one stream); precision f32 (default: OpenVINO's CPU plugin
would pick bf16 compute and an f16 cache on CPUs that have it), bf16, or "default" (the plugin's
choice); the cache is stored in the compute precision. `attention` picks the pipeline's backend
(its default, PA paged attention, or SDPA on the stateful graph as exported); the paged backend's
prefix cache is off unless `prefix_caching` (it would turn a repeated prompt's TTFT into one step).
"""
from __future__ import annotations

import queue
import threading
from dataclasses import dataclass, field
from typing import Any, Iterator

from ...errors import ArtifactError, UsageError, first_line
from .. import devices
from ..native import NativeBackend
from ..options import EngineOptions
from ..registry import EngineSpec

PRECISIONS = {"f32": "f32", "bf16": "bf16", "default": None}
INSTALL = "pip install 'edgeseq[ovgenai]'"


@dataclass(frozen=True)
class OvGenAiOptions(EngineOptions):
    attention: str = field(default="default", metadata={
        "help": "LLMPipeline's attention backend: default (the pipeline's choice), PA (paged) or SDPA (stateful)"})
    prefix_caching: bool = field(default=False, metadata={
        "help": "keep the paged backend's prefix cache (a repeated prompt then skips its prefill)"})


ENGINE = EngineSpec(
    name="ovgenai", backend="OvGenAiBackend", package="openvino_genai", install=INSTALL, formats=("openvino",),
    options=OvGenAiOptions, precisions=("f32",), rank=60,
    devices=(devices.DeviceRow("ovgenai", "cpu", "", "CPU", INSTALL),))


def probe(row: devices.DeviceRow) -> str | None:
    try:
        import openvino_genai  # noqa: F401  (the probe: is it importable)
    except ImportError:
        return "openvino-genai is not installed"
    return None


def refusal(manifest: Any) -> str | None:
    if manifest.kind != "decoder-only" and not manifest.audio:
        return ("openvino.genai runs decoder-only models (LLMPipeline) and Whisper (WhisperPipeline); it has no "
                "text-to-text encoder-decoder pipeline")
    return None


def refusal_fix(manifest: Any) -> str:
    return ""


class OvGenAiBackend(NativeBackend):
    engine = "ovgenai"
    options_class = OvGenAiOptions
    speech = True  # Whisper artifacts: WhisperPipeline
    reads_samples = True  # WhisperPipeline makes its own log-mel features from the samples

    def _load(self) -> None:
        from ...export.native.ovgenai import FILES as LLM_FILES
        from ...export.native.ovgenai_whisper import FILES as WHISPER_FILES

        needed = WHISPER_FILES if self.manifest.audio else LLM_FILES
        why = refusal(self.manifest)
        if why:
            raise ArtifactError(f"{self.artifact}: {why}", "run it with --engine openvino (edgeseq's own engine)")
        missing = [f for f in needed if not (self.artifact / f).is_file()]
        if missing:
            raise ArtifactError(f"{self.artifact} has no openvino.genai files ({', '.join(missing)} missing)",
                                "re-export with --native ovgenai (edgeseq export MODEL --format openvino "
                                "--native ovgenai)")
        wanted = str(self.options.precision or "f32")
        if wanted not in PRECISIONS:
            raise UsageError(f"unknown --precision '{wanted}' for engine ovgenai", f"one of {', '.join(PRECISIONS)}")
        opts: OvGenAiOptions = self.engine_options
        if opts.attention not in ("default", "PA", "SDPA"):
            raise UsageError(f"engine option attention={opts.attention!r} is not default, PA or SDPA",
                             "pass --engine-option attention=PA (or SDPA)")
        import openvino_genai as ovg

        props: dict[str, Any] = {"NUM_STREAMS": 1}
        if self.options.threads:
            props["INFERENCE_NUM_THREADS"] = int(self.options.threads)
        if PRECISIONS[wanted]:
            props.update(INFERENCE_PRECISION_HINT=PRECISIONS[wanted], KV_CACHE_PRECISION=PRECISIONS[wanted])
        self.precision = PRECISIONS[wanted] or self._plugin_default()
        self.attention = opts.attention
        if self.manifest.audio:  # WhisperPipeline: a stateful decoder, no paged attention or scheduler
            from .ovgenai_whisper import open_pipeline

            if opts.attention != "default" or opts.prefix_caching:
                raise UsageError("engine options attention / prefix_caching apply to LLMPipeline, not Whisper",
                                 "drop --engine-option for a Whisper artifact")
            self.attention = "stateful"
            self.pipe = open_pipeline(self.artifact, props)
            return
        if opts.attention != "default":
            props["ATTENTION_BACKEND"] = opts.attention
        if opts.attention != "SDPA" and not opts.prefix_caching:
            scheduler = ovg.SchedulerConfig()
            scheduler.enable_prefix_caching = False
            props["scheduler_config"] = scheduler
        try:
            self.pipe = ovg.LLMPipeline(str(self.artifact), "CPU", **props)
        except RuntimeError as e:
            raise ArtifactError(f"openvino.genai could not load {self.artifact}: {first_line(str(e))}",
                                "re-export with --native ovgenai") from None

    def _plugin_default(self) -> str:
        """LLMPipeline hides its compiled model: the CPU plugin's default precision, as it reports it."""
        import openvino as ov

        hint = ov.Core().get_property("CPU", "INFERENCE_PRECISION_HINT")
        return f"{hint.to_string() if hasattr(hint, 'to_string') else hint} (CPU plugin default)"

    def placement(self) -> dict[str, Any] | None:
        return {"device": "CPU", "precision": self.precision, "attention": self.attention}

    def _config(self, cfg: Any, stop: list[int]) -> Any:
        c = decoding(self.pipe.get_generation_config(), cfg)
        if stop:
            c.ignore_eos, c.min_new_tokens = False, 0
            c.eos_token_id, c.stop_token_ids = int(stop[0]), set(int(s) for s in stop)
        else:  # forced length: no id ends it
            c.ignore_eos, c.min_new_tokens = True, int(cfg.max_new_tokens)
            c.stop_token_ids = set()
        return c

    def _tokens(self, ids: list[int], cfg: Any, stop: list[int], features: Any = None,
                samples: Any = None) -> Iterator[int]:
        import numpy as np
        import openvino as ov
        import openvino_genai as ovg

        if self.manifest.audio:  # WhisperPipeline: the window's samples in, its own features and prompt
            from .ovgenai_whisper import config as whisper_config

            config = whisper_config(self.pipe, self.manifest, ids, cfg, stop)
            given: Any = np.ascontiguousarray(samples, np.float32)
        else:
            config, given = self._config(cfg, stop), ov.Tensor(np.array([ids], np.int64))

        arrived: queue.Queue[Any] = queue.Queue()
        cancel = threading.Event()
        done = object()

        class Streamer(ovg.StreamerBase):  # type: ignore[misc]
            def write(self, token: Any) -> Any:
                for t in ([token] if isinstance(token, int) else list(token)):
                    arrived.put(int(t))
                return ovg.StreamingStatus.STOP if cancel.is_set() else ovg.StreamingStatus.RUNNING

            def end(self) -> None:
                pass

        def run() -> None:
            try:
                self.pipe.generate(given, config, Streamer())
            except BaseException as e:  # noqa: BLE001  handed to the consuming thread
                arrived.put(e)
            finally:
                arrived.put(done)

        worker = threading.Thread(target=run, name="ovgenai-generate", daemon=True)
        worker.start()
        try:
            while True:
                item = arrived.get()
                if item is done:
                    break
                if isinstance(item, BaseException):
                    raise ArtifactError(f"openvino.genai failed: {first_line(str(item))}",
                                        "run it with --engine openvino to compare") from None
                yield item
        finally:
            cancel.set()
            worker.join()


def decoding(c: Any, cfg: Any) -> Any:
    """An openvino.genai generation config `c` set to `cfg`'s length, greedy or its sampling (one beam)."""
    c.max_new_tokens = int(cfg.max_new_tokens)
    c.num_beams = 1
    c.do_sample = bool(cfg.do_sample)
    if cfg.do_sample:
        c.temperature, c.top_p = float(cfg.temperature), float(cfg.top_p)
        c.top_k = int(cfg.top_k) if cfg.top_k else 0
        if cfg.seed is not None:
            c.rng_seed = int(cfg.seed)
    return c
