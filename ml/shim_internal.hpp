// shim_internal.hpp: what every model in ml/ shares.
//
// A new model follows the pattern of gpt2.cpp, clip.cpp and classifier.cpp:
// an opaque C struct holding a torch module and an sf_ml_err_t, every entry
// point wrapped in SF_ML_TRY / SF_ML_CATCH, and its new / load / save /
// to_bytes / set_dtype from the templates of ml/model_file.hpp, which move
// the weights with sf_ml_load_params / sf_ml_params_writer (HF names,
// safetensors) and take the device from sf_ml_parse_device.
#ifndef SF_ML_SHIM_INTERNAL_HPP
#define SF_ML_SHIM_INTERNAL_HPP

#include <torch/torch.h>

#include <cstdarg>
#include <cstdio>
#include <stdexcept>
#include <string>
#include <vector>

extern "C" {
#include "common/runtime/error.h"
#include "common/formats/safetensors.h"
}
#include "common/runtime/hash.h"
#include "ml/sf_ml.h"

// splitmix64 is common/runtime/hash.h's sf_splitmix64, the same everywhere
// (the sampler's draws, the SFT loop's batches).

// A uniform double in [0, 1) from the splitmix64 state s: a sampler's draw.
inline double sf_ml_uniform01(uint64_t *s) { return (double)(sf_splitmix64(s) >> 11) * 0x1.0p-53; }

// Draws one id from a row of V probabilities (softmax of the logits over
// the temperature), after HF's top-k and top-p filtering, with the uniform
// u; every language model's sampler (ml/sample.cpp).  idx is scratch space.
int sf_ml_draw(const float *p, int V, int top_k, float top_p, double u, std::vector<int> &idx);


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

// A failure with its own SF_E… code, thrown from deep inside a model (e.g.
// a training step reaching a bf16 model's forward) so that the entry point's
// SF_ML_CATCH returns that code rather than SF_ETORCH.
struct sf_ml_error : std::runtime_error {
    int code;
    sf_ml_error(int c, const std::string &msg) : std::runtime_error(msg), code(c) {}
};

// Every C entry point that touches torch runs its body inside these, so that
// no C++ exception crosses into C:
//   SF_ML_TRY { ... return 0; } SF_ML_CATCH(&m->e)
#define SF_ML_TRY try
#define SF_ML_CATCH(errp)                                                            \
    catch (const sf_ml_error &ex_) {                                                 \
        return sf_ml_fail((errp), ex_.code, "%s", ex_.what());                      \
    }                                                                                \
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

// ---- inference dtypes ----
//
// A model's weights are float32 unless sf_<model>_set_dtype casts them to
// bf16 or fp16 for inference; tensors that a forward pass creates (masks,
// attention biases, KV caches) follow the weights' dtype, and what crosses
// the C boundary stays float32.  Training steps need float32 weights.

// "fp32" / "bf16" / "fp16" (also "float32", "bfloat16", "float16") into a
// dtype; SF_EINVAL for anything else.
int sf_ml_parse_dtype(const char *name, torch::ScalarType *out, sf_ml_err_t *e);

// The short name of a dtype ("fp32", "bf16", "fp16"; "?" for others).
const char *sf_ml_dtype_name(torch::ScalarType t);

// Runs the operations the models use (addmm, batched matmul, softmax,
// layer_norm, both GELUs, sigmoid, embedding, and conv2d when `conv`) on tiny
// tensors of dtype t on dev, so that a dtype the device's kernels lack (fp16
// on the CPU with older libtorch) is a clean SF_EUNSUPPORTED before any
// weights are cast, not an exception in the middle of a job.
int sf_ml_dtype_probe(torch::Device dev, torch::ScalarType t, bool conv, sf_ml_err_t *e);

// The additive attention mask of dtype t: -1e9 for float32 and bf16 (same
// exponent range), -3e4 for fp16 (whose largest finite value is 65504, so
// -1e9 would be -inf, and a fully masked padding row would turn into NaN).
double sf_ml_mask_value(torch::ScalarType t);

// An additive mask built in float32 (0 or -1e9) in dtype t, clamped to
// sf_ml_mask_value(t) first.
torch::Tensor sf_ml_mask_to(const torch::Tensor &mask, torch::ScalarType t);

// Throws sf_ml_error(SF_EUNSUPPORTED) when `w`, a weight of a model named
// `what`, is not float32 while autograd records (i.e. in a training step):
// optimisers and losses here are float32 and bf16 training needs a float32
// master copy that the shim does not keep.
void sf_ml_require_fp32_training(const torch::Tensor &w, const char *what);

// 0 when dir is a folder; else SF_EIO "cannot open DIR: why", or SF_EINVAL
// "DIR is not a folder (HINT)": what a loader of model folders says first.
int sf_ml_need_dir(const char *dir, const char *hint, char *err, size_t errlen);

// Reads a whole (small) file, e.g. a config.json, with common/runtime's
// sf_file_text; false when it cannot, errno saying why.
bool sf_ml_read_file(const char *path, std::string *out);

// The weights file of an HF-style model folder: dir/model.safetensors, or
// else dir/model.safetensors.index.json (a sharded checkpoint; sf_st_load
// reads its shards).  When neither is there, SF_ENOTFOUND names the path and
// what the folder holds instead (pytorch_model.bin, TF or Flax weights),
// since only safetensors are read.
int sf_ml_weights_path(const std::string &dir, std::string *file, char *err, size_t errlen);

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
