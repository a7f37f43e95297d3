"""`--native litertlm`: a `.litertlm` bundle of a decoder-only `--format tflite` artifact for LiteRT-LM's
Engine (litert-lm-builder): the HF tokenizer, LLM metadata (stop ids, context length, chat template)
and one TFLite model holding LiteRT-LM's prefill / decode signatures.

LiteRT-LM feeds a model its own inputs: `tokens` [1,T] and `input_pos` [T] (int32), caches named
`kv_cache_k_<layer>` / `kv_cache_v_<layer>` whose outputs are the whole updated caches, and it reads
`logits` [1,1,V] from `decode`. It right-pads a prompt to a prefill signature's length (pads at
position 0) and keeps the prompt's last token for the first decode. edgeseq's signatures take
(input_ids, attention_mask [1,C], position_ids, cache_position, past_*) and left-pad prefill, which
renaming cannot bridge: the graph has no input LiteRT-LM fills for the attention mask. So the same
step modules the artifact's `decoder.tflite` was converted from are converted once more, each
wrapped in `LiteRtLmStep` (slots start + 0..T-1, the mask "every slot up to the last new one"),
with the artifact's weight recipe; the check that follows compares LiteRT-LM's greedy tokens on it
with edgeseq's own engine on `decoder.tflite`.
"""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from ...artifact.manifest import Manifest
from ...errors import ExportError, UsageError
from . import NativeSpec

NATIVE = NativeSpec(name="litertlm", formats=("tflite",), kinds=("decoder-only",), package="litert_lm_builder",
                    install="pip install 'edgeseq[litertlm]' -c constraints.txt", runtime="LiteRT-LM",
                    text=True)

BUNDLE = "model.litertlm"


def write(directory: Path, manifest: Manifest, components: list[Any]) -> list[str]:
    if manifest.kind != "decoder-only" or not components:
        raise UsageError("--native litertlm bundles decoder-only --format tflite exports",
                         "LiteRT-LM runs decoder-only LLMs; drop --native litertlm")
    decoder = next(c for c in components if c.name == "decoder")
    with tempfile.TemporaryDirectory(dir=directory) as tmp:
        graph = _convert(decoder, Path(tmp), manifest)
        meta = _llm_metadata(manifest, Path(tmp))
        _bundle(directory / BUNDLE, graph, meta, directory / "tokenizer.json")
    return [BUNDLE]


def _convert(decoder: Any, tmp: Path, manifest: Manifest) -> Path:
    """The decoder's signatures re-converted under LiteRT-LM's names, with the artifact's weights."""
    import litert_torch
    import torch

    from ...steps.litertlm import LiteRtLmStep, cache_name
    from ..formats import tflite
    from ..quiet import quiet

    length = int(manifest.static["cache_length"])  # type: ignore[index]
    path = tmp / "litertlm.tflite"
    conv = litert_torch.Converter()
    for name, example in decoder.signatures.items():
        t = example["input_ids"].shape[1]
        step = LiteRtLmStep(decoder.module.eval(), decoder.cache_inputs, decoder.cache_outputs, length,
                            logits=name == "decode")
        sample = {"tokens": torch.zeros(1, t, dtype=torch.int32), "input_pos": torch.arange(t, dtype=torch.int32)}
        sample.update({cache_name(n): example[n.replace(".", "_")] for n in decoder.cache_inputs})
        conv.signature(name, step, sample_kwargs=sample)
    try:
        with quiet():
            conv.convert().export(str(path))
            if manifest.quantization:
                tflite._quantize(path, manifest.quantization)
    except (RuntimeError, ValueError, TypeError) as e:
        first = str(e).strip().splitlines()[0][:300] if str(e).strip() else type(e).__name__
        raise ExportError(f"litert-torch could not convert the decoder for LiteRT-LM: {first}",
                          "export without --native litertlm; the artifact runs on --engine litert") from e
    return path


def _llm_metadata(manifest: Manifest, tmp: Path) -> Path:
    """LiteRT-LM's LlmMetadata: stop ids and the context length. No start token: LiteRT-LM prepends
    the start token to every prompt, and edgeseq's prompts already hold the BOS they need."""
    from litert_lm_builder.runtime.proto import llm_metadata_pb2

    gen = manifest.generation
    msg = llm_metadata_pb2.LlmMetadata()
    for i in gen.get("eos_token_ids") or []:
        msg.stop_tokens.add().token_ids.ids.append(int(i))
    msg.max_num_tokens = int(manifest.static["cache_length"])  # type: ignore[index]
    msg.llm_model_type.generic_model.SetInParent()
    if gen.get("chat_template"):
        msg.jinja_prompt_template = gen["chat_template"]
    path = tmp / "llm_metadata.pb"
    path.write_bytes(msg.SerializeToString())
    return path


def _bundle(out: Path, graph: Path, meta: Path, tokenizer: Path) -> None:
    from litert_lm_builder import litertlm_builder as b

    builder = b.LitertLmFileBuilder()
    builder.add_system_metadata(b.Metadata(key="Authors", value="edgeseq", dtype=b.DType.STRING))
    builder.add_llm_metadata(str(meta))
    builder.add_tflite_model(str(graph), b.TfLiteModelType.PREFILL_DECODE)
    builder.add_hf_tokenizer(str(tokenizer))
    with open(out, "wb") as f:
        builder.build(f)
