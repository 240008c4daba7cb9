"""The AMX tile kernels (cpp/cpu/amx.cpp): products of F16 weights and F32 activations on the BF16 tiles, against
float64 products, on every tail shape (rows, k and activation rows not multiples of the tiles' 16 / 32, k slices,
activation-row blocks); the conv stems' 3x3 / stride 2 convolution; the same bits for any thread split; and which
weights a loaded model gives an AMX copy. Skipped where the CPU or OS lacks the tiles (the amx level then runs the
avx512 kernels)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from crispmoss import _core
from shared_paths import JFK
from test_cpu_levels import run_py

pytestmark = pytest.mark.skipif(not _core.amx_usable(), reason="CPU or OS without AMX-BF16 tiles")


def bf16(a: np.ndarray) -> np.ndarray:
    """float32 rounded to bfloat16 (to nearest, ties to even), as float64."""
    u = np.ascontiguousarray(a, dtype=np.float32).view(np.uint32).astype(np.uint64)
    u = ((u + 0x7FFF + ((u >> 16) & 1)) & 0xFFFF0000).astype(np.uint32)
    return u.view(np.float32).astype(np.float64)


def split(a: np.ndarray) -> np.ndarray:
    """hi + lo, each bfloat16, as the exact split makes them."""
    hi = bf16(a)
    return hi + bf16((a.astype(np.float64) - hi).astype(np.float32))


# Shapes: a single row/column/value, tile tails in every dimension (16 rows, 32 values of k, 16 activation rows),
# a k slice tail (slices of at most 1280 values), several 64-row activation blocks with a tail, several 256-row
# weight blocks with a tail of 17 rows (one thread: its rows span the blocks), an encoder shape.
SHAPES = [
    (1, 1, 1, 1), (5, 7, 16, 1), (16, 32, 16, 1), (17, 33, 17, 2), (33, 100, 33, 2), (100, 513, 70, 3),
    (37, 2600, 300, 2), (7, 9, 3, 1), (48, 64, 130, 4), (529, 1300, 97, 1), (1280, 1280, 143, 2),
]


@pytest.mark.parametrize("rows,k,n,nth", SHAPES)
def test_bf16_product_is_the_float_product_of_bf16_operands(rows, k, n, nth):
    rng = np.random.default_rng(rows * 1000 + k + n)
    w = rng.standard_normal((rows, k)).astype(np.float32)
    x = rng.standard_normal((n, k)).astype(np.float32)
    x[0] = 0
    if n > 40:
        x[40] = 1e3  # one large activation row
    y = _core.amx_test(w, x, nth, False)
    assert y.shape == (n, rows)
    assert np.all(y[0] == 0)
    wf = w.astype(np.float16).astype(np.float32)  # stored as F16
    ref = bf16(x) @ bf16(wf).T  # both operands rounded to BF16, exact products, float64 sums
    mag = np.abs(bf16(x)) @ np.abs(bf16(wf)).T + 1e-30
    assert (np.abs(y - ref) / mag).max() < 2e-6 * max(1.0, np.sqrt(k) / 4)  # F32 sums
    # and against the product asked for: BF16's 8 significant bits
    exact = x.astype(np.float64) @ wf.astype(np.float64).T
    assert (np.abs(y - exact) / (np.abs(x).astype(np.float64) @ np.abs(wf).T + 1e-30)).max() < 2 ** -7


@pytest.mark.parametrize("rows,k,n,nth", SHAPES[:8])
def test_exact_split_keeps_16_bits(rows, k, n, nth):
    rng = np.random.default_rng(rows + k * 7 + n)
    w = rng.standard_normal((rows, k)).astype(np.float32)
    x = rng.standard_normal((n, k)).astype(np.float32)
    y = _core.amx_test(w, x, nth, True)
    wf = w.astype(np.float16).astype(np.float64)
    assert np.array_equal(split(wf.astype(np.float32)), wf)  # an F16 value is exactly hi + lo
    exact = x.astype(np.float64) @ wf.T
    mag = np.abs(x).astype(np.float64) @ np.abs(wf).T + 1e-30
    assert (np.abs(y - exact) / mag).max() < 3e-5  # lo x lo dropped (~2^-16), F32 sums


@pytest.mark.parametrize("use_split", [False, True])
def test_same_bits_for_any_thread_count(use_split):
    rng = np.random.default_rng(3)
    w = rng.standard_normal((77, 1400)).astype(np.float32)
    x = rng.standard_normal((150, 1400)).astype(np.float32)
    y1 = _core.amx_test(w, x, 1, use_split)
    for nth in (2, 3, 7):
        assert np.array_equal(_core.amx_test(w, x, nth, use_split), y1), nth


@pytest.mark.parametrize("use_split", [False, True])
def test_same_bits_for_any_activation_count(use_split):
    """Each output sums over k in one fixed order whatever n is (blocks of activation rows, one or two tiles a
    kernel call, tails): the first m rows of a product are the product of the first m rows, bit for bit."""
    rng = np.random.default_rng(4)
    w = rng.standard_normal((300, 1400)).astype(np.float32)
    x = rng.standard_normal((200, 1400)).astype(np.float32)
    y = _core.amx_test(w, x, 2, use_split)
    for m in (1, 16, 17, 33, 64, 65, 143):
        assert np.array_equal(_core.amx_test(w, x[:m], 2, use_split), y[:m]), m


def conv_ref(w: np.ndarray, x: np.ndarray) -> np.ndarray:
    """3x3 / stride 2 / padding 1, w [OC, C, 3, 3], x [B, H, W, C] -> [B, OH, OW, OC], float64."""
    B, H, W, C = x.shape
    OH, OW = (H - 1) // 2 + 1, (W - 1) // 2 + 1
    xp = np.zeros((B, H + 2, W + 2, C))
    xp[:, 1:H + 1, 1:W + 1] = x
    y = np.zeros((B, OH, OW, w.shape[0]))
    for kh in range(3):
        for kw in range(3):
            patch = xp[:, kh:kh + 2 * OH:2, kw:kw + 2 * OW:2, :]  # [B, OH, OW, C]
            y += patch @ w[:, :, kh, kw].T
    return y


@pytest.mark.parametrize("oc,c,b,h,w_,nth", [(5, 1, 1, 9, 7, 1), (33, 20, 2, 11, 40, 2), (16, 64, 1, 6, 300, 3),
                                             (8, 3, 2, 40, 59, 1)])  # 1200 positions: 9 blocks of 128 and a tail
@pytest.mark.parametrize("use_split", [False, True])
def test_conv3x3_stride2(oc, c, b, h, w_, nth, use_split):
    rng = np.random.default_rng(oc + c + h)
    w = rng.standard_normal((oc, c, 3, 3)).astype(np.float32)
    x = rng.standard_normal((b, h, w_, c)).astype(np.float32)
    y = _core.amx_conv_test(w, x, nth, use_split)
    wf = w.astype(np.float16).astype(np.float32)
    mag = conv_ref(np.abs(wf).astype(np.float64), np.abs(x).astype(np.float64)) + 1e-30
    if use_split:
        ref, tol = conv_ref(wf.astype(np.float64), x.astype(np.float64)), 3e-5
    else:
        ref, tol = conv_ref(bf16(wf), bf16(x)), 2e-6 * max(1.0, np.sqrt(9 * c) / 4)
    assert y.shape == ref.shape
    assert (np.abs(y - ref) / mag).max() < tol


_COPIES = """
import json, os, sys
from crispmoss import _core
out = {}
for p in sys.argv[1:]:
    m = _core.Model(p)
    out[p] = m.placement["amx_bytes"]
print(json.dumps({"level": _core.cpu_level(), "bytes": out}))
"""


def test_which_models_get_amx_copies(tiny_transcribe_gguf_f16, tiny_transcribe_gguf_f32):
    """At the amx level an F16 file's encoder/adapter matrices get their tile copy; F32 weights never go through
    BF16; other levels and CRISPMOSS_AMX=off make none."""
    paths = [str(tiny_transcribe_gguf_f16), str(tiny_transcribe_gguf_f32)]
    out = run_py(_COPIES, *paths, level="amx")
    assert out.returncode == 0, out.stderr[-2000:]
    r = json.loads(out.stdout.strip().splitlines()[-1])
    assert r["level"] == "amx" and r["bytes"][paths[0]] > 0 and r["bytes"][paths[1]] == 0, r
    out = run_py(_COPIES, *paths, level="avx512")
    assert out.returncode == 0, out.stderr[-2000:]
    assert set(json.loads(out.stdout.strip().splitlines()[-1])["bytes"].values()) == {0}


# The decoder's prefill path (cpp/cpu/amx_dequant.h): Q4_K / Q8_0 / F16 / BF16 weights dequantized block by block
# into A tiles (weight rows as TDPBF16PS's A operand), the activations converted once into B tiles (VNNI pairs).
# k: whole blocks (Q4_K 256, Q8_0 32; F16/BF16 any, with 32-value tails) and k slices of 1024 with a tail; rows:
# tails of the 16-row panels, of the 128-row weight blocks and of thread ranges; n: 17..300 activation rows (16-row
# tails, 32-row pairs, passes of 256 with a tail).
DQ_SHAPES = [
    ("q4_k", 1, 256, 17, 1), ("q4_k", 33, 512, 40, 2), ("q4_k", 100, 1536, 300, 3), ("q4_k", 70, 256, 129, 2),
    ("q4_k", 161, 2304, 257, 1),
    ("q8_0", 5, 32, 17, 1), ("q8_0", 47, 96, 33, 3), ("q8_0", 64, 1344, 200, 2), ("q8_0", 300, 1056, 48, 2),
    ("f16", 7, 9, 17, 1), ("f16", 31, 70, 150, 2), ("f16", 100, 1000, 64, 3), ("f16", 140, 1100, 97, 1),
    ("bf16", 17, 33, 18, 2), ("bf16", 96, 640, 300, 3), ("bf16", 129, 2049, 31, 2),
]


@pytest.mark.parametrize("qtype,rows,k,n,nth", DQ_SHAPES)
def test_dequantized_product_is_the_float_product_of_bf16_operands(qtype, rows, k, n, nth):
    rng = np.random.default_rng(rows * 31 + k + n)
    w = rng.standard_normal((rows, k)).astype(np.float32)
    x = rng.standard_normal((n, k)).astype(np.float32)
    x[1] = 0
    y, deq = _core.amx_dequant_test(qtype, w, x, nth)  # deq: ggml's own dequantization, F32
    assert y.shape == (n, rows) and np.all(y[1] == 0)
    # the weights as ggml dequantizes them, rounded to BF16; BF16 activations; only the F32 sums differ
    ref = bf16(x) @ bf16(deq).T
    mag = np.abs(bf16(x)) @ np.abs(bf16(deq)).T + 1e-30
    assert (np.abs(y - ref) / mag).max() < 2e-6 * max(1.0, np.sqrt(k) / 4)
    # against the float64 product of the dequantized weights: BF16's 8 significant bits on each side
    exact = x.astype(np.float64) @ deq.astype(np.float64).T
    assert (np.abs(y - exact) / (np.abs(x).astype(np.float64) @ np.abs(deq).T + 1e-30)).max() < 2 ** -7
    for other in (1, 2, 3):  # the same bits for any thread split
        assert np.array_equal(_core.amx_dequant_test(qtype, w, x, other)[0], y), other


def test_dequantized_same_bits_for_any_activation_count():
    """Row j of a product does not depend on how many rows share it (32-row pairs, 256-row passes, 16-row tails)."""
    rng = np.random.default_rng(11)
    w = rng.standard_normal((150, 1280)).astype(np.float32)
    x = rng.standard_normal((300, 1280)).astype(np.float32)
    y = _core.amx_dequant_test("q4_k", w, x, 2)[0]
    for m in (17, 31, 32, 100, 256, 257):
        assert np.array_equal(_core.amx_dequant_test("q4_k", w, x[:m], 2)[0], y[:m]), m


def test_dequantized_f16_equals_the_packed_copy():
    """An F16 weight dequantized per block (weights as the A operand) gives the bits of its packed tile copy (the
    encoder's path, weights as the B operand): TDPBF16PS sums each k pair's products in k order either way."""
    rng = np.random.default_rng(5)
    w = rng.standard_normal((77, 1400)).astype(np.float32)
    x = rng.standard_normal((150, 1400)).astype(np.float32)
    x[3] *= 1e-39  # BF16 subnormals and zeros of either sign
    x[4, ::3] = -0.0
    assert np.array_equal(_core.amx_dequant_test("f16", w, x, 2)[0], _core.amx_test(w, x, 2, False))


def b_layout(x: np.ndarray) -> np.ndarray:
    """The B operand by definition: [panel, k step, tile row i, 2 j + e] = bf16 bits of x[16 panel + j][32 step + 2 i
    + e], zeros beyond n rows and k values."""
    n, k = x.shape
    npad, kpad = (n + 15) // 16 * 16, (k + 31) // 32 * 32
    bits = np.zeros((npad, kpad), np.uint16)
    bits[:n, :k] = (bf16(x).astype(np.float32).view(np.uint32) >> 16).astype(np.uint16)
    # [p, j, t, i, e] -> [p, t, i, j, e]
    return bits.reshape(npad // 16, 16, kpad // 32, 16, 2).transpose(0, 2, 3, 1, 4).reshape(npad // 16, kpad // 32, 16, 32)


@pytest.mark.parametrize("n,k,nth", [(1, 1, 1), (16, 32, 1), (17, 33, 2), (5, 70, 3), (33, 1000, 2), (300, 31, 3),
                                     (48, 64, 4)])
def test_activations_as_b_tiles(n, k, nth):
    """amx_convert_rows_b: BF16 VNNI pairs of 16-row panels, rounded to nearest even, zero tails, any thread split."""
    rng = np.random.default_rng(n * 7 + k)
    x = rng.standard_normal((n, k)).astype(np.float32)
    x[0, : min(k, 3)] = [np.float32(1 + 2**-8), np.float32(1 + 3 * 2**-8), np.float32(-(1 + 2**-8))][: min(k, 3)]  # ties
    out = _core.amx_rows_b_test(x, nth)
    assert np.array_equal(out, b_layout(x))


_ROUTES = """
import json, os, sys
from crispmoss import _core
from crispmoss import Model
os.environ["CRISPMOSS_AMX"] = sys.argv[3]  # read at load
os.environ["CRISPMOSS_PROFILE"] = "1"
m = Model(sys.argv[1], n_threads=2)
_core.profile_reset()
t = m.transcribe(sys.argv[2], max_new_tokens=4)
keys = [k for k in _core.profile_snapshot() if k.startswith("AMX") and ".llm." in "." + k.split(" ")[2]]
routed = m.placement["amx_prefill_weights"]
print(json.dumps({"n_prompt": t.timings["n_prompt"], "lm_amx": sorted(keys), "routed": routed,
                  "chunk": m.prefill_chunk}))
"""


@pytest.mark.parametrize("mode,level", [("", "amx"), ("off", "amx"), ("split", "amx"), ("", "avx512")])
def test_lm_prefill_on_the_tiles_only_where_asked(tiny_transcribe_gguf_f16, tiny_transcribe_gguf_f32, mode, level):
    """At the amx level an F16 (or quantized) file's decoder prefill runs on the tiles (profile keys 'AMX f16
    llm...'), in 256-position pieces; CRISPMOSS_AMX=off and =split and the other levels keep today's path for the
    LM (128-position pieces); an F32 file never goes through BF16."""
    out = {p: run_py(_ROUTES, str(p), str(JFK), mode, level=level)
           for p in (tiny_transcribe_gguf_f16, tiny_transcribe_gguf_f32)}
    r = {}
    for p, o in out.items():
        assert o.returncode == 0, o.stderr[-2000:]
        r[p] = json.loads(o.stdout.strip().splitlines()[-1])
    f16, f32 = r[tiny_transcribe_gguf_f16], r[tiny_transcribe_gguf_f32]
    assert f16["n_prompt"] > 16  # a prefill the tiles take
    assert f32["lm_amx"] == [] and f32["routed"] == 0 and f32["chunk"] == 128
    if mode == "" and level == "amx":
        assert f16["lm_amx"] and all(k.startswith("AMX f16 llm.") for k in f16["lm_amx"]) and f16["routed"] > 0, f16
        assert f16["chunk"] == 256  # prefill pieces on the tiles (model.PREFILL_CHUNK_AMX)
    else:
        assert f16["lm_amx"] == [] and f16["routed"] == 0 and f16["chunk"] == 128, f16
