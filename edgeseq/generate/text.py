"""Incremental detokenization: text pieces that never end inside a multi-byte character."""
from __future__ import annotations

from typing import Any


class TextStream:
    """Feed token ids one at a time; get back the new text they complete ('' while a character is
    still incomplete, e.g. the first byte tokens of an emoji).

    Each push decodes only the ids since the last emitted piece plus the few before them (so
    tokenizers that treat a leading space specially decode that context the same way twice),
    keeping a stream of n tokens O(n) instead of decoding the whole sequence every token."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self.ids: list[int] = []
        self.text = ""
        self._prefix = 0  # start of the decoding window
        self._read = 0  # ids up to here are already in self.text

    def push(self, token: int) -> str:
        self.ids.append(int(token))
        decode = self.tokenizer.decode
        before = decode(self.ids[self._prefix:self._read], skip_special_tokens=True)
        window = decode(self.ids[self._prefix:], skip_special_tokens=True)
        if window.endswith("\ufffd"):  # an incomplete UTF-8 sequence: wait for the next byte token
            return ""
        piece = window[len(before):] if window.startswith(before) else ""
        self._prefix, self._read = self._read, len(self.ids)
        self.text += piece
        return piece
