"""`--native ovgenai` for Whisper: the files openvino.genai's `WhisperPipeline(folder, "CPU")` loads, made
from the artifact's own encoder, decoder_init and decoder_step IRs (the graphs the parity gate checked).

WhisperPipeline reads
- `openvino_encoder_model.xml`: input_features [B, n_mels, 3000] -> last_hidden_state [B, 1500, E];
  edgeseq's encoder with its output renamed (its weights file is a hard link to encoder.bin);
- `openvino_decoder_model.xml`, stateful: inputs input_ids [B, T], encoder_hidden_states [B, 1500, E]
  (fed on every step) and beam_idx [B]; one output logits [B, T', V]. The pipeline no longer accepts the
  older decoder + decoder_with_past pair. Made here by joining decoder_init into decoder_step: the cross
  K/V that decoder_init computes from encoder_hidden_states become variables whose initial value is that
  computation (ReadValue with an init input: the CPU plugin evaluates it only after a state reset, i.e.
  on a window's first step, and the variable holds it for the later steps); the self-attention cache
  becomes variables gathered by beam_idx as for the LLM IR (runtimes/engines/openvino_state.py); the
  masks edgeseq's step takes are all ones, so they are made in the graph from the shapes (past + new
  positions; encoder positions); logits_index becomes the last position;
- `config.json` (max_source_positions), `preprocessor_config.json` (the log-mel settings: the pipeline
  computes its own features from 16 kHz samples), `generation_config.json` (Whisper's special ids, the
  suppressed ids, languages and tasks) and openvino-tokenizers' tokenizer / detokenizer IRs.
Weights: the decoder IR's .bin is decoder_step.bin; the cross-attention projections, which live in
decoder_init.bin, are appended to it (their one duplicate in the folder). A quantized export's merged
projection (all layers' cross K/V in one MatMul) is split back per variable first (unmerge_projections).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ...artifact.manifest import Manifest
from ...errors import ArtifactError
from .ov_weights import share_weights

ENCODER, DECODER = "openvino_encoder_model.xml", "openvino_decoder_model.xml"
CONFIG, PREPROCESSOR, GENERATION = "config.json", "preprocessor_config.json", "generation_config.json"
FILES = (ENCODER, DECODER, CONFIG, PREPROCESSOR, GENERATION, "openvino_tokenizer.xml", "openvino_detokenizer.xml")
SECONDS_PER_TIMESTAMP = 0.02


def write(directory: Path, manifest: Manifest) -> list[str]:
    """WhisperPipeline's files from the artifact's three IRs."""
    import openvino as ov

    from .ovgenai import write_tokenizers

    comps = manifest.components
    if not all(k in comps for k in ("encoder", "decoder_init", "decoder_step")):
        raise ArtifactError("--native ovgenai: this speech artifact has no encoder / decoder_init / decoder_step IRs",
                            "re-export with edgeseq export MODEL --format openvino")
    core = ov.Core()
    encoder = core.read_model(directory / comps["encoder"].file)
    rename_output(encoder, "last_hidden_state")
    ov.save_model(encoder, directory / ENCODER, compress_to_fp16=False)
    share_weights(directory / ENCODER, directory / comps["encoder"].file)

    step_xml, init_xml = directory / comps["decoder_step"].file, directory / comps["decoder_init"].file
    decoder = joined_decoder(core.read_model(step_xml), core.read_model(init_xml))
    ov.save_model(decoder, directory / DECODER, compress_to_fp16=False)
    # the cross projections are not in decoder_step.bin: allow appending them (and the small new constants)
    share_weights(directory / DECODER, step_xml, tail_limit=init_xml.with_suffix(".bin").stat().st_size + (1 << 16))

    files = [name.replace(".xml", ext) for name in (ENCODER, DECODER) for ext in (".xml", ".bin")]
    files += write_tokenizers(directory, manifest)
    for name, content in ((CONFIG, model_config(manifest)), (PREPROCESSOR, preprocessor_config(manifest)),
                          (GENERATION, generation_config(manifest))):
        (directory / name).write_text(json.dumps(content, indent=2) + "\n")
        files.append(name)
    return files


def rename_output(model: Any, name: str) -> None:
    (out,) = model.outputs
    out.get_tensor().set_names({name})


def joined_decoder(step: Any, init: Any) -> Any:
    """decoder_init + decoder_step -> WhisperPipeline's stateful decoder (see the module docstring)."""
    import numpy as np
    from openvino import opset6, opset13 as ops
    from openvino.op.util import Variable, VariableInfo

    from .ovgenai import stateful_model

    params = {p.get_output_tensor(0).get_any_name(): p for p in step.get_parameters()}
    unmerge_projections(init)
    cross_out = {name: r.input_value(0) for r in init.get_results() for name in r.input_value(0).get_names()}
    (hidden,) = init.get_parameters()  # encoder_hidden_states [B, S, E]
    i64 = np.int64

    def dim(node: Any, axis: int) -> Any:
        return ops.gather(ops.shape_of(node, "i64"), ops.constant([axis], i64), ops.constant(0, i64))

    # masks of ones: [B, past + T] (past: the self cache's length, read before make_stateful swaps it for
    # the variable) and [B, S]
    batch, new = dim(params["input_ids"], 0), dim(params["input_ids"], 1)
    past = dim(params["past.0.key"], 2)
    for name, length in (("attention_mask", ops.add(past, new)), ("encoder_attention_mask", dim(hidden, 1))):
        p = params[name]
        ones = ops.broadcast(ops.constant(np.ones((), i64)), ops.concat([batch, length], 0))
        for target in list(p.output(0).get_target_inputs()):
            target.replace_source_output(ones.output(0))
        step.remove_parameter(p)
    sinks = []
    for name in [n for n in params if n.startswith("cross.")]:
        p = params[name]
        if name not in cross_out:
            raise ArtifactError(f"--native ovgenai: decoder_init has no output '{name}'",
                                "re-export with edgeseq export MODEL --format openvino")
        info = VariableInfo()
        info.variable_id, info.data_shape, info.data_type = name, p.get_partial_shape(), p.get_element_type()
        var = Variable(info)
        held = opset6.read_value(cross_out[name], var)  # computed from encoder_hidden_states after a reset only
        for target in list(p.output(0).get_target_inputs()):
            target.replace_source_output(held.output(0))
        sinks.append(opset6.assign(held, var))
        step.remove_parameter(p)
    step.add_parameters([hidden])
    step.add_sinks(sinks)
    hidden.get_output_tensor(0).set_names({"encoder_hidden_states"})
    step.validate_nodes_and_infer_types()
    stateful_model(step)  # self cache -> variables + beam_idx, logits_index -> the last position, [B, 1, V]
    return step


def unmerge_projections(model: Any) -> int:
    """Split a merged projection back into one MatMul per output. A quantized export merges the matmuls
    that share an input (export/passes.py), so decoder_init is one MatMul of every layer's cross K/V
    projection, split eight ways; a ReadValue's initializer must be nodes that feed that ReadValue alone
    (the CPU plugin moves them into the variable's own subgraph), so each output gets its own MatMul over
    its rows of the (decompressed) weights. Returns how many merged matmuls were split."""
    import numpy as np
    from openvino import opset13 as ops

    done = 0
    for split in [n for n in model.get_ordered_ops() if n.get_type_name() == "VariadicSplit"]:
        mm = split.input_value(0).get_node()
        rank = split.input_value(0).get_partial_shape().rank.get_length()
        axis = int(split.input_value(1).get_node().get_data()[()]) % rank
        if mm.get_type_name() != "MatMul" or not mm.get_attributes().get("transpose_b") or axis != rank - 1:
            continue
        sizes = [int(v) for v in split.input_value(2).get_node().get_data()]
        x, weights, total = mm.input_value(0), mm.input_value(1), sum(sizes)
        for out, lo, size in zip(split.outputs(), np.cumsum([0, *sizes[:-1]]), sizes):
            rows = _rows(weights, total, int(lo), int(lo) + size)
            out.replace(ops.matmul(x, rows, transpose_a=False, transpose_b=True).output(0))
        done += 1
    if done:
        model.validate_nodes_and_infer_types()
    return done


def _rows(value: Any, total: int, lo: int, hi: int) -> Any:
    """Rows lo:hi of a weight [total, ...] computed from constants (decompression: Convert, Subtract,
    Multiply; a Reshape of grouped weights), as the same chain over the constants' rows."""
    from openvino import opset13 as ops

    node = value.get_node()
    kind = node.get_type_name()
    if kind == "Constant":
        shape = list(value.get_shape())
        if not shape or shape[0] != total:  # a scalar or a row-broadcast constant: shared as it is
            return value
        return ops.constant(node.get_data()[lo:hi]).output(0)
    if kind == "Reshape":
        target = [int(v) for v in node.input_value(1).get_node().get_data()]
        if target and target[0] == total:
            target[0] = hi - lo
        return ops.reshape(_rows(node.input_value(0), total, lo, hi), ops.constant(target, "i64"),
                           special_zero=False).output(0)
    if kind == "Convert":
        return ops.convert(_rows(node.input_value(0), total, lo, hi), node.get_output_element_type(0)).output(0)
    if kind in ("Subtract", "Multiply", "Add"):
        a, b = (_rows(v, total, lo, hi) for v in node.input_values())
        return getattr(ops, kind.lower())(a, b).output(0)
    raise ArtifactError(f"--native ovgenai: a merged cross-attention projection's weights come from a {kind} "
                        "node, which the export cannot split per layer", "export with --weights fp32 or int8")


def model_config(manifest: Manifest) -> dict[str, Any]:
    audio, dims = manifest.audio, manifest.dims
    return {"model_type": manifest.model["family"], "max_source_positions": int(audio["encoder_positions"]),
            "max_target_positions": int(dims["max_positions"]), "num_mel_bins": int(audio["n_mels"]),
            "vocab_size": int(dims["vocab_size"]), "d_model": int(dims["hidden_size"]),
            "decoder_layers": int(dims["num_layers"]), "encoder_layers": int(dims.get("num_encoder_layers") or 0)}


def preprocessor_config(manifest: Manifest) -> dict[str, Any]:
    """The log-mel settings edgeseq's own front end uses (edgeseq/audio/features.py)."""
    a = manifest.audio
    rate, hop, seconds = int(a["sampling_rate"]), int(a["hop_length"]), int(a["chunk_seconds"])
    return {"feature_extractor_type": "WhisperFeatureExtractor", "feature_size": int(a["n_mels"]),
            "sampling_rate": rate, "hop_length": hop, "n_fft": int(a["n_fft"]), "chunk_length": seconds,
            "n_samples": rate * seconds, "nb_max_frames": int(a["frames"]), "padding_value": 0.0,
            "return_attention_mask": False}


def generation_config(manifest: Manifest) -> dict[str, Any]:
    """Whisper's ids as WhisperGenerationConfig reads them, and the ids edgeseq's loop suppresses."""
    gen, tokens = manifest.generation, manifest.audio["tokens"]
    eos = list(gen.get("eos_token_ids") or [])
    out: dict[str, Any] = {
        "decoder_start_token_id": int(tokens["start"]), "eos_token_id": eos[0] if len(eos) == 1 else eos,
        "pad_token_id": int(gen.get("pad_token_id") if gen.get("pad_token_id") is not None else eos[0]),
        "suppress_tokens": [int(t) for t in gen.get("suppress_token_ids") or []],
        "begin_suppress_tokens": [int(t) for t in gen.get("begin_suppress_token_ids") or []],
        "is_multilingual": bool(tokens.get("multilingual")), "return_timestamps": False,
        "max_initial_timestamp_index": int(round(float(manifest.audio.get("max_initial_timestamp_s", 1.0))
                                                 / SECONDS_PER_TIMESTAMP)),
        "max_length": int(manifest.dims["max_positions"]), "do_sample": False}
    for key, token in (("no_timestamps_token_id", "no_timestamps"), ("prev_sot_token_id", "previous")):
        if tokens.get(token) is not None:
            out[key] = int(tokens[token])
    if tokens.get("multilingual"):
        out["lang_to_id"] = {f"<|{code}|>": int(i) for code, i in (tokens.get("languages") or {}).items()}
        out["task_to_id"] = {t: int(tokens[t]) for t in ("transcribe", "translate") if tokens.get(t) is not None}
    return out
