"""`--native ovgenai`: the files openvino.genai's `LLMPipeline(folder, "CPU")` loads, made from the
artifact's own decoder IR (so the graph the parity gate checked is the graph that runs).

LLMPipeline reads `openvino_model.xml` as a stateful model: inputs input_ids, attention_mask,
position_ids and beam_idx, the KV cache held in variables (ReadValue / Assign), one output `logits`
[B, T', V]; plus openvino-tokenizers' `openvino_tokenizer.xml` / `openvino_detokenizer.xml` (required
even when it is handed token ids) and `generation_config.json` (EOS, BOS, pad). The rewrite of
edgeseq's explicit-cache step is the one edgeseq's OpenVINO engine applies at load
(runtimes/engines/openvino_state.py: past/present pairs become variables gathered by beam_idx,
folded grouped-query heads unfolded so the plugin's fused attention and openvino.genai's paged
transformation match it), and the step's `logits_index` input, which LLMPipeline does not feed,
becomes the last position of input_ids. Weights: openvino_model.bin is decoder.bin where every
constant of the rewritten graph lies in it (a link, no second copy), otherwise a copy.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ...artifact.manifest import Manifest
from ...errors import ArtifactError, UsageError
from . import NativeSpec
from .ov_weights import share_weights

NATIVE = NativeSpec(name="ovgenai", formats=("openvino",), kinds=("decoder-only",), package="openvino_tokenizers",
                    install="pip install 'edgeseq[ovgenai]'", runtime="openvino.genai", rank=20, speech=True,
                    not_text_encdec="its pipelines are LLMPipeline (decoder-only) and WhisperPipeline (an "
                    "encoder fed audio); none takes a token encoder")

MODEL = "openvino_model.xml"
TOKENIZER, DETOKENIZER = "openvino_tokenizer.xml", "openvino_detokenizer.xml"
GENERATION = "generation_config.json"
FILES = (MODEL, TOKENIZER, DETOKENIZER, GENERATION)  # what the engine needs to find (with their .bin files)


def write(directory: Path, manifest: Manifest, components: list[Any]) -> list[str]:
    """openvino.genai's files, made from the artifact's own IRs (the step modules are not needed): LLMPipeline's
    for a decoder-only model, WhisperPipeline's for Whisper (ovgenai_whisper.py)."""
    if manifest.audio:
        from . import ovgenai_whisper

        return ovgenai_whisper.write(directory, manifest)
    comp = manifest.components.get("decoder")
    if manifest.kind != "decoder-only" or comp is None:
        raise ArtifactError(f"--native ovgenai: openvino.genai runs decoder-only models and Whisper; "
                            f"this artifact is {manifest.kind}", "drop --native ovgenai")
    if manifest.dims.get("sliding_window"):
        raise UsageError("--native ovgenai: openvino.genai's default attention on CPU (paged) attends to every "
                         "key, so this model's sliding-window layers would read past their window",
                         "drop --native ovgenai for this model; edgeseq's openvino engine runs it")
    import openvino as ov

    model = ov.Core().read_model(directory / comp.file)
    stateful_model(model)
    ov.save_model(model, directory / MODEL, compress_to_fp16=False)
    share_weights(directory / MODEL, directory / comp.file)
    files = [MODEL, MODEL.replace(".xml", ".bin")]
    files += write_tokenizers(directory, manifest)
    (directory / GENERATION).write_text(json.dumps(generation_config(manifest), indent=2) + "\n")
    return [*files, GENERATION]


def stateful_model(model: Any) -> None:
    """edgeseq's decoder step -> the stateful form LLMPipeline reads (in place)."""
    import numpy as np
    from openvino import opset13 as ops

    from ...runtimes.engines.openvino_state import make_stateful, unfold_grouped_queries

    if not make_stateful(model):
        raise ArtifactError("--native ovgenai: the decoder graph has no past.* cache inputs",
                            "re-export the model with edgeseq export --format openvino")
    unfold_grouped_queries(model)
    params = {p.get_output_tensor(0).get_any_name(): p for p in model.get_parameters()}
    pick = params.get("logits_index")
    if pick is not None:  # the last position's logits: [T - 1] with T = input_ids' length
        length = ops.gather(ops.shape_of(params["input_ids"], "i64"), ops.constant([1], np.int64),
                            ops.constant(0, np.int64))
        last = ops.subtract(length, ops.constant([1], np.int64))
        for target in list(pick.output(0).get_target_inputs()):
            target.replace_source_output(last.output(0))
        model.remove_parameter(pick)
    # edgeseq returns the picked rows [B, V]; LLMPipeline's sampler reads [B, positions, V]
    result = next(r for r in model.get_results() if "logits" in r.input_value(0).get_names())
    logits = result.input_value(0)
    if logits.get_partial_shape().rank.get_length() == 2:
        wide = ops.unsqueeze(logits, ops.constant([1], np.int64))
        logits.get_tensor().set_names(set())
        wide.output(0).get_tensor().set_names({"logits"})
        result.input(0).replace_source_output(wide.output(0))
    model.validate_nodes_and_infer_types()


def write_tokenizers(directory: Path, manifest: Manifest) -> list[str]:
    """openvino-tokenizers' tokenizer and detokenizer IRs from the artifact's tokenizer.json, with the
    special tokens and chat template LLMPipeline reads from their runtime info."""
    import openvino as ov
    from openvino_tokenizers import convert_tokenizer
    from transformers import PreTrainedTokenizerFast

    gen = manifest.generation
    tok = PreTrainedTokenizerFast(tokenizer_file=str(directory / "tokenizer.json"))
    special = {"bos_token": gen.get("bos_token_id"), "pad_token": gen.get("pad_token_id"),
               "eos_token": (gen.get("eos_token_ids") or [None])[0]}
    named = {k: tok.convert_ids_to_tokens(v) for k, v in special.items() if v is not None}
    tok.add_special_tokens({k: t for k, t in named.items() if t is not None})  # ids past the tokenizer's: none
    if gen.get("chat_template"):
        tok.chat_template = gen["chat_template"]
    tokenizer, detokenizer = convert_tokenizer(tok, with_detokenizer=True)
    ov.save_model(tokenizer, directory / TOKENIZER)
    ov.save_model(detokenizer, directory / DETOKENIZER)
    return [name.replace(".xml", ext) for name in (TOKENIZER, DETOKENIZER) for ext in (".xml", ".bin")]


def generation_config(manifest: Manifest) -> dict[str, Any]:
    """The token ids LLMPipeline's generation config starts from (greedy, EOS stops)."""
    gen = manifest.generation
    eos = list(gen.get("eos_token_ids") or [])
    out: dict[str, Any] = {"eos_token_id": eos[0] if len(eos) == 1 else eos, "do_sample": False}
    for key in ("bos_token_id", "pad_token_id"):
        if gen.get(key) is not None:
            out[key] = gen[key]
    return out
