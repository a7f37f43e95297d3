"""`--native ortgenai`: what onnxruntime-genai needs to load an edgeseq decoder-only ONNX artifact.

onnxruntime-genai's `Model` reads `genai_config.json` beside the graph (which inputs and outputs
carry the ids, mask, positions, logits and the per-layer cache, by name), and its `Tokenizer` reads
tokenizer.json with tokenizer_config.json. edgeseq's graph already has what it expects (input_ids,
attention_mask, position_ids, one past/present pair per layer as [B, kv_heads, T, head_dim], the
GroupQueryAttention kernel), except one thing: the logits. edgeseq's graph takes `logits_index` (the
positions whose logits to compute) and returns them as [rows, vocab]; onnxruntime-genai feeds only
inputs it knows and reads logits as [batch, tokens, vocab]. So `decoder.ortgenai.onnx` is the same
graph with `logits_index` fixed to the last position and the logits shaped [batch, 1, vocab] (a
last-token-only output, which onnxruntime-genai recognises as such). It keeps its weights in the
artifact's own external data file, so no weight is stored twice.

Whisper artifacts become onnxruntime-genai's `whisper` model (ortgenai_whisper.py). Text
encoder-decoders are refused: onnxruntime-genai runs encoder-decoders only as Whisper (an encoder fed
audio features) and Marian with SSRU decoder state (no per-layer self-attention cache), not a
T5/BART-style encoder of token ids with a self- and cross-attention cache.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ...artifact.manifest import Manifest
from ...errors import ExportError
from . import NativeSpec

NATIVE = NativeSpec(name="ortgenai", formats=("onnx",), kinds=("decoder-only",), package=None,
                    install="pip install 'edgeseq[ortgenai]'", runtime="onnxruntime-genai", rank=10, speech=True,
                    not_text_encdec="its encoder-decoder types are Whisper, whose encoder reads audio features, and "
                    "Marian-SSRU, a recurrent decoder state; none is a token encoder with per-layer self- and "
                    "cross-attention caches")

CONFIG = "genai_config.json"
GRAPH = "decoder.ortgenai.onnx"
TOKENIZER_CONFIG = "tokenizer_config.json"


def write(directory: Path, manifest: Manifest, components: list[Any]) -> list[str]:
    """onnxruntime-genai's config and tokenizer config, and the decoder graph returning last-token logits
    (sharing the artifact's weight file); made from the artifact's graph, so the step modules are not needed.
    Whisper: its own two graphs and config (ortgenai_whisper.py)."""
    if manifest.audio:
        from . import ortgenai_whisper

        return ortgenai_whisper.write(directory, manifest)
    comp = manifest.components["decoder"]
    graph, in_place = last_token_graph(directory, comp.file, int(manifest.dims["vocab_size"]))
    names = {d["name"] for d in comp.inputs}
    (directory / CONFIG).write_text(json.dumps(genai_config(manifest, graph, names, in_place), indent=2) + "\n")
    (directory / TOKENIZER_CONFIG).write_text(
        json.dumps(tokenizer_config(directory / "tokenizer.json", manifest), indent=2) + "\n")
    return [CONFIG, TOKENIZER_CONFIG] + ([graph] if graph != comp.file else [])


def last_token_graph(directory: Path, file: str, vocab: int, out: str = GRAPH) -> tuple[str, bool]:
    """`file` rewritten so that it takes no logits_index and returns logits [batch, 1, vocab]: the name of
    the graph onnxruntime-genai loads (`file` itself where it already has that contract, else `out`), and
    whether GroupQueryAttention makes every present (then the cache can be a buffer it appends to in place)."""
    import onnx

    model = onnx.load(str(directory / file), load_external_data=False)  # weights stay in the data file
    changed, in_place = last_token(model, file, vocab)
    if not changed:
        return file, in_place
    onnx.save(model, str(directory / out))
    return out, in_place


def last_token(model: Any, file: str, vocab: int) -> tuple[bool, bool]:
    """Change the loaded graph `model` in place as `last_token_graph` says: whether it changed, and whether
    GroupQueryAttention makes every present."""
    import numpy as np
    from onnx import helper, numpy_helper

    g = model.graph
    logits = next((o for o in g.output if o.name == "logits"), None)
    if logits is None:
        raise ExportError(f"{file} has no 'logits' output", "re-export the artifact with this edgeseq")
    presents = {o.name for o in g.output if o.name.startswith("present.")}
    by_gqa = {o for n in g.node if n.op_type == "GroupQueryAttention" for o in n.output[1:3]}
    in_place = bool(presents) and presents <= by_gqa
    picks = [i for i in g.input if i.name == "logits_index"]
    rank = len(logits.type.tensor_type.shape.dim)
    if not picks and rank == 3:
        return False, in_place
    for i in picks:  # [-1]: the last position of every row (Gather takes negative indices)
        g.input.remove(i)
        g.initializer.append(numpy_helper.from_array(np.array([-1], np.int64), "logits_index"))
    if rank == 2:  # [rows, vocab] -> [batch, 1, vocab]; rows = batch once one position is picked
        producer = next(n for n in g.node if "logits" in n.output)
        producer.output[list(producer.output).index("logits")] = "logits_rows"
        g.initializer.append(numpy_helper.from_array(np.array([-1, 1, vocab], np.int64), "logits_shape"))
        g.node.append(helper.make_node("Reshape", ["logits_rows", "logits_shape"], ["logits"], name="logits_last"))
        g.output.remove(logits)
        g.output.insert(0, helper.make_tensor_value_info("logits", logits.type.tensor_type.elem_type,
                                                         ["batch", 1, vocab]))
    return True, in_place


def genai_config(manifest: Manifest, graph: str, inputs: set[str], in_place: bool) -> dict[str, Any]:
    d, gen = manifest.dims, manifest.generation
    eos = list(gen.get("eos_token_ids") or [])
    pad = gen.get("pad_token_id")
    names: dict[str, str] = {"input_ids": "input_ids", "attention_mask": "attention_mask"}
    if "position_ids" in inputs:  # onnxruntime-genai fills it from the mask (0, 1, 2, ...)
        names["position_ids"] = "position_ids"
    names.update(past_key_names="past.%d.key", past_value_names="past.%d.value")
    return {
        "model": {
            "type": "decoder",  # onnxruntime-genai's generic decoder-only model: ids, mask, positions, cache
            "bos_token_id": gen.get("bos_token_id") if gen.get("bos_token_id") is not None else -1,
            "eos_token_id": eos if len(eos) != 1 else eos[0],
            "pad_token_id": pad if pad is not None else (eos[0] if eos else 0),
            "context_length": int(d["max_positions"]),
            "vocab_size": int(d["vocab_size"]),
            "decoder": {
                "filename": graph,
                # subnormal floats computed as zero, as edgeseq's ONNX Runtime engine does (on x86 each one
                # costs a microcode assist); ONNX Runtime sets it on its pool's threads
                "session_options": {"log_id": "onnxruntime-genai", "provider_options": [],
                                    "session.set_denormal_as_zero": "1"},
                "head_size": int(d["head_dim"]), "hidden_size": int(d["hidden_size"]),
                "num_attention_heads": int(d["num_heads"]), "num_hidden_layers": int(d["num_layers"]),
                "num_key_value_heads": int(d["num_kv_heads"]),
                "inputs": names,
                "outputs": {"logits": "logits", "present_key_names": "present.%d.key",
                            "present_value_names": "present.%d.value"},
            },
        },
        # GroupQueryAttention graphs: the cache is one buffer of max_length positions per layer that the
        # kernel appends to in place, as edgeseq's own ONNX Runtime engine runs it (no per-step copy);
        # plain attention (Concat) returns past + new positions as a new present each step
        "search": search(int(d["max_positions"]), in_place),
    }


def tokenizer_config(tokenizer_json: Path, manifest: Manifest) -> dict[str, Any]:
    """What onnxruntime-genai's tokenizer reads beside tokenizer.json: the special tokens by text, BOS
    handling and the chat template, from the manifest's generation section."""
    gen = manifest.generation
    tok = json.loads(tokenizer_json.read_text())
    text = {int(t["id"]): t["content"] for t in tok.get("added_tokens", [])}
    vocab = (tok.get("model") or {}).get("vocab")
    if isinstance(vocab, dict):
        text = {**{int(i): s for s, i in vocab.items()}, **text}

    def token(i: Any) -> str | None:
        return text.get(int(i)) if i is not None else None

    eos = list(gen.get("eos_token_ids") or [])
    out: dict[str, Any] = {"tokenizer_class": "PreTrainedTokenizerFast", "add_bos_token": bool(gen.get("add_bos")),
                           "add_eos_token": False, "model_max_length": int(manifest.dims["max_positions"]),
                           "clean_up_tokenization_spaces": False}
    for key, value in (("bos_token", token(gen.get("bos_token_id"))), ("eos_token", token(eos[0]) if eos else None),
                       ("pad_token", token(gen.get("pad_token_id")))):
        if value is not None:
            out[key] = value
    if gen.get("chat_template"):
        out["chat_template"] = gen["chat_template"]
    return out


def search(max_length: int, share_buffer: bool) -> dict[str, Any]:
    """genai_config.json's default search: greedy, one sequence (edgeseq's engine sets each request's own)."""
    return {"do_sample": False, "num_beams": 1, "num_return_sequences": 1, "max_length": max_length,
            "min_length": 0, "temperature": 1.0, "top_k": 50, "top_p": 1.0, "repetition_penalty": 1.0,
            "length_penalty": 1.0, "no_repeat_ngram_size": 0, "diversity_penalty": 0.0, "early_stopping": True,
            "past_present_share_buffer": share_buffer}
