#include "audio/fft.h"

#include <cmath>
#include <stdexcept>

#include "errors.h"

namespace cm {

namespace {

// exp(-2 pi i j / n) with the angle reduced first so that large j keep full precision.
cplx unit_root(size_t j, size_t n) {
    const double a = -2.0 * kPi * static_cast<double>(j % n) / static_cast<double>(n);
    return {std::cos(a), std::sin(a)};
}

// Plain complex product: std::complex's operator* goes through the NaN/inf-recovering library call
// (__muldc3) unless -ffast-math is on, which costs several times more in the butterflies.
inline cplx mul(const cplx& a, const cplx& b) {
    return {a.real() * b.real() - a.imag() * b.imag(), a.real() * b.imag() + a.imag() * b.real()};
}

}  // namespace

FFT::FFT(size_t n) : n_(n) {
    if (n == 0) throw InputError("FFT length must be positive");
    size_t rest = n;
    // Radix 4 first: it needs the fewest multiplications per point; then 2, 3, 5, then any prime.
    for (size_t p : {size_t(4), size_t(2), size_t(3), size_t(5)}) {
        while (rest % p == 0) {
            radices_.push_back(p);
            rest /= p;
        }
    }
    for (size_t p = 7; rest > 1; p += 2) {
        if (p * p > rest) p = rest;
        while (rest % p == 0) {
            radices_.push_back(p);
            rest /= p;
        }
    }
    twiddle_.resize(n);
    for (size_t j = 0; j < n; ++j) twiddle_[j] = unit_root(j, n);
}

void FFT::forward(const cplx* in, cplx* out, size_t in_stride) const {
    if (n_ == 1) {
        out[0] = in[0];
        return;
    }
    transform(in, in_stride, out, n_, 0);
}

// Decimation in time: a length n = p*m transform is p interleaved length-m transforms, written to
// out[r*m .. r*m+m), merged in place by m butterflies of radix p.
void FFT::transform(const cplx* in, size_t stride, cplx* out, size_t n, size_t level) const {
    const size_t p = radices_[level];
    const size_t m = n / p;
    if (m == 1) {
        for (size_t r = 0; r < p; ++r) out[r] = in[r * stride];
    } else {
        for (size_t r = 0; r < p; ++r) transform(in + r * stride, stride * p, out + r * m, m, level + 1);
    }
    // W_n^j is twiddle_[j * tw_step]; W_p^j is twiddle_[j * (n_/p)].
    const size_t tw_step = n_ / n;
    const cplx* tw = twiddle_.data();
    switch (p) {
    case 2:
        for (size_t k = 0; k < m; ++k) {
            const cplx a = out[k];
            const cplx b = mul(out[k + m], tw[k * tw_step]);
            out[k] = a + b;
            out[k + m] = a - b;
        }
        break;
    case 4:
        for (size_t k = 0; k < m; ++k) {
            const cplx a0 = out[k];
            const cplx a1 = mul(out[k + m], tw[k * tw_step]);
            const cplx a2 = mul(out[k + 2 * m], tw[2 * k * tw_step]);
            const cplx a3 = mul(out[k + 3 * m], tw[3 * k * tw_step]);
            const cplx s02 = a0 + a2, d02 = a0 - a2;
            const cplx s13 = a1 + a3, d13 = a1 - a3;
            // -i * d13: the W_4 = -i rotation without a multiply.
            const cplx rot(d13.imag(), -d13.real());
            out[k] = s02 + s13;
            out[k + m] = d02 + rot;
            out[k + 2 * m] = s02 - s13;
            out[k + 3 * m] = d02 - rot;
        }
        break;
    case 3: {
        const double c = -0.5;                       // cos(2 pi / 3)
        const double s = -std::sqrt(3.0) / 2.0;      // -sin(2 pi / 3), forward sign
        for (size_t k = 0; k < m; ++k) {
            const cplx a0 = out[k];
            const cplx a1 = mul(out[k + m], tw[k * tw_step]);
            const cplx a2 = mul(out[k + 2 * m], tw[2 * k * tw_step]);
            const cplx sum = a1 + a2, dif = a1 - a2;
            const cplx mid = a0 + c * sum;
            const cplx rot(-s * dif.imag(), s * dif.real());  // i*s*dif
            out[k] = a0 + sum;
            out[k + m] = mid + rot;
            out[k + 2 * m] = mid - rot;
        }
        break;
    }
    case 5: {
        const double c1 = std::cos(2.0 * kPi / 5.0), c2 = std::cos(4.0 * kPi / 5.0);
        const double s1 = -std::sin(2.0 * kPi / 5.0), s2 = -std::sin(4.0 * kPi / 5.0);
        for (size_t k = 0; k < m; ++k) {
            const cplx a0 = out[k];
            const cplx a1 = mul(out[k + m], tw[k * tw_step]);
            const cplx a2 = mul(out[k + 2 * m], tw[2 * k * tw_step]);
            const cplx a3 = mul(out[k + 3 * m], tw[3 * k * tw_step]);
            const cplx a4 = mul(out[k + 4 * m], tw[4 * k * tw_step]);
            const cplx s14 = a1 + a4, d14 = a1 - a4;
            const cplx s23 = a2 + a3, d23 = a2 - a3;
            const cplx e1 = a0 + c1 * s14 + c2 * s23;
            const cplx e2 = a0 + c2 * s14 + c1 * s23;
            // odd parts: i * (s1*d14 + s2*d23) and i * (s2*d14 - s1*d23)
            const cplx o1 = s1 * d14 + s2 * d23;
            const cplx o2 = s2 * d14 - s1 * d23;
            const cplx io1(-o1.imag(), o1.real());
            const cplx io2(-o2.imag(), o2.real());
            out[k] = a0 + s14 + s23;
            out[k + m] = e1 + io1;
            out[k + 4 * m] = e1 - io1;
            out[k + 2 * m] = e2 + io2;
            out[k + 3 * m] = e2 - io2;
        }
        break;
    }
    default: {
        // Generic radix: a direct p-point DFT per butterfly; only reached for prime factors > 5.
        std::vector<cplx> t(p);
        const size_t root_step = n_ / p;
        for (size_t k = 0; k < m; ++k) {
            for (size_t r = 0; r < p; ++r) t[r] = mul(out[k + r * m], tw[(r * k % n) * tw_step]);
            for (size_t q = 0; q < p; ++q) {
                cplx acc = t[0];
                for (size_t r = 1; r < p; ++r) acc += mul(t[r], tw[(r * q % p) * root_step]);
                out[k + q * m] = acc;
            }
        }
        break;
    }
    }
}

RealFFT::RealFFT(size_t n) : n_(n), half_(n >= 2 ? n / 2 : 1) {
    if (n < 2 || n % 2 != 0) throw InputError("real FFT length must be even and at least 2");
    twiddle_.resize(n / 2 + 1);
    for (size_t k = 0; k <= n / 2; ++k) twiddle_[k] = unit_root(k, n);
}

// With z[j] = x[2j] + i x[2j+1] and Z its h-point DFT (h = n/2), the even/odd sample spectra are
// E[k] = (Z[k] + conj Z[h-k]) / 2 and O[k] = -i (Z[k] - conj Z[h-k]) / 2, and X[k] = E[k] + W_n^k O[k].
void RealFFT::power(const double* in, double* power, cplx* work) const {
    const size_t h = n_ / 2;
    cplx* z = work;
    cplx* zf = work + h;
    for (size_t j = 0; j < h; ++j) z[j] = cplx(in[2 * j], in[2 * j + 1]);
    half_.forward(z, zf);
    for (size_t k = 0; k <= h; ++k) {
        const cplx zk = zf[k == h ? 0 : k];
        const cplx zc = std::conj(zf[k == 0 ? 0 : h - k]);
        const cplx e = 0.5 * (zk + zc);
        const cplx d = 0.5 * (zk - zc);
        const cplx x = e + mul(twiddle_[k], cplx(d.imag(), -d.real()));
        power[k] = x.real() * x.real() + x.imag() * x.imag();
    }
}

}  // namespace cm
