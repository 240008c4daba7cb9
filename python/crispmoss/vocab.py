"""Byte-level BPE vocabulary helpers: tiktoken rank files → Hugging Face ``vocab.json`` / ``merges.txt`` form.

Qwen ships its BPE as a tiktoken rank table (token bytes → rank, where the rank is also the token id). Hugging
Face tokenizers and GGUF files instead store GPT-2 "byte-to-unicode" strings plus an ordered merge list. The merge
list is not stored in the rank table, but it is implied by it: a token of rank r was created by merging two
tokens of lower rank, and running BPE on the token's own bytes with only the merges of rank < r leaves exactly
those two parts.
"""
from __future__ import annotations

import base64
import functools
import os
from typing import Dict, Iterable, List, Mapping, Optional, Tuple

__all__ = [
    "QWEN_SPECIAL_TOKENS",
    "bytes_to_unicode",
    "unicode_to_bytes",
    "token_to_str",
    "load_tiktoken_ranks",
    "recover_merges",
    "gpt2_vocab",
]

# Special tokens of the Qwen3 family as used by both MOSS checkpoints (id → text). MOSS-Audio renames 151654.
QWEN_SPECIAL_TOKENS: Dict[int, str] = {
    151643: "<|endoftext|>",
    151644: "<|im_start|>",
    151645: "<|im_end|>",
    151646: "<|object_ref_start|>",
    151647: "<|object_ref_end|>",
    151648: "<|box_start|>",
    151649: "<|box_end|>",
    151650: "<|quad_start|>",
    151651: "<|quad_end|>",
    151652: "<|vision_start|>",
    151653: "<|vision_end|>",
    151654: "<|vision_pad|>",
    151655: "<|image_pad|>",
    151656: "<|video_pad|>",
    151657: "<tool_call>",
    151658: "</tool_call>",
    151659: "<|fim_prefix|>",
    151660: "<|fim_middle|>",
    151661: "<|fim_suffix|>",
    151662: "<|fim_pad|>",
    151663: "<|repo_name|>",
    151664: "<|file_sep|>",
    151665: "<tool_response>",
    151666: "</tool_response>",
    151667: "<think>",
    151668: "</think>",
    151669: "<|audio_bos|>",
    151670: "<|audio_eos|>",
}


@functools.lru_cache(maxsize=None)
def bytes_to_unicode() -> Dict[int, str]:
    """GPT-2's reversible byte → printable character map.

    Printable Latin-1 bytes map to themselves; the other 68 bytes are moved to code points 256, 257, … in byte
    order, so that no token string contains whitespace or control characters.
    """
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAC + 1)) + list(range(0xAE, 0xFF + 1))
    kept = set(keep)
    table: Dict[int, str] = {b: chr(b) for b in keep}
    extra = 0
    for b in range(256):
        if b not in kept:
            table[b] = chr(256 + extra)
            extra += 1
    return table


@functools.lru_cache(maxsize=None)
def unicode_to_bytes() -> Dict[str, int]:
    return {c: b for b, c in bytes_to_unicode().items()}


def token_to_str(token: bytes) -> str:
    """Token bytes → GPT-2 byte-unicode string (the form used in vocab.json, merges.txt and GGUF)."""
    table = bytes_to_unicode()
    return "".join(table[b] for b in token)


def load_tiktoken_ranks(path: "os.PathLike[str] | str") -> Dict[bytes, int]:
    """Read a tiktoken rank file: one ``base64(token) rank`` pair per line."""
    ranks: Dict[bytes, int] = {}
    with open(path, "rb") as f:
        for lineno, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            parts = line.split()
            if len(parts) != 2:
                raise ValueError(f"{path}:{lineno}: expected 'base64 rank', got {line[:60]!r}")
            ranks[base64.b64decode(parts[0])] = int(parts[1])
    return ranks


def _bpe_parts(token: bytes, ranks: Mapping[bytes, int], max_rank: int) -> List[bytes]:
    """Byte-pair-merge ``token`` using only merges whose result has rank < max_rank (lowest rank first)."""
    parts = [token[i:i + 1] for i in range(len(token))]
    while len(parts) > 1:
        best_rank = max_rank
        best_i = -1
        for i in range(len(parts) - 1):
            r = ranks.get(parts[i] + parts[i + 1])
            if r is not None and r < best_rank:
                best_rank = r
                best_i = i
        if best_i < 0:
            break
        parts[best_i:best_i + 2] = [parts[best_i] + parts[best_i + 1]]
    return parts


def recover_merges(ranks: Mapping[bytes, int]) -> List[Tuple[bytes, bytes]]:
    """The ordered merge list implied by a BPE rank table (merge i creates the i-th multi-byte token by rank)."""
    merges: List[Tuple[bytes, bytes]] = []
    for token, rank in sorted(ranks.items(), key=lambda kv: kv[1]):
        if len(token) < 2:
            continue
        parts = _bpe_parts(token, ranks, rank)
        if len(parts) != 2:
            raise ValueError(
                f"rank table is not a BPE merge table: token {token!r} (rank {rank}) reduces to {len(parts)} parts"
            )
        merges.append((parts[0], parts[1]))
    return merges


def gpt2_vocab(
    ranks: Mapping[bytes, int], merges: Optional[Iterable[Tuple[bytes, bytes]]] = None
) -> Tuple[Dict[str, int], List[str]]:
    """(vocab.json mapping, merges.txt lines without header) for a rank table."""
    vocab = {token_to_str(tok): rank for tok, rank in sorted(ranks.items(), key=lambda kv: kv[1])}
    if merges is None:
        merges = recover_merges(ranks)
    lines = [f"{token_to_str(a)} {token_to_str(b)}" for a, b in merges]
    return vocab, lines
