// llama.cpp: HF's LlamaForCausalLM for inference — the architecture, its
// config.json, loading an HF folder (single file or shards) in the dtype
// asked for, the forward pass and KV-cache sampling, and the training the
// world's instruction model needs: fresh weights, supervised fine-tuning
// with AdamW and saving as an HF folder (ml/sf_llama.h).
//
// The module's parameter names are HF's (model.embed_tokens,
// model.layers.N.self_attn.q_proj, ..., model.norm, lm_head), so that
// named_parameters() is the checkpoint's key list and sf_ml_load_params
// (ml/shim_internal.hpp) reads it.  Parameters are made with torch::empty in
// their final dtype and device: no float32 copy of a 7B model, no random
// initialisation that the checkpoint overwrites.
#include "ml/model_file.hpp"
#include "ml/sf_llama.h"
#include "ml/vision_internal.hpp"   // sf_vision_init, sf_vision_adamw, sf_vision_set_lr

extern "C" {
#include "common/runtime/fileio.h"
}

#include <cjson/cJSON.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>

// ---- the architecture ----

// A bias-free linear layer: y = x @ weight^T, weight (out, in).
struct LinearNBImpl : torch::nn::Module {
    torch::Tensor weight;
    LinearNBImpl(int64_t in, int64_t out, const torch::TensorOptions &o) {
        weight = register_parameter("weight", torch::empty({out, in}, o), false);
    }
    torch::Tensor forward(const torch::Tensor &x) { return torch::nn::functional::linear(x, weight); }
};
TORCH_MODULE(LinearNB);

// LlamaRMSNorm: x / sqrt(mean(x^2) + eps) in float32, back in x's dtype,
// then times the weight.
struct RMSNormImpl : torch::nn::Module {
    torch::Tensor weight;
    double eps;
    RMSNormImpl(int64_t C, double e, const torch::TensorOptions &o) : eps(e) {
        weight = register_parameter("weight", torch::empty({C}, o), false);
    }
    torch::Tensor forward(const torch::Tensor &x) {
        auto xf = x.to(torch::kFloat32);
        xf = xf * torch::rsqrt(xf.pow(2).mean(-1, true) + eps);
        return weight * xf.to(x.scalar_type());
    }
};
TORCH_MODULE(RMSNorm);

// Keys and values (after rotation) of one layer for every position so far:
// (B, KV, Tmax, D), only the key-value heads (what GQA saves).
struct LlamaKV {
    torch::Tensor k, v;
};

// HF's rotate_half: the two halves of the head dimension, (x1, x2) ->
// (-x2, x1), so that dimension i pairs with i + D/2 (not with its
// neighbour, as the original LLaMA code's complex view does: HF's checkpoint
// conversion permutes q_proj and k_proj for this pairing).
static torch::Tensor rotate_half(const torch::Tensor &x) {
    const int64_t h = x.size(-1) / 2;
    return torch::cat({-x.narrow(-1, h, h), x.narrow(-1, 0, h)}, -1);
}

struct LlamaAttnImpl : torch::nn::Module {
    LinearNB q_proj{nullptr}, k_proj{nullptr}, v_proj{nullptr}, o_proj{nullptr};
    int64_t H, KV, D;
    LlamaAttnImpl(const sf_llama_config_t &c, const torch::TensorOptions &o)
        : H(c.num_attention_heads), KV(c.num_key_value_heads), D(c.head_dim) {
        q_proj = register_module("q_proj", LinearNB(c.hidden_size, H * D, o));
        k_proj = register_module("k_proj", LinearNB(c.hidden_size, KV * D, o));
        v_proj = register_module("v_proj", LinearNB(c.hidden_size, KV * D, o));
        o_proj = register_module("o_proj", LinearNB(H * D, c.hidden_size, o));
    }
    // x (B, T, C) at positions [off, off+T); cos, sin (T, D) in x's dtype;
    // mask (T, off+T) additive float32, or undefined when no key lies ahead
    // of a query (one new position).  With kv, this call's keys and values go
    // to [off, off+T) of the cache and attention runs over [0, off+T).
    torch::Tensor forward(const torch::Tensor &x, const torch::Tensor &cos, const torch::Tensor &sin,
                          const torch::Tensor &mask, LlamaKV *kv, int64_t off) {
        const int64_t B = x.size(0), T = x.size(1);
        auto q = q_proj->forward(x).view({B, T, H, D}).transpose(1, 2);     // (B, H, T, D)
        auto k = k_proj->forward(x).view({B, T, KV, D}).transpose(1, 2);    // (B, KV, T, D)
        auto v = v_proj->forward(x).view({B, T, KV, D}).transpose(1, 2);
        q = q * cos + rotate_half(q) * sin;
        k = k * cos + rotate_half(k) * sin;
        if (kv) {
            kv->k.narrow(2, off, T).copy_(k);
            kv->v.narrow(2, off, T).copy_(v);
            k = kv->k.narrow(2, 0, off + T);                                 // (B, KV, Tk, D)
            v = kv->v.narrow(2, 0, off + T);
        }
        if (KV != H) {
            // HF's repeat_kv: query head h reads key-value head h / (H / KV).
            const int64_t Tk = k.size(2), rep = H / KV;
            k = k.unsqueeze(2).expand({B, KV, rep, Tk, D}).reshape({B, H, Tk, D});
            v = v.unsqueeze(2).expand({B, KV, rep, Tk, D}).reshape({B, H, Tk, D});
        }
        // Scores and softmax in float32, as HF does for bf16 and fp16.
        auto att = torch::matmul(q, k.transpose(-2, -1)).to(torch::kFloat32) * (1.0 / std::sqrt((double)D));
        if (mask.defined()) att = att + mask;                                  // (B, H, T, Tk)
        att = torch::softmax(att, -1).to(x.scalar_type());
        auto y = torch::matmul(att, v).transpose(1, 2).reshape({B, T, H * D});
        return o_proj->forward(y);
    }
};
TORCH_MODULE(LlamaAttn);

// SwiGLU: down(silu(gate(x)) * up(x)).
struct LlamaMLPImpl : torch::nn::Module {
    LinearNB gate_proj{nullptr}, up_proj{nullptr}, down_proj{nullptr};
    LlamaMLPImpl(int64_t C, int64_t I, const torch::TensorOptions &o) {
        gate_proj = register_module("gate_proj", LinearNB(C, I, o));
        up_proj = register_module("up_proj", LinearNB(C, I, o));
        down_proj = register_module("down_proj", LinearNB(I, C, o));
    }
    torch::Tensor forward(const torch::Tensor &x) {
        return down_proj->forward(torch::silu(gate_proj->forward(x)) * up_proj->forward(x));
    }
};
TORCH_MODULE(LlamaMLP);

struct LlamaLayerImpl : torch::nn::Module {
    RMSNorm input_layernorm{nullptr}, post_attention_layernorm{nullptr};
    LlamaAttn self_attn{nullptr};
    LlamaMLP mlp{nullptr};
    LlamaLayerImpl(const sf_llama_config_t &c, const torch::TensorOptions &o) {
        self_attn = register_module("self_attn", LlamaAttn(c, o));
        mlp = register_module("mlp", LlamaMLP(c.hidden_size, c.intermediate_size, o));
        input_layernorm = register_module("input_layernorm", RMSNorm(c.hidden_size, c.rms_norm_eps, o));
        post_attention_layernorm =
            register_module("post_attention_layernorm", RMSNorm(c.hidden_size, c.rms_norm_eps, o));
    }
    torch::Tensor forward(torch::Tensor x, const torch::Tensor &cos, const torch::Tensor &sin,
                          const torch::Tensor &mask, LlamaKV *kv, int64_t off) {
        x = x + self_attn->forward(input_layernorm->forward(x), cos, sin, mask, kv, off);
        return x + mlp->forward(post_attention_layernorm->forward(x));
    }
};
TORCH_MODULE(LlamaLayer);

// HF's LlamaModel: what sits under "model." in the checkpoint.
struct LlamaBodyImpl : torch::nn::Module {
    torch::Tensor embed;   // embed_tokens.weight (V, C)
    torch::nn::ModuleList layers;
    std::vector<LlamaLayer> blocks;
    RMSNorm norm{nullptr};
    LlamaBodyImpl(const sf_llama_config_t &c, const torch::TensorOptions &o) {
        auto et = std::make_shared<torch::nn::Module>();
        embed = et->register_parameter("weight", torch::empty({c.vocab_size, c.hidden_size}, o), false);
        register_module("embed_tokens", et);
        layers = register_module("layers", torch::nn::ModuleList());
        for (int i = 0; i < c.num_hidden_layers; i++) {
            blocks.push_back(LlamaLayer(c, o));
            layers->push_back(blocks.back());
        }
        norm = register_module("norm", RMSNorm(c.hidden_size, c.rms_norm_eps, o));
    }
};
TORCH_MODULE(LlamaBody);

struct LlamaImpl : torch::nn::Module {
    sf_llama_config_t cfg;
    LlamaBody model{nullptr};
    LinearNB lm_head{nullptr};   // null when tied to the embeddings
    torch::Tensor inv_freq;      // (D/2) float64: theta^(-2i/D)

    LlamaImpl(const sf_llama_config_t &c, const torch::TensorOptions &o) : cfg(c) {
        model = register_module("model", LlamaBody(c, o));
        if (!c.tie_word_embeddings) lm_head = register_module("lm_head", LinearNB(c.hidden_size, c.vocab_size, o));
        const int64_t D = c.head_dim;
        inv_freq = torch::pow((double)c.rope_theta,
                              -torch::arange(0, D, 2, torch::kFloat64) / (double)D);
    }
    const torch::Tensor &head_weight() { return lm_head ? lm_head->weight : model->embed; }
    torch::ScalarType dtype() const { return model->embed.scalar_type(); }

    // cos and sin (T, D) of positions [off, off+T), computed in float64 and
    // rounded once to the weights' dtype.
    std::pair<torch::Tensor, torch::Tensor> rope(int64_t off, int64_t T, torch::Device dev) {
        auto pos = torch::arange(off, off + T, torch::kFloat64);
        auto f = torch::outer(pos, inv_freq);                           // (T, D/2)
        auto emb = torch::cat({f, f}, -1);                              // (T, D)
        auto o = torch::TensorOptions().dtype(dtype()).device(dev);
        return {emb.cos().to(o), emb.sin().to(o)};
    }

    // tokens (B, T) int64 on the device at positions [off, off+T) ->
    // hidden states (B, T, C) after the final norm, in the weights' dtype.
    torch::Tensor hidden(const torch::Tensor &tokens, std::vector<LlamaKV> *cache, int64_t off) {
        const int64_t T = tokens.size(1), Tk = off + T;
        auto cs = rope(off, T, tokens.device());
        torch::Tensor mask;
        if (T > 1) {
            // Query i (at off + i) sees keys 0..off+i.
            auto ahead = torch::ones({T, Tk}, torch::kBool).triu(off + 1);
            mask = torch::zeros({T, Tk}, torch::kFloat32)
                       .masked_fill(ahead, -std::numeric_limits<float>::infinity())
                       .to(tokens.device());
        }
        auto x = torch::embedding(model->embed, tokens);                  // (B, T, C)
        for (size_t i = 0; i < model->blocks.size(); i++)
            x = model->blocks[i]->forward(x, cs.first, cs.second, mask, cache ? &(*cache)[i] : nullptr, off);
        return model->norm->forward(x);
    }
    // hidden (..., C) -> logits (..., V) float32.
    torch::Tensor logits(const torch::Tensor &h) {
        return torch::nn::functional::linear(h, head_weight()).to(torch::kFloat32);
    }
};
TORCH_MODULE(Llama);

struct sf_llama_s {
    Llama model{nullptr};
    torch::Device device{torch::kCPU};
    sf_ml_err_t e;
};

// HF's initializer_range, the std of every matrix's fresh weights.
static const double LLAMA_INIT_STD = 0.02;

// ---- configuration ----

static int check_config(const sf_llama_config_t *c, char *err, size_t errlen) {
    if (c->num_hidden_layers < 1 || c->num_attention_heads < 1 || c->num_key_value_heads < 1 ||
        c->hidden_size < 1 || c->intermediate_size < 1 || c->vocab_size < 2 || c->max_position_embeddings < 1 ||
        c->num_hidden_layers > 4096 || c->hidden_size > (1 << 17) || c->intermediate_size > (1 << 20) ||
        c->vocab_size > (1 << 24) || c->max_position_embeddings > (1 << 24))
        return sf_errf(SF_EINVAL, err, errlen,
                       "sizes out of range (layers %d, heads %d, kv heads %d, hidden %d, intermediate %d, "
                       "vocab %d, positions %d)", c->num_hidden_layers, c->num_attention_heads,
                       c->num_key_value_heads, c->hidden_size, c->intermediate_size, c->vocab_size,
                       c->max_position_embeddings);
    if (c->hidden_size % c->num_attention_heads)
        return sf_errf(SF_EINVAL, err, errlen, "hidden_size %d is not a multiple of num_attention_heads %d",
                       c->hidden_size, c->num_attention_heads);
    if (c->num_attention_heads % c->num_key_value_heads)
        return sf_errf(SF_EINVAL, err, errlen,
                       "num_attention_heads %d is not a multiple of num_key_value_heads %d",
                       c->num_attention_heads, c->num_key_value_heads);
    if (c->head_dim % 2)
        return sf_errf(SF_EINVAL, err, errlen, "head dimension %d is odd (rotary embeddings pair halves)",
                       c->head_dim);
    if (c->bos_token_id < -1 || c->bos_token_id >= c->vocab_size || c->eos_token_id < -1 ||
        c->eos_token_id >= c->vocab_size)
        return sf_errf(SF_EINVAL, err, errlen, "bos_token_id %d or eos_token_id %d outside the vocabulary of %d",
                       c->bos_token_id, c->eos_token_id, c->vocab_size);
    if (!(c->rms_norm_eps > 0) || !(c->rope_theta > 0))
        return sf_errf(SF_EINVAL, err, errlen, "rms_norm_eps and rope_theta must be > 0");
    return 0;
}

// An integer field: *dst keeps its value when the key is absent (unless
// required); a JSON null is -1 where null_ok.
static int int_field(const cJSON *j, const char *key, bool required, bool null_ok, int *dst, char *err,
                     size_t errlen) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
    if (!v) return required ? sf_errf(SF_EFORMAT, err, errlen, "missing key '%s'", key) : 0;
    if (null_ok && cJSON_IsNull(v)) {
        *dst = -1;
        return 0;
    }
    // Newer configs list several end tokens; the first is the one a
    // generation stops at here.
    if (null_ok && cJSON_IsArray(v) && cJSON_GetArraySize(v) > 0) v = cJSON_GetArrayItem(v, 0);
    if (!cJSON_IsNumber(v) || v->valuedouble != (double)(int)v->valuedouble)
        return sf_errf(SF_EFORMAT, err, errlen, "'%s' is not an integer", key);
    *dst = (int)v->valuedouble;
    return 0;
}

static int config_from_json(const cJSON *j, sf_llama_config_t *c, char *err, size_t errlen) {
    if (!cJSON_IsObject(j)) return sf_errf(SF_EFORMAT, err, errlen, "config is not a JSON object");
    const cJSON *mt = cJSON_GetObjectItemCaseSensitive(j, "model_type");
    if (cJSON_IsString(mt) && strcmp(mt->valuestring, "llama") != 0)
        return sf_errf(SF_EUNSUPPORTED, err, errlen,
                       "unknown architecture '%s' (this loader reads LLaMA: model_type llama, LlamaForCausalLM)",
                       mt->valuestring);
    const cJSON *ar = cJSON_GetObjectItemCaseSensitive(j, "architectures"), *a;
    const cJSON *list = cJSON_IsArray(ar) ? ar : nullptr;
    cJSON_ArrayForEach(a, list) {
        if (cJSON_IsString(a) && strcmp(a->valuestring, "LlamaForCausalLM") != 0)
            return sf_errf(SF_EUNSUPPORTED, err, errlen,
                           "unknown architecture '%s' (this loader reads LlamaForCausalLM)", a->valuestring);
    }
    const cJSON *act = cJSON_GetObjectItemCaseSensitive(j, "hidden_act");
    if (act && !(cJSON_IsString(act) && !strcmp(act->valuestring, "silu")))
        return sf_errf(SF_EUNSUPPORTED, err, errlen, "hidden_act '%s' is not supported (LLaMA's is silu)",
                       cJSON_IsString(act) ? act->valuestring : "?");
    const cJSON *rs = cJSON_GetObjectItemCaseSensitive(j, "rope_scaling");
    if (rs && !cJSON_IsNull(rs))
        return sf_errf(SF_EUNSUPPORTED, err, errlen, "rope_scaling is not supported (only plain rotary embeddings)");
    for (const char *k : {"attention_bias", "mlp_bias"}) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, k);
        if (cJSON_IsTrue(v)) return sf_errf(SF_EUNSUPPORTED, err, errlen, "%s = true is not supported", k);
    }

    memset(c, 0, sizeof *c);
    c->max_position_embeddings = 2048;
    c->bos_token_id = 1;
    c->eos_token_id = 2;
    c->num_key_value_heads = -1;
    c->head_dim = -1;
    const struct { const char *key; int *dst; bool required, null_ok; } ints[] = {
        {"num_hidden_layers", &c->num_hidden_layers, true, false},
        {"num_attention_heads", &c->num_attention_heads, true, false},
        {"hidden_size", &c->hidden_size, true, false},
        {"intermediate_size", &c->intermediate_size, true, false},
        {"vocab_size", &c->vocab_size, true, false},
        {"num_key_value_heads", &c->num_key_value_heads, false, true},
        {"head_dim", &c->head_dim, false, true},
        {"max_position_embeddings", &c->max_position_embeddings, false, false},
        {"bos_token_id", &c->bos_token_id, false, true},
        {"eos_token_id", &c->eos_token_id, false, true},
    };
    for (auto &f : ints) {
        int rc = int_field(j, f.key, f.required, f.null_ok, f.dst, err, errlen);
        if (rc) return rc;
    }
    if (c->num_attention_heads < 1) return sf_errf(SF_EINVAL, err, errlen, "num_attention_heads must be >= 1");
    if (c->num_key_value_heads < 0) c->num_key_value_heads = c->num_attention_heads;
    const int D = c->hidden_size / c->num_attention_heads;
    if (c->head_dim >= 0 && c->head_dim != D)
        return sf_errf(SF_EUNSUPPORTED, err, errlen, "head_dim %d is not supported (hidden_size / heads = %d)",
                       c->head_dim, D);
    c->head_dim = D;
    const cJSON *tie = cJSON_GetObjectItemCaseSensitive(j, "tie_word_embeddings");
    if (tie && !cJSON_IsBool(tie)) return sf_errf(SF_EFORMAT, err, errlen, "'tie_word_embeddings' is not a boolean");
    c->tie_word_embeddings = cJSON_IsTrue(tie) ? 1 : 0;
    const struct { const char *key; float *dst; float def; } floats[] = {
        {"rms_norm_eps", &c->rms_norm_eps, 1e-6f},
        {"rope_theta", &c->rope_theta, 10000.0f},
    };
    for (auto &f : floats) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, f.key);
        if (v && !cJSON_IsNumber(v)) return sf_errf(SF_EFORMAT, err, errlen, "'%s' is not a number", f.key);
        *f.dst = v ? (float)v->valuedouble : f.def;
    }
    return check_config(c, err, errlen);
}

extern "C" int sf_llama_config_load(const char *path, sf_llama_config_t *c, char *err, size_t errlen) {
    if (!path || !c) return SF_EINVAL;
    std::string text;
    if (!sf_ml_read_file(path, &text))
        return sf_errf(SF_EIO, err, errlen, "cannot read %s: %s", path, strerror(errno));
    cJSON *j = cJSON_ParseWithLength(text.data(), text.size());
    if (!j) return sf_errf(SF_EFORMAT, err, errlen, "%s: not valid JSON", path);
    char sub[384] = "";
    int rc = config_from_json(j, c, sub, sizeof sub);
    cJSON_Delete(j);
    if (rc) return sf_errf(rc, err, errlen, "%s: %s", path, sub);
    return 0;
}

// ---- objects ----

// What ml/model_file.hpp's sf_model_load_weights needs of LLaMA: the names
// are the checkpoint's as they are, and none is optional.
struct LlamaFile : ModelFileDefaults {
    typedef sf_llama_s Obj;
};

extern "C" int sf_llama_load(const char *dir, const char *device, const char *dtype, sf_llama_t **out, char *err,
                             size_t errlen) {
    if (!out) return SF_EINVAL;
    *out = nullptr;
    if (!dir) return SF_EINVAL;
    if (int rc = sf_ml_need_dir(dir, "want an HF folder with config.json", err, errlen)) return rc;
    sf_llama_config_t c;
    const std::string d = dir, cfg = d + "/config.json";
    int rc = sf_llama_config_load(cfg.c_str(), &c, err, errlen);
    if (rc) return rc;

    sf_ml_err_t e;
    torch::Device dev(torch::kCPU);
    torch::ScalarType t = torch::kFloat32;
    if ((rc = sf_ml_parse_device(device, &dev, &e)) != 0 ||
        (dtype && (rc = sf_ml_parse_dtype(dtype, &t, &e)) != 0) ||
        (rc = sf_ml_dtype_probe(dev, t, false, &e)) != 0) {
        sf_ml_copy_err(err, errlen, e.errstr);
        return rc;
    }
    std::string file;
    if ((rc = sf_ml_weights_path(d, &file, err, errlen)) != 0) return rc;
    sf_st_t *st = nullptr;
    if ((rc = sf_st_load(file.c_str(), &st, err, errlen)) != 0) return rc;
    if (!c.tie_word_embeddings && !sf_st_find(st, "lm_head.weight")) {
        sf_st_free(&st);
        return sf_errf(SF_ENOTFOUND, err, errlen,
                       "%s: no tensor 'lm_head.weight', and %s has tie_word_embeddings false", file.c_str(),
                       cfg.c_str());
    }
    char name[64];
    snprintf(name, sizeof name, "model.layers.%d.input_layernorm.weight", c.num_hidden_layers);
    if (sf_st_find(st, name)) {
        sf_st_free(&st);
        return sf_errf(SF_EFORMAT, err, errlen, "%s has more layers than num_hidden_layers %d in %s", file.c_str(),
                       c.num_hidden_layers, cfg.c_str());
    }
    auto *m = new (std::nothrow) sf_llama_s();
    if (!m) {
        sf_st_free(&st);
        return sf_errf(SF_ENOMEM, err, errlen, "out of memory");
    }
    m->device = dev;
    try {
        torch::NoGradGuard ng;
        m->model = Llama(c, torch::TensorOptions().dtype(t).device(dev));
        rc = sf_model_load_weights<LlamaFile>(m, st);
        if (rc) rc = sf_errf(rc, err, errlen, "%s: %s", file.c_str(), m->e.errstr);
    } catch (const std::bad_alloc &) {
        rc = sf_errf(SF_ENOMEM, err, errlen, "%s: out of memory for the weights", dir);
    } catch (const c10::Error &ex) {
        rc = sf_errf(SF_ETORCH, err, errlen, "%s: %s", dir, ex.what_without_backtrace());
    } catch (const std::exception &ex) {
        rc = sf_errf(SF_ETORCH, err, errlen, "%s: %s", dir, ex.what());
    }
    sf_st_free(&st);
    if (rc) {
        delete m;
        return rc;
    }
    *out = m;
    return 0;
}

extern "C" void sf_llama_free(sf_llama_t **m) { sf_model_free(m); }

extern "C" const sf_llama_config_t *sf_llama_config(const sf_llama_t *m) { return m ? &m->model->cfg : nullptr; }

extern "C" int64_t sf_llama_num_params(const sf_llama_t *m) { return sf_model_num_params(m); }

extern "C" const char *sf_llama_dtype(const sf_llama_t *m) {
    return m ? sf_ml_dtype_name(m->model->dtype()) : "?";
}

extern "C" const char *sf_llama_errstr(const sf_llama_t *m) { return m ? m->e.errstr : ""; }

// ---- forward ----

extern "C" int sf_llama_forward(sf_llama_t *m, const int32_t *tokens, const int *lengths, int B, int T,
                                float *logits) {
    if (!m || !tokens || !logits || B < 1 || T < 1) return SF_EINVAL;
    const sf_llama_config_t &c = m->model->cfg;
    if (T > c.max_position_embeddings)
        return sf_ml_fail(&m->e, SF_ERANGE, "sequence of %d > max_position_embeddings %d", T,
                          c.max_position_embeddings);
    for (int b = 0; b < B; b++) {
        const int len = lengths ? lengths[b] : T;
        if (len < 1 || len > T) return sf_ml_fail(&m->e, SF_EINVAL, "row %d: length %d (T %d)", b, len, T);
        for (int t = 0; t < len; t++) {
            const int32_t id = tokens[(size_t)b * T + t];
            if (id < 0 || id >= c.vocab_size)
                return sf_ml_fail(&m->e, SF_EINVAL, "row %d: token id %d at %d outside the vocabulary of %d", b, id,
                                  t, c.vocab_size);
        }
    }
    SF_ML_TRY {
        torch::NoGradGuard ng;
        // Padding becomes id 0: causal attention keeps it out of the real
        // positions, and its logits are zeroed below.
        auto tok = torch::from_blob(const_cast<int32_t *>(tokens), {B, T}, torch::kInt32).to(torch::kLong);
        auto real = torch::ones({B, T}, torch::kBool);
        if (lengths) {
            auto col = torch::arange(T, torch::kLong).view({1, T});
            auto len = torch::from_blob(const_cast<int *>(lengths), {B}, torch::kInt32).to(torch::kLong).view({B, 1});
            real = col < len;
            tok = tok.masked_fill(real.logical_not(), 0);
        }
        auto out = m->model->logits(m->model->hidden(tok.to(m->device), nullptr, 0));   // (B, T, V)
        if (lengths) out = out.masked_fill(real.logical_not().unsqueeze(-1).to(out.device()), 0.0);
        sf_ml_to_f32(out, logits);
        return 0;
    }
    SF_ML_CATCH(&m->e)
}

// ---- sampling ----

extern "C" int sf_llama_sample(sf_llama_t *m, const int32_t *prompt, int prompt_len, int rows,
                               const sf_sample_opts_t *opts_in, int32_t *out, int *lengths) {
    if (!m || !prompt || prompt_len < 1 || rows < 1 || !out || !lengths) return SF_EINVAL;
    sf_sample_opts_t o;
    if (opts_in) o = *opts_in;
    else sf_sample_opts_default(&o);
    const sf_llama_config_t &c = m->model->cfg;
    for (int t = 0; t < prompt_len; t++)
        if (prompt[t] < 0 || prompt[t] >= c.vocab_size)
            return sf_ml_fail(&m->e, SF_EINVAL, "prompt: token id %d at %d outside the vocabulary of %d", prompt[t], t,
                              c.vocab_size);
    const int N = o.max_new_tokens, P = prompt_len;
    if (N < 1 || (int64_t)P + N > c.max_position_embeddings)
        return sf_ml_fail(&m->e, SF_ERANGE, "prompt %d + %d new tokens exceeds max_position_embeddings %d", P, N,
                          c.max_position_embeddings);
    if (!(o.temperature > 0) || !(o.top_p > 0) || o.top_p > 1 || o.top_k < 0)
        return sf_ml_fail(&m->e, SF_EINVAL, "bad sampling options (temperature %g, top_k %d, top_p %g)",
                          o.temperature, o.top_k, o.top_p);
    const int eos = o.eos_id == -1 ? c.eos_token_id : o.eos_id;
    const int pad = eos >= 0 ? eos : std::max(c.eos_token_id, 0);
    for (int i = 0; i < rows * N; i++) out[i] = pad;
    for (int i = 0; i < rows; i++) lengths[i] = 0;

    SF_ML_TRY {
        torch::NoGradGuard ng;
        LlamaImpl &g = *m->model;
        const torch::Device dev = m->device;
        const int64_t Tmax = P + N, V = c.vocab_size;
        // Every row is the prompt and then its own tokens: no padding, one
        // position per column.
        torch::Tensor seq = torch::empty({rows, Tmax}, torch::kLong);
        auto sa = seq.accessor<int64_t, 2>();
        for (int i = 0; i < rows; i++)
            for (int t = 0; t < P; t++) sa[i][t] = prompt[t];
        std::vector<LlamaKV> cache;
        if (o.use_cache) {
            auto fo = torch::TensorOptions().dtype(g.dtype()).device(dev);
            const int64_t KV = c.num_key_value_heads, D = c.head_dim;
            for (int l = 0; l < c.num_hidden_layers; l++)
                cache.push_back({torch::empty({rows, KV, Tmax, D}, fo), torch::empty({rows, KV, Tmax, D}, fo)});
        }
        uint64_t rng = o.seed;
        std::vector<char> done(rows, 0);
        std::vector<int> idx;
        int n_done = 0;
        for (int step = 0; step < N && n_done < rows; step++) {
            const int64_t cur = P + step;
            torch::Tensor h;
            if (o.use_cache) {
                const int64_t q0 = step == 0 ? 0 : cur - 1;
                h = g.hidden(seq.narrow(1, q0, cur - q0).to(dev), &cache, q0);
            } else {
                h = g.hidden(seq.narrow(1, 0, cur).to(dev), nullptr, 0);
            }
            auto lg = g.logits(h.select(1, h.size(1) - 1));                      // (rows, V)
            auto probs = torch::softmax(lg / (double)o.temperature, -1).to(torch::kCPU).contiguous();
            const float *PR = probs.data_ptr<float>();
            for (int i = 0; i < rows; i++) {
                const double u = sf_ml_uniform01(&rng);   // every row draws, done or not
                if (done[i]) {
                    sa[i][cur] = pad;
                    continue;
                }
                const int tok = sf_ml_draw(PR + (size_t)i * V, (int)V, o.top_k, o.top_p, u, idx);
                out[(size_t)i * N + step] = tok;
                lengths[i] = step + 1;
                sa[i][cur] = tok;
                if (tok == eos) done[i] = 1, n_done++;
            }
        }
        return 0;
    }
    SF_ML_CATCH(&m->e)
}

// ---- training ----

extern "C" void sf_llama_config_small(sf_llama_config_t *c) {
    memset(c, 0, sizeof *c);
    c->num_hidden_layers = 4;
    c->num_attention_heads = 4;
    c->num_key_value_heads = 2;
    c->hidden_size = 128;
    c->intermediate_size = 352;
    c->vocab_size = 2000;
    c->head_dim = 32;
    c->max_position_embeddings = 256;
    c->bos_token_id = 1;
    c->eos_token_id = 2;
    c->tie_word_embeddings = 1;
    c->rms_norm_eps = 1e-6f;
    c->rope_theta = 10000.0f;
}

extern "C" int sf_llama_new(const sf_llama_config_t *cin, const char *device, uint64_t seed, sf_llama_t **out,
                            char *err, size_t errlen) {
    if (!out) return SF_EINVAL;
    *out = nullptr;
    if (!cin) return SF_EINVAL;
    sf_llama_config_t c = *cin;
    // head_dim follows from the sizes (what config.json's reader does).
    if (c.num_attention_heads > 0) c.head_dim = c.hidden_size / c.num_attention_heads;
    if (int rc = check_config(&c, err, errlen)) return rc;
    sf_ml_err_t e;
    torch::Device dev(torch::kCPU);
    if (int rc = sf_ml_parse_device(device, &dev, &e)) {
        sf_ml_copy_err(err, errlen, e.errstr);
        return rc;
    }
    auto *m = new (std::nothrow) sf_llama_s();
    if (!m) return sf_errf(SF_ENOMEM, err, errlen, "out of memory");
    m->device = dev;
    try {
        // HF's LlamaPreTrainedModel._init_weights: N(0, initializer_range)
        // for the embeddings and every projection, RMSNorm weights 1.  The
        // draws are made on the CPU from the seed alone, so the same seed
        // gives the same model on any device.
        m->model = Llama(c, torch::TensorOptions().dtype(torch::kFloat32));
        sf_vision_init(*m->model, seed, LLAMA_INIT_STD);
        m->model->to(dev);
    } catch (const std::bad_alloc &) {
        delete m;
        return sf_errf(SF_ENOMEM, err, errlen, "out of memory for the weights");
    } catch (const std::exception &ex) {
        delete m;
        return sf_errf(SF_ETORCH, err, errlen, "cannot build the model: %s", ex.what());
    }
    *out = m;
    return 0;
}

extern "C" void sf_llama_sft_opts_default(sf_llama_sft_opts_t *o) {
    memset(o, 0, sizeof *o);
    o->steps = 1000, o->batch = 32, o->warmup = 100;
    o->lr = 2e-3f, o->lr_min = 2e-4f, o->decay = SF_LLAMA_DECAY_COSINE;
    o->weight_decay = 0.1f, o->beta1 = 0.9f, o->beta2 = 0.95f, o->eps = 1e-8f;
    o->max_grad_norm = 1.0f;
    o->seed = 5;
}

// The learning rate of step s (0-based): linear warmup over the first
// `warmup` steps to lr, then cosine or linear decay to lr_min at the last.
static double sft_lr(const sf_llama_sft_opts_t *o, int s) {
    if (s < o->warmup) return (double)o->lr * (s + 1) / o->warmup;
    const int span = o->steps - o->warmup;
    const double p = span > 1 ? (double)(s - o->warmup) / (span - 1) : 1.0;
    if (o->decay == SF_LLAMA_DECAY_LINEAR) return o->lr + (o->lr_min - (double)o->lr) * p;
    return o->lr_min + 0.5 * ((double)o->lr - o->lr_min) * (1.0 + std::cos(M_PI * p));
}

// A Fisher-Yates permutation of 0..n-1 drawn from splitmix64 state *r.
static void shuffle(std::vector<int> &v, uint64_t *r) {
    for (size_t i = v.size(); i > 1; i--) std::swap(v[i - 1], v[sf_splitmix64(r) % i]);
}

extern "C" int sf_llama_sft(sf_llama_t *m, const int32_t *seqs, const int *prompt_lens, const int *seq_lens, int n,
                            int stride, const sf_llama_sft_opts_t *o, sf_llama_progress_cb progress, void *arg,
                            float *first_loss, float *last_loss) {
    if (!m) return SF_EINVAL;
    if (!seqs || !prompt_lens || !seq_lens || n < 1 || stride < 2 || !o || o->steps < 1 || o->batch < 1 ||
        o->warmup < 0 || !(o->lr > 0) || !(o->lr_min >= 0) || !(o->weight_decay >= 0) || !(o->beta1 >= 0) ||
        !(o->beta1 < 1) || !(o->beta2 >= 0) || !(o->beta2 < 1) || !(o->eps > 0) || !(o->max_grad_norm >= 0) ||
        (o->decay != SF_LLAMA_DECAY_COSINE && o->decay != SF_LLAMA_DECAY_LINEAR))
        return sf_ml_fail(&m->e, SF_EINVAL, "sf_llama_sft: bad arguments (n %d, stride %d)", n, stride);
    const sf_llama_config_t &c = m->model->cfg;
    if (stride > c.max_position_embeddings)
        return sf_ml_fail(&m->e, SF_ERANGE, "rows of %d > max_position_embeddings %d", stride,
                          c.max_position_embeddings);
    // Bad rows are refused whole, before any step, with the row named.
    for (int i = 0; i < n; i++) {
        if (prompt_lens[i] < 1 || seq_lens[i] <= prompt_lens[i] || seq_lens[i] > stride)
            return sf_ml_fail(&m->e, SF_EINVAL, "row %d: prompt %d and length %d (need 1 <= prompt < length <= %d)",
                              i, prompt_lens[i], seq_lens[i], stride);
        for (int t = 0; t < seq_lens[i]; t++) {
            const int32_t id = seqs[(size_t)i * stride + t];
            if (id < 0 || id >= c.vocab_size)
                return sf_ml_fail(&m->e, SF_EINVAL, "row %d: token id %d at %d outside the vocabulary of %d", i, id,
                                  t, c.vocab_size);
        }
    }
    if (m->model->dtype() != torch::kFloat32)
        return sf_ml_fail(&m->e, SF_EUNSUPPORTED, "training needs float32 weights (the model is %s)",
                          sf_ml_dtype_name(m->model->dtype()));
    SF_ML_TRY {
        LlamaImpl &g = *m->model;
        for (auto &p : g.parameters()) p.set_requires_grad(true);
        auto opt = sf_vision_adamw(g, torch::optim::AdamWOptions(o->lr)
                                          .betas(std::make_tuple((double)o->beta1, (double)o->beta2))
                                          .eps(o->eps),
                                   o->weight_decay);
        g.train();
        const int B = o->batch;
        std::vector<int> order(n);
        std::iota(order.begin(), order.end(), 0);
        uint64_t r = o->seed;
        size_t next = order.size();   // an exhausted epoch: shuffle before the first batch
        std::vector<float> tail;
        std::vector<int> rows(B);
        std::vector<int64_t> tok, sel, tgt;
        for (int step = 0; step < o->steps; step++) {
            // Batches walk shuffled epochs, so every row is seen once per
            // epoch; the order depends only on the seed and n.
            int L = 0;
            for (int j = 0; j < B; j++) {
                if (next == order.size()) shuffle(order, &r), next = 0;
                rows[j] = order[next++];
                L = std::max(L, seq_lens[rows[j]]);
            }
            // Right-padded to the batch's longest row (padding id 0 sits
            // after a row's end, where causal attention keeps it from the
            // real positions).  The loss is over the response tokens only:
            // position t predicts t + 1 for prompt_len - 1 <= t < len - 1.
            tok.assign((size_t)B * L, 0);
            sel.clear();
            tgt.clear();
            for (int j = 0; j < B; j++) {
                const int i = rows[j], P = prompt_lens[i], S = seq_lens[i];
                const int32_t *row = seqs + (size_t)i * stride;
                for (int t = 0; t < S; t++) tok[(size_t)j * L + t] = row[t];
                for (int t = P - 1; t < S - 1; t++) {
                    sel.push_back((int64_t)j * L + t);
                    tgt.push_back(row[t + 1]);
                }
            }
            auto tk = torch::from_blob(tok.data(), {B, L}, torch::kLong).to(m->device);
            auto si = torch::from_blob(sel.data(), {(int64_t)sel.size()}, torch::kLong).to(m->device);
            auto tg = torch::from_blob(tgt.data(), {(int64_t)tgt.size()}, torch::kLong).to(m->device);
            auto h = g.hidden(tk, nullptr, 0).reshape({(int64_t)B * L, c.hidden_size}).index_select(0, si);
            auto loss = torch::nn::functional::cross_entropy(g.logits(h), tg);   // mean over response tokens
            const double lr = sft_lr(o, step);
            sf_vision_set_lr(*opt, lr);
            opt->zero_grad();
            loss.backward();
            if (o->max_grad_norm > 0) torch::nn::utils::clip_grad_norm_(g.parameters(), o->max_grad_norm);
            opt->step();
            const float lv = loss.item<float>();
            if (!std::isfinite(lv)) {
                g.eval();
                for (auto &p : g.parameters()) p.set_requires_grad(false);
                return sf_ml_fail(&m->e, SF_ERANGE, "the loss is %g at step %d (lr %g too high?)", lv, step + 1, lr);
            }
            if (step == 0 && first_loss) *first_loss = lv;
            if (o->steps - step <= 25) tail.push_back(lv);
            if (progress && progress(arg, step + 1, o->steps, lv, (float)lr)) {
                g.eval();
                for (auto &p : g.parameters()) p.set_requires_grad(false);
                return sf_ml_fail(&m->e, SF_ECANCELED, "stopped by the progress callback at step %d", step + 1);
            }
        }
        g.eval();
        for (auto &p : g.parameters()) p.set_requires_grad(false);
        if (last_loss) {
            double s = 0;
            for (float x : tail) s += x;
            *last_loss = tail.empty() ? 0.0f : (float)(s / (double)tail.size());
        }
        return 0;
    }
    SF_ML_CATCH(&m->e)
}

// ---- saving ----

// config.json as HF's LlamaConfig.to_json_string writes the fields that
// matter, so that transformers' AutoModelForCausalLM reads it unchanged.
static char *config_json(const sf_llama_config_t &c) {
    cJSON *j = cJSON_CreateObject();
    if (!j) return nullptr;
    cJSON *ar = cJSON_AddArrayToObject(j, "architectures");
    if (ar) cJSON_AddItemToArray(ar, cJSON_CreateString("LlamaForCausalLM"));
    cJSON_AddStringToObject(j, "model_type", "llama");
    cJSON_AddNumberToObject(j, "hidden_size", c.hidden_size);
    cJSON_AddNumberToObject(j, "intermediate_size", c.intermediate_size);
    cJSON_AddNumberToObject(j, "num_hidden_layers", c.num_hidden_layers);
    cJSON_AddNumberToObject(j, "num_attention_heads", c.num_attention_heads);
    cJSON_AddNumberToObject(j, "num_key_value_heads", c.num_key_value_heads);
    cJSON_AddNumberToObject(j, "vocab_size", c.vocab_size);
    cJSON_AddNumberToObject(j, "max_position_embeddings", c.max_position_embeddings);
    if (c.bos_token_id >= 0) cJSON_AddNumberToObject(j, "bos_token_id", c.bos_token_id);
    else cJSON_AddNullToObject(j, "bos_token_id");
    if (c.eos_token_id >= 0) cJSON_AddNumberToObject(j, "eos_token_id", c.eos_token_id);
    else cJSON_AddNullToObject(j, "eos_token_id");
    cJSON_AddBoolToObject(j, "tie_word_embeddings", c.tie_word_embeddings);
    // Floats as the shortest decimal that reads back to the same float, not
    // cJSON's %.17g of the widened double (1e-6f would be 9.9999999747524271e-07).
    char buf[32];
    for (int p = 1; p <= 9; p++) {
        snprintf(buf, sizeof buf, "%.*g", p, (double)c.rms_norm_eps);
        if ((float)strtod(buf, nullptr) == c.rms_norm_eps) break;
    }
    cJSON_AddRawToObject(j, "rms_norm_eps", buf);
    for (int p = 1; p <= 9; p++) {
        snprintf(buf, sizeof buf, "%.*g", p, (double)c.rope_theta);
        if ((float)strtod(buf, nullptr) == c.rope_theta) break;
    }
    cJSON_AddRawToObject(j, "rope_theta", buf);
    cJSON_AddStringToObject(j, "hidden_act", "silu");
    cJSON_AddNumberToObject(j, "initializer_range", LLAMA_INIT_STD);
    cJSON_AddBoolToObject(j, "attention_bias", 0);
    cJSON_AddNumberToObject(j, "pretraining_tp", 1);
    cJSON_AddNullToObject(j, "rope_scaling");
    cJSON_AddStringToObject(j, "torch_dtype", "float32");
    cJSON_AddBoolToObject(j, "use_cache", 1);
    char *s = cJSON_Print(j);
    cJSON_Delete(j);
    return s;
}

extern "C" int sf_llama_save(sf_llama_t *m, const char *dir) {
    if (!m || !dir) return SF_EINVAL;
    if (sf_mkdir_p(dir, 0777)) return sf_ml_fail(&m->e, SF_EIO, "cannot create %s: %s", dir, strerror(errno));
    SF_ML_TRY {
        const std::string d = dir;
        sf_st_writer_t *w = nullptr;
        std::vector<torch::Tensor> keep;
        int rc = sf_st_writer_new(&w);
        if (rc) return sf_ml_fail(&m->e, rc, "out of memory");
        // HF's save_pretrained marks its safetensors "format": "pt"; a tied
        // model has no lm_head.weight (the module has no such parameter).
        rc = sf_st_writer_meta(w, "format", "pt");
        if (rc == 0) rc = sf_ml_params_writer(*m->model, w, keep, &m->e);
        if (rc == 0 && (rc = sf_st_writer_save(w, (d + "/model.safetensors").c_str())) != 0)
            sf_ml_fail(&m->e, rc, "cannot write %s/model.safetensors", dir);
        sf_st_writer_free(&w);
        if (rc) return rc;
        char *js = config_json(m->model->cfg);
        if (!js) return sf_ml_fail(&m->e, SF_ENOMEM, "out of memory");
        rc = sf_write_file_atomic((d + "/config.json").c_str(), js, strlen(js));
        free(js);
        if (rc) return sf_ml_fail(&m->e, SF_EIO, "cannot write %s/config.json: %s", dir, strerror(errno));
        return 0;
    }
    SF_ML_CATCH(&m->e)
}
