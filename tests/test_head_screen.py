"""The screened greedy head (cpp/cpu/head_screen.*, cpp/nn/head.*): greedy decode-step rows get an approximate
product of the F16 head on the AMX tiles with a rigorous error bound, and exact logits (our matrix-vector kernel,
the full product's bits) for only the tokens that can still be the argmax; -inf elsewhere.

Checked here: the bound holds against the exact kernel (random, outliers, near-ties, exact ties, BF16-exact and
not), the candidates' logits are the full product's bits at 1..33 rows, the argmax (with and without the
repetition penalty) is the full logits', non-finite rows fall back to full exact logits, and the engine's greedy
tokens with screening equal CRISPMOSS_HEAD=exact's and a sequence's alone, for both architectures.
"""
from __future__ import annotations

import threading

import numpy as np
import pytest

import crispmoss
from crispmoss import _core
from surface_util import speechlike

amx = pytest.mark.skipif(not _core.head_screen_available(),
                         reason="screening needs the AMX tiles (amx_usable) at the amx kernel level")


def _penalized_argmax(logits: np.ndarray, hist, pen: float) -> int:
    """text/sampler.cpp's greedy choice: the penalty on the history ids, then the first largest finite value."""
    v = logits.astype(np.float32).copy()
    for t in set(hist):
        if 0 <= t < v.size:
            v[t] = v[t] / np.float32(pen) if v[t] > 0 else v[t] * np.float32(pen)
    v[~np.isfinite(v)] = -np.inf
    return int(np.argmax(v))


def _check(w, x, exact=(), pen=1.0, nth=3):
    d = _core.head_screen_test(w, x, [list(e) for e in exact], nth)
    approx, bound, sel, ex = d["approx"], d["bound"], d["logits"], d["exact"]
    ok = np.array(d["screened"])
    # the bound: |y~ - y| <= b for the exact kernel's y, on every screened row
    assert (np.abs(approx[ok].astype(np.float64) - ex[ok]) <= bound[ok]).all()
    # every logit computed is the full product's bits; screened rows' others are -inf
    fin = np.isfinite(sel)
    assert (sel[fin] == ex[fin]).all()
    assert (np.isneginf(sel[~fin])).all()
    assert (fin[~ok]).all()  # rows not screened: every logit exact
    for i in range(x.shape[0]):
        hist = exact[i] if exact else []
        if hist:
            assert fin[i, [t for t in hist if 0 <= t < w.shape[0]]].all()
        assert _penalized_argmax(sel[i], hist, pen) == _penalized_argmax(ex[i], hist, pen)
    return d


@amx
@pytest.mark.parametrize("rows,k,n", [(100, 64, 1), (37, 96, 3), (513, 2048, 16), (70, 40, 17), (1000, 48, 33)])
def test_random_shapes(rows, k, n):
    rng = np.random.default_rng(rows + k + n)
    w = rng.standard_normal((rows, k)).astype(np.float32)
    x = rng.standard_normal((n, k)).astype(np.float32)
    d = _check(w, x)
    assert all(d["screened"]) and not d["bf16_exact"]
    # the screening product itself is close to bf16(w) . bf16(x) in float64
    wq = d["w"].astype(np.float64)
    y64 = x.astype(np.float64) @ wq.T
    assert np.abs(d["approx"] - y64).max() <= np.abs(y64).max() * 0.05
    # few candidates on random data
    assert np.isfinite(d["logits"]).sum(axis=1).max() < rows


@amx
def test_adversarial():
    rng = np.random.default_rng(7)
    k, rows, n = 96, 300, 5
    w = rng.standard_normal((rows, k)).astype(np.float32)
    w[10, 3] = 6e4  # large-magnitude outliers (F16 range)
    w[20] = w[21]   # exact ties: the lowest index must win
    w[30] = w[31]
    w[31, 0] = np.float32(np.float16(w[31, 0]) + np.float16(np.spacing(np.float16(w[31, 0]))))  # a near-tie
    x = rng.standard_normal((n, k)).astype(np.float32)
    x[1] = w[20] * 3          # row 1's argmax: the tied rows 20, 21
    x[2] = w[30]              # row 2: near-tied rows 30, 31
    x[3, 5] = 1e6             # an activation outlier
    d = _check(w, x)
    assert all(d["screened"])
    assert int(np.argmax(d["logits"][1])) == 20
    # BF16-exact weights: no weight term in the bound
    wb = (w.view(np.uint32) & 0xFFFF0000).view(np.float32)
    wb[10, 3] = 65280.0
    d = _check(wb, x)
    assert d["bf16_exact"] and all(d["screened"])


@amx
def test_repetition_penalty_exact_sets():
    rng = np.random.default_rng(3)
    rows, k, n = 400, 64, 18
    w = rng.standard_normal((rows, k)).astype(np.float32)
    x = rng.standard_normal((n, k)).astype(np.float32)
    y = x @ w.T
    exact = []
    for i in range(n):  # the history holds the row's top tokens, so the penalty changes the winner
        top = list(np.argsort(-y[i])[: 1 + i % 4])
        exact.append([int(t) for t in top] + [rows + 5, -1] if i % 3 else [])
    for pen in (1.3, 0.8):
        _check(w, x, exact, pen)


@amx
def test_non_finite_rows_fall_back():
    rng = np.random.default_rng(5)
    rows, k = 200, 64
    w = rng.standard_normal((rows, k)).astype(np.float32)
    x = rng.standard_normal((4, k)).astype(np.float32)
    x[1, 7] = np.nan
    x[2, 0] = np.inf
    x[3, 1] = 3e38  # finite, but the products could overflow F32
    d = _core.head_screen_test(w, x, [], 2)
    assert d["screened"] == [True, False, False, False]
    sel, ex = d["logits"], d["exact"]
    assert np.array_equal(sel[1:], ex[1:], equal_nan=True)
    with pytest.raises(crispmoss.InputError):
        bad = w.copy()
        bad[3, 3] = np.inf
        _core.head_screen_test(bad, x[:1], [], 1)


@pytest.fixture(scope="module")
def f16_models(tiny_models):
    return {a: str(tiny_models.gguf(a, outtype="f16")) for a in ("moss_transcribe", "moss_audio")}


@amx
@pytest.mark.parametrize("arch", ["moss_transcribe", "moss_audio"])
def test_engine_tokens(f16_models, arch, monkeypatch):
    path = f16_models[arch]
    items = [np.ascontiguousarray(speechlike(s, seed=i)) for i, s in enumerate((0.5, 2.0, 4.0, 7.0))]
    kw = dict(max_new_tokens=10)
    before = _core.head_screened_rows()
    m = crispmoss.Model(path, 1, batch_size=8)
    assert m.placement["head_screen_bytes"] > 0
    screened = m.transcribe_many(items, **kw)
    pen = m.transcribe_many(items, repetition_penalty=1.5, **kw)
    assert _core.head_screened_rows() > before  # the batched steps did screen
    monkeypatch.setenv("CRISPMOSS_HEAD", "exact")
    e = crispmoss.Model(path, 1, batch_size=8)
    assert e.placement["head_screen_bytes"] == 0
    mark = _core.head_screened_rows()
    full = e.transcribe_many(items, **kw)
    full_pen = e.transcribe_many(items, repetition_penalty=1.5, **kw)
    assert _core.head_screened_rows() == mark
    monkeypatch.delenv("CRISPMOSS_HEAD")
    # mixed steps: greedy rows screened, a sampled row's full logits beside them
    sampling = [{}, {"temperature": 0.9, "seed": 3}, {}, {}]
    out = [None] * len(items)

    def work(i):
        out[i] = m.session(items[i]).transcribe(**sampling[i], **kw)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(items))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    alone = crispmoss.Model(path, 1, batch_size=1)
    for i, x in enumerate(items):
        a = alone.transcribe(x, **kw)
        assert screened[i].tokens == full[i].tokens == a.tokens
        assert pen[i].tokens == full_pen[i].tokens
        assert out[i].tokens == alone.session(x).transcribe(**sampling[i], **kw).tokens
