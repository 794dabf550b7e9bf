// runtime.cpp: process-wide set-up for the shim — threads, the BLAS check,
// devices, inference dtypes, the CUDA cache, errors — and moving a module's
// parameters through safetensors.
#include "ml/shim_internal.hpp"

extern "C" {
#include "common/runtime/fileio.h"
}

#include <dlfcn.h>
#include <malloc.h>
#include <sys/stat.h>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <thread>

// The CUDA caching allocator's header exists in Debian's CPU-only libtorch
// too, but it needs the CUDA runtime's headers and, at link time, libc10_cuda.
// So it is used only where the CUDA headers and a CUDA build's generated
// macros are both on the include path: a CUDA libtorch, which the Makefile
// (LIBTORCH=) and tools/gpu_check.sh link with c10_cuda.  Elsewhere
// sf_ml_empty_cache is a no-op.
#if __has_include(<c10/cuda/CUDACachingAllocator.h>) && \
    __has_include(<c10/cuda/impl/cuda_cmake_macros.h>) && __has_include(<cuda_runtime_api.h>)
#include <c10/cuda/CUDACachingAllocator.h>
#define SF_ML_CUDA_ALLOCATOR 1
#endif

static thread_local char tl_errstr[512];

int sf_ml_fail(sf_ml_err_t *e, int code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tl_errstr, sizeof tl_errstr, fmt, ap);
    va_end(ap);
    if (e) {
        e->err = code;
        snprintf(e->errstr, sizeof e->errstr, "%s", tl_errstr);
    }
    return code;
}

void sf_ml_copy_err(char *buf, size_t n, const char *msg) {
    if (buf && n) snprintf(buf, n, "%s", msg);
}

extern "C" const char *sf_ml_errstr(void) { return tl_errstr; }

// ---- BLAS ----

static std::once_flag blas_once;
static char blas_path[1024] = "unknown";
static int blas_fast = -1;

// Finds the library that provides sgemm_ (what libtorch's CPU matmul calls
// on Debian) and tunes OpenBLAS's own thread pool, which otherwise starts one
// thread per core on top of torch's intra-op threads.
static void blas_probe() {
    void *sym = dlsym(RTLD_DEFAULT, "sgemm_");
    Dl_info info;
    if (sym && dladdr(sym, &info) && info.dli_fname) {
        char *real = realpath(info.dli_fname, nullptr);
        snprintf(blas_path, sizeof blas_path, "%s", real ? real : info.dli_fname);
        free(real);
        blas_fast = strstr(blas_path, "openblas") || strstr(blas_path, "mkl") ? 1 : 0;
    } else if (dlsym(RTLD_DEFAULT, "mkl_get_max_threads") || dlsym(RTLD_DEFAULT, "cblas_sgemm")) {
        // Official libtorch builds link MKL statically: no sgemm_ to find.
        snprintf(blas_path, sizeof blas_path, "(statically linked)");
        blas_fast = 1;
    }
}

static void blas_set_threads(int n) {
    typedef void (*set_fn)(int);
    set_fn f = (set_fn)dlsym(RTLD_DEFAULT, "openblas_set_num_threads");
    if (f) f(n);
}

extern "C" const char *sf_ml_blas_name(void) {
    std::call_once(blas_once, blas_probe);
    return blas_path;
}

extern "C" int sf_ml_blas_fast(void) {
    std::call_once(blas_once, blas_probe);
    return blas_fast;
}

extern "C" int sf_ml_init(const sf_ml_opts_t *opts) {
    SF_ML_TRY {
        static std::once_flag interop_once;
        static bool warned = false;
        int n = opts && opts->threads > 0 ? opts->threads
                                          : (int)std::max(1u, std::thread::hardware_concurrency());
        // Inter-op parallelism is not used by the shim (one model call at a
        // time per object); it may only be set before the first parallel op.
        std::call_once(interop_once, [opts] {
            try { at::set_num_interop_threads(1); } catch (...) {}
            if (!(opts && opts->malloc_default)) {
                mallopt(M_MMAP_MAX, 0);
                mallopt(M_TRIM_THRESHOLD, 1 << 30);
            }
        });
        at::set_num_threads(n);
        blas_set_threads(n);
        std::call_once(blas_once, blas_probe);
        if (blas_fast == 0 && !warned && !(opts && opts->quiet)) {
            warned = true;
            fprintf(stderr,
                    "sf-ml: warning: BLAS is %s, not OpenBLAS; libtorch will run some 50x slower "
                    "on CPU (apt-get install libopenblas0-pthread)\n", blas_path);
        }
        return 0;
    }
    SF_ML_CATCH(nullptr)
}

// ---- devices ----

extern "C" int sf_ml_cuda_count(void) {
    try {
        return torch::cuda::is_available() ? (int)torch::cuda::device_count() : 0;
    } catch (...) {
        return 0;
    }
}

int sf_ml_parse_device(const char *spec, torch::Device *out, sf_ml_err_t *e) {
    std::string s = spec && *spec ? spec : "cpu";
    if (s == "cpu") {
        *out = torch::Device(torch::kCPU);
        return 0;
    }
    int idx = 0;
    if (s == "cuda") {
        idx = 0;
    } else if (s.rfind("cuda:", 0) == 0 && s.size() > 5 &&
               s.find_first_not_of("0123456789", 5) == std::string::npos) {
        idx = atoi(s.c_str() + 5);
    } else {
        return sf_ml_fail(e, SF_EINVAL, "bad device '%s' (want cpu, cuda or cuda:N)", s.c_str());
    }
    int n = sf_ml_cuda_count();
    if (n == 0)
        return sf_ml_fail(e, SF_EUNSUPPORTED, "device '%s': this libtorch has no CUDA device",
                          s.c_str());
    if (idx >= n)
        return sf_ml_fail(e, SF_EUNSUPPORTED, "device '%s': only %d CUDA device(s)", s.c_str(), n);
    *out = torch::Device(torch::kCUDA, (c10::DeviceIndex)idx);
    return 0;
}

extern "C" int sf_ml_device_check(const char *device) {
    torch::Device d(torch::kCPU);
    return sf_ml_parse_device(device, &d, nullptr);
}

extern "C" void sf_ml_empty_cache(void) {
    try {
        if (!torch::cuda::is_available()) return;
#ifdef SF_ML_CUDA_ALLOCATOR
        c10::cuda::CUDACachingAllocator::emptyCache();
#endif
    } catch (...) {
        // Freeing a cache is advice; a failure leaves memory as it was.
    }
}

// ---- inference dtypes ----

int sf_ml_parse_dtype(const char *name, torch::ScalarType *out, sf_ml_err_t *e) {
    std::string s = name ? name : "";
    if (s == "fp32" || s == "float32") *out = torch::kFloat32;
    else if (s == "bf16" || s == "bfloat16") *out = torch::kBFloat16;
    else if (s == "fp16" || s == "float16") *out = torch::kHalf;
    else return sf_ml_fail(e, SF_EINVAL, "bad dtype '%s' (want fp32, bf16 or fp16)", s.c_str());
    return 0;
}

const char *sf_ml_dtype_name(torch::ScalarType t) {
    switch (t) {
    case torch::kFloat32: return "fp32";
    case torch::kBFloat16: return "bf16";
    case torch::kHalf: return "fp16";
    default: return "?";
    }
}

int sf_ml_dtype_probe(torch::Device dev, torch::ScalarType t, bool conv, sf_ml_err_t *e) {
    if (t == torch::kFloat32) return 0;
    try {
        torch::NoGradGuard ng;
        auto o = torch::TensorOptions().dtype(t).device(dev);
        auto x = torch::linspace(-1, 1, 2 * 3 * 8, torch::kFloat32).view({2, 3, 8}).to(o);
        auto w = torch::ones({8, 8}, o), b = torch::zeros({8}, o);
        auto y = torch::addmm(b, x.reshape({-1, 8}), w).view({2, 3, 8});        // Conv1D
        y = torch::nn::functional::linear(y, w, b);                             // Linear
        auto att = torch::softmax(torch::matmul(y.unsqueeze(1), y.unsqueeze(1).transpose(-2, -1)) +
                                  sf_ml_mask_to(torch::zeros({1, 1, 3, 3}), t).to(dev), -1);
        y = torch::matmul(att, y.unsqueeze(1)).squeeze(1);
        y = torch::layer_norm(y, {8}, w[0], b, 1e-5);
        y = torch::gelu(y, "tanh") + torch::gelu(y) + y * torch::sigmoid(1.702 * y);
        auto emb = torch::embedding(w, torch::tensor({0, 3}, torch::kLong).to(dev));
        y = torch::log_softmax(y.sum(1) + emb, -1).to(torch::kFloat32);
        if (conv) {
            auto img = torch::ones({1, 3, 4, 4}, o), k = torch::ones({8, 3, 2, 2}, o);
            y = y + torch::conv2d(img, k, torch::Tensor(), {2, 2}).flatten(1).mean(1, true).to(torch::kFloat32);
        }
        (void)y.sum().item<float>();
        return 0;
    } catch (const c10::Error &ex) {
        std::string why = ex.what_without_backtrace();
        size_t nl = why.find('\n');
        if (nl != std::string::npos) why.resize(nl);
        return sf_ml_fail(e, SF_EUNSUPPORTED,
                          "%s is not supported on %s by this libtorch (%s)%s", sf_ml_dtype_name(t),
                          dev.str().c_str(), why.c_str(),
                          t == torch::kHalf && dev.is_cpu() ? "; use bf16 on the CPU: fp16 is for CUDA"
                                                            : "");
    }
}

double sf_ml_mask_value(torch::ScalarType t) { return t == torch::kHalf ? -3e4 : -1e9; }

torch::Tensor sf_ml_mask_to(const torch::Tensor &mask, torch::ScalarType t) {
    if (mask.scalar_type() == t) return mask;
    return mask.clamp_min(sf_ml_mask_value(t)).to(t);
}

void sf_ml_require_fp32_training(const torch::Tensor &w, const char *what) {
    if (w.scalar_type() == torch::kFloat32 || !at::GradMode::is_enabled() || !w.requires_grad())
        return;
    throw sf_ml_error(SF_EUNSUPPORTED,
                      std::string("training needs fp32 weights, and this ") + what + " is " +
                          sf_ml_dtype_name(w.scalar_type()) +
                          " for inference (set its dtype to fp32 first, or train a float32 copy)");
}

// ---- model folders ----

static bool file_exists(const std::string &p) {
    struct stat sb;
    return stat(p.c_str(), &sb) == 0 && S_ISREG(sb.st_mode);
}

int sf_ml_need_dir(const char *dir, const char *hint, char *err, size_t errlen) {
    struct stat sb;
    if (stat(dir, &sb) != 0) return sf_errf(SF_EIO, err, errlen, "cannot open %s: %s", dir, strerror(errno));
    if (!S_ISDIR(sb.st_mode)) return sf_errf(SF_EINVAL, err, errlen, "%s is not a folder (%s)", dir, hint);
    return 0;
}

bool sf_ml_read_file(const char *path, std::string *out) {
    size_t len;
    char *text = sf_file_text(path, &len);
    if (!text) return false;
    out->assign(text, len);
    free(text);
    return true;
}

int sf_ml_weights_path(const std::string &dir, std::string *file, char *err, size_t errlen) {
    // model.safetensors, or a sharded checkpoint's index (sf_st_load reads its shards).
    std::vector<char> buf(dir.size() + 64);
    int rc = sf_st_folder_weights(dir.c_str(), buf.data(), buf.size());
    *file = buf.data();
    if (rc == 0) return 0;
    static const struct { const char *name, *what; } other[] = {
        {"pytorch_model.bin", "PyTorch pickle weights, which are not supported (.bin is not "
                              "read): convert them to model.safetensors"},
        {"tf_model.h5", "TensorFlow weights, which are not supported: convert them to "
                        "model.safetensors"},
        {"flax_model.msgpack", "Flax weights, which are not supported: convert them to "
                               "model.safetensors"},
    };
    for (auto &o : other)
        if (file_exists(dir + "/" + o.name))
            return sf_errf(SF_ENOTFOUND, err, errlen, "%s not found; %s/%s is %s", file->c_str(),
                           dir.c_str(), o.name, o.what);
    return sf_errf(SF_ENOTFOUND, err, errlen, "%s not found", file->c_str());
}

// ---- parameters through safetensors ----

int sf_ml_load_params(torch::nn::Module &mod, const sf_st_t *st, const char *prefix,
                      const std::vector<std::string> &optional, int *missing_optional,
                      sf_ml_err_t *e) {
    torch::NoGradGuard ng;
    int missing = 0;
    for (auto &kv : mod.named_parameters(true)) {
        const std::string &name = kv.key();
        torch::Tensor p = kv.value();
        const sf_st_tensor_t *t = sf_st_find(st, name.c_str());
        if (!t && prefix) t = sf_st_find(st, (std::string(prefix) + name).c_str());
        if (!t) {
            bool opt = false;
            for (auto &o : optional) opt |= name.rfind(o, 0) == 0;
            if (opt) { missing++; continue; }
            return sf_ml_fail(e, SF_ENOTFOUND, "checkpoint has no tensor '%s'", name.c_str());
        }
        bool same = t->ndim == p.dim();
        for (int i = 0; same && i < t->ndim; i++) same = t->shape[i] == p.size(i);
        if (!same) {
            std::string want = "[", got = "[";
            for (int i = 0; i < p.dim(); i++) want += (i ? "," : "") + std::to_string(p.size(i));
            for (int i = 0; i < t->ndim; i++) got += (i ? "," : "") + std::to_string(t->shape[i]);
            return sf_ml_fail(e, SF_EFORMAT, "tensor '%s': shape %s] in the file, model wants %s]",
                              name.c_str(), got.c_str(), want.c_str());
        }
        torch::Tensor host = torch::empty(p.sizes(), torch::kFloat32);
        int rc = sf_st_to_f32(t, host.data_ptr<float>(), (size_t)host.numel());
        if (rc) return sf_ml_fail(e, SF_EFORMAT, "tensor '%s': dtype %s is not floating",
                                  name.c_str(), sf_st_dtype_name(t->dtype));
        p.copy_(host);
    }
    if (missing_optional) *missing_optional = missing;
    return 0;
}

int sf_ml_params_writer(torch::nn::Module &mod, sf_st_writer_t *w,
                        std::vector<torch::Tensor> &keep, sf_ml_err_t *e) {
    for (auto &kv : mod.named_parameters(true)) {
        torch::Tensor t = kv.value().detach().to(torch::kCPU, torch::kFloat32).contiguous();
        keep.push_back(t);
        std::vector<int64_t> shape(t.sizes().begin(), t.sizes().end());
        int rc = sf_st_writer_add(w, kv.key().c_str(), SF_ST_F32, (int)shape.size(), shape.data(),
                                  t.data_ptr<float>(), (size_t)t.numel() * 4);
        if (rc) return sf_ml_fail(e, rc, "cannot add tensor '%s'", kv.key().c_str());
    }
    return 0;
}

void sf_ml_to_f32(const torch::Tensor &t, float *out) {
    torch::Tensor c = t.detach().to(torch::kCPU, torch::kFloat32).contiguous();
    memcpy(out, c.data_ptr<float>(), (size_t)c.numel() * sizeof(float));
}
