/* spm_internal.h: what ml/spm_shim.cpp (the public sf_spm_* functions, in
 * libsfml.a) and ml/spm.cpp (their implementation, in the shared object
 * libsfspm.so) agree on: a table of the implementation's functions, which
 * the shared object hands out through its one exported symbol,
 * sf_spm__impl.  Each entry has the contract of the public function of the
 * same name in ml/sf_spm.h. */
#ifndef SF_SPM_INTERNAL_H
#define SF_SPM_INTERNAL_H

#include "ml/sf_spm.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Bumped whenever the table changes, so that a stale libsfspm.so is refused
 * rather than called through the wrong pointers. */
#define SF_SPM__ABI 2

typedef struct {
    int abi;   /* SF_SPM__ABI */
    int (*load)(const char *path, const sf_spm_opts_t *opts, sf_spm_t **out, char *err, size_t errlen);
    int (*load_mem)(const void *buf, size_t len, const char *name, const sf_spm_opts_t *opts, sf_spm_t **out,
                    char *err, size_t errlen);
    void (*free)(sf_spm_t **t);
    int (*encode)(sf_spm_t *t, const char *text, int max_length, int32_t *ids, int cap);
    int (*decode)(sf_spm_t *t, const int32_t *ids, int n, char **text);
    int (*vocab_size)(const sf_spm_t *t);
    const char *(*id_to_piece)(const sf_spm_t *t, int id);
    int (*piece_to_id)(const sf_spm_t *t, const char *piece);
    int (*unk_id)(const sf_spm_t *t);
    int (*bos_id)(const sf_spm_t *t);
    int (*eos_id)(const sf_spm_t *t);
    int (*pad_id)(const sf_spm_t *t);
    sf_spm_family_t (*family)(const sf_spm_t *t);
    const char *(*errstr)(const sf_spm_t *t);
    int (*train_llama)(const char *const *sentences, size_t n, const char *input, const sf_spm_train_opts_t *o,
                       uint8_t **model, size_t *len, char *err, size_t errlen);
} sf_spm__impl_t;

const sf_spm__impl_t *sf_spm__impl(void);

#ifdef __cplusplus
}
#endif

#endif
