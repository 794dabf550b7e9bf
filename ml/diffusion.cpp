// diffusion.cpp: the TorchScript diffusion backend — sf-diffusion.json, the
// DDIM schedule and step, classifier-free guidance, the guidance hook, and
// the sampling loop over user-exported modules.  The contract is written at
// the top of ml/sf_diffusion.h; the toy pipelines are in diffusion_toy.cpp.
#include "ml/shim_internal.hpp"
#include "ml/sf_diffusion.h"
#include "ml/sf_spm.h"

#include <torch/script.h>
#include <torch/csrc/jit/runtime/graph_executor.h>

#include <cjson/cJSON.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

extern "C" {
#include "common/text/clip_bpe.h"
}

// ---- the scheduler's maths ----

extern "C" void sf_ddim_config_default(sf_ddim_config_t *c) {
    c->beta_schedule = SF_BETA_LINEAR;
    c->beta_start = 0.0001f;
    c->beta_end = 0.02f;
    c->num_train_timesteps = 1000;
    c->steps_offset = 0;
    c->set_alpha_to_one = 1;
    c->prediction_type = SF_PRED_EPSILON;
    c->clip_sample = 1;
    c->clip_sample_range = 1.0f;
    c->sampler = SF_SAMPLER_DDIM;
    c->variance_type = SF_VAR_FIXED_SMALL;
    c->thresholding = 0;
    c->dynamic_thresholding_ratio = 0.995f;
    c->sample_max_value = 1.0f;
}

extern "C" int sf_ddim_config_check(const sf_ddim_config_t *c, int steps, char *err, size_t errlen) {
    if (!c) return SF_EINVAL;
    const int N = c->num_train_timesteps;
    if (N < 1 || N > 100000)
        return sf_errf(SF_EINVAL, err, errlen, "schedule: num_train_timesteps %d outside 1..100000", N);
    if (c->beta_schedule != SF_BETA_LINEAR && c->beta_schedule != SF_BETA_SCALED_LINEAR &&
        c->beta_schedule != SF_BETA_SQUAREDCOS)
        return sf_errf(SF_EINVAL, err, errlen, "schedule: unknown beta schedule %d", (int)c->beta_schedule);
    if (c->beta_schedule != SF_BETA_SQUAREDCOS &&
        (!(c->beta_start > 0 && c->beta_start < 1) || !(c->beta_end > 0 && c->beta_end < 1)))
        return sf_errf(SF_EINVAL, err, errlen, "schedule: beta_start %g and beta_end %g must lie in (0, 1)",
                       (double)c->beta_start, (double)c->beta_end);
    if (c->prediction_type != SF_PRED_EPSILON && c->prediction_type != SF_PRED_V)
        return sf_errf(SF_EINVAL, err, errlen, "schedule: unknown prediction type %d", (int)c->prediction_type);
    if (c->steps_offset < 0 || c->steps_offset >= N)
        return sf_errf(SF_EINVAL, err, errlen, "schedule: steps_offset %d outside 0..%d", c->steps_offset, N - 1);
    if (c->sampler != SF_SAMPLER_DDIM && c->sampler != SF_SAMPLER_DDPM)
        return sf_errf(SF_EINVAL, err, errlen, "schedule: unknown sampler %d", (int)c->sampler);
    if (c->variance_type != SF_VAR_FIXED_SMALL && c->variance_type != SF_VAR_LEARNED_RANGE)
        return sf_errf(SF_EINVAL, err, errlen, "schedule: unknown variance type %d", (int)c->variance_type);
    if (c->thresholding && !(c->dynamic_thresholding_ratio > 0 && c->dynamic_thresholding_ratio <= 1))
        return sf_errf(SF_EINVAL, err, errlen, "schedule: dynamic_thresholding_ratio %g outside (0, 1]",
                       (double)c->dynamic_thresholding_ratio);
    if (c->thresholding && !(c->sample_max_value >= 1))
        return sf_errf(SF_EINVAL, err, errlen, "schedule: sample_max_value %g must be >= 1",
                       (double)c->sample_max_value);
    if (c->clip_sample && !(c->clip_sample_range > 0))
        return sf_errf(SF_EINVAL, err, errlen, "schedule: clip_sample_range %g must be > 0",
                       (double)c->clip_sample_range);
    if (steps < 1 || steps > N)
        return sf_errf(SF_EINVAL, err, errlen, "steps %d outside 1..num_train_timesteps (%d)", steps, N);
    const int last = (steps - 1) * (N / steps) + c->steps_offset;
    if (last >= N)
        return sf_errf(SF_EINVAL, err, errlen,
                       "%d steps with steps_offset %d reach timestep %d, past num_train_timesteps %d",
                       steps, c->steps_offset, last, N);
    return 0;
}

// diffusers' betas_for_alpha_bar with the cosine alpha_bar (Nichol & Dhariwal).
static double cos_alpha_bar(double t) {
    const double v = std::cos((t + 0.008) / 1.008 * M_PI / 2);
    return v * v;
}

extern "C" int sf_ddim_schedule(const sf_ddim_config_t *c, int steps, int *timesteps,
                                float *alphas_cumprod) {
    int rc = sf_ddim_config_check(c, steps, nullptr, 0);
    if (rc) return rc;
    const int N = c->num_train_timesteps;
    if (alphas_cumprod) {
        double prod = 1;
        for (int i = 0; i < N; i++) {
            double beta;
            if (c->beta_schedule == SF_BETA_SQUAREDCOS) {
                beta = 1 - cos_alpha_bar((double)(i + 1) / N) / cos_alpha_bar((double)i / N);
                if (beta > 0.999) beta = 0.999;
            } else {
                const bool scaled = c->beta_schedule == SF_BETA_SCALED_LINEAR;
                const double a = scaled ? std::sqrt((double)c->beta_start) : c->beta_start;
                const double b = scaled ? std::sqrt((double)c->beta_end) : c->beta_end;
                beta = N == 1 ? a : a + (b - a) * i / (N - 1);
                if (scaled) beta *= beta;
            }
            prod *= 1 - beta;
            alphas_cumprod[i] = (float)prod;
        }
    }
    if (timesteps) {
        // "leading" spacing: every ratio-th step from 0, largest first.
        const int ratio = N / steps;
        for (int i = 0; i < steps; i++) timesteps[i] = (steps - 1 - i) * ratio + c->steps_offset;
    }
    return 0;
}

extern "C" float sf_ddim_alpha_prev(const sf_ddim_config_t *c, const float *alphas_cumprod, int t,
                                    int steps) {
    const int prev = t - c->num_train_timesteps / (steps > 0 ? steps : 1);
    if (prev >= 0) return alphas_cumprod[prev];
    return c->set_alpha_to_one ? 1.0f : alphas_cumprod[0];
}

extern "C" void sf_ddim_step_clip(const float *x, const float *eps, int n, float a_t, float a_prev,
                                  float eta, const float *noise, float clip_range, float *x_prev,
                                  float *x0_out) {
    // The per-step scalars in double, the per-element work in float.
    const double variance = (1.0 - a_prev) / (1.0 - a_t) * (1.0 - (double)a_t / a_prev);
    const double sd = eta > 0 && variance > 0 ? eta * std::sqrt(variance) : 0.0;
    double dir2 = 1.0 - a_prev - sd * sd;
    if (dir2 < 0) dir2 = 0;   // rounding when eta is 1 and a_prev is close to a_t
    const float sq_a = (float)std::sqrt((double)a_t), sq_1a = (float)std::sqrt(1.0 - a_t);
    const float sq_prev = (float)std::sqrt((double)a_prev), c_dir = (float)std::sqrt(dir2);
    const float std_t = (float)sd;
    for (int i = 0; i < n; i++) {
        const float e = eps[i];
        float x0 = (x[i] - sq_1a * e) / sq_a;
        if (clip_range > 0) x0 = x0 < -clip_range ? -clip_range : x0 > clip_range ? clip_range : x0;
        if (x0_out) x0_out[i] = x0;
        float v = sq_prev * x0 + c_dir * e;
        if (std_t > 0 && noise) v += std_t * noise[i];
        x_prev[i] = v;
    }
}

extern "C" void sf_ddim_step(const float *x, const float *eps, int n, float a_t, float a_prev,
                             float eta, const float *noise, float *x_prev, float *x0) {
    sf_ddim_step_clip(x, eps, n, a_t, a_prev, eta, noise, 0.0f, x_prev, x0);
}

extern "C" void sf_ddim_v_to_eps(const float *x, const float *v, int n, float a_t, float *eps) {
    const float sq_a = (float)std::sqrt((double)a_t), sq_1a = (float)std::sqrt(1.0 - a_t);
    for (int i = 0; i < n; i++) eps[i] = sq_a * v[i] + sq_1a * x[i];
}

extern "C" void sf_cfg_combine(const float *eps_uncond, const float *eps_cond, int n, float scale,
                               float *out) {
    for (int i = 0; i < n; i++) out[i] = eps_uncond[i] + scale * (eps_cond[i] - eps_uncond[i]);
}

// ---- DDPM and IF's additions ----

extern "C" float sf_ddpm_alpha_prev(const sf_ddim_config_t *c, const float *alphas_cumprod, int t, int steps) {
    const int prev = t - c->num_train_timesteps / (steps > 0 ? steps : 1);
    return prev >= 0 ? alphas_cumprod[prev] : 1.0f;
}

extern "C" void sf_pred_x0(const float *x, const float *eps, int n, float a_t, float *x0) {
    // The same float expression as sf_ddim_step_clip's, so that both paths
    // predict the same x0.
    const float sq_a = (float)std::sqrt((double)a_t), sq_1a = (float)std::sqrt(1.0 - a_t);
    for (int i = 0; i < n; i++) x0[i] = (x[i] - sq_1a * eps[i]) / sq_a;
}

extern "C" int sf_dynamic_threshold(float *x0, int n, float ratio, float max_value, float *s_out) {
    if (!x0 || n < 1 || !(ratio >= 0 && ratio <= 1) || !(max_value >= 1)) return SF_EINVAL;
    float *a = (float *)malloc((size_t)n * sizeof *a);
    if (!a) return SF_ENOMEM;
    for (int i = 0; i < n; i++) a[i] = std::fabs(x0[i]);
    // torch.quantile's "linear": the order statistics around position
    // ratio * (n - 1), found by selection rather than a full sort.
    const double pos = (double)ratio * (n - 1);
    const int lo = (int)std::floor(pos), hi = lo + 1 < n ? lo + 1 : lo;
    std::nth_element(a, a + lo, a + n);
    const float v_lo = a[lo];
    float v_hi = v_lo;
    if (hi != lo) v_hi = *std::min_element(a + lo + 1, a + n);
    free(a);
    double s = v_lo + (v_hi - (double)v_lo) * (pos - lo);
    s = s < 1 ? 1 : s > max_value ? max_value : s;
    const float sf = (float)s;
    for (int i = 0; i < n; i++) {
        const float v = x0[i] < -sf ? -sf : x0[i] > sf ? sf : x0[i];
        x0[i] = v / sf;
    }
    if (s_out) *s_out = sf;
    return 0;
}

extern "C" void sf_ddpm_step(const float *x, const float *x0, const float *v, int n, float a_t, float a_prev,
                             const float *noise, float *x_prev) {
    // The per-step scalars in double, the per-element work in float.
    const double beta = 1.0 - (double)a_t / a_prev, bp_t = 1.0 - a_t, bp_prev = 1.0 - a_prev;
    const float c_x0 = (float)(std::sqrt((double)a_prev) * beta / bp_t);
    const float c_x = (float)(std::sqrt(1.0 - beta) * bp_prev / bp_t);
    double var = bp_prev / bp_t * beta;
    if (var < 1e-20) var = 1e-20;
    const float sd = (float)std::sqrt(var);
    const float min_log = (float)std::log(var), max_log = (float)std::log(beta > 1e-20 ? beta : 1e-20);
    for (int i = 0; i < n; i++) {
        float y = c_x0 * x0[i] + c_x * x[i];
        if (noise) {
            if (v) {
                const float f = (v[i] + 1.0f) * 0.5f;
                y += std::exp(0.5f * (f * max_log + (1.0f - f) * min_log)) * noise[i];
            } else {
                y += sd * noise[i];
            }
        }
        x_prev[i] = y;
    }
}

extern "C" void sf_ddim_step_x0(const float *x0, const float *eps, int n, float a_t, float a_prev, float eta,
                                const float *noise, float *x_prev) {
    const double variance = (1.0 - a_prev) / (1.0 - a_t) * (1.0 - (double)a_t / a_prev);
    const double sd = eta > 0 && variance > 0 ? eta * std::sqrt(variance) : 0.0;
    double dir2 = 1.0 - a_prev - sd * sd;
    if (dir2 < 0) dir2 = 0;
    const float sq_prev = (float)std::sqrt((double)a_prev), c_dir = (float)std::sqrt(dir2), std_t = (float)sd;
    for (int i = 0; i < n; i++) {
        float v = sq_prev * x0[i] + c_dir * eps[i];
        if (std_t > 0 && noise) v += std_t * noise[i];
        x_prev[i] = v;
    }
}

extern "C" void sf_cfg_split(const float *out, int b, int cfg, int C, int cout, int hw, float scale, float *eps,
                             float *var) {
    const size_t plane = (size_t)C * hw, img = (size_t)cout * hw, half = cfg ? (size_t)b * img : 0;
    for (int i = 0; i < b; i++) {
        const float *cond = out + half + i * img;   // the conditional (or only) half
        if (cfg) sf_cfg_combine(out + i * img, cond, (int)plane, scale, eps + i * plane);
        else memcpy(eps + i * plane, cond, plane * sizeof(float));
        if (var) memcpy(var + i * plane, cond + plane, plane * sizeof(float));
    }
}

extern "C" void sf_upsample_bilinear(const float *in, int planes, int h, int w, int H, int W, float *out) {
    // align_corners: the corners map onto the corners, so the step between
    // samples is (h - 1) / (H - 1); a side of 1 has one sample everywhere.
    const float sy = H > 1 ? (float)(h - 1) / (float)(H - 1) : 0.0f;
    const float sx = W > 1 ? (float)(w - 1) / (float)(W - 1) : 0.0f;
    for (int p = 0; p < planes; p++) {
        const float *src = in + (size_t)p * h * w;
        float *dst = out + (size_t)p * H * W;
        for (int Y = 0; Y < H; Y++) {
            const float fy = sy * Y;
            int y0 = (int)fy;
            if (y0 > h - 1) y0 = h - 1;
            const int y1 = y0 + 1 < h ? y0 + 1 : y0;
            const float ly = fy - y0;
            for (int X = 0; X < W; X++) {
                const float fx = sx * X;
                int x0 = (int)fx;
                if (x0 > w - 1) x0 = w - 1;
                const int x1 = x0 + 1 < w ? x0 + 1 : x0;
                const float lx = fx - x0;
                const float top = (1 - lx) * src[y0 * w + x0] + lx * src[y0 * w + x1];
                const float bot = (1 - lx) * src[y1 * w + x0] + lx * src[y1 * w + x1];
                dst[(size_t)Y * W + X] = (1 - ly) * top + ly * bot;
            }
        }
    }
}

static void draw_noise(at::Generator &g, int n, float *out) {
    torch::Tensor t = torch::randn({n}, g, torch::kFloat32);
    memcpy(out, t.data_ptr<float>(), (size_t)n * sizeof(float));
}

extern "C" int sf_diffusion_noise(uint64_t seed, int per_draw, int draws, float *out) {
    SF_ML_TRY {
        if (per_draw < 1 || draws < 0 || !out) return sf_ml_fail(nullptr, SF_EINVAL, "noise: bad arguments");
        torch::NoGradGuard ng;
        at::Generator g = at::detail::createCPUGenerator(seed);
        for (int d = 0; d < draws; d++) draw_noise(g, per_draw, out + (size_t)d * per_draw);
        return 0;
    }
    SF_ML_CATCH(nullptr)
}

extern "C" int sf_diffusion_noise_sizes(uint64_t seed, const int *sizes, int draws, float *out) {
    SF_ML_TRY {
        if (draws < 0 || (draws > 0 && (!sizes || !out))) return sf_ml_fail(nullptr, SF_EINVAL, "noise: bad arguments");
        for (int d = 0; d < draws; d++)
            if (sizes[d] < 1) return sf_ml_fail(nullptr, SF_EINVAL, "noise: draw %d has size %d", d, sizes[d]);
        torch::NoGradGuard ng;
        at::Generator g = at::detail::createCPUGenerator(seed);
        for (int d = 0; d < draws; d++) {
            draw_noise(g, sizes[d], out);
            out += sizes[d];
        }
        return 0;
    }
    SF_ML_CATCH(nullptr)
}

// ---- sf-diffusion.json ----

struct SfDiffConfig {
    std::string text_encoder, unet, decoder, guidance, source;
    bool t5 = false;              // tokenizer kind "t5" (spm_model), else "clip"
    std::string vocab, merges, spm_model;
    int context = 77;
    bool pad_eot = true;
    int channels = 0, sample_size = 0, image_size = 0;
    float latent_scale = 1;
    sf_ddim_config_t sched{};
    int steps = 50;
    float eta = 0, guidance_scale = 7.5f;
    // The upscaler (IF's stage II), when up_unet is set.
    std::string up_unet;
    int up_size = 0, up_steps = 50, noise_level = 250;
    float up_guidance_scale = 4.0f;
    sf_ddim_config_t up_sched{}, noise_sched{};
};

namespace {

struct Json {
    const char *file;
    char *err;
    size_t errlen;

    int fail(int code, const char *fmt, ...) __attribute__((format(printf, 3, 4))) {
        char msg[400];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof msg, fmt, ap);
        va_end(ap);
        return sf_errf(code, err, errlen, "%s: %s", file, msg);
    }

    // Every key of obj must be one of keys (NULL-terminated).
    int only(const cJSON *obj, const char *where, const char *const *keys) {
        for (const cJSON *it = obj->child; it; it = it->next) {
            bool known = false;
            for (const char *const *k = keys; *k && !known; k++) known = !strcmp(it->string, *k);
            if (!known)
                return fail(SF_EINVAL, "unknown key '%s%s%s'", where, *where ? "." : "", it->string);
        }
        return 0;
    }

    int str(const cJSON *obj, const char *key, bool required, std::string *out) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
        if (!v || cJSON_IsNull(v)) {
            if (required) return fail(SF_EINVAL, "missing required key '%s'", key);
            return 0;
        }
        if (!cJSON_IsString(v) || !*v->valuestring)
            return fail(SF_EINVAL, "'%s' must be a non-empty string", key);
        *out = v->valuestring;
        return 0;
    }

    int num(const cJSON *obj, const char *key, bool required, bool integer, double lo, double hi,
            double *out) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
        if (!v) {
            if (required) return fail(SF_EINVAL, "missing required key '%s'", key);
            return 0;
        }
        if (!cJSON_IsNumber(v)) return fail(SF_EINVAL, "'%s' must be a number", key);
        const double d = v->valuedouble;
        if (integer && d != std::floor(d)) return fail(SF_EINVAL, "'%s' must be an integer (%g)", key, d);
        if (!(d >= lo && d <= hi)) return fail(SF_EINVAL, "'%s' = %g outside %g..%g", key, d, lo, hi);
        *out = d;
        return 0;
    }

    int integer(const cJSON *obj, const char *key, bool required, int lo, int hi, int *out) {
        double d = *out;
        int rc = num(obj, key, required, true, lo, hi, &d);
        *out = (int)d;
        return rc;
    }

    int real(const cJSON *obj, const char *key, bool required, double lo, double hi, float *out) {
        double d = *out;
        int rc = num(obj, key, required, false, lo, hi, &d);
        *out = (float)d;
        return rc;
    }

    int boolean(const cJSON *obj, const char *key, int *out) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
        if (!v) return 0;
        if (!cJSON_IsBool(v)) return fail(SF_EINVAL, "'%s' must be true or false", key);
        *out = cJSON_IsTrue(v) ? 1 : 0;
        return 0;
    }

    // A string key whose value must be one of names; *out is its index.
    int choice(const cJSON *obj, const char *key, const char *const *names, int *out) {
        std::string s;
        int rc = str(obj, key, false, &s);
        if (rc || s.empty()) return rc;
        for (int i = 0; names[i]; i++)
            if (s == names[i]) return *out = i, 0;
        std::string all;
        for (int i = 0; names[i]; i++) all += std::string(i ? ", " : "") + names[i];
        return fail(SF_EINVAL, "'%s' is '%s'; known: %s", key, s.c_str(), all.c_str());
    }

    int object(const cJSON *root, const char *key, bool required, const cJSON **out) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, key);
        *out = nullptr;
        if (!v) return required ? fail(SF_EINVAL, "missing required key '%s'", key) : 0;
        if (!cJSON_IsObject(v)) return fail(SF_EINVAL, "'%s' must be an object", key);
        *out = v;
        return 0;
    }
};

}  // namespace

// One schedule object (the top-level "schedule", and the upscaler's
// "schedule" and "noise_schedule"), over diffusers' defaults.
static int parse_schedule(Json &j, const cJSON *sched, const char *where, sf_ddim_config_t *c) {
    static const char *const keys[] = {"beta_schedule", "beta_start", "beta_end", "num_train_timesteps",
                                       "steps_offset", "set_alpha_to_one", "prediction_type", "clip_sample",
                                       "clip_sample_range", "sampler", "variance_type", "thresholding",
                                       "dynamic_thresholding_ratio", "sample_max_value", nullptr};
    static const char *const betas[] = {"linear", "scaled_linear", "squaredcos_cap_v2", nullptr};
    static const char *const preds[] = {"epsilon", "v_prediction", nullptr};
    static const char *const samplers[] = {"ddim", "ddpm", nullptr};
    static const char *const variances[] = {"fixed_small", "learned_range", nullptr};
    sf_ddim_config_default(c);
    int rc, beta = 0, pred = 0, sampler = 0, variance = 0;
    (rc = j.only(sched, where, keys)) || (rc = j.choice(sched, "beta_schedule", betas, &beta)) ||
        (rc = j.real(sched, "beta_start", false, 0, 1, &c->beta_start)) ||
        (rc = j.real(sched, "beta_end", false, 0, 1, &c->beta_end)) ||
        (rc = j.integer(sched, "num_train_timesteps", false, 1, 100000, &c->num_train_timesteps)) ||
        (rc = j.integer(sched, "steps_offset", false, 0, 100000, &c->steps_offset)) ||
        (rc = j.boolean(sched, "set_alpha_to_one", &c->set_alpha_to_one)) ||
        (rc = j.choice(sched, "prediction_type", preds, &pred)) ||
        (rc = j.boolean(sched, "clip_sample", &c->clip_sample)) ||
        (rc = j.real(sched, "clip_sample_range", false, 0, 1e6, &c->clip_sample_range)) ||
        (rc = j.choice(sched, "sampler", samplers, &sampler)) ||
        (rc = j.choice(sched, "variance_type", variances, &variance)) ||
        (rc = j.boolean(sched, "thresholding", &c->thresholding)) ||
        (rc = j.real(sched, "dynamic_thresholding_ratio", false, 0, 1, &c->dynamic_thresholding_ratio)) ||
        (rc = j.real(sched, "sample_max_value", false, 0, 1e6, &c->sample_max_value));
    c->beta_schedule = (sf_beta_schedule_t)beta;
    c->prediction_type = (sf_prediction_t)pred;
    c->sampler = (sf_sampler_t)sampler;
    c->variance_type = (sf_variance_t)variance;
    return rc;
}

// Keys of one tokenizer kind are errors under the other.
static int foreign_keys(Json &j, const cJSON *tok, const char *kind, const char *const *keys) {
    for (const char *const *k = keys; *k; k++)
        if (cJSON_GetObjectItemCaseSensitive(tok, *k))
            return j.fail(SF_EINVAL, "'tokenizer.%s' is not a key of tokenizer kind '%s'", *k, kind);
    return 0;
}

static int parse_upscaler(Json &j, const cJSON *up, SfDiffConfig *c) {
    static const char *const keys[] = {"unet", "sample_size", "schedule", "noise_schedule", "noise_level",
                                       "defaults", nullptr};
    static const char *const def_keys[] = {"steps", "guidance_scale", nullptr};
    const cJSON *sched, *noise, *defs;
    int rc;
    (rc = j.only(up, "upscaler", keys)) || (rc = j.str(up, "unet", true, &c->up_unet)) ||
        (rc = j.integer(up, "sample_size", true, 1, 4096, &c->up_size)) ||
        (rc = j.object(up, "schedule", true, &sched)) ||
        (rc = parse_schedule(j, sched, "upscaler.schedule", &c->up_sched)) ||
        (rc = j.object(up, "noise_schedule", false, &noise)) ||
        (rc = j.integer(up, "noise_level", false, 0, 100000, &c->noise_level)) ||
        (rc = j.object(up, "defaults", false, &defs));
    if (rc) return rc;
    if (noise) {
        if ((rc = parse_schedule(j, noise, "upscaler.noise_schedule", &c->noise_sched))) return rc;
    } else {
        c->noise_sched = c->up_sched;   // IF's image_noising_scheduler has the same betas
    }
    if (defs)
        (rc = j.only(defs, "upscaler.defaults", def_keys)) ||
            (rc = j.integer(defs, "steps", false, 1, 100000, &c->up_steps)) ||
            (rc = j.real(defs, "guidance_scale", false, 0, 1e4, &c->up_guidance_scale));
    if (rc) return rc;
    char sub[300];
    if ((rc = sf_ddim_config_check(&c->up_sched, c->up_steps, sub, sizeof sub)))
        return j.fail(rc, "upscaler.%s", sub);
    if ((rc = sf_ddim_config_check(&c->noise_sched, 1, sub, sizeof sub)))
        return j.fail(rc, "upscaler.noise_%s", sub);
    if (c->noise_level >= c->noise_sched.num_train_timesteps)
        return j.fail(SF_EINVAL, "upscaler.noise_level %d outside 0..%d (the noise schedule's timesteps)",
                      c->noise_level, c->noise_sched.num_train_timesteps - 1);
    if (c->up_size < c->sample_size)
        return j.fail(SF_EINVAL, "upscaler.sample_size %d is below sample_size %d", c->up_size, c->sample_size);
    if (c->up_size != c->image_size)
        return j.fail(SF_EINVAL, "with an upscaler image_size (%d) must be upscaler.sample_size (%d)",
                      c->image_size, c->up_size);
    if (!c->decoder.empty() || c->channels != 3)
        return j.fail(SF_EINVAL, "an upscaler works on pixels: channels must be 3 and there is no decoder");
    return 0;
}

static int parse_config(const char *path, const char *text, SfDiffConfig *c, char *err, size_t errlen) {
    Json j{path, err, errlen};
    cJSON *root = cJSON_Parse(text);
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return j.fail(SF_EFORMAT, "not a JSON object");
    }
    static const char *const top[] = {"text_encoder", "unet", "decoder", "guidance", "tokenizer",
                                      "channels", "sample_size", "image_size", "latent_scale",
                                      "schedule", "defaults", "upscaler", "source", nullptr};
    static const char *const tok_keys[] = {"kind", "vocab", "merges", "model", "context", "pad", nullptr};
    static const char *const clip_only[] = {"vocab", "merges", "pad", nullptr};
    static const char *const t5_only[] = {"model", nullptr};
    static const char *const def_keys[] = {"steps", "eta", "guidance_scale", nullptr};
    static const char *const kinds[] = {"clip", "t5", nullptr};
    static const char *const pads[] = {"eot", "zero", nullptr};
    const cJSON *tok, *sched, *defs, *up;
    int rc, kind = -1, pad = 0;
    (rc = j.only(root, "", top)) || (rc = j.str(root, "text_encoder", true, &c->text_encoder)) ||
        (rc = j.str(root, "unet", true, &c->unet)) || (rc = j.str(root, "decoder", false, &c->decoder)) ||
        (rc = j.str(root, "guidance", false, &c->guidance)) || (rc = j.str(root, "source", false, &c->source)) ||
        (rc = j.integer(root, "channels", true, 1, 64, &c->channels)) ||
        (rc = j.integer(root, "sample_size", true, 1, 4096, &c->sample_size)) ||
        (rc = j.integer(root, "image_size", true, 1, 8192, &c->image_size)) ||
        (rc = j.real(root, "latent_scale", false, 1e-6, 1e6, &c->latent_scale)) ||
        (rc = j.object(root, "tokenizer", true, &tok)) || (rc = j.only(tok, "tokenizer", tok_keys)) ||
        (rc = j.choice(tok, "kind", kinds, &kind));
    if (rc == 0 && kind < 0) rc = j.fail(SF_EINVAL, "missing required key 'tokenizer.kind'");
    if (rc == 0 && kind == 0)
        (rc = foreign_keys(j, tok, "clip", t5_only)) || (rc = j.str(tok, "vocab", true, &c->vocab)) ||
            (rc = j.str(tok, "merges", true, &c->merges)) || (rc = j.choice(tok, "pad", pads, &pad));
    if (rc == 0 && kind == 1)
        (rc = foreign_keys(j, tok, "t5", clip_only)) || (rc = j.str(tok, "model", true, &c->spm_model));
    if (rc == 0)
        (rc = j.integer(tok, "context", false, 2, 4096, &c->context)) ||
            (rc = j.object(root, "schedule", true, &sched)) ||
            (rc = parse_schedule(j, sched, "schedule", &c->sched)) ||
            (rc = j.object(root, "defaults", false, &defs)) || (rc = j.object(root, "upscaler", false, &up));
    if (rc == 0 && defs) {
        (rc = j.only(defs, "defaults", def_keys)) ||
            (rc = j.integer(defs, "steps", false, 1, 100000, &c->steps)) ||
            (rc = j.real(defs, "eta", false, 0, 1e3, &c->eta)) ||
            (rc = j.real(defs, "guidance_scale", false, 0, 1e4, &c->guidance_scale));
    }
    if (rc == 0 && up) rc = parse_upscaler(j, up, c);
    cJSON_Delete(root);
    if (rc) return rc;
    c->t5 = kind == 1;
    c->pad_eot = pad == 0;
    char sub[300];
    if ((rc = sf_ddim_config_check(&c->sched, c->steps, sub, sizeof sub)))
        return j.fail(rc, "%s", sub);
    if (c->decoder.empty() && c->channels != 3)
        return j.fail(SF_EINVAL, "a pipeline without a decoder makes images from its samples: channels "
                                 "must be 3, not %d", c->channels);
    if (c->decoder.empty() && c->up_unet.empty() && c->sample_size != c->image_size)
        return j.fail(SF_EINVAL, "a pipeline without a decoder needs sample_size (%d) == image_size (%d)",
                      c->sample_size, c->image_size);
    return 0;
}

// ---- the pipeline object ----

// One module of the contract: its file (for messages) and role.
struct SfDiffModule {
    torch::jit::Module mod;
    std::string path;
    const char *role = "";
    bool loaded = false;
};

struct sf_diffusion_s {
    SfDiffConfig cfg;
    std::string dir;
    torch::Device device{torch::kCPU};
    torch::ScalarType dtype = torch::kFloat32;
    SfDiffModule text, unet, decoder, hook, up;
    sf_clip_bpe_t *bpe = nullptr;   // tokenizer kind "clip"
    sf_spm_t *spm = nullptr;        // tokenizer kind "t5"
    std::vector<float> alphas_cumprod, up_ac, noise_ac;
    sf_ml_err_t e;
    ~sf_diffusion_s() {
        sf_clip_bpe_free(&bpe);
        sf_spm_free(&spm);
    }
};

static std::string shape_str(const torch::Tensor &t) {
    std::string s = "[";
    for (int64_t i = 0; i < t.dim(); i++) s += (i ? ", " : "") + std::to_string(t.size(i));
    return s + "]";
}

// The message of a TorchScript failure without its traceback: the last
// non-empty line ("RuntimeError: ..."), which is what says what went wrong.
static std::string last_line(const char *what) {
    std::string s = what ? what : "";
    while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
    size_t nl = s.rfind('\n');
    return nl == std::string::npos ? s : s.substr(nl + 1);
}

static std::string resolve(const std::string &dir, const std::string &rel) {
    return rel[0] == '/' ? rel : dir + "/" + rel;
}

// Loads one module of the contract, checking its forward's arity, and casts
// its floating-point parameters and buffers to dtype (integer buffers, such
// as CLIP's position ids, keep theirs: Module::to would cast them too).
static int load_module(sf_diffusion_s *m, const std::string &file, const char *role, int want_args,
                       const char *want_sig, SfDiffModule *out, char *err, size_t errlen) {
    out->path = resolve(m->dir, file);
    out->role = role;
    const char *p = out->path.c_str();
    struct stat st;
    if (stat(p, &st) != 0 || !S_ISREG(st.st_mode))
        return sf_errf(SF_ENOTFOUND, err, errlen, "%s: no such file (the %s module)", p, role);
    try {
        out->mod = torch::jit::load(out->path, m->device);
    } catch (const c10::Error &ex) {
        return sf_errf(SF_EFORMAT, err, errlen, "%s: not a TorchScript module (%s): %s", p, role,
                       last_line(ex.what_without_backtrace()).c_str());
    } catch (const std::exception &ex) {
        return sf_errf(SF_EFORMAT, err, errlen, "%s: not a TorchScript module (%s): %s", p, role,
                       last_line(ex.what()).c_str());
    }
    auto fwd = out->mod.find_method("forward");
    if (!fwd) return sf_errf(SF_EFORMAT, err, errlen, "%s: the %s module has no forward()", p, role);
    const int args = (int)fwd->function().getSchema().arguments().size() - 1;   // less self
    if (args != want_args)
        return sf_errf(SF_EFORMAT, err, errlen,
                       "%s: the %s module's forward takes %d argument(s); the contract wants %d: %s",
                       p, role, args, want_args, want_sig);
    out->mod.eval();
    if (m->dtype != torch::kFloat32) {
        torch::NoGradGuard ng;
        for (auto t : out->mod.parameters(true))
            if (t.is_floating_point()) t.set_data(t.to(m->dtype));
        for (auto t : out->mod.buffers(true))
            if (t.is_floating_point()) t.set_data(t.to(m->dtype));
    }
    out->loaded = true;
    return 0;
}

extern "C" void sf_diffusion_opts_default(sf_diffusion_opts_t *o) {
    o->steps = 0;
    o->eta = 0;
    o->guidance_scale = 0;
    o->hook_scale = 0;
    o->batch = 8;
    o->sr_steps = 0;
    o->sr_guidance_scale = 0;
    o->noise_level = 0;
}

extern "C" void sf_diffusion_opts_resolve(const sf_diffusion_t *m, const sf_diffusion_opts_t *o,
                                          sf_diffusion_opts_t *out) {
    sf_diffusion_opts_t d;
    sf_diffusion_opts_default(&d);
    if (!o) o = &d;
    *out = *o;
    if (out->steps <= 0) out->steps = m->cfg.steps;
    if (!(out->eta > 0)) out->eta = m->cfg.eta;
    if (!(out->guidance_scale > 0)) out->guidance_scale = m->cfg.guidance_scale;
    if (out->batch <= 0) out->batch = 8;
    if (m->up.loaded) {
        if (out->sr_steps <= 0) out->sr_steps = m->cfg.up_steps;
        if (!(out->sr_guidance_scale > 0)) out->sr_guidance_scale = m->cfg.up_guidance_scale;
        if (out->noise_level <= 0) out->noise_level = m->cfg.noise_level;
    } else {
        out->sr_steps = 0;
        out->sr_guidance_scale = 0;
        out->noise_level = 0;
    }
}

static int parse_dtype(const char *s, torch::ScalarType *out) {
    if (!s || !strcmp(s, "fp32")) *out = torch::kFloat32;
    else if (!strcmp(s, "bf16")) *out = torch::kBFloat16;
    else if (!strcmp(s, "fp16")) *out = torch::kFloat16;
    else return SF_EINVAL;
    return 0;
}

static int load_all(sf_diffusion_s *m, const char *device, const char *dtype, char *err, size_t errlen) {
    int rc;
    if (parse_dtype(dtype, &m->dtype))
        return sf_errf(SF_EINVAL, err, errlen, "unknown dtype '%s' (want fp32, fp16 or bf16)", dtype);
    if ((rc = sf_ml_parse_device(device, &m->device, &m->e))) {
        sf_ml_copy_err(err, errlen, m->e.errstr);
        return rc;
    }
    if (m->dtype == torch::kFloat16 && m->device.is_cpu())
        return sf_errf(SF_EUNSUPPORTED, err, errlen,
                       "dtype fp16 needs a CUDA device: libtorch has no half-precision convolutions "
                       "on the CPU (use bf16 or fp32)");
    const std::string json = m->dir + "/sf-diffusion.json";
    std::string text;
    if (!sf_ml_read_file(json.c_str(), &text)) {
        rc = errno == ENOENT ? SF_ENOTFOUND : SF_EIO;
        return sf_errf(rc, err, errlen, "%s: %s", json.c_str(),
                       rc == SF_ENOTFOUND ? "no such file (not a pipeline directory?)" : "cannot read it");
    }
    if ((rc = parse_config(json.c_str(), text.c_str(), &m->cfg, err, errlen))) return rc;
    SfDiffConfig &c = m->cfg;
    char sub[300];
    if (c.t5) {
        const sf_spm_opts_t so = {SF_SPM_T5, 0};
        if ((rc = sf_spm_load(resolve(m->dir, c.spm_model).c_str(), &so, &m->spm, sub, sizeof sub)))
            return sf_errf(rc, err, errlen, "tokenizer: %s", sub);
    } else {
        const std::string vocab = resolve(m->dir, c.vocab), merges = resolve(m->dir, c.merges);
        if ((rc = sf_clip_bpe_load(vocab.c_str(), merges.c_str(), &m->bpe, sub, sizeof sub)))
            return sf_errf(rc, err, errlen, "tokenizer: %s", sub);
    }
    m->alphas_cumprod.resize((size_t)c.sched.num_train_timesteps);
    if ((rc = sf_ddim_schedule(&c.sched, c.steps, nullptr, m->alphas_cumprod.data())))
        return sf_errf(rc, err, errlen, "%s: bad schedule", json.c_str());
    if (!c.up_unet.empty()) {
        m->up_ac.resize((size_t)c.up_sched.num_train_timesteps);
        m->noise_ac.resize((size_t)c.noise_sched.num_train_timesteps);
        if ((rc = sf_ddim_schedule(&c.up_sched, c.up_steps, nullptr, m->up_ac.data())) ||
            (rc = sf_ddim_schedule(&c.noise_sched, 1, nullptr, m->noise_ac.data())))
            return sf_errf(rc, err, errlen, "%s: bad upscaler schedule", json.c_str());
        if ((rc = load_module(m, c.up_unet, "upscaler unet", 4,
                              "forward(x: float[B,2C,S,S], t: int64[B], context: float[B,T,D], "
                              "noise_level: int64[B])",
                              &m->up, err, errlen)))
            return rc;
    }
    if ((rc = load_module(m, c.text_encoder, "text encoder", 1, "forward(tokens: int64[B,T])", &m->text,
                          err, errlen)) ||
        (rc = load_module(m, c.unet, "unet", 3,
                          "forward(x: float[B,C,H,W], t: int64[B], context: float[B,T,D])", &m->unet,
                          err, errlen)))
        return rc;
    if (!c.decoder.empty() &&
        (rc = load_module(m, c.decoder, "decoder", 1, "forward(z: float[B,C,h,w])", &m->decoder, err, errlen)))
        return rc;
    if (!c.guidance.empty() &&
        (rc = load_module(m, c.guidance, "guidance", 2, "forward(x0: float[B,C,H,W], t: int64[B])",
                          &m->hook, err, errlen)))
        return rc;
    return 0;
}

extern "C" int sf_diffusion_load(const char *dir, const char *device, const char *dtype,
                                 sf_diffusion_t **out, char *err, size_t errlen) {
    if (!out) return SF_EINVAL;
    *out = nullptr;
    if (!dir || !*dir) return sf_errf(SF_EINVAL, err, errlen, "no pipeline directory given");
    auto *m = new (std::nothrow) sf_diffusion_s();
    if (!m) return sf_errf(SF_ENOMEM, err, errlen, "out of memory");
    m->dir = dir;
    int rc;
    try {
        rc = load_all(m, device, dtype, err, errlen);
    } catch (const c10::Error &ex) {
        rc = sf_errf(SF_ETORCH, err, errlen, "%s: %s", dir, last_line(ex.what_without_backtrace()).c_str());
    } catch (const std::bad_alloc &) {
        rc = sf_errf(SF_ENOMEM, err, errlen, "%s: out of memory", dir);
    } catch (const std::exception &ex) {
        rc = sf_errf(SF_ETORCH, err, errlen, "%s: %s", dir, last_line(ex.what()).c_str());
    }
    if (rc) {
        delete m;
        return rc;
    }
    *out = m;
    return 0;
}

extern "C" void sf_diffusion_free(sf_diffusion_t **m) {
    if (!m || !*m) return;
    const bool cuda = (*m)->device.is_cuda();
    try {
        delete *m;
    } catch (...) {
    }
    *m = nullptr;
    // Hand the freed blocks back to the device (CUDA's caching allocator
    // keeps them otherwise), so that the next model finds the memory.
    if (cuda) sf_ml_empty_cache();
}

extern "C" int sf_diffusion_image_size(const sf_diffusion_t *m) { return m ? m->cfg.image_size : 0; }
extern "C" int sf_diffusion_has_hook(const sf_diffusion_t *m) { return m && m->hook.loaded ? 1 : 0; }
extern "C" int sf_diffusion_has_upscaler(const sf_diffusion_t *m) { return m && m->up.loaded ? 1 : 0; }
extern "C" const sf_ddim_config_t *sf_diffusion_upscaler_config(const sf_diffusion_t *m) {
    return m && m->up.loaded ? &m->cfg.up_sched : nullptr;
}
extern "C" const sf_ddim_config_t *sf_diffusion_noising_config(const sf_diffusion_t *m) {
    return m && m->up.loaded ? &m->cfg.noise_sched : nullptr;
}
extern "C" const sf_ddim_config_t *sf_diffusion_schedule_config(const sf_diffusion_t *m) {
    return m ? &m->cfg.sched : nullptr;
}
extern "C" const char *sf_diffusion_errstr(const sf_diffusion_t *m) { return m ? m->e.errstr : ""; }

// ---- sampling ----

// Runs a module's forward, turning a failure inside TorchScript or an
// output that is not a tensor into an error that names the module.
static int call(sf_diffusion_s *m, SfDiffModule &mod, std::vector<torch::jit::IValue> in, torch::Tensor *out) {
    torch::jit::IValue r;
    try {
        r = mod.mod.forward(std::move(in));
    } catch (const c10::Error &ex) {
        return sf_ml_fail(&m->e, SF_ETORCH, "%s (%s): forward failed: %s", mod.path.c_str(), mod.role,
                          last_line(ex.what_without_backtrace()).c_str());
    } catch (const std::bad_alloc &) {
        throw;
    } catch (const std::exception &ex) {
        return sf_ml_fail(&m->e, SF_ETORCH, "%s (%s): forward failed: %s", mod.path.c_str(), mod.role,
                          last_line(ex.what()).c_str());
    }
    if (!r.isTensor())
        return sf_ml_fail(&m->e, SF_EFORMAT, "%s (%s): forward returned a %s; the contract wants a Tensor",
                          mod.path.c_str(), mod.role, r.tagKind().c_str());
    *out = r.toTensor();
    return 0;
}

static int bad_shape(sf_diffusion_s *m, const SfDiffModule &mod, const torch::Tensor &got, const std::string &want) {
    return sf_ml_fail(&m->e, SF_EFORMAT, "%s (%s): forward returned %s %s; the contract wants %s",
                      mod.path.c_str(), mod.role, shape_str(got).c_str(),
                      c10::toString(got.scalar_type()), want.c_str());
}

// A prompt as IF's pipeline hands it to T5Tokenizer without clean_caption:
// text.lower().strip().  Only ASCII letters are lowered and ASCII
// whitespace stripped: the captions this system writes are ASCII, and
// Python's Unicode case mapping is not worth a table here.
static std::string t5_text(const char *prompt) {
    std::string s = prompt ? prompt : "";
    for (char &ch : s)
        if (ch >= 'A' && ch <= 'Z') ch = (char)(ch - 'A' + 'a');
    const char *ws = " \t\n\r\v\f";
    const size_t a = s.find_first_not_of(ws);
    if (a == std::string::npos) return "";
    return s.substr(a, s.find_last_not_of(ws) - a + 1);
}

// One prompt's row of T ids into p (T int64).
static int token_row(sf_diffusion_s *m, const char *prompt, int64_t *p) {
    const int T = m->cfg.context;
    std::vector<int32_t> ids((size_t)T);
    if (m->spm) {
        const int k = sf_spm_encode(m->spm, t5_text(prompt).c_str(), T, ids.data(), T);
        if (k < 0) return sf_ml_fail(&m->e, k, "cannot tokenize a prompt: %s", sf_spm_errstr(m->spm));
        // T5Tokenizer pads to max_length with its pad id, 0.
        for (int t = 0; t < T; t++) p[t] = t < k ? ids[(size_t)t] : 0;
        return 0;
    }
    const int k = sf_clip_bpe_encode(m->bpe, prompt ? prompt : "", ids.data(), T);
    if (k < 0) return sf_ml_fail(&m->e, k, "cannot tokenize a prompt");
    for (int t = 0; t < T; t++) p[t] = t < k || !m->cfg.pad_eot ? ids[(size_t)t] : sf_clip_bpe_eot(m->bpe);
    return 0;
}

extern "C" int sf_diffusion_tokenize(sf_diffusion_t *m, const char *prompt, int64_t *ids, int cap) {
    if (!m) return SF_EINVAL;
    SF_ML_TRY {
        if (!ids || cap < m->cfg.context)
            return sf_ml_fail(&m->e, SF_ERANGE, "tokenize: %d ids do not fit in %d", m->cfg.context, cap);
        int rc = token_row(m, prompt, ids);
        return rc ? rc : m->cfg.context;
    }
    SF_ML_CATCH(&m->e)
}

// Token embeddings (b, T, D) of b prompts, in the pipeline's dtype.
static int encode(sf_diffusion_s *m, const char *const *prompts, int b, torch::Tensor *ctx) {
    const int T = m->cfg.context;
    torch::Tensor tok = torch::zeros({b, T}, torch::kLong);
    auto *p = tok.data_ptr<int64_t>();
    for (int i = 0; i < b; i++) {
        int rc = token_row(m, prompts[i], p + (size_t)i * T);
        if (rc) return rc;
    }
    torch::Tensor out;
    int rc = call(m, m->text, {tok.to(m->device)}, &out);
    if (rc) return rc;
    if (out.dim() != 3 || out.size(0) != b || out.size(1) != T || out.size(2) < 1 || !out.is_floating_point())
        return bad_shape(m, m->text, out, "float[" + std::to_string(b) + ", " + std::to_string(T) + ", D]");
    *ctx = out.to(m->dtype);
    return 0;
}

static torch::Tensor to_device(sf_diffusion_s *m, const float *p, std::vector<int64_t> shape) {
    // A copy even where the dtype and device match: the module must not see
    // (or change) the sampler's own arrays.
    return sf_ml_from_f32(p, std::move(shape)).to(m->device, m->dtype, false, true);
}

static void copy_f32(const torch::Tensor &t, std::vector<float> *out) {
    torch::Tensor c = t.detach().to(torch::kCPU, torch::kFloat32).contiguous();
    out->resize((size_t)c.numel());
    memcpy(out->data(), c.data_ptr<float>(), out->size() * sizeof(float));
}

// Maps [-1, 1] to bytes as diffusers does ((v / 2 + 0.5) clamped, * 255,
// rounded), from (b, 3, S, S) to HWC.
static void to_rgb(const float *img, int b, int S, uint8_t *rgb) {
    for (int i = 0; i < b; i++)
        for (int y = 0; y < S; y++)
            for (int x = 0; x < S; x++)
                for (int ch = 0; ch < 3; ch++) {
                    float u = img[(((size_t)i * 3 + ch) * S + y) * S + x] * 0.5f + 0.5f;
                    u = u > 0 ? (u < 1 ? u : 1) : 0;   // NaN goes to 0
                    rgb[(((size_t)i * S + y) * S + x) * 3 + ch] = (uint8_t)std::lround(u * 255.0f);
                }
}

struct SfDiffRun {
    int steps;
    float eta, gs, hook_scale;
    bool cfg;
    std::vector<int> timesteps;
    torch::Tensor ctx_uncond;   // (1, T, D), with guidance in either stage
    // The upscaler's (steps 0 without one).
    int sr_steps = 0, noise_level = 0;
    float sr_gs = 1;
    bool sr_cfg = false;
    std::vector<int> sr_timesteps;
};

// What one stage of the cascade samples with.
struct SfStage {
    SfDiffModule *unet;
    const sf_ddim_config_t *sched;
    const float *ac;            // its alphas_cumprod
    int C, H;                   // the sample's channels and side
    int steps;
    float eta, gs, hook_scale;
    bool cfg;
    const std::vector<int> *timesteps;
    torch::Tensor ctx;          // (B, T, D): [uncond; cond] with guidance, else cond
    torch::Tensor cond_img;     // stage II: (b, C, H, W) noised upscaled image; undefined in stage I
    torch::Tensor noise_level;  // stage II: (B) int64
};

// x0 made ready for the step, image by image: dynamic thresholding when the
// schedule has it, else the clip_sample clamp.
static int process_x0(sf_diffusion_s *m, const sf_ddim_config_t &sc, float *x0, int b, int chw) {
    if (sc.thresholding) {
        for (int i = 0; i < b; i++) {
            int rc = sf_dynamic_threshold(x0 + (size_t)i * chw, chw, sc.dynamic_thresholding_ratio,
                                          sc.sample_max_value, nullptr);
            if (rc) return sf_ml_fail(&m->e, rc, "dynamic thresholding failed");
        }
        return 0;
    }
    const float clip = sc.clip_sample ? sc.clip_sample_range : 0.0f;
    if (clip > 0)
        for (size_t i = 0; i < (size_t)b * chw; i++) x0[i] = x0[i] < -clip ? -clip : x0[i] > clip ? clip : x0[i];
    return 0;
}

// Runs one stage's steps on x (b images of C x H x H, in place).
static int run_stage(sf_diffusion_s *m, const SfStage &st, int b, std::vector<at::Generator> &gens,
                     std::vector<float> &x, int *done, int total, void (*progress)(int, int, void *), void *user) {
    const sf_ddim_config_t &sc = *st.sched;
    const int C = st.C, H = st.H, W = st.H, chw = C * H * W, B = st.cfg ? 2 * b : b;
    const size_t N = (size_t)b * chw;
    const bool ddpm = sc.sampler == SF_SAMPLER_DDPM;
    const bool learned = ddpm && sc.variance_type == SF_VAR_LEARNED_RANGE;
    // SD's DDIM without thresholding keeps the one fused step it always had.
    const bool fused = !ddpm && !sc.thresholding;
    const int cv = learned ? 2 * C : C;   // the channels read back: noise [+ variance]
    const float clip = sc.clip_sample ? sc.clip_sample_range : 0.0f;
    const std::string want = "float[" + std::to_string(B) + ", C' >= " + std::to_string(cv) + ", " +
                             std::to_string(H) + ", " + std::to_string(W) + "]";
    std::vector<float> eps(N), var(learned ? N : 0), x0(N), noise, h, out_host;
    int rc;
    for (int s = 0; s < st.steps; s++) {
        const int t = (*st.timesteps)[(size_t)s];
        const float a_t = st.ac[t];
        const float a_prev = ddpm ? sf_ddpm_alpha_prev(&sc, st.ac, t, st.steps)
                                  : sf_ddim_alpha_prev(&sc, st.ac, t, st.steps);
        torch::Tensor xin = to_device(m, x.data(), {b, C, H, W});
        if (st.cond_img.defined()) xin = torch::cat({xin, st.cond_img}, 1);
        if (st.cfg) xin = torch::cat({xin, xin}, 0);
        torch::Tensor tt = torch::full({B}, (int64_t)t, torch::TensorOptions().dtype(torch::kLong).device(m->device));
        std::vector<torch::jit::IValue> in{xin, tt, st.ctx};
        if (st.noise_level.defined()) in.push_back(st.noise_level);
        torch::Tensor out;
        if ((rc = call(m, *st.unet, std::move(in), &out))) return rc;
        if (out.dim() != 4 || out.size(0) != B || out.size(1) < cv || out.size(2) != H || out.size(3) != W ||
            !out.is_floating_point())
            return bad_shape(m, *st.unet, out, want);
        copy_f32(out.narrow(1, 0, cv), &out_host);                   // (B, cv, H, W)
        sf_cfg_split(out_host.data(), b, st.cfg, C, cv, H * W, st.gs, eps.data(), learned ? var.data() : nullptr);
        if (sc.prediction_type == SF_PRED_V) sf_ddim_v_to_eps(x.data(), eps.data(), (int)N, a_t, eps.data());
        if (st.hook_scale != 0) {
            // The hook sees the x0 this step would predict, and bends eps.
            sf_pred_x0(x.data(), eps.data(), (int)N, a_t, x0.data());
            if ((rc = process_x0(m, sc, x0.data(), b, chw))) return rc;
            torch::Tensor hv;
            if ((rc = call(m, m->hook, {to_device(m, x0.data(), {b, C, H, W}), tt.narrow(0, 0, b)}, &hv)))
                return rc;
            if (hv.dim() != 4 || hv.size(0) != b || hv.size(1) != C || hv.size(2) != H || hv.size(3) != W ||
                !hv.is_floating_point())
                return bad_shape(m, m->hook, hv, "float[" + std::to_string(b) + ", " + std::to_string(C) +
                                                     ", " + std::to_string(H) + ", " + std::to_string(W) + "]");
            copy_f32(hv, &h);
            const float k = st.hook_scale * (float)std::sqrt(1.0 - a_t);
            for (size_t i = 0; i < N; i++) eps[i] += k * h[i];
        }
        // DDPM adds noise at every step but the last (t = 0), DDIM when eta > 0.
        const float *nz = nullptr;
        if (ddpm ? t > 0 : st.eta > 0) {
            noise.resize(N);
            for (int i = 0; i < b; i++) draw_noise(gens[(size_t)i], chw, noise.data() + (size_t)i * chw);
            nz = noise.data();
        }
        if (fused) {
            sf_ddim_step_clip(x.data(), eps.data(), (int)N, a_t, a_prev, st.eta, nz, clip, x.data(), nullptr);
        } else {
            sf_pred_x0(x.data(), eps.data(), (int)N, a_t, x0.data());
            if ((rc = process_x0(m, sc, x0.data(), b, chw))) return rc;
            if (ddpm)
                sf_ddpm_step(x.data(), x0.data(), learned ? var.data() : nullptr, (int)N, a_t, a_prev, nz, x.data());
            else
                sf_ddim_step_x0(x0.data(), eps.data(), (int)N, a_t, a_prev, st.eta, nz, x.data());
        }
        ++*done;
        if (progress) progress(*done, total, user);
    }
    return 0;
}

// Samples one batch of b images (prompts, seeds and rgb already offset).
static int sample_batch(sf_diffusion_s *m, const SfDiffRun &r, const char *const *prompts, int b,
                        const uint64_t *seeds, uint8_t *rgb, int *done, int total,
                        void (*progress)(int, int, void *), void *user) {
    const SfDiffConfig &c = m->cfg;
    const int C = c.channels, H = c.sample_size, W = c.sample_size, chw = C * H * W;
    torch::Tensor ctx;
    int rc = encode(m, prompts, b, &ctx);
    if (rc) return rc;
    const int T = (int)ctx.size(1), D = (int)ctx.size(2);
    torch::Tensor ctx_guided;
    if (r.cfg || r.sr_cfg) {
        if (r.ctx_uncond.size(2) != D)
            return sf_ml_fail(&m->e, SF_EFORMAT, "%s (text encoder): width %d for \"\" but %d for a prompt",
                              m->text.path.c_str(), (int)r.ctx_uncond.size(2), D);
        ctx_guided = torch::cat({r.ctx_uncond.expand({b, T, D}), ctx}, 0);   // (2b, T, D): uncond, cond
    }

    std::vector<at::Generator> gens;
    std::vector<float> x((size_t)b * chw), out_host;
    for (int i = 0; i < b; i++) {
        gens.push_back(at::detail::createCPUGenerator(seeds[i]));
        draw_noise(gens.back(), chw, x.data() + (size_t)i * chw);
    }
    SfStage st1{&m->unet, &c.sched, m->alphas_cumprod.data(), C, H, r.steps, r.eta, r.gs, r.hook_scale, r.cfg,
                &r.timesteps, r.cfg ? ctx_guided : ctx, torch::Tensor(), torch::Tensor()};
    if ((rc = run_stage(m, st1, b, gens, x, done, total, progress, user))) return rc;

    const int S = c.image_size;
    if (m->up.loaded) {
        // Stage II: stage I's images resized, noised to noise_level, and
        // each image's fresh noise drawn before the resized image's (IF's
        // order), from the same generator.
        const int chw2 = C * S * S;
        std::vector<float> up((size_t)b * chw2), x2((size_t)b * chw2), nz((size_t)chw2);
        sf_upsample_bilinear(x.data(), b * C, H, W, S, S, up.data());
        const double an = m->noise_ac[(size_t)r.noise_level];
        const float ka = (float)std::sqrt(an), kn = (float)std::sqrt(1.0 - an);
        for (int i = 0; i < b; i++) {
            draw_noise(gens[(size_t)i], chw2, x2.data() + (size_t)i * chw2);
            draw_noise(gens[(size_t)i], chw2, nz.data());
            float *u = up.data() + (size_t)i * chw2;
            for (int k = 0; k < chw2; k++) u[k] = ka * u[k] + kn * nz[(size_t)k];
        }
        const int B2 = r.sr_cfg ? 2 * b : b;
        SfStage st2{&m->up, &c.up_sched, m->up_ac.data(), C, S, r.sr_steps, r.eta, r.sr_gs, 0.0f, r.sr_cfg,
                    &r.sr_timesteps, r.sr_cfg ? ctx_guided : ctx, to_device(m, up.data(), {b, C, S, S}),
                    torch::full({B2}, (int64_t)r.noise_level,
                                torch::TensorOptions().dtype(torch::kLong).device(m->device))};
        if ((rc = run_stage(m, st2, b, gens, x2, done, total, progress, user))) return rc;
        to_rgb(x2.data(), b, S, rgb);
    } else if (m->decoder.loaded) {
        std::vector<float> z(x);
        for (float &v : z) v /= c.latent_scale;
        torch::Tensor img;
        if ((rc = call(m, m->decoder, {to_device(m, z.data(), {b, C, H, W})}, &img))) return rc;
        if (img.dim() != 4 || img.size(0) != b || img.size(1) != 3 || img.size(2) != S || img.size(3) != S ||
            !img.is_floating_point())
            return bad_shape(m, m->decoder, img,
                             "float[" + std::to_string(b) + ", 3, " + std::to_string(S) + ", " + std::to_string(S) + "]");
        copy_f32(img, &out_host);
        to_rgb(out_host.data(), b, S, rgb);
    } else {
        to_rgb(x.data(), b, S, rgb);
    }
    return 0;
}

extern "C" int sf_diffusion_generate(sf_diffusion_t *m, const char *const *prompts, int n,
                                     const uint64_t *seeds, const sf_diffusion_opts_t *o, uint8_t *rgb,
                                     void (*progress)(int step, int steps, void *user), void *user) {
    if (!m) return SF_EINVAL;
    SF_ML_TRY {
        if (n < 0 || (n > 0 && (!prompts || !seeds || !rgb)))
            return sf_ml_fail(&m->e, SF_EINVAL, "generate: bad arguments");
        if (n == 0) return 0;
        sf_diffusion_opts_t ro;
        sf_diffusion_opts_resolve(m, o, &ro);
        const SfDiffConfig &c = m->cfg;
        SfDiffRun r;
        r.steps = ro.steps;
        r.eta = ro.eta;
        r.gs = ro.guidance_scale;
        r.hook_scale = ro.hook_scale;
        r.cfg = r.gs != 1.0f;
        const int batch = ro.batch;
        if (!std::isfinite(r.eta) || !std::isfinite(r.gs) || !std::isfinite(r.hook_scale))
            return sf_ml_fail(&m->e, SF_EINVAL, "generate: eta, guidance_scale and hook_scale must be finite");
        if (r.hook_scale != 0 && !m->hook.loaded)
            return sf_ml_fail(&m->e, SF_EINVAL, "hook_scale %g needs a guidance module; %s/sf-diffusion.json has none",
                              (double)r.hook_scale, m->dir.c_str());
        char sub[300];
        int rc = sf_ddim_config_check(&c.sched, r.steps, sub, sizeof sub);
        if (rc) return sf_ml_fail(&m->e, rc, "%s", sub);
        r.timesteps.resize((size_t)r.steps);
        sf_ddim_schedule(&c.sched, r.steps, r.timesteps.data(), nullptr);
        if (m->up.loaded) {
            r.sr_steps = ro.sr_steps;
            r.sr_gs = ro.sr_guidance_scale;
            r.sr_cfg = r.sr_gs != 1.0f;
            r.noise_level = ro.noise_level;
            if (!std::isfinite(r.sr_gs))
                return sf_ml_fail(&m->e, SF_EINVAL, "generate: sr_guidance_scale must be finite");
            if (r.noise_level >= c.noise_sched.num_train_timesteps)
                return sf_ml_fail(&m->e, SF_EINVAL, "noise_level %d outside 0..%d", r.noise_level,
                                  c.noise_sched.num_train_timesteps - 1);
            if ((rc = sf_ddim_config_check(&c.up_sched, r.sr_steps, sub, sizeof sub)))
                return sf_ml_fail(&m->e, rc, "upscaler: %s", sub);
            r.sr_timesteps.resize((size_t)r.sr_steps);
            sf_ddim_schedule(&c.up_sched, r.sr_steps, r.sr_timesteps.data(), nullptr);
        }

        // No autograd, and the plain interpreter: the profiling executor
        // would re-specialise the graphs for each batch shape, and its
        // optimised graphs need not match the first calls bit for bit.
        c10::InferenceMode im;
        torch::jit::GraphOptimizerEnabledGuard no_opt(false);
        if (r.cfg || r.sr_cfg) {
            static const char *const empty[] = {""};
            if ((rc = encode(m, empty, 1, &r.ctx_uncond))) return rc;
        }
        const int chunks = (n + batch - 1) / batch, total = chunks * (r.steps + r.sr_steps);
        const size_t img_bytes = (size_t)c.image_size * c.image_size * 3;
        int done = 0;
        for (int k = 0; k < n; k += batch) {
            const int b = n - k < batch ? n - k : batch;
            if ((rc = sample_batch(m, r, prompts + k, b, seeds + k, rgb + (size_t)k * img_bytes, &done, total,
                                   progress, user)))
                return rc;
        }
        return 0;
    }
    SF_ML_CATCH(&m->e)
}
