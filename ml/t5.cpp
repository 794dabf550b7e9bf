// t5.cpp: the T5 v1.1 encoder as TorchScript (ml/sf_t5.h).
//
// The architecture is TorchScript source, compiled once per model with
// torch::jit::compile, so that the encoder runs through the interpreter and
// graph executor that run IF's exported text encoder (ml/diffusion.cpp
// loads that one with torch::jit::load).  The weights are plain tensors kept
// in HF's order and names, handed to the compiled function as a list.
#include "ml/shim_internal.hpp"
#include "ml/sf_t5.h"

#include <ATen/CPUGeneratorImpl.h>
#include <torch/jit.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <memory>
#include <string>
#include <utility>

// The encoder, from the published architecture (HF's modeling_t5.py is the
// reference that tools use).  layers holds 9 tensors per layer in this
// order: layer_norm (self-attention's), q, k, v, o, layer_norm (the
// feed-forward's), wi_0, wi_1, wo — weights (out, in) as nn.Linear keeps
// them.  bias_mask (B, 1, 1, T) is 0 for real tokens and a large negative
// number for padding, in the weights' dtype.
static const char *kT5Source = R"JIT(
def t5_bucket(rel: Tensor, num_buckets: int, log_ratio: float) -> Tensor:
    # Bidirectional: half the buckets for keys after the query, half before;
    # in each half, exact distances below max_exact and logarithmic bins up
    # to max_distance (everything farther shares the last bin).  log_ratio
    # is log(max_distance / max_exact), and the operations are HF's, in its
    # order, so that a distance on a bin's edge rounds into the same bin.
    nb = num_buckets // 2
    ret = (rel > 0).long() * nb
    n = torch.abs(rel)
    max_exact = nb // 2
    is_small = n < max_exact
    large = max_exact + (torch.log(n.float() / max_exact) / log_ratio * (nb - max_exact)).long()
    large = torch.clamp(large, max=nb - 1)
    return ret + torch.where(is_small, n, large)

def t5_norm(x: Tensor, w: Tensor, eps: float) -> Tensor:
    # T5LayerNorm: no mean subtraction, no bias; the variance in float32,
    # the result rounded to the weights' dtype before the scale.
    var = x.float().pow(2).mean(-1, keepdim=True)
    h = x * torch.rsqrt(var + eps)
    return w * h.to(w.dtype)

def t5_encode(ids: Tensor, bias_mask: Tensor, shared: Tensor, rel_table: Tensor, layers: List[Tensor],
              final_norm: Tensor, n_heads: int, d_kv: int, num_buckets: int, log_ratio: float,
              eps: float) -> Tensor:
    B = ids.size(0)
    T = ids.size(1)
    inner = n_heads * d_kv
    x = torch.embedding(shared, ids)                                  # (B, T, D)
    pos = torch.arange(T, device=ids.device)
    rel = pos.unsqueeze(0) - pos.unsqueeze(1)                         # [i, j] = j - i
    bias = torch.embedding(rel_table, t5_bucket(rel, num_buckets, log_ratio))   # (T, T, H)
    bias = bias.permute([2, 0, 1]).unsqueeze(0) + bias_mask           # (B, H, T, T)
    L = len(layers) // 9
    for l in range(L):
        h = t5_norm(x, layers[9 * l], eps)
        q = torch.matmul(h, layers[9 * l + 1].t()).view([B, T, n_heads, d_kv]).transpose(1, 2)
        k = torch.matmul(h, layers[9 * l + 2].t()).view([B, T, n_heads, d_kv]).transpose(1, 2)
        v = torch.matmul(h, layers[9 * l + 3].t()).view([B, T, n_heads, d_kv]).transpose(1, 2)
        s = torch.matmul(q, k.transpose(-1, -2)) + bias               # no 1/sqrt(d_kv): T5's
        a = torch.softmax(s.float(), -1).to(s.dtype)
        y = torch.matmul(a, v).transpose(1, 2).reshape([B, T, inner])
        x = x + torch.matmul(y, layers[9 * l + 4].t())
        h = t5_norm(x, layers[9 * l + 5], eps)
        g = torch.gelu(torch.matmul(h, layers[9 * l + 6].t()), approximate='tanh')
        x = x + torch.matmul(g * torch.matmul(h, layers[9 * l + 7].t()), layers[9 * l + 8].t())
    return t5_norm(x, final_norm, eps)
)JIT";

struct sf_t5_s {
    sf_t5_config_t cfg;
    torch::Device device{torch::kCPU};
    torch::ScalarType dtype = torch::kFloat32;
    std::shared_ptr<torch::jit::CompilationUnit> cu;
    torch::Tensor shared, rel_table, final_norm;   // (V, D), (buckets, H), (D)
    std::vector<torch::Tensor> layers;             // 9 per layer (kT5Source)
    int64_t n_params = 0;
    sf_ml_err_t e;
};

extern "C" void sf_t5_config_v1_1_xxl(sf_t5_config_t *c) {
    *c = sf_t5_config_t{};
    c->vocab_size = 32128;
    c->d_model = 4096;
    c->d_kv = 64;
    c->d_ff = 10240;
    c->num_layers = 24;
    c->num_heads = 64;
    c->relative_attention_num_buckets = 32;
    c->relative_attention_max_distance = 128;
    c->layer_norm_epsilon = 1e-6f;
    c->pad_token_id = 0;
}

static int check_config(const sf_t5_config_t *c, char *err, size_t errlen) {
    if (c->vocab_size < 2 || c->vocab_size > (1 << 24) || c->d_model < 1 || c->d_model > (1 << 16) ||
        c->d_kv < 1 || c->d_kv > 4096 || c->d_ff < 1 || c->d_ff > (1 << 18) || c->num_layers < 1 ||
        c->num_layers > 1024 || c->num_heads < 1 || c->num_heads > 1024)
        return sf_errf(SF_EINVAL, err, errlen,
                       "sizes out of range (vocab %d, d_model %d, d_kv %d, d_ff %d, layers %d, heads %d)",
                       c->vocab_size, c->d_model, c->d_kv, c->d_ff, c->num_layers, c->num_heads);
    // Four buckets at least: two halves, each with an exact and a log part.
    if (c->relative_attention_num_buckets < 4 || c->relative_attention_num_buckets > 4096 ||
        c->relative_attention_max_distance <= c->relative_attention_num_buckets / 4)
        return sf_errf(SF_EINVAL, err, errlen, "relative attention: %d buckets up to distance %d do not fit",
                       c->relative_attention_num_buckets, c->relative_attention_max_distance);
    if (!(c->layer_norm_epsilon > 0))
        return sf_errf(SF_EINVAL, err, errlen, "layer_norm_epsilon must be > 0");
    if (c->pad_token_id < 0 || c->pad_token_id >= c->vocab_size)
        return sf_errf(SF_EINVAL, err, errlen, "pad_token_id %d outside the vocabulary of %d", c->pad_token_id,
                       c->vocab_size);
    return 0;
}

extern "C" int sf_t5_create_random(const sf_t5_config_t *c, uint64_t seed, const char *device, const char *dtype,
                                   sf_t5_t **out, char *err, size_t errlen) {
    if (!out) return SF_EINVAL;
    *out = nullptr;
    if (!c) return SF_EINVAL;
    int rc = check_config(c, err, errlen);
    if (rc) return rc;
    sf_ml_err_t e;
    torch::Device dev(torch::kCPU);
    torch::ScalarType t = torch::kFloat32;
    if ((rc = sf_ml_parse_device(device, &dev, &e)) != 0 || (dtype && (rc = sf_ml_parse_dtype(dtype, &t, &e)) != 0) ||
        (rc = sf_ml_dtype_probe(dev, t, false, &e)) != 0) {
        sf_ml_copy_err(err, errlen, e.errstr);
        return rc;
    }
    std::unique_ptr<sf_t5_s> m(new (std::nothrow) sf_t5_s());
    if (!m) return sf_errf(SF_ENOMEM, err, errlen, "out of memory");
    m->cfg = *c;
    m->device = dev;
    m->dtype = t;
    try {
        torch::NoGradGuard ng;
        at::Generator gen = at::detail::createCPUGenerator(seed);
        // Drawn in float32 on the CPU (the generator is the CPU's), one
        // tensor at a time, then rounded and moved: the model is never held
        // twice.
        auto draw = [&](std::vector<int64_t> shape, double std) {
            const double a = std * std::sqrt(3.0);   // uniform on [-a, a] has this std
            auto w = torch::empty(shape, torch::kFloat32).uniform_(-a, a, gen);
            m->n_params += w.numel();
            return w.to(dev, t);
        };
        auto ones = [&](int64_t n) {
            m->n_params += n;
            return torch::ones({n}, torch::TensorOptions().dtype(t).device(dev));
        };
        const int64_t D = c->d_model, I = (int64_t)c->num_heads * c->d_kv, F = c->d_ff;
        m->shared = draw({c->vocab_size, D}, 1.0);
        m->rel_table = draw({c->relative_attention_num_buckets, c->num_heads}, std::pow((double)D, -0.5));
        for (int l = 0; l < c->num_layers; l++) {
            m->layers.push_back(ones(D));
            m->layers.push_back(draw({I, D}, std::pow((double)D * c->d_kv, -0.5)));   // q
            m->layers.push_back(draw({I, D}, std::pow((double)D, -0.5)));              // k
            m->layers.push_back(draw({I, D}, std::pow((double)D, -0.5)));              // v
            m->layers.push_back(draw({D, I}, std::pow((double)I, -0.5)));              // o
            m->layers.push_back(ones(D));
            m->layers.push_back(draw({F, D}, std::pow((double)D, -0.5)));              // wi_0
            m->layers.push_back(draw({F, D}, std::pow((double)D, -0.5)));              // wi_1
            m->layers.push_back(draw({D, F}, std::pow((double)F, -0.5)));              // wo
        }
        m->final_norm = ones(D);
        m->cu = torch::jit::compile(kT5Source);
    } catch (const std::bad_alloc &) {
        return sf_errf(SF_ENOMEM, err, errlen, "out of memory for the T5 weights");
    } catch (const c10::Error &ex) {
        const char *w = ex.what_without_backtrace();
        return sf_errf(strstr(w, "out of memory") ? SF_ENOMEM : SF_ETORCH, err, errlen, "T5: %s", w);
    } catch (const std::exception &ex) {
        return sf_errf(SF_ETORCH, err, errlen, "T5: %s", ex.what());
    }
    *out = m.release();
    return 0;
}

extern "C" void sf_t5_free(sf_t5_t **m) {
    if (!m || !*m) return;
    delete *m;
    *m = nullptr;
}

extern "C" int sf_t5_encode(sf_t5_t *m, const int32_t *tokens, int B, int T, float *out) {
    if (!m || !tokens || !out || B < 1 || T < 1) return SF_EINVAL;
    const sf_t5_config_t &c = m->cfg;
    for (int64_t i = 0; i < (int64_t)B * T; i++)
        if (tokens[i] < 0 || tokens[i] >= c.vocab_size)
            return sf_ml_fail(&m->e, SF_EINVAL, "row %d: token id %d at %d outside the vocabulary of %d",
                              (int)(i / T), tokens[i], (int)(i % T), c.vocab_size);
    SF_ML_TRY {
        torch::NoGradGuard ng;
        auto ids = torch::from_blob(const_cast<int32_t *>(tokens), {B, T}, torch::kInt32).to(torch::kLong);
        auto pad = (ids == c.pad_token_id).to(torch::kFloat32) * -1e9;   // (B, T): 0 or -1e9
        auto bias_mask = sf_ml_mask_to(pad, m->dtype).view({B, 1, 1, T}).to(m->device);
        c10::List<torch::Tensor> layers;
        for (const auto &w : m->layers) layers.push_back(w);
        std::vector<c10::IValue> args = {ids.to(m->device), bias_mask, m->shared, m->rel_table, layers,
                                         m->final_norm, (int64_t)c.num_heads, (int64_t)c.d_kv,
                                         (int64_t)c.relative_attention_num_buckets,
                                         std::log((double)c.relative_attention_max_distance /
                                                  (c.relative_attention_num_buckets / 4)),
                                         (double)c.layer_norm_epsilon};
        auto h = m->cu->get_function("t5_encode")(args).toTensor();   // (B, T, D)
        sf_ml_to_f32(h, out);
        return 0;
    }
    SF_ML_CATCH(&m->e)
}

extern "C" int sf_t5_save(sf_t5_t *m, const char *dir) {
    if (!m || !dir) return SF_EINVAL;
    const sf_t5_config_t &c = m->cfg;
    std::string d = dir, cfg = d + "/config.json", st = d + "/model.safetensors";
    FILE *f = fopen(cfg.c_str(), "w");
    if (!f) return sf_ml_fail(&m->e, SF_EIO, "%s: %s", cfg.c_str(), strerror(errno));
    fprintf(f,
            "{\"architectures\": [\"T5EncoderModel\"], \"model_type\": \"t5\", \"feed_forward_proj\": \"gated-gelu\",\n"
            " \"vocab_size\": %d, \"d_model\": %d, \"d_kv\": %d, \"d_ff\": %d, \"num_layers\": %d,\n"
            " \"num_heads\": %d, \"relative_attention_num_buckets\": %d, \"relative_attention_max_distance\": %d,\n"
            " \"layer_norm_epsilon\": %.9g, \"pad_token_id\": %d, \"eos_token_id\": 1,\n"
            " \"is_encoder_decoder\": true, \"tie_word_embeddings\": false}\n",
            c.vocab_size, c.d_model, c.d_kv, c.d_ff, c.num_layers, c.num_heads, c.relative_attention_num_buckets,
            c.relative_attention_max_distance, (double)c.layer_norm_epsilon, c.pad_token_id);
    if (fclose(f)) return sf_ml_fail(&m->e, SF_EIO, "%s: %s", cfg.c_str(), strerror(errno));
    SF_ML_TRY {
        std::vector<std::pair<std::string, torch::Tensor>> named;
        named.emplace_back("shared.weight", m->shared);
        static const char *const kNames[9] = {
            "layer.0.layer_norm", "layer.0.SelfAttention.q", "layer.0.SelfAttention.k",
            "layer.0.SelfAttention.v", "layer.0.SelfAttention.o", "layer.1.layer_norm",
            "layer.1.DenseReluDense.wi_0", "layer.1.DenseReluDense.wi_1", "layer.1.DenseReluDense.wo"};
        for (int l = 0; l < c.num_layers; l++) {
            for (int i = 0; i < 9; i++)
                named.emplace_back("encoder.block." + std::to_string(l) + "." + kNames[i] + ".weight",
                                   m->layers[(size_t)9 * l + i]);
            if (l == 0)
                named.emplace_back("encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight",
                                   m->rel_table);
        }
        named.emplace_back("encoder.final_layer_norm.weight", m->final_norm);
        sf_st_writer_t *w = nullptr;
        if (sf_st_writer_new(&w)) return sf_ml_fail(&m->e, SF_ENOMEM, "out of memory");
        std::vector<torch::Tensor> keep;   // what the writer borrows
        int rc = 0;
        for (auto &nt : named) {
            keep.push_back(nt.second.detach().to(torch::kCPU, torch::kFloat32).contiguous());
            const torch::Tensor &t = keep.back();
            std::vector<int64_t> shape(t.sizes().begin(), t.sizes().end());
            rc = sf_st_writer_add(w, nt.first.c_str(), SF_ST_F32, (int)shape.size(), shape.data(), t.data_ptr(),
                                  (size_t)t.numel() * sizeof(float));
            if (rc) break;
        }
        if (rc == 0) rc = sf_st_writer_save(w, st.c_str());
        sf_st_writer_free(&w);
        if (rc) return sf_ml_fail(&m->e, rc, "%s: cannot write (%s)", st.c_str(), sf_strerror(rc));
        return 0;
    }
    SF_ML_CATCH(&m->e)
}

extern "C" const sf_t5_config_t *sf_t5_config(const sf_t5_t *m) { return m ? &m->cfg : nullptr; }

extern "C" int64_t sf_t5_num_params(const sf_t5_t *m) { return m ? m->n_params : 0; }

extern "C" const char *sf_t5_dtype(const sf_t5_t *m) { return m ? sf_ml_dtype_name(m->dtype) : "?"; }

extern "C" const char *sf_t5_errstr(const sf_t5_t *m) { return m ? m->e.errstr : ""; }
