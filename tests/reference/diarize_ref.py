"""PyTorch reference of MOSS-Transcribe-Diarize (spec: shared/spec/moss-transcribe-diarize.md).

Written from the official code, OpenMOSS/MOSS-Transcribe-Diarize @ 0e3d1403fd8f1f1c674e883ece96b9f630794ebe
(nothing copied; file names cited per stage):

- front end (processing_moss_transcribe_diarize.py ``_chunk_audio`` / ``_audios_to_input_features``): the clip is
  cut into 30 s windows (``feature_extractor.n_samples`` = 480 000), each zero-padded to 30 s and run through
  transformers' ``WhisperFeatureExtractor`` (80 bins) on its own, ``padding="max_length"``; window k yields
  ``L_k = (n_k - 1) // 1280 + 1`` audio tokens (hop 160 x conv stride 2 x merge 4).
- encoder (modeling_moss_transcribe_diarize.py ``get_audio_features``): transformers' ``WhisperEncoder`` over
  every full 3000-frame window; keep the first ``4 * L_k`` frames of window k; concatenate the windows; ``time_merge``
  reshapes [T, d] -> [T/4, 4d]; ``VQAdaptor`` = Linear(4d -> h) + SiLU + Linear(h -> h) + LayerNorm(eps =
  ``text_config.rms_norm_eps``).
- prompt (inference_utils.py ``DEFAULT_PROMPT`` / ``build_transcription_messages``; the chat template's default
  system turn; processing_...py ``expand_audio_token`` / ``_audio_span_ids``): the rendered text is split at the one
  ``<|audio_pad|>``, both halves tokenized on their own, the span in between built from ids: placeholders 151671
  and a time marker (digit tokens of the elapsed second) after every ``int(12.5 * 5) = 62`` placeholders.
- decoder: transformers' ``Qwen3Model``, audio rows scattered over the placeholders in order (``masked_scatter``),
  tied head, greedy until <|im_end|> (generation_config eos).

Everything runs in float32. Loads the official HF layout (``model.whisper_encoder.*``, ``model.vq_adaptor.*``,
``model.language_model.*``), any shard naming, via the index.
"""
from __future__ import annotations

import json
import os
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
import torch.nn as nn

from . import as_numpy, greedy_decode, load_hf_checkpoint, load_module, qwen3_config, take_prefix
from . import prompts

AUDIO_PAD = 151671
AUDIO_START = prompts.AUDIO_BOS  # 151669, "<|audio_start|>" in this model's tokenizer
AUDIO_END = prompts.AUDIO_EOS  # 151670, "<|audio_end|>"
STOP_IDS = (prompts.IM_END,)  # generation_config.json eos
SAMPLES_PER_TOKEN = 1280
WINDOW = 480000

SYSTEM_PROMPT = "You are a helpful assistant."
DEFAULT_PROMPT = ("请将音频转写为文本，每一段需以起始时间戳和说话人编号（[S01]、[S02]、[S03]…）开头，"
                  "正文为对应的语音内容，并在段末标注结束时间戳，以清晰标明该段语音范围。")
HOTWORDS_PREFIX = "热词提示："  # README "Custom Prompt and Hotwords": DEFAULT_PROMPT + "热词提示：a, b, c"


# ---- prompt ---------------------------------------------------------------------------------------------
def window_token_counts(n_samples: int) -> List[int]:
    """Audio tokens per 30 s window (processor ``_chunk_audio`` + ``_compute_audio_token_length``)."""
    if n_samples < 1:
        raise ValueError("audio must hold at least one sample")
    return [(min(WINDOW, n_samples - s) - 1) // SAMPLES_PER_TOKEN + 1 for s in range(0, n_samples, WINDOW)]


def audio_span_ids(n_audio: int, every_s: int = 5, tokens_per_s: float = 12.5, enable: bool = True) -> List[int]:
    """Processor ``_audio_span_ids``: markers count whole elapsed seconds of the total token count."""
    if not enable or n_audio <= 0 or every_s <= 0:
        return [AUDIO_PAD] * max(n_audio, 0)
    per_marker = int(tokens_per_s * every_s)  # int(62.5) = 62
    if per_marker <= 0:
        return [AUDIO_PAD] * n_audio
    ids: List[int] = []
    done = 0
    for sec in range(every_s, int(n_audio / float(tokens_per_s)) + 1, every_s):
        pos = (sec // every_s) * per_marker
        ids += [AUDIO_PAD] * (pos - done)
        done = max(done, pos)
        ids += [prompts.DIGIT0 + int(c) for c in str(sec)]
    return ids + [AUDIO_PAD] * (n_audio - done)


def instruction_text(prompt: Optional[str] = None, hotwords: Sequence[str] = ()) -> str:
    text = (prompt or "").strip() or DEFAULT_PROMPT  # build_transcription_messages: blank -> default
    if hotwords:
        text += HOTWORDS_PREFIX + ", ".join(hotwords)
    return text


def prompt_ids(n_samples: int, prompt: Optional[str] = None, hotwords: Sequence[str] = (),
               every_s: int = 5) -> List[int]:
    """Input ids of the official pipeline for a clip of ``n_samples`` 16 kHz samples."""
    before = (f"<|im_start|>system\n{SYSTEM_PROMPT}<|im_end|>\n<|im_start|>user\n<|audio_start|>")
    after = f"<|audio_end|>\n{instruction_text(prompt, hotwords)}<|im_end|>\n<|im_start|>assistant\n"
    n_audio = sum(window_token_counts(n_samples))
    return prompts.encode(before) + audio_span_ids(n_audio, every_s) + prompts.encode(after)


# ---- model ----------------------------------------------------------------------------------------------
class VQAdaptor(nn.Module):
    def __init__(self, d_in: int, d: int, eps: float):
        super().__init__()
        self.layers = nn.Sequential(nn.Linear(d_in, d), nn.SiLU(), nn.Linear(d, d), nn.LayerNorm(d, eps=eps))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class DiarizeReference:
    """Float32 reference pipeline: ``run(audio) -> dict`` of per-stage arrays."""

    def __init__(self, checkpoint_dir: str, attn: str = "sdpa", device: str = "cpu"):
        from transformers import WhisperConfig, WhisperFeatureExtractor
        from transformers.models.qwen3.modeling_qwen3 import Qwen3Model
        from transformers.models.whisper.modeling_whisper import WhisperEncoder

        config, state = load_hf_checkpoint(checkpoint_dir)
        self.config = config
        self.device = torch.device(device)
        audio = {k: v for k, v in config["audio_config"].items() if k not in ("dtype", "torch_dtype")}
        text = dict(config["text_config"])
        text["tie_word_embeddings"] = bool(config.get("tie_word_embeddings", True))
        self.merge = int(config.get("audio_merge_size", 4))
        self.every_s = 5
        proc_path = os.path.join(checkpoint_dir, "processor_config.json")
        if os.path.exists(proc_path):
            with open(proc_path, encoding="utf-8") as f:
                self.every_s = int(json.load(f).get("time_marker_every_seconds", 2))

        wcfg = WhisperConfig(**audio)
        wcfg._attn_implementation = attn
        self.encoder = WhisperEncoder(wcfg)
        load_module(self.encoder, take_prefix(state, "model.whisper_encoder."), "model.whisper_encoder.")
        self.lm_cfg = qwen3_config(text, attn)
        self.lm = Qwen3Model(self.lm_cfg)
        load_module(self.lm, take_prefix(state, "model.language_model."), "model.language_model.")
        d_in = int(config.get("adaptor_input_dim") or wcfg.d_model * self.merge)
        self.adaptor = VQAdaptor(d_in, int(text["hidden_size"]), float(text.get("rms_norm_eps", 1e-6)))
        load_module(self.adaptor, take_prefix(state, "model.vq_adaptor."), "model.vq_adaptor.")
        leftover = sorted(k for k in state if not k.startswith(
            ("model.whisper_encoder.", "model.language_model.", "model.vq_adaptor.")))
        if leftover:
            raise ValueError(f"unexpected tensors in checkpoint: {leftover[:8]}")
        self.fe = WhisperFeatureExtractor(feature_size=int(wcfg.num_mel_bins), sampling_rate=16000, hop_length=160,
                                          chunk_length=30, n_fft=400)
        for m in (self.encoder, self.adaptor, self.lm):
            m.to(self.device, torch.float32).eval()

    # ---- stages ---------------------------------------------------------------------------------------
    def prompt_ids(self, n_samples: int, prompt: Optional[str] = None, hotwords: Sequence[str] = ()) -> List[int]:
        return prompt_ids(n_samples, prompt, hotwords, self.every_s)

    def mel(self, audio: np.ndarray) -> np.ndarray:
        """[windows, 80, 3000]: each 30 s window zero-padded and featurized on its own, as the processor does."""
        audio = np.asarray(audio, dtype=np.float32).reshape(-1)
        chunks = []
        for s in range(0, audio.shape[0], WINDOW):
            c = audio[s:s + WINDOW]
            chunks.append(np.pad(c, (0, WINDOW - c.shape[0])) if c.shape[0] < WINDOW else c)
        feats = self.fe(chunks, sampling_rate=16000, padding="max_length", return_tensors="pt")["input_features"]
        return as_numpy(feats)

    @torch.no_grad()
    def encode(self, mel: np.ndarray, n_samples: int) -> Dict[str, np.ndarray]:
        x = torch.as_tensor(mel, dtype=torch.float32, device=self.device)
        hidden = self.encoder(x, return_dict=True).last_hidden_state  # [W, 1500, d]
        counts = window_token_counts(n_samples)
        kept = torch.cat([hidden[k, :self.merge * n] for k, n in enumerate(counts)], dim=0)
        merged = kept.reshape(kept.shape[0] // self.merge, kept.shape[1] * self.merge)
        return {"enc.windows": as_numpy(hidden), "enc.kept": as_numpy(kept), "merged": as_numpy(merged),
                "adaptor": as_numpy(self.adaptor(merged))}

    def logits_of(self, hidden: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.linear(hidden, self.lm.embed_tokens.weight)

    @torch.no_grad()
    def prompt_embeds(self, ids: Sequence[int], audio_rows: np.ndarray) -> torch.Tensor:
        t = torch.tensor([list(ids)], dtype=torch.long, device=self.device)
        emb = self.lm.embed_tokens(t)
        mask = (t == AUDIO_PAD)
        rows = torch.as_tensor(audio_rows, device=self.device)
        if int(mask.sum()) != rows.shape[0]:
            raise ValueError(f"{int(mask.sum())} placeholders but {rows.shape[0]} audio rows")
        emb[mask] = rows  # in order, as masked_scatter does
        return emb

    @torch.no_grad()
    def run(self, audio: np.ndarray, max_new_tokens: int = 24, prompt: Optional[str] = None,
            hotwords: Sequence[str] = (), use_cache: bool = True) -> Dict[str, object]:
        """Keys: mel [W,80,3000], enc.windows [W,1500,d], enc.kept [4N,d], merged [N,4d], adaptor [N,h],
        prompt_ids, llm.embeds [L,h], logits [vocab] (last prompt position), tokens (greedy, stop included if
        reached), margins (top1-top2 per step), text (decoded, special tokens skipped, stripped)."""
        audio = np.asarray(audio, dtype=np.float32).reshape(-1)
        out: Dict[str, object] = {"mel": self.mel(audio)}
        out.update(self.encode(out["mel"], audio.shape[0]))
        ids = self.prompt_ids(audio.shape[0], prompt, hotwords)
        out["prompt_ids"] = ids
        emb = self.prompt_embeds(ids, out["adaptor"])
        out["llm.embeds"] = as_numpy(emb[0])
        dec = greedy_decode(self.lm, self.logits_of, emb, max_new_tokens, STOP_IDS, use_cache)
        out["logits"] = as_numpy(dec["logits"])
        out["tokens"] = dec["tokens"]
        out["margins"] = np.asarray(dec["margins"], dtype=np.float32)
        out["text"] = prompts.decode([t for t in dec["tokens"] if t not in STOP_IDS]).strip()
        return out
