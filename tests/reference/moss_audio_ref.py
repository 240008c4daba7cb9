"""PyTorch reference of MOSS-Audio-4B-Instruct (spec: /work/shared/spec/moss-audio.md).

Official OpenMOSS/MOSS-Audio semantics: one unchunked pass of a conv stem + transformers
``WhisperEncoderLayer`` stack with global attention, DeepStack taps at the configured encoder
layers, GatedMLP adapter and mergers, transformers ``Qwen3Model`` with an untied ``lm_head``, and
forward hooks that add merger k to the OUTPUT of LM layer k at the audio positions during prefill.
"""
from __future__ import annotations

import math
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from . import as_numpy, greedy_decode, load_hf_checkpoint, log_mel, qwen3_config, take_prefix
from . import prompts
from .moss_transcribe_ref import SwiGLUAdapter as GatedMLP

STOP_IDS = (prompts.IM_END, prompts.ENDOFTEXT)


def sinusoids(length: int, channels: int) -> torch.Tensor:
    """[length, channels]: all sines then all cosines, timescale step ln(10000)/(channels/2 - 1)."""
    half = channels // 2
    inv = torch.exp(-(math.log(10000.0) / (half - 1)) * torch.arange(half, dtype=torch.float32))
    t = torch.arange(length, dtype=torch.float32)[:, None] * inv[None, :]
    return torch.cat([torch.sin(t), torch.cos(t)], dim=1)


class AudioEncoder(nn.Module):
    """Conv stem (3x Conv2d s2 + GELU) -> stem_proj -> + sinusoids -> Whisper layers -> LayerNorm."""

    def __init__(self, cfg: dict, attn: str, has_out_proj: bool):
        super().__init__()
        from transformers import WhisperConfig
        from transformers.models.whisper.modeling_whisper import WhisperEncoderLayer

        d = int(cfg.get("d_model", 1280))
        ch = int(cfg.get("downsample_hidden_size", 480))
        n_mels = int(cfg.get("num_mel_bins", 128))
        self.n_mels = n_mels
        self.conv1 = nn.Conv2d(1, ch, 3, 2, 1)
        self.conv2 = nn.Conv2d(ch, ch, 3, 2, 1)
        self.conv3 = nn.Conv2d(ch, ch, 3, 2, 1)
        f_out = n_mels
        for _ in range(3):
            f_out = (f_out - 1) // 2 + 1
        self.stem_proj = nn.Linear(ch * f_out, d)
        wcfg = WhisperConfig(d_model=d, encoder_attention_heads=int(cfg.get("encoder_attention_heads", 20)),
                             encoder_ffn_dim=int(cfg.get("encoder_ffn_dim", 5120)),
                             activation_function=cfg.get("activation_function", "gelu"),
                             dropout=0.0, attention_dropout=0.0, activation_dropout=0.0)
        wcfg._attn_implementation = attn
        self.layers = nn.ModuleList([WhisperEncoderLayer(wcfg) for _ in range(int(cfg.get("encoder_layers", 32)))])
        self.layer_norm = nn.LayerNorm(d, eps=float(cfg.get("layer_norm_eps", 1e-5)))
        out_dim = int(cfg.get("output_dim", d))
        self.out_proj = nn.Linear(d, out_dim, bias=False) if (has_out_proj or out_dim != d) else None
        self.taps = [int(i) for i in (cfg.get("deepstack_encoder_layer_indexes") or [])]

    def forward(self, mel: torch.Tensor, record: Optional[Dict[str, torch.Tensor]] = None):
        """mel [n_mels, T] -> (final [T_enc, out_dim], taps list of [T_enc, d])."""
        x = mel[None, None]  # [1, 1, F, T]
        x = F.gelu(self.conv1(x))
        x = F.gelu(self.conv2(x))
        x = F.gelu(self.conv3(x))
        b, c, f, t = x.shape
        x = x.permute(0, 3, 1, 2).reshape(b, t, c * f)  # feature index = c*F + f
        x = self.stem_proj(x)
        x = x + sinusoids(t, x.shape[-1]).to(x)
        if record is not None:
            record["enc.stem"] = x[0]
        # single clip: the official key-padding mask masks nothing
        mask = torch.zeros(1, 1, t, t, dtype=x.dtype, device=x.device)
        taps: List[torch.Tensor] = []
        for i, layer in enumerate(self.layers):
            x = layer(x, mask)
            x = x[0] if isinstance(x, (tuple, list)) else x
            if record is not None:
                record[f"enc.layer{i}"] = x[0]
            if i in self.taps:
                taps.append(x[0])
        x = self.layer_norm(x)
        if self.out_proj is not None:
            x = self.out_proj(x)
        return x[0], taps


class AudioReference:
    """Float32 reference pipeline: ``run(audio, instruction) -> dict`` of per-stage numpy arrays."""

    def __init__(self, checkpoint_dir: str, attn: str = "sdpa", mel_bf16: bool = True,
                 device: str = "cpu"):
        from transformers.models.qwen3.modeling_qwen3 import Qwen3Model

        config, state = load_hf_checkpoint(checkpoint_dir)
        self.config = config
        self.mel_bf16 = mel_bf16
        self.device = torch.device(device)
        acfg = dict(config.get("audio_config") or {})
        lang = dict(config.get("language_config") or {})
        lang["tie_word_embeddings"] = False  # MossAudioConfig forces an untied head

        self.encoder = AudioEncoder(acfg, attn, "audio_encoder.out_proj.weight" in state)
        self._load(self.encoder, take_prefix(state, "audio_encoder."), "audio_encoder.")
        d_out = int(acfg.get("output_dim", acfg.get("d_model", 1280)))
        d_lm = int(lang["hidden_size"])
        hid = int(config.get("adapter_hidden_size", 8192))
        self.adapter = GatedMLP(d_out, hid, d_lm)
        self._load(self.adapter, take_prefix(state, "audio_adapter."), "audio_adapter.")
        n_merge = len(self.encoder.taps)
        if config.get("deepstack_num_inject_layers") is not None:
            n_merge = min(n_merge, int(config["deepstack_num_inject_layers"]))
        self.mergers = nn.ModuleList([GatedMLP(d_out, hid, d_lm) for _ in range(n_merge)])
        self._load(self.mergers, take_prefix(state, "deepstack_audio_merger_list."),
                   "deepstack_audio_merger_list.")
        self.lm_cfg = qwen3_config(lang, attn)
        self.lm = Qwen3Model(self.lm_cfg)
        self._load(self.lm, take_prefix(state, "language_model."), "language_model.")
        self.lm_head = nn.Linear(d_lm, int(self.lm_cfg.vocab_size), bias=False)
        self._load(self.lm_head, take_prefix(state, "lm_head."), "lm_head.")
        known = ("audio_encoder.", "audio_adapter.", "deepstack_audio_merger_list.", "language_model.", "lm_head.")
        leftover = sorted(k for k in state if not k.startswith(known))
        if leftover:
            raise ValueError(f"unexpected tensors in checkpoint: {leftover[:8]}")
        for m in (self.encoder, self.adapter, self.mergers, self.lm, self.lm_head):
            m.to(self.device, torch.float32).eval()

    @staticmethod
    def _load(module: nn.Module, sd: Dict[str, torch.Tensor], prefix: str) -> None:
        missing, unexpected = module.load_state_dict(sd, strict=False)
        missing = [k for k in missing if k in dict(module.named_parameters())]
        if missing or unexpected:
            raise ValueError(f"{prefix}: missing {missing[:8]}, unexpected {unexpected[:8]}")

    @property
    def n_inject(self) -> int:
        return min(len(self.mergers), len(self.lm.layers))

    # ---- stages ---------------------------------------------------------------------------
    def n_audio_tokens(self, n_samples: int) -> int:
        return prompts.audio_tokens(n_samples)

    def prompt_ids(self, n_samples: int, instruction: Optional[str] = prompts.TRANSCRIBE_INSTRUCTION,
                   enable_time_marker: bool = True) -> List[int]:
        return prompts.audio_prompt_ids(n_samples, instruction, enable_time_marker)

    @torch.no_grad()
    def encode(self, mel: np.ndarray) -> Dict[str, np.ndarray]:
        """enc.stem, enc.layer{i}, enc.tap.{k}, enc.out, adapter, deepstack.{k} for a [n_mels, T] mel."""
        rec: Dict[str, torch.Tensor] = {}
        final, taps = self.encoder(torch.as_tensor(mel, dtype=torch.float32, device=self.device), rec)
        out = {k: as_numpy(v) for k, v in rec.items()}
        for k, tp in enumerate(taps):
            out[f"enc.tap.{k}"] = as_numpy(tp)
        out["enc.out"] = as_numpy(final)
        out["adapter"] = as_numpy(self.adapter(final))
        for k, merger in enumerate(self.mergers):
            out[f"deepstack.{k}"] = as_numpy(merger(taps[k]))
        return out

    def _prefill_inputs(self, prompt_ids: Sequence[int], stages: Dict[str, np.ndarray]):
        ids = torch.tensor([list(prompt_ids)], dtype=torch.long, device=self.device)
        audio_pos = (ids[0] == prompts.AUDIO_PAD).nonzero().squeeze(-1)
        rows = torch.as_tensor(stages["adapter"], device=self.device)
        if audio_pos.numel() != rows.shape[0]:
            raise ValueError(f"Audio token count mismatch: {audio_pos.numel()} <|AUDIO|> ids, "
                             f"{rows.shape[0]} encoder rows")
        emb = self.lm.embed_tokens(ids)
        emb[0, audio_pos] = rows  # masked scatter in order
        ds = [torch.as_tensor(stages[f"deepstack.{k}"], device=self.device) for k in range(self.n_inject)]
        return emb, audio_pos, ds

    def _deepstack_hooks(self, audio_pos: torch.Tensor, ds: List[torch.Tensor]):
        """Hook factory: adds D_k to LM layer k's output at the audio positions."""

        def register():
            handles = []
            for k in range(len(ds)):
                def hook(_m, _inp, output, k=k):
                    hs = output[0] if isinstance(output, (tuple, list)) else output
                    hs = hs.clone()
                    hs[0, audio_pos] = hs[0, audio_pos] + ds[k]
                    if isinstance(output, (tuple, list)):
                        return (hs,) + tuple(output[1:])
                    return hs

                handles.append(self.lm.layers[k].register_forward_hook(hook))
            return handles

        return register

    @torch.no_grad()
    def run(self, audio: np.ndarray, instruction: Optional[str] = prompts.TRANSCRIBE_INSTRUCTION,
            max_new_tokens: int = 32, enable_time_marker: bool = True, use_cache: bool = True,
            prompt_ids: Optional[Sequence[int]] = None, deepstack: bool = True) -> Dict[str, object]:
        """All stages for one 16 kHz mono float32 clip.

        Keys: mel, mel.f32, enc.stem, enc.layer{i}, enc.tap.{k} [T_enc,d], enc.out [T_enc,d]
        (after the final norm), adapter, deepstack.{k} [T_enc,d_lm], prompt_ids, llm.embeds,
        llm.layer{i} [L,d_lm] (prefill, after the DeepStack addition), llm.out (after final norm),
        logits [vocab] (last prompt position), tokens, margins. ``deepstack=False`` skips the
        injection (for tests that must see its effect).
        """
        audio = np.asarray(audio, dtype=np.float32).reshape(-1)
        mel, mel_f32 = log_mel(audio, self.encoder.n_mels, self.mel_bf16)
        out: Dict[str, object] = {"mel": mel, "mel.f32": mel_f32}
        out.update(self.encode(mel))
        ids = list(prompt_ids) if prompt_ids is not None else self.prompt_ids(
            audio.shape[0], instruction, enable_time_marker)
        out["prompt_ids"] = ids
        emb, audio_pos, ds = self._prefill_inputs(ids, out)
        out["llm.embeds"] = as_numpy(emb[0])
        hooks = self._deepstack_hooks(audio_pos, ds if deepstack else [])
        out.update(self._lm_layers(emb, hooks))
        dec = greedy_decode(self.lm, self.lm_head, emb, max_new_tokens, STOP_IDS, use_cache, hooks)
        out["logits"] = as_numpy(dec["logits"])
        out["tokens"] = dec["tokens"]
        out["margins"] = np.asarray(dec["margins"], dtype=np.float32)
        return out

    @torch.no_grad()
    def _lm_layers(self, emb: torch.Tensor, hooks) -> Dict[str, np.ndarray]:
        out: Dict[str, np.ndarray] = {}
        handles = hooks()  # registered first, so the recording hooks see the injected state
        for i, layer in enumerate(self.lm.layers):
            def rec(_m, _inp, output, i=i):
                hs = output[0] if isinstance(output, (tuple, list)) else output
                out[f"llm.layer{i}"] = as_numpy(hs[0])

            handles.append(layer.register_forward_hook(rec))
        try:
            res = self.lm(inputs_embeds=emb, position_ids=torch.arange(emb.shape[1], device=self.device)[None],
                          use_cache=False)
        finally:
            for h in handles:
                h.remove()
        out["llm.out"] = as_numpy(res.last_hidden_state[0])
        return out

    def text(self, tokens: Sequence[int]) -> str:
        return prompts.decode([t for t in tokens if t not in STOP_IDS]).strip()
