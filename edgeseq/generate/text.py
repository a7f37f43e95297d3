"""Incremental detokenization: text pieces that never end inside a multi-byte character."""
from __future__ import annotations

from typing import Any


class TextStream:
    """Feed token ids one at a time; get back the new text they complete ('' while a character is
    still incomplete, e.g. the first byte tokens of an emoji)."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self.ids: list[int] = []
        self.text = ""

    def push(self, token: int) -> str:
        self.ids.append(int(token))
        text = self.tokenizer.decode(self.ids, skip_special_tokens=True)
        if text.endswith("\ufffd"):  # an incomplete UTF-8 sequence: wait for the next byte token
            return ""
        piece = text[len(self.text):] if text.startswith(self.text) else ""
        self.text = text
        return piece
