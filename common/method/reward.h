/* reward.h: the paper's reward for a caption, over CLIP embeddings.
 *
 *   R(P, C) = -cos(phi_text(P), mu_C)
 *
 * where mu_C is the mean CLIP image embedding of class C's reference images.
 * The policy maximises R, i.e. writes captions whose embedding points away
 * from the class's typical images.  A nonsensical caption — not a complete
 * sentence, or the class not mentioned by display name or WordNet lemma —
 * gets the worst value, as if cos were 1: R = -1.  Without that floor the
 * policy would learn to drop the class or write gibberish, both of which lie
 * far from mu_C.
 *
 * "Complete sentence" is a heuristic (sf_reward_is_sentence), documented
 * there; embeddings come from the CLIP model in ml/, this module is plain C.
 */
#ifndef SF_REWARD_H
#define SF_REWARD_H

#include <stddef.h>

#include "common/method/classes.h"

/* The worst reward, given to nonsensical captions. */
#define SF_REWARD_WORST (-1.0f)

/* Why a caption was judged nonsensical (0 when it is fine). */
enum {
    SF_REWARD_OK = 0,
    SF_REWARD_NOT_SENTENCE = 1,
    SF_REWARD_NO_CLASS = 2,
    SF_REWARD_OTHER_CLASS = 3,
};

/* 1 if caption is a complete sentence by this heuristic, else 0:
 *  - valid UTF-8 with no control characters other than spaces and tabs, and
 *    no "<|endoftext|>";
 *  - 3 to 60 words, at least half of its non-space characters letters;
 *  - ends with '.', '!' or '?' (a closing quote or bracket may follow), and
 *    not with an ellipsis, which marks a caption that trails off;
 *  - the last word before the final mark is not a dangling function word
 *    ("a photo of the." is cut off, not complete);
 *  - no word repeated three times in a row ("the the the"), the usual
 *    failure of a degenerate sampler;
 *  - at most 3 sentences, so a run-on of fragments does not pass. */
int sf_reward_is_sentence(const char *caption);

/* SF_REWARD_OK, SF_REWARD_NOT_SENTENCE, SF_REWARD_NO_CLASS or
 * SF_REWARD_OTHER_CLASS for caption on class c (borrowed): the last when it
 * also mentions a class of `among` other than c (sf_classes_mentioned_apart;
 * among may be NULL: no such check). */
int sf_reward_check(const sf_class_t *c, const sf_classlist_t *among, const char *caption);

/* The dot product of two float vectors, accumulated in float from the
 * first element on (the filter's similarity to the class text and the
 * trainer's CLIP checks; both compare unit vectors). */
float sf_dot_f32(const float *a, const float *b, size_t n);

/* Cosine similarity of two dim-vectors into *out.  SF_EINVAL if either has
 * zero norm or a non-finite entry. */
int sf_reward_cosine(const float *a, const float *b, size_t dim, float *out);

/* The reward of caption on class c (among: as sf_reward_check): -cos(text_emb, class_mean), or
 * SF_REWARD_WORST when sf_reward_check fails (then *why says why; why may be
 * NULL).  Embeddings need not be normalised. */
int sf_reward_score(const sf_class_t *c, const sf_classlist_t *among, const char *caption, const float *text_emb,
                    const float *class_mean, size_t dim, float *out, int *why);

#endif
