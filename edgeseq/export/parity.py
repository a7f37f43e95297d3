"""Parity gate: the exported artifact against the PyTorch model over many greedy decode steps.

The artifact generates greedily with its KV cache (EOS masked so every run has `steps` tokens);
the PyTorch model then scores the same sequence in one teacher-forced pass without a cache. Per
step we record the max abs logits difference and whether the token the artifact chose is the
reference's argmax among the same tokens (EOS masked on both sides). A disagreement counts only
when it is not a near-tie: the reference's margin between the two tokens exceeds the tolerance.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..accuracy import PROMPT, judge, judge_tensor, prompt_ids

def check(backend: Any, spec: Any, steps: int = 32, weights: str = "fp32", prompt: str = PROMPT,
          progress: Any = None) -> dict[str, Any]:
    import torch

    from ..generate.config import GenerationConfig
    from ..generate.loop import Timings, banned_ids, first_banned, forced_prefix, steps as loop_steps

    gen = spec.generation.as_dict()
    features = None
    if spec.audio:  # speech: a fixed test signal's features in, the transcription prompt on the decoder side
        from ..generate.speech import prompt as speech_prompt

        features, ids = parity_features(spec.audio), speech_prompt(spec.audio["tokens"])
    else:
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
        tokens = [int(t[0]) for t in loop_steps(backend, [ids], cfg, gen, Timings(), features=features)]
    finally:
        backend.decode, backend.prefill = originals
    forced = forced_prefix(spec.kind, gen)  # fed after the start token; the logits before it are not chosen from
    got = np.stack(got_logits[len(forced): len(forced) + len(tokens)])  # [steps, V]

    with torch.no_grad():
        m = spec.model
        if features is not None:
            seq = torch.tensor([ids + tokens[:-1]])
            ref = m(input_features=torch.from_numpy(features), decoder_input_ids=seq).logits[0, len(ids) - 1:]
            ref = ref.float().numpy()
            ref_hidden = m.model.encoder(torch.from_numpy(features)).last_hidden_state.float().numpy()
        elif spec.kind == "decoder-only":
            seq = torch.tensor([ids + tokens[:-1]])
            ref = m(input_ids=seq).logits[0, len(ids) - 1:].float().numpy()
        else:
            dec = torch.tensor([[gen["decoder_start_token_id"], *forced] + tokens[:-1]])
            ref = m(input_ids=torch.tensor([ids]), decoder_input_ids=dec).logits[0, len(forced):].float().numpy()
    banned = banned_ids(cfg, gen)  # ignore_eos: the loop never chose them (nor suppressed ids)
    verdict = {**judge(got, ref, tokens, weights, banned, first_banned(cfg, gen)), "prompt_tokens": len(ids),
               "reference": f"{_origin(spec.model)} {type(spec.model).__name__}, float32, teacher-forced without cache"}
    if features is not None:  # the encoder's output on its own, as the decoder steps cannot show where an error began
        verdict["encoder"] = judge_tensor(backend.encoder_hidden(features), ref_hidden, weights)
        if verdict["encoder"]["status"] == "failed":
            verdict["status"] = "failed"
    return verdict


def parity_signal(audio: dict[str, Any], seed: int = 0) -> np.ndarray:
    """The fixed voice-like test signal [N] the parity check's features are made from (audio/testset.py)."""
    from ..audio.testset import voice_like

    return voice_like(6.0, int(audio["sampling_rate"]), seed).astype(np.float32)


def parity_features(audio: dict[str, Any], seed: int = 0) -> np.ndarray:
    """Log-mel features [1, n_mels, frames] of the parity test signal."""
    from ..audio import log_mel

    return log_mel(parity_signal(audio, seed), n_mels=int(audio["n_mels"]))[None].astype(np.float32)


def _origin(model: Any) -> str:
    """Which library's code the reference logits come from (transformers, or edgeseq's own paper family)."""
    return type(model).__module__.split(".")[0]
