"""Word error rate with a small, stated English normalizer.

`normalize` lowercases; maps curly quotes to straight ones; turns hyphens, dashes and slashes into spaces
("twenty-one" == "twenty one"); drops every other punctuation mark except an apostrophe inside a word
(so "don't" and "it's" stay as written, "'quoted'" loses its quotes); and collapses whitespace.
It does NOT reconcile digits with spelled numbers ("21" vs "twenty one"), expand contractions ("don't" vs
"do not"), abbreviations ("Mr" vs "mister"), or British/American spellings: each of those counts as an error.
"""
from __future__ import annotations

import re
from collections.abc import Iterable

from edgeseq.errors import InputError

_SPACE_LIKE = re.compile(r"[-\u2010-\u2015/]")
_INNER_APOSTROPHE = re.compile(r"(?<=\w)'(?=\w)")
_NOT_WORD = re.compile(r"[^\w\s\x00]")


def normalize(text: str) -> list[str]:
    """The words of `text` after the normalization described in the module docstring."""
    t = text.lower().replace("\u2019", "'").replace("\u2018", "'")
    t = _SPACE_LIKE.sub(" ", t)
    t = _INNER_APOSTROPHE.sub("\x00", t)  # protect in-word apostrophes from the punctuation strip
    t = _NOT_WORD.sub(" ", t).replace("_", " ").replace("\x00", "'")
    return t.split()


def word_edits(reference: list[str], hypothesis: list[str]) -> int:
    """Word-level Levenshtein distance: the fewest substitutions, deletions and insertions."""
    prev = list(range(len(hypothesis) + 1))
    for i, ref_word in enumerate(reference, 1):
        cur = [i] + [0] * len(hypothesis)
        for j, hyp_word in enumerate(hypothesis, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ref_word != hyp_word))
        prev = cur
    return prev[-1]


def wer(reference: str, hypothesis: str) -> float:
    """Edits / reference words after `normalize`; can exceed 1.0 when the hypothesis adds many words."""
    return corpus_wer([(reference, hypothesis)])


def corpus_wer(pairs: Iterable[tuple[str, str]]) -> float:
    """Total edits over total reference words across `(reference, hypothesis)` pairs, so long utterances
    weigh more than short ones (not the mean of per-utterance rates)."""
    edits = words = 0
    for reference, hypothesis in pairs:
        ref = normalize(reference)
        edits += word_edits(ref, normalize(hypothesis))
        words += len(ref)
    if words == 0:
        raise InputError("word error rate is undefined for an empty reference",
                         "give at least one reference with words in it")
    return edits / words
