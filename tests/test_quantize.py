"""crispmoss.quantize: per-model rules, round-trip accuracy, metadata, determinism and errors.

The GGUFs here are made with gguf-py: a handful of tensors with the real naming scheme of each architecture,
random Gaussian weights, row lengths chosen to hit both the normal path and the block-size fallbacks.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import gguf
import numpy as np
import pytest
from gguf import GGMLQuantizationType as QT
from gguf.quants import dequantize

import crispmoss
import crispmoss._core
from crispmoss.quantize import QUANT_TYPES, add_cli, quantize, quantize_plan, run_cli

ROOT = Path(__file__).resolve().parents[1]

TARGET_QT = {"f32": QT.F32, "f16": QT.F16, "q8_0": QT.Q8_0, "q4_k": QT.Q4_K, "q5_k": QT.Q5_K, "q6_k": QT.Q6_K}
# ggml_ftype numbering, as crispasr-quantize writes it.
FILE_TYPE = {"f32": 0, "f16": 1, "q8_0": 7, "q4_k": 12, "q5_k": 13, "q6_k": 14}
# Relative RMS round-trip error on N(0, 1) data. Measured on a 2048×2048 matrix: q8_0 0.535 %, q6_k 1.77 %,
# q5_k 3.61 %, q4_k 7.13 % (each bit halves it; 4-bit affine blocks over ±2.2σ cannot do better than ~7 %).
REL_RMS_MAX = {"q8_0": 0.006, "q6_k": 0.02, "q5_k": 0.04, "q4_k": 0.08, "f16": 1e-3, "f32": 1e-7}


def _bf16_bits(a: np.ndarray) -> np.ndarray:
    """float32 → bfloat16 bit patterns (round to nearest even), stored as uint16."""
    u = np.ascontiguousarray(a, dtype=np.float32).view(np.uint32)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)


def _bf16_to_f32(bits: np.ndarray) -> np.ndarray:
    return (bits.astype(np.uint32) << 16).view(np.float32)


def _common_kv(w: gguf.GGUFWriter, arch: str) -> None:
    w.add_name("tiny-" + arch)
    w.add_uint32(f"{arch}.llm.hidden_size", 256)
    w.add_uint32(f"{arch}.llm.num_layers", 1)
    w.add_float32(f"{arch}.llm.rope_theta", 1.0e6)
    w.add_bool(f"{arch}.llm.tied_embeddings", arch == "moss_transcribe")
    w.add_uint32(f"{arch}.eos_token_id", 151645)
    w.add_string("tokenizer.ggml.model", "gpt2")
    w.add_array("tokenizer.ggml.tokens", [f"tok{i}" for i in range(64)] + ["Ġhello", "<|im_end|>"])
    w.add_array("tokenizer.ggml.merges", ["Ġ h", "e l"])
    w.add_uint32("general.file_type", 1)


def make_gguf(path: Path, arch: str, seed: int = 0, bf16: bool = False, extra=None) -> dict:
    """Writes a small GGUF of `arch` and returns {name: float32 array as stored (torch shape)}."""
    rng = np.random.default_rng(seed)
    w = gguf.GGUFWriter(str(path), arch)
    _common_kv(w, arch)
    stored: dict = {}

    def add(name, shape, kind="f16"):
        a = rng.standard_normal(shape).astype(np.float32)
        if kind == "f16":
            a16 = a.astype(np.float16)
            w.add_tensor(name, a16)
            stored[name] = a16.astype(np.float32)
        elif kind == "bf16":
            bits = _bf16_bits(a)
            w.add_tensor(name, bits, raw_shape=a.shape, raw_dtype=QT.BF16)
            stored[name] = _bf16_to_f32(bits)
        else:
            w.add_tensor(name, a)
            stored[name] = a

    add("audio.mel_filters", (201, 128), "f32")  # 2-D helper, not a weight
    add("audio.mel_window", (400,), "f32")
    add("enc.conv1.weight", (8, 1, 3, 3))  # 4-D conv kernel
    add("enc.conv1.bias", (8,), "f32")
    add("enc.blk.0.attn_norm.weight", (256,), "f32")
    add("enc.blk.0.attn.q.weight", (256, 256))
    add("enc.blk.0.attn.q.bias", (256,), "f32")
    add("enc.blk.0.ffn.fc1.weight", (512, 256), "f32")  # excluded F32 matrix: stays F32
    add("adapter.gate.weight", (512, 256))
    add("adapter.down.weight", (256, 512))
    if arch == "moss_audio":
        add("deepstack.0.gate.weight", (512, 256))
        add("deepstack.0.down.weight", (256, 512))
    add("llm.embed.weight", (66, 256))
    add("llm.blk.0.attn_norm.weight", (256,), "f32")
    add("llm.blk.0.attn.q.weight", (256, 256))
    add("llm.blk.0.attn.k.weight", (128, 256), "f32")  # F32 source
    add("llm.blk.0.attn.v.weight", (128, 256), "bf16" if bf16 else "f16")
    add("llm.blk.0.attn.o.weight", (256, 288))  # row 288: K-quants fall back to Q8_0
    add("llm.blk.0.attn.q_norm.weight", (128,), "f32")
    add("llm.blk.0.attn.k_norm.weight", (128,), "f32")
    add("llm.blk.0.ffn_norm.weight", (256,), "f32")
    add("llm.blk.0.ffn.gate.weight", (1024, 256))  # enough rows for two threads
    add("llm.blk.0.ffn.up.weight", (1024, 256))
    add("llm.blk.0.ffn.down.weight", (256, 1024))
    add("llm.blk.0.ffn.extra.weight", (16, 100), "f32")  # row 100: no block type fits → F16
    add("llm.final_norm.weight", (256,), "f32")
    if arch == "moss_audio":
        add("llm.lm_head.weight", (66, 256))
    if extra:
        extra(w, stored)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return stored


def expected_quantized(arch: str) -> set:
    names = {
        "llm.blk.0.attn.q.weight",
        "llm.blk.0.attn.k.weight",
        "llm.blk.0.attn.v.weight",
        "llm.blk.0.attn.o.weight",
        "llm.blk.0.ffn.gate.weight",
        "llm.blk.0.ffn.up.weight",
        "llm.blk.0.ffn.down.weight",
        "llm.blk.0.ffn.extra.weight",
    }
    if arch == "moss_audio":
        names |= {"llm.embed.weight", "llm.lm_head.weight"}
    return names


def expected_type(name: str, arch: str, target: str, src: QT) -> QT:
    if name not in expected_quantized(arch):
        return src
    if name == "llm.blk.0.ffn.extra.weight" and target not in ("f32", "f16"):
        return QT.F16
    if name == "llm.blk.0.attn.o.weight" and target in ("q4_k", "q5_k", "q6_k"):
        return QT.Q8_0
    return TARGET_QT[target]


def tensor_values(t) -> np.ndarray:
    """Dequantized float32 values of a GGUFReader tensor, in torch shape."""
    shape = tuple(int(x) for x in reversed(t.shape.tolist()))
    if t.tensor_type == QT.F32:
        return np.asarray(t.data, dtype=np.float32).reshape(shape)
    if t.tensor_type == QT.F16:
        return np.asarray(t.data).view(np.float16).astype(np.float32).reshape(shape)
    if t.tensor_type == QT.BF16:
        return _bf16_to_f32(np.asarray(t.data).view(np.uint16)).reshape(shape)
    return dequantize(np.asarray(t.data), t.tensor_type).astype(np.float32).reshape(shape)


def kv_values(reader: gguf.GGUFReader) -> dict:
    out = {}
    for name, field in reader.fields.items():
        if name.startswith("GGUF."):
            continue
        out[name] = field.contents()
    return out


def rel_rms(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sqrt(np.mean((a - b) ** 2)) / np.sqrt(np.mean(b**2)))


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    d = tmp_path_factory.mktemp("qsrc")
    out = {}
    for arch in ("moss_transcribe", "moss_audio"):
        p = d / f"{arch}.gguf"
        out[arch] = (p, make_gguf(p, arch, seed=1 if arch == "moss_audio" else 0))
    return out


@pytest.mark.parametrize("arch", ["moss_transcribe", "moss_audio"])
@pytest.mark.parametrize("target", QUANT_TYPES)
def test_rules_accuracy_and_metadata(sources, tmp_path, arch, target):
    src_path, stored = sources[arch]
    out = tmp_path / f"out-{target}.gguf"
    rep = quantize(src_path, out, target, n_threads=2, progress=False)
    assert out.exists() and not Path(str(out) + ".part").exists()
    assert rep["arch"] == arch and rep["out_bytes"] == out.stat().st_size

    rin, rout = gguf.GGUFReader(str(src_path)), gguf.GGUFReader(str(out))
    # tensors: same names, same order, same shapes
    assert [t.name for t in rout.tensors] == [t.name for t in rin.tensors]
    src_types = {t.name: QT(t.tensor_type) for t in rin.tensors}
    for t in rout.tensors:
        assert list(t.shape) == list(rin.tensors[[x.name for x in rin.tensors].index(t.name)].shape)
        want = expected_type(t.name, arch, target, src_types[t.name])
        assert QT(t.tensor_type) == want, (t.name, t.tensor_type, want)
        vals = tensor_values(t)
        ref = stored[t.name]
        if want == src_types[t.name] and t.name not in expected_quantized(arch):
            np.testing.assert_array_equal(vals, ref, err_msg=t.name)  # copied verbatim
        else:
            key = {QT.Q8_0: "q8_0", QT.Q4_K: "q4_k", QT.Q5_K: "q5_k", QT.Q6_K: "q6_k", QT.F16: "f16", QT.F32: "f32"}[want]
            if want == src_types[t.name]:
                np.testing.assert_array_equal(vals, ref, err_msg=t.name)
            else:
                err = rel_rms(vals, ref)
                assert err <= REL_RMS_MAX[key], (t.name, key, err)
    # metadata: every input KV copied unchanged except the two the quantizer sets
    kin, kout = kv_values(rin), kv_values(rout)
    assert kout.pop("general.file_type") == FILE_TYPE[target]
    assert kout.pop("general.quantization_version") == 2
    kin.pop("general.file_type")
    assert kout == kin
    # the report agrees with the file
    by_name = {t["name"]: t for t in rep["tensors"]}
    for t in rout.tensors:
        assert by_name[t.name]["dst_type"] == QT(t.tensor_type).name.lower().replace("_k", "_K")
    notes = {n for n, t in by_name.items() if t["note"]}
    if target in ("q4_k", "q5_k", "q6_k"):
        assert notes == {"llm.blk.0.attn.o.weight", "llm.blk.0.ffn.extra.weight"}
    elif target == "q8_0":
        assert notes == {"llm.blk.0.ffn.extra.weight"}
    else:
        assert notes == set()


def test_measured_errors_gaussian(sources, tmp_path):
    """The K-quant errors on the 256-wide Gaussian matrices sit where ggml's reference quantizers put them."""
    src_path, stored = sources["moss_transcribe"]
    errs = {}
    for target in ("q8_0", "q6_k", "q5_k", "q4_k"):
        out = tmp_path / f"m-{target}.gguf"
        quantize(src_path, out, target, progress=False)
        t = next(t for t in gguf.GGUFReader(str(out)).tensors if t.name == "llm.blk.0.ffn.gate.weight")
        errs[target] = rel_rms(tensor_values(t), stored[t.name])
    # monotone in bits, and not suspiciously small (that would mean nothing was quantized)
    assert errs["q8_0"] < errs["q6_k"] < errs["q5_k"] < errs["q4_k"]
    assert 0.0045 < errs["q8_0"] < 0.006
    assert 0.06 < errs["q4_k"] < 0.08


def test_q8_0_bytes_match_reference_quantizer(sources, tmp_path):
    """gguf-py's numpy Q8_0 quantizer mirrors ggml's reference one bit for bit."""
    src_path, stored = sources["moss_audio"]
    out = tmp_path / "ref-q8.gguf"
    quantize(src_path, out, "q8_0", progress=False)
    for t in gguf.GGUFReader(str(out)).tensors:
        if QT(t.tensor_type) == QT.Q8_0:
            ref = gguf.quants.quantize(stored[t.name], QT.Q8_0)
            assert np.array_equal(np.asarray(t.data).reshape(-1), ref.reshape(-1)), t.name


def test_bf16_source(tmp_path):
    src = tmp_path / "bf16.gguf"
    stored = make_gguf(src, "moss_transcribe", seed=3, bf16=True)
    out = tmp_path / "q8.gguf"
    quantize(src, out, "q8_0", progress=False)
    t = next(t for t in gguf.GGUFReader(str(out)).tensors if t.name == "llm.blk.0.attn.v.weight")
    assert QT(t.tensor_type) == QT.Q8_0
    assert rel_rms(tensor_values(t), stored[t.name]) < REL_RMS_MAX["q8_0"]
    out16 = tmp_path / "f16.gguf"
    quantize(src, out16, "f16", progress=False)
    t = next(t for t in gguf.GGUFReader(str(out16)).tensors if t.name == "llm.blk.0.attn.v.weight")
    assert QT(t.tensor_type) == QT.F16
    # bf16 → f16 is exact for N(0,1) values (8-bit mantissa fits in 11 bits, exponents in range)
    np.testing.assert_array_equal(tensor_values(t), stored[t.name])


def test_requantize_from_quantized(sources, tmp_path):
    src_path, stored = sources["moss_audio"]
    q8 = tmp_path / "q8.gguf"
    quantize(src_path, q8, "q8_0", progress=False)
    q4 = tmp_path / "q4.gguf"
    rep = quantize(q8, q4, "q4_k", progress=False)
    types = {t["name"]: (t["src_type"], t["dst_type"]) for t in rep["tensors"]}
    assert types["llm.blk.0.ffn.gate.weight"] == ("q8_0", "q4_K")
    assert types["llm.blk.0.attn.o.weight"] == ("q8_0", "q8_0")  # fallback type = source: copied
    t = next(t for t in gguf.GGUFReader(str(q4)).tensors if t.name == "llm.embed.weight")
    assert QT(t.tensor_type) == QT.Q4_K
    assert rel_rms(tensor_values(t), stored[t.name]) < REL_RMS_MAX["q4_k"] + REL_RMS_MAX["q8_0"]


def test_threads_and_blocks_give_identical_bytes(sources, tmp_path, monkeypatch):
    src_path, _ = sources["moss_audio"]
    outs = []
    for i, (threads, block) in enumerate([(1, None), (2, None), (3, "1000"), (2, "256")]):
        if block is None:
            monkeypatch.delenv("CRISPMOSS_QUANTIZE_BLOCK_ELEMS", raising=False)
        else:
            monkeypatch.setenv("CRISPMOSS_QUANTIZE_BLOCK_ELEMS", block)
        out = tmp_path / f"t{i}.gguf"
        rep = quantize(src_path, out, "q4_k", n_threads=threads, progress=False)
        assert rep["n_threads"] == threads
        outs.append(out.read_bytes())
    assert all(o == outs[0] for o in outs[1:])


def test_output_layout_is_aligned(sources, tmp_path):
    """Every tensor starts on a 32-byte boundary and the file ends right after the padded last tensor,
    which is what ggml's gguf reader (used again here through quantize_plan) requires."""
    src_path, _ = sources["moss_transcribe"]
    out = tmp_path / "q5.gguf"
    quantize(src_path, out, "q5_k", progress=False)
    r = gguf.GGUFReader(str(out))
    for t in r.tensors:
        assert t.data_offset % 32 == 0, t.name
    last = max(r.tensors, key=lambda t: t.data_offset)
    assert out.stat().st_size == last.data_offset + (-(-int(last.n_bytes) // 32) * 32)
    plan = quantize_plan(out, "q5_k")  # re-read by ggml's own reader
    assert [t["name"] for t in plan["tensors"]] == [t.name for t in r.tensors]


def test_custom_alignment_is_honoured(tmp_path):
    src = tmp_path / "a64.gguf"
    rng = np.random.default_rng(5)
    w = gguf.GGUFWriter(str(src), "moss_transcribe")
    _common_kv(w, "moss_transcribe")
    w.add_custom_alignment(64)
    a = rng.standard_normal((40, 256)).astype(np.float16)
    w.add_tensor("llm.blk.0.attn.q.weight", a)
    w.add_tensor("llm.final_norm.weight", rng.standard_normal(7).astype(np.float32))
    w.add_tensor("llm.blk.0.ffn.up.weight", rng.standard_normal((24, 256)).astype(np.float16))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    out = tmp_path / "a64-q4.gguf"
    quantize(src, out, "q4_k", progress=False)
    r = gguf.GGUFReader(str(out))
    assert r.alignment == 64
    for t in r.tensors:
        assert t.data_offset % 64 == 0
    t = next(t for t in r.tensors if t.name == "llm.blk.0.attn.q.weight")
    assert rel_rms(tensor_values(t), a.astype(np.float32)) < REL_RMS_MAX["q4_k"]
    quantize_plan(out, "q4_k")


def test_package_exports():
    assert crispmoss.quantize is quantize
    assert tuple(crispmoss._core.quant_types()) == QUANT_TYPES


def test_plan_matches_quantize(sources):
    src_path, _ = sources["moss_transcribe"]
    plan = quantize_plan(src_path, "Q4_K")
    t = {x["name"]: x for x in plan["tensors"]}
    assert t["llm.embed.weight"]["dst_type"] == "f16" and not t["llm.embed.weight"]["candidate"]
    assert t["llm.blk.0.ffn.gate.weight"]["dst_type"] == "q4_K"
    assert t["llm.blk.0.ffn.gate.weight"]["shape"] == [256, 1024]
    assert t["enc.conv1.weight"]["shape"] == [3, 3, 1, 8]


def test_progress_callback(sources, tmp_path):
    src_path, _ = sources["moss_transcribe"]
    calls = []
    quantize(src_path, tmp_path / "p.gguf", "q8_0", progress=lambda d, n, name: calls.append((d, n, name)))
    n = len(gguf.GGUFReader(str(src_path)).tensors)
    assert calls[0] == (0, n, "")
    assert [c[0] for c in calls] == list(range(n + 1))
    assert calls[-1][2] == "llm.final_norm.weight"


def test_progress_exception_aborts_cleanly(sources, tmp_path):
    src_path, _ = sources["moss_transcribe"]
    out = tmp_path / "abort.gguf"

    def boom(done, total, name):
        if done == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        quantize(src_path, out, "q4_k", progress=boom)
    assert not out.exists() and not Path(str(out) + ".part").exists()


def test_text_progress_bar(sources, tmp_path, capsys):
    src_path, _ = sources["moss_transcribe"]
    quantize(src_path, tmp_path / "bar.gguf", "q4_k", progress=True)
    err = capsys.readouterr().err
    assert "tensors (100%" in err
    assert "note: llm.blk.0.ffn.extra.weight: row length 100" in err


# ---- converter output (tests/conftest.py fixtures) and the runtime ----------------------------------------

LM_MATRICES = ("attn.q", "attn.k", "attn.v", "attn.o", "ffn.gate", "ffn.up", "ffn.down")


@pytest.mark.parametrize("arch", ["moss_transcribe", "moss_audio"])
def test_converter_output_rules_and_runtime(request, tmp_path, arch):
    """The real tensor names from crispmoss.convert: exactly the LM matrices (plus, for MOSS-Audio, the
    embedding and lm_head) are candidates, and the quantized file runs in the runtime with logits that stay
    close to the F16 model's."""
    from stagecheck import row_cosines, run_ours, speech

    src = request.getfixturevalue("tiny_transcribe_gguf_f16" if arch == "moss_transcribe" else "tiny_audio_gguf_f16")
    plan = quantize_plan(src, "q4_k")
    cand = {t["name"] for t in plan["tensors"] if t["candidate"]}
    n_layers = len({t["name"].split(".")[2] for t in plan["tensors"] if t["name"].startswith("llm.blk.")})
    want = {f"llm.blk.{i}.{m}.weight" for i in range(n_layers) for m in LM_MATRICES}
    if arch == "moss_audio":
        want |= {"llm.embed.weight", "llm.lm_head.weight"}
    assert cand == want
    for t in plan["tensors"]:
        if t["name"].startswith(("enc.", "adapter.", "deepstack.")) or t["name"] == "llm.embed.weight" and arch == "moss_transcribe":
            assert t["dst_type"] == t["src_type"], t["name"]

    audio = speech(1.0)
    base = run_ours(str(src), audio, 4)
    for target in ("q8_0", "q4_k"):
        out = tmp_path / f"{arch}-{target}.gguf"
        rep = quantize(src, out, target, progress=False)
        assert any(t["dst_type"] != t["src_type"] for t in rep["tensors"])
        ours = run_ours(str(out), audio, 4)
        np.testing.assert_array_equal(ours["enc.out"], base["enc.out"])  # the encoder is untouched
        cos = float(row_cosines(np.asarray(ours["logits"]), np.asarray(base["logits"])).min())
        print(f"{arch} {target}: min logits row cosine vs F16 {cos:.6f}")
        assert cos > 0.999, (target, cos)


# ---- errors -------------------------------------------------------------------------------------------


def test_missing_input(tmp_path):
    with pytest.raises(crispmoss.ModelError, match="not found"):
        quantize(tmp_path / "nope.gguf", tmp_path / "o.gguf", "q8_0", progress=False)


def test_not_gguf(tmp_path):
    p = tmp_path / "x.gguf"
    p.write_bytes(b"RIFF" + bytes(100))
    with pytest.raises(crispmoss.ModelError, match="not a GGUF"):
        quantize(p, tmp_path / "o.gguf", "q8_0", progress=False)
    d = tmp_path / "dir.gguf"
    d.mkdir()
    with pytest.raises(crispmoss.ModelError, match="directory"):
        quantize(d, tmp_path / "o.gguf", "q8_0", progress=False)


def test_truncated_and_malformed(sources, tmp_path):
    src_path, _ = sources["moss_transcribe"]
    data = src_path.read_bytes()
    trunc = tmp_path / "trunc.gguf"
    trunc.write_bytes(data[: len(data) - 5000])
    with pytest.raises(crispmoss.ModelError, match="truncated|malformed"):
        quantize(trunc, tmp_path / "o.gguf", "q8_0", progress=False)
    head = tmp_path / "head.gguf"
    head.write_bytes(data[:200])
    with pytest.raises(crispmoss.ModelError, match="malformed"):
        quantize(head, tmp_path / "o.gguf", "q8_0", progress=False)
    assert not (tmp_path / "o.gguf").exists()


def test_unknown_architecture(tmp_path):
    p = tmp_path / "llama.gguf"
    w = gguf.GGUFWriter(str(p), "llama")
    w.add_tensor("blk.0.attn_q.weight", np.zeros((256, 256), np.float16))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    with pytest.raises(crispmoss.ModelError, match="architecture 'llama'"):
        quantize(p, tmp_path / "o.gguf", "q8_0", progress=False)


def test_unsupported_type(sources, tmp_path):
    src_path, _ = sources["moss_transcribe"]
    for bad in ("q4_0", "q4_k_m", "int8", ""):
        with pytest.raises(crispmoss.InputError, match="supported: f32, f16, q8_0, q4_k, q5_k, q6_k"):
            quantize(src_path, tmp_path / "o.gguf", bad, progress=False)
    with pytest.raises(crispmoss.InputError):
        quantize(src_path, tmp_path / "o.gguf", "q8_0", n_threads=-1, progress=False)


def test_unsupported_source_type(tmp_path):
    def extra(w, stored):
        w.add_tensor("llm.blk.0.ffn.int.weight", np.zeros((4, 256), np.int32))

    p = tmp_path / "i32.gguf"
    make_gguf(p, "moss_transcribe", extra=extra)
    with pytest.raises(crispmoss.ModelError, match="llm.blk.0.ffn.int.weight.*i32"):
        quantize(p, tmp_path / "o.gguf", "q8_0", progress=False)


def test_output_errors(sources, tmp_path):
    src_path, _ = sources["moss_transcribe"]
    with pytest.raises(crispmoss.InputError, match="is the input"):
        quantize(src_path, src_path, "q8_0", progress=False)
    with pytest.raises(crispmoss.InputError, match="cannot create"):
        quantize(src_path, tmp_path / "no" / "such" / "dir.gguf", "q8_0", progress=False)


# ---- CLI ----------------------------------------------------------------------------------------------


def test_cli(sources, tmp_path, capsys):
    """add_cli/run_cli as the main `crispmoss` parser uses them (args.func(args) → exit code)."""
    src_path, _ = sources["moss_audio"]
    parser = argparse.ArgumentParser(prog="crispmoss")
    sub = parser.add_subparsers(dest="command", required=True)
    add_cli(sub)
    out = tmp_path / "cli.gguf"
    args = parser.parse_args(["quantize", str(src_path), str(out), "Q6_K", "--threads", "2"])
    assert args.func is run_cli and args.func(args) == 0
    assert "moss_audio q6_K" in capsys.readouterr().err
    assert {QT(t.tensor_type) for t in gguf.GGUFReader(str(out)).tensors} >= {QT.Q6_K, QT.Q8_0, QT.F16, QT.F32}

    args = parser.parse_args(["quantize", str(tmp_path / "missing.gguf"), str(out), "q8_0", "-q"])
    assert args.func(args) == 1
    err = capsys.readouterr().err
    assert "error:" in err and "not found" in err
    with pytest.raises(SystemExit):
        parser.parse_args(["quantize", str(src_path), str(out), "q4_0"])


def test_module_entry_point(sources, tmp_path):
    src_path, _ = sources["moss_transcribe"]
    out = tmp_path / "m.gguf"
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(crispmoss.__file__)))
    cmd = [sys.executable, "-m", "crispmoss.quantize", "quantize", str(src_path), str(out), "q8_0", "-q"]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    assert out.exists()
