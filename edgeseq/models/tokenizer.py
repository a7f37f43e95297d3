"""A small byte-level BPE tokenizer trained on an embedded passage, for presets and tests.

Presets have random weights and no tokenizer of their own; timing does not depend on which ids
are fed, but `generate` and `profile` still need text <-> ids. Special ids are fixed so presets can
point their configs at them: 0 <pad>, 1 </s>, 2 <unk>, 3 <s>.
"""
from __future__ import annotations

SPECIALS = ["<pad>", "</s>", "<unk>", "<s>"]
PAD, EOS, UNK, BOS = 0, 1, 2, 3

_CORPUS = """
Small language models run on phones, laptops and boards without a network. The time a user waits
for the first word, and the pace of the words after it, depend on the shape of the model, the
format it is stored in, the engine that runs it and the device underneath. An encoder reads the
whole prompt at once; a decoder writes one token at a time and keeps a cache of keys and values so
that it never reads the prompt twice. Memory bandwidth bounds how fast every weight can be read
for each new token. Quantized weights move fewer bytes. The quick brown fox jumps over the lazy
dog. What is the capital of France? Paris is the capital of France. Tell me a story about a robot
who learns to paint. Summarize the following text in one sentence. Translate English to German:
the house is wonderful. 0123456789 + - * / = ( ) [ ] { } < > , . ; : ! ? ' " @ # % & _ ~
"""


def train_tokenizer(vocab_size: int = 1024) -> str:
    """Return the JSON of a deterministic byte-level BPE tokenizer with edgeseq's special ids."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator([_CORPUS] * 4, trainer=trainer)
    return tok.to_str()
