"""Hand-made hostile GGUF files: each is one distinct corruption and must raise crispmoss.ModelError whose
message names the problem (never a crash, an abort or a generic exception).

Structural cases start from a small synthetic file; semantic ones (shapes, hyper-parameters, vocabulary)
from the tiny MOSS-Transcribe / MOSS-Audio conversions, edited part by part with cpp/fuzz/gguf_bytes.py,
which writes bytes that gguf-py's writer would refuse to produce.
"""
from __future__ import annotations

import struct
import sys
from pathlib import Path

import numpy as np
import pytest

import crispmoss
from crispmoss import ModelError
from crispmoss.quantize import quantize, quantize_plan

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "cpp" / "fuzz"))
import gguf_bytes as gb  # noqa: E402

# --------------------------------------------------------------------------------------------------------
# A small synthetic file: valid GGUF, three F32 tensors; the header walk runs before any model check.
# --------------------------------------------------------------------------------------------------------


def small() -> gb.GGUF:
    g = gb.GGUF()
    g.kv.append(gb.KV("general.architecture", gb.STRING, "moss_transcribe"))
    g.kv.append(gb.KV("general.name", gb.STRING, "hostile"))
    g.kv.append(gb.KV("moss_transcribe.llm.hidden_size", gb.U32, 8))
    for name in ("a", "b", "c"):
        g.tensors.append(gb.Tensor(name, [8, 2], gb.GGML_F32, np.arange(16, dtype=np.float32).tobytes()))
    return g


def header_len(g: gb.GGUF) -> int:
    """Offset of the data section in g's bytes."""
    raw = g.to_bytes()
    data = b"".join(t.data + b"\0" * (-len(t.data) % g.alignment) for t in g.tensors)
    return len(raw) - len(data)


def _edit(fn):
    def make() -> bytes:
        g = small()
        out = fn(g)
        return out if isinstance(out, bytes) else g.to_bytes()
    return make


def _set(attr, value):
    return _edit(lambda g: setattr(g, attr, value))


def _key_len_past_eof(g):
    raw = bytearray(g.to_bytes())
    struct.pack_into("<Q", raw, 24, 1 << 40)  # length of the first key
    return bytes(raw)


def _string_value_past_eof(g):
    g.kv.append(gb.KV("general.description", gb.STRING, "x"))
    raw = bytearray(g.to_bytes())
    i = raw.index(b"general.description") + len(b"general.description") + 4
    struct.pack_into("<Q", raw, i, len(raw))
    return bytes(raw)


def _huge_array(g):
    g.kv.append(gb.KV("tokenizer.ggml.scores", gb.ARRAY, [0.0], gb.F32, count=1 << 60))


def _huge_string_array(g):
    g.kv.append(gb.KV("tokenizer.ggml.tokens", gb.ARRAY, [b"a"], gb.STRING, count=1 << 50))


def _unknown_kv_type(g):
    g.kv.append(gb.KV("general.weird", 99, 0))
    raw = bytearray(g.to_bytes())
    return bytes(raw)


def _nested_array(g):
    g.kv.append(gb.KV("general.nested", gb.ARRAY, [], gb.ARRAY))


def _dup_key(g):
    g.kv.append(gb.KV("general.name", gb.STRING, "again"))


def _alignment(value, type_=gb.U32):
    def fn(g):
        g.kv.append(gb.KV("general.alignment", type_, value))
        if type_ == gb.U32 and value and (value & (value - 1)) == 0:
            g.alignment = value
    return _edit(fn)


def _long_name(g):
    g.tensors[0].name = "x" * 64


def _dup_tensor(g):
    g.tensors[1].name = "a"


def _five_dims(g):
    g.tensors[1].ne = [2, 2, 2, 2, 1]


def _negative_dim(g):
    g.tensors[1].ne = [8, -2]


def _zero_dim_huge_others(g):
    """0 elements by the product, but ggml_new_tensor skips the 0 and aborts on the rest (fuzz_ggml_gguf)."""
    g.tensors[1].ne, g.tensors[1].data = [144115188075855876, 0, 7884796894386323458, 46], b""


def _dims_overflow(g):
    g.tensors[1].ne = [1 << 32, 1 << 32]


def _unknown_type(type_):
    def fn(g):
        g.tensors[1].type = type_
    return _edit(fn)


def _block_mismatch(g):
    t = g.tensors[1]
    t.type, t.ne, t.data = gb.GGML_Q8_0, [48, 1], b"\0" * 51


def _offset_past_eof(g):
    g.tensors[2].offset = 1 << 20


def _misaligned(g):
    g.tensors[1].offset = 64 + 4


def _overlap(g):
    g.tensors[2].offset = 0


def _truncated_data(g):
    return g.to_bytes()[:-40]


def _truncated_header(g):
    return g.to_bytes()[: header_len(g) - 30]


def _no_tensors(g):
    g.tensors = []


def _bad_utf8_value(g):
    g.kv.append(gb.KV("general.description", gb.STRING, b"bad \xff\xfe text"))


def _bad_utf8_key(g):
    g.kv.append(gb.KV(b"general.k\xe9y", gb.U32, 1))


def _bad_utf8_array(g):
    g.kv.append(gb.KV("general.tags", gb.ARRAY, [b"ok", b"\xed\xa0\x80"], gb.STRING))  # a UTF-16 surrogate


def _bad_utf8_name(g):
    g.tensors[2].name = b"c\xc0\xaf"  # overlong '/'


def _name_nul(g):
    g.tensors[1].name = b"a\0b"


STRUCTURAL = {
    "bad_magic": (_set("magic", b"GGUX"), r"bad magic"),
    "empty_file": (lambda: b"", r"bad magic"),
    "only_magic": (lambda: b"GGUF", r"truncated GGUF header.*version"),
    "version_0": (_set("version", 0), r"unsupported GGUF version 0\b"),
    "version_1": (_set("version", 1), r"unsupported GGUF version 1\b"),
    "version_99": (_set("version", 99), r"unsupported GGUF version 99\b"),
    "version_byteswapped": (_set("version", 3 << 24), r"byte-swapped"),
    "huge_tensor_count": (_set("n_tensors", 1 << 40), r"declares 1099511627776 tensors"),
    "negative_tensor_count": (_set("n_tensors", -1), r"declares -1 tensors"),
    "huge_kv_count": (_set("n_kv", 1 << 62), r"declares 4611686018427387904 metadata entries"),
    "kv_count_past_table": (_set("n_kv", 5), r"metadata key #\d has length \d+ but only \d+ bytes"),
    "key_length_past_eof": (_edit(_key_len_past_eof), r"metadata key #0 has length 1099511627776"),
    "string_value_past_eof": (_edit(_string_value_past_eof), r"value of key 'general.description' has length"),
    "huge_array": (_edit(_huge_array), r"key 'tokenizer.ggml.scores' declares 1152921504606846976 elements"),
    "huge_string_array": (_edit(_huge_string_array), r"key 'tokenizer.ggml.tokens' declares 1125899906842624 strings"),
    "unknown_kv_type": (_edit(_unknown_kv_type), r"key 'general.weird' has unknown value type 99"),
    "nested_array": (_edit(_nested_array), r"key 'general.nested' is an array of arrays"),
    "duplicate_key": (_edit(_dup_key), r"duplicate metadata key 'general.name'"),
    "alignment_not_pow2": (_alignment(48), r"general.alignment is 48"),
    "alignment_zero": (_alignment(0), r"general.alignment is 0"),
    "alignment_wrong_type": (_alignment("32", gb.STRING), r"general.alignment must be a u32"),
    "tensor_name_too_long": (_edit(_long_name), r"name of 64 bytes"),
    "tensor_name_nul": (_edit(_name_nul), r"tensor name 'a\?b' contains a NUL byte"),
    # Python gets keys, names and values as str: invalid UTF-8 raised UnicodeDecodeError in inspect() before.
    "utf8_value": (_edit(_bad_utf8_value), r"the value of key 'general.description' is not valid UTF-8"),
    "utf8_key": (_edit(_bad_utf8_key), r"metadata key 'general.k\?y' is not valid UTF-8"),
    "utf8_array_element": (_edit(_bad_utf8_array), r"element 1 of key 'general.tags' is not valid UTF-8"),
    "utf8_tensor_name": (_edit(_bad_utf8_name), r"tensor name 'c\?\?' is not valid UTF-8"),
    "duplicate_tensor": (_edit(_dup_tensor), r"duplicate tensor 'a'"),
    "n_dims_5": (_edit(_five_dims), r"tensor 'b' has 5 dimensions"),
    "negative_dim": (_edit(_negative_dim), r"tensor 'b' has negative dimension -2"),
    "dims_overflow": (_edit(_dims_overflow), r"tensor 'b' has dimensions whose product overflows"),
    "zero_dim": (_edit(_zero_dim_huge_others), r"tensor 'b' has an empty dimension \(ne\[1\] = 0\)"),
    "unknown_ggml_type": (_unknown_type(1000), r"tensor 'b' has unknown ggml type 1000"),
    "removed_ggml_type": (_unknown_type(4), r"tensor 'b' has unknown ggml type 4"),  # Q4_2, dropped from ggml
    "row_not_block_multiple": (_edit(_block_mismatch), r"tensor 'b' of type q8_0 has rows of 48 elements"),
    "offset_past_eof": (_edit(_offset_past_eof), r"data of tensor 'c' lies past the end of the file"),
    "misaligned_offset": (_edit(_misaligned), r"tensor 'b' has data offset 68, not aligned to 32"),
    "overlapping_offsets": (_edit(_overlap), r"tensor 'c' has data offset 0, expected 128"),
    "truncated_data": (_edit(_truncated_data), r"truncated: data of tensor 'c'"),
    "truncated_header": (_edit(_truncated_header), r"truncated GGUF header|past the end of the file"),
    "no_tensors": (_edit(_no_tensors), r"contains no tensors"),
}


def _write(tmp_path: Path, name: str, data: bytes) -> str:
    p = tmp_path / f"{name}.gguf"
    p.write_bytes(data)
    return str(p)


def test_small_file_is_valid(tmp_path):
    """The synthetic base passes the header walk (and fails only for lack of model tensors)."""
    p = _write(tmp_path, "small", small().to_bytes())
    info = crispmoss._core.inspect(p)
    assert [t[0] for t in info["tensors"]] == ["a", "b", "c"]
    with pytest.raises(ModelError, match=r"missing key moss_transcribe.llm.num_layers"):
        crispmoss.Model(p)


@pytest.mark.parametrize("case", sorted(STRUCTURAL))
def test_structural(tmp_path, case):
    make, pattern = STRUCTURAL[case]
    p = _write(tmp_path, case, make())
    for load in (crispmoss.Model, crispmoss._core.inspect):
        with pytest.raises(ModelError, match=pattern) as e:
            load(p)
        assert p in str(e.value)


def test_quantize_small_file_is_valid(tmp_path):
    """Control for the next test: quantize takes the synthetic base (its tensors are copied as they are)."""
    p = _write(tmp_path, "small", small().to_bytes())
    out = tmp_path / "out.gguf"
    quantize(p, out, "q8_0", progress=False)
    assert [t[0] for t in crispmoss._core.inspect(str(out))["tensors"]] == ["a", "b", "c"]


@pytest.mark.parametrize("case", sorted(STRUCTURAL))
def test_quantize_rejects_structural(tmp_path, case):
    """quantize reads its input through the loader's checks: every hostile file fails with the loader's reason
    (huge counts, bad offsets, truncation, ...), before any output exists, never with a crash."""
    make, pattern = STRUCTURAL[case]
    p = _write(tmp_path, case, make())
    out = tmp_path / "out.gguf"
    for run in (lambda: quantize_plan(p, "q8_0"), lambda: quantize(p, out, "q4_k", progress=False)):
        with pytest.raises(ModelError, match=pattern) as e:
            run()
        assert f"'{p}' is a malformed GGUF file" in str(e.value)
    assert list(tmp_path.iterdir()) == [Path(p)]


# --------------------------------------------------------------------------------------------------------
# Semantic corruptions of real (tiny) model files.
# --------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def transcribe_parts(tiny_transcribe_gguf_f16) -> gb.GGUF:
    return gb.read(tiny_transcribe_gguf_f16)


@pytest.fixture(scope="module")
def audio_parts(tiny_audio_gguf_f16) -> gb.GGUF:
    return gb.read(tiny_audio_gguf_f16)


T = "moss_transcribe."


def _swap_dims(name):
    def fn(g):
        t = g.find_tensor(name)
        t.ne = list(reversed(t.ne))
    return fn


def _retype_f16(name):
    def fn(g):
        t = g.find_tensor(name)
        t.data = np.frombuffer(t.data, np.float32).astype(np.float16).tobytes()
        t.type = gb.GGML_F16
    return fn


def _kv(key, type_, value):
    return lambda g: g.set_kv(key, type_, value)


def _drop_kv(key):
    return lambda g: g.drop_kv(key)


def _drop_tensor(name):
    return lambda g: g.drop_tensor(name)


def _short_tokens(g):
    kv = g.find_kv("tokenizer.ggml.tokens")
    kv.value = kv.value[:-1]


def _bad_merge(g):
    kv = g.find_kv("tokenizer.ggml.merges")
    kv.value = list(kv.value)
    kv.value[5] = b"\xc4\xa0zz qqxj"  # both halves valid byte-unicode, the result is no token


def _small_vocab(g):
    """A consistent 1000-token model whose vocabulary lacks the template's role tokens (user/assistant)."""
    n = 1000
    g.set_kv(T + "llm.vocab_size", gb.U32, n)
    for k, v in (("bos_token_id", 990), ("eos_token_id", 991), ("start_token_id", 992), ("audio_start_id", 993),
                 ("audio_end_id", 994)):
        g.set_kv(T + k, gb.U32, v)
    toks = g.find_kv("tokenizer.ggml.tokens")
    toks.value = list(toks.value[:n - 10]) + [f"<|extra{i}|>".encode() for i in range(10)]
    g.find_kv("tokenizer.ggml.merges").value = g.find_kv("tokenizer.ggml.merges").value[: n - 10 - 256]
    emb = g.find_tensor("llm.embed.weight")
    row = emb.ne[0] * 2
    emb.ne = [emb.ne[0], n]
    emb.data = emb.data[: row * n]


def _scale_values(name, index, factor):
    """Multiplies element ``index`` (None: the largest) of the F32 tensor ``name`` by ``factor``."""
    def fn(g):
        t = g.find_tensor(name)
        v = np.frombuffer(t.data, np.float32).copy()
        v[int(np.argmax(v)) if index is None else index] *= factor
        t.data = v.tobytes()
    return fn


def _other_filterbank(g):
    """An 80-bin-style front end squeezed into the 128 x 201 slot: the filters of the upper half of the band."""
    t = g.find_tensor("audio.mel_filters")
    v = np.frombuffer(t.data, np.float32).reshape(201, 128)
    t.data = np.ascontiguousarray(np.roll(v, 1, axis=1)).tobytes()


def _nan_float(key):
    return lambda g: g.set_kv(key, gb.F32, float("nan"))


SEMANTIC = {
    "missing_arch": (_drop_kv("general.architecture"), r"missing key general.architecture"),
    "arch_not_string": (_kv("general.architecture", gb.U32, 7), r"general.architecture is not a string"),
    "wrong_arch": (_kv("general.architecture", gb.STRING, "llama"), r"architecture 'llama' is not supported"),
    "wrong_shape": (_swap_dims("enc.conv_out.weight"),
                    r"tensor 'enc.conv_out.weight' has shape \[64, 512\], expected \[512, 64\]"),
    "missing_tensor": (_drop_tensor("enc.ln_post.bias"), r"missing tensor 'enc.ln_post.bias'"),
    "missing_layer_tensor": (_drop_tensor("llm.blk.1.ffn.down.weight"), r"missing tensor 'llm.blk.1.ffn.down.weight'"),
    "f16_bias": (_retype_f16("enc.blk.0.attn.q.bias"), r"tensor 'enc.blk.0.attn.q.bias' has unsupported type f16"),
    "key_wrong_type": (_kv(T + "llm.hidden_size", gb.STRING, "48"),
                       r"key moss_transcribe.llm.hidden_size is not an unsigned integer"),
    "float_key_wrong_type": (_kv(T + "llm.rope_theta", gb.STRING, "1e6"),
                             r"key moss_transcribe.llm.rope_theta is not a float"),
    "missing_required_key": (_drop_kv(T + "llm.num_layers"), r"missing key moss_transcribe.llm.num_layers"),
    "heads_not_dividing_width": (_kv(T + "enc.encoder_attention_heads", gb.U32, 3),
                                 r"encoder width is not a multiple of its heads"),
    "kv_heads_not_dividing_heads": (_kv(T + "llm.num_kv_heads", gb.U32, 3),
                                    r"num_heads must be a multiple of num_kv_heads"),
    "zero_heads": (_kv(T + "llm.num_heads", gb.U32, 0), r"key moss_transcribe.llm.num_heads is 0, outside \[1, 1024\]"),
    "huge_layers": (_kv(T + "enc.encoder_layers", gb.U32, 100000),
                    r"key moss_transcribe.enc.encoder_layers is 100000, outside \[1, 256\]"),
    "negative_as_i32": (_kv(T + "llm.num_layers", gb.I32, -5), r"key moss_transcribe.llm.num_layers is negative"),
    "wrapping_u32": (_kv(T + "llm.hidden_size", gb.U32, 0xFFFFFFF0), r"llm.hidden_size is 4294967280, outside"),
    "nan_rope_theta": (_nan_float(T + "llm.rope_theta"), r"key moss_transcribe.llm.rope_theta is nan"),
    "negative_eps": (_kv(T + "enc.layer_norm_eps", gb.F32, -1.0), r"enc.layer_norm_eps is -1, outside"),
    "odd_head_dim": (_kv(T + "llm.head_dim", gb.U32, 15), r"llm.attn.q.weight|head_dim must be even"),
    "window_too_small": (_kv(T + "enc.n_window_infer", gb.U32, 10), r"encoder windowing hyper-parameters"),
    "vocab_tokens_mismatch": (_short_tokens, r"tokenizer.ggml.tokens has 151935 entries but the vocabulary has 151936"),
    "vocab_embedding_mismatch": (_kv(T + "llm.vocab_size", gb.U32, 151000),
                                 r"tensor 'llm.embed.weight' has shape \[48, 151936\], expected \[48, 151000\]"),
    "special_id_outside_vocab": (_kv(T + "eos_token_id", gb.U32, 10 ** 6), r"special token id 1000000 is outside"),
    "tokens_not_strings": (_kv("tokenizer.ggml.tokens", gb.U32, 1), r"tokenizer.ggml.tokens is not an array of strings"),
    "bad_merge": (_bad_merge, r"bad tokenizer data|merge 5"),
    # The template is tokenized (no fixed ids that could index past the embedding); a vocabulary that cannot spell
    # its role names as single tokens is refused instead.
    "prompt_id_outside_vocab": (_small_vocab, r"role '\w+' is \d+ tokens in this vocabulary of 1000, not one"),
    "mel_bins": (_kv(T + "enc.num_mel_bins", gb.U32, 80), r"num_mel_bins must be 128"),
    # the front end a file declares must be the one the runtime computes (else it would be silently mis-read)
    "mel_filters_altered": (_scale_values("audio.mel_filters", None, 1.001),
                            r"audio.mel_filters \(a different mel filterbank\) differs .* at element"),
    "mel_filters_other_bank": (_other_filterbank, r"audio.mel_filters \(a different mel filterbank\) differs"),
    "mel_filters_shape": (_swap_dims("audio.mel_filters"), r"audio.mel_filters has 201 x 128 weights, not 128 mel"),
    "mel_filters_f16": (_retype_f16("audio.mel_filters"), r"tensor 'audio.mel_filters' must be f32"),
    "mel_window_altered": (_scale_values("audio.mel_window", 100, 0.99), r"audio.mel_window \(not the periodic Hann"),
}


def test_roundtrip_loads(tmp_path, transcribe_parts):
    """The serialiser is faithful: the unedited parts load and transcribe."""
    p = transcribe_parts.write(tmp_path / "same.gguf")
    m = crispmoss.Model(p)
    assert m.arch == "moss_transcribe"
    assert m._core.n_vocab == 151936


def test_front_end_tensors_are_optional(tmp_path, transcribe_parts):
    """Files without audio.mel_filters / audio.mel_window load (the runtime computes the bank itself)."""
    g = transcribe_parts.copy()
    for name in ("audio.mel_filters", "audio.mel_window"):
        g.drop_tensor(name)
    assert crispmoss.Model(g.write(tmp_path / "no_front_end.gguf")).arch == "moss_transcribe"


@pytest.mark.parametrize("case", sorted(SEMANTIC))
def test_semantic(tmp_path, transcribe_parts, case):
    edit, pattern = SEMANTIC[case]
    g = transcribe_parts.copy()
    edit(g)
    p = g.write(tmp_path / f"{case}.gguf")
    with pytest.raises(ModelError, match=pattern) as e:
        crispmoss.Model(p)
    assert p in str(e.value)


A = "moss_audio."

AUDIO = {
    "duplicate_taps": (lambda g: g.set_kv(A + "deepstack.tap.1", gb.U32, 2),
                       r"DeepStack taps 0 and 1 both read encoder layer 2"),
    "tap_outside_encoder": (lambda g: g.set_kv(A + "deepstack.tap.2", gb.U32, 8), r"tap layer 8 is outside the encoder"),
    "huge_tap_count": (lambda g: g.set_kv(A + "deepstack.num_taps", gb.U32, 10 ** 9),
                       r"deepstack.num_taps is 1000000000, outside \[0, 64\]"),
    "inject_more_than_taps": (lambda g: g.set_kv(A + "deepstack.num_inject_layers", gb.U32, 7),
                              r"num_inject_layers is 7, outside \[0, 3\]"),
    "missing_merger": (lambda g: g.drop_tensor("deepstack.2.down.weight"), r"missing tensor 'deepstack.2.down.weight'"),
    "odd_width": (lambda g: g.set_kv(A + "enc.d_model", gb.U32, 33), r"not a multiple of its heads|must be even"),
}


@pytest.mark.parametrize("case", sorted(AUDIO))
def test_audio_semantic(tmp_path, audio_parts, case):
    edit, pattern = AUDIO[case]
    g = audio_parts.copy()
    edit(g)
    p = g.write(tmp_path / f"{case}.gguf")
    with pytest.raises(ModelError, match=pattern):
        crispmoss.Model(p)


def _cuts(raw: bytes) -> list:
    """Truncation points across the header, metadata, tensor table and data of a model file."""
    hl = raw.index(b"audio.mel_filters")
    return sorted({0, 3, 4, 8, 16, 24, 30, 100, hl - 5, hl + 40, len(raw) // 2, len(raw) - 1}
                  | {int(x) for x in np.linspace(hl, len(raw) - 1, 12)})


def test_every_truncation_point_fails_cleanly(tmp_path, transcribe_parts):
    """Cutting the file anywhere (header, metadata, tensor table, data) gives ModelError, never a crash."""
    raw = transcribe_parts.to_bytes()
    for cut in _cuts(raw):
        p = _write(tmp_path, f"cut{cut}", raw[:cut])
        with pytest.raises(ModelError, match=r"bad magic|truncated|past the end|remain|cannot hold"):
            crispmoss.Model(p)


def test_quantize_every_truncation_point_fails_cleanly(tmp_path, transcribe_parts):
    """The same cuts through quantize: ModelError naming the truncation, no output left behind."""
    raw = transcribe_parts.to_bytes()
    out = tmp_path / "out" / "q.gguf"
    out.parent.mkdir()
    for cut in _cuts(raw):
        p = _write(tmp_path, f"cut{cut}", raw[:cut])
        with pytest.raises(ModelError, match=r"malformed GGUF file: .*(bad magic|truncated|past the end|remain|cannot hold)"):
            quantize(p, out, "q8_0", progress=False)
    assert list(out.parent.iterdir()) == []


def test_not_a_file(tmp_path):
    with pytest.raises(ModelError, match="no such file"):
        crispmoss.Model(tmp_path / "absent.gguf")
    with pytest.raises(ModelError, match="not a regular file"):
        crispmoss._core.inspect(str(tmp_path))


# --------------------------------------------------------------------------------------------------------
# Weight types: any type the loader accepts must run (or fail with a crispmoss error), never abort in ggml.
# --------------------------------------------------------------------------------------------------------

# ggml type ids (ggml.h): a spread of block sizes and kernels; random bytes give random (even NaN) scales.
# (Every type ggml knows was swept once by hand the same way: none aborted.)
SWEEP = {"bf16": 30, "q4_0": 2, "q8_0": 8, "q4_k": 12, "iq4_nl": 20, "mxfp4": 39}
_BLOCK = {0: (1, 4), 30: (1, 2), 2: (32, 18), 8: (32, 34), 12: (256, 144), 14: (256, 210), 20: (32, 18),
          35: (256, 66), 39: (32, 17)}


@pytest.mark.parametrize("tname", sorted(SWEEP))
def test_weight_type_sweep(tmp_path, transcribe_parts, tname):
    type_id = SWEEP[tname]
    blck, size = _BLOCK[type_id]
    rng = np.random.default_rng(type_id)
    g = transcribe_parts.copy()
    changed = 0
    for name in ("enc.conv_out.weight", "llm.embed.weight", "llm.blk.0.ffn.down.weight"):
        t = g.find_tensor(name)
        if t.ne[0] % blck:
            continue
        n = t.ne[0] * t.ne[1] // blck * size
        t.type = type_id
        if type_id in (0, 30):
            vals = rng.standard_normal(t.ne[0] * t.ne[1]).astype(np.float32) * 0.05
            t.data = vals.tobytes() if type_id == 0 else (vals.view(np.uint32) >> 16).astype(np.uint16).tobytes()
        else:
            t.data = rng.integers(0, 256, n, dtype=np.uint8).tobytes()
        changed += 1
    assert changed >= 1
    m = crispmoss.Model(g.write(tmp_path / f"{tname}.gguf"))
    audio = np.sin(np.arange(8000, dtype=np.float32) * 0.03) * 0.2
    try:
        t = m.transcribe(audio, max_new_tokens=2)
        assert len(t.tokens) <= 2
    except crispmoss.CrispMossError as e:  # random scales may be NaN: no finite logit
        assert "finite" in str(e)


def test_layer_count_limits_run(tmp_path, transcribe_parts):
    """The largest accepted layer counts (256 encoder and 256 LM layers) build graphs that fit the compute
    graph's node budget and run; one more layer is refused at load."""
    g = transcribe_parts.copy()
    for prefix, key in (("enc.blk.", T + "enc.encoder_layers"), ("llm.blk.", T + "llm.num_layers")):
        layer0 = [t for t in g.tensors if t.name.startswith(prefix + "0.")]
        have = g.find_kv(key).value
        for il in range(have, 256):
            for t in layer0:
                g.tensors.append(gb.Tensor(t.name.replace(prefix + "0.", f"{prefix}{il}."), list(t.ne), t.type,
                                           t.data))
        g.set_kv(key, gb.U32, 256)
    m = crispmoss.Model(g.write(tmp_path / "deep.gguf"))
    t = m.transcribe(np.zeros(3200, np.float32), max_new_tokens=2)
    assert len(t.tokens) <= 2
    g.set_kv(T + "llm.num_layers", gb.U32, 257)
    with pytest.raises(ModelError, match=r"num_layers is 257, outside \[1, 256\]"):
        crispmoss.Model(g.write(tmp_path / "deeper.gguf"))


def test_fuzz_seeds_name_architectures_from_the_converter_tables(tmp_path):
    """cpp/fuzz/make_seeds.py writes one micro file per architecture, named from crispmoss.convert.tables."""
    import make_seeds

    from crispmoss import _core, testing

    make_seeds.gguf_seeds(tmp_path)
    for arch in testing.ARCHS:
        path = tmp_path / "gguf" / f"{arch}-micro.gguf"
        assert _core.inspect(str(path))["architecture"] == arch
