"""PyTorch peer: the test suite's reference models (tests/reference: transformers' Qwen3OmniMoeAudioEncoder /
Whisper layers, the SwiGLU adapters, Qwen3Model) on the same random weights, on the CPU.

The reference classes load everything as float32 through a float32 state dict, which needs twice the model's
size at once; here the same modules are built on the meta device and the weights are assigned tensor by tensor
from the safetensors in the chosen dtype, so the peak is the model itself. float32 where that fits in the
available memory, else bfloat16 (reported).

``bench(...)`` runs in a worker process (run.py): encoder (+ adapter, DeepStack mergers) for given clip lengths,
LM prefill of the clip's real prompt, and single-token decode at context positions ~50 and ~1000.
"""
from __future__ import annotations

import json
import sys
import time
import types
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


def checkpoint_bytes(hf_dir: Path) -> int:
    return sum(p.stat().st_size for p in Path(hf_dir).glob("*.safetensors"))


def choose_dtype(hf_dir: Path, prefer: str = "auto") -> str:
    if prefer in ("float32", "bfloat16"):
        return prefer
    avail = 0
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                avail = int(line.split()[1]) * 1024
    fp32 = 2 * checkpoint_bytes(hf_dir)  # the checkpoint is bf16
    return "float32" if fp32 + 3e9 < avail else "bfloat16"


class _Lazy:
    def __init__(self, hf_dir: Path, dtype) -> None:
        from safetensors import safe_open

        self.files = sorted(Path(hf_dir).glob("*.safetensors"))
        self.handles = [safe_open(str(f), framework="pt") for f in self.files]
        self.where = {k: h for h in self.handles for k in h.keys()}
        self.dtype = dtype

    def take(self, prefix: str) -> Dict[str, "object"]:
        return {k[len(prefix):]: self.where[k].get_tensor(k).to(self.dtype) for k in self.where if k.startswith(prefix)}


def _assign(module, sd, what: str) -> None:
    missing, unexpected = module.load_state_dict(sd, strict=False, assign=True)
    params = dict(module.named_parameters())
    missing = [k for k in missing if k in params]
    if missing or unexpected:
        raise ValueError(f"{what}: missing {missing[:5]}, unexpected {unexpected[:5]}")


class TorchModel:
    def __init__(self, arch: str, hf_dir: Path, dtype_name: str, with_lm: bool = True) -> None:
        """with_lm=False: encoder, adapter and mergers only (bench_encoders.py; the LM's weights are not read)."""
        import torch
        from reference import qwen3_config
        from transformers.models.qwen3.modeling_qwen3 import Qwen3Model, Qwen3RotaryEmbedding

        self.arch = arch
        self.dtype_name = dtype_name
        self.dtype = getattr(torch, dtype_name)
        cfg = json.loads((Path(hf_dir) / "config.json").read_text())
        audio = dict(cfg.get("audio_config") or {})
        lang = dict(cfg.get("language_config") or {})
        lazy = _Lazy(hf_dir, self.dtype)
        hid = int(cfg.get("adapter_hidden_size", 8192))
        if arch == "moss_transcribe":
            from reference.moss_transcribe_ref import SwiGLUAdapter, _audio_encoder_config
            from transformers.models.qwen3_omni_moe.modeling_qwen3_omni_moe import (
                Qwen3OmniMoeAudioEncoder, SinusoidsPositionEmbedding)

            lang.setdefault("tie_word_embeddings", True)
            ecfg = _audio_encoder_config(audio, "sdpa")
            with torch.device("meta"):
                self.encoder = Qwen3OmniMoeAudioEncoder(ecfg)
                self.adapter = SwiGLUAdapter(int(ecfg.output_dim), hid, int(lang["hidden_size"]))
                self.lm = Qwen3Model(qwen3_config(lang, "sdpa")) if with_lm else None
            _assign(self.encoder, lazy.take("model.audio_model."), "encoder")
            self.encoder.positional_embedding = SinusoidsPositionEmbedding(ecfg.max_source_positions, ecfg.d_model)
            _assign(self.adapter, lazy.take("model.audio_adapter."), "adapter")
            if with_lm:
                _assign(self.lm, lazy.take("model.language_model."), "lm")
                head = lazy.take("lm_head.")
                self.head = head["weight"] if head else self.lm.embed_tokens.weight
            self.mergers = []
            self.n_window = int(ecfg.n_window)
        else:
            from reference.moss_audio_ref import AudioEncoder
            from reference.moss_transcribe_ref import SwiGLUAdapter

            lang["tie_word_embeddings"] = False
            has_out = any(k == "audio_encoder.out_proj.weight" for k in lazy.where)
            d_out = int(audio.get("output_dim", audio.get("d_model", 1280)))
            with torch.device("meta"):
                self.encoder = AudioEncoder(audio, "sdpa", has_out)
                self.adapter = SwiGLUAdapter(d_out, hid, int(lang["hidden_size"]))
                n_merge = len(self.encoder.taps)
                if cfg.get("deepstack_num_inject_layers") is not None:
                    n_merge = min(n_merge, int(cfg["deepstack_num_inject_layers"]))
                self.mergers = torch.nn.ModuleList(
                    [SwiGLUAdapter(d_out, hid, int(lang["hidden_size"])) for _ in range(n_merge)])
                self.lm = Qwen3Model(qwen3_config(lang, "sdpa")) if with_lm else None
            _assign(self.encoder, lazy.take("audio_encoder."), "encoder")
            _assign(self.adapter, lazy.take("audio_adapter."), "adapter")
            _assign(self.mergers, lazy.take("deepstack_audio_merger_list."), "mergers")
            if with_lm:
                _assign(self.lm, lazy.take("language_model."), "lm")
                self.head = lazy.take("lm_head.")["weight"]
        parts = [self.encoder, self.adapter] + ([self.lm] if with_lm else [])
        if with_lm:
            self.lm.rotary_emb = Qwen3RotaryEmbedding(config=self.lm.config)
        for m in parts:
            m.eval()
        leftover = [n for m in parts for n, t in
                    list(m.named_parameters()) + list(m.named_buffers()) if t.is_meta]
        if leftover:
            raise ValueError(f"tensors left on the meta device: {leftover[:5]}")

    # --- stages ------------------------------------------------------------------------------------------------
    def mel(self, audio: np.ndarray):
        import torch
        from reference import log_mel

        return torch.as_tensor(log_mel(audio, 128, True)[0]).to(self.dtype)

    def encode(self, mel):
        """Encoder + adapter (+ DeepStack mergers): (rows [T, d_lm], deepstack list)."""
        import torch

        with torch.no_grad():
            if self.arch == "moss_transcribe":
                out = self.encoder(input_features=mel, feature_lens=torch.tensor([mel.shape[1]], dtype=torch.long))
                return self.adapter(out.last_hidden_state), []
            final, taps = self.encoder(mel)
            return self.adapter(final), [m(taps[k]) for k, m in enumerate(self.mergers)]

    def prompt_ids(self, n_samples: int) -> List[int]:
        from reference import prompts

        if self.arch == "moss_transcribe":
            return prompts.transcribe_prompt_ids(n_samples, self.n_window)
        return prompts.audio_prompt_ids(n_samples, prompts.TRANSCRIBE_INSTRUCTION, True)

    def prefill(self, ids: List[int], rows, deepstack):
        """One pass over the prompt with the audio rows spliced in; returns (cache, last logits)."""
        import torch
        from reference import prompts
        from transformers import DynamicCache

        with torch.no_grad():
            t_ids = torch.tensor([ids], dtype=torch.long)
            emb = self.lm.embed_tokens(t_ids)
            if self.arch == "moss_transcribe":
                start, end = ids.index(prompts.AUDIO_BOS) + 1, ids.index(prompts.AUDIO_EOS)
                emb[0, start:end] = rows
                audio_pos = torch.arange(start, end)
            else:
                audio_pos = (t_ids[0] == prompts.AUDIO_PAD).nonzero().squeeze(-1)
                emb[0, audio_pos] = rows
            handles = []
            if deepstack:
                from reference.moss_audio_ref import AudioReference

                register = AudioReference._deepstack_hooks(types.SimpleNamespace(lm=self.lm), audio_pos, deepstack)
                handles = register()
            cache = DynamicCache(config=self.lm.config)
            try:
                h = self.lm(inputs_embeds=emb, position_ids=torch.arange(len(ids))[None], cache=cache,
                            use_cache=True).last_hidden_state
            finally:
                for hd in handles:
                    hd.remove()
            return cache, torch.nn.functional.linear(h[0, -1], self.head)

    def decode_steps(self, n_past: int, n_steps: int):
        """Seconds of each single-token step after a prefill of n_past random text tokens, and their CPU time."""
        import torch
        from transformers import DynamicCache

        rng = np.random.default_rng(0)
        ids = rng.integers(1000, 150000, size=n_past + n_steps).tolist()
        out: List[float] = []
        with torch.no_grad():
            cache = DynamicCache(config=self.lm.config)
            self.lm(input_ids=torch.tensor([ids[:n_past]]), position_ids=torch.arange(n_past)[None], cache=cache,
                    use_cache=True)
            c0 = time.process_time()
            for i in range(n_steps):
                t0 = time.perf_counter()
                h = self.lm(input_ids=torch.tensor([[ids[n_past + i]]]), position_ids=torch.tensor([[n_past + i]]),
                            cache=cache, use_cache=True).last_hidden_state
                torch.nn.functional.linear(h[0, -1], self.head).argmax()
                out.append(time.perf_counter() - t0)
            cpu = time.process_time() - c0
        return out, cpu


def bench(arch: str, hf_dir: str, dtype: str, threads: int, clips: Dict[str, np.ndarray], decode_at: List[int],
          decode_steps: int, measure) -> Dict[str, object]:
    import torch

    torch.set_num_threads(threads)
    dtype = choose_dtype(Path(hf_dir), dtype)
    res: Dict[str, object] = {"torch_version": torch.__version__, "dtype": dtype, "threads": threads}
    holder = {}

    def load():
        holder["m"] = TorchModel(arch, Path(hf_dir), dtype)

    res["load"] = measure("torch load", load, threads=1)
    m = holder["m"]
    # warm-up: first-touch of the weights, oneDNN kernel selection
    rows, ds = m.encode(m.mel(clips[min(clips, key=lambda k: len(clips[k]))][:16000]))
    res["clips"] = {}
    for name, audio in clips.items():
        mel = m.mel(audio)
        ids = m.prompt_ids(len(audio))
        enc = measure(f"torch encoder {name}", lambda: holder.__setitem__("enc", m.encode(mel)))
        rows, ds = holder["enc"]
        pre = measure(f"torch prefill {name}", lambda: m.prefill(ids, rows, ds))
        res["clips"][name] = {"encoder": enc, "prefill": pre, "n_prompt": len(ids)}
    res["decode"] = {}
    for pos in decode_at:
        def fn(pos=pos):
            steps, cpu = m.decode_steps(pos, decode_steps)
            st = sorted(steps)
            return {"s": sum(steps), "cpu_s": cpu, "steps": len(steps), "step_ms_median": 1000 * st[len(st) // 2],
                    "tok_per_s": len(steps) / sum(steps), "tok_per_s_cpu": len(steps) / cpu if cpu > 0 else None}

        res["decode"][str(pos)] = measure(f"torch decode@{pos}", fn)
    return res
