/* bpe.h: GPT-2's byte-level BPE tokenizer, in C.
 *
 * Reads the vocabulary GPT-2 ships with (encoder.json: token -> id, and
 * vocab.bpe: the merge list, one "a b" pair a line in rank order) and encodes
 * UTF-8 text into the same ids as OpenAI's reference encoder: the same
 * pre-tokenizer regex (contractions, letter runs, digit runs, punctuation
 * runs, whitespace with the "all but the last space" rule), the same
 * lowest-rank-first merges.  Decoding concatenates the tokens' bytes, so
 * encode followed by decode gives the input back byte for byte, including
 * invalid UTF-8.
 *
 * "<|endoftext|>" in the input is ordinary text, as in the reference encoder;
 * the end-of-text id (50256 for GPT-2) is added by callers who want it.
 */
#ifndef SF_BPE_H
#define SF_BPE_H

#include <stddef.h>
#include <stdint.h>

typedef struct sf_bpe_s sf_bpe_t;

/* Loads encoder.json and vocab.bpe.  On success *out is a tokenizer the
 * caller frees with sf_bpe_free().  A missing, truncated or inconsistent file
 * gives SF_EIO / SF_EFORMAT with a message in err. */
int sf_bpe_load(const char *encoder_json, const char *vocab_bpe, sf_bpe_t **out,
                char *err, size_t errlen);

/* The same from the two files' contents in memory (borrowed; not
 * NUL-terminated): encoder_json[0..encoder_len), vocab_bpe[0..vocab_len).
 * Messages name them "encoder.json" and "vocab.bpe". */
int sf_bpe_load_mem(const char *encoder_json, size_t encoder_len, const char *vocab_bpe, size_t vocab_len,
                    sf_bpe_t **out, char *err, size_t errlen);

/* Loads dir/encoder.json and dir/vocab.bpe (a gpt2_vocab folder). */
int sf_bpe_load_dir(const char *dir, sf_bpe_t **out, char *err, size_t errlen);

/* Loads data/gpt2/{encoder.json,vocab.bpe} under `root` ($SF_ROOT or "."
 * when root is NULL). */
int sf_bpe_load_gpt2(const char *root, sf_bpe_t **out, char *err, size_t errlen);

/* Frees *b and sets it to NULL. */
void sf_bpe_free(sf_bpe_t **b);

/* Encodes len bytes of text.  On success *ids is a malloc'd array of *n ids
 * that the caller frees (NULL when *n is 0).  Thread-safe: the tokenizer is
 * only read. */
int sf_bpe_encode(const sf_bpe_t *b, const char *text, size_t len, int32_t **ids, size_t *n);

/* Decodes n ids into a malloc'd NUL-terminated string of *len bytes (the
 * caller frees it).  An id outside the vocabulary gives SF_EINVAL. */
int sf_bpe_decode(const sf_bpe_t *b, const int32_t *ids, size_t n, char **text, size_t *len);

/* The bytes of one token (borrowed, valid for the life of b), or NULL. */
const uint8_t *sf_bpe_token_bytes(const sf_bpe_t *b, int32_t id, size_t *len);

/* Number of ids (50257 for GPT-2) and the end-of-text id (50256), or -1
 * when the vocabulary has no "<|endoftext|>". */
int sf_bpe_vocab_size(const sf_bpe_t *b);
int sf_bpe_eot(const sf_bpe_t *b);

#endif
