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

    def flush(self) -> str:
        """At the end: the text still held back. An incomplete character there is returned as U+FFFD,
        as decode() of the whole sequence gives it, so stream() and generate() return the same text."""
        window = self.tokenizer.decode(self.ids[self._prefix:], skip_special_tokens=True)
        before = self.tokenizer.decode(self.ids[self._prefix:self._read], skip_special_tokens=True)
        piece = window[len(before):] if window.startswith(before) else ""
        self._prefix = self._read = len(self.ids)
        self.text += piece
        return piece


def cut_at_stop(text: str, stops: list[str]) -> tuple[str, bool]:
    """`text` up to (not including) its first stop string, and whether one was found."""
    at = [i for i in (text.find(s) for s in stops) if i >= 0]
    return (text[: min(at)], True) if at else (text, False)


class StopText:
    """One row's text checked against stop strings as it grows. push() returns only text that no
    later token can turn into part of a stop string: a tail that is the start of a stop string is
    held back until it either completes one (then it and everything after are dropped) or cannot."""

    def __init__(self, stops: list[str]) -> None:
        self.stops = list(stops)
        self.pending = ""
        self.hit = False

    def push(self, piece: str) -> str:
        if not self.stops:  # the common case, once per streamed token: nothing to hold back
            return piece
        if self.hit:
            return ""
        self.pending += piece
        text, self.hit = cut_at_stop(self.pending, self.stops)
        if self.hit:
            self.pending = ""
            return text
        hold = max((k for s in self.stops for k in range(1, min(len(s), len(text) + 1))
                    if text.endswith(s[:k])), default=0)
        out, self.pending = text[: len(text) - hold], text[len(text) - hold:]
        return out

    def flush(self) -> str:
        """At the end (no stop string came): the held-back tail."""
        out, self.pending = ("" if self.hit else self.pending), ""
        return out
