// classifier.cpp: timm's ConvNeXt and ViT image classifiers (timm
// parameter names), their training step and safetensors checkpoints.
#include "ml/model_file.hpp"
#include "ml/vision_internal.hpp"

#include <cstddef>
#include <cstring>

namespace F = torch::nn::functional;

// ---- ConvNeXt ----

// timm's LayerNorm2d: LayerNorm over channels of an NCHW tensor.
struct LayerNorm2dImpl : torch::nn::Module {
    torch::Tensor weight, bias;
    double eps;
    LayerNorm2dImpl(int64_t C, double e) : eps(e) {
        weight = register_parameter("weight", torch::ones({C}));
        bias = register_parameter("bias", torch::zeros({C}));
    }
    torch::Tensor forward(const torch::Tensor &x) {                // (B, C, H, W)
        auto y = torch::layer_norm(x.permute({0, 2, 3, 1}), {weight.size(0)}, weight, bias, eps);
        return y.permute({0, 3, 1, 2});
    }
};
TORCH_MODULE(LayerNorm2d);

// A pointwise layer stored either as timm's nn.Linear (out, in) or, with
// conv_mlp, as its 1x1 nn.Conv2d (out, in, 1, 1); computed channels-last.
struct PointwiseImpl : torch::nn::Module {
    torch::Tensor weight, bias;
    int64_t in, out;
    PointwiseImpl(int64_t i, int64_t o, bool conv) : in(i), out(o) {
        weight = register_parameter("weight", conv ? torch::empty({o, i, 1, 1}) : torch::empty({o, i}));
        bias = register_parameter("bias", torch::zeros({o}));
    }
    torch::Tensor forward(const torch::Tensor &x) { return torch::linear(x, weight.view({out, in}), bias); }
};
TORCH_MODULE(Pointwise);

struct CnMlpImpl : torch::nn::Module {
    Pointwise fc1{nullptr}, fc2{nullptr};
    CnMlpImpl(int64_t C, bool conv) {
        fc1 = register_module("fc1", Pointwise(C, 4 * C, conv));
        fc2 = register_module("fc2", Pointwise(4 * C, C, conv));
    }
    torch::Tensor forward(const torch::Tensor &x) { return fc2->forward(torch::gelu(fc1->forward(x))); }
};
TORCH_MODULE(CnMlp);

// timm ConvNeXtBlock: depthwise 7x7, LayerNorm, inverted MLP (4x), layer
// scale gamma, residual.
struct CnBlockImpl : torch::nn::Module {
    torch::nn::Conv2d conv_dw{nullptr};
    torch::nn::LayerNorm norm{nullptr};
    CnMlp mlp{nullptr};
    torch::Tensor gamma;
    bool conv_mlp;
    CnBlockImpl(int64_t C, bool conv, double ls, double eps) : conv_mlp(conv) {
        conv_dw = register_module("conv_dw", torch::nn::Conv2d(torch::nn::Conv2dOptions(C, C, 7).padding(3).groups(C)));
        // Both norms are a LayerNorm over channels with the same parameter
        // names; only the module type differs in timm.
        norm = register_module("norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({C}).eps(eps)));
        mlp = register_module("mlp", CnMlp(C, conv));
        gamma = register_parameter("gamma", torch::full({C}, ls));
    }
    torch::Tensor forward(const torch::Tensor &x) {                // (B, C, H, W)
        auto y = conv_dw->forward(x).permute({0, 2, 3, 1});         // (B, H, W, C)
        y = mlp->forward(norm->forward(y)) * gamma;
        return x + y.permute({0, 3, 1, 2});
    }
};
TORCH_MODULE(CnBlock);

struct CnDownImpl : torch::nn::Module {        // Sequential(LayerNorm2d, Conv2d 2x2 s2)
    LayerNorm2d n{nullptr};
    torch::nn::Conv2d c{nullptr};
    CnDownImpl(int64_t in, int64_t out, double eps) {
        n = register_module("0", LayerNorm2d(in, eps));
        c = register_module("1", torch::nn::Conv2d(torch::nn::Conv2dOptions(in, out, 2).stride(2)));
    }
    torch::Tensor forward(const torch::Tensor &x) { return c->forward(n->forward(x)); }
};
TORCH_MODULE(CnDown);

struct CnStageImpl : torch::nn::Module {
    CnDown downsample{nullptr};
    torch::nn::ModuleList blocks{nullptr};
    std::vector<CnBlock> v;
    CnStageImpl(int64_t in, int64_t out, int depth, bool down, bool conv, double ls, double eps) {
        if (down) downsample = register_module("downsample", CnDown(in, out, eps));
        blocks = register_module("blocks", torch::nn::ModuleList());
        for (int i = 0; i < depth; i++) {
            v.push_back(CnBlock(out, conv, ls, eps));
            blocks->push_back(v.back());
        }
    }
    torch::Tensor forward(torch::Tensor x) {
        if (downsample) x = downsample->forward(x);
        for (auto &b : v) x = b->forward(x);
        return x;
    }
};
TORCH_MODULE(CnStage);

struct CnStemImpl : torch::nn::Module {        // Sequential(Conv2d p x p s p, LayerNorm2d)
    torch::nn::Conv2d c{nullptr};
    LayerNorm2d n{nullptr};
    CnStemImpl(int64_t out, int p, double eps) {
        c = register_module("0", torch::nn::Conv2d(torch::nn::Conv2dOptions(3, out, p).stride(p)));
        n = register_module("1", LayerNorm2d(out, eps));
    }
    torch::Tensor forward(const torch::Tensor &x) { return n->forward(c->forward(x)); }
};
TORCH_MODULE(CnStem);

struct CnHeadImpl : torch::nn::Module {        // timm NormMlpClassifierHead: pool, norm, fc
    LayerNorm2d norm{nullptr};
    torch::nn::Linear fc{nullptr};
    CnHeadImpl(int64_t C, int64_t n, double eps) {
        norm = register_module("norm", LayerNorm2d(C, eps));
        fc = register_module("fc", torch::nn::Linear(C, n));
    }
    torch::Tensor forward(const torch::Tensor &x) {
        auto p = x.mean({2, 3}, true);                               // (B, C, 1, 1)
        return fc->forward(norm->forward(p).flatten(1));
    }
};
TORCH_MODULE(CnHead);

// ---- ViT ----

struct VitAttnImpl : torch::nn::Module {
    torch::nn::Linear qkv{nullptr}, proj{nullptr};
    int64_t heads;
    VitAttnImpl(int64_t C, int64_t H) : heads(H) {
        qkv = register_module("qkv", torch::nn::Linear(C, 3 * C));
        proj = register_module("proj", torch::nn::Linear(C, C));
    }
    torch::Tensor forward(const torch::Tensor &x) {
        auto q = sf_linear(qkv, x).chunk(3, -1);
        return sf_linear(proj, sf_vision_attention(q[0], q[1], q[2], heads, torch::Tensor()));
    }
};
TORCH_MODULE(VitAttn);

struct VitMlpImpl : torch::nn::Module {
    torch::nn::Linear fc1{nullptr}, fc2{nullptr};
    VitMlpImpl(int64_t C, int64_t M) {
        fc1 = register_module("fc1", torch::nn::Linear(C, M));
        fc2 = register_module("fc2", torch::nn::Linear(M, C));
    }
    torch::Tensor forward(const torch::Tensor &x) { return sf_linear(fc2, torch::gelu(sf_linear(fc1, x))); }
};
TORCH_MODULE(VitMlp);

struct VitBlockImpl : torch::nn::Module {
    torch::nn::LayerNorm norm1{nullptr}, norm2{nullptr};
    VitAttn attn{nullptr};
    VitMlp mlp{nullptr};
    VitBlockImpl(int64_t C, int64_t H, int64_t M, double eps) {
        norm1 = register_module("norm1", torch::nn::LayerNorm(torch::nn::LayerNormOptions({C}).eps(eps)));
        attn = register_module("attn", VitAttn(C, H));
        norm2 = register_module("norm2", torch::nn::LayerNorm(torch::nn::LayerNormOptions({C}).eps(eps)));
        mlp = register_module("mlp", VitMlp(C, M));
    }
    torch::Tensor forward(torch::Tensor x) {
        x = x + attn->forward(norm1->forward(x));
        return x + mlp->forward(norm2->forward(x));
    }
};
TORCH_MODULE(VitBlock);

struct PatchEmbedImpl : torch::nn::Module {
    torch::nn::Conv2d proj{nullptr};
    PatchEmbedImpl(int64_t C, int p) {
        proj = register_module("proj", torch::nn::Conv2d(torch::nn::Conv2dOptions(3, C, p).stride(p)));
    }
};
TORCH_MODULE(PatchEmbed);

// ---- the classifier ----

struct ClassifierImpl : torch::nn::Module {
    sf_classifier_config_t cfg;
    // ConvNeXt
    CnStem stem{nullptr};
    torch::nn::ModuleList stages{nullptr};
    std::vector<CnStage> sv;
    CnHead cn_head{nullptr};
    // ViT
    torch::Tensor cls_token, pos_embed;
    PatchEmbed patch_embed{nullptr};
    torch::nn::ModuleList blocks{nullptr};
    std::vector<VitBlock> bv;
    torch::nn::LayerNorm norm{nullptr};
    torch::nn::Linear head{nullptr};

    explicit ClassifierImpl(const sf_classifier_config_t &c) : cfg(c) {
        if (c.arch == SF_CLS_CONVNEXT) {
            stem = register_module("stem", CnStem(c.dims[0], c.stem_patch, c.ln_eps));
            stages = register_module("stages", torch::nn::ModuleList());
            for (int i = 0; i < c.n_stages; i++) {
                sv.push_back(CnStage(i ? c.dims[i - 1] : c.dims[0], c.dims[i], c.depths[i], i > 0,
                                     c.conv_mlp, c.ls_init, c.ln_eps));
                stages->push_back(sv.back());
            }
            cn_head = register_module("head", CnHead(c.dims[c.n_stages - 1], c.n_classes, c.ln_eps));
        } else {
            const int64_t np = (c.image_size / c.patch_size) * (c.image_size / c.patch_size);
            cls_token = register_parameter("cls_token", torch::zeros({1, 1, c.width}));
            pos_embed = register_parameter("pos_embed", torch::zeros({1, np + 1, c.width}));
            patch_embed = register_module("patch_embed", PatchEmbed(c.width, c.patch_size));
            blocks = register_module("blocks", torch::nn::ModuleList());
            for (int i = 0; i < c.depth; i++) {
                bv.push_back(VitBlock(c.width, c.heads, c.width * c.mlp_ratio, c.ln_eps));
                blocks->push_back(bv.back());
            }
            norm = register_module("norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({c.width}).eps(c.ln_eps)));
            head = register_module("head", torch::nn::Linear(c.width, c.n_classes));
        }
    }
    torch::Tensor forward(const torch::Tensor &px) {               // (B, 3, S, S) -> (B, n)
        if (cfg.arch == SF_CLS_CONVNEXT) {
            auto x = stem->forward(px);
            for (auto &s : sv) x = s->forward(x);
            return cn_head->forward(x);
        }
        const int64_t B = px.size(0);
        auto x = patch_embed->proj->forward(px).flatten(2).transpose(1, 2);   // (B, N, C)
        x = torch::cat({cls_token.expand({B, 1, x.size(2)}), x}, 1) + pos_embed;
        for (auto &b : bv) x = b->forward(x);
        return head->forward(norm->forward(x).select(1, 0));         // class token
    }
};
TORCH_MODULE(Classifier);

struct sf_classifier_s {
    sf_classifier_config_t cfg;
    torch::Device device{torch::kCPU};
    Classifier model{nullptr};
    std::unique_ptr<torch::optim::AdamW> opt;
    ParamList params;
    sf_ml_err_t e;
};

// ---- configuration ----

#define FI(k) {#k, offsetof(sf_classifier_config_t, k), 0}
#define FF(k) {#k, offsetof(sf_classifier_config_t, k), 1}
#define FA(k, i, f) {#k #i, offsetof(sf_classifier_config_t, k) + 4 * (i), f}
static const VisionField cls_fields[] = {
    FI(arch), FI(n_classes), FI(image_size), FI(n_stages), FA(depths, 0, 0), FA(depths, 1, 0),
    FA(depths, 2, 0), FA(depths, 3, 0), FA(dims, 0, 0), FA(dims, 1, 0), FA(dims, 2, 0), FA(dims, 3, 0),
    FI(conv_mlp), FI(stem_patch), FF(ls_init), FI(patch_size), FI(width), FI(depth), FI(heads),
    FI(mlp_ratio), FF(ln_eps), FA(mean, 0, 1), FA(mean, 1, 1), FA(mean, 2, 1), FA(std, 0, 1),
    FA(std, 1, 1), FA(std, 2, 1), FF(crop_pct), FI(interpolation),
};
#undef FI
#undef FF
#undef FA
static const size_t n_cls_fields = sizeof cls_fields / sizeof cls_fields[0];

static void imagenet_norm(sf_classifier_config_t *c) {
    const float mean[3] = {0.485f, 0.456f, 0.406f}, std[3] = {0.229f, 0.224f, 0.225f};
    memcpy(c->mean, mean, sizeof mean);
    memcpy(c->std, std, sizeof std);
}

extern "C" void sf_classifier_config_convnext_atto(sf_classifier_config_t *c, int n_classes) {
    *c = sf_classifier_config_t{};
    c->arch = SF_CLS_CONVNEXT;
    c->n_classes = n_classes;
    c->image_size = 224;
    c->n_stages = 4;
    const int depths[4] = {2, 2, 6, 2}, dims[4] = {40, 80, 160, 320};
    memcpy(c->depths, depths, sizeof depths);
    memcpy(c->dims, dims, sizeof dims);
    c->conv_mlp = 1;
    c->stem_patch = 4;
    c->ls_init = 1e-6f;
    c->ln_eps = 1e-6f;
    c->crop_pct = 0.95f;
    c->interpolation = SF_INTERP_BICUBIC;
    imagenet_norm(c);
}

extern "C" void sf_classifier_config_vit_tiny(sf_classifier_config_t *c, int n_classes) {
    *c = sf_classifier_config_t{};
    c->arch = SF_CLS_VIT;
    c->n_classes = n_classes;
    c->image_size = 224;
    c->patch_size = 16;
    c->width = 192;
    c->depth = 12;
    c->heads = 3;
    c->mlp_ratio = 4;
    c->ln_eps = 1e-6f;
    c->crop_pct = 0.9f;
    c->interpolation = SF_INTERP_BICUBIC;
    imagenet_norm(c);
}

extern "C" int sf_classifier_config_check(const sf_classifier_config_t *c, char *err, size_t errlen) {
    if (!c) return SF_EINVAL;
    if (c->n_classes < 1 || c->n_classes > 1000000 || c->image_size < 1 || c->image_size > 4096)
        return sf_errf(SF_EINVAL, err, errlen, "classifier config: %d classes, image size %d",
                       c->n_classes, c->image_size);
    if (!(c->ln_eps > 0)) return sf_errf(SF_EINVAL, err, errlen, "classifier config: ln_eps must be > 0");
    for (int i = 0; i < 3; i++)
        if (!(c->std[i] > 0)) return sf_errf(SF_EINVAL, err, errlen, "classifier config: std must be > 0");
    // The evaluation resize is to floor(image_size / crop_pct) before the
    // centre crop: above 1 the crop would be larger than the image.
    if (!(c->crop_pct > 0 && c->crop_pct <= 1))
        return sf_errf(SF_EINVAL, err, errlen, "classifier config: crop_pct %g is not in (0, 1]", c->crop_pct);
    if (c->interpolation != SF_INTERP_BILINEAR && c->interpolation != SF_INTERP_BICUBIC)
        return sf_errf(SF_EINVAL, err, errlen,
                       "classifier config: interpolation %d is neither SF_INTERP_BILINEAR (%d) nor "
                       "SF_INTERP_BICUBIC (%d)", c->interpolation, SF_INTERP_BILINEAR, SF_INTERP_BICUBIC);
    if (c->arch == SF_CLS_CONVNEXT) {
        if (c->n_stages < 1 || c->n_stages > 4 || c->stem_patch < 1 || c->stem_patch > 64)
            return sf_errf(SF_EINVAL, err, errlen, "ConvNeXt config: %d stages, stem %d", c->n_stages,
                           c->stem_patch);
        for (int i = 0; i < c->n_stages; i++)
            if (c->depths[i] < 0 || c->depths[i] > 256 || c->dims[i] < 1 || c->dims[i] > 65536)
                return sf_errf(SF_EINVAL, err, errlen, "ConvNeXt config: stage %d depth %d dim %d", i,
                               c->depths[i], c->dims[i]);
        // The stem and each later stage halve the size: it must stay >= 1.
        if (c->image_size / c->stem_patch >> (c->n_stages - 1) < 1)
            return sf_errf(SF_EINVAL, err, errlen, "ConvNeXt config: image size %d too small for %d stages",
                           c->image_size, c->n_stages);
        return 0;
    }
    if (c->arch != SF_CLS_VIT) return sf_errf(SF_EINVAL, err, errlen, "unknown classifier arch %d", c->arch);
    if (c->patch_size < 1 || c->image_size % c->patch_size || c->width < 1 || c->width > 65536 ||
        c->depth < 0 || c->depth > 256 || c->heads < 1 || c->width % c->heads || c->mlp_ratio < 1 ||
        c->mlp_ratio > 64)
        return sf_errf(SF_EINVAL, err, errlen, "ViT config: image %d patch %d width %d depth %d heads %d",
                       c->image_size, c->patch_size, c->width, c->depth, c->heads);
    return 0;
}

// ---- timm hub configs ----

// Kept with their sections: only the timm folder reader parses JSON and
// looks at folders, only the training state needs the optimiser's keys.
#include <cjson/cJSON.h>

#include <cerrno>
#include <cmath>
#include <sstream>
#include <string>
#include <type_traits>

// The timm architectures this build loads, with the arguments timm's model
// functions give them (timm/models/convnext.py, vision_transformer.py).
// Everything else — layer scale init 1e-6, LayerNorm eps 1e-6, the 4x4 stem,
// MLP ratio 4 — is shared and comes from the atto / tiny presets.
struct TimmArch {
    const char *name;
    sf_cls_arch_t arch;
    int depths[4], dims[4], conv_mlp;   // ConvNeXt
    int image, patch, width, depth, heads;   // ViT
};
static const TimmArch timm_archs[] = {
    {"convnext_atto", SF_CLS_CONVNEXT, {2, 2, 6, 2}, {40, 80, 160, 320}, 1, 0, 0, 0, 0, 0},
    {"convnext_femto", SF_CLS_CONVNEXT, {2, 2, 6, 2}, {48, 96, 192, 384}, 1, 0, 0, 0, 0, 0},
    {"convnext_pico", SF_CLS_CONVNEXT, {2, 2, 6, 2}, {64, 128, 256, 512}, 1, 0, 0, 0, 0, 0},
    {"convnext_nano", SF_CLS_CONVNEXT, {2, 2, 8, 2}, {80, 160, 320, 640}, 1, 0, 0, 0, 0, 0},
    // The one here with nn.Linear MLPs (2-d fc weights), as in the paper.
    {"convnext_tiny", SF_CLS_CONVNEXT, {3, 3, 9, 3}, {96, 192, 384, 768}, 0, 0, 0, 0, 0, 0},
    {"vit_tiny_patch16_224", SF_CLS_VIT, {0}, {0}, 0, 224, 16, 192, 12, 3},
    {"vit_small_patch16_224", SF_CLS_VIT, {0}, {0}, 0, 224, 16, 384, 12, 6},
    {"vit_base_patch16_224", SF_CLS_VIT, {0}, {0}, 0, 224, 16, 768, 12, 12},
};

// The architecture named by config.json's "architecture": timm writes the
// bare name there and the tag in pretrained_cfg.tag, but a name with its tag
// ("convnext_atto.d2_in1k", as in timm.create_model) is accepted too.
static const TimmArch *timm_arch(const char *name) {
    const char *dot = strchr(name, '.');
    const size_t n = dot ? (size_t)(dot - name) : strlen(name);
    for (const TimmArch &a : timm_archs)
        if (strlen(a.name) == n && strncmp(a.name, name, n) == 0) return &a;
    return nullptr;
}

// "convnext_atto, ..., vit_base_patch16_224" for the unknown-architecture
// message.
static std::string timm_arch_list() {
    std::string s;
    for (const TimmArch &a : timm_archs) s += (s.empty() ? "" : ", ") + std::string(a.name);
    return s;
}

// Readers of one key of a timm config object, `where` naming the object in
// messages ("pretrained_cfg.").  An absent or null key keeps *dst, as timm
// falls back to the model's defaults; a list key must have n items.
static int timm_numbers(const cJSON *o, const char *where, const char *key, double *dst, int n, bool list,
                        bool integer, char *err, size_t errlen) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v || cJSON_IsNull(v)) return 0;
    if (list && (!cJSON_IsArray(v) || cJSON_GetArraySize(v) != n))
        return sf_errf(SF_EFORMAT, err, errlen, "%s%s is not a list of %d numbers", where, key, n);
    for (int i = 0; i < n; i++) {
        const cJSON *x = list ? cJSON_GetArrayItem(v, i) : v;
        if (!cJSON_IsNumber(x) || !std::isfinite(x->valuedouble) ||
            (integer && (std::fabs(x->valuedouble) > 1e9 || x->valuedouble != std::floor(x->valuedouble))))
            return sf_errf(SF_EFORMAT, err, errlen, "%s%s%s is not %s", where, key,
                           list ? " has an item that" : "", integer ? "an integer" : "a number");
        dst[i] = x->valuedouble;
    }
    return 0;
}

static int timm_floats(const cJSON *o, const char *where, const char *key, float *dst, int n, char *err,
                       size_t errlen) {
    double d[3];
    for (int i = 0; i < n; i++) d[i] = dst[i];
    int rc = timm_numbers(o, where, key, d, n, n > 1, false, err, errlen);
    if (rc == 0)
        for (int i = 0; i < n; i++) dst[i] = (float)d[i];
    return rc;
}

static int timm_ints(const cJSON *o, const char *where, const char *key, int *dst, int n, char *err,
                     size_t errlen) {
    double d[3];
    for (int i = 0; i < n; i++) d[i] = dst[i];
    int rc = timm_numbers(o, where, key, d, n, n > 1, true, err, errlen);
    if (rc == 0)
        for (int i = 0; i < n; i++) dst[i] = (int)d[i];
    return rc;
}

// A string key; *dst stays null when the key is absent or null.
static int timm_string(const cJSON *o, const char *where, const char *key, const char **dst, char *err,
                       size_t errlen) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v || cJSON_IsNull(v)) return 0;
    if (!cJSON_IsString(v)) return sf_errf(SF_EFORMAT, err, errlen, "%s%s is not a string", where, key);
    *dst = v->valuestring;
    return 0;
}

// global_pool (top level or in model_args): how the features become one
// vector.  The code here pools as timm's defaults do, "avg" for ConvNeXt and
// the class token for ViT; another pooling gives other logits from the same
// weights, so it is refused rather than ignored.
static int timm_pool(const cJSON *o, const char *where, const sf_classifier_config_t *c, char *err,
                     size_t errlen) {
    const char *pool = nullptr;
    int rc = timm_string(o, where, "global_pool", &pool, err, errlen);
    const char *want = c->arch == SF_CLS_CONVNEXT ? "avg" : "token";
    if (rc == 0 && pool && strcmp(pool, want) != 0)
        rc = sf_errf(SF_EUNSUPPORTED, err, errlen, "%sglobal_pool '%s' is not supported (this architecture "
                     "pools '%s')", where, pool, want);
    return rc;
}

// model_args, which newer timm exports record: the arguments the model was
// built with beyond its architecture's defaults.  Those that change no
// weight and no logit at evaluation (the dropout rates) are ignored;
// img_size (ViT), in_chans, num_classes and global_pool are read; any other
// argument may change the model, so it is refused by name.
static int timm_model_args(const cJSON *o, sf_classifier_config_t *c, char *err, size_t errlen) {
    if (!o || cJSON_IsNull(o)) return 0;
    if (!cJSON_IsObject(o)) return sf_errf(SF_EFORMAT, err, errlen, "model_args is not an object");
    static const char *const ignored[] = {"drop_rate", "drop_path_rate", "proj_drop_rate", "attn_drop_rate",
                                          "pos_drop_rate", "patch_drop_rate"};
    const char *w = "model_args.";
    const cJSON *a;
    cJSON_ArrayForEach(a, o) {
        const char *k = a->string;
        bool skip = false;
        for (const char *i : ignored) skip |= strcmp(k, i) == 0;
        if (skip) continue;
        int rc = 0, chans = 3, size[2] = {c->image_size, c->image_size};
        if (!strcmp(k, "num_classes")) {
            rc = timm_ints(o, w, k, &c->n_classes, 1, err, errlen);
        } else if (!strcmp(k, "global_pool")) {
            rc = timm_pool(o, w, c, err, errlen);
        } else if (!strcmp(k, "in_chans")) {
            if ((rc = timm_ints(o, w, k, &chans, 1, err, errlen)) == 0 && chans != 3)
                rc = sf_errf(SF_EUNSUPPORTED, err, errlen, "model_args.in_chans %d (RGB only)", chans);
        } else if (!strcmp(k, "img_size") && c->arch == SF_CLS_VIT) {
            // An int, or [height, width].
            rc = cJSON_IsArray(a) ? timm_ints(o, w, k, size, 2, err, errlen) : timm_ints(o, w, k, size, 1, err, errlen);
            if (rc == 0 && !cJSON_IsArray(a)) size[1] = size[0];
            if (rc == 0 && size[0] != size[1])
                rc = sf_errf(SF_EUNSUPPORTED, err, errlen, "model_args.img_size %dx%d is not square", size[0], size[1]);
            if (rc == 0) c->image_size = size[0];
        } else {
            rc = sf_errf(SF_EUNSUPPORTED, err, errlen, "model_args.%s is not supported by this loader", k);
        }
        if (rc) return rc;
    }
    return 0;
}

// A timm config.json (what timm's save_config_for_hf writes: "architecture",
// "num_classes", "pretrained_cfg": {...}; or the older single object with
// the pretrained_cfg keys at the top level) into c.  *unknown gets the
// architecture when this build does not know it (SF_EUNSUPPORTED).
//
// The evaluation transform is the one timm resolves by default
// (resolve_data_config without use_test_size): input_size and crop_pct, not
// test_input_size / test_crop_pct.
static int timm_config(const cJSON *j, sf_classifier_config_t *c, std::string *unknown, char *err,
                       size_t errlen) {
    if (!cJSON_IsObject(j)) return sf_errf(SF_EFORMAT, err, errlen, "not a JSON object");
    const char *name = nullptr;
    int rc = timm_string(j, "", "architecture", &name, err, errlen);
    if (rc) return rc;
    if (!name) return sf_errf(SF_EFORMAT, err, errlen, "no \"architecture\" (not a timm config)");
    const TimmArch *a = timm_arch(name);
    if (!a) {
        *unknown = name;
        return SF_EUNSUPPORTED;
    }
    if (a->arch == SF_CLS_CONVNEXT) {
        sf_classifier_config_convnext_atto(c, 1000);
        memcpy(c->depths, a->depths, sizeof c->depths);
        memcpy(c->dims, a->dims, sizeof c->dims);
        c->conv_mlp = a->conv_mlp;
    } else {
        sf_classifier_config_vit_tiny(c, 1000);
        c->image_size = a->image, c->patch_size = a->patch, c->width = a->width;
        c->depth = a->depth, c->heads = a->heads;
    }
    const cJSON *pc = cJSON_GetObjectItemCaseSensitive(j, "pretrained_cfg");
    const char *w = "pretrained_cfg.";
    if (!pc || cJSON_IsNull(pc)) pc = j, w = "";   // the older single-object form
    else if (!cJSON_IsObject(pc)) return sf_errf(SF_EFORMAT, err, errlen, "pretrained_cfg is not an object");

    int in[3] = {3, c->image_size, c->image_size};
    const char *interp = nullptr, *crop_mode = nullptr;
    if ((rc = timm_ints(pc, w, "input_size", in, 3, err, errlen)) ||
        (rc = timm_floats(pc, w, "crop_pct", &c->crop_pct, 1, err, errlen)) ||
        (rc = timm_floats(pc, w, "mean", c->mean, 3, err, errlen)) ||
        (rc = timm_floats(pc, w, "std", c->std, 3, err, errlen)) ||
        (rc = timm_ints(pc, w, "num_classes", &c->n_classes, 1, err, errlen)) ||
        (rc = timm_string(pc, w, "interpolation", &interp, err, errlen)) ||
        (rc = timm_string(pc, w, "crop_mode", &crop_mode, err, errlen)))
        return rc;
    if (in[0] != 3) return sf_errf(SF_EUNSUPPORTED, err, errlen, "%sinput_size has %d channels (RGB only)", w, in[0]);
    if (in[1] != in[2])
        return sf_errf(SF_EUNSUPPORTED, err, errlen, "%sinput_size %dx%d is not square", w, in[1], in[2]);
    c->image_size = in[1];
    if (interp && !strcmp(interp, "bicubic")) c->interpolation = SF_INTERP_BICUBIC;
    else if (interp && !strcmp(interp, "bilinear")) c->interpolation = SF_INTERP_BILINEAR;
    else if (interp)
        return sf_errf(SF_EUNSUPPORTED, err, errlen, "%sinterpolation '%s' is not supported (bicubic or bilinear)",
                       w, interp);
    // sf_classifier_preprocess crops the centre; "squash" and "border" would
    // give other pixels to the same weights.
    if (crop_mode && strcmp(crop_mode, "center") != 0)
        return sf_errf(SF_EUNSUPPORTED, err, errlen, "%scrop_mode '%s' is not supported (center only)", w, crop_mode);
    // The top-level num_classes overrides pretrained_cfg's, as timm reads it.
    if ((rc = timm_ints(j, "", "num_classes", &c->n_classes, 1, err, errlen)) ||
        (rc = timm_pool(j, "", c, err, errlen)) ||
        (rc = timm_model_args(cJSON_GetObjectItemCaseSensitive(j, "model_args"), c, err, errlen)))
        return rc;
    if (c->n_classes == 0)
        return sf_errf(SF_EUNSUPPORTED, err, errlen, "num_classes 0 (a backbone without its classifier head) is not "
                       "supported");
    return sf_classifier_config_check(c, err, errlen);
}

// ---- objects ----

// What ml/model_file.hpp needs to know of the classifiers.
struct ClassifierFile : ModelFileDefaults {
    typedef sf_classifier_s Obj;
    typedef sf_classifier_config_t Config;
    static constexpr const char *what = "the classifier";
    static constexpr const char *name = "classifier";
    static constexpr const char *meta_key = "sf_classifier_config";
    static int check(const Config *c, char *err, size_t errlen) { return sf_classifier_config_check(c, err, errlen); }
    static int parse(const char *js, Config *c, char *err, size_t errlen) {
        sf_classifier_config_convnext_atto(c, 1000);
        return sf_vision_config_parse(js, c, cls_fields, n_cls_fields, err, errlen);
    }
    static char *to_json(const Config &c) { return sf_vision_config_json(&c, cls_fields, n_cls_fields); }
    static void build(Obj *m, const Config &c) {
        m->cfg = c;
        m->model = Classifier(c);
        m->params.fill(*m->model);
    }
    // timm: layer scale starts at ls_init; norms at one (the generic init
    // does those).
    static void init(Obj *m, uint64_t seed) {
        auto &mod = *m->model;
        sf_vision_init(mod, seed, 0.02);
        torch::NoGradGuard ng;
        for (auto &kv : mod.named_parameters(true))
            if (kv.key().size() >= 5 && kv.key().compare(kv.key().size() - 5, 5, "gamma") == 0)
                kv.value().fill_(m->cfg.ls_init);
    }
    static const Config &config(const Obj *m) { return m->cfg; }
};

extern "C" int sf_classifier_new(const sf_classifier_config_t *c, const char *device, uint64_t seed,
                                 sf_classifier_t **out, char *err, size_t errlen) {
    return sf_model_new<ClassifierFile>(c, device, seed, out, err, errlen);
}

extern "C" int sf_classifier_load(const char *path, const sf_classifier_config_t *c, const char *device,
                                  sf_classifier_t **out, char *err, size_t errlen) {
    *out = nullptr;
    sf_st_t *st;
    char sub[256];
    int rc = sf_st_load(path, &st, sub, sizeof sub);
    if (rc) return sf_errf(rc, err, errlen, "%s: %s", path, sub);
    return sf_model_load_st<ClassifierFile>(path, st, c, "; give one", device, out, err, errlen);
}

// Reads dir/config.json into c; failures name the file.
static int timm_config_file(const std::string &path, sf_classifier_config_t *c, char *err, size_t errlen) {
    std::string text;
    if (!sf_ml_read_file(path.c_str(), &text)) {
        if (errno == ENOENT)
            return sf_errf(SF_ENOTFOUND, err, errlen, "%s not found (a timm folder holds config.json and "
                           "model.safetensors)", path.c_str());
        return sf_errf(SF_EIO, err, errlen, "cannot read %s: %s", path.c_str(), strerror(errno));
    }
    cJSON *j = cJSON_ParseWithLength(text.data(), text.size());
    if (!j) return sf_errf(SF_EFORMAT, err, errlen, "%s: not valid JSON", path.c_str());
    char sub[256] = "";
    std::string unknown;
    int rc = timm_config(j, c, &unknown, sub, sizeof sub);
    cJSON_Delete(j);
    if (rc && !unknown.empty())
        return sf_errf(rc, err, errlen, "%s: unknown architecture '%s' (this build loads %s)", path.c_str(),
                       unknown.c_str(), timm_arch_list().c_str());
    if (rc) return sf_errf(rc, err, errlen, "%s: %s", path.c_str(), sub);
    return 0;
}

static std::string shape_str(const sf_st_tensor_t *t) {
    std::string s = "[";
    for (int i = 0; i < t->ndim; i++) s += (i ? "," : "") + std::to_string(t->shape[i]);
    return s + "]";
}

// What the weights say against the config before they are loaded, each
// mismatch an error naming both sides: the head's rows against num_classes,
// and (ViT) the position table's grid against input_size.  A missing or
// otherwise misshapen tensor is left to the loader, which names it.
static int timm_check_weights(const std::string &file, const std::string &cfg, const sf_st_t *st,
                              const sf_classifier_config_t *c, char *err, size_t errlen) {
    const char *head = c->arch == SF_CLS_CONVNEXT ? "head.fc.weight" : "head.weight";
    const sf_st_tensor_t *t = sf_st_find(st, head);
    if (t && t->ndim == 2 && t->shape[0] != c->n_classes)
        return sf_errf(SF_EFORMAT, err, errlen, "%s: tensor '%s' %s has %lld classes but %s has num_classes %d",
                       file.c_str(), head, shape_str(t).c_str(), (long long)t->shape[0], cfg.c_str(), c->n_classes);
    if (c->arch != SF_CLS_VIT || !(t = sf_st_find(st, "pos_embed")) || t->ndim != 3) return 0;
    // (1, 1 + g*g, C): the class token's row, then a g x g grid of patches.
    const int64_t n = t->shape[1] - 1, g = (int64_t)std::llround(std::sqrt((double)(n > 0 ? n : 0)));
    if (n < 1 || g * g != n)
        return sf_errf(SF_EFORMAT, err, errlen, "%s: tensor 'pos_embed' %s is not a class token and a square grid",
                       file.c_str(), shape_str(t).c_str());
    if (g * c->patch_size != c->image_size)
        return sf_errf(SF_EFORMAT, err, errlen, "%s: tensor 'pos_embed' %s is for %lldx%lld images (a %lldx%lld "
                       "grid of %d-pixel patches) but %s has input_size %d", file.c_str(), shape_str(t).c_str(),
                       (long long)(g * c->patch_size), (long long)(g * c->patch_size), (long long)g, (long long)g,
                       c->patch_size, cfg.c_str(), c->image_size);
    return 0;
}

extern "C" int sf_classifier_load_dir(const char *dir, const char *device, sf_classifier_t **out, char *err,
                                      size_t errlen) {
    if (!out) return SF_EINVAL;
    *out = nullptr;
    if (!dir) return SF_EINVAL;
    if (int rc = sf_ml_need_dir(dir, "sf_classifier_load reads one file", err, errlen)) return rc;
    const std::string d = dir, cfg = d + "/config.json";
    sf_classifier_config_t c;
    int rc = timm_config_file(cfg, &c, err, errlen);
    if (rc) return rc;
    // The config is read first so that a foreign architecture is refused
    // before the weights; a pytorch_model.bin-only folder is refused here
    // saying to convert it.
    std::string file;
    if ((rc = sf_ml_weights_path(d, &file, err, errlen))) return rc;
    sf_st_t *st;
    if ((rc = sf_st_load(file.c_str(), &st, err, errlen))) return rc;
    rc = timm_check_weights(file, cfg, st, &c, err, errlen);
    if (rc == 0) rc = sf_model_from_st<ClassifierFile>(file.c_str(), st, c, device, out, err, errlen);
    // timm loads strictly: a tensor the model lacks means another variant
    // (a head with a hidden layer, an extra norm), whose logits these
    // weights would not give.
    for (int i = 0; rc == 0 && i < sf_st_count(st); i++) {
        const char *name = sf_st_get(st, i)->name;
        bool known = false;
        for (const std::string &p : (*out)->params.names) known |= p == name;
        if (!known) {
            rc = sf_errf(SF_EFORMAT, err, errlen, "%s: tensor '%s' is not a parameter of the architecture %s "
                         "names (another variant of it?)", file.c_str(), name, cfg.c_str());
            sf_classifier_free(out);
        }
    }
    sf_st_free(&st);
    return rc;
}

extern "C" int sf_classifier_save(sf_classifier_t *m, const char *path) {
    return sf_model_save<ClassifierFile>(m, path);
}

extern "C" void sf_classifier_free(sf_classifier_t **m) { sf_model_free(m); }

extern "C" const sf_classifier_config_t *sf_classifier_config(const sf_classifier_t *m) { return &m->cfg; }
extern "C" const char *sf_classifier_errstr(const sf_classifier_t *m) { return m->e.errstr; }
extern "C" int sf_classifier_param_count(const sf_classifier_t *m) { return (int)m->params.names.size(); }
extern "C" const char *sf_classifier_param(const sf_classifier_t *m, int i, int *ndim, int64_t shape[4]) {
    return m->params.get(i, ndim, shape);
}
extern "C" int64_t sf_classifier_num_params(const sf_classifier_t *m) { return sf_model_num_params(m); }

// ---- forward and training ----

static int check_size(sf_classifier_t *m, int B) {
    if (B < 1) return sf_ml_fail(&m->e, SF_EINVAL, "batch of %d images", B);
    return 0;
}

extern "C" int sf_classifier_forward(sf_classifier_t *m, const float *pixels, int B, float *logits,
                                     int *pred) {
    SF_ML_TRY {
        int rc = check_size(m, B);
        if (rc) return rc;
        torch::NoGradGuard ng;
        m->model->eval();
        const int S = m->cfg.image_size;
        auto out = m->model->forward(sf_ml_from_f32(pixels, {B, 3, S, S}).to(m->device));
        if (logits) sf_ml_to_f32(out, logits);
        if (pred) {
            auto a = out.argmax(1).to(torch::kCPU, torch::kInt32).contiguous();
            memcpy(pred, a.data_ptr<int32_t>(), sizeof(int) * B);
        }
        return 0;
    }
    SF_ML_CATCH(&m->e)
}

// The optimiser of the training steps, made on the first step or by
// load_state: both must make it the same way for a resumed run to continue
// bit for bit.  lr here only seeds the groups; every step sets it.
static void classifier_adamw(sf_classifier_t *m, float lr) {
    if (!m->opt) m->opt = sf_vision_adamw(*m->model, torch::optim::AdamWOptions(lr), 0.05);
}

extern "C" int sf_classifier_train_step(sf_classifier_t *m, const float *pixels, const int *labels,
                                        int B, float lr, float *loss, float *acc) {
    SF_ML_TRY {
        int rc = check_size(m, B);
        if (rc) return rc;
        for (int i = 0; i < B; i++)
            if (labels[i] < 0 || labels[i] >= m->cfg.n_classes)
                return sf_ml_fail(&m->e, SF_EINVAL, "label %d outside 0..%d", labels[i], m->cfg.n_classes - 1);
        classifier_adamw(m, lr);
        sf_vision_set_lr(*m->opt, lr);
        m->model->train();
        const int S = m->cfg.image_size;
        auto px = sf_ml_from_f32(pixels, {B, 3, S, S}).to(m->device);
        auto y = torch::from_blob(const_cast<int *>(labels), {B}, torch::kInt32).to(m->device, torch::kLong);
        auto logits = m->model->forward(px);
        auto l = F::cross_entropy(logits, y, F::CrossEntropyFuncOptions().label_smoothing(0.1));
        m->opt->zero_grad();
        l.backward();
        m->opt->step();
        if (loss) *loss = l.item<float>();
        if (acc) *acc = (logits.argmax(1) == y).to(torch::kFloat32).mean().item<float>();
        return 0;
    }
    SF_ML_CATCH(&m->e)
}

// The training state (sf_classifier_save_state / load_state).
//
// A state file is a safetensors image, like every checkpoint here (one
// bounds-checked reader for files from disk, no pickle): the weights under timm's names and the config in the metadata
// exactly as sf_classifier_save writes them — so a state file is also a
// weights file for sf_classifier_load — plus, for each parameter <p> in
// module order, AdamW's moments "optim.exp_avg.<p>" and
// "optim.exp_avg_sq.<p>" (F32, zeros before its first step) and its step
// count in "optim.step" (I64, one per parameter, 0 meaning no state yet).
// The learning rate is not stored: the caller passes it to every step.
// libtorch's own archive (torch::save of the optimizer) would do the same
// but reads a corrupt file with exceptions from deep in its zip reader, and
// nothing else here reads it.
//
// The metadata carries the layout version (sf_classifier_state) and an
// FNV-1a 64 of every tensor's bytes in the order above, so that a file
// damaged inside its data is refused, not trained from.

static const char *const state_version = "1";

// libtorch keys an optimiser's per-parameter state by the parameter's
// TensorImpl: its address printed to a string in 1.13 (as
// c10::guts::to_string prints it), the address itself in 2.x.  Key is the
// state map's key type.
typedef std::decay<decltype(std::declval<torch::optim::AdamW &>().state())>::type::key_type OptKey;
template <class Key>
static Key opt_key(const torch::Tensor &p) {
    if constexpr (std::is_same<Key, std::string>::value) {
        std::ostringstream os;
        os << p.unsafeGetTensorImpl();
        return os.str();
    } else {
        return static_cast<Key>(p.unsafeGetTensorImpl());
    }
}

static uint64_t hash_tensor(uint64_t h, const torch::Tensor &t) {   // t: CPU, contiguous
    return sf_fnv1a(h, t.data_ptr(), (size_t)t.nbytes());
}

extern "C" int sf_classifier_save_state(sf_classifier_t *m, const char *path) {
    if (!m || !path) return SF_EINVAL;
    SF_ML_TRY {
        sf_st_writer_t *w;
        std::vector<torch::Tensor> keep;   // the weights first, in module order
        int rc = sf_model_writer<ClassifierFile>(m, &w, keep);
        if (rc) return rc;
        struct Guard {
            sf_st_writer_t *w;
            ~Guard() { sf_st_writer_free(&w); }
        } g{w};
        uint64_t h = SF_HASH_BASIS;
        for (auto &t : keep) h = hash_tensor(h, t);
        auto params = m->model->named_parameters(true);
        std::vector<int64_t> steps(params.size(), 0);
        for (size_t i = 0; i < params.size() && rc == 0; i++) {
            const torch::Tensor &p = params[i].value();
            torch::Tensor mom[2];
            if (m->opt) {
                auto it = m->opt->state().find(opt_key<OptKey>(p));
                if (it != m->opt->state().end()) {
                    auto &s = static_cast<torch::optim::AdamWParamState &>(*it->second);
                    steps[i] = s.step();
                    mom[0] = s.exp_avg(), mom[1] = s.exp_avg_sq();
                }
            }
            static const char *const key[2] = {"optim.exp_avg.", "optim.exp_avg_sq."};
            for (int k = 0; k < 2 && rc == 0; k++) {
                auto t = mom[k].defined() ? mom[k].detach().to(torch::kCPU, torch::kFloat32).contiguous()
                                          : torch::zeros(p.sizes(), torch::kFloat32);
                keep.push_back(t);
                h = hash_tensor(h, t);
                rc = sf_st_writer_add(w, (key[k] + params[i].key()).c_str(), SF_ST_F32, (int)t.dim(),
                                      t.sizes().data(), t.data_ptr(), (size_t)t.nbytes());
            }
        }
        const int64_t np = (int64_t)steps.size();
        h = sf_fnv1a(h, steps.data(), sizeof(int64_t) * steps.size());
        char hex[17];
        snprintf(hex, sizeof hex, "%016llx", (unsigned long long)h);
        if (rc == 0) rc = sf_st_writer_add(w, "optim.step", SF_ST_I64, 1, &np, steps.data(), sizeof(int64_t) * steps.size());
        if (rc == 0) rc = sf_st_writer_meta(w, "sf_classifier_state", state_version);
        if (rc == 0) rc = sf_st_writer_meta(w, "sf_classifier_state_fnv1a", hex);
        if (rc) return sf_ml_fail(&m->e, rc, "cannot build the training state for %s", path);
        // Through a temporary file renamed into place: a worker killed
        // while writing leaves the previous state whole.
        if ((rc = sf_st_writer_save(w, path)) != 0) return sf_ml_fail(&m->e, rc, "cannot write %s", path);
        return 0;
    }
    SF_ML_CATCH(&m->e)
}

// An F32 tensor `name` of st with p's shape, or an error naming it.
static int state_tensor(sf_classifier_t *m, const char *path, const sf_st_t *st, const std::string &name,
                        const torch::Tensor &p, const sf_st_tensor_t **out) {
    const sf_st_tensor_t *t = *out = sf_st_find(st, name.c_str());
    if (!t) return sf_ml_fail(&m->e, SF_EFORMAT, "%s: no tensor '%s'", path, name.c_str());
    bool same = t->dtype == SF_ST_F32 && t->ndim == p.dim();
    for (int i = 0; same && i < t->ndim; i++) same = t->shape[i] == p.size(i);
    if (!same)
        return sf_ml_fail(&m->e, SF_EFORMAT, "%s: tensor '%s' is %s %s, this model's is F32 [%s]", path,
                          name.c_str(), sf_st_dtype_name(t->dtype), shape_str(t).c_str(),
                          c10::Join(",", p.sizes()).c_str());
    return 0;
}

// The file's config against m's; an error names the first field that
// differs.
static int state_config(sf_classifier_t *m, const char *path, const sf_st_t *st) {
    sf_classifier_config_t c;
    char sub[256];
    int rc = sf_model_st_config<ClassifierFile>(st, &c, sub, sizeof sub);
    if (rc) return sf_ml_fail(&m->e, SF_EFORMAT, "%s: %s", path, sub);
    for (size_t i = 0; i < n_cls_fields; i++) {
        const VisionField &f = cls_fields[i];
        const char *a = (const char *)&c + f.off, *b = (const char *)&m->cfg + f.off;
        if (memcmp(a, b, 4) == 0) continue;
        double x = f.is_float ? *(const float *)a : *(const int *)a, y = f.is_float ? *(const float *)b : *(const int *)b;
        return sf_ml_fail(&m->e, SF_EFORMAT, "%s is the state of another classifier configuration (%s %g in the "
                          "file, %g in this model)", path, f.key, x, y);
    }
    return 0;
}

extern "C" int sf_classifier_load_state(sf_classifier_t *m, const char *path) {
    if (!m || !path) return SF_EINVAL;
    SF_ML_TRY {
        sf_st_t *st;
        char sub[512];
        int rc = sf_st_load(path, &st, sub, sizeof sub);   // its messages name the file
        if (rc) return sf_ml_fail(&m->e, rc, "%s", sub);
        struct Guard {
            sf_st_t *st;
            ~Guard() { sf_st_free(&st); }
        } g{st};
        const char *ver = sf_st_meta(st, "sf_classifier_state"), *sum = sf_st_meta(st, "sf_classifier_state_fnv1a");
        if (!ver)
            return sf_ml_fail(&m->e, SF_EFORMAT, "%s: not a training state (no sf_classifier_state in its metadata; "
                              "sf_classifier_save writes weights only)", path);
        if (strcmp(ver, state_version) != 0)
            return sf_ml_fail(&m->e, SF_EFORMAT, "%s: training state layout %s, this build reads %s", path, ver,
                              state_version);
        if ((rc = state_config(m, path, st)) != 0) return rc;

        // Every tensor is found, checked and converted before the model or
        // the optimiser is touched, so that a refused file leaves both as
        // they were.
        auto params = m->model->named_parameters(true);
        const size_t np = params.size();
        std::vector<const sf_st_tensor_t *> ts;   // per parameter: weight, exp_avg, exp_avg_sq
        for (size_t i = 0; i < np; i++) {
            const std::string &n = params[i].key();
            const std::string names[3] = {n, "optim.exp_avg." + n, "optim.exp_avg_sq." + n};
            for (const std::string &name : names) {
                const sf_st_tensor_t *t;
                if ((rc = state_tensor(m, path, st, name, params[i].value(), &t)) != 0) return rc;
                ts.push_back(t);
            }
        }
        const sf_st_tensor_t *ps = sf_st_find(st, "optim.step");
        if (!ps || ps->dtype != SF_ST_I64 || ps->ndim != 1 || ps->shape[0] != (int64_t)np)
            return sf_ml_fail(&m->e, SF_EFORMAT, "%s: tensor 'optim.step' is missing or not I64 [%zu]", path, np);
        std::vector<int64_t> steps(np);
        memcpy(steps.data(), ps->data, sizeof(int64_t) * np);   // little-endian, as the file is
        for (size_t i = 0; i < np; i++)
            if (steps[i] < 0)
                return sf_ml_fail(&m->e, SF_EFORMAT, "%s: step %lld of '%s'", path, (long long)steps[i],
                                  params[i].key().c_str());
        // The checksum's order is the writer's: all weights, then each
        // parameter's two moments, then the steps.
        uint64_t h = SF_HASH_BASIS;
        for (size_t i = 0; i < np; i++) h = sf_fnv1a(h, ts[3 * i]->data, ts[3 * i]->nbytes);
        for (size_t i = 0; i < np; i++)
            for (int k = 1; k < 3; k++) h = sf_fnv1a(h, ts[3 * i + k]->data, ts[3 * i + k]->nbytes);
        h = sf_fnv1a(h, ps->data, ps->nbytes);
        char hex[17];
        snprintf(hex, sizeof hex, "%016llx", (unsigned long long)h);
        if (!sum || strcmp(sum, hex) != 0)
            return sf_ml_fail(&m->e, SF_EFORMAT, "%s: checksum %s, the data gives %s (a damaged file)", path,
                              sum ? sum : "missing", hex);
        std::vector<torch::Tensor> host(ts.size());
        for (size_t k = 0; k < ts.size(); k++) {
            host[k] = torch::empty(params[k / 3].value().sizes(), torch::kFloat32);
            sf_st_to_f32(ts[k], host[k].data_ptr<float>(), (size_t)host[k].numel());
        }

        torch::NoGradGuard ng;
        classifier_adamw(m, 1e-3f);
        auto &state = m->opt->state();
        state.clear();
        for (size_t i = 0; i < np; i++) {
            torch::Tensor p = params[i].value();
            p.copy_(host[3 * i]);
            if (steps[i] == 0) continue;   // as before its first step: AdamW starts it afresh
            auto s = std::make_unique<torch::optim::AdamWParamState>();
            s->step(steps[i]);
            s->exp_avg(host[3 * i + 1].to(p.device()));
            s->exp_avg_sq(host[3 * i + 2].to(p.device()));
            state[opt_key<OptKey>(p)] = std::move(s);
        }
        return 0;
    }
    SF_ML_CATCH(&m->e)
}

// ---- preprocessing (timm's evaluation transform) ----

// Kept with its section rather than at the top: the pure-C resampler is all
// this section needs.
extern "C" {
#include "common/image/resample.h"
}

// crop_pct as the decimal it was written as (0.95 in timm's pretrained_cfg),
// not the float the config holds: timm computes floor(image_size /
// crop_pct) in double, and for crop_pct 0.8 the float (0.800000012) gives
// 279 where timm gets 280.  The shortest "%.*g" that reads back as the same
// float is that decimal.
static double crop_pct_decimal(float f) {
    char buf[32];
    for (int p = 1; p <= 9; p++) {
        snprintf(buf, sizeof buf, "%.*g", p, (double)f);
        double d = strtod(buf, nullptr);
        if ((float)d == f) return d;
    }
    return f;
}

// Python's round(d / 2) for d >= 0, which rounds halves to even, as
// torchvision's CenterCrop places its window.
static int half_to_even(int d) {
    int q = d / 2;
    return (d % 2 && q % 2) ? q + 1 : q;
}

extern "C" int sf_classifier_preprocess(const sf_classifier_config_t *c, const uint8_t *rgb, int w, int h,
                                        float *out) {
    if (!c || !rgb || !out || w < 1 || h < 1) return SF_EINVAL;
    int rc = sf_classifier_config_check(c, nullptr, 0);
    if (rc) return rc;
    const int S = c->image_size;
    // torchvision's Resize(int): the shorter side to floor(S / crop_pct), the
    // longer to int(short * long / shorter) (a double quotient, truncated).
    const double to_short = std::floor(S / crop_pct_decimal(c->crop_pct));
    const int sw = w <= h ? w : h, lw = w <= h ? h : w;
    const double to_long = std::floor(to_short * lw / sw);
    if (to_long > SF_RESAMPLE_MAX_DIM) return SF_ERANGE;
    const int rw = w <= h ? (int)to_short : (int)to_long, rh = w <= h ? (int)to_long : (int)to_short;
    // crop_pct <= 1, so both sides are at least S and the crop never pads.
    const sf_image_rect_t win = {half_to_even(rw - S), half_to_even(rh - S), S, S};
    const size_t n = (size_t)S * S;
    uint8_t *crop = (uint8_t *)malloc(n * 3);
    if (!crop) return SF_ENOMEM;
    const int filter = c->interpolation == SF_INTERP_BICUBIC ? SF_RESAMPLE_BICUBIC : SF_RESAMPLE_BILINEAR;
    rc = sf_image_resize_pil(rgb, w, h, 3, rw, rh, filter, &win, crop);
    // ToTensor then Normalize, one float32 operation at a time as torch does
    // them, so that the result is torchvision's tensor to the bit.
    for (size_t i = 0; rc == 0 && i < n; i++)
        for (int ch = 0; ch < 3; ch++)
            out[ch * n + i] = ((float)crop[i * 3 + ch] / 255.0f - c->mean[ch]) / c->std[ch];
    free(crop);
    return rc;
}
