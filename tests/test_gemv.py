"""Our CPU kernels, at every instruction-set level this CPU has (cpp/cpu/level.h: avx2, avx512; amx runs the
avx512 kernels): the matrix-vector kernel (cpp/cpu/gemv.cpp, gemv_avx2.cpp), used for decoded tokens against Q4_K,
Q8_0, F16 and F32 weights, must compute exactly the integer arithmetic of 8-bit activations times the quantized
weights (F16/F32: the float product), for every row split ggml's threads may give it; the F16 matrix kernel
(cpp/cpu/gemm.cpp, encoders and F16 prefill) the float product, bit-identical for every thread count and level.
Tests for a level the CPU lacks skip. (Model-level agreement with ggml's kernels: test_real_widths.py; with the
PyTorch reference: the e2e tests on F16 files; every level's greedy tokens: test_cpu_levels.py.)"""
from __future__ import annotations

import numpy as np
import pytest

from crispmoss import _core

pytestmark = pytest.mark.skipif(_core.cpu_best_level() == "none",
                                reason="CPU without AVX2/FMA/F16C: decode uses ggml's kernels, ours are not called")

ORDER = ("none", "avx2", "avx512", "amx")


def has(level: str) -> bool:
    return ORDER.index(level) <= ORDER.index(_core.cpu_best_level())


# The levels with kernels of their own (amx runs the avx512 ones: checked bit for bit in test_levels_agree).
LEVELS = [pytest.param(lv, marks=pytest.mark.skipif(not has(lv), reason=f"this CPU lacks {lv}"))
          for lv in ("avx2", "avx512")]

BLOCK = {"q4_k": 256, "q8_0": 32, "f16": 1}


def quantize_x(x: np.ndarray, qtype: str) -> np.ndarray:
    """x quantized as the kernel does (per block: d = amax / 127, q = round-half-even(x * 127 / amax)), as float64
    values q * d. F16/F32 weights take x as it is."""
    if qtype in ("f16", "f32"):
        return x.astype(np.float64)
    xb = x.astype(np.float32).reshape(-1, BLOCK[qtype])
    amax = np.abs(xb).max(axis=1)
    iscale = np.where(amax > 0, np.float32(127) / np.where(amax > 0, amax, 1), 0).astype(np.float32)
    q = np.rint(xb * iscale[:, None])
    return (q.astype(np.float64) * (amax / np.float32(127)).astype(np.float64)[:, None]).ravel()


def emulate(deq: np.ndarray, x: np.ndarray, qtype: str) -> np.ndarray:
    """The kernel's product in exact float64 arithmetic: x quantized as the kernel does, times the dequantized
    weights."""
    return deq.astype(np.float64) @ quantize_x(x, qtype)


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("qtype,rows,cols,nth", [
    ("q4_k", 37, 512, 1), ("q4_k", 300, 2048, 3), ("q4_k", 2048, 6144, 2),
    ("q8_0", 5, 96, 4), ("q8_0", 64, 32, 1), ("q8_0", 1000, 2048, 2), ("q8_0", 3, 6144, 7),
    ("f16", 9, 2048, 2), ("f16", 300, 77, 3), ("f16", 4, 16, 1), ("f16", 2, 48, 2),
])
def test_kernel_matches_integer_arithmetic(qtype, rows, cols, nth, level):
    rng = np.random.default_rng(rows + cols)
    w = rng.standard_normal((rows, cols)).astype(np.float32) * 0.02
    x = rng.standard_normal(cols).astype(np.float32) * 3
    x[: BLOCK[qtype]] = 0  # a block of zeros: d = 0
    x[-1] = 1e4  # one outlier dominates its block's scale
    y, deq = _core.gemv_test(qtype, w, x, nth, level)
    ref = emulate(deq, x, qtype)
    err = np.abs(y - ref).max() / np.abs(ref).max()
    assert err < 2e-6, err
    if qtype == "f16":
        return
    # and it is the product that was asked for, up to 8-bit activations
    exact = deq.astype(np.float64) @ x.astype(np.float64)
    assert np.linalg.norm(y - exact) / np.linalg.norm(exact) < 2e-2


# Shapes cover: a single weight row, tile tails (rows not a multiple of 12, columns not of 16/32), k slices
# (128) with a tail, column blocks (at most 512, as even as whole tiles allow: 529 = 288 + 241, 1100 = 384 + 384 +
# 332) with a tail, the encoder's shapes; at the AVX2 level the R x 8 tile of a last 1..8 columns under 7..12 rows
# (MOSS-Transcribe's 5 s window: 65 columns; 8 columns: no mask); k panels (1 MB of x^T: 768 k rows at 300
# columns) with a tail.
@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("rows,k,n,nth", [
    (1, 1, 16, 1), (5, 7, 16, 1), (12, 256, 32, 1), (13, 300, 33, 2), (25, 257, 17, 3), (100, 513, 70, 4),
    (37, 600, 300, 2), (30, 64, 529, 5), (1280, 1280, 104, 2), (7, 9, 3, 1), (19, 40, 9, 2),
    (24, 600, 65, 1), (19, 300, 8, 2), (30, 2100, 300, 2), (13, 130, 1100, 2),
])
def test_gemm_matches_float_product(rows, k, n, nth, level):
    rng = np.random.default_rng(rows * k + n)
    w = rng.standard_normal((rows, k)).astype(np.float32)
    x = rng.standard_normal((n, k)).astype(np.float32)
    x[0] = 0
    if n > 40:
        x[40, :] = 1e3  # one large activation row
    y = _core.gemm_test(w, x, nth, level)
    assert y.shape == (n, rows)
    ref = x.astype(np.float64) @ w.astype(np.float16).astype(np.float64).T  # weights rounded to F16, as stored
    assert np.all(y[0] == 0)
    err = np.abs(y - ref) / (np.abs(x).astype(np.float64) @ np.abs(w.astype(np.float16).astype(np.float64)).T + 1e-30)
    assert err.max() < 1e-6 * max(1.0, np.sqrt(k) / 4), float(err.max())  # F32 sums, no F16 rounding of x


@pytest.mark.parametrize("level", LEVELS)
def test_gemm_same_bits_for_any_thread_count(level):
    rng = np.random.default_rng(1)
    w = rng.standard_normal((77, 700)).astype(np.float32)
    x = rng.standard_normal((45, 700)).astype(np.float32)
    y1 = _core.gemm_test(w, x, 1, level)
    for nth in (2, 3, 7, 16):
        assert np.array_equal(_core.gemm_test(w, x, nth, level), y1), nth


@pytest.mark.parametrize("level", LEVELS)
def test_gemm_bias_and_gelu_as_written(level):
    """Bias and GELU added as the kernel writes its outputs (the encoders' fc1, the conv stems): the same bits as the
    product followed by a bias addition in F32 and the GELU pass."""
    rng = np.random.default_rng(2)
    w = rng.standard_normal((29, 300)).astype(np.float32)
    x = rng.standard_normal((41, 300)).astype(np.float32) * 0.1
    b = rng.standard_normal(29).astype(np.float32)
    y = _core.gemm_test(w, x, 3, level)
    assert np.array_equal(_core.gemm_test(w, x, 3, level, b), y + b)
    assert np.array_equal(_core.gemm_test(w, x, 3, level, b, True), _core.gelu_test((y + b).ravel(), level).reshape(y.shape))


def conv_reference(w: np.ndarray, x: np.ndarray):
    """The 3x3 / stride 2 / padding 1 convolution in float64 (weights rounded to F16, as stored) and the bound's
    scale: the same sum over |w| |x|."""
    B, C, H, W = x.shape
    OH, OW = (H - 1) // 2 + 1, (W - 1) // 2 + 1
    wd = w.astype(np.float16).astype(np.float64)
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (1, 1), (1, 1)))
    patches = np.stack([np.stack([xp[:, :, kh:kh + 2 * OH - 1:2, kw:kw + 2 * OW - 1:2] for kw in range(3)], 2)
                        for kh in range(3)], 2)  # [B, C, 3, 3, OH, OW]
    return (np.einsum("ocij,bcijhw->bohw", wd, patches),
            np.einsum("ocij,bcijhw->bohw", np.abs(wd), np.abs(patches)))


# Shapes (OC, C, B, H, W): one output, odd and even sizes (the last column / row's taps outside), k = 9 C across
# k slices of 256 with a tail, outputs across column blocks of 256 with a tail, weight-row tails, batches.
@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("oc,c,b,h,w,nth", [
    (1, 1, 1, 1, 1, 1), (13, 1, 2, 9, 7, 2), (5, 3, 1, 8, 8, 1), (25, 7, 2, 33, 17, 3), (30, 40, 1, 12, 70, 2),
    (12, 2, 1, 41, 30, 1), (7, 29, 3, 5, 6, 4),
])
def test_conv_stem_matches_float_conv(oc, c, b, h, w, nth, level):
    rng = np.random.default_rng(oc * 1000 + c * 10 + h)
    wt = rng.standard_normal((oc, c, 3, 3)).astype(np.float32)
    x = rng.standard_normal((b, c, h, w)).astype(np.float32)
    bias = rng.standard_normal(oc).astype(np.float32)
    y = _core.conv_stem_test(wt, x, bias, nth, False, level)
    ref, scale = conv_reference(wt, x)
    assert y.shape == ref.shape
    err = np.abs(y - bias[None, :, None, None] - ref) / (scale + np.abs(bias)[None, :, None, None] + 1e-30)
    assert err.max() < 1e-6 * max(1.0, np.sqrt(9 * c) / 4), float(err.max())
    g = _core.conv_stem_test(wt, x, bias, 1, True, level)  # GELU as written: the same bits as a pass afterwards,
    assert np.array_equal(g, _core.gelu_test(y.ravel(), level).reshape(y.shape))  # at any thread count


def test_bad_arguments():
    with pytest.raises(Exception, match="whole blocks"):
        _core.gemv_test("q4_k", np.zeros((2, 100), np.float32), np.zeros(100, np.float32), 1)
    with pytest.raises(Exception, match="q4_k"):
        _core.gemv_test("q5_k", np.zeros((2, 256), np.float32), np.zeros(256, np.float32), 1)
    with pytest.raises(Exception, match="gemm_test"):
        _core.gemm_test(np.zeros((2, 8), np.float32), np.zeros((3, 9), np.float32), 1)
    with pytest.raises(Exception, match="conv_stem_test"):
        _core.conv_stem_test(np.zeros((2, 3, 3, 3), np.float32), np.zeros((1, 2, 5, 5), np.float32), np.zeros(2, np.float32))
    with pytest.raises(Exception, match="level must be"):
        _core.gelu_test(np.zeros(3, np.float32), "sse2")
    with pytest.raises(Exception, match="cannot run"):
        _core.gelu_test(np.zeros(3, np.float32), "none")


@pytest.mark.parametrize("level", LEVELS)
def test_gelu_matches_erf_form(level):
    """The vectorized GELU the encoders use on such CPUs: x/2 (1 + erf(x/sqrt 2)) to float precision, over the
    whole range, at every tail length, with ggml's behaviour at infinities and NaN."""
    import math

    rng = np.random.default_rng(0)
    x = np.concatenate([np.linspace(-12, 12, 20001), rng.standard_normal(5000) * 3, [0.0, -0.0, 1e-30, -1e-30,
                                                                                    1e30, -1e30, 88.0, -88.0]])
    x = x.astype(np.float32)
    ref = np.array([0.5 * v * (1 + math.erf(v / math.sqrt(2))) for v in x.astype(np.float64)])
    for n in (len(x), 1, 15, 17, 33):  # masked tails
        y = _core.gelu_test(x[:n], level)
        err = np.abs(y - ref[:n]) / np.maximum(1.0, np.abs(ref[:n]))
        assert err.max() < 3e-7, (n, float(err.max()), float(x[:n][err.argmax()]))
    y = _core.gelu_test(np.array([np.inf, -np.inf, np.nan], np.float32), level)
    assert y[0] == np.inf and np.isnan(y[1]) and np.isnan(y[2])  # as 0.5 x (1 + erff(x)) gives


# --------------------------------------------------------------------------------------------------------------
# Several activation rows (one decode step of several sequences, short prefill chunks)

BLOCK["f32"] = 1


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("qtype,rows,cols", [
    ("q4_k", 37, 512), ("q4_k", 200, 2048), ("q8_0", 5, 96), ("q8_0", 64, 32), ("q8_0", 33, 2080),
    ("f16", 9, 2048), ("f16", 30, 77), ("f16", 4, 16), ("f32", 11, 2048), ("f32", 7, 45), ("f32", 3, 5),
])
def test_rows_bit_identical_to_one_row(qtype, rows, cols, level):
    """Every activation row of a multi-row call gets exactly the bits the one-row call gives it, for every row
    count 1..16 (groups of 4 and each tail 1-3), every thread split, and checked against float64 as above."""
    rng = np.random.default_rng(rows * 7 + cols)
    w = rng.standard_normal((rows, cols)).astype(np.float32) * 0.02
    xs = rng.standard_normal((16, cols)).astype(np.float32) * 3
    xs[3, : BLOCK[qtype]] = 0
    xs[5, -1] = 1e4
    alone = np.stack([_core.gemv_test(qtype, w, xs[j], 1, level)[0] for j in range(16)])
    _, deq = _core.gemv_test(qtype, w, xs[0], 1, level)
    for j in range(16):
        ref = emulate(deq, xs[j], qtype if qtype != "f32" else "f16")
        assert np.abs(alone[j] - ref).max() <= 2e-6 * np.abs(ref).max() + 1e-30, (qtype, j)
    for n_x in range(1, 17):
        for nth in (1, 3):
            y, _ = _core.gemv_test(qtype, w, xs[:n_x], nth, level)
            assert y.shape == (n_x, rows)
            assert np.array_equal(y, alone[:n_x]), (qtype, n_x, nth)
    # the same row in another position of the batch, beside other rows
    perm = xs[[7, 0, 12, 3, 3, 9]]
    y, _ = _core.gemv_test(qtype, w, perm, 2, level)
    assert np.array_equal(y, alone[[7, 0, 12, 3, 3, 9]])


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("qtype,rows,cols", [
    ("q4_k", 300, 512), ("q8_0", 77, 96), ("f16", 45, 100), ("f32", 21, 47),
])
def test_decode_rows_grouping_bit_identical(qtype, rows, cols, level):
    """More activation rows than one kernel call takes (a decode step of 17-32 sequences: cpu::gemv_rows quantizes
    them once, walks the weight rows in sub-blocks and passes each sub-block to the kernel for every group of 16
    rows): every row gets the bits of its one-row call, for odd row counts, thread splits and sub-block sizes
    (smaller than a 16-row group, a few groups, the whole matrix)."""
    rng = np.random.default_rng(rows + cols)
    w = rng.standard_normal((rows, cols)).astype(np.float32) * 0.02
    xs = rng.standard_normal((33, cols)).astype(np.float32) * 3
    xs[20, : BLOCK[qtype]] = 0
    alone = np.stack([_core.gemv_test(qtype, w, xs[j], 1, level)[0] for j in range(33)])
    for n_x in (17, 23, 33):
        for nth, block_bytes in ((1, 1), (3, 5000), (2, 1 << 18)):
            y, _ = _core.gemv_test(qtype, w, xs[:n_x], nth, level, block_bytes)
            assert np.array_equal(y, alone[:n_x]), (qtype, n_x, nth, block_bytes)


@pytest.mark.skipif(not _core.amx_int8_usable(), reason="no AMX-INT8 tiles on this CPU / OS")
@pytest.mark.parametrize("rows,cols", [(37, 512), (300, 2048), (16, 256)])
def test_q4k_tiles_bit_identical(rows, cols):
    """Q4_K products of 16+ rows at the amx level run their integer sums on the AMX-INT8 tiles, with the sub-block
    scales split into the weight bytes (cpu/gemv.cpp, q4k_rows16_amx): every row must get exactly the bits of the
    AVX-512 kernel and of its one-row call, for 16-40 rows (one or two tile row groups, a tail past 32), thread
    splits, tail weight rows, all-zero blocks and activations at the int8 extremes (every value +-127)."""
    rng = np.random.default_rng(rows * 3 + cols)
    w = rng.standard_normal((rows, cols)).astype(np.float32) * 0.02
    w[1] = np.abs(w[1]) + 1.0  # one weight row all positive: nibbles and sub-block scales near their largest
    w[2, :256] = 0
    xs = rng.standard_normal((40, cols)).astype(np.float32) * 3
    xs[4] = np.where(np.arange(cols) % 2 == 0, 1.0, -1.0)  # every int8 value +-127
    xs[5] = 1.0
    xs[20, :256] = 0
    alone = np.stack([_core.gemv_test("q4_k", w, xs[j], 1, "amx")[0] for j in range(40)])
    for n_x in (16, 17, 23, 32, 33, 40):
        for nth in (1, 3):
            y_amx, _ = _core.gemv_test("q4_k", w, xs[:n_x], nth, "amx")
            y_512, _ = _core.gemv_test("q4_k", w, xs[:n_x], nth, "avx512")
            assert np.array_equal(y_amx.view(np.uint32), y_512.view(np.uint32)), (n_x, nth)
            assert np.array_equal(y_amx, alone[:n_x]), (n_x, nth)


# --------------------------------------------------------------------------------------------------------------
# Every tail shape at every level, against a float64 product with an error bound derived from the arithmetic

U = 2.0 ** -24  # unit roundoff of float32


def gamma(k: int) -> float:
    return k * U / (1 - k * U)


def q4k_offset_bound(deq: np.ndarray) -> np.ndarray:
    """Per weight, a bound on |dmin * m| of its 32-value sub-block. ggml's Q4_K quantizer sets the offset to the
    sub-block's negated minimum (0 when the minimum is positive) up to one quantization step, so it is at most
    twice the largest |w| of the sub-block."""
    m = np.abs(deq).reshape(deq.shape[0], -1, 32).max(axis=2)
    return np.repeat(2 * m, 32, axis=1)


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("qtype,cols", [
    ("q4_k", 256), ("q4_k", 768), ("q8_0", 32), ("q8_0", 96), ("q8_0", 288),
    ("f16", 1), ("f16", 7), ("f16", 9), ("f16", 17), ("f16", 33), ("f16", 100),
    ("f32", 1), ("f32", 8), ("f32", 15), ("f32", 31), ("f32", 47), ("f32", 100),
])
def test_tails_within_the_rounding_bound(qtype, cols, level):
    """Weight rows 1..9, 13, 15..17 and 33 (blocks of 4, Q4_K's interleaved blocks of 8 (AVX2) and 16 (AVX-512),
    and their tails, split over 2 threads), activation rows 1..16 (groups and their tails), K with every tail of
    the 8/16/32-wide loops and odd block counts. The kernel's only errors are float32 roundings of exact terms:
    F16/F32, a chain of at most ceil(K/8) FMAs per lane plus <= 4 additions of the horizontal sum, so
    |y - ref| <= gamma(ceil(K/8) + 4) * sum|w||x|; Q8_0, per block one rounded scale product and one FMA per lane,
    <= 5 more for the sums: gamma(2 nb + 7) * sum |w_q| |x_q|; Q4_K, per block and row one rounded scale product and
    three FMAs into one accumulator (sub-blocks 0-3, 4-7, the mins; exact integer sums below 2^24), no horizontal
    sum: gamma(3 nb + 7) * sum (|w| + 2 |dmin m|) |x_q|."""
    rng = np.random.default_rng(cols)
    w = rng.standard_normal((33, cols)).astype(np.float32) * 0.05
    xs = rng.standard_normal((16, cols)).astype(np.float32) * 2
    xs[2, :] = 0  # an all-zero row
    for rows in (1, 2, 3, 4, 5, 7, 8, 9, 13, 15, 16, 17, 33):
        y, deq = _core.gemv_test(qtype, w[:rows], xs, 2, level)
        deq = deq.astype(np.float64)
        wabs = np.abs(deq) + (q4k_offset_bound(deq) if qtype == "q4_k" else 0)
        nb = cols // BLOCK[qtype]
        k = -(-cols // 8) + 4 if qtype in ("f16", "f32") else (3 if qtype == "q4_k" else 2) * nb + 7
        for j in range(16):
            xq = quantize_x(xs[j], qtype)
            ref = deq @ xq
            mag = wabs @ np.abs(xq)
            bound = gamma(k) * mag
            assert np.all(np.abs(y[j] - ref) <= bound), (rows, j, float(np.max(np.abs(y[j] - ref) - bound)))
        if rows in (13, 33):
            assert np.all(y[2] == 0)


def test_levels_agree():
    """The F16 matrix kernel, GELU and the Q4_K matrix-vector kernel give the same bits at every level (the same FMA
    chains, only the tiling differs); amx runs the avx512 matrix-vector kernels."""
    levels = [lv for lv in ("avx2", "avx512", "amx") if has(lv)]
    rng = np.random.default_rng(5)
    w = rng.standard_normal((29, 300)).astype(np.float32)
    # activation rows: the last tile of 32 columns as 16 + a masked vector, 16 + 8, one masked vector, one column
    xa = [rng.standard_normal((n, 300)).astype(np.float32) for n in (41, 56, 39, 65)]
    wp, xp = rng.standard_normal((14, 1100)).astype(np.float32), rng.standard_normal((300, 1100)).astype(np.float32)
    g = np.concatenate([np.linspace(-12, 12, 4001), rng.standard_normal(999) * 4]).astype(np.float32)
    wc, xc, bc = (rng.standard_normal(s).astype(np.float32) for s in ((31, 30, 3, 3), (2, 30, 13, 22), (31,)))
    first = levels[0]
    for lv in levels[1:]:
        for x in xa:
            assert np.array_equal(_core.gemm_test(w, x, 2, lv), _core.gemm_test(w, x, 2, first)), (lv, len(x))
        assert np.array_equal(_core.gemm_test(wp, xp, 2, lv), _core.gemm_test(wp, xp, 2, first)), lv  # k panels
        assert np.array_equal(_core.gelu_test(g, lv), _core.gelu_test(g, first)), lv
        assert np.array_equal(_core.conv_stem_test(wc, xc, bc, 2, True, lv), _core.conv_stem_test(wc, xc, bc, 2, True, first))
    if has("avx512"):  # Q4_K: each weight row's float operations are the same at both levels (8 or 16 lanes)
        xs = rng.standard_normal((11, 768)).astype(np.float32)
        wq = rng.standard_normal((37, 768)).astype(np.float32)
        assert np.array_equal(_core.gemv_test("q4_k", wq, xs, 3, "avx2")[0],
                              _core.gemv_test("q4_k", wq, xs, 2, "avx512")[0])
    if has("amx"):
        for qtype in ("q4_k", "q8_0", "f16", "f32"):
            xs = rng.standard_normal((5, 512)).astype(np.float32)
            wq = rng.standard_normal((9, 512)).astype(np.float32)
            assert np.array_equal(_core.gemv_test(qtype, wq, xs, 1, "amx")[0],
                                  _core.gemv_test(qtype, wq, xs, 1, "avx512")[0]), qtype
