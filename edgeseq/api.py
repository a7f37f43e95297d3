"""The app-facing API: `edgeseq.load(artifact)` -> Model with generate() and stream(). No torch."""
from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .artifact import manifest as mf
from .errors import ArtifactError, InputError, MissingDependencyError
from .generate.beam import beam_search
from .generate.config import GenerationConfig
from .generate.generator import Generator
from .generate.loop import Timings, run, steps, stop_ids
from .generate.text import TextStream
from .runtimes import BackendOptions


@dataclass
class Generation:
    """One generate() call: per prompt, the new token ids and text (the best beam under beam
    search), the loop's timings, and with beams every returned sequence (best first)."""

    ids: list[list[int]]
    texts: list[str]
    timings: Timings
    sequences: list[list[list[int]]] | None = None


class Model:
    """A loaded artifact: immutable and shareable; every call builds its own cache state."""

    def __init__(self, path: Path, manifest: mf.Manifest, backend: Any, tokenizer: Any) -> None:
        self.path, self.manifest, self.backend, self.tokenizer = path, manifest, backend, tokenizer
        self.gen_defaults: dict[str, Any] = manifest.generation
        self._template: Any = None  # compiled chat template, built on first use

    @property
    def kind(self) -> str:
        return self.manifest.kind

    # -- text <-> ids ------------------------------------------------------------------------------
    def encode(self, prompt: str, chat: bool = False) -> list[int]:
        """Prompt text -> token ids. `chat=True` applies the artifact's chat template first."""
        if not isinstance(prompt, str):
            raise InputError(f"prompt must be a string, got {type(prompt).__name__}", "pass text; for ids use generate_ids()")
        if not prompt.strip():
            raise InputError("empty prompt", "pass some text to generate from")
        _check_unicode(prompt)
        g = self.gen_defaults
        if chat:
            return self.encode_chat([{"role": "user", "content": prompt}])
        ids = list(self.tokenizer.encode(prompt, add_special_tokens=self.kind == "encoder-decoder").ids)
        if g.get("add_bos") and g.get("bos_token_id") is not None and (not ids or ids[0] != g["bos_token_id"]):
            ids = [int(g["bos_token_id"])] + ids
        eos = g.get("eos_token_ids") or []
        if self.kind == "encoder-decoder" and eos and (not ids or ids[-1] != eos[0]):
            ids = ids + [int(eos[0])]  # T5 encoders were trained on inputs that end with </s>
        return ids

    def decode(self, ids: list[int]) -> str:
        return str(self.tokenizer.decode(ids, skip_special_tokens=True))

    def encode_chat(self, messages: list[dict[str, str]]) -> list[int]:
        """A conversation ([{"role": "user" | "assistant" | "system", "content": ...}]) rendered with
        the artifact's chat template, ready for the assistant's next turn, as token ids."""
        if not messages or any(not isinstance(m, dict) or "role" not in m or "content" not in m for m in messages):
            raise InputError("messages must be a non-empty list of {'role': ..., 'content': ...}",
                             "e.g. [{'role': 'user', 'content': 'Hello'}]")
        if not str(messages[-1]["content"]).strip():
            raise InputError("empty prompt", "pass some text to generate from")
        text = self._apply_template(messages)
        _check_unicode(text)
        return list(self.tokenizer.encode(text, add_special_tokens=False).ids)

    def _apply_template(self, messages: list[dict[str, str]]) -> str:
        source = self.gen_defaults.get("chat_template")
        if not source:
            raise InputError("this artifact has no chat template", "generate without --chat (raw prompt)")
        if self._template is None or self._template[0] != source:
            try:
                import jinja2
            except ImportError as e:
                raise MissingDependencyError("chat templates need jinja2", "pip install jinja2") from e
            env = jinja2.Environment(trim_blocks=True, lstrip_blocks=True)
            self._template = (source, env.from_string(source))
        return str(self._template[1].render(messages=messages, add_generation_prompt=True, bos_token="",
                                            eos_token=""))

    # -- generation ------------------------------------------------------------------------------------
    def generate_ids(self, rows: list[list[int]], config: GenerationConfig | None = None) -> Generation:
        """Generate from token ids (one list per prompt); see generate() for text."""
        cfg = (config or GenerationConfig()).validate()
        if cfg.num_beams > 1:
            timings = Timings()
            seqs = beam_search(self.backend, rows, cfg, self.gen_defaults, timings)
            best = [s[0] for s in seqs]
            return Generation(best, [self.decode(r) for r in best], timings, seqs)
        ids, timings = run(self.backend, rows, cfg, self.gen_defaults)
        return Generation(ids, [self.decode(r) for r in ids], timings)

    def generator(self, prompt: str | list[int], chat: bool = False, config: GenerationConfig | None = None,
                  **options: Any) -> Generator:
        """A caller-owned loop over one sequence: next_token(), done, append_tokens(), rewind()."""
        cfg = (config or GenerationConfig(**options)).validate()
        ids = self.encode(prompt, chat) if isinstance(prompt, str) else [int(i) for i in prompt]
        return Generator(self.backend, self.gen_defaults, cfg, ids)

    def generate(self, prompt: str | list[str], chat: bool = False, config: GenerationConfig | None = None,
                 **options: Any) -> Generation:
        """Generate for one prompt or a batch (padded correctly; each row stops on its own)."""
        cfg = config or GenerationConfig(**options)
        t = time.perf_counter()
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        if not prompts:
            raise InputError("no prompts given", "pass a string or a non-empty list of strings")
        rows = [self.encode(p, chat) for p in prompts]
        tok_ms = (time.perf_counter() - t) * 1e3
        out = self.generate_ids(rows, cfg)
        out.timings.tokenize_ms = tok_ms
        return out

    def stream(self, prompt: str, chat: bool = False, config: GenerationConfig | None = None,
               timings: Timings | None = None, **options: Any) -> Iterator[str]:
        """Yield text pieces as tokens arrive; a piece never ends inside a multi-byte character.

        Pass a `Timings()` to have the loop's clock filled in as the stream runs."""
        cfg = (config or GenerationConfig(**options)).validate()
        timings = timings if timings is not None else Timings()
        t = time.perf_counter()
        rows = [self.encode(prompt, chat)]
        timings.tokenize_ms = (time.perf_counter() - t) * 1e3
        eos = set(stop_ids(cfg, self.gen_defaults))
        text = TextStream(self.tokenizer)
        for tokens in steps(self.backend, rows, cfg, self.gen_defaults, timings):
            t = int(tokens[0])
            if t in eos and not cfg.ignore_eos:
                break
            piece = text.push(t)
            if piece:
                yield piece


def _check_unicode(text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:  # lone surrogates, e.g. from bytes decoded with surrogateescape
        raise InputError(f"prompt is not valid Unicode text ({e.reason} at position {e.start})",
                         "decode the input bytes as UTF-8 with errors='replace'") from e


def load(path: str | Path, device: str = "cpu", engine: str | None = None, threads: int | None = None,
         precision: str = "f32", delegate: str | None = None, engine_options: Any = None) -> Model:
    """Load an artifact directory for generation on `device` (cpu | gpu | npu[:vendor] | auto).

    `precision` is the compute precision for engines that choose one (OpenVINO: f32, bf16, f16 or
    default); ONNX Runtime's CPU provider computes in the graph's float32. `delegate` is a LiteRT
    GPU / NPU delegate library (TFLite artifacts on --device gpu / npu). `engine_options` are the
    engine's own settings: its options dataclass (e.g. `OnnxRuntimeOptions(kv_buffer=False)`) or a
    dict of its field names; an unknown name is a UsageError listing the valid ones.
    `engine="torch"` runs the PyTorch reference (edgeseq.reference) instead of an engine."""
    from .reference import open_runner

    p = Path(path)
    manifest = mf.read(p)
    try:
        from tokenizers import Tokenizer

        tokenizer = Tokenizer.from_file(str(p / mf.TOKENIZER))
    except Exception as e:  # a missing or corrupt tokenizer.json: tokenizers raises a bare Exception
        raise ArtifactError(f"cannot read {p / mf.TOKENIZER} ({e})", "re-export the artifact") from e
    backend = open_runner(p, manifest, device, engine, BackendOptions(threads=threads, precision=precision,
                                                                      delegate=delegate,
                                                                      engine_options=engine_options))
    return Model(p, manifest, backend, tokenizer)
