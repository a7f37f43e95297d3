"""`export --native NAME`: the files a native app runtime needs to load an edgeseq artifact, written
into the artifact beside edgeseq's own, and checked there.

Every module in this package that declares `NATIVE = NativeSpec(...)` is one runtime; it defines
`write(directory, manifest, components) -> list[str]` (the files it wrote into the artifact folder being
exported, which already holds the graphs, the tokenizer and a passed parity check). After writing,
`check` opens the folder on the runtime's engine (runtimes/engines/NAME.py) and compares its greedy
tokens on the parity prompt with edgeseq's own engine's; the result goes into the manifest's
`native` section and a mismatch fails the export as a parity failure does.
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...artifact.manifest import Manifest
from ...declarations import Declared
from ...errors import MissingDependencyError, UsageError

CHECK_STEPS = 32  # greedy tokens compared, as the parity check's default


@dataclass(frozen=True)
class NativeSpec:
    name: str  # --native NAME; also the engine (runtimes/engines/NAME.py) that runs the result
    formats: tuple[str, ...]  # artifact formats it can bundle
    kinds: tuple[str, ...]  # model kinds it can bundle (decoder-only, encoder-decoder)
    package: str | None  # the importable library writing needs (None: plain files)
    install: str  # what brings it: a pip command naming the extra
    runtime: str  # the runtime, for messages (e.g. "onnxruntime-genai")
    rank: int = 50
    text: bool = False  # the runtime streams text, not ids: its tokens are compared as the text they decode to
    speech: bool = False  # it also bundles speech encoder-decoders (Whisper), whatever `kinds` says
    not_text_encdec: str = ""  # why it cannot bundle a text encoder-decoder (T5, BART), for the refusal


_TABLE = Declared("edgeseq.export.native", "NATIVE", NativeSpec, "native runtime",
                  "a new one is a module in edgeseq/export/native/ that declares NATIVE = NativeSpec(...)")


def names() -> list[str]:
    return list(_TABLE.found())


def spec(name: str) -> NativeSpec:
    return _TABLE.get(name)


def validate(names_: list[str], format: str, kind: str | None = None, target: str = "cpu",
             speech: bool = False) -> None:
    """Refuse, before the model loads, a --native the export cannot make (`kind` None: not known yet;
    `speech`: the model reads audio, as Whisper)."""
    for name in names_:
        s = spec(name)
        if format not in s.formats or target != "cpu":
            raise UsageError(f"--native {name} needs --format {' or '.join(s.formats)} (target cpu), "
                             f"not --format {format}" + (f" --target {target}" if target != "cpu" else ""),
                             f"export with --format {s.formats[0]}, or drop --native {name}")
        if kind is not None and kind not in s.kinds and not (speech and s.speech):
            runs = " and ".join(s.kinds) + (" and Whisper (speech)" if s.speech else "")
            why = f" ({s.not_text_encdec})" if s.not_text_encdec and kind == "encoder-decoder" else ""
            raise UsageError(f"--native {name}: {s.runtime} does not run {'text ' if s.speech else ''}{kind} models "
                             f"through edgeseq{why}", f"it runs {runs} models; drop --native {name}")
        if s.package and importlib.util.find_spec(s.package) is None:
            raise MissingDependencyError(f"--native {name} needs the Python package '{s.package}', which is not "
                                         "installed", s.install)


def write(name: str, directory: Path, manifest: Manifest, components: list[Any]) -> dict[str, Any]:
    """Write runtime `name`'s files into `directory` and check them; the manifest's record of it.
    `components`: the export's step modules (a runtime whose graph contract differs converts them again)."""
    files = _TABLE.module(name).write(directory, manifest, components)
    return {"files": sorted(files), "runtime": spec(name).runtime, "check": check(name, directory, manifest)}


def check(name: str, directory: Path, manifest: Manifest, steps: int = CHECK_STEPS) -> dict[str, Any]:
    """Greedy tokens of the runtime against edgeseq's own engine on the parity prompt (the same ids; for
    speech, the parity check's test signal with Whisper's decoder prompt)."""
    from ...accuracy import prompt_ids
    from ...generate.config import GenerationConfig
    from ...generate.loop import run
    from ...runtimes import BackendOptions, open_backend

    features, samples = None, None
    if manifest.audio:  # speech: the parity check's test signal, Whisper's decoder prompt
        from ..parity import parity_features, parity_signal
        from ...generate.speech import prompt

        features, ids = parity_features(manifest.audio), prompt(manifest.audio["tokens"])
        samples = [parity_signal(manifest.audio)]  # for a runtime that makes its own features from audio
    else:
        ids = prompt_ids((directory / "tokenizer.json").read_text(), manifest.kind, manifest.generation,
                         int(manifest.dims["vocab_size"]))
    if manifest.static:  # a static-shape artifact: within the limits it was compiled for, as parity does
        ids, steps = ids[: manifest.static["max_input"]], min(steps, manifest.static["max_output"])
    cfg = GenerationConfig(max_new_tokens=steps, ignore_eos=True).validate()
    options = BackendOptions(precision="f32")
    own = open_backend(directory, manifest, "cpu", None, options)
    want, _ = run(own, [ids], cfg, manifest.generation, features=features)
    del own
    try:
        theirs = open_backend(directory, manifest, "cpu", name, options)
    except MissingDependencyError as e:  # files written, runtime absent here: checked at load instead
        return {"status": "skipped", "reason": e.message}
    got, _ = run(theirs, [ids], cfg, manifest.generation, features=features, samples=samples)
    agree = next((i for i, (a, b) in enumerate(zip(got[0], want[0])) if a != b), None)
    passed = agree is None and len(got[0]) == len(want[0])
    extra: dict[str, Any] = {}
    if spec(name).text and not passed:  # ids re-read from streamed text: a byte token held back and sent
        # with the next one can come back as other ids of the same bytes; the text is what the runtime gave
        from tokenizers import Tokenizer

        tok = Tokenizer.from_str((directory / "tokenizer.json").read_text())
        texts = [tok.decode(t, skip_special_tokens=False) for t in (got[0], want[0])]
        passed = texts[0] == texts[1]
        extra = {"compared": "text", "text_equal": passed}
    return {"status": "passed" if passed else "failed", "steps": steps, **extra,
            "engine": name, "against": own_engine(manifest), "first_mismatch": agree,
            "tokens": got[0][:8], "expected": want[0][:8]}


def own_engine(manifest: Manifest) -> str:
    from ...runtimes import default_engine

    return default_engine(manifest)
