"""LiteRT-LM engine (litert-lm-api): an edgeseq `--format tflite --native litertlm` artifact's
`model.litertlm` bundle on LiteRT-LM's Engine / Session, which runs the whole token loop (CPU, XNNPACK).

LiteRT-LM's Python API takes text and streams text: the prompt ids go in as their text (decoded
with the artifact's tokenizer and checked to tokenize back to the same ids in the engine), and each
streamed chunk goes back to ids with the same tokenizer. A chunk is one token's text, except that
LiteRT-LM holds back a token whose text is empty or an incomplete UTF-8 sequence and sends it with
the next one: those ids arrive together. Greedy is top-k 1. Stop ids are the bundle's (its EOS
ids); a run with no stop ids still ends where LiteRT-LM meets one (it has no per-request switch).
"""
from __future__ import annotations

import dataclasses
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

from ...errors import ArtifactError, UsageError, first_line
from .. import devices
from ..host.disk_cache import cache_room
from ..host.fds import redirected
from ..native import NativeBackend
from ..options import EngineOptions
from ..registry import EngineSpec

BUNDLE = "model.litertlm"
INSTALL = "pip install 'edgeseq[litertlm]' -c constraints.txt"


@dataclasses.dataclass(frozen=True)
class LiteRtLmOptions(EngineOptions):
    verbose: bool = dataclasses.field(default=False, metadata={
        "help": "keep LiteRT-LM's native log lines on stderr (default: discarded)"})


ENGINE = EngineSpec(
    name="litertlm", backend="LiteRtLmBackend", static_backend="LiteRtLmBackend", package="litert_lm",
    install=INSTALL, formats=("tflite",), options=LiteRtLmOptions, rank=60,
    devices=(devices.DeviceRow("litertlm", "cpu", "", "CPU", INSTALL),))


def probe(row: devices.DeviceRow) -> str | None:
    """None when the row can run here, else the reason it cannot."""
    try:
        import litert_lm  # noqa: F401
    except ImportError:
        return "litert-lm-api is not installed"
    return None if row.device == "cpu" else f"LiteRT-LM runs edgeseq bundles on the CPU only, not {row.device}"


class LiteRtLmBackend(NativeBackend):
    engine = "litertlm"
    options_class = LiteRtLmOptions
    sampling = True

    def _quiet(self) -> Any:
        """LiteRT-LM logs its model loading and each session to file descriptor 2."""
        import contextlib

        return contextlib.nullcontext() if self.engine_options.verbose else redirected((2,))

    def _load(self) -> None:
        path = self.artifact / BUNDLE
        if not path.is_file():
            raise ArtifactError(f"{self.artifact} has no {BUNDLE} (LiteRT-LM's bundle of the artifact)",
                                "re-export with --format tflite --native litertlm")
        if self.device != "cpu":
            raise UsageError(f"engine litertlm runs on the CPU here, not {self.device}", "use --device cpu")
        from tokenizers import Tokenizer

        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        import litert_lm as lm
        from litert_lm import interfaces

        self._lm, self._interfaces = lm, interfaces
        self.tokenizer = Tokenizer.from_file(str(self.artifact / "tokenizer.json"))
        self.precision = "f32 (weights int8, int8 compute)" if self.manifest.quantization == "int8" else "f32"
        threads = self.options.threads
        # LiteRT-LM writes its packed-weight cache next to the bundle unless told where: edgeseq's cache
        # folder keeps the artifact unchanged (its files are hashed in the manifest)
        room = cache_room(self.engine, path.stat().st_size)
        if room is None:
            self._scratch = tempfile.TemporaryDirectory(prefix="edgeseq-litertlm-")
            room = Path(self._scratch.name)
        room.mkdir(parents=True, exist_ok=True)
        try:
            with self._quiet():
                self.model = lm.Engine(str(path), backend=interfaces.Backend.CPU(thread_count=threads),
                                       max_num_tokens=int(self.manifest.static["cache_length"]),  # type: ignore[index]
                                       cache_dir=str(room))
        except RuntimeError as e:
            raise ArtifactError(f"LiteRT-LM could not load {path}: {first_line(e)}",
                                "re-export with --format tflite --native litertlm") from e
        self._checked: set[tuple[int, ...]] = set()
        self._by_text: dict[str, int] | None = None

    def _prompt_text(self, ids: list[int]) -> str:
        """The prompt as text that LiteRT-LM's tokenizer turns back into exactly `ids`."""
        text = self.tokenizer.decode(ids, skip_special_tokens=False)
        key = tuple(ids)
        if key not in self._checked:
            if self.model.tokenize(text) != ids:
                raise UsageError("engine litertlm takes a prompt as text and these ids do not survive the round "
                                 "trip through text", "use --engine litert for arbitrary id sequences")
            self._checked.add(key)
        return text

    def _ids(self, chunk: str) -> list[int]:
        """A streamed chunk as ids: the tokens whose texts make it up, longest first (a byte sequence that
        is not UTF-8 arrives as U+FFFD: one such token stands for it), else the tokenizer's reading of it."""
        if self._by_text is None:
            n = self.tokenizer.get_vocab_size()
            self._by_text = {}
            for i in range(n - 1, -1, -1):  # the lowest id wins
                self._by_text[self.tokenizer.decode([i], skip_special_tokens=False)] = i
        ids, i = [], 0
        while i < len(chunk):  # longest known token text first: a held-back token and the next one
            j = next((j for j in range(min(len(chunk), i + 64), i, -1) if chunk[i:j] in self._by_text), None)
            if j is None:
                return ids + self.tokenizer.encode(chunk[i:], add_special_tokens=False).ids
            ids.append(self._by_text[chunk[i:j]])
            i = j
        return ids

    def _tokens(self, ids: list[int], cfg: Any, stop: list[int], features: Any = None,
                samples: Any = None) -> Iterator[int]:
        text = self._prompt_text(ids)
        i = self._interfaces
        sampler = i.SamplerConfig(top_k=cfg.top_k or 0, top_p=cfg.top_p, temperature=cfg.temperature,
                                  seed=cfg.seed or 0) if cfg.do_sample else \
            i.SamplerConfig(top_k=1, top_p=1.0, temperature=1.0, seed=0)
        with self._quiet():
            session = self.model.create_session(apply_prompt_template=False, sampler_config=sampler,
                                                max_output_tokens=cfg.max_new_tokens)
        n = 0
        try:
            session.run_prefill([text])
            for r in session.run_decode_async():
                for token in self._ids(r.texts[0]):
                    if n == cfg.max_new_tokens:
                        return
                    n += 1
                    yield token
                    if token in stop:
                        return
        finally:
            session.cancel_process()
            session.close()
