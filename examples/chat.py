"""An offline chat on the command line, using only edgeseq's runtime install (no torch).

    pip install edgeseq                      # numpy, tokenizers, onnxruntime, jinja2
    edgeseq export smollm2-135m-instruct --out smol/     # once, where the export extra is installed
    python examples/chat.py smol/

Each turn re-renders the whole conversation with the model's chat template, keeps the part of the
KV cache that is still valid (the common prefix with what the model already read), rewinds the
rest and feeds only the new tokens, so a long conversation does not re-read itself every turn.
"""
from __future__ import annotations

import argparse
import sys

import edgeseq
from edgeseq.generate.text import TextStream


def common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("artifact", help="an artifact directory with a chat template (an instruct model)")
    p.add_argument("--max-new-tokens", type=int, default=256)
    p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default)")
    p.add_argument("--threads", type=int, default=None)
    a = p.parse_args()
    try:
        model = edgeseq.load(a.artifact, threads=a.threads)
        sampling = dict(do_sample=True, temperature=a.temperature) if a.temperature > 0 else {}
        cfg = edgeseq.GenerationConfig(max_new_tokens=a.max_new_tokens, **sampling).validate()
    except edgeseq.EdgeseqError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    messages: list[dict[str, str]] = []
    gen = None
    print("Type a message; an empty line or Ctrl-D quits.", file=sys.stderr)
    while True:
        try:
            line = input("you> ").strip()
        except (EOFError, KeyboardInterrupt):
            break
        if not line:
            break
        messages.append({"role": "user", "content": line})
        try:
            ids = model.encode_chat(messages)
            keep = common_prefix(gen.sequence, ids) if gen is not None else 0
            if gen is None or keep == 0:
                gen = model.generator(ids, config=cfg)
            else:  # reuse the cache for the unchanged prefix, feed only what is new
                gen.rewind(len(gen.sequence) - keep)
                gen.append_tokens(ids[keep:])
            text = TextStream(model.tokenizer)
            print("bot> ", end="", flush=True)
            while not gen.done:
                token = gen.next_token()
                if token not in gen.eos:
                    print(text.push(token), end="", flush=True)
            print()
        except edgeseq.EdgeseqError as e:  # e.g. the conversation outgrew the model's context
            print(f"\nerror: {e}", file=sys.stderr)
            messages.pop()
            continue
        messages.append({"role": "assistant", "content": text.text})
    return 0


if __name__ == "__main__":
    sys.exit(main())
