"""Parity gate: the exported artifact against the PyTorch model over many greedy decode steps.

The artifact generates greedily with its KV cache (EOS masked so every run has `steps` tokens);
the PyTorch model then scores the same sequence in one teacher-forced pass without a cache. Per
step we record the max abs logits difference and whether the token the artifact chose is the
reference's argmax. A disagreement counts only when it is not a near-tie: the reference's margin
between the two tokens exceeds the tolerance.
"""
from __future__ import annotations

from typing import Any

import numpy as np

# Tolerance on max |logits_artifact - logits_torch|: atol + rtol * max|logits_torch|, per weight
# format. fp32 is exact up to float rounding. Compressed weights change the logits by design; their
# bounds only catch a broken graph (whose error is of the order of the logits themselves), and the
# measured difference is in the manifest for anyone to judge. Measured here (SmolLM2-135M-Instruct,
# largest reference logit ~32-37): fp16 0.031 (bound 0.37), int8 1.98 (bound 4.7), int4 13.9
# (bound 20.9) with greedy tokens diverging from step 3: int4 weights visibly change a model this small.
# "bf16" is a compute precision (`profile --auto` checks engine settings against float32 compute):
# 8 significant bits change the logits about as much as int8 weights do, so it shares their bound.
TOLERANCE = {"fp32": {"atol": 1e-4, "rtol": 1e-4}, "fp16": {"atol": 0.05, "rtol": 0.01},
             "int8": {"atol": 1.0, "rtol": 0.1}, "int4": {"atol": 2.0, "rtol": 0.5},
             "bf16": {"atol": 1.0, "rtol": 0.1}}
TOLERANCE["int8-wo"] = TOLERANCE["int8"]  # TFLite weight-only int8: the same weights, float compute
# NPU QDQ recipes (export/calibrate.py): per-tensor uint8 weights, quantized activations
TOLERANCE["w8a16"] = {"atol": 2.0, "rtol": 0.2}
TOLERANCE["w8a8"] = {"atol": 4.0, "rtol": 0.5}
TOLERANCE["w4a16"] = TOLERANCE["int4"]
# ONNX w4a8: int4 weights, activations quantized to int8 per block as each matmul runs (MatMulNBits
# accuracy_level 4); rounding both operands moves logits about as far as the NPU's w8a8 recipe. ONNX's
# CPU w8a8 (8-bit MatMulNBits weights, int8 compute) shares that recipe's name and bound: both round
# weights and activations to 8 bits.
TOLERANCE["w4a8"] = TOLERANCE["w8a8"]
TOLERANCE["w8a8-token"] = TOLERANCE["w8a8"]  # int8 weights per column, activations per token
LOOSENESS = ["fp32", "fp16", "bf16", "int8-wo", "int8", "w8a16", "int4", "w4a16", "w4a8", "w8a8", "w8a8-token"]  # rows from tightest to loosest
PROMPT = "The weather on the coast was calm this morning, and the fishing boats left the harbour early."


def check(backend: Any, spec: Any, steps: int = 32, weights: str = "fp32", prompt: str = PROMPT,
          progress: Any = None) -> dict[str, Any]:
    import torch

    from ..generate.config import GenerationConfig
    from ..generate.loop import Timings, steps as loop_steps

    gen = spec.generation.as_dict()
    ids = prompt_ids(spec.tokenizer_json, spec.kind, gen, spec.dims.vocab_size, prompt)
    static = getattr(backend, "static", None)
    if static:  # a static-shape artifact: the prompt and the steps within the limits it was compiled for
        ids, steps = ids[: static["max_input"]], min(steps, static["max_output"])
    cfg = GenerationConfig(max_new_tokens=steps, ignore_eos=True)

    # run the real loop, recording the logits it sees at every step (the backend is this export's own)
    got_logits: list[np.ndarray] = []
    originals = backend.decode, backend.prefill

    def wrap(fn: Any) -> Any:
        def inner(*a: Any, **k: Any) -> Any:
            out = fn(*a, **k)
            got_logits.append(np.array(out[0], np.float32))
            if progress is not None:
                progress.update(1)
            return out
        return inner
    backend.decode, backend.prefill = wrap(originals[0]), wrap(originals[1])
    try:
        tokens = [int(t[0]) for t in loop_steps(backend, [ids], cfg, gen, Timings())]
    finally:
        backend.decode, backend.prefill = originals
    got = np.stack(got_logits[: len(tokens)])  # [steps, V]

    with torch.no_grad():
        m = spec.model
        if spec.kind == "decoder-only":
            seq = torch.tensor([ids + tokens[:-1]])
            ref = m(input_ids=seq).logits[0, len(ids) - 1:].float().numpy()
        else:
            dec = torch.tensor([[gen["decoder_start_token_id"]] + tokens[:-1]])
            ref = m(input_ids=torch.tensor([ids]), decoder_input_ids=dec).logits[0].float().numpy()
    return {**judge(got, ref, tokens, weights), "prompt_tokens": len(ids),
            "reference": f"{_origin(spec.model)} {type(spec.model).__name__}, float32, teacher-forced without cache"}


def prompt_ids(tokenizer_json: str, kind: str, gen: dict[str, Any], vocab_size: int, prompt: str = PROMPT) -> list[int]:
    """The parity prompt as the model expects it (special tokens, BOS), ids folded into the vocab."""
    from tokenizers import Tokenizer

    ids = Tokenizer.from_str(tokenizer_json).encode(prompt, add_special_tokens=kind == "encoder-decoder").ids
    if kind == "decoder-only" and gen.get("add_bos") and gen.get("bos_token_id") is not None:
        ids = [gen["bos_token_id"]] + ids
    return [i % vocab_size for i in ids]  # a tokenizer larger than a test model's vocab


def judge(got: np.ndarray, ref: np.ndarray, tokens: list[int], rule: str) -> dict[str, Any]:
    """Per-step logits [steps, V] of the checked run against the reference's, at the tokens the
    checked run chose; `rule` names the TOLERANCE row."""
    tol = TOLERANCE[rule]
    limit = tol["atol"] + tol["rtol"] * float(np.abs(ref).max())
    per_step = np.abs(got - ref).max(axis=-1)
    ref_top = ref.argmax(-1)
    margins = ref[np.arange(len(tokens)), ref_top] - ref[np.arange(len(tokens)), tokens]
    agree = [bool(a == b) for a, b in zip(tokens, ref_top.tolist())]
    real_mismatch = [i for i, (ok, mg) in enumerate(zip(agree, margins)) if not ok and mg > limit]
    passed = bool(per_step.max() <= limit) and not real_mismatch
    return {
        "status": "passed" if passed else "failed",
        "steps": len(tokens),
        "max_abs_diff": float(per_step.max()),
        "tolerance": limit,
        "tolerance_rule": tol,
        "per_step_max_abs_diff": [float(f"{x:.3g}") for x in per_step],
        "tokens_agree": all(agree),
        "token_mismatch_steps": [i for i, ok in enumerate(agree) if not ok],
        "near_tie_steps": [i for i, ok in enumerate(agree) if not ok and i not in real_mismatch],
    }


def _origin(model: Any) -> str:
    """Which library's code the reference logits come from (transformers, or edgeseq's own paper family)."""
    return type(model).__module__.split(".")[0]
