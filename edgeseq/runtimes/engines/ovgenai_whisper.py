"""The ovgenai engine's speech half: a Whisper artifact exported with `--native ovgenai` run by
`openvino_genai.WhisperPipeline` (files: export/native/ovgenai_whisper.py).

WhisperPipeline takes 16 kHz samples, not features: it computes its own log-mel with the artifact's
preprocessor_config.json, so the engine hands it the window's samples (runtimes/native.py
`reads_samples`) and edgeseq's features go unused. It builds the decoder prompt itself from the
generation config (start, language and task for a multilingual model, <|notimestamps|>), so the prompt
edgeseq hands over is read back into those settings and must be one WhisperPipeline would build.
Suppression is WhisperPipeline's own: begin_suppress_tokens on the first step, suppress_tokens on
every step (from generation_config.json, edgeseq's lists); a forced length (no stop ids) adds the end
ids to suppress_tokens, as edgeseq's loop bans them, and sets ignore_eos.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ...errors import ArtifactError, UsageError, first_line


def open_pipeline(artifact: Path, props: dict[str, Any]) -> Any:
    import openvino_genai as ovg

    try:
        return ovg.WhisperPipeline(str(artifact), "CPU", **props)
    except RuntimeError as e:
        raise ArtifactError(f"openvino.genai could not load {artifact}: {first_line(str(e))}",
                            "re-export with --native ovgenai") from None


def settings(manifest: Any, ids: list[int]) -> dict[str, Any]:
    """The language and task WhisperPipeline must be given to build exactly the decoder prompt `ids`."""
    tokens = manifest.audio["tokens"]
    no_ts = tokens.get("no_timestamps")
    if not ids or ids[0] != tokens["start"] or no_ts is None or ids[-1] != no_ts:
        raise UsageError("engine ovgenai takes Whisper's decoder prompt without timestamps only "
                         "(<|startoftranscript|> [language task] <|notimestamps|>)",
                         "transcribe without --timestamps, or use --engine openvino (edgeseq's own engine)")
    middle = ids[1:-1]
    if not tokens.get("multilingual"):
        if middle:
            raise UsageError("an English-only Whisper prompt is <|startoftranscript|> <|notimestamps|>",
                             "drop --language / --task")
        return {}
    langs = {int(v): k for k, v in (tokens.get("languages") or {}).items()}
    tasks = {int(tokens[t]): t for t in ("transcribe", "translate") if tokens.get(t) is not None}
    if len(middle) != 2 or middle[0] not in langs or middle[1] not in tasks:
        raise UsageError("engine ovgenai needs a multilingual Whisper prompt with its language and task",
                         "pass --language (engine ovgenai does not detect it through edgeseq)")
    return {"language": f"<|{langs[middle[0]]}|>", "task": tasks[middle[1]]}


def config(pipe: Any, manifest: Any, ids: list[int], cfg: Any, stop: list[int]) -> Any:
    """The request's WhisperGenerationConfig: greedy (or sampling), no timestamps, `cfg`'s length."""
    from .ovgenai import decoding

    c = decoding(pipe.get_generation_config(), cfg)
    for key, value in settings(manifest, ids).items():
        setattr(c, key, value)
    c.return_timestamps = False
    ends = [int(t) for t in manifest.generation.get("eos_token_ids") or []]
    if stop:
        c.ignore_eos = False
        c.eos_token_id, c.stop_token_ids = int(stop[0]), set(int(s) for s in stop)
    else:  # forced length: the end ids are never chosen, as edgeseq's loop bans them
        c.ignore_eos, c.stop_token_ids = True, set()
        c.suppress_tokens = sorted(set(c.suppress_tokens) | set(ends))
    return c
