"""Our decode-attention kernel (cpp/cpu/attention*.cpp; the graph op in cpp/nn/decode_attention.cpp), at every
instruction-set level this CPU has: one query row per head against a KV cache of F16 or F32 values, against
float64 attention over the same cached values, on every tail shape (context lengths around the 8-position score
groups and the 32-position softmax blocks, head sizes, grouped-query ratios, more query rows than one pass takes),
and the same bits whichever heads share a call (the split ggml's threads give the op) and whichever of a head's query
rows share a key load. The encoder kernel (cpu::attend_full, every row of a window against the window's F32 keys) the
same way: against float64 on every window and head size, each row's bits alone. That a sequence's tokens do not
depend on the other sequences of its decode steps: test_batch.py; every level's greedy tokens: test_cpu_levels.py."""
from __future__ import annotations

import numpy as np
import pytest

from crispmoss import _core

pytestmark = pytest.mark.skipif(_core.cpu_best_level() == "none",
                                reason="CPU without AVX2/FMA/F16C: decode uses ggml's attention, ours is not called")

ORDER = ("none", "avx2", "avx512", "amx")
LEVELS = [pytest.param(lv, marks=pytest.mark.skipif(ORDER.index(lv) > ORDER.index(_core.cpu_best_level()),
                                                     reason=f"this CPU lacks {lv}"))
          for lv in ("avx2", "avx512")]


def reference(q, k, v, scale, kv_type):
    """softmax(scale q k^T) v per query head in float64, over the values as the cache holds them."""
    if kv_type == "f16":
        k, v = k.astype(np.float16), v.astype(np.float16)
    q, k, v = (a.astype(np.float64) for a in (q, k, v))
    n_head, g = q.shape[0], q.shape[0] // k.shape[1]
    out = np.empty(q.shape)
    for j in range(n_head):
        s = scale * (k[:, j // g] @ q[j])
        p = np.exp(s - s.max())
        out[j] = p @ v[:, j // g] / p.sum()
    return out


def tolerance(q, k, scale, kv_type):
    """The error float32 arithmetic allows relative to max |out|: a score's rounding error is a few units of 2^-24
    of scale * sum |q_i k_i| (its condition), and an error e in a score changes its softmax weight by a factor
    e^e; plus the rounding of the sums."""
    if kv_type == "f16":
        k = k.astype(np.float16)
    cond = scale * np.einsum("tgd,gjd->tgj", np.abs(k.astype(np.float64)),
                             np.abs(q.astype(np.float64)).reshape(k.shape[1], -1, q.shape[1])).max()
    return 2e-6 + 4 * 2.0 ** -24 * cond


def inputs(rng, n_kv, n_head, n_kv_head, d, q_scale=2.0):
    q = (rng.standard_normal((n_head, d)) * q_scale).astype(np.float32)
    k = rng.standard_normal((n_kv, n_kv_head, d)).astype(np.float32)
    v = rng.standard_normal((n_kv, n_kv_head, d)).astype(np.float32)
    return q, k, v


# (n_head, n_head_kv, head size): Qwen3-1.7B's 16/8/128 (MOSS-Transcribe), MOSS-Audio's 32/8/128 (4 per KV head),
# the tiny test models' 4/2/16 and 4/2/8, no grouping, 8 and 20 query heads on one KV head (20: a head's rows in
# two passes), head sizes 24 (no 16-multiple: the AVX2 kernel at every level), 64 and 256; 63 query rows on one
# KV head of 64: an encoder window (nn::encoder_layer: every row of a window against the window's keys).
SHAPES = [(16, 8, 128), (32, 8, 128), (4, 2, 16), (4, 2, 8), (3, 3, 24), (8, 1, 64), (20, 1, 32), (6, 2, 256),
          (63, 1, 64)]
CONTEXTS = [1, 2, 7, 8, 9, 15, 16, 17, 31, 32, 33, 65, 1000, 1031]


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("kv_type", ["f16", "f32"])
def test_matches_float64_attention(kv_type, level):
    rng = np.random.default_rng(7)
    worst = 0.0
    for n_head, n_kv_head, d in SHAPES:
        for n_kv in CONTEXTS:
            q, k, v = inputs(rng, n_kv, n_head, n_kv_head, d)
            scale = 1 / np.sqrt(d)
            out = _core.attention_test(q, k, v, kv_type, scale, level)
            ref = reference(q, k, v, scale, kv_type)
            err = np.abs(out - ref).max() / np.abs(ref).max()
            worst = max(worst, err)
            assert err < tolerance(q, k, scale, kv_type), (n_head, n_kv_head, d, n_kv, err)
    assert worst > 0  # the comparison compared something


@pytest.mark.parametrize("level", LEVELS)
def test_softmax_rescaling_and_peaks(level):
    """Scores in a wide range (query 30x), a maximum that grows block after block (every block rescales what was
    summed), and one position far above all others late in a long context (earlier terms underflow to 0)."""
    rng = np.random.default_rng(3)
    n_head, n_kv_head, d, n_kv = 16, 8, 128, 1500
    q, k, v = inputs(rng, n_kv, n_head, n_kv_head, d, q_scale=30.0)
    for case in ("wide", "rising", "peak"):
        kk = k.copy()
        if case == "rising":
            kk += (np.linspace(0, 2, n_kv)[:, None, None] * q[::2][None] / 30.0).astype(np.float32)
        if case == "peak":
            kk[1234] = q[::2] / 3.0
        for kv_type in ("f16", "f32"):
            out = _core.attention_test(q, kk, v, kv_type, 1 / np.sqrt(d), level)
            ref = reference(q, kk, v, 1 / np.sqrt(d), kv_type)
            err = np.abs(out - ref).max() / np.abs(ref).max()
            assert err < tolerance(q, kk, 1 / np.sqrt(d), kv_type), (case, kv_type, err)


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("kv_type", ["f16", "f32"])
def test_same_bits_whichever_heads_share_a_call(kv_type, level):
    """The graph op gives each thread a run of one sequence's KV heads; a head's result is the same bits for
    every run it is part of."""
    rng = np.random.default_rng(11)
    for n_head, n_kv_head, d, n_kv in [(16, 8, 128, 77), (32, 8, 128, 40), (20, 1, 32, 33), (4, 2, 8, 5)]:
        q, k, v = inputs(rng, n_kv, n_head, n_kv_head, d)
        runs = [_core.attention_test(q, k, v, kv_type, 0.1, level, heads_per_call=h) for h in (1, 3, n_kv_head)]
        for r in runs[1:]:
            assert np.array_equal(runs[0], r)


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("kv_type", ["f16", "f32"])
def test_same_bits_whichever_rows_share_a_key_load(kv_type, level):
    """A KV head's query rows are computed in groups of 4, 2 or 1 (each cached key and value loaded once per
    group): a row's result is the same bits in every group size (7 rows on one KV head: groups 4 + 2 + 1, against
    each row alone)."""
    rng = np.random.default_rng(13)
    for d, n_kv in [(128, 70), (32, 33), (8, 9)]:
        q, k, v = inputs(rng, n_kv, 7, 1, d)
        together = _core.attention_test(q, k, v, kv_type, 0.1, level)
        for j in range(7):
            assert np.array_equal(_core.attention_test(q[j:j + 1], k, v, kv_type, 0.1, level)[0], together[j]), (d, j)


def test_levels_agree_closely():
    if ORDER.index(_core.cpu_best_level()) < ORDER.index("avx512"):
        pytest.skip("one level only")
    rng = np.random.default_rng(5)
    q, k, v = inputs(rng, 300, 16, 8, 128)
    a = _core.attention_test(q, k, v, "f16", 0.088, "avx2")
    b = _core.attention_test(q, k, v, "f16", 0.088, "avx512")
    assert np.abs(a - b).max() < 1e-5 * np.abs(a).max()


# The encoder kernel (cpu::attend_full: an encoder window's rows, all on one head, against the window's keys):
# window lengths around the vector widths (8 / 16 lanes) and its key tiles (2 x 8 / 4 x 16), its row groups (5 / 6
# rows), MOSS-Transcribe's 8 s window (104) and 5 s clip (65), MOSS-Audio's 11 s and 30 s windows (138, 375); head
# sizes 64 (both encoders), 32, 128, 24 and 8 (no 16-multiple: the AVX2 kernel at every level).
FULL_WINDOWS = [1, 2, 5, 6, 7, 8, 9, 15, 16, 17, 31, 33, 63, 65, 104, 138, 375]


@pytest.mark.parametrize("level", LEVELS)
def test_encoder_kernel_matches_float64_attention(level):
    rng = np.random.default_rng(17)
    worst = 0.0
    for d in (64, 32, 128, 24, 8):
        for n in FULL_WINDOWS:
            q, k, v = inputs(rng, n, n, 1, d)
            out = _core.attention_test(q, k, v, "f32", 1 / np.sqrt(d), level, full=True)
            ref = reference(q, k, v, 1 / np.sqrt(d), "f32")
            err = np.abs(out - ref).max() / np.abs(ref).max()
            worst = max(worst, err)
            assert err < tolerance(q, k, 1 / np.sqrt(d), "f32"), (d, n, err)
    assert worst > 0


@pytest.mark.parametrize("level", LEVELS)
def test_encoder_kernel_wide_scores_and_a_peak(level):
    """Queries 30x (scores over a wide range) and one key far above the rest: e^(s - max) underflows to 0 for most
    positions, the row's sum stays >= 1."""
    rng = np.random.default_rng(19)
    n, d = 140, 64
    q, k, v = inputs(rng, n, n, 1, d, q_scale=30.0)
    k[77, 0] = q[5] / 3.0
    out = _core.attention_test(q, k, v, "f32", 1 / np.sqrt(d), level, full=True)
    ref = reference(q, k, v, 1 / np.sqrt(d), "f32")
    assert np.abs(out - ref).max() / np.abs(ref).max() < tolerance(q, k, 1 / np.sqrt(d), "f32")


@pytest.mark.parametrize("level", LEVELS)
def test_encoder_kernel_row_alone_same_bits(level):
    """A row's result does not depend on which rows share the call (row groups of 5 / 6 and the last rows one by
    one): every row of a window against the same row computed alone."""
    rng = np.random.default_rng(23)
    for d, n in [(64, 104), (32, 17), (24, 9)]:
        q, k, v = inputs(rng, n, n, 1, d)
        together = _core.attention_test(q, k, v, "f32", 0.125, level, full=True)
        for j in range(n):
            assert np.array_equal(_core.attention_test(q[j:j + 1], k, v, "f32", 0.125, level, full=True)[0],
                                  together[j]), (d, n, j)


def test_encoder_kernel_takes_f32_and_one_kv_head():
    q = np.zeros((4, 16), np.float32)
    with pytest.raises(ValueError, match="full"):
        _core.attention_test(q, np.zeros((3, 1, 16), np.float32), np.zeros((3, 1, 16), np.float32), "f16", 0.1,
                             full=True)
    with pytest.raises(ValueError, match="full"):
        _core.attention_test(q, np.zeros((3, 2, 16), np.float32), np.zeros((3, 2, 16), np.float32), "f32", 0.1,
                             full=True)


def test_bad_shapes_are_errors():
    q = np.zeros((4, 16), np.float32)
    kv = np.zeros((3, 2, 16), np.float32)
    with pytest.raises(ValueError):
        _core.attention_test(q, kv, kv, "bf16", 0.1)
    with pytest.raises(ValueError):
        _core.attention_test(np.zeros((3, 16), np.float32), kv, kv, "f16", 0.1)
    with pytest.raises(ValueError):
        _core.attention_test(np.zeros((4, 12), np.float32), np.zeros((3, 2, 12), np.float32),
                             np.zeros((3, 2, 12), np.float32), "f16", 0.1)


_PREFILL = """
import json, sys
from crispmoss import Model
m = Model(sys.argv[1], n_threads=2)
t = m.transcribe(sys.argv[2], max_new_tokens=12)
print(json.dumps({"tokens": [int(x) for x in t.tokens], "n_prompt": t.timings["n_prompt"], "chunk": m.prefill_chunk}))
"""


@pytest.mark.parametrize("model", ["tiny_transcribe_gguf_f32", "tiny_audio_gguf_f32"])
def test_prefill_attention_matches_flash_attention(model, request):
    """A prompt's prefill attention runs on our kernel (the decode-attention op with one row per position, each
    attending over the cache up to itself), in pieces: the greedy tokens equal those of ggml's causal flash
    attention (CRISPMOSS_ATTN=ggml), for a prompt longer than one piece. (Stage by stage against the PyTorch
    reference: the e2e tests and test_real_widths.py.)"""
    import json
    import os
    import subprocess
    import sys

    import crispmoss
    from shared_paths import JFK

    path = request.getfixturevalue(model)
    out = {}
    for attn in ("", "ggml"):
        env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(crispmoss.__file__)), CRISPMOSS_ATTN=attn)
        env.pop("CRISPMOSS_CPU", None)
        p = subprocess.run([sys.executable, "-c", _PREFILL, str(path), str(JFK)], capture_output=True, text=True,
                           env=env, timeout=300)
        assert p.returncode == 0, p.stderr[-2000:]
        out[attn] = json.loads(p.stdout.strip().splitlines()[-1])
    assert out[""]["n_prompt"] > out[""]["chunk"], out  # more than one piece
    assert out[""]["tokens"] == out["ggml"]["tokens"], out
