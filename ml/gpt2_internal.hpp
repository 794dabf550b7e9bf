// gpt2_internal.hpp: the GPT-2 module shared by gpt2.cpp (model, weights),
// sample.cpp (KV-cache sampling) and ppo.cpp (SFT and PPO steps).
//
// Parameter names are HF's (wte, wpe, h.N.ln_1, h.N.attn.c_attn, ...,
// ln_f) so that named_parameters() is the checkpoint's key list; the value
// head is TRL's v_head.summary.  Conv1D weights are stored (in, out) as in
// HF, so x @ W is the layer.
#ifndef SF_ML_GPT2_INTERNAL_HPP
#define SF_ML_GPT2_INTERNAL_HPP

#include "ml/shim_internal.hpp"

#include <memory>

// HF's Conv1D: y = x @ weight + bias, weight (in, out).
struct Conv1DImpl : torch::nn::Module {
    torch::Tensor weight, bias;
    Conv1DImpl(int64_t in, int64_t out) {
        weight = register_parameter("weight", torch::empty({in, out}));
        bias = register_parameter("bias", torch::zeros({out}));
    }
    torch::Tensor forward(const torch::Tensor &x) {  // (..., in) -> (..., out)
        auto shape = x.sizes().vec();
        shape.back() = weight.size(1);
        return torch::addmm(bias, x.reshape({-1, x.size(-1)}), weight).view(shape);
    }
};
TORCH_MODULE(Conv1D);

// Keys and values of one layer for every position so far, preallocated to
// the longest sequence the sampler will reach.
struct KVLayer {
    torch::Tensor k, v;   // (B, H, Tmax, D)
};

// The real positions of a padded (B, T) batch packed into N rows, for the
// fast training path (gpt2.cpp).
struct Packed {
    torch::Tensor idx;           // (N) int64: each row's place in the (B * T) layout
    int64_t B = 0, T = 0;
    torch::Tensor bias;          // (B, 1, T, T) the batch's attention bias, the weights' dtype
    std::vector<int64_t> seq;    // when each batch row's real positions are one run: B + 1
                                 // offsets, row b packed as rows [seq[b], seq[b + 1]); else empty
};

struct AttnImpl : torch::nn::Module {
    Conv1D c_attn{nullptr}, c_proj{nullptr};
    int64_t n_head, n_embd;
    AttnImpl(int64_t C, int64_t H) : n_head(H), n_embd(C) {
        c_attn = register_module("c_attn", Conv1D(C, 3 * C));
        c_proj = register_module("c_proj", Conv1D(C, C));
    }
    // x (B, T, C); bias (B, 1, T, Tk) additive mask; kv: when set, this
    // call's keys/values are written at [off, off+T) and attention runs over
    // [0, off+T).
    torch::Tensor forward(const torch::Tensor &x, const torch::Tensor &bias, KVLayer *kv,
                          int64_t off);
    // The same on packed positions: a (N, C) -> (N, C).
    torch::Tensor forward_packed(const torch::Tensor &a, const Packed &pk);
};
TORCH_MODULE(Attn);

struct MLPImpl : torch::nn::Module {
    Conv1D c_fc{nullptr}, c_proj{nullptr};
    explicit MLPImpl(int64_t C) {
        c_fc = register_module("c_fc", Conv1D(C, 4 * C));
        c_proj = register_module("c_proj", Conv1D(4 * C, C));
    }
    torch::Tensor forward(const torch::Tensor &x) {
        return c_proj->forward(torch::gelu(c_fc->forward(x), "tanh"));   // gelu_new
    }
};
TORCH_MODULE(MLP);

struct BlockImpl : torch::nn::Module {
    torch::nn::LayerNorm ln_1{nullptr}, ln_2{nullptr};
    Attn attn{nullptr};
    MLP mlp{nullptr};
    BlockImpl(int64_t C, int64_t H, double eps) {
        ln_1 = register_module("ln_1", torch::nn::LayerNorm(torch::nn::LayerNormOptions({C}).eps(eps)));
        attn = register_module("attn", Attn(C, H));
        ln_2 = register_module("ln_2", torch::nn::LayerNorm(torch::nn::LayerNormOptions({C}).eps(eps)));
        mlp = register_module("mlp", MLP(C));
    }
    torch::Tensor forward(torch::Tensor x, const torch::Tensor &bias, KVLayer *kv, int64_t off) {
        x = x + attn->forward(ln_1->forward(x), bias, kv, off);
        return x + mlp->forward(ln_2->forward(x));
    }
    torch::Tensor forward_packed(torch::Tensor x, const Packed &pk) {
        x = x + attn->forward_packed(ln_1->forward(x), pk);
        return x + mlp->forward(ln_2->forward(x));
    }
};
TORCH_MODULE(Block);

// TRL's ValueHead: a linear layer on the last hidden state (no dropout here,
// so that recomputed old values equal the sampler's).
struct ValueHeadImpl : torch::nn::Module {
    torch::nn::Linear summary{nullptr};
    explicit ValueHeadImpl(int64_t C) { summary = register_module("summary", torch::nn::Linear(C, 1)); }
    torch::Tensor forward(const torch::Tensor &h) { return summary->forward(h).squeeze(-1); }
};
TORCH_MODULE(ValueHead);

struct GPT2Impl : torch::nn::Module {
    sf_gpt2_config_t cfg;
    torch::nn::Embedding wte{nullptr}, wpe{nullptr};
    torch::nn::ModuleList h;
    std::vector<Block> blocks;
    torch::nn::LayerNorm ln_f{nullptr};
    ValueHead v_head{nullptr};

    explicit GPT2Impl(const sf_gpt2_config_t &c);
    void init_weights(uint64_t seed);

    // tokens (B, T) int64, pos (B, T) int64, bias (B, 1, T, Tk) float32 ->
    // hidden (B, T, C) after ln_f, in the weights' dtype (the bias is cast to
    // it).  With a cache, T new positions go at off; the cache holds the
    // weights' dtype.  Throws sf_ml_error(SF_EUNSUPPORTED) when autograd
    // records on weights that are not float32 (a training step).
    // train_fast (without a cache; gpt2.cpp, "The fast training path"): the
    // layers run on the real positions only, packed, and the token
    // embedding's share of wte's gradient is a sparse tensor of the
    // looked-up rows, which autograd adds in place to the dense gradient of
    // the tied lm_head; only for a graph that also goes through the lm_head
    // (else wte's gradient is sparse, which Adam refuses).  Padded positions
    // of the result are 0.
    torch::Tensor hidden(const torch::Tensor &tokens, const torch::Tensor &pos,
                         const torch::Tensor &bias, std::vector<KVLayer> *cache, int64_t off,
                         bool train_fast = false);
    // Tied lm_head: hidden (..., C) -> logits (..., V), float32.  A bf16 or
    // fp16 model computes them in float32 from its cast weights: GPT-2's
    // logits reach magnitudes near 100, where bf16 steps by 0.5, which would
    // blur the sampling distribution and the log-probs.
    torch::Tensor logits(const torch::Tensor &hid) {
        const torch::Tensor &w = wte->weight;
        if (w.scalar_type() == torch::kFloat32) return torch::matmul(hid, w.t());
        return torch::matmul(hid.to(torch::kFloat32), w.to(torch::kFloat32).t());
    }
    // log p(y_i) (N) of tokens y (N) int64, token i after hidden state
    // rows[i] of hid (U, C) (rows (N) int64; undefined: token i after state
    // i), and with entropy the entropies (N) of those distributions (not
    // differentiable): log_softmax(logits(hid))[rows, y] in fewer passes
    // over the (U, V) logits, without the (N, V) gradients of the
    // log-softmax and the gather in the backward pass, and once per state
    // when tokens share one (gpt2.cpp, "The vocabulary head").
    torch::Tensor token_logprobs(const torch::Tensor &hid, const torch::Tensor &y, const torch::Tensor &rows,
                                 torch::Tensor *entropy);
};
TORCH_MODULE(GPT2);

struct sf_gpt2_s {
    GPT2 model{nullptr};
    torch::Device device{torch::kCPU};
    std::unique_ptr<torch::optim::Adam> opt;   // SFT's, created by its first step
    sf_ml_err_t e;
};

// A padded batch on the model's device: positions count real tokens, and the
// additive attention bias allows key j for query i when j is real and
// j <= i (slots, so padding anywhere works).  Masked scores get -1e9 rather
// than -inf so that a padding row (all keys masked) stays finite.
struct PaddedBatch {
    torch::Tensor tokens;   // (B, T) int64
    torch::Tensor mask;     // (B, T) bool
    torch::Tensor pos;      // (B, T) int64
    torch::Tensor bias;     // (B, 1, T, T) float
};
PaddedBatch sf_gpt2_batch(const torch::Tensor &tokens, const torch::Tensor &mask,
                          torch::Device dev);

// Additive bias for queries at slots [q0, q0+Tq) over keys [0, Tk) with key
// mask kmask (B, Tk) bool.
torch::Tensor sf_gpt2_attn_bias(const torch::Tensor &kmask, int64_t q0, int64_t Tq);

#endif
