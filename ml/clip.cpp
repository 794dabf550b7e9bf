// clip.cpp: CLIP (HF CLIPModel names) — the vision ViT, the causal text
// transformer, the projections and logit_scale; preprocessing, embeddings
// and the contrastive training step.
#include "ml/model_file.hpp"
#include "ml/vision_internal.hpp"

#include <cjson/cJSON.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstddef>
#include <cstring>

// ---- shared vision helpers ----

char *sf_vision_config_json(const void *base, const VisionField *fields, size_t n) {
    cJSON *j = cJSON_CreateObject();
    for (size_t i = 0; i < n; i++) {
        const char *p = (const char *)base + fields[i].off;
        double v = fields[i].is_float ? (double)*(const float *)p : (double)*(const int *)p;
        cJSON_AddNumberToObject(j, fields[i].key, v);
    }
    char *s = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    return s;
}

int sf_vision_config_parse(const char *json, void *base, const VisionField *fields, size_t n,
                           char *err, size_t errlen) {
    cJSON *j = json ? cJSON_Parse(json) : nullptr;
    if (!cJSON_IsObject(j)) {
        cJSON_Delete(j);
        return sf_errf(SF_EFORMAT, err, errlen, "config metadata is not a JSON object");
    }
    for (size_t i = 0; i < n; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, fields[i].key);
        if (!v) continue;
        if (!cJSON_IsNumber(v)) {
            cJSON_Delete(j);
            return sf_errf(SF_EFORMAT, err, errlen, "config: %s is not a number", fields[i].key);
        }
        char *p = (char *)base + fields[i].off;
        if (fields[i].is_float) *(float *)p = (float)v->valuedouble;
        else if (v->valuedouble != (int)v->valuedouble) {
            cJSON_Delete(j);
            return sf_errf(SF_EFORMAT, err, errlen, "config: %s is not an integer", fields[i].key);
        } else *(int *)p = (int)v->valuedouble;
    }
    cJSON_Delete(j);
    return 0;
}

torch::Tensor sf_vision_attention(const torch::Tensor &q, const torch::Tensor &k,
                                  const torch::Tensor &v, int64_t H, const torch::Tensor &mask) {
    const int64_t B = q.size(0), T = q.size(1), C = q.size(2), D = C / H;
    auto qh = q.view({B, T, H, D}).transpose(1, 2);                 // (B, H, T, D)
    auto kh = k.view({B, T, H, D}).transpose(1, 2);
    auto vh = v.view({B, T, H, D}).transpose(1, 2);
    auto att = torch::matmul(qh, kh.transpose(-2, -1)) * (1.0 / std::sqrt((double)D));
    if (mask.defined()) att = att + mask;
    att = torch::softmax(att, -1);                                  // (B, H, T, T)
    return torch::matmul(att, vh).transpose(1, 2).reshape({B, T, C});
}

void sf_vision_init(torch::nn::Module &m, uint64_t seed, double sd) {
    torch::NoGradGuard ng;
    auto gen = at::detail::createCPUGenerator(seed);
    for (auto &kv : m.named_parameters(true)) {
        const std::string &n = kv.key();
        torch::Tensor p = kv.value();
        torch::Tensor host = torch::empty(p.sizes(), torch::kFloat32);
        bool is_bias = n.size() >= 5 && n.compare(n.size() - 5, 5, ".bias") == 0;
        bool is_norm = n.find("norm") != std::string::npos || n.find("layrnorm") != std::string::npos;
        if (is_bias) host.zero_();
        else if (is_norm) host.fill_(1.0);
        else host.normal_(0.0, sd, gen);
        p.copy_(host);
    }
}

std::unique_ptr<torch::optim::AdamW> sf_vision_adamw(torch::nn::Module &m, const torch::optim::AdamWOptions &o,
                                                     double decay) {
    std::vector<torch::Tensor> with, without;
    for (auto &p : m.parameters()) (p.dim() >= 2 ? with : without).push_back(p);
    std::vector<torch::optim::OptimizerParamGroup> groups;
    groups.emplace_back(with, std::make_unique<torch::optim::AdamWOptions>(
                                  torch::optim::AdamWOptions(o).weight_decay(decay)));
    groups.emplace_back(without, std::make_unique<torch::optim::AdamWOptions>(
                                     torch::optim::AdamWOptions(o).weight_decay(0)));
    return std::make_unique<torch::optim::AdamW>(groups, torch::optim::AdamWOptions(o.lr()));
}

void sf_vision_set_lr(torch::optim::AdamW &opt, double lr) {
    for (auto &g : opt.param_groups()) static_cast<torch::optim::AdamWOptions &>(g.options()).lr(lr);
}

bool sf_vision_finite(const float *p, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!std::isfinite(p[i])) return false;
    return true;
}

// ---- the architecture ----

static torch::Tensor act(const torch::Tensor &x, bool quick) {
    return quick ? x * torch::sigmoid(1.702 * x) : torch::gelu(x);
}

struct ClipAttnImpl : torch::nn::Module {
    torch::nn::Linear q_proj{nullptr}, k_proj{nullptr}, v_proj{nullptr}, out_proj{nullptr};
    int64_t heads;
    ClipAttnImpl(int64_t C, int64_t H) : heads(H) {
        k_proj = register_module("k_proj", torch::nn::Linear(C, C));
        v_proj = register_module("v_proj", torch::nn::Linear(C, C));
        q_proj = register_module("q_proj", torch::nn::Linear(C, C));
        out_proj = register_module("out_proj", torch::nn::Linear(C, C));
    }
    torch::Tensor forward(const torch::Tensor &x, const torch::Tensor &mask) {
        return sf_linear(out_proj, sf_vision_attention(sf_linear(q_proj, x), sf_linear(k_proj, x),
                                                       sf_linear(v_proj, x), heads, mask));
    }
};
TORCH_MODULE(ClipAttn);

struct ClipMLPImpl : torch::nn::Module {
    torch::nn::Linear fc1{nullptr}, fc2{nullptr};
    bool quick;
    ClipMLPImpl(int64_t C, int64_t M, bool q) : quick(q) {
        fc1 = register_module("fc1", torch::nn::Linear(C, M));
        fc2 = register_module("fc2", torch::nn::Linear(M, C));
    }
    torch::Tensor forward(const torch::Tensor &x) { return sf_linear(fc2, act(sf_linear(fc1, x), quick)); }
};
TORCH_MODULE(ClipMLP);

// HF CLIPEncoderLayer: pre-norm attention and MLP, residual around each.
struct ClipLayerImpl : torch::nn::Module {
    ClipAttn self_attn{nullptr};
    torch::nn::LayerNorm layer_norm1{nullptr}, layer_norm2{nullptr};
    ClipMLP mlp{nullptr};
    ClipLayerImpl(int64_t C, int64_t H, int64_t M, double eps, bool quick) {
        self_attn = register_module("self_attn", ClipAttn(C, H));
        layer_norm1 = register_module("layer_norm1",
                                      torch::nn::LayerNorm(torch::nn::LayerNormOptions({C}).eps(eps)));
        mlp = register_module("mlp", ClipMLP(C, M, quick));
        layer_norm2 = register_module("layer_norm2",
                                      torch::nn::LayerNorm(torch::nn::LayerNormOptions({C}).eps(eps)));
    }
    torch::Tensor forward(torch::Tensor x, const torch::Tensor &mask) {
        x = x + self_attn->forward(layer_norm1->forward(x), mask);
        return x + mlp->forward(layer_norm2->forward(x));
    }
};
TORCH_MODULE(ClipLayer);

struct ClipEncoderImpl : torch::nn::Module {
    torch::nn::ModuleList layers{nullptr};
    std::vector<ClipLayer> v;
    ClipEncoderImpl(int n, int64_t C, int64_t H, int64_t M, double eps, bool quick) {
        layers = register_module("layers", torch::nn::ModuleList());
        for (int i = 0; i < n; i++) {
            v.push_back(ClipLayer(C, H, M, eps, quick));
            layers->push_back(v.back());
        }
    }
    torch::Tensor forward(torch::Tensor x, const torch::Tensor &mask) {
        for (auto &l : v) x = l->forward(x, mask);
        return x;
    }
};
TORCH_MODULE(ClipEncoder);

struct VisionEmbImpl : torch::nn::Module {
    torch::Tensor class_embedding;
    torch::nn::Conv2d patch_embedding{nullptr};
    torch::nn::Embedding position_embedding{nullptr};
    VisionEmbImpl(const sf_clip_config_t &c) {
        const int64_t C = c.vision_width, np = c.image_size / c.patch_size;
        class_embedding = register_parameter("class_embedding", torch::empty({C}));
        patch_embedding = register_module(
            "patch_embedding",
            torch::nn::Conv2d(torch::nn::Conv2dOptions(3, C, c.patch_size).stride(c.patch_size).bias(false)));
        position_embedding = register_module("position_embedding", torch::nn::Embedding(np * np + 1, C));
    }
    torch::Tensor forward(const torch::Tensor &px) {               // (B, 3, S, S)
        const int64_t B = px.size(0);
        auto x = patch_embedding->forward(px).flatten(2).transpose(1, 2);  // (B, N, C)
        auto cls = class_embedding.view({1, 1, -1}).expand({B, 1, x.size(2)});
        return torch::cat({cls, x}, 1) + position_embedding->weight.unsqueeze(0);  // (B, N+1, C)
    }
};
TORCH_MODULE(VisionEmb);

struct VisionImpl : torch::nn::Module {
    VisionEmb embeddings{nullptr};
    torch::nn::LayerNorm pre_layrnorm{nullptr}, post_layernorm{nullptr};
    ClipEncoder encoder{nullptr};
    VisionImpl(const sf_clip_config_t &c) {
        auto ln = torch::nn::LayerNormOptions({c.vision_width}).eps(c.ln_eps);
        embeddings = register_module("embeddings", VisionEmb(c));
        pre_layrnorm = register_module("pre_layrnorm", torch::nn::LayerNorm(ln));
        encoder = register_module("encoder", ClipEncoder(c.vision_layers, c.vision_width, c.vision_heads,
                                                         c.vision_mlp, c.ln_eps, c.quick_gelu));
        post_layernorm = register_module("post_layernorm", torch::nn::LayerNorm(ln));
    }
    torch::Tensor forward(const torch::Tensor &px) {               // -> pooled (B, C)
        auto x = encoder->forward(pre_layrnorm->forward(embeddings->forward(px)), torch::Tensor());
        return post_layernorm->forward(x.select(1, 0));
    }
};
TORCH_MODULE(Vision);

struct TextEmbImpl : torch::nn::Module {
    torch::nn::Embedding token_embedding{nullptr}, position_embedding{nullptr};
    TextEmbImpl(const sf_clip_config_t &c) {
        token_embedding = register_module("token_embedding", torch::nn::Embedding(c.vocab_size, c.text_width));
        position_embedding =
            register_module("position_embedding", torch::nn::Embedding(c.context_length, c.text_width));
    }
};
TORCH_MODULE(TextEmb);

struct TextImpl : torch::nn::Module {
    TextEmb embeddings{nullptr};
    ClipEncoder encoder{nullptr};
    torch::nn::LayerNorm final_layer_norm{nullptr};
    TextImpl(const sf_clip_config_t &c) {
        embeddings = register_module("embeddings", TextEmb(c));
        encoder = register_module("encoder", ClipEncoder(c.text_layers, c.text_width, c.text_heads,
                                                         c.text_mlp, c.ln_eps, c.quick_gelu));
        final_layer_norm = register_module(
            "final_layer_norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({c.text_width}).eps(c.ln_eps)));
    }
    // tokens (B, T) long, eot (B) long positions -> pooled (B, C).  The
    // causal mask keeps what follows the EOT token (padding) out of it.
    torch::Tensor forward(const torch::Tensor &tokens, const torch::Tensor &eot) {
        const int64_t B = tokens.size(0), T = tokens.size(1);
        auto x = embeddings->token_embedding->forward(tokens) +
                 embeddings->position_embedding->weight.narrow(0, 0, T).unsqueeze(0);
        auto mask = torch::full({T, T}, sf_ml_mask_value(x.scalar_type()), x.options()).triu(1);  // (T, T)
        x = final_layer_norm->forward(encoder->forward(x, mask));
        return x.index({torch::arange(B, eot.options()), eot});
    }
};
TORCH_MODULE(Text);

struct ClipImpl : torch::nn::Module {
    Text text_model{nullptr};
    Vision vision_model{nullptr};
    torch::nn::Linear visual_projection{nullptr}, text_projection{nullptr};
    torch::Tensor logit_scale;
    ClipImpl(const sf_clip_config_t &c) {
        text_model = register_module("text_model", Text(c));
        vision_model = register_module("vision_model", Vision(c));
        visual_projection = register_module(
            "visual_projection", torch::nn::Linear(torch::nn::LinearOptions(c.vision_width, c.embed_dim).bias(false)));
        text_projection = register_module(
            "text_projection", torch::nn::Linear(torch::nn::LinearOptions(c.text_width, c.embed_dim).bias(false)));
        logit_scale = register_parameter("logit_scale", torch::tensor(std::log(1 / 0.07f)));
    }
    // Embeddings (B, E), float32 and L2-normalised in float32 whatever the
    // weights' dtype, so that a bf16 model's embeddings are unit vectors too.
    // (F.normalize's own formula, x / max(|x|, 1e-12).)
    static torch::Tensor unit(const torch::Tensor &x) {
        auto y = x.to(torch::kFloat32);
        return y / y.norm(2, -1, true).clamp_min(1e-12).expand_as(y);
    }
    torch::Tensor image(const torch::Tensor &px) {
        return unit(visual_projection->forward(vision_model->forward(px)));
    }
    torch::Tensor text(const torch::Tensor &tok, const torch::Tensor &eot) {
        return unit(text_projection->forward(text_model->forward(tok, eot)));
    }
};
TORCH_MODULE(Clip);

struct sf_clip_s {
    sf_clip_config_t cfg;
    torch::Device device{torch::kCPU};
    Clip model{nullptr};
    std::unique_ptr<torch::optim::AdamW> opt;
    ParamList params;
    sf_ml_err_t e;
};

// ---- configuration ----

#define F(k, is_f) {#k, offsetof(sf_clip_config_t, k), is_f}
static const VisionField clip_fields[] = {
    F(image_size, 0), F(patch_size, 0), F(vision_width, 0), F(vision_layers, 0), F(vision_heads, 0),
    F(vision_mlp, 0), F(vocab_size, 0), F(context_length, 0), F(text_width, 0), F(text_layers, 0),
    F(text_heads, 0), F(text_mlp, 0), F(eot_id, 0), F(embed_dim, 0), F(ln_eps, 1), F(quick_gelu, 0),
    {"mean0", offsetof(sf_clip_config_t, mean), 1}, {"mean1", offsetof(sf_clip_config_t, mean) + 4, 1},
    {"mean2", offsetof(sf_clip_config_t, mean) + 8, 1}, {"std0", offsetof(sf_clip_config_t, std), 1},
    {"std1", offsetof(sf_clip_config_t, std) + 4, 1}, {"std2", offsetof(sf_clip_config_t, std) + 8, 1},
};
#undef F
static const size_t n_clip_fields = sizeof clip_fields / sizeof clip_fields[0];

extern "C" void sf_clip_config_vit_b32(sf_clip_config_t *c) {
    *c = sf_clip_config_t{};
    c->image_size = 224; c->patch_size = 32;
    c->vision_width = 768; c->vision_layers = 12; c->vision_heads = 12; c->vision_mlp = 3072;
    c->vocab_size = 49408; c->context_length = 77;
    c->text_width = 512; c->text_layers = 12; c->text_heads = 8; c->text_mlp = 2048;
    c->eot_id = 49407; c->embed_dim = 512; c->ln_eps = 1e-5f; c->quick_gelu = 1;
    const float mean[3] = {0.48145466f, 0.4578275f, 0.40821073f};
    const float std[3] = {0.26862954f, 0.26130258f, 0.27577711f};
    memcpy(c->mean, mean, sizeof mean);
    memcpy(c->std, std, sizeof std);
}

// Small enough to train on one CPU core in minutes: 32x32 images in 8x8
// patches (16 tokens; measured better per CPU second than 4x4), short captions (the world's are under 32 tokens).
extern "C" void sf_clip_config_world(sf_clip_config_t *c) {
    sf_clip_config_vit_b32(c);
    c->image_size = 32; c->patch_size = 8;
    /* Embeddings of 128, so that the method's 64-d PCA is a reduction, not a
     * rotation; a vision tower of that width, so that the image embeddings
     * span them.  One text layer (measured on two CPU cores: 2+1 layers learn
     * more per second than 2+2, docs/models.md). */
    c->vision_width = 128; c->vision_layers = 2; c->vision_heads = 4; c->vision_mlp = 512;
    c->context_length = 32;
    c->text_width = 96; c->text_layers = 1; c->text_heads = 4; c->text_mlp = 384;
    c->embed_dim = 128;
}

extern "C" int sf_clip_config_check(const sf_clip_config_t *c, char *err, size_t errlen) {
    if (!c) return SF_EINVAL;
    const int v[] = {c->image_size, c->patch_size, c->vision_width, c->vision_layers, c->vision_heads,
                     c->vision_mlp, c->vocab_size, c->context_length, c->text_width, c->text_layers,
                     c->text_heads, c->text_mlp, c->embed_dim};
    for (int x : v)
        if (x < 1 || x > (1 << 20))
            return sf_errf(SF_EINVAL, err, errlen, "CLIP config: a size is out of range (%d)", x);
    if (c->image_size % c->patch_size)
        return sf_errf(SF_EINVAL, err, errlen, "CLIP config: image_size %d is not a multiple of patch_size %d",
                       c->image_size, c->patch_size);
    if (c->vision_width % c->vision_heads || c->text_width % c->text_heads)
        return sf_errf(SF_EINVAL, err, errlen, "CLIP config: heads do not divide the width");
    if (c->eot_id < 0 || c->eot_id >= c->vocab_size)
        return sf_errf(SF_EINVAL, err, errlen, "CLIP config: eot id %d outside the vocabulary %d",
                       c->eot_id, c->vocab_size);
    if (!(c->ln_eps > 0)) return sf_errf(SF_EINVAL, err, errlen, "CLIP config: ln_eps must be > 0");
    for (int i = 0; i < 3; i++)
        if (!(c->std[i] > 0)) return sf_errf(SF_EINVAL, err, errlen, "CLIP config: std must be > 0");
    return 0;
}

// ---- objects ----

// What ml/model_file.hpp needs to know of CLIP.
struct ClipFile : ModelFileDefaults {
    typedef sf_clip_s Obj;
    typedef sf_clip_config_t Config;
    static constexpr const char *what = "CLIP";
    static constexpr const char *name = "CLIP";
    static constexpr const char *meta_key = "sf_clip_config";
    static int check(const Config *c, char *err, size_t errlen) { return sf_clip_config_check(c, err, errlen); }
    static int parse(const char *js, Config *c, char *err, size_t errlen) {
        sf_clip_config_vit_b32(c);
        return sf_vision_config_parse(js, c, clip_fields, n_clip_fields, err, errlen);
    }
    static char *to_json(const Config &c) { return sf_vision_config_json(&c, clip_fields, n_clip_fields); }
    static void build(Obj *m, const Config &c) {
        m->cfg = c;
        m->model = Clip(c);
        m->params.fill(*m->model);
    }
    // Temperature 0.02, not CLIP's 0.07: a small model trained for minutes
    // learnt the world's classes about twice as fast (measured with sf-train
    // clip), as the scale grows far too slowly to matter in a short run.
    // 0.01 (the clamp) stalled the toy unit test.
    static void init(Obj *m, uint64_t seed) {
        sf_vision_init(*m->model, seed, 0.02);
        torch::NoGradGuard ng;
        m->model->logit_scale.fill_(std::log(50.0));
    }
    static const Config &config(const Obj *m) { return m->cfg; }
    static torch::ScalarType dtype(const Obj *m) { return m->model->logit_scale.scalar_type(); }
};

extern "C" int sf_clip_new(const sf_clip_config_t *c, const char *device, uint64_t seed,
                           sf_clip_t **out, char *err, size_t errlen) {
    return sf_model_new<ClipFile>(c, device, seed, out, err, errlen);
}

extern "C" int sf_clip_load(const char *path, const sf_clip_config_t *c, const char *device,
                            sf_clip_t **out, char *err, size_t errlen) {
    *out = nullptr;
    sf_st_t *st;
    int rc = sf_st_load(path, &st, err, errlen);   // its messages name the file
    if (rc) return rc;
    return sf_model_load_st<ClipFile>(path, st, c, "; give one", device, out, err, errlen);
}

// ---- HF folders ----

// Reads key of an HF config object into *dst; absent or null keeps it.
static int hf_int(const cJSON *o, const char *sect, const char *key, int *dst, char *err,
                  size_t errlen) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v || cJSON_IsNull(v)) return 0;
    if (!cJSON_IsNumber(v) || std::fabs(v->valuedouble) > 1e9 ||
        v->valuedouble != (double)(int)v->valuedouble)
        return sf_errf(SF_EFORMAT, err, errlen, "%s%s is not an integer", sect, key);
    *dst = (int)v->valuedouble;
    return 0;
}

static int hf_float(const cJSON *o, const char *sect, const char *key, float *dst, char *err,
                    size_t errlen) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v || cJSON_IsNull(v)) return 0;
    if (!cJSON_IsNumber(v)) return sf_errf(SF_EFORMAT, err, errlen, "%s%s is not a number", sect, key);
    *dst = (float)v->valuedouble;
    return 0;
}

// hidden_act: CLIP's "quick_gelu" (x sigmoid(1.702 x)) or erf "gelu".
static int hf_act(const cJSON *o, const char *sect, int *quick, char *err, size_t errlen) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, "hidden_act");
    if (!v || cJSON_IsNull(v)) return 0;
    if (cJSON_IsString(v) && !strcmp(v->valuestring, "quick_gelu")) *quick = 1;
    else if (cJSON_IsString(v) && !strcmp(v->valuestring, "gelu")) *quick = 0;
    else
        return sf_errf(SF_EUNSUPPORTED, err, errlen, "%shidden_act %s is not supported (quick_gelu or gelu)",
                       sect, cJSON_IsString(v) ? v->valuestring : "(not a string)");
    return 0;
}

// One tower's settings that this implementation shares between the towers.
struct HFTower {
    int quick = 1;
    float eps = 1e-5f;
};

// The text tower's keys of one object (text_config, then text_config_dict,
// which HF lets override it).
static int hf_text(const cJSON *o, sf_clip_config_t *c, HFTower *t, int *eos, char *err, size_t errlen) {
    if (!o || cJSON_IsNull(o)) return 0;
    if (!cJSON_IsObject(o)) return sf_errf(SF_EFORMAT, err, errlen, "text_config is not an object");
    const char *s = "text_config.";
    int rc;
    if ((rc = hf_int(o, s, "vocab_size", &c->vocab_size, err, errlen)) ||
        (rc = hf_int(o, s, "hidden_size", &c->text_width, err, errlen)) ||
        (rc = hf_int(o, s, "intermediate_size", &c->text_mlp, err, errlen)) ||
        (rc = hf_int(o, s, "num_hidden_layers", &c->text_layers, err, errlen)) ||
        (rc = hf_int(o, s, "num_attention_heads", &c->text_heads, err, errlen)) ||
        (rc = hf_int(o, s, "max_position_embeddings", &c->context_length, err, errlen)) ||
        (rc = hf_int(o, s, "eos_token_id", eos, err, errlen)) ||
        (rc = hf_float(o, s, "layer_norm_eps", &t->eps, err, errlen)) ||
        (rc = hf_act(o, s, &t->quick, err, errlen)))
        return rc;
    return 0;
}

static int hf_vision(const cJSON *o, sf_clip_config_t *c, HFTower *t, char *err, size_t errlen) {
    if (!o || cJSON_IsNull(o)) return 0;
    if (!cJSON_IsObject(o)) return sf_errf(SF_EFORMAT, err, errlen, "vision_config is not an object");
    const char *s = "vision_config.";
    int rc, channels = 3;
    if ((rc = hf_int(o, s, "image_size", &c->image_size, err, errlen)) ||
        (rc = hf_int(o, s, "patch_size", &c->patch_size, err, errlen)) ||
        (rc = hf_int(o, s, "hidden_size", &c->vision_width, err, errlen)) ||
        (rc = hf_int(o, s, "intermediate_size", &c->vision_mlp, err, errlen)) ||
        (rc = hf_int(o, s, "num_hidden_layers", &c->vision_layers, err, errlen)) ||
        (rc = hf_int(o, s, "num_attention_heads", &c->vision_heads, err, errlen)) ||
        (rc = hf_int(o, s, "num_channels", &channels, err, errlen)) ||
        (rc = hf_float(o, s, "layer_norm_eps", &t->eps, err, errlen)) ||
        (rc = hf_act(o, s, &t->quick, err, errlen)))
        return rc;
    if (channels != 3)
        return sf_errf(SF_EUNSUPPORTED, err, errlen, "vision_config.num_channels %d (RGB only)", channels);
    return 0;
}

// An HF CLIPConfig object into c.  Absent keys take the defaults of HF's
// CLIPTextConfig / CLIPVisionConfig / CLIPConfig (transformers
// configuration_clip.py), which are those of ViT-B/32; *arch is set for a
// config of another model.
static int hf_clip(const cJSON *j, sf_clip_config_t *c, std::string *arch, char *err, size_t errlen) {
    sf_clip_config_vit_b32(c);
    if (!cJSON_IsObject(j)) return sf_errf(SF_EFORMAT, err, errlen, "not a JSON object");
    const cJSON *mt = cJSON_GetObjectItemCaseSensitive(j, "model_type");
    if (cJSON_IsString(mt) && strcmp(mt->valuestring, "clip") != 0) {
        *arch = mt->valuestring;
        return SF_EUNSUPPORTED;
    }
    const cJSON *ar = cJSON_GetObjectItemCaseSensitive(j, "architectures");
    const cJSON *list = cJSON_IsArray(ar) ? ar : nullptr, *a;
    cJSON_ArrayForEach(a, list) {
        if (cJSON_IsString(a) && strcmp(a->valuestring, "CLIPModel") != 0) {
            *arch = a->valuestring;
            return SF_EUNSUPPORTED;
        }
    }
    HFTower text, vision;
    int eos = 49407;   // CLIPTextConfig's default since transformers PR #24773
    int rc;
    if ((rc = hf_text(cJSON_GetObjectItemCaseSensitive(j, "text_config"), c, &text, &eos, err, errlen)) ||
        (rc = hf_text(cJSON_GetObjectItemCaseSensitive(j, "text_config_dict"), c, &text, &eos, err, errlen)) ||
        (rc = hf_vision(cJSON_GetObjectItemCaseSensitive(j, "vision_config"), c, &vision, err, errlen)) ||
        (rc = hf_vision(cJSON_GetObjectItemCaseSensitive(j, "vision_config_dict"), c, &vision, err, errlen)) ||
        (rc = hf_int(j, "", "projection_dim", &c->embed_dim, err, errlen)))
        return rc;
    if (text.quick != vision.quick)
        return sf_errf(SF_EUNSUPPORTED, err, errlen, "text and vision towers with different hidden_act");
    if (text.eps != vision.eps)
        return sf_errf(SF_EUNSUPPORTED, err, errlen, "text and vision towers with different layer_norm_eps");
    c->quick_gelu = text.quick;
    c->ln_eps = text.eps;
    // OpenAI's checkpoints were converted with eos_token_id 2, which is not
    // their end token; HF pools those at the argmax of the ids, where the end
    // token sits because it is the vocabulary's last id.  The tokenizer's
    // end token is that last id, so pooling at its first occurrence (our
    // rule) is the same for every tokenised text.
    c->eot_id = eos == 2 ? c->vocab_size - 1 : eos;
    return sf_clip_config_check(c, err, errlen);
}

extern "C" int sf_clip_config_load(const char *config_json, sf_clip_config_t *c, char *err,
                                   size_t errlen) {
    if (!config_json || !c) return SF_EINVAL;
    std::string text;
    if (!sf_ml_read_file(config_json, &text))
        return sf_errf(SF_EIO, err, errlen, "cannot read %s: %s", config_json, strerror(errno));
    cJSON *j = cJSON_ParseWithLength(text.data(), text.size());
    if (!j) return sf_errf(SF_EFORMAT, err, errlen, "%s: not valid JSON", config_json);
    char sub[256] = "";
    std::string arch;
    int rc = hf_clip(j, c, &arch, sub, sizeof sub);
    cJSON_Delete(j);
    if (rc && !arch.empty())
        return sf_errf(rc, err, errlen, "unknown architecture '%s' in %s (this loader reads CLIP: "
                       "model_type clip, CLIPModel)", arch.c_str(), config_json);
    if (rc) return sf_errf(rc, err, errlen, "%s: %s", config_json, sub);
    return 0;
}

// preprocessor_config.json's image_mean and image_std, when the file exists.
static int hf_preprocessor(const std::string &path, sf_clip_config_t *c, char *err, size_t errlen) {
    std::string text;
    if (!sf_ml_read_file(path.c_str(), &text)) return 0;
    cJSON *j = cJSON_ParseWithLength(text.data(), text.size());
    if (!cJSON_IsObject(j)) {
        cJSON_Delete(j);
        return sf_errf(SF_EFORMAT, err, errlen, "%s: not a JSON object", path.c_str());
    }
    int rc = 0;
    const char *keys[2] = {"image_mean", "image_std"};
    float *dst[2] = {c->mean, c->std};
    for (int k = 0; k < 2 && rc == 0; k++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, keys[k]);
        if (!v) continue;
        if (!cJSON_IsArray(v) || cJSON_GetArraySize(v) != 3) {
            rc = sf_errf(SF_EFORMAT, err, errlen, "%s: %s is not 3 numbers", path.c_str(), keys[k]);
            break;
        }
        for (int i = 0; i < 3; i++) {
            const cJSON *x = cJSON_GetArrayItem(v, i);
            if (!cJSON_IsNumber(x)) {
                rc = sf_errf(SF_EFORMAT, err, errlen, "%s: %s is not 3 numbers", path.c_str(), keys[k]);
                break;
            }
            dst[k][i] = (float)x->valuedouble;
        }
    }
    cJSON_Delete(j);
    if (rc == 0) rc = sf_clip_config_check(c, err, errlen);
    return rc;
}

extern "C" int sf_clip_load_dir(const char *dir, const char *device, sf_clip_t **out, char *err,
                                size_t errlen) {
    *out = nullptr;
    if (!dir) return SF_EINVAL;
    struct stat sb;
    if (stat(dir, &sb) != 0) return sf_errf(SF_EIO, err, errlen, "cannot open %s: %s", dir, strerror(errno));
    if (!S_ISDIR(sb.st_mode)) return sf_clip_load(dir, nullptr, device, out, err, errlen);
    const std::string d = dir, cfg_path = d + "/config.json";
    sf_clip_config_t c;
    const bool have_cfg = stat(cfg_path.c_str(), &sb) == 0;
    int rc;
    if (have_cfg && ((rc = sf_clip_config_load(cfg_path.c_str(), &c, err, errlen)) ||
                     (rc = hf_preprocessor(d + "/preprocessor_config.json", &c, err, errlen))))
        return rc;
    std::string file;
    if ((rc = sf_ml_weights_path(d, &file, err, errlen))) return rc;
    sf_st_t *st;
    if ((rc = sf_st_load(file.c_str(), &st, err, errlen))) return rc;
    // Our own layout (models/clip-world) has no config.json: the config is
    // in the weights' metadata.
    return sf_model_load_st<ClipFile>(file.c_str(), st, have_cfg ? &c : nullptr,
                                      ", and its folder has no config.json", device, out, err, errlen);
}

extern "C" int sf_clip_save(sf_clip_t *m, const char *path) { return sf_model_save<ClipFile>(m, path); }

extern "C" void sf_clip_free(sf_clip_t **m) { sf_model_free(m); }

extern "C" int sf_clip_set_dtype(sf_clip_t *m, const char *dtype) { return sf_model_set_dtype<ClipFile>(m, dtype); }

extern "C" const char *sf_clip_dtype(const sf_clip_t *m) { return sf_model_dtype<ClipFile>(m); }

extern "C" const sf_clip_config_t *sf_clip_config(const sf_clip_t *m) { return &m->cfg; }
extern "C" const char *sf_clip_errstr(const sf_clip_t *m) { return m->e.errstr; }
extern "C" int sf_clip_param_count(const sf_clip_t *m) { return (int)m->params.names.size(); }
extern "C" const char *sf_clip_param(const sf_clip_t *m, int i, int *ndim, int64_t shape[4]) {
    return m->params.get(i, ndim, shape);
}
extern "C" int64_t sf_clip_num_params(const sf_clip_t *m) { return sf_model_num_params(m); }
extern "C" float sf_clip_logit_scale(const sf_clip_t *m) {
    try {
        return std::exp(m->model->logit_scale.item<float>());
    } catch (...) {
        return NAN;
    }
}

// ---- preprocessing ----

extern "C" int sf_clip_preprocess(const sf_clip_config_t *c, const uint8_t *rgb, int w, int h,
                                  float *out) {
    if (!c || !rgb || !out || w < 1 || h < 1 || c->image_size < 1) return SF_EINVAL;
    const int S = c->image_size;
    // Shorter side to S, the other in proportion; then the centre S x S.
    const double scale = (double)S / (w < h ? w : h);
    const int rw = w < h ? S : (int)std::lround(w * scale), rh = w < h ? (int)std::lround(h * scale) : S;
    const int x0 = (rw - S) / 2, y0 = (rh - S) / 2;
    const double sx = (double)w / rw, sy = (double)h / rh;
    for (int y = 0; y < S; y++) {
        // Half-pixel centres, as torchvision's bilinear resize (align_corners=False).
        double fy = ((y + y0) + 0.5) * sy - 0.5;
        fy = fy < 0 ? 0 : fy > h - 1 ? h - 1 : fy;
        int y1 = (int)fy, y2 = y1 + 1 < h ? y1 + 1 : y1;
        double ay = fy - y1;
        for (int x = 0; x < S; x++) {
            double fx = ((x + x0) + 0.5) * sx - 0.5;
            fx = fx < 0 ? 0 : fx > w - 1 ? w - 1 : fx;
            int x1 = (int)fx, x2 = x1 + 1 < w ? x1 + 1 : x1;
            double ax = fx - x1;
            for (int ch = 0; ch < 3; ch++) {
                double p11 = rgb[((size_t)y1 * w + x1) * 3 + ch], p12 = rgb[((size_t)y1 * w + x2) * 3 + ch];
                double p21 = rgb[((size_t)y2 * w + x1) * 3 + ch], p22 = rgb[((size_t)y2 * w + x2) * 3 + ch];
                double v = (1 - ay) * ((1 - ax) * p11 + ax * p12) + ay * ((1 - ax) * p21 + ax * p22);
                out[(size_t)ch * S * S + (size_t)y * S + x] = (float)((v / 255.0 - c->mean[ch]) / c->std[ch]);
            }
        }
    }
    return 0;
}

// ---- embeddings ----

// EOT positions: the first eot_id of each row, else its last token; token
// ids are checked here so that a bad id is an error, not an index fault.
static int eot_positions(sf_clip_t *m, const int32_t *tok, int B, int T, torch::Tensor *pos) {
    if (T < 1 || T > m->cfg.context_length)
        return sf_ml_fail(&m->e, SF_EINVAL, "text length %d outside 1..%d", T, m->cfg.context_length);
    *pos = torch::empty({B}, torch::kLong);
    auto *p = pos->data_ptr<int64_t>();
    for (int b = 0; b < B; b++) {
        p[b] = T - 1;
        for (int t = T - 1; t >= 0; t--) {
            int32_t id = tok[(size_t)b * T + t];
            if (id < 0 || id >= m->cfg.vocab_size)
                return sf_ml_fail(&m->e, SF_EINVAL, "token id %d outside the vocabulary %d", id,
                                  m->cfg.vocab_size);
            if (id == m->cfg.eot_id) p[b] = t;
        }
    }
    return 0;
}

static torch::Tensor tokens_tensor(const int32_t *tok, int B, int T) {
    return torch::from_blob(const_cast<int32_t *>(tok), {B, T}, torch::kInt32).to(torch::kLong);
}

extern "C" int sf_clip_encode_image(sf_clip_t *m, const float *pixels, int B, float *out) {
    SF_ML_TRY {
        if (B < 1 || !pixels || !out) return sf_ml_fail(&m->e, SF_EINVAL, "encode_image: bad arguments");
        torch::NoGradGuard ng;
        m->model->eval();
        const int S = m->cfg.image_size;
        auto px = sf_ml_from_f32(pixels, {B, 3, S, S}).to(m->device)
                      .to(m->model->logit_scale.scalar_type());
        sf_ml_to_f32(m->model->image(px), out);
        return 0;
    }
    SF_ML_CATCH(&m->e)
}

extern "C" int sf_clip_encode_text(sf_clip_t *m, const int32_t *tokens, int B, int T, float *out) {
    SF_ML_TRY {
        if (B < 1 || !tokens || !out) return sf_ml_fail(&m->e, SF_EINVAL, "encode_text: bad arguments");
        torch::Tensor eot;
        int rc = eot_positions(m, tokens, B, T, &eot);
        if (rc) return rc;
        torch::NoGradGuard ng;
        m->model->eval();
        auto t = tokens_tensor(tokens, B, T).to(m->device);
        sf_ml_to_f32(m->model->text(t, eot.to(m->device)), out);
        return 0;
    }
    SF_ML_CATCH(&m->e)
}

// ---- training ----

extern "C" int sf_clip_train_step(sf_clip_t *m, const float *pixels, const int32_t *tokens, int B,
                                  int T, float lr, float *loss, float *acc) {
    return sf_clip_train_step_tied(m, pixels, tokens, B, T, 0, 0.0f, lr, loss, acc);
}

extern "C" int sf_clip_train_step_tied(sf_clip_t *m, const float *pixels, const int32_t *tokens, int B,
                                       int T, int n_tied, float tied_weight, float lr, float *loss, float *acc) {
    SF_ML_TRY {
        if (B < 2 || !pixels || !tokens)
            return sf_ml_fail(&m->e, SF_EINVAL, "train_step: need at least 2 pairs");
        if (n_tied < 0 || n_tied > B || !(tied_weight >= 0))
            return sf_ml_fail(&m->e, SF_EINVAL, "train_step: %d tied rows for %d pairs", n_tied, B);
        if (m->model->logit_scale.scalar_type() != torch::kFloat32)
            return sf_ml_fail(&m->e, SF_EUNSUPPORTED, "training needs fp32 weights, and this CLIP is "
                              "%s for inference (set its dtype to fp32 first, or train a float32 copy)",
                              sf_clip_dtype(m));
        torch::Tensor eot;
        int rc = eot_positions(m, tokens, B + n_tied, T, &eot);
        if (rc) return rc;
        // Beta2 0.999 and decay 0.05 (not CLIP's 0.98 and 0.1) measured
        // better for short runs of small models.
        if (!m->opt)
            m->opt = sf_vision_adamw(*m->model, torch::optim::AdamWOptions(lr).betas({0.9, 0.999}).eps(1e-6), 0.05);
        sf_vision_set_lr(*m->opt, lr);
        m->model->train();
        const int S = m->cfg.image_size;
        auto px = sf_ml_from_f32(pixels, {B, 3, S, S}).to(m->device);
        auto t = tokens_tensor(tokens, B + n_tied, T).to(m->device);
        auto img = m->model->image(px);                                  // (B, E)
        auto all = m->model->text(t, eot.to(m->device));                 // (B + n_tied, E)
        auto txt = all.narrow(0, 0, B);                                  // (B, E)
        auto logits = m->model->logit_scale.exp() * torch::matmul(img, txt.t());  // (B, B)
        auto target = torch::arange(B, torch::TensorOptions().dtype(torch::kLong).device(m->device));
        auto l = 0.5 * (torch::nn::functional::cross_entropy(logits, target) +
                        torch::nn::functional::cross_entropy(logits.t(), target));
        // A tied row says what its pair's caption says (other words, or none
        // the world knows): 1 - cosine pulls the two embeddings together.
        if (n_tied)
            l = l + tied_weight * (1 - (all.narrow(0, B, n_tied) * txt.narrow(0, 0, n_tied)).sum(1)).mean();
        m->opt->zero_grad();
        l.backward();
        m->opt->step();
        {
            // CLIP clamps the temperature so logits stay below 100.
            torch::NoGradGuard ng;
            m->model->logit_scale.clamp_(0, std::log(100.0));
        }
        if (loss) *loss = l.item<float>();
        if (acc) *acc = (logits.argmax(1) == target).to(torch::kFloat32).mean().item<float>();
        return 0;
    }
    SF_ML_CATCH(&m->e)
}
