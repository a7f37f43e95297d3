"""Artifacts for the PyTorch engines alone: the manifest and tokenizer an export writes, without graphs.

`--engine torch` and `--engine torch-compile` rebuild the model from the manifest's recorded source
and seed and read nothing else, so a sweep that runs only them (`edgeseq compare --engine
torch-compile`, the GPU suite) needs neither a converter nor the minutes an export of a large model
takes. The manifest says so: format `source`, no graph files, parity skipped, a note.
"""
from __future__ import annotations

from pathlib import Path

from ..artifact import manifest as mf

FORMAT = "source"  # Manifest.format of these artifacts
NOTE = "source-only artifact: the manifest and tokenizer, no graphs; runs on the PyTorch engines only"


def write(source: str, out: Path, engine: str, seed: int = 0) -> mf.Manifest:
    """Write the manifest and tokenizer of `source` to `out` (made here; written last, as an export does)."""
    from ..models import resolve
    from ..steps import components
    from .pipeline import _bytes_per_token, _model_info

    spec = resolve(source, seed=seed)
    out.mkdir(parents=True, exist_ok=True)
    (out / mf.TOKENIZER).write_text(spec.tokenizer_json)
    infos = {}
    for c in components(spec, picks=False):
        names = lambda ns: [{"name": n, "dtype": "", "shape": []} for n in ns]  # noqa: E731
        infos[c.name] = mf.ComponentInfo(file="", inputs=names(c.inputs), outputs=names(c.outputs),
                                         cache_inputs=list(c.cache_inputs), cache_outputs=list(c.cache_outputs),
                                         weight_bytes=sum(p.numel() * p.element_size() for p in c.module.parameters()))
    model = _model_info(spec, seed)
    model["notes"] = [*model["notes"], NOTE]
    m = mf.Manifest(format=FORMAT, engine=engine, kind=spec.kind, model=model, dims=spec.dims.as_dict(),
                    components=infos, generation=spec.generation.as_dict(), audio=spec.audio,
                    parity={"status": "skipped", "reason": "source-only artifact: no graphs to check"},
                    files={mf.TOKENIZER: mf.file_record(out / mf.TOKENIZER)})
    m.model["bytes_read_per_token"] = _bytes_per_token(spec, m)
    m.write(out)
    return m
