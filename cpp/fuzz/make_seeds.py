"""Seed corpora (and a dictionary) for the libFuzzer targets in this directory.

    python cpp/fuzz/make_seeds.py OUT_DIR

OUT_DIR/gguf/       micro MOSS-Transcribe and MOSS-Audio files (every tensor and key the loaders read, widths of
                    8, one layer, a 300-token vocabulary) and small structural files; a few KB each, so mutations
                    land in headers, keys and tensor tables rather than in weight bytes
OUT_DIR/gguf.dict   the key and tensor names, for libFuzzer's -dict
OUT_DIR/vocab.gguf  the real Qwen vocabulary (tokens + merges) for fuzz_tokenizer (CRISPMOSS_FUZZ_VOCAB)
OUT_DIR/tokenizer/  text seeds: the tokenizer test corpus, special tokens, invalid UTF-8
OUT_DIR/mel/        sample buffers: real speech, silence, extremes, short clips, a filterbank case

The micro vocabulary does not spell the chat template's role names ("user", "assistant") as single tokens, so the
micro models stop at that last load check; everything before it (header, keys, every tensor, tokenizer) is
exercised.
"""
from __future__ import annotations

import os
import struct
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))
# The source tree's package when it has a built module (dev builds); otherwise the installed crispmoss.
if list((ROOT / "python" / "crispmoss").glob("_core*")):
    sys.path.insert(0, str(ROOT / "python"))

import gguf_bytes as gb  # noqa: E402

N_VOCAB = 300


def _micro_checkpoints(tmp: Path):
    from crispmoss import testing
    from crispmoss.convert import convert
    from crispmoss.convert.tables import MOSS_AUDIO, MOSS_TRANSCRIBE

    # Smallest dimensions the converter and loaders accept (MOSS-Audio needs three distinct tap layers).
    micro = {
        MOSS_TRANSCRIBE.arch: testing._Dims(1, 8, 2, 8, 2, 8, 8, 1, 8, 2, 1, 4, 8),
        MOSS_AUDIO.arch: testing._Dims(3, 8, 2, 8, 2, 8, 8, 3, 8, 2, 1, 4, 8, (0, 1, 2)),
    }
    out = {}
    for arch, dims in micro.items():
        saved = testing._DIMS[(arch, "tiny")]
        testing._DIMS[(arch, "tiny")] = dims
        try:
            hf = testing.make_checkpoint(arch, tmp / f"{arch}-hf", seed=0, sizes="tiny", shards=1)
            out[arch] = convert(hf, tmp / f"{arch}.gguf", outtype="f32", progress=False)
        finally:
            testing._DIMS[(arch, "tiny")] = saved
    return out


def _shrink_vocab(g: gb.GGUF, arch: str) -> None:
    """Cuts the vocabulary to N_VOCAB ids (BPE prefix + added tokens) and moves the special ids into it."""
    n_added = 10
    n_bpe = N_VOCAB - n_added
    g.set_kv(f"{arch}.llm.vocab_size", gb.U32, N_VOCAB)
    toks = g.find_kv("tokenizer.ggml.tokens")
    toks.value = list(toks.value[:n_bpe]) + [f"<|extra_{i}|>".encode() for i in range(n_added)]
    merges = g.find_kv("tokenizer.ggml.merges")
    merges.value = list(merges.value[: n_bpe - 256])
    for i, key in enumerate(("bos_token_id", "eos_token_id", "start_token_id", "audio_start_id", "audio_end_id",
                             "audio_token_id")):
        try:
            g.find_kv(f"{arch}.{key}")
        except KeyError:
            continue
        g.set_kv(f"{arch}.{key}", gb.U32, n_bpe + i)
    for name in ("llm.embed.weight", "llm.lm_head.weight"):
        try:
            t = g.find_tensor(name)
        except KeyError:
            continue
        row = len(t.data) // t.ne[1]
        t.ne = [t.ne[0], N_VOCAB]
        t.data = t.data[: row * N_VOCAB]


def _vocab_only(g: gb.GGUF) -> gb.GGUF:
    v = gb.GGUF()
    v.kv = [g.find_kv("general.architecture"), g.find_kv("tokenizer.ggml.tokens"), g.find_kv("tokenizer.ggml.merges")]
    v.tensors = [gb.Tensor("unused", [8], gb.GGML_F32, bytes(32))]
    return v


def _structural_seeds() -> dict:
    from crispmoss.convert.tables import MOSS_TRANSCRIBE

    g = gb.GGUF()
    g.kv.append(gb.KV("general.architecture", gb.STRING, MOSS_TRANSCRIBE.arch))
    g.kv.append(gb.KV("general.alignment", gb.U32, 32))
    g.kv.append(gb.KV("general.tags", gb.ARRAY, [b"a", b"b"], gb.STRING))
    g.kv.append(gb.KV("general.ints", gb.ARRAY, [1, 2, 3], gb.I64))
    g.kv.append(gb.KV("general.f", gb.F64, 0.5))
    g.tensors.append(gb.Tensor("a", [32, 2], gb.GGML_F32, bytes(256)))
    g.tensors.append(gb.Tensor("q", [32, 2], gb.GGML_Q8_0, bytes(68)))
    g.tensors.append(gb.Tensor("h", [4, 2, 2, 1], gb.GGML_F16, bytes(32)))
    v2 = g.copy()
    v2.version = 2
    return {"structural.gguf": g.to_bytes(), "structural_v2.gguf": v2.to_bytes()}


def gguf_seeds(out: Path) -> Path:
    d = out / "gguf"
    d.mkdir(parents=True, exist_ok=True)
    names = set()
    with tempfile.TemporaryDirectory() as tmp:
        files = _micro_checkpoints(Path(tmp))
        first = None
        for arch, path in files.items():
            g = gb.read(path)
            if first is None:
                first = g
                _vocab_only(g).write(out / "vocab.gguf")
            _shrink_vocab(g, arch)
            for helper in ("audio.mel_filters", "audio.mel_window"):  # not read by the loaders; 100 KB
                g.drop_tensor(helper)
            g.write(d / f"{arch}-micro.gguf")
            names.update(kv.key for kv in g.kv)
            names.update(t.name for t in g.tensors)
    for name, raw in _structural_seeds().items():
        (d / name).write_bytes(raw)
    with open(out / "gguf.dict", "w") as f:
        for n in sorted(names):
            if not isinstance(n, str) or len(n) > 60:
                continue
            f.write('"%s"\n' % n)
            f.write('"%s"\n' % "".join("\\x%02x" % b for b in struct.pack("<Q", len(n)) + n.encode()))
    return d


def tokenizer_seeds(out: Path) -> Path:
    d = out / "tokenizer"
    d.mkdir(parents=True, exist_ok=True)
    texts = [line.encode("utf-8") for line in (ROOT / "tests" / "data" / "tokenizer_corpus.txt").read_text(
        encoding="utf-8").splitlines() if line.strip()][:60]
    texts += [
        b"<|im_start|>user\n<|audio_bos|><|AUDIO|><|audio_eos|><|im_end|>\n<|im_start|>assistant\n",
        b"<|endoftext|><|im_end|><|im_start|",
        b"\xff\xfe\xc3\x28\xe2\x82\xf0\x9f\x98 \xed\xa0\x80 \xf4\x90\x80\x80",
        "  \t\n\r\n   123 4567 ÄÖÜ ß 日本語 🙂 don't I'LL".encode("utf-8"),
        b"",
    ]
    for i, t in enumerate(texts):
        (d / f"t{i:03d}").write_bytes(bytes([i * 37 % 256]) + t)
    return d


def mel_seeds(out: Path) -> Path:
    d = out / "mel"
    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    try:
        import soundfile as sf

        speech, _ = sf.read(str(Path("/work/shared/audio/jfk.wav")), dtype="float32")
        speech = speech[16000:16000 + 4000]
    except Exception:  # no sample audio: a chirp
        t = np.arange(4000) / 16000.0
        speech = (0.3 * np.sin(2 * np.pi * (200 + 2000 * t) * t)).astype(np.float32)
    seeds = {
        "speech_f32": bytes([0, 0]) + speech.astype("<f4").tobytes(),
        "speech_i16": bytes([1, 1]) + (speech * 32767).astype("<i2").tobytes(),
        "silence": bytes([0, 2]) + np.zeros(800, "<f4").tobytes(),
        "extremes": bytes([1, 0]) + np.array([32767, -32768] * 400, "<i2").tobytes(),
        "short": bytes([0, 0]) + rng.standard_normal(170).astype("<f4").tobytes(),
        "one_hop": bytes([0, 1]) + rng.standard_normal(160).astype("<f4").tobytes(),
        "nan": bytes([0, 0]) + np.array([0.1, np.nan] * 200, "<f4").tobytes(),
        "stretched": bytes([2, 0, 0x10, 0x00]) + bytes(range(64)),
        "filterbank": bytes([3, 0, 200, 127]) + np.full(201 * 128, 1e-3, "<f4").tobytes()[:4096],
    }
    for name, raw in seeds.items():
        (d / name).write_bytes(raw)
    return d


def main() -> None:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "build/fuzz/seeds")
    out.mkdir(parents=True, exist_ok=True)
    for fn in (gguf_seeds, tokenizer_seeds, mel_seeds):
        d = fn(out)
        print(f"{d}: {len(os.listdir(d))} seeds")


if __name__ == "__main__":
    main()
