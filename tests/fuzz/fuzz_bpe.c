/* libFuzzer target: GPT-2 byte-level BPE (common/text/bpe.c) on arbitrary bytes
 * with the real vocabulary ($SF_ROOT/data/gpt2): encode, decode, and the
 * round trip must give the bytes back. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/text/bpe.h"

static sf_bpe_t *bpe;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!bpe) {
        char err[256];
        if (sf_bpe_load_gpt2(NULL, &bpe, err, sizeof err) != 0) {
            fprintf(stderr, "fuzz_bpe: %s (set SF_ROOT)\n", err);
            abort();
        }
    }
    int32_t *ids = NULL;
    size_t n = 0;
    if (sf_bpe_encode(bpe, (const char *)data, size, &ids, &n) != 0) return 0;
    char *text = NULL;
    size_t len = 0;
    if (sf_bpe_decode(bpe, ids, n, &text, &len) == 0) {
        if (len != size || memcmp(text, data, size) != 0) abort(); /* the round trip is exact */
        free(text);
    }
    free(ids);
    return 0;
}
