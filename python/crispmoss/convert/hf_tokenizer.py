"""Read a Hugging Face byte-level BPE tokenizer (tokenizer.json, or vocab.json + merges.txt + added tokens)
into the GGUF token and merge arrays."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List, Tuple

from ..errors import ModelError

__all__ = ["read_tokenizer"]


def _load_json(path: Path):
    try:
        with open(path, "r", encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        raise ModelError(f"cannot read {path}: {e}") from e


def _merge_str(m) -> str:
    # tokenizers >= 0.20 writes merges as [left, right] pairs, older versions as "left right"
    if isinstance(m, str):
        return m
    if isinstance(m, (list, tuple)) and len(m) == 2 and all(isinstance(x, str) for x in m):
        return f"{m[0]} {m[1]}"
    raise ModelError(f"unrecognised merge entry {m!r} in tokenizer.json")


def _read_merges_txt(path: Path) -> List[str]:
    merges: List[str] = []
    try:
        with open(path, "r", encoding="utf-8") as f:
            for i, line in enumerate(f):
                line = line.rstrip("\r\n")
                # Only the version header is a comment: real merges such as "# #" or "# include" start with '#'.
                if not line or (i == 0 and line.startswith("#version")):
                    continue
                if line.count(" ") != 1:
                    raise ModelError(f"{path}:{i + 1}: expected 'left right', got {line[:80]!r}")
                merges.append(line)
    except OSError as e:
        raise ModelError(f"cannot read {path}: {e}") from e
    except UnicodeDecodeError as e:
        raise ModelError(f"{path} is not UTF-8: {e}") from e
    return merges


def read_tokenizer(hf_dir: Path, vocab_size: int) -> Tuple[List[str], List[str]]:
    """(tokens, merges): tokens[id] for every id < vocab_size (gaps "[PAD<id>]"), merges in rank order."""
    vocab: Dict[str, int] = {}
    merges: List[str] = []
    added: Dict[int, str] = {}

    tok_json = hf_dir / "tokenizer.json"
    if tok_json.is_file():
        tj = _load_json(tok_json)
        model = tj.get("model") or {}
        if model.get("type", "BPE") != "BPE":
            raise ModelError(f"{tok_json}: tokenizer model {model.get('type')!r} is not BPE")
        vocab = dict(model.get("vocab") or {})
        merges = [_merge_str(m) for m in (model.get("merges") or [])]
        for t in tj.get("added_tokens") or []:
            added[int(t["id"])] = t["content"]

    vocab_json = hf_dir / "vocab.json"
    if vocab_json.is_file():
        vocab = dict(_load_json(vocab_json))
    merges_txt = hf_dir / "merges.txt"
    if merges_txt.is_file():
        merges = _read_merges_txt(merges_txt)

    added_json = hf_dir / "added_tokens.json"
    if added_json.is_file():
        for text, i in _load_json(added_json).items():
            added[int(i)] = text
    cfg_json = hf_dir / "tokenizer_config.json"
    if cfg_json.is_file():
        for i, t in (_load_json(cfg_json).get("added_tokens_decoder") or {}).items():
            added[int(i)] = t["content"] if isinstance(t, dict) else str(t)

    if not vocab:
        raise ModelError(f"{hf_dir}: no tokenizer vocabulary (expected tokenizer.json or vocab.json)")
    if not merges:
        raise ModelError(f"{hf_dir}: no BPE merges (expected merges.txt or tokenizer.json)")

    tokens: List[str] = [""] * vocab_size
    filled = [False] * vocab_size
    for text, i in list(vocab.items()) + [(t, i) for i, t in added.items()]:
        i = int(i)
        if not 0 <= i < vocab_size:
            raise ModelError(f"{hf_dir}: token {text!r} has id {i}, outside the model's vocab_size {vocab_size}")
        tokens[i] = text
        filled[i] = True
    for i in range(vocab_size):
        if not filled[i]:
            tokens[i] = f"[PAD{i}]"
    return tokens, merges
