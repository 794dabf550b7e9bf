// runtime.cpp: process-wide set-up for the shim — threads, the BLAS check,
// devices, errors — and moving a module's parameters through safetensors.
#include "ml/shim_internal.hpp"

#include <dlfcn.h>
#include <malloc.h>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <thread>

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
