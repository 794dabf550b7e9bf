/* libFuzzer target: a safetensors file (common/formats/safetensors.c): header
 * length, JSON header, offsets and dtypes. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "common/formats/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    sf_st_t *st = NULL;
    char err[256];
    if (sf_st_parse(data, size, 1, &st, err, sizeof err) != 0) return 0;
    for (int i = 0; i < sf_st_count(st); i++) {
        const sf_st_tensor_t *t = sf_st_get(st, i);
        if (t->numel > 0 && t->numel < 4096) {
            float *f = malloc(sizeof(float) * (size_t)t->numel);
            if (f) sf_st_to_f32(t, f, (size_t)t->numel);
            free(f);
        }
    }
    sf_st_meta(st, "format");
    sf_st_free(&st);
    return 0;
}
