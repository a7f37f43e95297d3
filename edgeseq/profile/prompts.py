"""Profiling prompts of an exact token length, the same ids on every engine for a given tokenizer."""
from __future__ import annotations

from typing import Any

PASSAGE = (
    "A lighthouse keeper on a small northern island kept a careful log of every ship that passed. "
    "Each morning he climbed the spiral stairs, cleaned the great lens, trimmed the wick and noted "
    "the wind, the colour of the sea and the shape of the clouds. Over forty years the log grew to "
    "fill a whole shelf, and when the light was finally automated, the village library asked to keep "
    "the books. Students now read them to learn how storms moved along the coast, how the fishing "
    "fleet shrank as the boats grew larger, and how a single person could notice, patiently and "
    "precisely, the slow changes that nobody else had time to see. The keeper himself said only that "
    "the sea was never the same two days running, and that writing it down was the least he could do. "
)


def prompt_ids(tokenizer: Any, length: int, vocab_size: int | None = None) -> list[int]:
    """Exactly `length` ids: the passage tokenized (no special tokens), repeated and cut."""
    one = tokenizer.encode(PASSAGE, add_special_tokens=False).ids
    ids = (one * (length // max(len(one), 1) + 1))[:length]
    return [i % vocab_size for i in ids] if vocab_size else ids
