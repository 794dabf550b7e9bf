/* libFuzzer target: the BPE vocabulary files a worker loads — GPT-2's
 * encoder.json + vocab.bpe (common/text/bpe.c) and CLIP's vocab.json + merges.txt
 * (common/text/clip_bpe.c).  The input is the token -> id JSON, a 0x00 byte, then
 * the merge list (no 0x00: all of it is the JSON, and the merges are empty);
 * both loaders get the same pair.  A vocabulary that loads must tokenize: a
 * short text plus the start of the merge list (so that its merges apply) is
 * encoded; GPT-2's ids must decode to the same bytes, CLIP's must be ids of
 * its vocabulary between its start and end tokens. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/text/bpe.h"
#include "common/text/clip_bpe.h"

static const char sample[] = "A photo of a cat, isn't it? 42 caf\xc3\xa9 \xff ";

static void gpt2(const char *enc, size_t el, const char *voc, size_t vl, const char *text, size_t tl) {
    sf_bpe_t *b = NULL;
    char err[256];
    if (sf_bpe_load_mem(enc, el, voc, vl, &b, err, sizeof err) != 0) {
        if (b) abort(); /* a refused vocabulary leaves *out NULL */
        return;
    }
    int32_t *ids = NULL;
    size_t n = 0;
    /* A vocabulary without every byte, or with merges that make tokens it
     * lacks, cannot encode everything: an error then, never a bad id. */
    if (sf_bpe_encode(b, text, tl, &ids, &n) == 0) {
        char *back = NULL;
        size_t len = 0;
        if (sf_bpe_decode(b, ids, n, &back, &len) != 0 || len != tl || memcmp(back, text, tl) != 0) abort();
        free(back);
    }
    free(ids);
    sf_bpe_free(&b);
}

static void clip(const char *voc, size_t vl, const char *mer, size_t ml, const char *text) {
    sf_clip_bpe_t *b = NULL;
    char err[256];
    if (sf_clip_bpe_load_mem(voc, vl, mer, ml, &b, err, sizeof err) != 0) {
        if (b) abort();
        return;
    }
    int32_t ids[77];
    int n = sf_clip_bpe_encode(b, text, ids, 77);
    if (n < 2 || n > 77 || ids[0] != sf_clip_bpe_sot(b) || ids[n - 1] != sf_clip_bpe_eot(b)) abort();
    for (int i = 0; i < n; i++)
        if (!sf_clip_bpe_token(b, ids[i])) abort();
    sf_clip_bpe_free(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *vocab = (const char *)data, *nul = memchr(data, 0, size);
    size_t vl = nul ? (size_t)(nul - vocab) : size;
    const char *merges = nul ? nul + 1 : vocab + size;
    size_t ml = nul ? size - vl - 1 : 0;
    /* The text: the sample, then up to 64 bytes of the merge list (its
     * first line is a version comment in both formats, so skip it). */
    char text[sizeof sample + 64];
    const char *m = memchr(merges, '\n', ml);
    m = m ? m + 1 : merges + ml;
    size_t take = (size_t)(merges + ml - m) < 64 ? (size_t)(merges + ml - m) : 64;
    memcpy(text, sample, sizeof sample - 1);
    memcpy(text + sizeof sample - 1, m, take);
    size_t tl = sizeof sample - 1 + take;
    text[tl] = 0;
    gpt2(vocab, vl, merges, ml, text, tl);
    clip(vocab, vl, merges, ml, text); /* CLIP's text ends at a NUL: only the merges' bytes before one */
    return 0;
}
