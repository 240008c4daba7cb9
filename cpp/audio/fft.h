// Mixed-radix FFT for the STFT of the mel front end. Lengths need not be powers of two (Whisper's
// n_fft is 400 = 2^4 * 5^2), so the transform factors n into radices 4, 2, 3, 5 and handles any
// remaining prime factor with a generic butterfly. All twiddles are computed once per plan.
#pragma once
#include <complex>
#include <cstddef>
#include <vector>

namespace cm {

using cplx = std::complex<double>;

// pi (M_PI is POSIX, not ISO C++: MSVC and mingw-w64 in ISO mode do not define it).
constexpr double kPi = 3.14159265358979323846;

// Complex forward DFT X[k] = sum_j x[j] exp(-2 pi i j k / n) of a fixed length n >= 1.
class FFT {
public:
    explicit FFT(size_t n);
    size_t size() const { return n_; }
    // out must hold n values and must not alias in; in is read with the given stride.
    void forward(const cplx* in, cplx* out, size_t in_stride = 1) const;

private:
    void transform(const cplx* in, size_t stride, cplx* out, size_t n, size_t level) const;

    size_t n_;
    std::vector<size_t> radices_;  // radices_[0] splits the full length, then the sub-lengths
    std::vector<cplx> twiddle_;    // exp(-2 pi i j / n), j = 0 .. n-1
};

// Forward DFT of n real samples (n even) through a complex FFT of n/2 points; yields n/2+1 bins.
class RealFFT {
public:
    explicit RealFFT(size_t n);
    size_t size() const { return n_; }
    size_t n_bins() const { return n_ / 2 + 1; }
    // work must hold n/2 + n/2 complex values (packed input and half-length spectrum).
    size_t work_size() const { return n_; }
    // |X[k]|^2 for k = 0 .. n/2, written to power (n/2+1 values).
    void power(const double* in, double* power, cplx* work) const;

private:
    size_t n_;
    FFT half_;
    std::vector<cplx> twiddle_;  // exp(-2 pi i k / n), k = 0 .. n/2
};

}  // namespace cm
