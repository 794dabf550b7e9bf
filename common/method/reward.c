/* reward.c: the paper's reward (see reward.h).
 *
 * The sentence heuristic is deliberately simple and byte-oriented: captions
 * come out of GPT-2 and only need to be told apart from truncated, runaway
 * or degenerate samples, not parsed.  Every rule is one that a PPO-trained
 * policy was seen (or would be expected) to exploit if it were missing.
 */
#include "common/method/reward.h"

#include <ctype.h>
#include <math.h>
#include <string.h>
#include <strings.h>

#include "common/runtime/error.h"

#define MIN_WORDS 3
#define MAX_WORDS 60
#define MAX_SENTENCES 3
#define MAX_WORD 64

/* Words that cannot end a sentence: a caption ending in one was cut off. */
static const char *const dangling[] = {
    "a", "an", "the", "of", "in", "on", "at", "with", "and", "or", "but", "to", "for", "by",
    "from", "under", "over", "near", "into", "onto", "its", "their", "his", "her", "my",
    "our", "your", "this", "that", "these", "those", "is", "are", "was", "were", "as",
    "while", "behind", "between", "beside", "across", "through", "during", "very", "some",
};

static int is_dangling(const char *w) {
    for (size_t i = 0; i < sizeof dangling / sizeof dangling[0]; i++)
        if (strcasecmp(w, dangling[i]) == 0) return 1;
    return 0;
}

/* 1 if s[0..n) is valid UTF-8 without control characters (tab allowed). */
static int clean_utf8(const unsigned char *s, size_t n) {
    const unsigned char *e = s + n;
    while (s < e) {
        unsigned char c = *s;
        size_t len = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3
                   : (c & 0xF8) == 0xF0 ? 4 : 0;
        if (len == 0 || (c < 0x20 && c != '\t') || c == 0x7F) return 0;
        if (len == 2 && c < 0xC2) return 0;   /* overlong */
        if (len > (size_t)(e - s)) return 0;
        for (size_t i = 1; i < len; i++)
            if ((s[i] & 0xC0) != 0x80) return 0;
        s += len;
    }
    return 1;
}

static int is_end_mark(int c) { return c == '.' || c == '!' || c == '?'; }

int sf_reward_is_sentence(const char *caption) {
    if (!caption) return 0;
    const unsigned char *s = (const unsigned char *)caption;
    if (strstr(caption, "<|endoftext|>")) return 0;
    /* Trailing whitespace (a sampled newline) is not part of the sentence. */
    size_t n = strlen(caption);
    while (n && isspace(s[n - 1])) n--;
    if (!clean_utf8(s, n)) return 0;
    /* Closing quotes and brackets may follow the final mark. */
    size_t end = n;
    while (end && (s[end - 1] == '"' || s[end - 1] == '\'' || s[end - 1] == ')' ||
                   s[end - 1] == ']'))
        end--;
    if (end == 0 || !is_end_mark(s[end - 1])) return 0;
    if (end >= 2 && s[end - 1] == '.' && s[end - 2] == '.') return 0;   /* "..." trails off */

    /* One pass over words: counts, letters, sentences, repeats, and the last
     * word before the final mark. */
    size_t letters = 0, other = 0;
    int words = 0, sentences = 0, repeat = 1;
    char prev[MAX_WORD] = "", cur[MAX_WORD] = "", last[MAX_WORD] = "";
    size_t cl = 0;
    for (size_t i = 0; i <= end; i++) {
        int c = i < end ? s[i] : ' ';
        int in_word = isalnum(c) || c >= 0x80 || c == '\'' || c == '-';
        if (i < end && !isspace(c)) {
            if (isalpha(c) || c >= 0x80) letters++;
            else other++;
        }
        if (in_word) {
            if (cl + 1 < MAX_WORD) cur[cl++] = (char)tolower(c);
            continue;
        }
        if (cl) {
            cur[cl] = 0;
            words++;
            repeat = strcmp(cur, prev) == 0 ? repeat + 1 : 1;
            if (repeat >= 3) return 0;
            memcpy(prev, cur, cl + 1);
            memcpy(last, cur, cl + 1);
            cl = 0;
        }
        /* A mark ends a sentence when a space or the end follows it; this
         * keeps "3.5" and "e.g." from counting twice in ordinary text. */
        if (is_end_mark(c) && (i + 1 >= end || isspace(s[i + 1]))) {
            sentences++;
            prev[0] = 0;
        }
    }
    if (words < MIN_WORDS || words > MAX_WORDS || sentences > MAX_SENTENCES) return 0;
    if (letters < other || letters * 2 < letters + other) return 0;
    if (is_dangling(last)) return 0;
    return 1;
}

int sf_reward_check(const sf_class_t *c, const sf_classlist_t *among, const char *caption) {
    if (!sf_reward_is_sentence(caption)) return SF_REWARD_NOT_SENTENCE;
    if (!sf_classes_mentioned(c, caption)) return SF_REWARD_NO_CLASS;
    for (int i = 0; among && i < among->n; i++)
        if (strcmp(among->v[i].wnid, c->wnid) != 0 && sf_classes_mentioned_apart(&among->v[i], c, caption))
            return SF_REWARD_OTHER_CLASS;
    return SF_REWARD_OK;
}

float sf_dot_f32(const float *a, const float *b, size_t n) {
    float s = 0;
    for (size_t i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

int sf_reward_cosine(const float *a, const float *b, size_t dim, float *out) {
    if (!a || !b || !out || dim == 0) return SF_EINVAL;
    /* Accumulate in double: 512- or 768-dim CLIP vectors lose a few ulps in
     * float, and the reward differences PPO sees are small. */
    double ab = 0, aa = 0, bb = 0;
    for (size_t i = 0; i < dim; i++) {
        ab += (double)a[i] * b[i];
        aa += (double)a[i] * a[i];
        bb += (double)b[i] * b[i];
    }
    if (!isfinite(ab) || !isfinite(aa) || !isfinite(bb) || aa == 0 || bb == 0) return SF_EINVAL;
    double c = ab / (sqrt(aa) * sqrt(bb));
    if (c > 1) c = 1;
    if (c < -1) c = -1;
    *out = (float)c;
    return 0;
}

int sf_reward_score(const sf_class_t *c, const sf_classlist_t *among, const char *caption, const float *text_emb,
                    const float *class_mean, size_t dim, float *out, int *why) {
    if (!c || !caption || !out) return SF_EINVAL;
    int w = sf_reward_check(c, among, caption);
    if (why) *why = w;
    if (w != SF_REWARD_OK) {
        *out = SF_REWARD_WORST;
        return 0;
    }
    float cs;
    int rc = sf_reward_cosine(text_emb, class_mean, dim, &cs);
    if (rc) return rc;
    *out = -cs;
    return 0;
}
