/* sft_rows.h: the caption policy's prompt and its SFT rows.
 *
 * The policy is prompted with "Caption of a {class}:" (rollouts, captions,
 * SFT all use sf_policy_prompt) and answers with " {caption}" and the end of
 * text.  An SFT row is that whole sequence as GPT-2 token ids, with the
 * prompt's length, so that the loss covers the response only.
 */
#ifndef SF_SFT_ROWS_H
#define SF_SFT_ROWS_H

#include <stddef.h>
#include <stdint.h>

#include "common/text/bpe.h"

/* Writes the prompt for a class's display name into buf (n bytes).
 * SF_ERANGE when it does not fit. */
int sf_policy_prompt(const char *class_name, char *buf, size_t n);

/* Rows of `stride` token ids each (zero-padded). */
typedef struct {
    int32_t *seqs; /* n * stride */
    int *plen;     /* prompt tokens of each row */
    int *slen;     /* prompt + response + end of text */
    int n, cap, stride;
} sf_sft_rows_t;

/* Initialises r for rows of `stride` tokens (>= 4). */
int sf_sft_rows_init(sf_sft_rows_t *r, int stride);

/* Appends the row for (class_name, caption).  The caption gets a leading
 * space and, when it has no final '.', '!' or '?', a full stop (a caption
 * is a sentence: the reward's check).  A row longer than the stride loses
 * the end of its caption but keeps the end of text.  SF_EINVAL for an empty
 * caption or one with a control character, SF_ENOMEM. */
int sf_sft_rows_add(sf_sft_rows_t *r, const sf_bpe_t *bpe, const char *class_name, const char *caption);

/* Appends a row of plain text, as a language model is pretrained on: the
 * end-of-text token (the prompt, of length 1), then the caption as above. */
int sf_sft_rows_add_plain(sf_sft_rows_t *r, const sf_bpe_t *bpe, const char *caption);

void sf_sft_rows_free(sf_sft_rows_t *r);

#endif
