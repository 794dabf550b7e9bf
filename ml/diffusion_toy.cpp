// diffusion_toy.cpp: tiny TorchScript pipelines with the exact contract of
// ml/sf_diffusion.h, written from C++ (torch::jit::Module::define, no
// Python): for the tests, and for a dry run of the whole path on a new node.
//
// Every module computes each sample on its own — elementwise products and
// sums instead of convolutions and matrix products, whose CPU kernels change
// their summation order with the batch size — so the same (prompt, seed)
// gives the same bytes in any batch, which the tests rely on.
#include "ml/shim_internal.hpp"
#include "ml/sf_diffusion.h"
#include "ml/sf_spm.h"

#include <torch/script.h>

#include <cjson/cJSON.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <sstream>
#include <string>

extern "C" {
#include "common/runtime/fileio.h"
#include "common/text/clip_bpe.h"
}

namespace {

const int kToyWidth = 32;   // D, the text encoder's width

struct ToyShape {
    int channels, sample_size, image_size, out_channels;
    bool latent, hook;
};

// Copies a file with common/runtime/fileio's whole-file read and atomic write.
int copy_file(const std::string &from, const std::string &to, char *err, size_t errlen) {
    char *buf;
    size_t len;
    if (sf_read_file(from.c_str(), SF_READ_ANY_SIZE, &buf, &len, nullptr, 0))
        return sf_errf(SF_ENOTFOUND, err, errlen, "%s: %s", from.c_str(), strerror(errno));
    int rc = sf_write_file_atomic(to.c_str(), buf, len);
    free(buf);
    return rc ? sf_errf(SF_EIO, err, errlen, "%s: %s", to.c_str(), strerror(errno)) : 0;
}

// Saves a module with sf_write_file_atomic, so that a pipeline rewritten in
// place is never half a file.  Saved from memory, the archive's records are
// under "archive/", as torch.jit.save to a buffer writes them.  Throws as
// Module::save does.
void save_module(const torch::jit::Module &m, const std::string &path) {
    std::ostringstream out;
    m.save(out);
    const std::string bytes = out.str();
    if (sf_write_file_atomic(path.c_str(), bytes.data(), bytes.size()))
        throw std::runtime_error("cannot write " + path + ": " + strerror(errno));
}

// The tokenizer files, copied into the pipeline; returns the vocabulary size
// and the end token.
int copy_tokenizer(const std::string &dir, const char *vocab, const char *merges, int *vocab_size,
                   int *eot, char *err, size_t errlen) {
    if (!vocab || !merges) return sf_errf(SF_EINVAL, err, errlen, "toy pipeline: no tokenizer files given");
    sf_clip_bpe_t *b = nullptr;
    char sub[300];
    int rc = sf_clip_bpe_load(vocab, merges, &b, sub, sizeof sub);
    if (rc) return sf_errf(rc, err, errlen, "tokenizer: %s", sub);
    *vocab_size = sf_clip_bpe_vocab_size(b);
    *eot = sf_clip_bpe_eot(b);
    sf_clip_bpe_free(&b);
    if ((rc = copy_file(vocab, dir + "/vocab.json", err, errlen))) return rc;
    return copy_file(merges, dir + "/merges.txt", err, errlen);
}

// TorchScript lines (at the forward's indentation, using x's device) that
// set `betas`, float64 (N), for the schedules the toys use.
std::string betas_source(const sf_ddim_config_t &sc) {
    const int N = sc.num_train_timesteps;
    char src[512];
    if (sc.beta_schedule == SF_BETA_SQUAREDCOS) {
        // diffusers' betas_for_alpha_bar: 1 - f((i+1)/N) / f(i/N), capped at 0.999.
        snprintf(src, sizeof src,
                 "ti = torch.arange(%d, device=x.device).double() / %d.0\n"
                 "    fa = torch.cos((ti + 0.008) / 1.008 * 1.5707963267948966) ** 2\n"
                 "    betas = torch.clamp(1.0 - fa[1:] / fa[:-1], max=0.999)",
                 N + 1, N);
    } else {
        // scaled_linear: linspace(sqrt(beta_start), sqrt(beta_end), N)^2.
        const double b0 = std::sqrt((double)sc.beta_start), b1 = std::sqrt((double)sc.beta_end);
        snprintf(src, sizeof src,
                 "sb = %.17g + %.17g * torch.arange(%d, device=x.device).double() / %d.0\n"
                 "    betas = sb * sb",
                 b0, b1 - b0, N, N - 1);
    }
    return src;
}

torch::jit::Module new_module(const char *name) {
    return torch::jit::Module(c10::QualifiedName(std::string("__torch__.sf_toy.") + name));
}

torch::Tensor randn(at::Generator &g, std::vector<int64_t> shape, double sd) {
    return torch::randn(shape, g, torch::kFloat32) * sd;
}

// tokens (B, T) -> the rows of an embedding table (B, T, D).  The end
// token's row (and T5's pad row, pad) is zero, so that the padding adds
// nothing to the unet's sum over tokens and the words decide it.
torch::jit::Module text_encoder(at::Generator &g, int vocab, int eot, int pad = -1) {
    auto m = new_module("TextEncoder");
    torch::Tensor emb = randn(g, {vocab, kToyWidth}, 1.0);
    emb[eot].zero_();
    if (pad >= 0 && pad < vocab) emb[pad].zero_();
    m.register_parameter("emb", emb, false);
    m.define(R"(
def forward(self, tokens: Tensor) -> Tensor:
    return torch.embedding(self.emb, tokens)
)");
    return m;
}

// The exact noise prediction for Gaussian data x0 ~ N(m, s^2 I), s = 0.3,
// m = 0.6 tanh(pattern + proj(sum over tokens of context)), bent a little
// by 0.1 tanh(3x3 conv of x + a timestep term):
//   x0_hat = m + k_t (x - sqrt(abar_t) m) + bend,
//   k_t    = sqrt(abar_t) s^2 / (abar_t s^2 + 1 - abar_t),
//   eps    = (x - sqrt(abar_t) x0_hat) / sqrt(1 - abar_t),
// so DDIM carries the seed's noise into the image (x0 ~ m + s * noise), the
// prompt moves m, and images stay in range at guidance scales up to ~2.
// abar comes from the schedule the toy's JSON names (sc: scaled_linear or
// squaredcos_cap_v2), recomputed in float64 inside: in bf16, values near 1
// would round to 1.  out_channels > C appends 0.1 x, IF's learned variance
// in shape only (|0.1 x| stays well inside [-1, 1]).
torch::jit::Module toy_unet(at::Generator &g, const ToyShape &s, const sf_ddim_config_t &sc) {
    const int C = s.channels;
    auto m = new_module("Unet");
    m.register_parameter("pattern", randn(g, {C, s.sample_size, s.sample_size}, 0.5), false);
    m.register_parameter("proj", randn(g, {kToyWidth, C}, 0.05), false);             // (D, C)
    m.register_parameter("w", randn(g, {C, C, 3, 3}, 0.3), false);                  // (out, in, 3, 3)
    m.register_parameter("tw", randn(g, {C}, 0.5), false);
    const int N = sc.num_train_timesteps;
    std::string extra = s.out_channels > C
                            ? "torch.cat([eps, 0.1 * x[:, :" + std::to_string(s.out_channels - C) + "]], 1)"
                            : "eps";
    m.define(R"(
def forward(self, x: Tensor, t: Tensor, context: Tensor) -> Tensor:
    H = x.size(2)
    W = x.size(3)
    xf = x.float()
    xp = torch.constant_pad_nd(xf, [1, 1, 1, 1], 0.0)
    w = self.w.float()
    h = torch.zeros_like(xf)
    for i in range(3):
        for j in range(3):
            sl = xp[:, :, i:i + H, j:j + W]
            for c in range()" + std::to_string(C) + R"():
                h = h + sl[:, c:c + 1] * w[:, c, i, j].reshape(1, -1, 1, 1)
    cm = context.float().sum(1)
    cp = (cm.unsqueeze(2) * self.proj.float().unsqueeze(0)).sum(1)
    m = 0.6 * torch.tanh(self.pattern.float().unsqueeze(0) + cp.reshape(cp.size(0), -1, 1, 1))
    )" + betas_source(sc) + R"(
    a = torch.cumprod(1.0 - betas, 0)[t].float().reshape(-1, 1, 1, 1)
    s2 = 0.09
    k = a.sqrt() * s2 / (a * s2 + 1.0 - a)
    tf = t.float().reshape(-1, 1, 1, 1) / )" + std::to_string(N) + R"(.0
    x0 = m + k * (xf - a.sqrt() * m) + 0.1 * torch.tanh(h + tf * self.tw.float().reshape(1, -1, 1, 1))
    eps = ((xf - a.sqrt() * x0) / (1.0 - a).sqrt()).to(x.dtype)
    return )" + extra + R"(
)");
    return m;
}

// Nearest 2x upsampling, then a per-pixel linear map to RGB and tanh.
torch::jit::Module toy_decoder(at::Generator &g, int C) {
    auto m = new_module("Decoder");
    m.register_parameter("w", randn(g, {3, C}, 0.5), false);
    m.register_parameter("b", randn(g, {3}, 0.1), false);
    m.define(R"(
def forward(self, z: Tensor) -> Tensor:
    u = z.repeat_interleave(2, 2).repeat_interleave(2, 3)
    y = torch.zeros([u.size(0), 3, u.size(2), u.size(3)], dtype=u.dtype, device=u.device)
    y = y + self.b.reshape(1, 3, 1, 1)
    for c in range()" + std::to_string(C) + R"():
        y = y + u[:, c:c + 1] * self.w[:, c].reshape(1, 3, 1, 1)
    return torch.tanh(y)
)");
    return m;
}

// grad log N(x0; g, I) = g - x0: with a positive hook_scale, samples move
// away from g.
torch::jit::Module toy_hook(at::Generator &g, int C) {
    auto m = new_module("Guidance");
    m.register_parameter("g", randn(g, {C}, 0.5), false);
    m.define(R"(
def forward(self, x0: Tensor, t: Tensor) -> Tensor:
    return self.g.reshape(1, -1, 1, 1) - x0
)");
    return m;
}

torch::jit::Module const_unet(float value, int out_channels) {
    auto m = new_module("ConstUnet");
    m.register_parameter("value", torch::tensor(value), false);
    m.define(R"(
def forward(self, x: Tensor, t: Tensor, context: Tensor) -> Tensor:
    y = torch.zeros([x.size(0), )" + std::to_string(out_channels) + R"(, x.size(2), x.size(3)], dtype=x.dtype, device=x.device)
    return y + self.value
)");
    return m;
}

// A float as the shortest decimal that reads back as the same float, so the
// JSON says 0.95 and not 0.949999988.
double short_num(float f) {
    char buf[32];
    for (int digits = 6; digits < 9; digits++) {
        snprintf(buf, sizeof buf, "%.*g", digits, (double)f);
        if ((float)strtod(buf, nullptr) == f) return strtod(buf, nullptr);
    }
    return (double)f;
}

// A schedule object under key; DDPM's keys only where they differ from
// DDIM's defaults, so SD's toys keep the JSON they always had.
cJSON *schedule_json(cJSON *parent, const char *key, const sf_ddim_config_t &c) {
    static const char *const betas[] = {"linear", "scaled_linear", "squaredcos_cap_v2"};
    cJSON *s = cJSON_AddObjectToObject(parent, key);
    cJSON_AddStringToObject(s, "beta_schedule", betas[c.beta_schedule]);
    cJSON_AddNumberToObject(s, "beta_start", short_num(c.beta_start));
    cJSON_AddNumberToObject(s, "beta_end", short_num(c.beta_end));
    cJSON_AddNumberToObject(s, "num_train_timesteps", c.num_train_timesteps);
    cJSON_AddNumberToObject(s, "steps_offset", c.steps_offset);
    cJSON_AddBoolToObject(s, "set_alpha_to_one", c.set_alpha_to_one);
    cJSON_AddStringToObject(s, "prediction_type", c.prediction_type == SF_PRED_V ? "v_prediction" : "epsilon");
    cJSON_AddBoolToObject(s, "clip_sample", c.clip_sample);
    cJSON_AddNumberToObject(s, "clip_sample_range", short_num(c.clip_sample_range));
    if (c.sampler == SF_SAMPLER_DDPM) cJSON_AddStringToObject(s, "sampler", "ddpm");
    if (c.variance_type == SF_VAR_LEARNED_RANGE) cJSON_AddStringToObject(s, "variance_type", "learned_range");
    if (c.thresholding) {
        cJSON_AddBoolToObject(s, "thresholding", 1);
        cJSON_AddNumberToObject(s, "dynamic_thresholding_ratio", short_num(c.dynamic_thresholding_ratio));
        cJSON_AddNumberToObject(s, "sample_max_value", short_num(c.sample_max_value));
    }
    return s;
}

void add_schedule(cJSON *root, const sf_ddim_config_t &c, int steps, double eta, double gs) {
    schedule_json(root, "schedule", c);
    cJSON *d = cJSON_AddObjectToObject(root, "defaults");
    cJSON_AddNumberToObject(d, "steps", steps);
    cJSON_AddNumberToObject(d, "eta", eta);
    cJSON_AddNumberToObject(d, "guidance_scale", gs);
}

int write_json(const std::string &dir, cJSON *root, char *err, size_t errlen) {
    char *text = cJSON_Print(root);
    cJSON_Delete(root);
    if (!text) return sf_errf(SF_ENOMEM, err, errlen, "out of memory");
    const std::string path = dir + "/sf-diffusion.json", line = std::string(text) + "\n";
    free(text);
    if (sf_write_file_atomic(path.c_str(), line.data(), line.size()))
        return sf_errf(SF_EIO, err, errlen, "cannot write %s", path.c_str());
    return 0;
}

cJSON *base_json(const ToyShape &s) {
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "source", "sf-train toy-diffusion (random weights)");
    cJSON_AddStringToObject(root, "text_encoder", "text_encoder.pt");
    cJSON_AddStringToObject(root, "unet", "unet.pt");
    if (s.latent) cJSON_AddStringToObject(root, "decoder", "decoder.pt");
    if (s.hook) cJSON_AddStringToObject(root, "guidance", "guidance.pt");
    cJSON *t = cJSON_AddObjectToObject(root, "tokenizer");
    cJSON_AddStringToObject(t, "kind", "clip");
    cJSON_AddStringToObject(t, "vocab", "vocab.json");
    cJSON_AddStringToObject(t, "merges", "merges.txt");
    cJSON_AddNumberToObject(t, "context", 77);
    cJSON_AddStringToObject(t, "pad", "eot");
    cJSON_AddNumberToObject(root, "channels", s.channels);
    cJSON_AddNumberToObject(root, "sample_size", s.sample_size);
    cJSON_AddNumberToObject(root, "image_size", s.image_size);
    cJSON_AddNumberToObject(root, "latent_scale", s.latent ? 2.0 : 1.0);
    return root;
}

int make_dir(const char *dir, char *err, size_t errlen) {
    if (!dir || !*dir) return sf_errf(SF_EINVAL, err, errlen, "toy pipeline: no directory given");
    if (sf_mkdir_p(dir, 0777))
        return sf_errf(SF_EIO, err, errlen, "cannot create %s: %s", dir, strerror(errno));
    return 0;
}

}  // namespace

extern "C" int sf_diffusion_write_toy(const char *dir, const char *clip_vocab, const char *clip_merges,
                                      int latent, int hook, uint64_t seed, char *err, size_t errlen) {
    int rc = make_dir(dir, err, errlen), vocab = 0, eot = 0;
    if (rc) return rc;
    const std::string d = dir;
    if ((rc = copy_tokenizer(d, clip_vocab, clip_merges, &vocab, &eot, err, errlen))) return rc;
    ToyShape s;
    s.latent = latent != 0;
    s.hook = hook != 0;
    s.channels = s.latent ? 4 : 3;
    s.sample_size = s.latent ? 8 : 16;
    s.image_size = 16;
    s.out_channels = s.latent ? s.channels : 2 * s.channels;
    // Stable Diffusion 1.x's scheduler settings.
    sf_ddim_config_t sc;
    sf_ddim_config_default(&sc);
    sc.beta_schedule = SF_BETA_SCALED_LINEAR;
    sc.beta_start = 0.00085f;
    sc.beta_end = 0.012f;
    sc.steps_offset = 1;
    sc.set_alpha_to_one = 0;
    sc.clip_sample = 0;
    try {
        torch::NoGradGuard ng;
        at::Generator g = at::detail::createCPUGenerator(seed);
        save_module(text_encoder(g, vocab, eot), d + "/text_encoder.pt");
        save_module(toy_unet(g, s, sc), d + "/unet.pt");
        if (s.latent) save_module(toy_decoder(g, s.channels), d + "/decoder.pt");
        if (s.hook) save_module(toy_hook(g, s.channels), d + "/guidance.pt");
    } catch (const c10::Error &ex) {
        return sf_errf(SF_ETORCH, err, errlen, "toy pipeline: %s", ex.what());
    } catch (const std::exception &ex) {
        return sf_errf(SF_ETORCH, err, errlen, "toy pipeline: %s", ex.what());
    }
    cJSON *root = base_json(s);
    add_schedule(root, sc, 8, 0.0, 1.5);
    return write_json(d, root, err, errlen);
}

extern "C" int sf_diffusion_write_const(const char *dir, const char *clip_vocab, const char *clip_merges,
                                        float value, int out_channels, char *err, size_t errlen) {
    if (out_channels < 1 || out_channels > 64)
        return sf_errf(SF_EINVAL, err, errlen, "const pipeline: out_channels %d outside 1..64", out_channels);
    int rc = make_dir(dir, err, errlen), vocab = 0, eot = 0;
    if (rc) return rc;
    const std::string d = dir;
    if ((rc = copy_tokenizer(d, clip_vocab, clip_merges, &vocab, &eot, err, errlen))) return rc;
    ToyShape s{3, 8, 8, out_channels, false, false};
    try {
        torch::NoGradGuard ng;
        at::Generator g = at::detail::createCPUGenerator(1);
        save_module(text_encoder(g, vocab, eot), d + "/text_encoder.pt");
        save_module(const_unet(value, out_channels), d + "/unet.pt");
    } catch (const c10::Error &ex) {
        return sf_errf(SF_ETORCH, err, errlen, "const pipeline: %s", ex.what());
    } catch (const std::exception &ex) {
        return sf_errf(SF_ETORCH, err, errlen, "const pipeline: %s", ex.what());
    }
    sf_ddim_config_t sc;
    sf_ddim_config_default(&sc);
    sc.clip_sample = 0;
    cJSON *root = base_json(s);
    add_schedule(root, sc, 10, 0.0, 1.0);
    return write_json(d, root, err, errlen);
}

// ---- DeepFloyd IF ----

namespace {

// Copies a T5 spiece.model into the pipeline; returns its vocabulary size
// and its end and pad ids.
int copy_spm(const std::string &dir, const char *model, int *vocab, int *eos, int *pad, char *err, size_t errlen) {
    if (!model) return sf_errf(SF_EINVAL, err, errlen, "toy IF pipeline: no spiece.model given");
    const sf_spm_opts_t so = {SF_SPM_T5, 0};
    sf_spm_t *t = nullptr;
    char sub[400];
    int rc = sf_spm_load(model, &so, &t, sub, sizeof sub);
    if (rc) return sf_errf(rc, err, errlen, "tokenizer: %s", sub);
    *vocab = sf_spm_vocab_size(t);
    *eos = sf_spm_eos_id(t);
    *pad = sf_spm_pad_id(t);
    sf_spm_free(&t);
    return copy_file(model, dir + "/spiece.model", err, errlen);
}

// IF's stage I scheduler (DeepFloyd/IF-I-XL-v1.0's scheduler_config.json),
// with stage II's sample_max_value where max_value says so.
sf_ddim_config_t if_schedule(float max_value) {
    sf_ddim_config_t c;
    sf_ddim_config_default(&c);
    c.beta_schedule = SF_BETA_SQUAREDCOS;
    c.sampler = SF_SAMPLER_DDPM;
    c.variance_type = SF_VAR_LEARNED_RANGE;
    c.thresholding = 1;
    c.dynamic_thresholding_ratio = 0.95f;
    c.sample_max_value = max_value;
    return c;
}

// Stage II: the exact noise prediction for data x0 ~ N(m, s^2 I), s = 0.1,
// around m = 0.8 img + 0.15 tanh(proj(sum of context)), where img is the
// upscaled image recovered (roughly) from its noised copy u:
// clamp(u / sqrt(abar_noise_level), -1, 1).  The variance channels are
// tanh(0.1 x).  Elementwise only, so batches do not change results.
torch::jit::Module toy_upscaler(at::Generator &g, const sf_ddim_config_t &sc) {
    auto m = new_module("Upscaler");
    m.register_parameter("proj", randn(g, {kToyWidth, 3}, 0.05), false);   // (D, 3)
    m.define(R"(
def forward(self, x: Tensor, t: Tensor, context: Tensor, noise_level: Tensor) -> Tensor:
    xf = x.float()
    z = xf[:, 0:3]
    u = xf[:, 3:6]
    )" + betas_source(sc) + R"(
    ab = torch.cumprod(1.0 - betas, 0)
    an = ab[noise_level].float().reshape(-1, 1, 1, 1)
    img = torch.clamp(u / an.sqrt(), -1.0, 1.0)
    cm = context.float().sum(1)
    cp = (cm.unsqueeze(2) * self.proj.float().unsqueeze(0)).sum(1)
    m = 0.8 * img + 0.15 * torch.tanh(cp).reshape(cp.size(0), -1, 1, 1)
    a = ab[t].float().reshape(-1, 1, 1, 1)
    s2 = 0.01
    k = a.sqrt() * s2 / (a * s2 + 1.0 - a)
    x0 = m + k * (z - a.sqrt() * m)
    eps = (z - a.sqrt() * x0) / (1.0 - a).sqrt()
    return torch.cat([eps, torch.tanh(0.1 * z)], 1).to(x.dtype)
)");
    return m;
}

// Returns `value` in the noise channels and `var` in the variance channels;
// `upscaler` gives it stage II's four arguments, and adds a quarter of the
// conditioning channels (the noised upscaled image) to the noise, so that
// a test sees what stage II was given.
torch::jit::Module const_if_unet(float value, float var, bool upscaler) {
    auto m = new_module(upscaler ? "ConstUpscaler" : "ConstIfUnet");
    m.register_parameter("value", torch::tensor(value), false);
    m.register_parameter("var", torch::tensor(var), false);
    m.define(std::string(R"(
def forward(self, x: Tensor, t: Tensor, context: Tensor)") + (upscaler ? ", noise_level: Tensor" : "") +
             R"() -> Tensor:
    y = torch.zeros([x.size(0), 3, x.size(2), x.size(3)], dtype=x.dtype, device=x.device)
    e = y + self.value
    if x.size(1) == 6:
        e = e + 0.25 * x[:, 3:6]
    return torch.cat([e, y + self.var], 1)
)");
    return m;
}

cJSON *if_json(int sample_size, int image_size) {
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "source", "sf-train toy-diffusion --if (random weights)");
    cJSON_AddStringToObject(root, "text_encoder", "text_encoder.pt");
    cJSON_AddStringToObject(root, "unet", "unet.pt");
    cJSON *t = cJSON_AddObjectToObject(root, "tokenizer");
    cJSON_AddStringToObject(t, "kind", "t5");
    cJSON_AddStringToObject(t, "model", "spiece.model");
    cJSON_AddNumberToObject(t, "context", 77);
    cJSON_AddNumberToObject(root, "channels", 3);
    cJSON_AddNumberToObject(root, "sample_size", sample_size);
    cJSON_AddNumberToObject(root, "image_size", image_size);
    return root;
}

void add_upscaler(cJSON *root, int size, const sf_ddim_config_t &sc, const sf_ddim_config_t &noise, int level,
                  int steps, double gs) {
    cJSON *u = cJSON_AddObjectToObject(root, "upscaler");
    cJSON_AddStringToObject(u, "unet", "unet_2.pt");
    cJSON_AddNumberToObject(u, "sample_size", size);
    schedule_json(u, "schedule", sc);
    schedule_json(u, "noise_schedule", noise);
    cJSON_AddNumberToObject(u, "noise_level", level);
    cJSON *d = cJSON_AddObjectToObject(u, "defaults");
    cJSON_AddNumberToObject(d, "steps", steps);
    cJSON_AddNumberToObject(d, "guidance_scale", gs);
}

}  // namespace

extern "C" int sf_diffusion_write_toy_if(const char *dir, const char *spm_model, int upscaler, uint64_t seed,
                                         char *err, size_t errlen) {
    int rc = make_dir(dir, err, errlen), vocab = 0, eos = 0, pad = 0;
    if (rc) return rc;
    const std::string d = dir;
    if ((rc = copy_spm(d, spm_model, &vocab, &eos, &pad, err, errlen))) return rc;
    const ToyShape s{3, 64, 64, 6, false, false};
    const sf_ddim_config_t s1 = if_schedule(1.5f), s2 = if_schedule(1.0f);
    try {
        torch::NoGradGuard ng;
        at::Generator g = at::detail::createCPUGenerator(seed);
        save_module(text_encoder(g, vocab, eos, pad), d + "/text_encoder.pt");
        save_module(toy_unet(g, s, s1), d + "/unet.pt");
        if (upscaler) save_module(toy_upscaler(g, s2), d + "/unet_2.pt");
    } catch (const c10::Error &ex) {
        return sf_errf(SF_ETORCH, err, errlen, "toy IF pipeline: %s", ex.what());
    } catch (const std::exception &ex) {
        return sf_errf(SF_ETORCH, err, errlen, "toy IF pipeline: %s", ex.what());
    }
    cJSON *root = if_json(64, upscaler ? 256 : 64);
    add_schedule(root, s1, 8, 0.0, 2.0);
    if (upscaler) add_upscaler(root, 256, s2, s2, 250, 4, 2.0);
    return write_json(d, root, err, errlen);
}

extern "C" int sf_diffusion_write_const_if(const char *dir, const char *spm_model, float value, float var,
                                           int upscaler, char *err, size_t errlen) {
    int rc = make_dir(dir, err, errlen), vocab = 0, eos = 0, pad = 0;
    if (rc) return rc;
    const std::string d = dir;
    if ((rc = copy_spm(d, spm_model, &vocab, &eos, &pad, err, errlen))) return rc;
    // Short linear schedules (20 timesteps) on which thresholding bites;
    // the noising schedule differs from stage II's so that a mix-up shows.
    sf_ddim_config_t s1 = if_schedule(1.5f), s2 = if_schedule(1.2f), noise;
    for (sf_ddim_config_t *c : {&s1, &s2}) {
        c->beta_schedule = SF_BETA_LINEAR;
        c->beta_start = 0.01f;
        c->beta_end = 0.2f;
        c->num_train_timesteps = 20;
        c->dynamic_thresholding_ratio = 0.9f;
    }
    sf_ddim_config_default(&noise);
    noise.beta_start = 0.02f;
    noise.beta_end = 0.3f;
    noise.num_train_timesteps = 20;
    try {
        torch::NoGradGuard ng;
        at::Generator g = at::detail::createCPUGenerator(1);
        save_module(text_encoder(g, vocab, eos, pad), d + "/text_encoder.pt");
        save_module(const_if_unet(value, var, false), d + "/unet.pt");
        if (upscaler) save_module(const_if_unet(value, var, true), d + "/unet_2.pt");
    } catch (const c10::Error &ex) {
        return sf_errf(SF_ETORCH, err, errlen, "const IF pipeline: %s", ex.what());
    } catch (const std::exception &ex) {
        return sf_errf(SF_ETORCH, err, errlen, "const IF pipeline: %s", ex.what());
    }
    cJSON *root = if_json(8, upscaler ? 20 : 8);
    add_schedule(root, s1, 5, 0.0, 1.0);
    if (upscaler) add_upscaler(root, 20, s2, noise, 6, 4, 1.0);
    return write_json(d, root, err, errlen);
}
