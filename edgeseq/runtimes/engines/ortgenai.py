"""onnxruntime-genai engine: an edgeseq ONNX artifact exported with `--native ortgenai`, run by
onnxruntime-genai's own token loop (`Model` + `Generator`) on its CPU provider.

The artifact's genai_config.json names edgeseq's graph inputs and outputs (export/native/ortgenai.py);
this engine opens it with onnxruntime-genai's `Config` (threads overlaid as the session's intra-op
threads), hands the prompt ids to `Generator.append_tokens` and takes each id from
`generate_next_token` / `get_next_tokens` as it comes. No tokenizer is involved: edgeseq passes ids.
A forced-length request (no stop ids) sets min_length to the full length, so onnxruntime-genai masks
the artifact's EOS ids as edgeseq's own loop does; otherwise the loop ends at the first stop id
(onnxruntime-genai also ends by itself at the artifact's EOS ids).

Whisper artifacts run as onnxruntime-genai's `whisper` model (export/native/ortgenai_whisper.py): one
window's log-mel features go in as the `audio_features` input (`Generator.set_inputs`), the decoder
prompt as the first appended ids; Whisper's suppressed ids are applied inside the artifact's decoder graph.
"""
from __future__ import annotations

import json
from typing import Any, Iterator

import numpy as np

from ...errors import ArtifactError, DeviceError, UsageError, first_line
from .. import devices
from ..host import fpenv
from ..native import NativeBackend
from ..registry import EngineSpec

CONFIG = "genai_config.json"
INSTALL = "pip install 'edgeseq[ortgenai]'"

ENGINE = EngineSpec(
    name="ortgenai", backend="OrtGenAiBackend", package="onnxruntime_genai", install=INSTALL,
    formats=("onnx",), rank=60,  # never the default for ONNX: only artifacts exported --native ortgenai
    weights_resident=(("fp32", 1.2), ("*", 1.5)),
    devices=(devices.DeviceRow("ortgenai", "cpu", "", "CPU provider", INSTALL),))


def probe(row: devices.DeviceRow) -> str | None:
    """None when the row can run here, else the reason it cannot."""
    try:
        import onnxruntime_genai  # noqa: F401
    except ImportError:
        return "onnxruntime-genai is not installed"
    return None if row.device == "cpu" else f"edgeseq runs onnxruntime-genai on cpu only, not {row.device}"


def refusal(manifest: Any) -> str | None:
    """Why this engine cannot run an artifact on any device, or None."""
    if manifest.kind != "decoder-only" and not manifest.audio:
        return (f"onnxruntime-genai does not run edgeseq's text {manifest.kind} artifacts (its encoder-decoder "
                "types are Whisper's audio encoder and Marian-SSRU, not a token encoder with self- and cross-caches)")
    if "ortgenai" not in (manifest.native or {}):
        return "the artifact has no onnxruntime-genai files (genai_config.json)"
    return None


def runnable(manifest: Any) -> bool:
    """Decoder-only and Whisper (speech) artifacts: the kinds `--native ortgenai` bundles."""
    return manifest.kind == "decoder-only" or bool(manifest.audio)


def refusal_fix(manifest: Any) -> str:
    return "with --native ortgenai" if runnable(manifest) else ""


class OrtGenAiBackend(NativeBackend):
    engine = "ortgenai"
    speech = True  # Whisper artifacts: one window's features per request

    def _load(self) -> None:
        import onnxruntime_genai as og

        if self.device != "cpu":
            raise DeviceError(f"engine ortgenai runs on cpu here, not {self.device}", "drop --device, or use "
                              "--engine onnxruntime for other devices")
        # the files, not the manifest's record of them: the export's check opens the folder before recording
        why = refusal(self.manifest) if not runnable(self.manifest) else None
        if why or not (self.artifact / CONFIG).is_file():
            fix = ("re-export with --native ortgenai" if runnable(self.manifest) else
                   "use --engine onnxruntime: onnxruntime-genai runs decoder-only and Whisper artifacts only")
            raise ArtifactError(f"{self.artifact}: {why or 'genai_config.json is missing'}", fix)
        try:
            config = og.Config(str(self.artifact))
            config.clear_providers()  # the CPU provider
            if self.options.threads:
                threads = {"session_options": {"intra_op_num_threads": self.options.threads, "inter_op_num_threads": 1}}
                sessions = ("decoder", "encoder") if self.manifest.audio else ("decoder",)
                config.overlay(json.dumps({"model": {name: threads for name in sessions}}))
            self.model = og.Model(config)
        except Exception as e:  # onnxruntime-genai raises RuntimeError / OrtException with its own text
            raise ArtifactError(f"onnxruntime-genai cannot load {self.artifact}: {first_line(e)}",
                                "re-export with --native ortgenai using this edgeseq") from e
        self.og = og
        if self.manifest.quantization in ("w4a8", "w8a8", "w8a8-token"):  # int8 activations, as in the ORT engine
            self.precision = "int8"
        # the calling thread runs its share of each step too: subnormals flushed there as on the pool's
        # threads (the config's session.set_denormal_as_zero), only while onnxruntime-genai runs
        self._fp = fpenv.EngineEnv(True)
        self.vocab = int(self.manifest.dims["vocab_size"])
        self.max_length = int(self.manifest.dims["max_positions"])

    def check(self, cfg: Any, rows: list[list[int]], features: Any = None) -> None:
        super().check(cfg, rows, features)
        total = len(rows[0]) + cfg.max_new_tokens
        if total > self.max_length:
            raise UsageError(f"prompt ({len(rows[0])}) + --max-new-tokens ({cfg.max_new_tokens}) passes the "
                             f"model's {self.max_length} positions", "shorten the prompt or --max-new-tokens")

    def _tokens(self, ids: list[int], cfg: Any, stop: list[int], features: Any = None,
                samples: Any = None) -> Iterator[int]:
        og = self.og
        total = len(ids) + cfg.max_new_tokens
        params = og.GeneratorParams(self.model)
        search: dict[str, Any] = dict(max_length=total, min_length=total if not stop else 0, num_beams=1,
                                      do_sample=bool(cfg.do_sample))
        if cfg.do_sample:
            search.update(temperature=float(cfg.temperature), top_k=int(min(cfg.top_k, self.vocab)),
                          top_p=float(cfg.top_p))
            if cfg.seed is not None:
                search["random_seed"] = int(cfg.seed)
        params.set_search_options(**search)
        generator = og.Generator(self.model, params)
        ends = set(stop)
        try:
            if features is not None:  # Whisper: the window's features, read by the encoder at the first run
                inputs = og.NamedTensors()
                inputs["audio_features"] = np.ascontiguousarray(features[None], np.float32)  # [1, mels, frames]
                generator.set_inputs(inputs)
            self._fp.run(generator.append_tokens, np.asarray([ids], np.int32))  # runs the prompt (prefill)
            for _ in range(cfg.max_new_tokens):
                if generator.is_done():
                    return
                self._fp.run(generator.generate_next_token)
                token = int(generator.get_next_tokens()[0])
                yield token
                if token in ends:
                    return
        except RuntimeError as e:  # onnxruntime-genai's own errors (a session run failing), as one line
            raise ArtifactError(f"onnxruntime-genai failed on {self.artifact.name}: {first_line(e)}",
                                "run it on edgeseq's own engine (drop --engine), or re-export with --native "
                                "ortgenai using this edgeseq") from e
        finally:
            del generator
