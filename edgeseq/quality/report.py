"""The figures of `edgeseq eval` as a few lines of text."""
from __future__ import annotations

from typing import Any


def text(r: dict[str, Any]) -> str:
    g = r["greedy"]
    lines = [f"{r['artifact']} ({r['weights']}, {r['engine']} {r['precision']}) against {r['reference']}:",
             f"  {'set':<8} {'tokens':>7} {'ppl':>10} {'ref ppl':>10} {'KL mean':>9} {'KL p99':>9} {'top-1':>7}"]
    for name, s in [*r["sets"].items(), ("all", r)]:
        lines.append(f"  {name:<8} {s['tokens']:>7} {s['perplexity']:>10.3f} {s['reference_perplexity']:>10.3f} "
                     f"{s['kl_mean']:>9.4f} {s['kl_p99']:>9.4f} {s['top1_agreement']:>7.1%}")
    if g["prompts"]:
        margins = g.get("divergence_margin") or [None] * len(g["first_divergence"])
        firsts = ", ".join("-" if f is None else f"{f} ({m:.2f})" if m is not None else str(f)
                           for f, m in zip(g["first_divergence"], margins))
        forced = g.get("forced_agreement")
        lines.append(f"  greedy: {g['prompts']} prompts x {g['steps']} tokens: same token at "
                     f"{g['token_agreement']:.1%} of steps; first difference at step {firsts} (-: none; in "
                     "brackets the reference's log-probability margin there: near 0 is a near-tie)"
                     + ("" if forced is None else f"; fed the reference's tokens, the same next token at {forced:.1%}"))
    return "\n".join(lines)
