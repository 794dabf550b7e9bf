/* clip_bpe.h: CLIP's BPE tokenizer (vocab.json + merges.txt), in C.
 *
 * As OpenAI's simple_tokenizer and HF's CLIPTokenizer: whitespace collapsed,
 * lower-cased, split into words / single digits / runs of punctuation and the
 * contractions 's 't 're 've 'm 'll 'd, each word's bytes mapped through
 * GPT-2's byte-to-unicode table with "</w>" on its last symbol, merged by
 * rank; a text becomes <|startoftext|> ids <|endoftext|>, cut to the
 * context length (77 for the real CLIP) with the end token kept.
 *
 * The real vocabulary cannot be downloaded where shiftforge is built, so a
 * tokenizer can also be made from a word list (sf_clip_bpe_from_words): the
 * byte symbols, then for each word the merges that build it left to right.
 * It has the same file format and algorithm, so the world CLIP's tokenizer
 * is an ordinary CLIP tokenizer with a small vocabulary.
 */
#ifndef SF_CLIP_BPE_H
#define SF_CLIP_BPE_H

#include <stddef.h>
#include <stdint.h>

typedef struct sf_clip_bpe_s sf_clip_bpe_t;

/* Loads vocab.json (token -> id) and merges.txt ("#version" line, then
 * "a b" per line, by rank).  Every merge's parts and result must be in the
 * vocabulary, and it must hold <|startoftext|> and <|endoftext|>. */
int sf_clip_bpe_load(const char *vocab_json, const char *merges_txt, sf_clip_bpe_t **out,
                     char *err, size_t errlen);

/* The same from the two files' contents in memory (borrowed; not
 * NUL-terminated): vocab_json[0..vocab_len), merges_txt[0..merges_len)
 * (whose merges end at a NUL, as a file's do).  Messages name them
 * "vocab.json" and "merges.txt". */
int sf_clip_bpe_load_mem(const char *vocab_json, size_t vocab_len, const char *merges_txt, size_t merges_len,
                         sf_clip_bpe_t **out, char *err, size_t errlen);

/* Builds a tokenizer whose merges spell every word of `words` (lower-cased
 * ASCII letters; others are skipped) as one token; duplicates are fine and
 * the result depends only on the set of words. */
int sf_clip_bpe_from_words(const char *const *words, int n, sf_clip_bpe_t **out);

/* Writes the two files (loadable by this module and by HF's CLIPTokenizer). */
int sf_clip_bpe_save(const sf_clip_bpe_t *b, const char *vocab_json, const char *merges_txt);

void sf_clip_bpe_free(sf_clip_bpe_t **b);

int sf_clip_bpe_vocab_size(const sf_clip_bpe_t *b);
int sf_clip_bpe_sot(const sf_clip_bpe_t *b);
int sf_clip_bpe_eot(const sf_clip_bpe_t *b);
/* The token's string (borrowed), NULL for a bad id. */
const char *sf_clip_bpe_token(const sf_clip_bpe_t *b, int id);

/* Encodes text into ids[0..ctx): sot, tokens, eot, then zeros.  Returns the
 * number of ids before the padding (<= ctx; a long text is cut and its last
 * id is eot), or a negative SF_E code (ctx < 2). */
int sf_clip_bpe_encode(const sf_clip_bpe_t *b, const char *text, int32_t *ids, int ctx);

/* The words of a text as the tokenizer splits them, without "</w>"; the
 * callback gets each one (valid only during the call).  Used to collect a
 * corpus's vocabulary. */
void sf_clip_bpe_words(const char *text, void (*cb)(const char *word, size_t len, void *arg), void *arg);

#endif
