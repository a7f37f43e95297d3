"""Soak: generate many times from one loaded model and report resident memory at start and end.

    python scripts/soak.py edgeseq-demo/t5-small-onnx --runs 1000

Prompts and lengths vary (seeded), greedy and sampling alternate, every 10th call is a batch of
two and every 25th a beam search; RSS is read after a warm-up of 20 calls (the engine's arenas
grow to their working size first) and at every 100th call. Growth beyond a few MB is a leak.
"""
from __future__ import annotations

import argparse
import json
import random
import time

import edgeseq
from edgeseq.profile.memory import rss_mb

WORDS = ("the sea keeper light ship storm log coast boat wind cloud island north morning lens stair "
         "village library student fleet colour shape patient slow change").split()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("artifact")
    p.add_argument("--runs", type=int, default=1000)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--max-new-tokens", type=int, default=24)
    a = p.parse_args()
    rng = random.Random(0)
    model = edgeseq.load(a.artifact, threads=a.threads)

    def one(i: int) -> None:
        prompt = " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 60)))
        n = rng.randint(1, a.max_new_tokens)
        if i % 25 == 0:
            model.generate(prompt, max_new_tokens=n, num_beams=3)
        elif i % 10 == 0:
            model.generate([prompt, prompt[: len(prompt) // 2] or "x"], max_new_tokens=n)
        elif i % 2:
            model.generate(prompt, max_new_tokens=n, do_sample=True, temperature=0.9, top_p=0.9, seed=i)
        else:
            "".join(model.stream(prompt, max_new_tokens=n))

    for i in range(20):
        one(i)
    start, t0, trace = rss_mb(), time.perf_counter(), []
    for i in range(a.runs):
        one(i)
        if (i + 1) % 100 == 0:
            trace.append(round(rss_mb(), 1))
    end = rss_mb()
    print(json.dumps({"artifact": a.artifact, "runs": a.runs, "seconds": round(time.perf_counter() - t0, 1),
                      "rss_start_mb": round(start, 1), "rss_end_mb": round(end, 1),
                      "growth_mb": round(end - start, 1), "rss_every_100": trace}))


if __name__ == "__main__":
    main()
