/* corpus.h: the corpus phase's prompt — what the instruction model is asked
 * for each caption of the SFT corpus (docs/method.md, "The corpus phase").
 *
 * A prompt is a template with "{instruction}" in it, and an instruction
 * with "{class}" in it (the class's display name); "{class}" may also
 * appear in the template itself.  The default is the Alpaca template, which
 * the paper's instruction model (Alpaca-7B) was fine-tuned on, with an
 * instruction asking for one caption of a photo of the class.  The world's
 * instruction model (sf-train instruct) is trained on exactly this prompt.
 */
#ifndef SF_CORPUS_H
#define SF_CORPUS_H

#include <stddef.h>
#include <stdint.h>

#include "common/method/contract.h" /* SF_CORPUS_INSTRUCTION, sf_shift_params_t */

/* Stanford Alpaca's prompt without an input field, verbatim. */
#define SF_CORPUS_TEMPLATE_ALPACA                                                                                 \
    "Below is an instruction that describes a task. Write a response that appropriately completes the request.\n" \
    "\n### Instruction:\n{instruction}\n\n### Response:\n"

/* The prompt for class `class_name`: `instruction` (NULL: the default) put
 * into `tmpl` (NULL: Alpaca's) at "{instruction}", then every "{class}"
 * replaced by the class name.  SF_EINVAL when tmpl has no "{instruction}"
 * or neither has "{class}"; SF_ERANGE when the prompt does not fit in n. */
int sf_corpus_prompt(const char *tmpl, const char *instruction, const char *class_name, char *out, size_t n);

/* The run's template: Alpaca's for "alpaca", else the setting itself. */
const char *sf_corpus_template(const sf_shift_params_t *p);

/* Where a corpus lives, under the data_dir the workers share (and the
 * learner reads):
 *   data_dir/corpus/<key>/<wnid>.jsonl   one caption a line: {"class",
 *       "name", "caption", "seed", "attempt", "model", "prompt"}
 *   data_dir/corpus/<key>/<wnid>.json    how it was made: captions,
 *       rejected, resampled, and the settings
 * where <key> (16 hex digits) hashes what decides the captions: the model
 * path, the template, the instruction and the sampling settings.  The
 * seeds come from the key and the class, not from the run, so a corpus is
 * one per (model, prompt, class) and every run that asks for it again
 * reuses it.  A model's files replaced under the same path are the same
 * model to this key: give a new model a new folder. */
void sf_corpus_key(const sf_shift_params_t *p, char out[17]);
/* data_dir/corpus/<key>, and in it <wnid>.jsonl / .json (NULL: not wanted). */
void sf_corpus_paths(const char *data_dir, const char *key, const char *wnid, char *dir, size_t dn, char *jsonl,
                     size_t jn, char *meta, size_t mn);
/* The seed of draw round `round` of class wnid in the corpus of `key`
 * (every pending caption of the class is drawn in each round). */
uint64_t sf_corpus_seed(const char *key, const char *wnid, int round);

#endif
