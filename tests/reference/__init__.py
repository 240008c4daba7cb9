"""PyTorch reference implementations of MOSS-Transcribe and MOSS-Audio for the tests.

Independent of the crispmoss C++ code: built from transformers building blocks and the official
OpenMOSS semantics (see /work/shared/spec). Everything runs in float32.

    from reference.moss_transcribe_ref import TranscribeReference
    from reference.moss_audio_ref import AudioReference
    from reference import prompts

(``tests/`` is on sys.path under pytest's default import mode.)

This module holds the helpers both references share: checkpoint loading, the Whisper log-mel,
and the greedy decode loop over a transformers ``Qwen3Model``.
"""
from __future__ import annotations

import json
import os
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np
import torch

__all__ = ["load_hf_checkpoint", "log_mel", "greedy_decode", "qwen3_config", "as_numpy"]


def load_hf_checkpoint(path: str) -> Tuple[dict, Dict[str, torch.Tensor]]:
    """config.json plus all weights (single file or sharded with an index), upcast to float32."""
    from safetensors.torch import load_file

    with open(os.path.join(path, "config.json"), encoding="utf-8") as f:
        config = json.load(f)
    index = os.path.join(path, "model.safetensors.index.json")
    if os.path.exists(index):
        with open(index, encoding="utf-8") as f:
            files = sorted(set(json.load(f)["weight_map"].values()))
    elif os.path.exists(os.path.join(path, "model.safetensors")):
        files = ["model.safetensors"]
    else:
        files = sorted(n for n in os.listdir(path) if n.endswith(".safetensors"))
        if not files:
            raise FileNotFoundError(f"no safetensors files in {path}")
    state: Dict[str, torch.Tensor] = {}
    for name in files:
        for k, v in load_file(os.path.join(path, name)).items():
            state[k] = v.to(torch.float32) if v.is_floating_point() else v
    return config, state


def take_prefix(state: Dict[str, torch.Tensor], prefix: str) -> Dict[str, torch.Tensor]:
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def load_module(module: torch.nn.Module, sd: Dict[str, torch.Tensor], prefix: str) -> None:
    """Load ``sd`` into ``module``; every parameter must be given and nothing else (non-persistent buffers such
    as sinusoids and rotary inv_freq are never in a checkpoint)."""
    missing, unexpected = module.load_state_dict(sd, strict=False)
    missing = [k for k in missing if k in dict(module.named_parameters())]
    if missing or unexpected:
        raise ValueError(f"{prefix}: missing {missing[:8]}, unexpected {unexpected[:8]}")


def log_mel(audio: np.ndarray, n_mels: int = 128, bf16: bool = True) -> Tuple[np.ndarray, np.ndarray]:
    """Whisper log-mel exactly as both official processors call it (no 30 s pad, last frame dropped).

    Returns (mel fed to the encoder, float32 mel before the bf16 rounding), both [n_mels, n // 160].
    The processors cast the mel to bfloat16; ``bf16`` reproduces that rounding.
    """
    from transformers import WhisperFeatureExtractor

    wav = np.asarray(audio, dtype=np.float32).reshape(-1)
    fe = WhisperFeatureExtractor(feature_size=n_mels, sampling_rate=16000, hop_length=160, n_fft=400)
    feats = fe._np_extract_fbank_features(wav[None, :], device="cpu")[0]
    exact = torch.from_numpy(np.ascontiguousarray(feats))
    fed = exact.to(torch.bfloat16).to(torch.float32) if bf16 else exact.to(torch.float32)
    return fed.numpy(), exact.to(torch.float32).numpy()


def qwen3_config(lang: dict, attn: str):
    from transformers import Qwen3Config

    cfg = Qwen3Config(**{k: v for k, v in lang.items() if k not in ("dtype", "torch_dtype")})
    cfg._attn_implementation = attn
    return cfg


def as_numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().to("cpu", torch.float32).contiguous().numpy()


def _top2_margin(logits: torch.Tensor) -> Tuple[int, float]:
    vals, idx = torch.topk(logits.float(), 2)
    return int(idx[0]), float(vals[0] - vals[1])


@torch.no_grad()
def greedy_decode(
    lm,
    head: Callable[[torch.Tensor], torch.Tensor],
    embeds: torch.Tensor,
    max_new_tokens: int,
    stop_ids: Tuple[int, ...],
    use_cache: bool = True,
    prefill_hooks: Optional[Callable[[], List]] = None,
) -> Dict[str, object]:
    """Greedy decoding on a ``Qwen3Model`` from prompt embeddings [1, L, d].

    ``prefill_hooks`` registers forward hooks that must be active only while the prompt is
    processed (MOSS-Audio's DeepStack); it returns their handles. With ``use_cache=False`` every
    step recomputes the whole sequence (hooks stay active, touching only prompt positions), which
    must give the same tokens as the cached path.

    Returns prefill logits of the last prompt position, the generated ids (stop token included if
    hit) and the top1-top2 margin at every step.
    """
    from transformers import DynamicCache

    device = embeds.device
    L = embeds.shape[1]
    embed = lm.get_input_embeddings()
    tokens: List[int] = []
    margins: List[float] = []

    def run(x, pos, cache):
        handles = prefill_hooks() if (prefill_hooks is not None and pos[0, 0] == 0) else []
        try:
            out = lm(inputs_embeds=x, position_ids=pos, cache=cache, use_cache=cache is not None)
        finally:
            for h in handles:
                h.remove()
        return out.last_hidden_state

    cache = DynamicCache(config=lm.config) if use_cache else None
    pos = torch.arange(L, device=device)[None, :]
    hidden = run(embeds, pos, cache)
    logits = head(hidden[0, -1])
    prefill_logits = logits.clone()
    seq = embeds
    for step in range(max_new_tokens):
        tok, margin = _top2_margin(logits)
        tokens.append(tok)
        margins.append(margin)
        if tok in stop_ids or step + 1 == max_new_tokens:
            break
        e = embed(torch.tensor([[tok]], device=device))
        if use_cache:
            # explicit positions: the new token sits right after everything cached (pitfall 12)
            p = torch.tensor([[L + step]], device=device)
            hidden = run(e, p, cache)
        else:
            seq = torch.cat([seq, e], dim=1)
            hidden = run(seq, torch.arange(seq.shape[1], device=device)[None, :], None)
        logits = head(hidden[0, -1])
    return {"logits": prefill_logits, "tokens": tokens, "margins": margins}
