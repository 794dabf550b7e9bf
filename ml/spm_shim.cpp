// spm_shim.cpp: the public sf_spm_* functions (ml/sf_spm.h), which load
// their implementation, ml/spm.cpp built as libsfspm.so, on first use.
//
// Why a shared object of its own: Debian's libsentencepiece carries a copy
// of protobuf-lite (3.14) and exports its symbols, while libtorch needs the
// system's libprotobuf (3.21).  Linked into one program, whichever comes
// first in the symbol lookup order serves both: libprotobuf's start-up code
// then runs libsentencepiece's copy and crashes (SIGSEGV before main), or
// libsentencepiece's model parser runs against 3.21 and refuses ("compiled
// against version 3.14.0").  Loaded with dlopen(RTLD_LOCAL | RTLD_DEEPBIND),
// libsfspm.so and its libsentencepiece look up their own symbols first and
// add none to the program's, so each copy of protobuf serves its own.
//
// The shared object is found at $SF_SPM_LIB, else at ../lib/libsfspm.so
// beside the program's folder (the build's bin/, tests/ and bench/ sit
// next to its lib/).  AddressSanitizer refuses RTLD_DEEPBIND, so sanitizer
// builds have no SentencePiece: every load is SF_EUNSUPPORTED, saying so.
#include "ml/sf_spm.h"
#include "ml/spm_internal.h"

extern "C" {
#include "common/runtime/error.h"
}

#include <dlfcn.h>
#include <limits.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define SF_SPM_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define SF_SPM_SANITIZED 1
#endif
#endif

static std::once_flag once;
static const sf_spm__impl_t *impl;
static char why[PATH_MAX + 512];   // why impl is NULL

// The path of libsfspm.so, into out (size n); false when it cannot be told.
static bool lib_path(char *out, size_t n) {
    const char *env = getenv("SF_SPM_LIB");
    if (env && *env) return (size_t)snprintf(out, n, "%s", env) < n;
    char exe[PATH_MAX];
    ssize_t k = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (k <= 0) return false;
    exe[k] = 0;
    char *slash = strrchr(exe, '/');
    if (!slash) return false;
    *slash = 0;
    return (size_t)snprintf(out, n, "%s/../lib/libsfspm.so", exe) < n;
}

static void load_impl() {
#ifdef SF_SPM_SANITIZED
    snprintf(why, sizeof why, "SentencePiece is not available in sanitizer builds (libsfspm.so needs "
             "RTLD_DEEPBIND, which the sanitizers refuse)");
#else
    char path[PATH_MAX + 64];
    if (!lib_path(path, sizeof path)) {
        snprintf(why, sizeof why, "cannot tell where libsfspm.so is (set SF_SPM_LIB)");
        return;
    }
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND);
    if (!h) {
        snprintf(why, sizeof why, "cannot load the SentencePiece library (set SF_SPM_LIB): %s", dlerror());
        return;
    }
    typedef const sf_spm__impl_t *(*impl_fn)(void);
    impl_fn fn = (impl_fn)dlsym(h, "sf_spm__impl");
    const sf_spm__impl_t *t = fn ? fn() : nullptr;
    if (!t || t->abi != SF_SPM__ABI) {
        snprintf(why, sizeof why, "%s is not this build's SentencePiece library (%s)", path,
                 t ? "another version" : "no sf_spm__impl");
        dlclose(h);
        return;
    }
    impl = t;   // h stays open for the life of the process
#endif
}

// The implementation, or NULL with the reason in err.
static const sf_spm__impl_t *get(char *err, size_t errlen) {
    std::call_once(once, load_impl);
    if (!impl) sf_errf(SF_EUNSUPPORTED, err, errlen, "%s", why);
    return impl;
}

extern "C" int sf_spm_load(const char *path, const sf_spm_opts_t *opts, sf_spm_t **out, char *err, size_t errlen) {
    if (out) *out = nullptr;
    const sf_spm__impl_t *m = get(err, errlen);
    return m ? m->load(path, opts, out, err, errlen) : SF_EUNSUPPORTED;
}

extern "C" int sf_spm_load_mem(const void *buf, size_t len, const char *name, const sf_spm_opts_t *opts,
                               sf_spm_t **out, char *err, size_t errlen) {
    if (out) *out = nullptr;
    const sf_spm__impl_t *m = get(err, errlen);
    return m ? m->load_mem(buf, len, name, opts, out, err, errlen) : SF_EUNSUPPORTED;
}

extern "C" int sf_spm_train_llama(const char *const *sentences, size_t n, const char *input,
                                  const sf_spm_train_opts_t *o, uint8_t **model, size_t *len, char *err,
                                  size_t errlen) {
    if (model) *model = nullptr;
    if (len) *len = 0;
    const sf_spm__impl_t *m = get(err, errlen);
    return m ? m->train_llama(sentences, n, input, o, model, len, err, errlen) : SF_EUNSUPPORTED;
}

// A tokenizer exists only once the implementation is loaded, so the
// functions below need no check.
extern "C" void sf_spm_free(sf_spm_t **t) {
    if (t && *t) impl->free(t);
}

extern "C" int sf_spm_encode(sf_spm_t *t, const char *text, int max_length, int32_t *ids, int cap) {
    return t ? impl->encode(t, text, max_length, ids, cap) : SF_EINVAL;
}

extern "C" int sf_spm_decode(sf_spm_t *t, const int32_t *ids, int n, char **text) {
    return t ? impl->decode(t, ids, n, text) : SF_EINVAL;
}

extern "C" int sf_spm_vocab_size(const sf_spm_t *t) { return impl->vocab_size(t); }
extern "C" const char *sf_spm_id_to_piece(const sf_spm_t *t, int id) { return impl->id_to_piece(t, id); }
extern "C" int sf_spm_piece_to_id(const sf_spm_t *t, const char *piece) { return impl->piece_to_id(t, piece); }
extern "C" int sf_spm_unk_id(const sf_spm_t *t) { return impl->unk_id(t); }
extern "C" int sf_spm_bos_id(const sf_spm_t *t) { return impl->bos_id(t); }
extern "C" int sf_spm_eos_id(const sf_spm_t *t) { return impl->eos_id(t); }
extern "C" int sf_spm_pad_id(const sf_spm_t *t) { return impl->pad_id(t); }
extern "C" sf_spm_family_t sf_spm_family(const sf_spm_t *t) { return impl->family(t); }
extern "C" const char *sf_spm_errstr(const sf_spm_t *t) { return t ? impl->errstr(t) : ""; }
