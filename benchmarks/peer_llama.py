"""llama.cpp peer: the decoder of a crispmoss GGUF, rewritten in llama.cpp's Qwen3 schema, run through
llama-cpp-python.

``write_qwen3_gguf(src, dst)`` copies the decoder tensors of a crispmoss GGUF byte for byte (same ggml types:
whatever our quantizer chose, llama.cpp reads the same blocks) under llama.cpp's names, with ``qwen3.*``
hyper-parameters and the same byte-level BPE vocabulary (gpt2 model, qwen2 pre-tokenizer, token types).
A tied head (MOSS-Transcribe) is written as no ``output.weight``, which llama.cpp resolves to token_embd, as we do.

``bench(...)`` (run in a worker process by run.py) measures load time, prefill of N tokens and single-token
decode at context positions ~50 and ~1000.
"""
from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

_LAYER_MAP = {
    "attn_norm.weight": "attn_norm.weight",
    "attn.q.weight": "attn_q.weight",
    "attn.k.weight": "attn_k.weight",
    "attn.v.weight": "attn_v.weight",
    "attn.o.weight": "attn_output.weight",
    "attn.q_norm.weight": "attn_q_norm.weight",
    "attn.k_norm.weight": "attn_k_norm.weight",
    "ffn_norm.weight": "ffn_norm.weight",
    "ffn.gate.weight": "ffn_gate.weight",
    "ffn.up.weight": "ffn_up.weight",
    "ffn.down.weight": "ffn_down.weight",
}
_TOP_MAP = {"llm.embed.weight": "token_embd.weight", "llm.final_norm.weight": "output_norm.weight",
            "llm.lm_head.weight": "output.weight"}
_BLK = re.compile(r"^llm\.blk\.(\d+)\.(.+)$")


def llama_name(name: str) -> Optional[str]:
    """llama.cpp's name for one of our decoder tensors; None for encoder/adapter tensors."""
    if name in _TOP_MAP:
        return _TOP_MAP[name]
    m = _BLK.match(name)
    if m and m.group(2) in _LAYER_MAP:
        return f"blk.{m.group(1)}.{_LAYER_MAP[m.group(2)]}"
    return None


def _field(r, key):
    f = r.fields.get(key)
    if f is None:
        return None
    return f.contents()


def write_qwen3_gguf(src: "os.PathLike[str] | str", dst: "os.PathLike[str] | str") -> Path:
    import gguf

    src, dst = Path(src), Path(dst)
    r = gguf.GGUFReader(str(src))
    arch = _field(r, "general.architecture")
    p = f"{arch}.llm."
    tokens: List[str] = _field(r, "tokenizer.ggml.tokens")
    merges: List[str] = _field(r, "tokenizer.ggml.merges")
    n_vocab = int(_field(r, p + "vocab_size"))
    # Qwen's added tokens (<|endoftext|> and everything after it) are control tokens; the rest are normal.
    types = [gguf.TokenType.CONTROL if i >= 151643 else gguf.TokenType.NORMAL for i in range(len(tokens))]

    tmp = dst.with_name(dst.name + f".part{os.getpid()}")
    w = gguf.GGUFWriter(str(tmp), "qwen3")
    w.add_name(f"{arch} decoder (crispmoss benchmark)")
    w.add_context_length(int(_field(r, p + "max_position_embeddings")))
    w.add_embedding_length(int(_field(r, p + "hidden_size")))
    w.add_block_count(int(_field(r, p + "num_layers")))
    w.add_feed_forward_length(int(_field(r, p + "intermediate_size")))
    w.add_head_count(int(_field(r, p + "num_heads")))
    w.add_head_count_kv(int(_field(r, p + "num_kv_heads")))
    w.add_key_length(int(_field(r, p + "head_dim")))
    w.add_value_length(int(_field(r, p + "head_dim")))
    w.add_rope_freq_base(float(_field(r, p + "rope_theta")))
    w.add_layer_norm_rms_eps(float(_field(r, p + "rms_norm_eps")))
    w.add_vocab_size(n_vocab)
    ft = _field(r, "general.file_type")
    if ft is not None:
        w.add_file_type(int(ft))
    w.add_quantization_version(2)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("qwen2")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    w.add_bos_token_id(151643)
    w.add_eos_token_id(151645)
    w.add_pad_token_id(151643)
    w.add_add_bos_token(False)

    picked = []
    for t in r.tensors:
        n = llama_name(t.name)
        if n is None:
            continue
        picked.append((n, t))
    for n, t in picked:
        # the reader's view of the data: elements (F32/F16) or bytes per row (quantized), numpy order
        data = np.asarray(t.data)
        w.add_tensor_info(n, list(data.shape), data.dtype, int(t.n_bytes), raw_dtype=t.tensor_type)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    for n, t in picked:
        w.write_tensor_data(np.asarray(t.data))
    w.close()
    os.replace(tmp, dst)
    return dst


# Where llama.cpp keeps the decoder's matrices. Its default on x86 puts them in the CPU backend's "extra" buffer
# types: AMX first (when the CPU reports AMX), else CPU_REPACK (Q4_K re-laid out as interleaved q4_K_8x8 for the
# AVX2/AVX-512 kernels). AMX kernels crash on this machine's VM (general protection fault in libggml-cpu; the same
# in a standalone ggml test), so variant "repack" is llama.cpp's default with AMX made unavailable: the
# arch_prctl(ARCH_REQ_XCOMP_PERM) request ggml makes before offering AMX is refused by a seccomp filter, which is
# exactly what ggml sees on a CPU or kernel without AMX. "plain" keeps every weight mmapped in a plain CPU buffer
# (use_extra_bufts = false), as crispmoss does.
VARIANTS = ("repack", "plain")


def _refuse_amx() -> None:
    """seccomp: arch_prctl(ARCH_REQ_XCOMP_PERM, ...) fails with EPERM for this process and its later threads."""
    import ctypes

    class SockFilter(ctypes.Structure):
        _fields_ = [("code", ctypes.c_uint16), ("jt", ctypes.c_uint8), ("jf", ctypes.c_uint8), ("k", ctypes.c_uint32)]

    class SockFprog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(SockFilter))]

    LD, JEQ, RET = 0x20, 0x15, 0x06
    ALLOW, EPERM = 0x7FFF0000, 0x00050000 | 1
    prog = [SockFilter(LD, 0, 0, 4), SockFilter(JEQ, 0, 5, 0xC000003E),  # x86-64 syscalls only
            SockFilter(LD, 0, 0, 0), SockFilter(JEQ, 0, 3, 158),          # arch_prctl
            SockFilter(LD, 0, 0, 16), SockFilter(JEQ, 0, 1, 0x1023),      # ARCH_REQ_XCOMP_PERM
            SockFilter(RET, 0, 0, EPERM), SockFilter(RET, 0, 0, ALLOW)]
    arr = (SockFilter * len(prog))(*prog)
    fprog = SockFprog(len(prog), arr)
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(38, 1, 0, 0, 0) != 0:  # PR_SET_NO_NEW_PRIVS
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS)")
    if libc.prctl(22, 2, ctypes.byref(fprog), 0, 0) != 0:  # PR_SET_SECCOMP, SECCOMP_MODE_FILTER
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_SECCOMP)")


def _set_variant(variant: str) -> None:
    """Call before llama_cpp is imported: how every later Llama(...) loads its weights."""
    if variant == "repack":
        _refuse_amx()
        return
    import llama_cpp.llama_cpp as L

    orig = L.llama_model_default_params

    def params():
        p = orig()
        p.use_extra_bufts = False
        return p

    L.llama_model_default_params = params


def llama_available() -> bool:
    try:
        import llama_cpp  # noqa: F401

        return True
    except Exception:
        return False


def bench(path: str, threads: int, prefill_tokens: List[int], decode_at: List[int], decode_steps: int, measure,
          variant: str = "repack") -> Dict[str, object]:
    """Worker body. ``measure(label, fn)`` runs fn with disturbance accounting (see run.py) and returns a dict;
    fn may return {"s": seconds of the part that counts, ...extras}."""
    _set_variant(variant)
    import llama_cpp
    from llama_cpp import Llama

    n_ctx = max(list(prefill_tokens) + list(decode_at)) + decode_steps + 8
    rng = np.random.default_rng(0)
    ids = rng.integers(1000, 150000, size=n_ctx).tolist()

    def load():
        return Llama(model_path=path, n_ctx=n_ctx, n_batch=512, n_ubatch=512, n_threads=threads,
                     n_threads_batch=threads, use_mmap=True, verbose=False)

    out: Dict[str, object] = {"llama_cpp_version": getattr(llama_cpp, "__version__", "?"), "variant": variant,
                              "system_info": llama_cpp.llama_print_system_info().decode(errors="replace")}
    first = load()  # pulls the file into the page cache
    first.close()
    del first
    holder = {}

    def do_load():
        holder["llm"] = load()

    out["load"] = measure("llama load", do_load, threads=1)
    llm = holder["llm"]
    llm.eval(ids[:8])  # warm-up: thread pool, first touch of the weights
    llm.reset()

    out["prefill"] = {}
    for n in prefill_tokens:
        def prefill(n=n):
            llm.reset()
            llm.eval(ids[:n])

        r = measure(f"llama prefill {n}", prefill)
        r["tok_per_s"] = n / r["s"]
        r["tok_per_s_cpu"] = n / r["cpu_s"] if r["cpu_s"] > 0 else None
        out["prefill"][str(n)] = r
    out["decode"] = {}
    for pos in decode_at:
        def decode(pos=pos):
            llm.reset()
            llm.eval(ids[:pos])
            steps = []
            c0 = time.process_time()
            for i in range(decode_steps):
                t0 = time.perf_counter()
                llm.eval([ids[pos + i]])
                steps.append(time.perf_counter() - t0)
            cpu = time.process_time() - c0
            st = sorted(steps)
            return {"s": sum(steps), "cpu_s": cpu, "steps": len(steps), "step_ms_median": 1000 * st[len(st) // 2],
                    "tok_per_s": len(steps) / sum(steps), "tok_per_s_cpu": len(steps) / cpu if cpu > 0 else None}

        out["decode"][str(pos)] = measure(f"llama decode@{pos}", decode)
    llm.close()
    return out
