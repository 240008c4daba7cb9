// Graph pieces written once and shared by both models' encoders, adapters and the decoder.
#pragma once

#include <initializer_list>
#include <vector>

#include "ggml.h"
#include "model_file.h"

namespace cm::cpu {
struct AmxMatrix;
}

namespace cm::nn {

// W x: ggml_mul_mat, or for 1..kMaxGemvRows activation rows (1..kMaxDecodeRows inside a DecodeRows) against
// Q4_K/Q8_0/F16/F32 weights in host memory our matrix-vector kernel (cpu/gemv.h) where the CPU has it; more rows
// of a weight given to amx_attach_dequant (the decoder's prefill at the amx level) on the tiles
// (cpu/amx_dequant.h), of an F16 weight our matrix kernel (cpu/gemm.h). amx_x: x already converted for the tiles
// (amx_lm_operand, shared by products of the same x), or nullptr.
ggml_tensor* mul_mat(ggml_context* ctx, ggml_tensor* w, ggml_tensor* x, ggml_tensor* amx_x = nullptr);

// While one lives, the products this thread builds (mul_mat, amx_lm_operand) are a decode step's: up to
// cpu::kMaxDecodeRows activation rows (one per sequence) go through the matrix-vector kernels in one graph node
// per product (cpu::gemv_rows: each weight block read once, each row the bits it gets alone), where outside
// more than kMaxGemvRows rows (a prefill chunk) take the prefill paths. decoder_step holds one while it builds
// its graph; nested scopes restore the outer state.
class DecodeRows {
public:
    DecodeRows();
    ~DecodeRows();
    DecodeRows(const DecodeRows&) = delete;
    DecodeRows& operator=(const DecodeRows&) = delete;

private:
    bool outer_;
};

// Gives weight w an AMX copy (cpu/amx.h; nullptr takes it away): from then on mul_mat and the conv stem run all
// of w's products on the tiles. The caller keeps m alive while attached (AudioLM::pack_for_amx).
void amx_attach(const ggml_tensor* w, const cpu::AmxMatrix* m);

// Routes w's prefill-sized products (more than kMaxGemvRows F32 activation rows, outside a DecodeRows) to the tiles, each thread
// dequantizing its rows block by block as it goes (cpu/amx_dequant.h; no copy kept): Q4_K/Q8_0/F16/BF16 2-D
// weights in host memory; false (nothing changed) for others. amx_attach(w, nullptr) takes it away.
bool amx_attach_dequant(const ggml_tensor* w);

// x converted once for the tiles' products of every weight in ws (q/k/v, gate/up): the B operand of the dequantized
// products (cpu::amx_convert_rows_b); nullptr unless each of them takes x on the tiles as amx_attach_dequant routes
// it. Pass it to mul_mat.
ggml_tensor* amx_lm_operand(ggml_context* ctx, ggml_tensor* x, std::initializer_list<const ggml_tensor*> ws);

// GELU (erf form). On the CPU (judged by `near`, a weight of the same part of the graph: its buffer is host
// memory) and with AVX-512, our vectorized kernel (cpu/gemv.h); else ggml_gelu_erf.
ggml_tensor* gelu_erf(ggml_context* ctx, ggml_tensor* x, const ggml_tensor* near);

// y = W x (+ b). W is [in, out] in ggml order, x is [in, n].
// amx_x: x as the tiles' operand (amx_operand), shared by several products of the same x; nullptr makes it here.
// On the tiles the bias is added inside the product (the same F32 addition).
ggml_tensor* linear(ggml_context* ctx, ggml_tensor* x, ggml_tensor* w, ggml_tensor* b = nullptr,
                    ggml_tensor* amx_x = nullptr);

// GELU(W x + b), bias and GELU inside the product on the tiles (same bits as gelu_erf(linear(...))).
ggml_tensor* linear_gelu(ggml_context* ctx, ggml_tensor* x, ggml_tensor* w, ggml_tensor* b,
                         ggml_tensor* amx_x = nullptr);

// res + (W x + b), the residual added inside the product on the tiles (same bits as ggml_add(res, linear(...))).
ggml_tensor* linear_add(ggml_context* ctx, ggml_tensor* x, ggml_tensor* w, ggml_tensor* b, ggml_tensor* res);

// LayerNorm(x) * nw + nb (eps) converted for the tiles' products with every weight in ws, without storing the
// normed rows; nullptr unless all of ws have AMX copies of x's width. Pass it with x itself to linear() & co.
ggml_tensor* amx_norm_operand(ggml_context* ctx, ggml_tensor* x, ggml_tensor* nw, ggml_tensor* nb, float eps,
                              std::initializer_list<const ggml_tensor*> ws);

// x converted for the tiles' products with w (nullptr where w has no AMX copy or x does not fit): pass it to
// linear() for each weight of the same input width.
ggml_tensor* amx_operand(ggml_context* ctx, ggml_tensor* x, const ggml_tensor* w);
ggml_tensor* layer_norm(ggml_context* ctx, ggml_tensor* x, ggml_tensor* w, ggml_tensor* b, float eps);
ggml_tensor* rms_norm(ggml_context* ctx, ggml_tensor* x, ggml_tensor* w, float eps);

// down( SiLU(gate x) * up x ), no biases: MOSS's adapters, DeepStack mergers and the Qwen3 FFN.
struct GatedMLP {
    ggml_tensor* gate = nullptr;
    ggml_tensor* up = nullptr;
    ggml_tensor* down = nullptr;
    static GatedMLP load(const ModelFile& f, const std::string& prefix, int64_t n_in, int64_t n_hidden, int64_t n_out);
    // The same with each tensor's full name (schemas that do not name them <prefix>.gate/.up/.down.weight).
    static GatedMLP load(const ModelFile& f, const std::string& gate, const std::string& up, const std::string& down,
                         int64_t n_in, int64_t n_hidden, int64_t n_out);
    ggml_tensor* operator()(ggml_context* ctx, ggml_tensor* x) const;
};

// The tensor names of an encoder layer under its prefix (defaults: our converters' schema; the published
// MOSS-Transcribe-Diarize files use llama.cpp-style names, see models/moss_transcribe_diarize.cpp).
struct EncoderLayerNames {
    const char *q = ".attn.q", *k = ".attn.k", *v = ".attn.v", *o = ".attn.o", *fc1 = ".ffn.fc1", *fc2 = ".ffn.fc2";
};

// A pre-LN Whisper-style encoder layer (LayerNorm with bias, biased projections except possibly k, GELU FFN).
struct EncoderLayer {
    ggml_tensor *attn_norm_w, *attn_norm_b;
    ggml_tensor *q_w, *q_b, *k_w, *k_b, *v_w, *v_b, *o_w, *o_b;
    ggml_tensor *ffn_norm_w, *ffn_norm_b;
    ggml_tensor *fc1_w, *fc1_b, *fc2_w, *fc2_b;
    static EncoderLayer load(const ModelFile& f, const std::string& prefix, int64_t d, int64_t d_ff,
                             const EncoderLayerNames& names = EncoderLayerNames());
};

// Runs an encoder layer over `x` = [d, L]: L tokens with full attention among themselves, or, with `windows`
// (row counts summing to L), attention only within each run of rows (every other op is row-wise: one product over
// all L rows streams each weight once).
ggml_tensor* encoder_layer(ggml_context* ctx, const EncoderLayer& l, ggml_tensor* x, int n_head, float eps,
                           const std::vector<int64_t>& windows = {});

// 3 x (Conv2d 3x3 stride 2 pad 1 + GELU) on x = [W=time, H=freq, 1, N] → [d_conv*F', T', N] with the
// feature index c*F' + f that the reference's flatten produces (F' = out_len(freq), T' = out_len(time)).
struct ConvStem {
    ggml_tensor *w1, *b1, *w2, *b2, *w3, *b3;
    static ConvStem load(const ModelFile& f, const std::string& prefix, int64_t channels);
    static int64_t out_len(int64_t n);
    ggml_tensor* operator()(ggml_context* ctx, ggml_tensor* x) const;
};

// Conv1d with kernel 3, padding 1 and `stride` (1 or 2), bias, then GELU (erf): x = [T, C] (time fastest; a
// transposed view is fine), w = [3, C, OC] (PyTorch's [OC, C, 3]) → [OC, T'] with T' = (T - 1) / stride + 1, channel
// fastest (the layout encoder layers take). On the CPU with an F16 kernel: our matrix kernel over F32 columns made
// slice by slice; else ggml_conv_1d.
ggml_tensor* conv1d_k3_gelu(ggml_context* ctx, ggml_tensor* x, ggml_tensor* w, ggml_tensor* b, int stride);

// Hyper-parameters both audio encoders share, read from `<arch>.enc.*` / `<arch>.adapter.*` with the published
// values as defaults and bounds that keep sizes, products and graph node counts in range.
struct EncoderConfig {
    int n_mel, n_layer, d, n_head, d_ff, conv_ch, adapter_hidden;
    float eps;
    static EncoderConfig read(const ModelFile& f, const std::string& arch);
};

// Whisper's sinusoid table, rows [sin(p * inv) | cos(p * inv)], inv_i = exp(-i ln(10000) / (d/2 - 1)).
std::vector<float> sinusoids(int64_t n_pos, int64_t d);

// Output length of one stride-2, pad-1, kernel-3 convolution.
inline int64_t conv_out_len(int64_t n) { return (n - 1) / 2 + 1; }

}  // namespace cm::nn
