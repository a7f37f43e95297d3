"""Engines that run the whole token loop themselves: native app runtimes (onnxruntime-genai,
openvino.genai, LiteRT-LM) loading an edgeseq artifact.

edgeseq's own engines run one step at a time and edgeseq chooses each token (generate/loop.py). A
native runtime takes the prompt ids and streams tokens back; edgeseq hands it the same ids, times
every token it returns on the same clock (from the hand-over to each token's arrival), and keeps the
rest of its contract: stop ids, --max-new-tokens, the row checks. Subclasses implement `_load` and
`_tokens`; what a runtime cannot do (beams, a batch of several rows, a repetition penalty, audio) is a
UsageError naming the engine that can. A runtime that runs speech models (`speech = True`) takes one
window's log-mel features beside the decoder prompt, and that window's 16 kHz samples (a runtime that
computes its own features from audio reads those); Whisper's timestamp rules stay with edgeseq's loop.
"""
from __future__ import annotations

import time
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from ..artifact.manifest import Manifest
from ..errors import UsageError
from .base import BackendOptions
from .options import EngineOptions, coerce

now = time.perf_counter


class NativeBackend(ABC):
    """An artifact opened in a native runtime; `loop.steps` delegates to `steps`."""

    engine: str = "?"
    native = True  # generate/loop.py: this backend runs its own loop
    compile_cache = False
    options_class: type[EngineOptions] = EngineOptions
    sampling = True  # the runtime takes temperature / top-k / top-p itself
    speech = False  # the runtime runs speech artifacts: `_tokens` gets one window's features
    reads_samples = False  # ... and reads that window's samples, not the features (its own front end)

    def __init__(self, artifact: Path, manifest: Manifest, device: str, options: BackendOptions) -> None:
        self.artifact, self.manifest, self.device, self.options = artifact, manifest, device, options.validate()
        self.precision = manifest.dtype  # runtimes that choose their own compute precision overwrite it
        self.engine_options = coerce(self.options_class, options.engine_options, self.engine)
        self.huge_pages = {"status": "off", "mb": 0}
        t = now()
        self._load()
        self.load_ms = (now() - t) * 1e3

    @abstractmethod
    def _load(self) -> None:
        """Open the artifact's native files in the runtime (threads: self.options.threads)."""

    @abstractmethod
    def _tokens(self, ids: list[int], cfg: Any, stop: list[int], features: np.ndarray | None = None,
                samples: np.ndarray | None = None) -> Iterator[int]:
        """The new token ids for one prompt of `ids`, one at a time as the runtime makes them, at most
        cfg.max_new_tokens; greedy unless cfg.do_sample. The runtime stops at `stop` ids (empty: never).
        `features` [n_mels, frames]: a speech model's one window of audio (only where `speech`), made
        from `samples` [N] float32 at the model's sampling rate (which a runtime with its own front end reads)."""

    def placement(self) -> dict[str, Any] | None:
        return None

    def warm_up(self, lengths: tuple[int, ...] = (1, 16, 128)) -> None:
        """One short request per prompt length, outputs dropped (the runtime's first-request work)."""
        from ..generate.config import GenerationConfig

        cfg = GenerationConfig(max_new_tokens=2, ignore_eos=True).validate()
        if self.manifest.audio:  # speech: one silent window with Whisper's decoder prompt
            from ..generate.speech import prompt

            audio = self.manifest.audio
            silence = np.zeros((int(audio["n_mels"]), int(audio["frames"])), np.float32)
            quiet = np.zeros(int(audio["sampling_rate"]) * int(audio["chunk_seconds"]), np.float32)
            for _ in self._tokens(prompt(audio["tokens"]), cfg, [], silence, quiet):
                pass
            return
        for n in lengths:
            for _ in self._tokens([0] * min(n, int(self.manifest.dims["max_positions"]) - 4), cfg, []):
                pass

    def check(self, cfg: Any, rows: list[list[int]], features: np.ndarray | None = None) -> None:
        """Refuse, before anything runs, what this runtime's loop does not do."""
        name = self.engine
        if (features is not None or self.manifest.audio) and not self.speech:
            raise UsageError(f"engine {name} runs text prompts only through edgeseq",
                             "use edgeseq's own engine for speech (drop --engine)")
        if len(rows) != 1:
            raise UsageError(f"engine {name} runs one prompt at a time, got a batch of {len(rows)}",
                             "send the prompts one by one, or use --engine onnxruntime for batches")
        unsupported = [what for what, on in (("beam search", cfg.num_beams > 1),
                                             ("a repetition penalty", cfg.repetition_penalty != 1.0),
                                             ("sampling", cfg.do_sample and not self.sampling)) if on]
        if unsupported:
            raise UsageError(f"engine {name} does not do {' or '.join(unsupported)} through edgeseq",
                             "use edgeseq's own engine for it (drop --engine)")

    def steps(self, rows: list[list[int]], cfg: Any, gen: dict, timings: Any, deadline: float | None,
              halted: np.ndarray | None = None, features: np.ndarray | None = None,
              samples: list[np.ndarray] | None = None) -> Iterator[np.ndarray]:
        """Each new token as a [1] array, timed as edgeseq's own loop times its tokens (for speech the
        encoder's run falls inside the first token's time, and a runtime's own front end too); the caller
        marking the row in `halted` (a stop string) ends the request."""
        from ..generate.loop import TimeLimitError, stop_ids

        self.check(cfg, rows, features)
        if self.manifest.audio and self.reads_samples and samples is None:
            raise UsageError(f"engine {self.engine} computes its own log-mel features: it needs the audio "
                             "samples, not features alone",
                             "pass the window's samples (edgeseq transcribe and profile do)")
        stop = [] if cfg.ignore_eos else stop_ids(cfg, gen)
        t0 = now()
        n = 0
        window = None if features is None else features[0]
        clip = None if samples is None else np.asarray(samples[0], np.float32)
        for token in self._tokens(list(rows[0]), cfg, stop, window, clip):
            timings.token_ms.append((now() - t0) * 1e3)
            n += 1
            yield np.array([token], np.int64)
            if halted is not None and halted.all():
                break
            if deadline is not None and now() > deadline:
                raise TimeLimitError(f"generation passed its time limit after {n} tokens",
                                     "raise --time-limit or profile shorter lengths")
        timings.e2e_ms = (now() - t0) * 1e3
