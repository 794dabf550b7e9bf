// gpt2.cpp: GPT-2 with a value head — the architecture, its weights in HF
// safetensors form (files and bytes), the batched forward pass, and the fast
// training path of PPO (packed positions, the fused vocabulary head).
#include "ml/gpt2_internal.hpp"
#include "ml/model_file.hpp"

#include <cjson/cJSON.h>
#include <dlfcn.h>
#include <sys/stat.h>

#include <atomic>
#include <cerrno>
#include <cmath>
#include <cstring>

// ---- products on the CPU ----
//
// oneDNN's sgemm (libdnnl, which Debian's libtorch links) runs the
// vocabulary head's products -- one dimension of 50,257 and the others of 64
// and the tokens -- in 70-80 % of the time of OpenBLAS's, and a batch of
// attention's small ones without the per-matrix cost of torch::bmm.  Found
// at run time, since a libtorch that links oneDNN statically does not
// export it; torch's products otherwise.
typedef int (*dnnl_sgemm_fn)(char transa, char transb, int64_t M, int64_t N, int64_t K, float alpha,
                             const float *A, int64_t lda, const float *B, int64_t ldb, float beta,
                             float *C, int64_t ldc);

// Tests only (test_ml_ppo.c declares it): on, the fast training path takes
// the tensor operations and torch's products, as other CPUs and GPUs do.
static std::atomic<bool> portable_only{false};
extern "C" void sf__gpt2_portable(int on) { portable_only = on != 0; }

static dnnl_sgemm_fn dnnl_sgemm_ptr(void) {
    static const dnnl_sgemm_fn f = (dnnl_sgemm_fn)dlsym(RTLD_DEFAULT, "dnnl_sgemm");
    return f;
}

static bool blas_layout(const torch::Tensor &t) {
    return t.device().is_cpu() && t.scalar_type() == torch::kFloat32 && t.dim() == 2 && t.stride(1) == 1 &&
           t.stride(0) >= std::max<int64_t>(1, t.size(1));
}

// out (M, N) = op(a) @ op(b) (op: transposed when ta / tb) for 2-D float32
// tensors whose rows may be views into wider ones.
static void head_gemm(const torch::Tensor &a, bool ta, const torch::Tensor &b, bool tb, torch::Tensor &out) {
    const int64_t M = a.size(ta ? 1 : 0), K = a.size(ta ? 0 : 1), N = b.size(tb ? 0 : 1);
    const dnnl_sgemm_fn f = portable_only ? nullptr : dnnl_sgemm_ptr();
    if (f && M > 0 && N > 0 && K > 0 && blas_layout(a) && blas_layout(b) && blas_layout(out)) {
        at::internal::lazy_init_num_threads();   // oneDNN's OpenMP threads: torch's count
        if (f(ta ? 'T' : 'N', tb ? 'T' : 'N', M, N, K, 1.0f, a.data_ptr<float>(), a.stride(0),
              b.data_ptr<float>(), b.stride(0), 0.0f, out.data_ptr<float>(), out.stride(0)) == 0)
            return;
    }
    torch::mm_out(out, ta ? a.t() : a, tb ? b.t() : b);
}

// C = alpha op(A) @ op(B) (row-major, rows lda / ldb / ldc apart) through
// oneDNN, which the caller has found there.
static void dnnl_gemm(char ta, char tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A, int64_t lda,
                      const float *B, int64_t ldb, float *C, int64_t ldc) {
    const dnnl_sgemm_fn f = dnnl_sgemm_ptr();
    at::internal::lazy_init_num_threads();
    if (!f || f(ta, tb, M, N, K, alpha, A, lda, B, ldb, 0.0f, C, ldc) != 0)
        throw sf_ml_error(SF_ETORCH, "oneDNN sgemm failed");
}

// ---- the architecture ----

torch::Tensor AttnImpl::forward(const torch::Tensor &x, const torch::Tensor &bias, KVLayer *kv,
                                int64_t off) {
    const int64_t B = x.size(0), T = x.size(1), H = n_head, D = n_embd / n_head;
    auto qkv = c_attn->forward(x).split(n_embd, -1);               // 3 x (B, T, C)
    auto q = qkv[0].view({B, T, H, D}).transpose(1, 2);             // (B, H, T, D)
    auto k = qkv[1].view({B, T, H, D}).transpose(1, 2);
    auto v = qkv[2].view({B, T, H, D}).transpose(1, 2);
    if (kv) {
        kv->k.narrow(2, off, T).copy_(k);
        kv->v.narrow(2, off, T).copy_(v);
        k = kv->k.narrow(2, 0, off + T);                            // (B, H, Tk, D)
        v = kv->v.narrow(2, 0, off + T);
    }
    auto att = torch::matmul(q, k.transpose(-2, -1)) * (1.0 / std::sqrt((double)D));  // (B, H, T, Tk)
    att = torch::softmax(att + bias, -1);
    auto y = torch::matmul(att, v);                                 // (B, H, T, D)
    return c_proj->forward(y.transpose(1, 2).reshape({B, T, n_embd}));
}

namespace {
// Causal attention of packed sequences: qkv (N, 3C) float32 on the CPU,
// sequence b the rows [seq[b], seq[b + 1]) -> (N, C), each head's products
// through oneDNN on its rows and columns of qkv as they lie (no padding, no
// copies per head: torch::bmm's CPU kernel spends more on each of these
// small matrices than on its arithmetic), and the softmax over the keys up
// to each query in a loop.
struct SeqAttn : torch::autograd::Function<SeqAttn> {
    static torch::autograd::variable_list forward(torch::autograd::AutogradContext *ctx, const torch::Tensor &qkv_in,
                                                  const torch::Tensor &seq_t, int64_t H) {
        auto qkv = qkv_in.contiguous();
        const int64_t N = qkv.size(0), C = qkv.size(1) / 3, D = C / H, B = seq_t.size(0) - 1;
        const int64_t *seq = seq_t.data_ptr<int64_t>();
        const float scale = (float)(1.0 / std::sqrt((double)D));
        int64_t np = 0;                                                  // floats of the probabilities
        for (int64_t b = 0; b < B; b++) np += H * (seq[b + 1] - seq[b]) * (seq[b + 1] - seq[b]);
        auto p = torch::empty({np}, qkv.options()), y = torch::empty({N, C}, qkv.options());
        const float *q = qkv.data_ptr<float>();
        float *pp = p.data_ptr<float>(), *yp = y.data_ptr<float>();
        for (int64_t b = 0, off = 0; b < B; b++) {
            const int64_t o = seq[b], L = seq[b + 1] - o;
            for (int64_t h = 0; h < H; h++, off += L * L) {
                float *P = pp + off;
                const float *Q = q + o * 3 * C + h * D;
                dnnl_gemm('N', 'T', L, L, D, scale, Q, 3 * C, Q + C, 3 * C, P, L);
                for (int64_t i = 0; i < L; i++) {                       // softmax over keys 0..i
                    float *r = P + i * L, m = r[0], sum = 0;
                    for (int64_t j = 1; j <= i; j++) m = std::max(m, r[j]);
                    for (int64_t j = 0; j <= i; j++) sum += (r[j] = std::exp(r[j] - m));
                    for (int64_t j = 0; j <= i; j++) r[j] /= sum;
                    for (int64_t j = i + 1; j < L; j++) r[j] = 0;
                }
                dnnl_gemm('N', 'N', L, D, L, 1.0f, P, L, Q + 2 * C, 3 * C, yp + o * C + h * D, C);
            }
        }
        ctx->save_for_backward({qkv, seq_t, p});
        ctx->saved_data["heads"] = H;
        return {y};
    }
    static torch::autograd::variable_list backward(torch::autograd::AutogradContext *ctx,
                                                   torch::autograd::variable_list grads) {
        auto sv = ctx->get_saved_variables();
        const torch::Tensor &qkv = sv[0], &seq_t = sv[1], &p = sv[2];
        const int64_t H = ctx->saved_data["heads"].toInt();
        auto dy = grads[0].contiguous();
        const int64_t N = qkv.size(0), C = qkv.size(1) / 3, D = C / H, B = seq_t.size(0) - 1;
        const int64_t *seq = seq_t.data_ptr<int64_t>();
        const float scale = (float)(1.0 / std::sqrt((double)D));
        auto dqkv = torch::empty({N, 3 * C}, qkv.options());
        int64_t lmax = 0;
        for (int64_t b = 0; b < B; b++) lmax = std::max(lmax, seq[b + 1] - seq[b]);
        std::vector<float> dsb((size_t)(lmax * lmax));
        const float *q = qkv.data_ptr<float>(), *pp = p.data_ptr<float>(), *dyp = dy.data_ptr<float>();
        float *dq = dqkv.data_ptr<float>(), *ds = dsb.data();
        for (int64_t b = 0, off = 0; b < B; b++) {
            const int64_t o = seq[b], L = seq[b + 1] - o;
            for (int64_t h = 0; h < H; h++, off += L * L) {
                const float *P = pp + off, *Q = q + o * 3 * C + h * D, *dY = dyp + o * C + h * D;
                float *dQ = dq + o * 3 * C + h * D;
                dnnl_gemm('N', 'T', L, L, D, 1.0f, dY, C, Q + 2 * C, 3 * C, ds, L);     // dP = dy v^T
                dnnl_gemm('T', 'N', L, D, L, 1.0f, P, L, dY, C, dQ + 2 * C, 3 * C);     // dv = P^T dy
                for (int64_t i = 0; i < L; i++) {                       // dS = P (dP - sum P dP)
                    const float *pr = P + i * L;
                    float *r = ds + i * L, dot = 0;
                    for (int64_t j = 0; j <= i; j++) dot += pr[j] * r[j];
                    for (int64_t j = 0; j <= i; j++) r[j] = pr[j] * (r[j] - dot);
                    for (int64_t j = i + 1; j < L; j++) r[j] = 0;
                }
                dnnl_gemm('N', 'N', L, D, L, scale, ds, L, Q + C, 3 * C, dQ, 3 * C);    // dq = s dS k
                dnnl_gemm('T', 'N', L, D, L, scale, ds, L, Q, 3 * C, dQ + C, 3 * C);    // dk = s dS^T q
            }
        }
        return {dqkv, torch::Tensor(), torch::Tensor()};
    }
};
}  // namespace

torch::Tensor AttnImpl::forward_packed(const torch::Tensor &a, const Packed &pk) {
    const int64_t B = pk.B, T = pk.T, H = n_head, D = n_embd / n_head;
    auto qkv = c_attn->forward(a);                                      // (N, 3C)
    if (!pk.seq.empty() && !portable_only && dnnl_sgemm_ptr() && qkv.device().is_cpu() &&
        qkv.scalar_type() == torch::kFloat32) {
        auto seq = torch::tensor(pk.seq, torch::kLong);
        return c_proj->forward(SeqAttn::apply(qkv, seq, H)[0]);
    }
    auto split = torch::zeros({B * T, 3 * n_embd}, a.options())
                     .index_copy(0, pk.idx, qkv)                        // (B*T, 3C)
                     .view({B, T, 3 * n_embd})
                     .split(n_embd, -1);                                // 3 x (B, T, C)
    auto q = split[0].view({B, T, H, D}).transpose(1, 2);               // (B, H, T, D)
    auto k = split[1].view({B, T, H, D}).transpose(1, 2);
    auto v = split[2].view({B, T, H, D}).transpose(1, 2);
    auto att = torch::softmax(torch::matmul(q, k.transpose(-2, -1)) * (1.0 / std::sqrt((double)D)) + pk.bias, -1);
    auto y = torch::matmul(att, v).transpose(1, 2).reshape({B * T, n_embd});   // (B*T, C)
    return c_proj->forward(y.index_select(0, pk.idx));                  // (N, C)
}

GPT2Impl::GPT2Impl(const sf_gpt2_config_t &c) : cfg(c) {
    wte = register_module("wte", torch::nn::Embedding(c.vocab_size, c.n_embd));
    wpe = register_module("wpe", torch::nn::Embedding(c.n_ctx, c.n_embd));
    h = register_module("h", torch::nn::ModuleList());
    for (int i = 0; i < c.n_layer; i++) {
        blocks.push_back(Block(c.n_embd, c.n_head, c.ln_eps));
        h->push_back(blocks.back());
    }
    ln_f = register_module("ln_f", torch::nn::LayerNorm(
                                       torch::nn::LayerNormOptions({c.n_embd}).eps(c.ln_eps)));
    v_head = register_module("v_head", ValueHead(c.n_embd));
}

// HF's _init_weights: N(0, 0.02) for linear and embedding weights, zero
// biases, unit LayerNorms, and the residual projections (attn.c_proj,
// mlp.c_proj) at 0.02 / sqrt(2 n_layer) so that the residual stream's
// variance does not grow with depth.
void GPT2Impl::init_weights(uint64_t seed) {
    torch::NoGradGuard ng;
    auto gen = at::detail::createCPUGenerator(seed);
    const double resid = 0.02 / std::sqrt(2.0 * cfg.n_layer);
    for (auto &kv : named_parameters(true)) {
        const std::string &n = kv.key();
        torch::Tensor p = kv.value();
        torch::Tensor host = torch::empty(p.sizes(), torch::kFloat32);
        bool is_ln = n.find("ln_") != std::string::npos;
        bool is_bias = n.size() >= 5 && n.compare(n.size() - 5, 5, ".bias") == 0;
        if (is_ln) host.fill_(is_bias ? 0.0 : 1.0);
        else if (is_bias) host.zero_();
        else {
            double sd = n.find("c_proj.weight") != std::string::npos ? resid : 0.02;
            host.normal_(0.0, sd, gen);
        }
        p.copy_(host);
    }
}

// ---- the fast training path ----
//
// A PPO minibatch is padded to its longest query and response: about 40 %
// of its (B, T) positions are padding.  Everything but attention works
// position by position, so it runs on the real positions packed into (N, C)
// rows, and so does attention where each row's real positions are one run
// (a left-padded query and a right-padded response; SeqAttn); elsewhere
// attention gets them back in the padded layout (padding as zeros, masked
// as keys; what padded queries compute is dropped).  A real position's
// result is the same computation as in the padded layout.

torch::Tensor GPT2Impl::hidden(const torch::Tensor &tokens, const torch::Tensor &pos,
                               const torch::Tensor &bias, std::vector<KVLayer> *cache,
                               int64_t off, bool train_fast) {
    sf_ml_require_fp32_training(wte->weight, "GPT-2");
    const torch::Tensor b = sf_ml_mask_to(bias, wte->weight.scalar_type());
    if (train_fast && !cache) {
        Packed pk;
        pk.B = tokens.size(0), pk.T = tokens.size(1), pk.bias = b;
        // Real positions: those a query of their own row may attend to.
        auto real = bias.diagonal(0, 2, 3).eq(0).to(torch::kCPU).contiguous();   // (B, T)
        pk.idx = real.reshape({pk.B * pk.T}).nonzero().squeeze(1).to(tokens.device());   // (N)
        const bool *ra = real.data_ptr<bool>();
        pk.seq.push_back(0);
        for (int64_t r = 0; r < pk.B && !pk.seq.empty(); r++) {
            int64_t first = -1, last = -1, count = 0;
            for (int64_t t = 0; t < pk.T; t++)
                if (ra[r * pk.T + t]) first = first < 0 ? t : first, last = t, count++;
            if (count && last - first + 1 != count) pk.seq.clear();
            else pk.seq.push_back(pk.seq.back() + count);
        }
        const int64_t BT = pk.B * pk.T;
        auto x = torch::embedding(wte->weight, tokens.reshape({BT}).index_select(0, pk.idx), -1, false, true) +
                 wpe->forward(pos.reshape({BT}).index_select(0, pk.idx));   // (N, C)
        for (size_t i = 0; i < blocks.size(); i++) x = blocks[i]->forward_packed(x, pk);
        return torch::zeros({BT, x.size(1)}, x.options()).index_copy(0, pk.idx, ln_f->forward(x)).view({pk.B, pk.T, -1});
    }
    auto x = wte->forward(tokens) + wpe->forward(pos);              // (B, T, C)
    for (size_t i = 0; i < blocks.size(); i++)
        x = blocks[i]->forward(x, b, cache ? &(*cache)[i] : nullptr, off);
    return ln_f->forward(x);
}

// ---- the vocabulary head ----
//
// For a small policy the (N, V) logits of a 50,257-word vocabulary are most
// of the work of a training step.  log_softmax(logits).gather(1, y) reads
// them twice and writes its output, a logged entropy exponentiates them
// again, the gather's backward writes an (N, V) one-hot gradient and the
// log-softmax's backward another before the two products with it.  Here,
// with x the logits and M a shift (a row's maximum),
//   e = exp(x - M),  s = sum e,  log p(y) = x_y - M - log s,
//   entropy = log s - sum(e (x - M)) / s,
// which is log_softmax's own formula, and the backward pass needs only e and
// s: with g the incoming gradient of log p(y), d x = g (onehot(y) - e / s),
// so with c = -g / s
//   d hid = c (e @ W) + g W[y],   d W = e^T @ (c hid), rows y += g hid,
// which never forms an (N, V) gradient.
//
// On a CPU with AVX2 and FMA and oneDNN's sgemm the vocabulary goes by in
// chunks of HEAD_CHUNK words: each chunk's logits are reduced while in the
// cache with the row's running maximum so far as its shift (a chunk's e is
// relative to its own shift; a per (row, chunk) factor exp(shift - M) / s
// carries it to the softmax), and the backward products go chunk by chunk
// so that e is read from memory once.  exp is Cephes' polynomial (within an
// ulp or two of expf; below -87.3 it gives 0 rather than a denormal under
// 1.2e-38); sums are float within a block of 1,024 words and double across.
// Elsewhere (another CPU, a GPU) the same formulas run as tensor operations
// on the whole vocabulary as one chunk.

// Words per chunk of the CPU path: a chunk's logits for a minibatch's
// hundred tokens (800 KB) stay in the cache while they are reduced.
#define HEAD_CHUNK 2048

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define SF_HEAD_AVX2 1

// exp(x) for x <= 0 (a value minus the maximum it was taken over).
__attribute__((target("avx2,fma"))) static inline __m256 exp_avx2(__m256 x) {
    x = _mm256_max_ps(_mm256_min_ps(x, _mm256_setzero_ps()), _mm256_set1_ps(-88.3762626647949f));
    __m256 fx = _mm256_floor_ps(_mm256_fmadd_ps(x, _mm256_set1_ps(1.44269504088896341f), _mm256_set1_ps(0.5f)));
    x = _mm256_fnmadd_ps(fx, _mm256_set1_ps(0.693359375f), x);
    x = _mm256_fnmadd_ps(fx, _mm256_set1_ps(-2.12194440e-4f), x);
    __m256 y = _mm256_set1_ps(1.9875691500E-4f);
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(1.3981999507E-3f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(8.3334519073E-3f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(4.1665795894E-2f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(1.6666665459E-1f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(5.0000001201E-1f));
    y = _mm256_fmadd_ps(y, _mm256_mul_ps(x, x), _mm256_add_ps(x, _mm256_set1_ps(1.0f)));
    // 2^n through the exponent bits; n = -127 (x at the lower clamp) gives a
    // zero exponent field, so the result is 0.
    __m256i n = _mm256_add_epi32(_mm256_cvttps_epi32(fx), _mm256_set1_epi32(127));
    n = _mm256_max_epi32(n, _mm256_setzero_si256());
    return _mm256_mul_ps(y, _mm256_castsi256_ps(_mm256_slli_epi32(n, 23)));
}

__attribute__((target("avx2,fma"))) static float hmax_avx2(__m256 v) {
    __m128 a = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    a = _mm_max_ps(a, _mm_movehl_ps(a, a));
    a = _mm_max_ss(a, _mm_shuffle_ps(a, a, 1));
    return _mm_cvtss_f32(a);
}

__attribute__((target("avx2,fma"))) static double hsum_avx2(__m256 v) {
    alignas(32) float f[8];
    _mm256_store_ps(f, v);
    double s = 0;
    for (float x : f) s += x;
    return s;
}

__attribute__((target("avx2,fma"))) static float max_avx2(const float *x, int64_t n) {
    int64_t j = 0;
    __m256 mv = _mm256_set1_ps(-INFINITY);
    for (; j + 8 <= n; j += 8) mv = _mm256_max_ps(mv, _mm256_loadu_ps(x + j));
    float m = hmax_avx2(mv);
    for (; j < n; j++) m = std::max(m, x[j]);
    return m;
}

// x[0, n) with shift M: *s = sum exp(x - M), *u = sum exp(x - M) (x - M);
// with keep_exp, x becomes exp(x - M).
__attribute__((target("avx2,fma"))) static void expsum_avx2(float *x, int64_t n, float M, bool keep_exp, double *s,
                                                            double *u) {
    const __m256 mb = _mm256_set1_ps(M);
    double S = 0, U = 0;
    int64_t j = 0;
    while (j + 8 <= n) {
        __m256 sv = _mm256_setzero_ps(), uv = _mm256_setzero_ps();
        for (const int64_t end = std::min<int64_t>(n & ~int64_t(7), j + 1024); j < end; j += 8) {
            const __m256 d = _mm256_sub_ps(_mm256_loadu_ps(x + j), mb);
            const __m256 e = exp_avx2(d);
            sv = _mm256_add_ps(sv, e);
            uv = _mm256_fmadd_ps(e, d, uv);
            if (keep_exp) _mm256_storeu_ps(x + j, e);
        }
        S += hsum_avx2(sv);
        U += hsum_avx2(uv);
    }
    for (; j < n; j++) {
        const float d = x[j] - M, e = std::exp(d);
        S += e;
        U += (double)e * d;
        if (keep_exp) x[j] = e;
    }
    *s = S;
    *u = U;
}

static bool head_avx2(void) {
    static const bool ok = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    return ok;
}
#endif

// What the forward pass leaves the backward one: e (U, V), exp(logits -
// shift) with a shift per row and chunk of `chunk` words, and coef (U,
// chunks), exp(shift - M) / s, so that softmax = e * coef chunk by chunk.
struct HeadSaved {
    torch::Tensor e, coef;
    int64_t chunk;
};

// hid (U, C), w (V, C), y (N), rows (N): token i is y[i] after hidden state
// rows[i] (several tokens may follow one state) -> log p(y) (N) into *lp,
// with ent the entropies (N); with saved, what the backward pass needs.
static void head_forward(const torch::Tensor &hid, const torch::Tensor &w, const torch::Tensor &y,
                         const torch::Tensor &rows, torch::Tensor *lp, torch::Tensor *ent, HeadSaved *saved) {
    const int64_t U = hid.size(0), N = y.size(0), V = w.size(0);
    auto h = hid.to(torch::kFloat32).contiguous();
    auto wf = w.to(torch::kFloat32);
#ifdef SF_HEAD_AVX2
    if (!portable_only && head_avx2() && dnnl_sgemm_ptr() && blas_layout(h) && blas_layout(wf)) {
        const int64_t nch = (V + HEAD_CHUNK - 1) / HEAD_CHUNK;
        // Without a backward pass to keep e for, one chunk's logits at a time.
        auto L = torch::empty({U, saved ? V : std::min<int64_t>(V, HEAD_CHUNK)}, h.options());
        const int64_t ld = L.size(1);
        auto yc = y.to(torch::kCPU, torch::kLong).contiguous(), rc = rows.to(torch::kCPU, torch::kLong).contiguous();
        const int64_t *ya = yc.data_ptr<int64_t>(), *ra = rc.data_ptr<int64_t>();
        std::vector<int64_t> first(U + 1, 0), tok(N);                  // each row's tokens
        for (int64_t i = 0; i < N; i++) first[ra[i] + 1]++;
        for (int64_t u = 0; u < U; u++) first[u + 1] += first[u];
        std::vector<int64_t> fill(first.begin(), first.end() - 1);
        for (int64_t i = 0; i < N; i++) tok[fill[ra[i]]++] = i;
        auto shift = torch::empty({U, nch}, h.options());
        std::vector<float> M(U, -INFINITY), xy(N);
        std::vector<double> S(U, 0.0), T(U, 0.0);
        float *Lp = L.data_ptr<float>(), *sh = shift.data_ptr<float>();
        for (int64_t k = 0; k < nch; k++) {
            const int64_t v0 = k * HEAD_CHUNK, n = std::min<int64_t>(HEAD_CHUNK, V - v0);
            const int64_t c0 = saved ? v0 : 0;
            auto Lk = L.narrow(1, c0, n);
            head_gemm(h, false, wf.narrow(0, v0, n), true, Lk);    // (U, n) logits
            at::parallel_for(0, U, 1, [&](int64_t u0, int64_t u1) {
                for (int64_t u = u0; u < u1; u++) {
                    float *x = Lp + u * ld + c0;
                    for (int64_t j = first[u]; j < first[u + 1]; j++)
                        if (ya[tok[j]] >= v0 && ya[tok[j]] < v0 + n) xy[tok[j]] = x[ya[tok[j]] - v0];
                    const float m = std::max(M[u], max_avx2(x, n));
                    if (S[u] > 0 && m > M[u]) {                     // the shift rises: rescale
                        const double a = std::exp((double)M[u] - m);
                        T[u] = a * (T[u] + ((double)M[u] - m) * S[u]);
                        S[u] *= a;
                    }
                    M[u] = m;
                    double s, t;
                    expsum_avx2(x, n, m, saved != nullptr, &s, &t);
                    S[u] += s;
                    T[u] += t;
                    sh[u * nch + k] = m;
                }
            });
        }
        auto lpt = torch::empty({N}, h.options()), entt = torch::empty({N}, h.options());
        float *lpa = lpt.data_ptr<float>(), *ea = entt.data_ptr<float>();
        for (int64_t i = 0; i < N; i++) {
            const int64_t u = ra[i];
            const double ls = std::log(S[u]);
            lpa[i] = (float)((double)xy[i] - M[u] - ls);
            ea[i] = (float)(ls - T[u] / S[u]);
        }
        for (int64_t u = 0; saved && u < U; u++)
            for (int64_t k = 0; k < nch; k++)
                sh[u * nch + k] = (float)(std::exp((double)sh[u * nch + k] - M[u]) / S[u]);
        *lp = lpt;
        if (ent) *ent = entt;
        if (saved) *saved = {L, shift, HEAD_CHUNK};
        return;
    }
#endif
    auto L = torch::empty({U, V}, h.options());
    head_gemm(h, false, wf, true, L);
    auto x = L.sub_(L.amax(1, true));                                  // (U, V) logits - rowmax
    auto e = torch::exp(x);
    auto s = e.sum(1);                                                  // (U)
    auto ls = s.log();
    *lp = x.index({rows, y}) - ls.index_select(0, rows);
    if (ent) *ent = (ls - (e * x).sum(1) / s).index_select(0, rows);
    if (saved) *saved = {e, s.reciprocal().unsqueeze(1), V};
}

// The backward pass for incoming gradient g (N) of log p(y): d hid (U, C)
// and d w (V, C), as the formulas above say, with the g of the tokens of
// one state summed for its softmax part.
static void head_backward(const HeadSaved &sv, const torch::Tensor &hid, const torch::Tensor &w,
                          const torch::Tensor &y, const torch::Tensor &rows, const torch::Tensor &g,
                          torch::Tensor *dh, torch::Tensor *dw) {
    const int64_t U = hid.size(0), N = y.size(0), V = w.size(0), C = hid.size(1), nch = sv.coef.size(1);
    auto g1 = g.view({N, 1});
    auto gu = torch::zeros({U, 1}, hid.options()).index_add_(0, rows, g1);   // (U, 1)
    auto cg = sv.coef * -gu;                                            // (U, chunks)
    auto part = torch::empty({U, C}, hid.options());
    torch::Tensor acc = dh ? torch::zeros({U, C}, hid.options()) : torch::Tensor();
    if (dw) *dw = torch::empty({V, C}, hid.options());
    for (int64_t k = 0; k < nch; k++) {
        const int64_t v0 = k * sv.chunk, n = std::min<int64_t>(sv.chunk, V - v0);
        auto ek = sv.e.narrow(1, v0, n);                                // (U, n)
        auto ck = cg.narrow(1, k, 1);                                   // (U, 1)
        if (dh) {
            head_gemm(ek, false, w.narrow(0, v0, n), false, part);      // (U, C)
            acc.addcmul_(part, ck);
        }
        if (dw) {
            auto dwk = dw->narrow(0, v0, n);
            head_gemm(ek, true, (hid * ck).contiguous(), false, dwk);   // (n, C)
        }
    }
    if (dh) *dh = acc.index_add_(0, rows, w.index_select(0, y) * g1);
    if (dw) dw->index_add_(0, y, hid.index_select(0, rows) * g1);
}

namespace {
struct TokenLogprob : torch::autograd::Function<TokenLogprob> {
    // hid (U, C), w (V, C) float32, y (N), rows (N) int64 -> log p(y) (N),
    // entropy (N)
    static torch::autograd::variable_list forward(torch::autograd::AutogradContext *ctx,
                                                  const torch::Tensor &hid, const torch::Tensor &w,
                                                  const torch::Tensor &y, const torch::Tensor &rows) {
        torch::Tensor lp, ent;
        HeadSaved sv;
        head_forward(hid, w, y, rows, &lp, &ent, &sv);
        ctx->save_for_backward({hid, w, y, rows, sv.e, sv.coef});
        ctx->saved_data["chunk"] = sv.chunk;
        ctx->mark_non_differentiable({ent});
        return {lp, ent};
    }
    static torch::autograd::variable_list backward(torch::autograd::AutogradContext *ctx,
                                                   torch::autograd::variable_list grads) {
        auto v = ctx->get_saved_variables();
        HeadSaved sv{v[4], v[5], ctx->saved_data["chunk"].toInt()};
        torch::Tensor dh, dw;
        head_backward(sv, v[0], v[1], v[2], v[3], grads[0], ctx->needs_input_grad(0) ? &dh : nullptr,
                      ctx->needs_input_grad(1) ? &dw : nullptr);
        return {dh, dw, torch::Tensor(), torch::Tensor()};
    }
};
}  // namespace

torch::Tensor GPT2Impl::token_logprobs(const torch::Tensor &hid, const torch::Tensor &y,
                                       const torch::Tensor &rows, torch::Tensor *entropy) {
    const torch::Tensor &w = wte->weight;
    const torch::Tensor r = rows.defined() ? rows : torch::arange(y.size(0), y.options().dtype(torch::kLong));
    if (torch::GradMode::is_enabled() && w.requires_grad()) {
        auto o = TokenLogprob::apply(hid, w, y, r);
        if (entropy) *entropy = o[1];
        return o[0];
    }
    torch::Tensor lp;
    head_forward(hid, w, y, r, &lp, entropy, nullptr);
    return lp;
}

torch::Tensor sf_gpt2_attn_bias(const torch::Tensor &kmask, int64_t q0, int64_t Tq) {
    const int64_t Tk = kmask.size(1);
    auto opts = torch::TensorOptions().device(kmask.device());
    auto qi = torch::arange(q0, q0 + Tq, opts.dtype(torch::kLong)).view({Tq, 1});
    auto kj = torch::arange(0, Tk, opts.dtype(torch::kLong)).view({1, Tk});
    auto allowed = (kj <= qi).unsqueeze(0) & kmask.view({kmask.size(0), 1, Tk});  // (B, Tq, Tk)
    auto bias = torch::zeros(allowed.sizes(), opts.dtype(torch::kFloat32));
    bias.masked_fill_(allowed.logical_not(), -1e9);
    return bias.unsqueeze(1);                                      // (B, 1, Tq, Tk)
}

PaddedBatch sf_gpt2_batch(const torch::Tensor &tokens, const torch::Tensor &mask,
                          torch::Device dev) {
    PaddedBatch b;
    b.tokens = tokens.to(dev, torch::kLong);
    b.mask = mask.to(dev, torch::kBool);
    b.pos = (b.mask.to(torch::kLong).cumsum(1) - 1).clamp_min(0);
    b.bias = sf_gpt2_attn_bias(b.mask, 0, tokens.size(1));
    return b;
}

// ---- configuration ----

extern "C" void sf_gpt2_config_124m(sf_gpt2_config_t *c) {
    c->n_layer = 12;
    c->n_head = 12;
    c->n_embd = 768;
    c->n_ctx = 1024;
    c->vocab_size = 50257;
    c->eos_id = 50256;
    c->ln_eps = 1e-5f;
}

extern "C" int sf_gpt2_config_check(const sf_gpt2_config_t *c, char *err, size_t errlen) {
    if (!c) return SF_EINVAL;
    if (c->n_layer < 1 || c->n_head < 1 || c->n_embd < 1 || c->n_ctx < 2 || c->vocab_size < 2 ||
        c->n_layer > 4096 || c->n_embd > 65536 || c->n_ctx > (1 << 20) || c->vocab_size > (1 << 24))
        return sf_errf(SF_EINVAL, err, errlen, "GPT-2 config out of range (layers %d, heads %d, "
                       "width %d, context %d, vocab %d)", c->n_layer, c->n_head, c->n_embd,
                       c->n_ctx, c->vocab_size);
    if (c->n_embd % c->n_head)
        return sf_errf(SF_EINVAL, err, errlen, "n_embd %d is not a multiple of n_head %d",
                       c->n_embd, c->n_head);
    if (c->eos_id < 0 || c->eos_id >= c->vocab_size)
        return sf_errf(SF_EINVAL, err, errlen, "eos id %d outside the vocabulary", c->eos_id);
    if (!(c->ln_eps > 0)) return sf_errf(SF_EINVAL, err, errlen, "layer_norm_epsilon must be > 0");
    return 0;
}

// Reads HF config.json fields from a parsed object; absent fields keep the
// 124M defaults, as HF's GPT2Config does.
static int config_from_json(const cJSON *j, sf_gpt2_config_t *c, char *err, size_t errlen) {
    sf_gpt2_config_124m(c);
    if (!cJSON_IsObject(j)) return sf_errf(SF_EFORMAT, err, errlen, "config is not a JSON object");
    struct { const char *key; int *dst; } ints[] = {
        {"n_layer", &c->n_layer}, {"n_head", &c->n_head}, {"n_embd", &c->n_embd},
        {"n_ctx", &c->n_ctx}, {"n_positions", &c->n_ctx}, {"vocab_size", &c->vocab_size},
        {"eos_token_id", &c->eos_id},
    };
    for (auto &f : ints) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, f.key);
        if (!v) continue;
        if (!cJSON_IsNumber(v) || v->valuedouble != (int)v->valuedouble)
            return sf_errf(SF_EFORMAT, err, errlen, "config: %s is not an integer", f.key);
        *f.dst = (int)v->valuedouble;
    }
    const cJSON *eps = cJSON_GetObjectItemCaseSensitive(j, "layer_norm_epsilon");
    if (cJSON_IsNumber(eps)) c->ln_eps = (float)eps->valuedouble;
    return sf_gpt2_config_check(c, err, errlen);
}

static char *config_to_json(const sf_gpt2_config_t *c) {
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "model_type", "gpt2");
    cJSON_AddNumberToObject(j, "n_layer", c->n_layer);
    cJSON_AddNumberToObject(j, "n_head", c->n_head);
    cJSON_AddNumberToObject(j, "n_embd", c->n_embd);
    cJSON_AddNumberToObject(j, "n_positions", c->n_ctx);
    cJSON_AddNumberToObject(j, "n_ctx", c->n_ctx);
    cJSON_AddNumberToObject(j, "vocab_size", c->vocab_size);
    cJSON_AddNumberToObject(j, "eos_token_id", c->eos_id);
    cJSON_AddNumberToObject(j, "layer_norm_epsilon", c->ln_eps);
    char *s = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    return s;
}

// The architectures this code implements: HF's GPT-2 classes whose
// transformer is GPT2Model (the heads other than the tied LM head are
// dropped).
static bool known_arch(const char *a) {
    return !strcmp(a, "GPT2LMHeadModel") || !strcmp(a, "GPT2Model") ||
           !strcmp(a, "GPT2DoubleHeadsModel");
}

// Refuses an HF config.json of another model, or a GPT-2 variant whose
// switches this implementation does not follow; *arch gets the offending
// name for the "unknown architecture" message (SF_EUNSUPPORTED with *arch
// set), other refusals are SF_EUNSUPPORTED with a message in err.
static int check_hf_gpt2(const cJSON *j, std::string *arch, char *err, size_t errlen) {
    const cJSON *mt = cJSON_GetObjectItemCaseSensitive(j, "model_type");
    if (cJSON_IsString(mt) && strcmp(mt->valuestring, "gpt2") != 0) {
        *arch = mt->valuestring;
        return SF_EUNSUPPORTED;
    }
    const cJSON *ar = cJSON_GetObjectItemCaseSensitive(j, "architectures");
    const cJSON *list = cJSON_IsArray(ar) ? ar : nullptr, *a;
    cJSON_ArrayForEach(a, list) {
        if (cJSON_IsString(a) && !known_arch(a->valuestring)) {
            *arch = a->valuestring;
            return SF_EUNSUPPORTED;
        }
    }
    const cJSON *act = cJSON_GetObjectItemCaseSensitive(j, "activation_function");
    if (cJSON_IsString(act) && strcmp(act->valuestring, "gelu_new") != 0 &&
        strcmp(act->valuestring, "gelu_pytorch_tanh") != 0)
        return sf_errf(SF_EUNSUPPORTED, err, errlen,
                       "activation_function '%s' is not supported (GPT-2's is gelu_new)",
                       act->valuestring);
    const cJSON *inner = cJSON_GetObjectItemCaseSensitive(j, "n_inner");
    const cJSON *embd = cJSON_GetObjectItemCaseSensitive(j, "n_embd");
    double C = cJSON_IsNumber(embd) ? embd->valuedouble : 768;
    if (cJSON_IsNumber(inner) && inner->valuedouble != 4 * C)
        return sf_errf(SF_EUNSUPPORTED, err, errlen,
                       "n_inner %g is not supported (the MLP is 4 x n_embd = %g)",
                       inner->valuedouble, 4 * C);
    static const struct { const char *key; bool want; } flags[] = {
        {"tie_word_embeddings", true}, {"scale_attn_weights", true},
        {"scale_attn_by_inverse_layer_idx", false},
    };
    for (auto &f : flags) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, f.key);
        if (cJSON_IsBool(v) && (bool)cJSON_IsTrue(v) != f.want)
            return sf_errf(SF_EUNSUPPORTED, err, errlen, "%s = %s is not supported", f.key,
                           f.want ? "false" : "true");
    }
    return 0;
}

extern "C" int sf_gpt2_config_load(const char *path, sf_gpt2_config_t *c, char *err,
                                   size_t errlen) {
    std::string text;
    if (!sf_ml_read_file(path, &text))
        return sf_errf(SF_EIO, err, errlen, "cannot read %s: %s", path, strerror(errno));
    cJSON *j = cJSON_ParseWithLength(text.data(), text.size());
    if (!j) return sf_errf(SF_EFORMAT, err, errlen, "%s: not valid JSON", path);
    char sub[256] = "";
    std::string arch;
    int rc = check_hf_gpt2(j, &arch, sub, sizeof sub);
    if (rc == 0) rc = config_from_json(j, c, sub, sizeof sub);
    cJSON_Delete(j);
    if (rc && !arch.empty())
        return sf_errf(rc, err, errlen, "unknown architecture '%s' in %s (this loader reads GPT-2: "
                       "model_type gpt2, GPT2LMHeadModel or GPT2Model)", arch.c_str(), path);
    if (rc) return sf_errf(rc, err, errlen, "%s: %s", path, sub);
    return 0;
}

// ---- objects ----

// What ml/model_file.hpp needs to know of GPT-2.  HF checkpoints may carry a
// "transformer." prefix; the value head is optional (TRL adds a fresh one to
// a plain GPT-2), and a file without it keeps a fresh one of seed 0.
struct GPT2File : ModelFileDefaults {
    typedef sf_gpt2_s Obj;
    typedef sf_gpt2_config_t Config;
    static constexpr const char *what = "GPT-2";
    static constexpr const char *name = "GPT-2";
    static constexpr const char *meta_key = "sf_gpt2_config";
    static constexpr const char *prefix = "transformer.";
    static constexpr const char *optional = "v_head.";
    static constexpr int build_error = SF_ENOMEM;   // its build fails by allocating
    static constexpr bool conv = false;
    static int check(const Config *c, char *err, size_t errlen) { return sf_gpt2_config_check(c, err, errlen); }
    static int parse(const char *js, Config *c, char *err, size_t errlen) {
        cJSON *j = cJSON_Parse(js);
        int rc = config_from_json(j, c, err, errlen);
        cJSON_Delete(j);
        return rc;
    }
    static char *to_json(const Config &c) { return config_to_json(&c); }
    static void build(Obj *m, const Config &c) { m->model = GPT2(c); }
    static void init(Obj *m, uint64_t seed) { m->model->init_weights(seed); }
    static const Config &config(const Obj *m) { return m->model->cfg; }
    static torch::ScalarType dtype(const Obj *m) { return m->model->wte->weight.scalar_type(); }
};

extern "C" int sf_gpt2_new(const sf_gpt2_config_t *c, const char *device, uint64_t seed,
                           sf_gpt2_t **out, char *err, size_t errlen) {
    return sf_model_new<GPT2File>(c, device, seed, out, err, errlen);
}

void sf_gpt2_free(sf_gpt2_t **m) { sf_model_free(m); }

extern "C" const sf_gpt2_config_t *sf_gpt2_config(const sf_gpt2_t *m) {
    return m ? &m->model->cfg : nullptr;
}

extern "C" int64_t sf_gpt2_num_params(const sf_gpt2_t *m) { return sf_model_num_params(m); }

extern "C" const char *sf_gpt2_errstr(const sf_gpt2_t *m) { return m ? m->e.errstr : ""; }

extern "C" int sf_gpt2_load(const char *path, const char *device, sf_gpt2_t **out, char *err,
                            size_t errlen) {
    *out = nullptr;
    struct stat sb;
    if (stat(path, &sb) != 0)
        return sf_errf(SF_EIO, err, errlen, "cannot open %s: %s", path, strerror(errno));
    std::string file = path, dir;
    sf_gpt2_config_t c;
    bool have_cfg = false;
    int rc;
    if (S_ISDIR(sb.st_mode)) {
        // An HF folder: its config.json says what model it is, so it is read
        // (and a foreign architecture refused) before the weights.
        dir = path;
        std::string cfg = dir + "/config.json";
        if (stat(cfg.c_str(), &sb) == 0) {
            if ((rc = sf_gpt2_config_load(cfg.c_str(), &c, err, errlen)) != 0) return rc;
            have_cfg = true;
        }
        if ((rc = sf_ml_weights_path(dir, &file, err, errlen)) != 0) return rc;
    } else {
        size_t slash = file.rfind('/');
        dir = slash == std::string::npos ? "." : file.substr(0, slash);
    }
    sf_st_t *st = nullptr;
    if ((rc = sf_st_load(file.c_str(), &st, err, errlen)) != 0) return rc;
    char sub[256];
    sf_gpt2_config_t meta;
    if (sf_model_st_config<GPT2File>(st, &meta, sub, sizeof sub) == 0) {
        c = meta;   // our own file: its metadata is the config it was saved with
    } else if (!have_cfg) {
        std::string cfg = dir + "/config.json";
        if ((rc = sf_gpt2_config_load(cfg.c_str(), &c, err, errlen)) != 0) {
            sf_st_free(&st);
            return rc;
        }
    }
    rc = sf_model_from_st<GPT2File>(file.c_str(), st, c, device, out, err, errlen);
    sf_st_free(&st);
    return rc;
}

extern "C" int sf_gpt2_save(sf_gpt2_t *m, const char *path) { return sf_model_save<GPT2File>(m, path); }

extern "C" int sf_gpt2_to_bytes(sf_gpt2_t *m, uint8_t **buf, size_t *len) {
    return sf_model_to_bytes<GPT2File>(m, buf, len);
}

extern "C" int sf_gpt2_load_bytes(sf_gpt2_t *m, const void *buf, size_t len) {
    return sf_model_load_bytes<GPT2File>(m, buf, len, "policy bytes");
}

extern "C" int sf_gpt2_from_bytes(const void *buf, size_t len, const char *device,
                                  sf_gpt2_t **out, char *err, size_t errlen) {
    return sf_model_from_bytes<GPT2File>(buf, len, device, "policy bytes", out, err, errlen);
}

extern "C" int sf_gpt2_clone(sf_gpt2_t *m, sf_gpt2_t **out) {
    *out = nullptr;
    char err[256];
    int rc = sf_model_make<GPT2File>(&m->model->cfg, "cpu", out, err, sizeof err);
    if (rc) return sf_ml_fail(&m->e, rc, "%s", err);
    SF_ML_TRY {
        torch::NoGradGuard ng;
        (*out)->device = m->device;
        (*out)->model->to(m->device, GPT2File::dtype(m));
        auto src = m->model->named_parameters(true);
        for (auto &kv : (*out)->model->named_parameters(true)) kv.value().copy_(src[kv.key()]);
        return 0;
    }
    catch (...) {
        sf_gpt2_free(out);
        return sf_ml_fail(&m->e, SF_ETORCH, "cannot copy the model");
    }
}

// ---- inference dtype ----

extern "C" int sf_gpt2_set_dtype(sf_gpt2_t *m, const char *dtype) {
    return sf_model_set_dtype<GPT2File>(m, dtype);
}

extern "C" const char *sf_gpt2_dtype(const sf_gpt2_t *m) { return sf_model_dtype<GPT2File>(m); }

// ---- forward ----

extern "C" int sf_gpt2_forward(sf_gpt2_t *m, const int32_t *tokens, const uint8_t *mask, int B,
                               int T, float *logits, float *values) {
    if (!m || !tokens || B < 1 || T < 1) return SF_EINVAL;
    const auto &c = m->model->cfg;
    if (T > c.n_ctx) return sf_ml_fail(&m->e, SF_ERANGE, "sequence of %d > context %d", T, c.n_ctx);
    for (int64_t i = 0; i < (int64_t)B * T; i++)
        if (tokens[i] < 0 || tokens[i] >= c.vocab_size)
            return sf_ml_fail(&m->e, SF_EINVAL, "token id %d outside the vocabulary", tokens[i]);
    SF_ML_TRY {
        torch::NoGradGuard ng;
        auto tok = torch::from_blob(const_cast<int32_t *>(tokens), {B, T}, torch::kInt32);
        auto msk = mask ? torch::from_blob(const_cast<uint8_t *>(mask), {B, T}, torch::kUInt8)
                        : torch::ones({B, T}, torch::kUInt8);
        PaddedBatch b = sf_gpt2_batch(tok, msk, m->device);
        auto hid = m->model->hidden(b.tokens, b.pos, b.bias, nullptr, 0);   // (B, T, C)
        if (logits) sf_ml_to_f32(m->model->logits(hid), logits);           // (B, T, V)
        if (values) sf_ml_to_f32(m->model->v_head->forward(hid), values);  // (B, T)
        return 0;
    }
    SF_ML_CATCH(&m->e)
}
