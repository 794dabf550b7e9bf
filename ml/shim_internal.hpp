// shim_internal.hpp: what every model in ml/ shares.
//
// A new model (clip.cpp, convnext.cpp, ...) follows the same pattern as
// gpt2.cpp: an opaque C struct holding a torch module and an sf_ml_err_t,
// every entry point wrapped in SF_ML_TRY / SF_ML_CATCH, the device from
// sf_ml_parse_device, and weights moved in and out with sf_ml_load_params /
// sf_ml_params_writer (HF names, safetensors).
#ifndef SF_ML_SHIM_INTERNAL_HPP
#define SF_ML_SHIM_INTERNAL_HPP

#include <torch/torch.h>

#include <cstdarg>
#include <cstdio>
#include <string>
#include <vector>

extern "C" {
#include "common/error.h"
#include "common/safetensors.h"
}
#include "ml/sf_ml.h"

// The last failure of an object, as the house style wants (err, errstr).
struct sf_ml_err_t {
    int err = 0;
    char errstr[512] = "";
};

// Records a failure in e (may be null) and in the thread's last error, and
// returns code, so that a failure path is one line.
int sf_ml_fail(sf_ml_err_t *e, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

// Copies a failure message into a caller's (buf, n), which may be null.
void sf_ml_copy_err(char *buf, size_t n, const char *msg);

// Every C entry point that touches torch runs its body inside these, so that
// no C++ exception crosses into C:
//   SF_ML_TRY { ... return 0; } SF_ML_CATCH(&m->e)
#define SF_ML_TRY try
#define SF_ML_CATCH(errp)                                                            \
    catch (const c10::Error &ex_) {                                                  \
        return sf_ml_fail((errp), SF_ETORCH, "%s", ex_.what_without_backtrace());   \
    }                                                                                \
    catch (const std::bad_alloc &) {                                                 \
        return sf_ml_fail((errp), SF_ENOMEM, "out of memory");                      \
    }                                                                                \
    catch (const std::exception &ex_) {                                              \
        return sf_ml_fail((errp), SF_ETORCH, "%s", ex_.what());                     \
    }                                                                                \
    catch (...) {                                                                    \
        return sf_ml_fail((errp), SF_ETORCH, "unknown C++ exception");              \
    }

// Parses "cpu", "cuda", "cuda:N" into a device, checking that it exists.
int sf_ml_parse_device(const char *spec, torch::Device *out, sf_ml_err_t *e);

// Loads every parameter of `mod` from st by its name (optionally found
// under `prefix`, e.g. "transformer."), converting F16/BF16/F64 to the
// parameter's dtype and checking shapes.  Names listed in `optional` may be
// missing (they keep their values); *missing_optional counts them.
int sf_ml_load_params(torch::nn::Module &mod, const sf_st_t *st, const char *prefix,
                      const std::vector<std::string> &optional, int *missing_optional,
                      sf_ml_err_t *e);

// Writes every parameter of `mod` into a safetensors writer, as F32.  The
// tensors it borrows live in `keep` (CPU contiguous copies where needed),
// which must outlive the writer's output call.
int sf_ml_params_writer(torch::nn::Module &mod, sf_st_writer_t *w,
                        std::vector<torch::Tensor> &keep, sf_ml_err_t *e);

// A C array view as a CPU tensor (no copy; the array must outlive it).
inline torch::Tensor sf_ml_from_f32(const float *p, std::vector<int64_t> shape) {
    return torch::from_blob(const_cast<float *>(p), shape, torch::kFloat32);
}

// Copies a tensor (any device) into a float array of t.numel() elements.
void sf_ml_to_f32(const torch::Tensor &t, float *out);

#endif
