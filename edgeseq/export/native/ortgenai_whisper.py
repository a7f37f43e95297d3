"""`--native ortgenai` for Whisper: edgeseq's three speech graphs as onnxruntime-genai's `whisper` model.

onnxruntime-genai runs Whisper as two sessions: an encoder that takes `audio_features` [B, mels, frames]
and returns the encoder states and every decoder layer's cross-attention K/V, and a decoder that takes
the ids, the self-attention cache and those cross K/V, and returns logits [B, tokens, vocab] and the new
self-attention cache. edgeseq's encoder and decoder_init are that encoder split in two, so
`encoder.ortgenai.onnx` is both graphs joined at `encoder_hidden_states` (decoder_init's names
prefixed so none collide). `decoder_step.ortgenai.onnx` is edgeseq's decoder step with the inputs
onnxruntime-genai does not feed made inside the graph: `attention_mask` (all ones over past + new
positions; Whisper's decoder never pads a row), `encoder_attention_mask` (all ones over the encoder
positions; a window is always full) and `logits_index` (the last position). Both graphs keep their
weights in the artifact's shared weight file: only graph structure is written.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ...artifact.manifest import Manifest
from ...errors import ExportError

CONFIG = "genai_config.json"
ENCODER = "encoder.ortgenai.onnx"
DECODER = "decoder_step.ortgenai.onnx"
FEATURES = "audio_features"  # the encoder input onnxruntime-genai's Python and C callers name


def write(directory: Path, manifest: Manifest) -> list[str]:
    """The joined encoder, the decoder step with its fixed inputs, and genai_config.json."""
    comps = manifest.components
    for name in ("encoder", "decoder_init", "decoder_step"):
        if name not in comps:
            raise ExportError(f"the Whisper artifact has no {name} graph", "re-export it with this edgeseq")
    joined_encoder(directory, comps["encoder"].file, comps["decoder_init"].file)
    gen = manifest.generation
    step_graph(directory, comps["decoder_step"].file, int(manifest.dims["vocab_size"]),
               sorted(set(gen.get("suppress_token_ids") or [])), sorted(set(gen.get("begin_suppress_token_ids") or [])))
    (directory / CONFIG).write_text(json.dumps(genai_config(manifest), indent=2) + "\n")
    from .ortgenai import TOKENIZER_CONFIG, tokenizer_config  # the runtime's tokenizer, to decode ids to text

    (directory / TOKENIZER_CONFIG).write_text(
        json.dumps(tokenizer_config(directory / "tokenizer.json", manifest), indent=2) + "\n")
    return [CONFIG, TOKENIZER_CONFIG, ENCODER, DECODER]


def joined_encoder(directory: Path, encoder: str, init: str) -> None:
    """encoder (input_features -> encoder_hidden_states) followed by decoder_init (-> cross.%d.key/value),
    one graph whose input is `audio_features`; weights stay where the two graphs keep them."""
    import onnx
    from onnx import compose

    enc = onnx.load(str(directory / encoder), load_external_data=False)
    dec = onnx.load(str(directory / init), load_external_data=False)
    if [i.name for i in enc.graph.input] != ["input_features"] or [o.name for o in enc.graph.output] != [
            "encoder_hidden_states"] or [i.name for i in dec.graph.input] != ["encoder_hidden_states"]:
        raise ExportError(f"{encoder} / {init} do not have Whisper's encoder contract",
                          "re-export the artifact with this edgeseq")
    opsets = {o.domain: o.version for o in enc.opset_import}
    for o in dec.opset_import:  # a quantized decoder_init adds com.microsoft (MatMulNBits) to the encoder's
        if opsets.setdefault(o.domain, o.version) != o.version:
            raise ExportError(f"{encoder} and {init} use different versions of opset '{o.domain or 'ai.onnx'}'",
                              "re-export the artifact with this edgeseq")
        if o.domain not in {e.domain for e in enc.opset_import}:
            enc.opset_import.append(o)
    compose.add_prefix_graph(dec.graph, "init/", rename_inputs=False, rename_outputs=False, inplace=True)
    g = enc.graph
    for node in g.node:
        node.input[:] = [FEATURES if x == "input_features" else x for x in node.input]
    g.input[0].name = FEATURES
    g.node.extend(dec.graph.node)
    g.initializer.extend(dec.graph.initializer)
    g.value_info.extend(dec.graph.value_info)
    g.output.extend(dec.graph.output)  # encoder_hidden_states stays an output: onnxruntime-genai binds it
    onnx.save(enc, str(directory / ENCODER))


def step_graph(directory: Path, step: str, vocab: int, suppressed: list[int], first: list[int]) -> None:
    """decoder_step without the mask inputs (ones, sized from the ids and caches), with last-token logits
    and Whisper's suppressed ids (`suppressed` always, `first` also at the first new token)."""
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper

    from .ortgenai import last_token

    model = onnx.load(str(directory / step), load_external_data=False)
    g = model.graph
    names = {i.name for i in g.input}
    if not {"input_ids", "attention_mask", "encoder_attention_mask", "past.0.key", "cross.0.key"} <= names:
        raise ExportError(f"{step} does not have edgeseq's decoder step inputs",
                          "re-export the artifact with this edgeseq")
    for i in [i for i in g.input if i.name in ("attention_mask", "encoder_attention_mask")]:
        g.input.remove(i)
    g.initializer.append(numpy_helper.from_array(np.array([1], np.int64), "ones_one"))

    def dim(tensor: str, axis: int, out: str) -> Any:  # [1]: one dimension of a tensor's shape
        return helper.make_node("Shape", [tensor], [out], start=axis, end=axis + 1, name=f"{out}_shape")

    made = [dim("input_ids", 0, "mask_batch"), dim("input_ids", 1, "mask_new"), dim("past.0.key", 2, "mask_past"),
            dim("cross.0.key", 2, "mask_enc"),
            helper.make_node("Add", ["mask_past", "mask_new"], ["mask_total"], name="mask_total_add"),
            helper.make_node("Concat", ["mask_batch", "mask_total"], ["mask_self_shape"], axis=0, name="mask_self_cat"),
            helper.make_node("Concat", ["mask_batch", "mask_enc"], ["mask_enc_shape"], axis=0, name="mask_enc_cat"),
            helper.make_node("Expand", ["ones_one", "mask_self_shape"], ["attention_mask"], name="mask_self"),
            helper.make_node("Expand", ["ones_one", "mask_enc_shape"], ["encoder_attention_mask"], name="mask_enc")]
    for n in reversed(made):  # before their users: ONNX wants nodes in topological order
        g.node.insert(0, n)
    last_token(model, step, vocab)
    suppress(g, vocab, suppressed, first)
    onnx.save(model, str(directory / DECODER))


def suppress(g: Any, vocab: int, always: list[int], first: list[int]) -> None:
    """Whisper's token suppression inside the graph: -inf added to the logits of `always` at every step
    and of `first` when the run has no past (the decoder prompt's run, whose last logits choose the first
    new token). The `logits` output is then what transformers' and edgeseq's loops choose from."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    if not always and not first:
        return
    producer = next(n for n in g.node if "logits" in n.output)
    producer.output[list(producer.output).index("logits")] = "logits_unsuppressed"
    inits = {"suppress_vocab": np.array([vocab], np.int64), "suppress_zero": np.array([0], np.int64),
             "suppress_ids": np.array(always, np.int64), "suppress_first_ids": np.array(first, np.int64),
             "suppress_always_inf": np.full(len(always), -np.inf, np.float32),
             "suppress_first_inf": np.full(len(first), -np.inf, np.float32), "suppress_none": np.zeros(1, np.float32)}
    g.initializer.extend(numpy_helper.from_array(v, k) for k, v in inits.items())
    zeros = helper.make_tensor("zero", TensorProto.FLOAT, [1], [0.0])
    g.node.extend([
        helper.make_node("ConstantOfShape", ["suppress_vocab"], ["suppress_base"], value=zeros, name="suppress_base"),
        helper.make_node("ScatterElements", ["suppress_base", "suppress_ids", "suppress_always_inf"],
                         ["suppress_always"], name="suppress_always"),
        helper.make_node("ScatterElements", ["suppress_base", "suppress_first_ids", "suppress_first_inf"],
                         ["suppress_first_all"], name="suppress_first_all"),
        helper.make_node("Equal", ["mask_past", "suppress_zero"], ["suppress_is_first"], name="suppress_is_first"),
        helper.make_node("Where", ["suppress_is_first", "suppress_first_all", "suppress_none"], ["suppress_first"],
                         name="suppress_first"),
        helper.make_node("Add", ["logits_unsuppressed", "suppress_always"], ["logits_suppressed"], name="suppress_add"),
        helper.make_node("Add", ["logits_suppressed", "suppress_first"], ["logits"], name="suppress_first_add")])


def genai_config(manifest: Manifest) -> dict[str, Any]:
    from .ortgenai import search

    d, gen, audio = manifest.dims, manifest.generation, manifest.audio
    eos = list(gen.get("eos_token_ids") or [])
    session = {"log_id": "onnxruntime-genai", "provider_options": [], "session.set_denormal_as_zero": "1"}
    heads = {"head_size": int(d["head_dim"]), "hidden_size": int(d["hidden_size"]),
             "num_attention_heads": int(d["num_heads"]), "num_key_value_heads": int(d["num_kv_heads"])}
    return {
        "model": {
            "type": manifest.model["family"],  # the runtime's speech type is named as the model's family
            "bos_token_id": int(audio["tokens"]["start"]),  # <|startoftranscript|>: the decoder prompt's first id
            "eos_token_id": eos[0] if len(eos) == 1 else eos,
            "pad_token_id": gen.get("pad_token_id") if gen.get("pad_token_id") is not None else eos[0],
            "decoder_start_token_id": int(audio["tokens"]["start"]),
            "context_length": int(d["max_positions"]),
            "vocab_size": int(d["vocab_size"]),
            "encoder": {
                "filename": ENCODER, "session_options": session, **heads,
                "num_hidden_layers": int(d["num_encoder_layers"]),
                "inputs": {"audio_features": FEATURES},
                "outputs": {"encoder_hidden_states": "encoder_hidden_states",
                            "cross_present_key_names": "cross.%d.key", "cross_present_value_names": "cross.%d.value"},
            },
            "decoder": {
                "filename": DECODER, "session_options": session, **heads, "num_hidden_layers": int(d["num_layers"]),
                "inputs": {"input_ids": "input_ids",
                           "past_key_names": "past.%d.key", "past_value_names": "past.%d.value",
                           "cross_past_key_names": "cross.%d.key", "cross_past_value_names": "cross.%d.value"},
                "outputs": {"logits": "logits", "present_key_names": "present.%d.key",
                            "present_value_names": "present.%d.value"},
            },
        },
        "search": search(int(d["max_positions"]), False),  # plain attention: each step returns past + new
    }
