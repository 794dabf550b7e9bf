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
        auto q = qkv->forward(x).chunk(3, -1);
        return proj->forward(sf_vision_attention(q[0], q[1], q[2], heads, torch::Tensor()));
    }
};
TORCH_MODULE(VitAttn);

struct VitMlpImpl : torch::nn::Module {
    torch::nn::Linear fc1{nullptr}, fc2{nullptr};
    VitMlpImpl(int64_t C, int64_t M) {
        fc1 = register_module("fc1", torch::nn::Linear(C, M));
        fc2 = register_module("fc2", torch::nn::Linear(M, C));
    }
    torch::Tensor forward(const torch::Tensor &x) { return fc2->forward(torch::gelu(fc1->forward(x))); }
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
    FA(std, 1, 1), FA(std, 2, 1),
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

extern "C" int sf_classifier_train_step(sf_classifier_t *m, const float *pixels, const int *labels,
                                        int B, float lr, float *loss, float *acc) {
    SF_ML_TRY {
        int rc = check_size(m, B);
        if (rc) return rc;
        for (int i = 0; i < B; i++)
            if (labels[i] < 0 || labels[i] >= m->cfg.n_classes)
                return sf_ml_fail(&m->e, SF_EINVAL, "label %d outside 0..%d", labels[i], m->cfg.n_classes - 1);
        if (!m->opt) m->opt = sf_vision_adamw(*m->model, torch::optim::AdamWOptions(lr), 0.05);
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
