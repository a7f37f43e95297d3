"""The app-facing API: `edgeseq.load(artifact)` -> Model with generate(), stream() and, for speech
artifacts (Whisper), transcribe(). No torch."""
from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .artifact import manifest as mf
from .errors import ArtifactError, InputError, MissingDependencyError, UsageError
from .generate.beam import beam_search
from .generate.config import GenerationConfig
from .generate.generator import Generator
from .generate.loop import Timings, run, steps, stop_ids
from .generate.proposers import DraftModel, LookupThenDraft, PromptLookup, Proposer
from .generate.speculate import Speculation, run as speculate_run, steps as speculate_steps
from .generate.speech import Transcription
from .generate.text import StopText, TextStream, cut_at_stop
from .runtimes import BackendOptions


@dataclass
class Generation:
    """One generate() call: per prompt, the new token ids and text (the best beam under beam
    search), the loop's timings, and with beams every returned sequence (best first)."""

    ids: list[list[int]]
    texts: list[str]
    timings: Timings
    sequences: list[list[list[int]]] | None = None
    speculation: dict[str, Any] | None = None  # acceptance statistics of a speculative run (speculate.Speculation)


class Model:
    """A loaded artifact: immutable and shareable; every call builds its own cache state."""

    def __init__(self, path: Path, manifest: mf.Manifest, backend: Any, tokenizer: Any) -> None:
        self.path, self.manifest, self.backend, self.tokenizer = path, manifest, backend, tokenizer
        self.gen_defaults: dict[str, Any] = manifest.generation
        self._template: Any = None  # compiled chat template, built on first use
        self._drafts: dict[str, Model] = {}  # draft artifacts loaded by path for speculate=, kept for later calls
        self._checked: set[Path] = set()  # drafts found to match this model (DraftModel.check)

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
    def generate_ids(self, rows: list[list[int]], config: GenerationConfig | None = None,
                     speculate: "str | Path | Model | Proposer | None" = None, draft_tokens: int = 5,
                     **options: Any) -> Generation:
        """Generate from token ids (one list per prompt, each id in the vocabulary); see generate() for text."""
        cfg = _config(config, options)
        stops = cfg.stop or []
        if speculate is not None:
            return self._speculate(rows, cfg, speculate, draft_tokens, stops)
        if cfg.num_beams > 1:  # the search runs as usual; each returned sequence is cut at its first stop string
            timings = Timings()
            seqs = beam_search(self.backend, rows, cfg, self.gen_defaults, timings)
            if stops:
                seqs = [[self._cut_ids(s, stops) for s in row] for row in seqs]
            best = [s[0] for s in seqs]
            return Generation(best, [cut_at_stop(self.decode(r), stops)[0] for r in best], timings, seqs)
        ids, timings = run(self.backend, rows, cfg, self.gen_defaults, halt=self._halt(stops))
        return Generation(ids, [cut_at_stop(self.decode(r), stops)[0] for r in ids], timings)

    def _halt(self, stops: list[str]) -> Any:
        """halt(row, token) for the loops: True on the token that completes one of `stops` in that row's text."""
        texts: dict[int, tuple[TextStream, StopText]] = {}

        def halt(row: int, token: int) -> bool:
            stream, stop = texts.setdefault(row, (TextStream(self.tokenizer), StopText(stops)))
            stop.push(stream.push(token))
            return stop.hit
        return halt if stops else None

    def _speculate(self, rows: list[list[int]], cfg: GenerationConfig, speculate: "str | Path | Model | Proposer",
                   draft_tokens: int, stops: list[str]) -> Generation:
        ids, timings, stats = speculate_run(self.backend, rows, cfg, self.gen_defaults, self.proposer(speculate),
                                            draft_tokens, halt=self._halt(stops))
        return Generation(ids, [cut_at_stop(self.decode(r), stops)[0] for r in ids], timings,
                          speculation=stats.as_dict())

    def proposer(self, speculate: "str | Path | Model | Proposer") -> Proposer:
        """What proposes tokens for `speculate=`: "lookup" (prompt lookup), a draft artifact (its path,
        or a loaded Model) with this model's tokenizer, or a Proposer of the caller's own."""
        self.backend.check_verify()  # before a draft is loaded for nothing
        if isinstance(speculate, Proposer):  # a caller's own (generate/proposers.py)
            return speculate
        if isinstance(speculate, str) and speculate == "lookup":
            return PromptLookup()
        if isinstance(speculate, str) and speculate.startswith("lookup+"):  # lookup where it matches, else a draft
            draft = self.proposer(speculate[len("lookup+"):])
            if not isinstance(draft, DraftModel):
                raise UsageError(f"speculate={speculate!r}: what follows 'lookup+' must be a draft artifact",
                                 "pass 'lookup+PATH' with the path of a draft artifact")
            return LookupThenDraft(draft)
        if isinstance(speculate, (str, Path)):
            key = str(Path(speculate).resolve())
            if key not in self._drafts:
                if not (Path(speculate) / mf.MANIFEST).exists():
                    raise UsageError(f"speculate={str(speculate)!r} is neither 'lookup' nor an artifact directory",
                                     "pass speculate='lookup', the path of a draft artifact (edgeseq export ...) "
                                     "or 'lookup+PATH' (lookup where it matches, else the draft)")
                self._drafts[key] = load(speculate, threads=self.backend.options.threads)
            speculate = self._drafts[key]
        if not isinstance(speculate, Model):
            raise UsageError(f"speculate must be 'lookup', an artifact path or a loaded Model, got "
                             f"{type(speculate).__name__}", "pass speculate='lookup' or a draft artifact's path")
        if speculate.path not in self._checked:  # read both tokenizers once per draft, not per call
            DraftModel.check(self.backend, speculate.backend)
            self._checked.add(speculate.path)
        return DraftModel(speculate.backend, speculate.gen_defaults, f"draft {speculate.path.name}")

    def _cut_ids(self, ids: list[int], stops: list[str]) -> list[int]:
        """ids up to and including the token whose text completes the first stop string (beam results)."""
        if not cut_at_stop(self.decode(ids), stops)[1]:
            return ids
        return next(ids[:n] for n in range(1, len(ids) + 1) if cut_at_stop(self.decode(ids[:n]), stops)[1])

    def generator(self, prompt: str | list[int], chat: bool = False, config: GenerationConfig | None = None,
                  **options: Any) -> Generator:
        """A caller-owned loop over one sequence: next_token(), done, append_tokens(), rewind()."""
        cfg = _config(config, options)
        if cfg.stop:
            raise UsageError("a Generator returns token ids; stop strings apply to text",
                             "check the decoded text yourself, or use generate() / stream() with stop=")
        ids = self.encode(prompt, chat) if isinstance(prompt, str) else list(prompt)
        return Generator(self.backend, self.gen_defaults, cfg, ids)

    def generate(self, prompt: str | list[str], chat: bool = False, config: GenerationConfig | None = None,
                 speculate: "str | Path | Model | Proposer | None" = None, draft_tokens: int = 5,
                 **options: Any) -> Generation:
        """Generate for one prompt or a batch (padded correctly; each row stops on its own).

        Options are GenerationConfig's fields (an unknown name is a UsageError listing them); `stop`:
        strings that end a row's text where they first appear, not returned. `speculate`: "lookup" or
        a draft artifact (path or Model) proposes up to `draft_tokens` tokens that the model checks in
        one step (docs/speculative.md); greedy output is unchanged, sampling keeps its distribution,
        and the result's `speculation` holds the acceptance statistics."""
        cfg = _config(config, options)
        t = time.perf_counter()
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        if not prompts:
            raise InputError("no prompts given", "pass a string or a non-empty list of strings")
        rows = [self.encode(p, chat) for p in prompts]
        tok_ms = (time.perf_counter() - t) * 1e3
        out = self.generate_ids(rows, cfg, speculate=speculate, draft_tokens=draft_tokens)
        out.timings.tokenize_ms = tok_ms
        return out

    def transcribe(self, audio: Any, language: str | None = None, task: str = "transcribe",
                   timestamps: bool = False, batch_size: int = 8, config: GenerationConfig | None = None,
                   **options: Any) -> Transcription:
        """Speech to text (Whisper artifacts): `audio` is a file path (WAV; FLAC and others with
        soundfile installed; any sampling rate, resampled to 16 kHz) or a float array of mono samples
        at 16 kHz. Long audio is transcribed in 30 s windows, `batch_size` windows per batch.

        `language` (multilingual models): a code such as "en" or "de", or None to detect it per
        window; `task`: transcribe or translate (to English); `timestamps`: segments timed by the
        model's timestamp tokens (greedy or sampling only). Options are GenerationConfig's (num_beams,
        max_new_tokens, ...); max_new_tokens defaults to what the decoder's positions leave."""
        from .audio import load_audio
        from .generate.speech import transcribe

        if not self.manifest.audio:
            raise InputError(f"{self.path} is not a speech model", "transcribe with a Whisper artifact; "
                             "generate() takes text prompts")
        if config is None and "max_new_tokens" not in options:  # half the decoder's positions, within a static cache
            cap = int(self.manifest.dims["max_positions"]) // 2
            options["max_new_tokens"] = min(cap, int(self.manifest.static["max_output"])) if self.manifest.static \
                else cap
        cfg = _config(config, options)
        samples = load_audio(audio, int(self.manifest.audio["sampling_rate"]))
        return transcribe(self.backend, self.tokenizer, samples, cfg, language, task, timestamps, batch_size)

    def stream(self, prompt: str, chat: bool = False, config: GenerationConfig | None = None,
               timings: Timings | None = None, speculate: "str | Path | Model | Proposer | None" = None,
               draft_tokens: int = 5, speculation: Speculation | None = None, **options: Any) -> Iterator[str]:
        """Yield text pieces as tokens arrive; a piece never ends inside a multi-byte character.

        Pass a `Timings()` to have the loop's clock filled in as the stream runs. The pieces join to
        generate()'s text: with `stop`, text that could still become a stop string is held back until
        it cannot; a character left incomplete at the end comes out as U+FFFD, as in generate().
        `speculate` / `draft_tokens` as in generate(); pass a `Speculation` to have its statistics filled in."""
        cfg = _config(config, options)
        if cfg.num_beams > 1:
            raise UsageError("stream() follows one sequence; beam search knows the best only at the end",
                             "use generate(..., num_beams=N)")
        timings = timings if timings is not None else Timings()
        t = time.perf_counter()
        rows = [self.encode(prompt, chat)]
        timings.tokenize_ms = (time.perf_counter() - t) * 1e3
        eos = set(stop_ids(cfg, self.gen_defaults))
        text = TextStream(self.tokenizer)
        stop = StopText(cfg.stop or [])
        halted = np.zeros(1, bool)
        if speculate is None:
            loop = (tokens.tolist() for tokens in steps(self.backend, rows, cfg, self.gen_defaults, timings,
                                                        halted=halted))
        else:
            proposer = self.proposer(speculate)
            loop = (new[0] for new in speculate_steps(self.backend, rows, cfg, self.gen_defaults, timings, proposer,
                                                      draft_tokens, speculation, halted=halted))
        for tokens in loop:
            for t in tokens:
                if t in eos and not cfg.ignore_eos:
                    break
                piece = stop.push(text.push(t))
                if piece:
                    yield piece
                if stop.hit:
                    halted[0] = True  # the loop ends at its next step, its clock complete
                    break
            if tokens and tokens[-1] in eos and not cfg.ignore_eos:
                break
        tail = "" if stop.hit else stop.push(text.flush()) + stop.flush()
        if tail:
            yield tail


def _config(config: GenerationConfig | None, options: dict[str, Any]) -> GenerationConfig:
    """The call's settings: a config, or keyword options (not both), validated."""
    if config is not None and options:
        raise UsageError(f"pass either config= or keyword options, not both (got {', '.join(sorted(options))})",
                         "put the options into the GenerationConfig")
    return (config if config is not None else GenerationConfig.from_options(**options)).validate()


def _check_unicode(text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:  # lone surrogates, e.g. from bytes decoded with surrogateescape
        raise InputError(f"prompt is not valid Unicode text ({e.reason} at position {e.start})",
                         "decode the input bytes as UTF-8 with errors='replace'") from e


def load(path: str | Path, device: str = "cpu", engine: str | None = None, threads: int | None = None,
         precision: str = "f32", delegate: str | None = None, engine_options: Any = None,
         max_memory_mb: float | None = None) -> Model:
    """Load an artifact directory for generation on `device` (cpu | gpu | npu[:vendor] | auto).

    `precision` is the compute precision for engines that choose one (OpenVINO: f32, bf16, f16 or
    default); ONNX Runtime's CPU provider computes in the graph's float32. `delegate` is a LiteRT
    GPU / NPU delegate library (TFLite artifacts on --device gpu / npu). `engine_options` are the
    engine's own settings: its options dataclass (e.g. `OnnxRuntimeOptions(kv_buffer=False)`) or a
    dict of its field names; an unknown name is a UsageError listing the valid ones.
    `engine="torch"` runs the PyTorch reference (edgeseq.reference) instead of an engine.
    `max_memory_mb`: a memory budget; the load is refused before it starts when the estimate of the
    weights as the engine holds them exceeds it, and each later request before it runs when the estimate
    with its KV cache and workspace does (edgeseq.resources.estimate; ResourceError)."""
    from .reference import open_runner

    options = BackendOptions(threads=threads, precision=precision, delegate=delegate,
                             engine_options=engine_options, max_memory_mb=max_memory_mb).validate()
    p = Path(path)
    manifest = mf.read(p)
    try:
        from tokenizers import Tokenizer

        tokenizer = Tokenizer.from_file(str(p / mf.TOKENIZER))
    except Exception as e:  # a missing or corrupt tokenizer.json: tokenizers raises a bare Exception
        raise ArtifactError(f"cannot read {p / mf.TOKENIZER} ({e})", "re-export the artifact") from e
    backend = open_runner(p, manifest, device, engine, options)
    return Model(p, manifest, backend, tokenizer)
