"""Files whose converter dropped the merges that start with '#' (read as comments) still tokenize exactly."""
from __future__ import annotations

import pytest
import tiktoken

from crispmoss import _core
from crispmoss.testing import qwen_ranks, qwen_vocab_and_merges, special_tokens

QWEN_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                r"|\s*[\r\n]+|\s+(?!\S)|\s+")
FIRST_SPECIAL = 151643


@pytest.fixture(scope="module")
def vocab():
    v, merges = qwen_vocab_and_merges()
    tokens = [f"[PAD{i}]" for i in range(151936)]
    for piece, i in v.items():
        tokens[i] = piece
    for i, text in special_tokens("moss_audio").items():
        tokens[i] = text
    return tokens, list(merges)


def test_dropped_hash_merges_are_recovered(vocab):
    tokens, merges = vocab
    kept = [m for m in merges if not m.startswith("#")]
    assert len(kept) < len(merges), "the Qwen merges contain '#' merges"
    ranks = qwen_ranks()
    enc = tiktoken.Encoding(name="qwen", pat_str=QWEN_PATTERN, mergeable_ranks=ranks, special_tokens={})
    tok = _core.Tokenizer(tokens, kept, FIRST_SPECIAL)
    texts = ["## Heading\n#include <stdio.h>\n#!/bin/sh # comment ##### x", "C# and F# #hashtag #1 ###",
             "plain text without hashes, 1234567 日本語"]
    for t in texts:
        assert tok.tokenize(t, False) == enc.encode_ordinary(t), t
    # Tokens whose merge was dropped remain ordinary tokens: decoded, never skipped as specials.
    hash_ids = [i for i, p in enumerate(tokens[:FIRST_SPECIAL]) if p.startswith("#") and len(p) > 1]
    assert hash_ids and not any(tok.is_special(i) for i in hash_ids)
    full = _core.Tokenizer(tokens, merges, FIRST_SPECIAL)
    for t in texts:
        assert full.tokenize(t, False) == tok.tokenize(t, False)
