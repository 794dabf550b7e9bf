// model_file.hpp: a model object's life as a file, written once for every
// model in ml/ (GPT-2, CLIP, the classifiers): building it from a config,
// fresh weights, loading a safetensors image into its named parameters,
// saving it (a file or bytes, its config in the metadata), casting it for
// inference, and freeing it.
//
// A model object (struct sf_<model>_s) holds `model` (a torch module
// holder), `device`, `opt` (its optimiser, empty until a training step) and
// `e`; a traits struct says what differs between models, starting from
// ModelFileDefaults:
//
//   struct GPT2File : ModelFileDefaults {
//       typedef sf_gpt2_s Obj;
//       typedef sf_gpt2_config_t Config;
//       static constexpr const char *what = "GPT-2";     // "cannot build GPT-2"
//       static constexpr const char *name = "GPT-2";     // "GPT-2 configuration"
//       static constexpr const char *meta_key = "sf_gpt2_config";
//       static constexpr const char *prefix = "transformer.";
//       static constexpr const char *optional = "v_head.";
//       static constexpr int build_error = SF_ENOMEM;
//       static constexpr bool conv = false;
//       static int check(const Config *c, char *err, size_t errlen);
//       static int parse(const char *json, Config *c, char *err, size_t errlen);
//       static char *to_json(const Config &c);           // malloc'd, or NULL
//       static void build(Obj *m, const Config &c);      // the module; may throw
//       static void init(Obj *m, uint64_t seed);         // fresh weights; may throw
//       static const Config &config(const Obj *m);
//       static torch::ScalarType dtype(const Obj *m);    // the weights' dtype
//   };
//
// A template uses only the members it names: a model without set_dtype (the
// classifiers) leaves out dtype.
//
// Parameters are read and written in the module's named_parameters order
// (sf_ml_load_params, sf_ml_params_writer), so a model's numerics depend
// only on its module, never on this plumbing.
#ifndef SF_ML_MODEL_FILE_HPP
#define SF_ML_MODEL_FILE_HPP

#include "ml/shim_internal.hpp"

#include <cstdlib>
#include <cstring>
#include <new>

// What most models share; a traits struct overrides what differs.
struct ModelFileDefaults {
    // Checkpoint names tried under this prefix when the plain name is missing.
    static constexpr const char *prefix = nullptr;
    // Parameters under this prefix may be missing from a file: they keep a
    // fresh model's values (seed 0).
    static constexpr const char *optional = nullptr;
    // What "cannot build <what>" returns.
    static constexpr int build_error = SF_ETORCH;
    // Whether set_dtype's probe tries conv2d (sf_ml_dtype_probe).
    static constexpr bool conv = true;
};

// Frees a model object and nulls the pointer; a null m or *m is a no-op.
template <class Obj>
void sf_model_free(Obj **m) {
    if (!m || !*m) return;
    delete *m;
    *m = nullptr;
}

// Parameters of m (0 for a null m).
template <class Obj>
int64_t sf_model_num_params(const Obj *m) {
    int64_t n = 0;
    if (m)
        for (auto &p : m->model->parameters()) n += p.numel();
    return n;
}

// A model object of config c on device, its weights as the module's
// constructors left them.  The config is checked (T::check) and the device
// parsed first; err gets the reason of a failure.
template <class T>
int sf_model_make(const typename T::Config *c, const char *device, typename T::Obj **out, char *err,
                  size_t errlen) {
    *out = nullptr;
    int rc = T::check(c, err, errlen);
    if (rc) return rc;
    sf_ml_err_t e;
    torch::Device dev(torch::kCPU);
    if ((rc = sf_ml_parse_device(device, &dev, &e)) != 0) {
        sf_ml_copy_err(err, errlen, e.errstr);
        return rc;
    }
    auto *m = new (std::nothrow) typename T::Obj();
    if (!m) return sf_errf(SF_ENOMEM, err, errlen, "out of memory");
    try {
        m->device = dev;
        T::build(m, *c);
    } catch (const std::exception &ex) {
        delete m;
        return sf_errf(T::build_error, err, errlen, "cannot build %s: %s", T::what, ex.what());
    }
    *out = m;
    return 0;
}

// sf_<model>_new: a model of config c with fresh weights from seed.
template <class T>
int sf_model_new(const typename T::Config *c, const char *device, uint64_t seed, typename T::Obj **out,
                 char *err, size_t errlen) {
    int rc = sf_model_make<T>(c, device, out, err, errlen);
    if (rc) return rc;
    try {
        T::init(*out, seed);
        torch::NoGradGuard ng;
        (*out)->model->to((*out)->device);
        return 0;
    } catch (const std::exception &ex) {
        sf_errf(SF_ETORCH, err, errlen, "cannot initialise %s: %s", T::what, ex.what());
    }
    sf_model_free(out);
    return SF_ETORCH;
}

// The config saved in st's metadata under T::meta_key; SF_ENOTFOUND when
// there is none.
template <class T>
int sf_model_st_config(const sf_st_t *st, typename T::Config *c, char *err, size_t errlen) {
    const char *js = sf_st_meta(st, T::meta_key);
    if (!js) return sf_errf(SF_ENOTFOUND, err, errlen, "no %s in the metadata", T::meta_key);
    return T::parse(js, c, err, errlen);
}

// st's tensors (borrowed) into m's parameters by name, then m onto its
// device.  Names are tried as they are, then under T::prefix; parameters
// under T::optional may be missing and keep their values.  A failure is in
// m->e, naming the tensor.
template <class T>
int sf_model_load_weights(typename T::Obj *m, const sf_st_t *st) {
    std::vector<std::string> optional;
    if (T::optional) optional.push_back(T::optional);
    int rc = sf_ml_load_params(*m->model, st, T::prefix, optional, nullptr, &m->e);
    if (rc) return rc;
    m->model->to(m->device);
    return 0;
}

// A model of config c with the weights of st (borrowed; the caller frees
// it).  Parameters a file may lack (T::optional) keep a fresh model's values
// of seed 0.  Failures say "<path>: <why>".
template <class T>
int sf_model_from_st(const char *path, const sf_st_t *st, const typename T::Config &c, const char *device,
                     typename T::Obj **out, char *err, size_t errlen) {
    int rc = sf_model_make<T>(&c, device, out, err, errlen);
    if (rc) return rc;
    typename T::Obj *m = *out;
    try {
        if (T::optional) T::init(m, 0);
        rc = sf_model_load_weights<T>(m, st);
    } catch (const std::exception &ex) {
        rc = sf_ml_fail(&m->e, SF_ETORCH, "%s", ex.what());
    }
    if (rc) {
        sf_errf(rc, err, errlen, "%s: %s", path, m->e.errstr);
        sf_model_free(out);
    }
    return rc;
}

// sf_<model>_load of a parsed file at path (takes ownership of st): config
// *given when not null, else the one in the file's metadata.  A file without
// one is SF_EFORMAT, "<path>: no <name> config in its metadata<why_none>"
// (why_none says what else was looked for).
template <class T>
int sf_model_load_st(const char *path, sf_st_t *st, const typename T::Config *given, const char *why_none,
                     const char *device, typename T::Obj **out, char *err, size_t errlen) {
    *out = nullptr;
    typename T::Config c;
    char sub[256];
    int rc = 0;
    if (given) c = *given;
    else if ((rc = sf_model_st_config<T>(st, &c, sub, sizeof sub)) == SF_ENOTFOUND)
        rc = sf_errf(SF_EFORMAT, err, errlen, "%s: no %s config in its metadata%s", path, T::name, why_none);
    else if (rc)
        rc = sf_errf(rc, err, errlen, "%s: %s", path, sub);
    if (rc == 0) rc = sf_model_from_st<T>(path, st, c, device, out, err, errlen);
    sf_st_free(&st);
    return rc;
}

// A safetensors writer over m's weights (F32) with its config under
// T::meta_key and "format": "pt".  `keep` holds the CPU copies the writer
// borrows and must outlive it.
template <class T>
int sf_model_writer(typename T::Obj *m, sf_st_writer_t **w, std::vector<torch::Tensor> &keep) {
    int rc = sf_st_writer_new(w);
    if (rc) return sf_ml_fail(&m->e, rc, "out of memory");
    char *js = T::to_json(T::config(m));
    rc = js ? sf_st_writer_meta(*w, T::meta_key, js) : SF_ENOMEM;
    free(js);
    if (rc == 0) rc = sf_st_writer_meta(*w, "format", "pt");
    try {
        if (rc == 0) rc = sf_ml_params_writer(*m->model, *w, keep, &m->e);
    } catch (...) {
        sf_st_writer_free(w);
        throw;
    }
    if (rc) sf_st_writer_free(w);
    return rc;
}

// sf_<model>_save: m's weights and config to path (written atomically by
// sf_st_writer_save).
template <class T>
int sf_model_save(typename T::Obj *m, const char *path) {
    SF_ML_TRY {
        sf_st_writer_t *w;
        std::vector<torch::Tensor> keep;
        int rc = sf_model_writer<T>(m, &w, keep);
        if (rc) return rc;
        rc = sf_st_writer_save(w, path);
        sf_st_writer_free(&w);
        if (rc) return sf_ml_fail(&m->e, rc, "cannot write %s", path);
        return 0;
    }
    SF_ML_CATCH(&m->e)
}

// sf_<model>_to_bytes: the image sf_model_save would write, in *buf
// (malloc'd, the caller frees).
template <class T>
int sf_model_to_bytes(typename T::Obj *m, uint8_t **buf, size_t *len) {
    SF_ML_TRY {
        sf_st_writer_t *w;
        std::vector<torch::Tensor> keep;
        int rc = sf_model_writer<T>(m, &w, keep);
        if (rc) return rc;
        rc = sf_st_writer_bytes(w, buf, len);
        sf_st_writer_free(&w);
        if (rc) return sf_ml_fail(&m->e, rc, "cannot serialise the weights");
        return 0;
    }
    SF_ML_CATCH(&m->e)
}

// sf_<model>_load_bytes: an image of sf_model_to_bytes into m, which must
// have the same config.  `what` names the bytes in messages ("policy
// bytes").
template <class T>
int sf_model_load_bytes(typename T::Obj *m, const void *buf, size_t len, const char *what) {
    SF_ML_TRY {
        sf_st_t *st;
        char sub[256];
        int rc = sf_st_parse(buf, len, 0, &st, sub, sizeof sub);
        if (rc) return sf_ml_fail(&m->e, rc, "%s: %s", what, sub);
        typename T::Config c;
        if ((rc = sf_model_st_config<T>(st, &c, sub, sizeof sub)) == 0 &&
            memcmp(&c, &T::config(m), sizeof c) != 0)
            rc = sf_ml_fail(&m->e, SF_EINVAL, "%s are for another %s configuration", what, T::name);
        else if (rc)
            sf_ml_fail(&m->e, rc, "%s: %s", what, sub);
        if (rc == 0) {
            try {
                rc = sf_model_load_weights<T>(m, st);
            } catch (...) {
                sf_st_free(&st);
                throw;
            }
        }
        sf_st_free(&st);
        return rc;
    }
    SF_ML_CATCH(&m->e)
}

// sf_<model>_from_bytes: a new model of the config in an image of
// sf_model_to_bytes, with its weights.
template <class T>
int sf_model_from_bytes(const void *buf, size_t len, const char *device, const char *what,
                        typename T::Obj **out, char *err, size_t errlen) {
    *out = nullptr;
    sf_st_t *st;
    int rc = sf_st_parse(buf, len, 0, &st, err, errlen);
    if (rc) return rc;
    typename T::Config c;
    rc = sf_model_st_config<T>(st, &c, err, errlen);
    sf_st_free(&st);
    if (rc == 0) rc = sf_model_make<T>(&c, device, out, err, errlen);
    if (rc == 0 && (rc = sf_model_load_bytes<T>(*out, buf, len, what)) != 0) {
        sf_ml_copy_err(err, errlen, (*out)->e.errstr);
        sf_model_free(out);
    }
    return rc;
}

// sf_<model>_set_dtype: casts the weights for inference (T::conv says
// whether the probe tries conv2d).  The optimiser's moments belong to
// float32 training of the weights as they were: a later training step
// starts a fresh optimiser.
template <class T>
int sf_model_set_dtype(typename T::Obj *m, const char *dtype) {
    if (!m) return SF_EINVAL;
    SF_ML_TRY {
        torch::ScalarType t;
        int rc = sf_ml_parse_dtype(dtype, &t, &m->e);
        if (rc) return rc;
        if (t == T::dtype(m)) return 0;
        if ((rc = sf_ml_dtype_probe(m->device, t, T::conv, &m->e)) != 0) return rc;
        torch::NoGradGuard ng;
        m->model->to(t);
        m->opt.reset();
        return 0;
    }
    SF_ML_CATCH(&m->e)
}

// sf_<model>_dtype: "fp32", "bf16" or "fp16"; "?" for a null m.
template <class T>
const char *sf_model_dtype(const typename T::Obj *m) {
    return m ? sf_ml_dtype_name(T::dtype(m)) : "?";
}

#endif
