"""The built-in evaluation texts (edgeseq/quality/data/): English prose and a chat set, written by the
edgeseq team for this purpose and dedicated to the public domain (CC0), so they ship with the package
and no data set is fetched. Each case is token ids: a context the model reads and a target it is
scored on (teacher-forced), the same ids for every artifact of one tokenizer."""
from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from typing import Any

SETS = ("prose", "chat")


@dataclass(frozen=True)
class Case:
    """One scored passage: `context` ids are read, `target` ids are predicted one by one.
    Encoder-decoder models read `context` with the encoder; decoder-only ones read context + target."""
    set: str
    context: list[int]
    target: list[int]


def _data(name: str) -> str:
    return (resources.files("edgeseq.quality") / "data" / name).read_text(encoding="utf-8")


def paragraphs() -> list[str]:
    return [p.strip() for p in _data("prose.txt").split("\n\n") if p.strip()]


def chats() -> list[dict[str, str]]:
    return [json.loads(line) for line in _data("chat.jsonl").splitlines() if line.strip()]


def cases(model: Any, tokens: int | None = None, sets: tuple[str, ...] = SETS) -> list[Case]:
    """The cases for `model` (edgeseq.api.Model: its tokenizer, chat template and kind), until about
    `tokens` target tokens (None: all). Prose: decoder-only models read each paragraph whole (its
    first token as context); encoder-decoder models read its first half and are scored on the second.
    Chat: the user turn rendered with the artifact's chat template is the context, the reply the target
    (skipped for artifacts without a template)."""
    out: list[Case] = []
    encdec = model.kind == "encoder-decoder"
    vocab = int(model.manifest.dims["vocab_size"])
    fold = lambda ids: [i % vocab for i in ids]  # noqa: E731  (a test tokenizer larger than a tiny model's vocab)
    queue: list[tuple[str, list[int], list[int]]] = []
    if "prose" in sets:
        for text in paragraphs():
            if encdec:
                words = text.split()
                half = len(words) // 2
                src = model.encode(" ".join(words[:half]))
                tgt = model.tokenizer.encode(" ".join(words[half:]), add_special_tokens=False).ids
                queue.append(("prose", src, tgt))
            else:
                ids = model.encode(text)
                queue.append(("prose", ids[:1], ids[1:]))
    if "chat" in sets and model.gen_defaults.get("chat_template"):
        for turn in chats():
            ctx = model.encode_chat([{"role": "user", "content": turn["user"]}]) if not encdec \
                else model.encode(turn["user"])
            tgt = model.tokenizer.encode(turn["assistant"], add_special_tokens=False).ids
            queue.append(("chat", ctx, tgt))
    # interleave the sets so a token budget samples both
    by_set = {s: [q for q in queue if q[0] == s] for s in sets}
    order = [q for group in zip_longest_lists(list(by_set.values())) for q in group]
    total = 0
    for name, ctx, tgt in order:
        if tokens is not None and total >= tokens:
            break
        if tokens is not None:
            tgt = tgt[:max(tokens - total, 1)]
        out.append(Case(name, fold(ctx), fold(tgt)))
        total += len(tgt)
    return out


def prompts(model: Any, n: int) -> list[list[int]]:
    """`n` prompts for free greedy runs: the chat set's user turns where the artifact has a chat
    template, else the first sentence of each prose paragraph."""
    vocab = int(model.manifest.dims["vocab_size"])
    if model.gen_defaults.get("chat_template") and model.kind == "decoder-only":
        rows = [model.encode_chat([{"role": "user", "content": t["user"]}]) for t in chats()[:n]]
    else:
        rows = [model.encode(p.split(". ")[0] + ".") for p in paragraphs()[:n]]
    return [[i % vocab for i in r] for r in rows]


def zip_longest_lists(groups: list[list[Any]]) -> list[list[Any]]:
    """Round-robin: the first of each group, then the second of each, ..."""
    longest = max((len(g) for g in groups), default=0)
    return [[g[i] for g in groups if i < len(g)] for i in range(longest)]
