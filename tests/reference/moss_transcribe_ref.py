"""PyTorch reference of MOSS-Transcribe-preview-2B (spec: /work/shared/spec/moss-transcribe.md).

Audio tower = transformers' ``Qwen3OmniMoeAudioEncoder`` (its own chunked conv stem, per-chunk
positions and cu_seqlens-windowed attention), adapter = SwiGLU, LM = transformers ``Qwen3Model``
with the head tied to ``embed_tokens``. Loads the official HF layout (``model.audio_model.*``,
``model.audio_adapter.*``, ``model.language_model.*``), sharded or single-file, as float32.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from . import as_numpy, greedy_decode, load_hf_checkpoint, log_mel, qwen3_config, take_prefix
from . import prompts

EOS_ID = prompts.IM_END


class SwiGLUAdapter(nn.Module):
    """MossGatedMLP: down(silu(gate(x)) * up(x)), no biases, no norm."""

    def __init__(self, d_in: int, d_hidden: int, d_out: int):
        super().__init__()
        self.gate_proj = nn.Linear(d_in, d_hidden, bias=False)
        self.up_proj = nn.Linear(d_in, d_hidden, bias=False)
        self.down_proj = nn.Linear(d_hidden, d_out, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


def _audio_encoder_config(audio: dict, attn: str):
    from transformers.models.qwen3_omni_moe.configuration_qwen3_omni_moe import (
        Qwen3OmniMoeAudioEncoderConfig,
    )

    fields = ("num_mel_bins", "encoder_layers", "encoder_attention_heads", "encoder_ffn_dim",
              "d_model", "activation_function", "scale_embedding", "max_source_positions",
              "n_window", "output_dim", "n_window_infer", "conv_chunksize",
              "downsample_hidden_size", "initializer_range")
    kw = {k: audio[k] for k in fields if k in audio}
    if "encoder_layers" not in kw and "num_hidden_layers" in audio:
        kw["encoder_layers"] = audio["num_hidden_layers"]
    # inference: every dropout off
    kw.update(dropout=0.0, attention_dropout=0.0, activation_dropout=0.0)
    cfg = Qwen3OmniMoeAudioEncoderConfig(**kw)
    cfg._attn_implementation = attn
    return cfg


class TranscribeReference:
    """Float32 reference pipeline: ``run(audio) -> dict`` of per-stage numpy arrays."""

    def __init__(self, checkpoint_dir: str, attn: str = "sdpa", mel_bf16: bool = True,
                 device: str = "cpu"):
        from transformers.models.qwen3.modeling_qwen3 import Qwen3Model
        from transformers.models.qwen3_omni_moe.modeling_qwen3_omni_moe import (
            Qwen3OmniMoeAudioEncoder,
        )

        config, state = load_hf_checkpoint(checkpoint_dir)
        self.config = config
        self.mel_bf16 = mel_bf16
        self.device = torch.device(device)
        audio = dict(config.get("audio_config") or {})
        lang = dict(config.get("language_config") or {})
        if not lang:  # flat Qwen3 keys at the top level are the same values
            lang = {k: v for k, v in config.items() if k not in ("audio_config", "architectures")}
        lang.setdefault("tie_word_embeddings", True)

        self.enc_cfg = _audio_encoder_config(audio, attn)
        self.n_mels = int(self.enc_cfg.num_mel_bins)
        self.n_window = int(self.enc_cfg.n_window)
        self.encoder = Qwen3OmniMoeAudioEncoder(self.enc_cfg)
        self._load(self.encoder, take_prefix(state, "model.audio_model."), "model.audio_model.")

        d_lm = int(lang["hidden_size"])
        self.adapter = SwiGLUAdapter(int(self.enc_cfg.output_dim),
                                     int(config.get("adapter_hidden_size", 8192)), d_lm)
        self._load(self.adapter, take_prefix(state, "model.audio_adapter."), "model.audio_adapter.")

        self.lm_cfg = qwen3_config(lang, attn)
        self.lm = Qwen3Model(self.lm_cfg)
        self._load(self.lm, take_prefix(state, "model.language_model."), "model.language_model.")
        head = state.get("lm_head.weight")
        # the published checkpoint is tied and stores no lm_head
        self.head_weight = head if head is not None else self.lm.embed_tokens.weight
        used = [k for k in state if k.startswith(("model.audio_model.", "model.audio_adapter.",
                                                  "model.language_model.", "lm_head."))]
        leftover = sorted(set(state) - set(used))
        if leftover:
            raise ValueError(f"unexpected tensors in checkpoint: {leftover[:8]}")
        for m in (self.encoder, self.adapter, self.lm):
            m.to(self.device, torch.float32).eval()
        self.head_weight = self.head_weight.to(self.device, torch.float32)

    @staticmethod
    def _load(module: nn.Module, sd: Dict[str, torch.Tensor], prefix: str) -> None:
        missing, unexpected = module.load_state_dict(sd, strict=False)
        # non-persistent buffers (sinusoids, rotary inv_freq) are never in a checkpoint
        missing = [k for k in missing if k in dict(module.named_parameters())]
        if missing or unexpected:
            raise ValueError(f"{prefix}: missing {missing[:8]}, unexpected {unexpected[:8]}")

    # ---- stages ---------------------------------------------------------------------------
    def n_audio_tokens(self, n_samples: int) -> int:
        return prompts.transcribe_audio_tokens(prompts.mel_frames(n_samples), self.n_window)

    def prompt_ids(self, n_samples: int) -> List[int]:
        return prompts.transcribe_prompt_ids(n_samples, self.n_window)

    def mel(self, audio: np.ndarray) -> np.ndarray:
        return log_mel(audio, self.n_mels, self.mel_bf16)[0]

    @torch.no_grad()
    def encode(self, mel: np.ndarray, capture_layers: bool = True) -> Dict[str, np.ndarray]:
        """Encoder stages for a [n_mels, T] mel: stem output, every layer output, final output."""
        x = torch.as_tensor(mel, dtype=torch.float32, device=self.device)
        out: Dict[str, np.ndarray] = {}
        handles = []
        if capture_layers:
            def pre_hook(_m, args, kwargs):
                hs = args[0] if args else kwargs["hidden_states"]
                out["enc.stem"] = as_numpy(hs)

            handles.append(self.encoder.layers[0].register_forward_pre_hook(pre_hook, with_kwargs=True))
            for i, layer in enumerate(self.encoder.layers):
                def hook(_m, _inp, output, i=i):
                    hs = output[0] if isinstance(output, (tuple, list)) else output
                    out[f"enc.layer{i}"] = as_numpy(hs)

                handles.append(layer.register_forward_hook(hook))
        try:
            res = self.encoder(input_features=x,
                               feature_lens=torch.tensor([x.shape[1]], dtype=torch.long, device=self.device))
        finally:
            for h in handles:
                h.remove()
        out["enc.out"] = as_numpy(res.last_hidden_state)
        return out

    @torch.no_grad()
    def adapt(self, enc_out: np.ndarray) -> np.ndarray:
        return as_numpy(self.adapter(torch.as_tensor(enc_out, device=self.device)))

    def logits_of(self, hidden: torch.Tensor) -> torch.Tensor:
        return F.linear(hidden, self.head_weight)

    @torch.no_grad()
    def prompt_embeds(self, prompt_ids: Sequence[int], audio_rows: np.ndarray) -> torch.Tensor:
        ids = torch.tensor([list(prompt_ids)], dtype=torch.long, device=self.device)
        emb = self.lm.embed_tokens(ids)
        # the placeholder slots are the ids between <audio_start> and <audio_end>
        start = list(prompt_ids).index(prompts.AUDIO_BOS) + 1
        end = list(prompt_ids).index(prompts.AUDIO_EOS)
        rows = torch.as_tensor(audio_rows, device=self.device)
        if end - start != rows.shape[0]:
            raise ValueError(f"prompt has {end - start} audio slots but the encoder gave {rows.shape[0]}")
        emb[0, start:end] = rows
        return emb

    @torch.no_grad()
    def run(self, audio: np.ndarray, max_new_tokens: int = 32, use_cache: bool = True,
            capture_lm_layers: bool = True) -> Dict[str, object]:
        """All stages for one 16 kHz mono float32 clip.

        Keys: mel [n_mels,T] (fed to the encoder), mel.f32 (before bf16 rounding), enc.stem,
        enc.layer{i} [T_enc,d], enc.out [T_enc,output_dim], adapter [T_enc,d_lm], prompt_ids,
        llm.embeds [L,d_lm], llm.layer{i} [L,d_lm] (prefill), llm.out [L,d_lm] (after the final norm),
        logits [vocab] (last prompt position), tokens (greedy, stop 151645 included if reached),
        margins (top1-top2 per step).
        """
        audio = np.asarray(audio, dtype=np.float32).reshape(-1)
        mel, mel_f32 = log_mel(audio, self.n_mels, self.mel_bf16)
        out: Dict[str, object] = {"mel": mel, "mel.f32": mel_f32}
        out.update(self.encode(mel))
        out["adapter"] = self.adapt(out["enc.out"])
        ids = self.prompt_ids(audio.shape[0])
        out["prompt_ids"] = ids
        emb = self.prompt_embeds(ids, out["adapter"])
        out["llm.embeds"] = as_numpy(emb[0])
        if capture_lm_layers:
            out.update(self._lm_layers(emb))
        dec = greedy_decode(self.lm, self.logits_of, emb, max_new_tokens, (EOS_ID,), use_cache)
        out["logits"] = as_numpy(dec["logits"])
        out["tokens"] = dec["tokens"]
        out["margins"] = np.asarray(dec["margins"], dtype=np.float32)
        return out

    @torch.no_grad()
    def _lm_layers(self, emb: torch.Tensor) -> Dict[str, np.ndarray]:
        out: Dict[str, np.ndarray] = {}
        handles = []
        for i, layer in enumerate(self.lm.layers):
            def hook(_m, _inp, output, i=i):
                hs = output[0] if isinstance(output, (tuple, list)) else output
                out[f"llm.layer{i}"] = as_numpy(hs[0])

            handles.append(layer.register_forward_hook(hook))
        try:
            res = self.lm(inputs_embeds=emb, position_ids=torch.arange(emb.shape[1], device=self.device)[None],
                          use_cache=False)
        finally:
            for h in handles:
                h.remove()
        out["llm.out"] = as_numpy(res.last_hidden_state[0])
        return out

    def text(self, tokens: Sequence[int]) -> str:
        return prompts.decode([t for t in tokens if t != EOS_ID]).strip()
