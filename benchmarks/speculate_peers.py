"""The peer tools' side of the speculative-decoding benchmark: one tool per process, run from that tool's venv.

    VENV/bin/python benchmarks/speculate_peers.py TOOL --model DIR --prompts PROMPTS.json [--draft DIR]
        [--threads 2] [--max-new-tokens 128] [--draft-tokens 4] [--ngram 3] [--limit N]

prints ONE JSON line {tool, versions, notes, peak_rss_mb, prompts: [...]}; per prompt: the new token ids (EOS
not included), their count, ttft_ms, decode_tok_s, e2e_ms and, where the tool speculates, what it says about
acceptance. Only the standard library, numpy and the tool are imported (the peer venvs have no edgeseq).

Protocol: the prompt token ids come from PROMPTS.json (edgeseq's chat-template rendering of each prompt,
written by benchmarks/speculate.py), so every tool starts from the same ids and no tokenizer runs in the timed
region. Greedy, batch 1, EOS (the ids in PROMPTS.json) ends a row, at most --max-new-tokens. Load, 1 untimed
warm-up generation (the first prompt), then every prompt once.

  ttft_ms       ids handed to the tool -> the first new token reaches the streamer
  decode_tok_s  (n - 1) / (t_last - t_first) over the streamed token stamps (tokens that arrive together,
                as after a verification step, share one stamp)
  e2e_ms        ids handed over -> the generate call returned

Tools (K = --draft-tokens):
  transformers, transformers-lookup (prompt_lookup_num_tokens=K, max_matching_ngram_size=--ngram),
  transformers-assist (assistant_model = --assistant: a copy of the same model with torch dynamic int8
  Linear layers, or in bf16 (the default: the int8 copy's prefill of a ~400-token prompt takes many
  seconds on CPU, which makes it a useless assistant); K candidates per step, constant schedule, no confidence
  cut-off)
      main venv; --model the HF directory
  openvino-genai (plain), openvino-genai-lookup (prompt_lookup=True, num_assistant_tokens=K, max_ngram_size=
  --ngram), openvino-genai-draft (draft_model = --draft, an optimum-intel IR, num_assistant_tokens=K)
      venv-ovgenai; --model optimum-intel's fp32 IR; f32 inference and KV-cache precision, prefix cache off
"""
from __future__ import annotations

import argparse
import json
import resource
import time
from importlib import metadata
from pathlib import Path
from typing import Any, Callable

TOOLS = ("transformers", "transformers-lookup", "transformers-assist",
         "openvino-genai", "openvino-genai-lookup", "openvino-genai-draft")


class Clock:
    """Token stamps of one generation: `start()` when the ids are handed over, `tokens(ids)` per delivery."""

    def __init__(self) -> None:
        self.t0, self.times, self.ids, self.deliveries = 0.0, [], [], 0

    def start(self) -> None:
        self.t0, self.times, self.ids, self.deliveries = time.perf_counter(), [], [], 0

    def tokens(self, ids: list[int]) -> None:
        t = time.perf_counter()
        self.deliveries += 1
        self.times += [t] * len(ids)
        self.ids += ids


# ---- tools: each loader returns (generate(ids, clock) -> extra stats dict, notes, packages)

def load_transformers(a: argparse.Namespace, eos: list[int]) -> tuple:
    import torch
    from transformers import AutoModelForCausalLM

    torch.set_num_threads(a.threads)
    torch.set_num_interop_threads(1)
    model = AutoModelForCausalLM.from_pretrained(a.model, dtype=torch.float32).eval()
    kw: dict[str, Any] = {}
    notes = [f"torch threads {a.threads}, interop 1; attn={model.config._attn_implementation}"]
    if a.tool == "transformers-lookup":
        kw.update(prompt_lookup_num_tokens=a.draft_tokens, max_matching_ngram_size=a.ngram)
        notes.append(f"prompt_lookup_num_tokens={a.draft_tokens}, max_matching_ngram_size={a.ngram}")
    elif a.tool == "transformers-assist":
        helper = AutoModelForCausalLM.from_pretrained(a.model, dtype=torch.float32).eval()
        if a.assistant == "int8":
            helper = torch.ao.quantization.quantize_dynamic(helper, {torch.nn.Linear}, dtype=torch.qint8)
        else:
            helper = helper.to(torch.bfloat16)
        gc = helper.generation_config
        gc.num_assistant_tokens, gc.num_assistant_tokens_schedule, gc.assistant_confidence_threshold = \
            a.draft_tokens, "constant", 0.0
        kw["assistant_model"] = helper
        notes.append(f"assistant: the same model, {'torch dynamic int8 Linear' if a.assistant == 'int8' else 'bf16'};"
                     f" num_assistant_tokens={a.draft_tokens}, schedule constant, confidence threshold 0")

    class Streamer:  # generate() puts the prompt first, then each step's new token(s)
        def __init__(self, clock: Clock) -> None:
            self.clock, self.prompt_seen = clock, False

        def put(self, value: Any) -> None:
            if not self.prompt_seen:
                self.prompt_seen = True
            else:
                self.clock.tokens([int(t) for t in value.reshape(-1)])

        def end(self) -> None:
            pass

    def generate(ids: list[int], clock: Clock) -> dict:
        x = torch.tensor([ids], dtype=torch.long)
        s = Streamer(clock)
        clock.start()
        with torch.inference_mode():
            model.generate(x, attention_mask=torch.ones_like(x), streamer=s, do_sample=False, num_beams=1,
                           max_new_tokens=a.max_new_tokens, eos_token_id=eos, pad_token_id=eos[0], **kw)
        return {}

    return generate, notes, ["torch", "transformers"]


def load_openvino_genai(a: argparse.Namespace, eos: list[int]) -> tuple:
    import numpy as np
    import openvino as ov
    import openvino_genai as og

    props: dict[str, Any] = {"INFERENCE_NUM_THREADS": a.threads, "NUM_STREAMS": 1,
                             "INFERENCE_PRECISION_HINT": "f32", "KV_CACHE_PRECISION": "f32"}
    sc = og.SchedulerConfig()
    sc.enable_prefix_caching = False  # the warm-up prompt is timed again: a cached prefix would fake its TTFT
    extra: dict[str, Any] = {"scheduler_config": sc}
    notes = [f"INFERENCE_NUM_THREADS {a.threads}, NUM_STREAMS 1, f32 inference and KV cache, prefix cache off"]
    if a.tool == "openvino-genai-lookup":
        extra["prompt_lookup"] = True
        notes.append(f"prompt_lookup=True, num_assistant_tokens={a.draft_tokens}, max_ngram_size={a.ngram}")
    elif a.tool == "openvino-genai-draft":
        extra["draft_model"] = og.draft_model(a.draft, "CPU", **props)
        notes.append(f"draft_model={Path(a.draft).name} (same properties), num_assistant_tokens={a.draft_tokens}")
    pipe = og.LLMPipeline(a.model, "CPU", **props, **extra)
    cfg = pipe.get_generation_config()
    cfg.max_new_tokens, cfg.do_sample, cfg.num_beams = a.max_new_tokens, False, 1
    cfg.eos_token_id, cfg.stop_token_ids, cfg.ignore_eos = eos[0], set(eos), False
    cfg.apply_chat_template = False  # the ids are already the rendered chat prompt
    if a.tool != "openvino-genai":
        cfg.num_assistant_tokens = a.draft_tokens
    if a.tool == "openvino-genai-lookup":
        cfg.max_ngram_size = a.ngram

    class Streamer(og.StreamerBase):
        def __init__(self, clock: Clock) -> None:
            super().__init__()
            self.clock = clock

        def write(self, token: Any) -> og.StreamingStatus:
            self.clock.tokens([int(token)] if isinstance(token, int) else [int(t) for t in token])
            return og.StreamingStatus.RUNNING

        def end(self) -> None:
            pass

    def generate(ids: list[int], clock: Clock) -> dict:
        x = ov.Tensor(np.array([ids], dtype=np.int64))
        s = Streamer(clock)
        clock.start()
        r = pipe.generate(x, cfg, s)
        pm = r.perf_metrics
        out: dict[str, Any] = {"tool_ttft_ms": pm.get_ttft().mean, "tool_tpot_ms": pm.get_tpot().mean,
                               "tool_tokens": pm.get_num_generated_tokens()}
        try:
            ext = r.extended_perf_metrics
        except (AttributeError, RuntimeError):
            ext = None
        if ext is not None and hasattr(ext, "get_num_accepted_tokens"):
            out.update(accepted=int(ext.get_num_accepted_tokens()), proposed=int(ext.get_num_draft_tokens()),
                       tool_acceptance_rate=float(ext.get_draft_acceptance_rate()))
        return out

    return generate, notes, ["openvino-genai", "openvino", "openvino-tokenizers"]


LOADERS: dict[str, Callable[[argparse.Namespace, list[int]], tuple]] = {
    "transformers": load_transformers, "transformers-lookup": load_transformers,
    "transformers-assist": load_transformers, "openvino-genai": load_openvino_genai,
    "openvino-genai-lookup": load_openvino_genai, "openvino-genai-draft": load_openvino_genai}


def _version(pkg: str) -> str | None:
    try:
        return metadata.version(pkg)
    except metadata.PackageNotFoundError:
        return None


def one(generate: Callable[[list[int], Clock], dict], ids: list[int], clock: Clock, eos: list[int]) -> dict:
    """One timed generation: the new ids up to (not including) EOS, their stamps' figures, the tool's extras."""
    extra = generate(ids, clock)
    t_end = time.perf_counter()
    new, ts = clock.ids, clock.times
    if new and new[-1] in eos:  # EOS is the stop signal, not output: drop it and its stamp alike
        new, ts = new[:-1], ts[:-1]
    rec = {"ids": new, "tokens": len(new), "e2e_ms": (t_end - clock.t0) * 1e3,
           "ttft_ms": (ts[0] - clock.t0) * 1e3 if ts else None,
           "decode_tok_s": (len(ts) - 1) / (ts[-1] - ts[0]) if len(ts) > 1 and ts[-1] > ts[0] else None,
           "deliveries": clock.deliveries, **extra}
    return rec


def bench(a: argparse.Namespace) -> dict:
    doc = json.loads(Path(a.prompts).read_text())
    eos, prompts = [int(e) for e in doc["eos_token_ids"]], doc["prompts"][: a.limit or None]
    generate, notes, pkgs = LOADERS[a.tool](a, eos)
    clock = Clock()
    one(generate, prompts[0]["ids"], clock, eos)  # warm-up
    out = [{"name": p["name"], "set": p["set"], "prompt_tokens": len(p["ids"]),
            **one(generate, p["ids"], clock, eos)} for p in prompts]
    if a.tool.startswith("transformers-"):
        notes.append("deliveries = streamer puts after the prompt = target forward passes (one per verification)")
    return {"tool": a.tool, "versions": {p: _version(p) for p in ["numpy", *pkgs]}, "notes": notes,
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1), "prompts": out}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("tool", choices=TOOLS)
    p.add_argument("--model", required=True, help="the tool's model directory")
    p.add_argument("--draft", help="openvino-genai-draft: the draft model's IR directory")
    p.add_argument("--assistant", choices=["int8", "bf16"], default="bf16", help="transformers-assist's helper")
    p.add_argument("--prompts", required=True, help="prompts.json written by speculate.py --prepare")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--max-new-tokens", type=int, default=128)
    p.add_argument("--draft-tokens", type=int, default=4, help="K: candidates proposed per verification step")
    p.add_argument("--ngram", type=int, default=3, help="prompt lookup: longest n-gram matched")
    p.add_argument("--limit", type=int, default=0, help="only the first N prompts (smoke runs)")
    a = p.parse_args()
    if a.tool == "openvino-genai-draft" and not a.draft:
        p.error("openvino-genai-draft needs --draft")
    print(json.dumps(bench(a)), flush=True)


if __name__ == "__main__":
    main()
