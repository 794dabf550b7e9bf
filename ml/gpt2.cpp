// gpt2.cpp: GPT-2 with a value head — the architecture, its weights in HF
// safetensors form (files and bytes), and the batched forward pass.
#include "ml/gpt2_internal.hpp"
#include "ml/model_file.hpp"

#include <cjson/cJSON.h>
#include <sys/stat.h>

#include <cerrno>
#include <cmath>
#include <cstring>

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

torch::Tensor GPT2Impl::hidden(const torch::Tensor &tokens, const torch::Tensor &pos,
                               const torch::Tensor &bias, std::vector<KVLayer> *cache,
                               int64_t off) {
    sf_ml_require_fp32_training(wte->weight, "GPT-2");
    const torch::Tensor b = sf_ml_mask_to(bias, wte->weight.scalar_type());
    auto x = wte->forward(tokens) + wpe->forward(pos);             // (B, T, C)
    for (size_t i = 0; i < blocks.size(); i++)
        x = blocks[i]->forward(x, b, cache ? &(*cache)[i] : nullptr, off);
    return ln_f->forward(x);
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
