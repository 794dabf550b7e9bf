/* variants.c: captions the world's generator reads alike — the same caption
 * with words the grammar does not know and final punctuation — for the
 * world CLIP's text training and for the figure that measures how far such
 * words move a text embedding.
 *
 * The unknown words come from two disjoint pools, so the figure is measured
 * on words the CLIP never saw in training: pseudo-words built from syllables
 * (each pool its own stream of them) and real English words, the even ones of
 * the list below for training and the odd ones for the figure.  A word the
 * world's parser knows is never used: every variant parses to the same class
 * and attributes as its caption.
 */
#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "common/runtime/error.h"
#include "common/runtime/hash.h"
#include "trainer/data.h"

/* Words of captions written for text-to-image models that the world's grammar
 * has no use for; any the parser does know are skipped at run time. */
static const char *const english[] = {
    "beautiful", "very",     "detailed",   "highly",    "amazing",   "stunning",  "lovely",   "vintage",
    "award",     "winning",  "professional", "nice",    "cute",      "strange",   "quiet",    "famous",
    "elegant",   "old",      "new",        "rare",      "simple",    "gorgeous",  "majestic", "wonderful",
    "sharp",     "focus",    "trending",   "artstation", "hd",       "4k",        "8k",       "ultra",
    "realistic", "cinematic", "epic",      "soft",      "dramatic",  "moody",     "vibrant",  "calm",
    "happy",     "sad",      "lonely",     "proud",     "ancient",   "modern",    "classic",  "fancy",
    "perfect",   "awesome",  "cool",       "great",     "pretty",    "huge",      "really",   "quite",
    "just",      "maybe",    "probably",   "certainly", "somewhat",  "extremely", "incredibly", "truly",
    "image",     "picture",  "shot",       "view",      "scene",     "closeup",   "portrait", "landscape",
    "wallpaper", "style",    "art",        "artwork",   "concept",   "illustration", "render", "photograph",
    "canon",     "nikon",    "lens",       "bokeh",     "depth",     "field",     "exposure", "shutter",
    "gentle",    "bright",   "dim",        "colorful",  "textured",  "smooth",    "rough",    "glossy",
};
#define N_ENGLISH ((int)(sizeof english / sizeof *english))

static const char *const syll[] = {"ka", "lo", "mi", "ru", "te", "po", "zan", "vel", "dor", "shi", "qua", "bex",
                                   "nim", "tor", "gla", "fre", "wu", "yo", "jin", "cal", "mor", "pli", "sna", "thu"};
#define N_SYLL ((int)(sizeof syll / sizeof *syll))

static uint64_t draw(uint64_t *r, uint64_t n) { return sf_splitmix64(r) % n; }

/* One unknown word of `pool` into buf. */
static void unknown_word(uint64_t *r, int pool, char *buf, size_t n) {
    if (draw(r, 2)) {
        int i = (int)draw(r, (uint64_t)(N_ENGLISH + 1) / 2) * 2 + pool;
        snprintf(buf, n, "%s", english[i < N_ENGLISH ? i : pool]);
        return;
    }
    /* Pool 0's pseudo-words start with a syllable of the first half, pool 1's
     * with one of the second: the two pools share no word. */
    size_t len = 0;
    int k = 2 + (int)draw(r, 2);
    for (int i = 0; i < k && len + 4 < n; i++) {
        int s = i == 0 ? (int)draw(r, N_SYLL / 2) + pool * (N_SYLL / 2) : (int)draw(r, N_SYLL);
        len += (size_t)snprintf(buf + len, n - len, "%s", syll[s]);
    }
}

static int same_parse(const sf_world_parse_t *a, const sf_world_parse_t *b) {
    if (a->cls != b->cls || a->named != b->named || a->contradictions != b->contradictions) return 0;
    for (int i = 0; i < SF_N_ATTRS; i++)
        if (a->v[i] != b->v[i]) return 0;
    return 1;
}

int sf_train_caption_variant(const sf_world_t *w, const char *caption, uint64_t seed, int pool, char *out,
                             size_t n) {
    sf_world_parse_t want, got;
    if (!w || !caption || !out || n < 2 || pool < 0 || pool > 1) return SF_EINVAL;
    int rc = sf_world_parse(w, caption, &want);
    if (rc) return rc;
    uint64_t r = sf_fnv1a(SF_HASH_BASIS, caption, strlen(caption)) ^ sf_splitmix64(&seed);
    for (int attempt = 0; attempt < 8; attempt++) {
        /* The caption's words, then 0..3 unknown words at random places. */
        char words[48][48];
        int nw = 0;
        for (const char *p = caption; *p && nw < 40;) {
            while (*p == ' ') p++;
            size_t l = strcspn(p, " ");
            if (l == 0) break;
            snprintf(words[nw++], sizeof words[0], "%.*s", (int)(l < 47 ? l : 47), p);
            p += l;
        }
        int add = (int)draw(&r, 4);
        for (int i = 0; i < add && nw < 48; i++) {
            int at = (int)draw(&r, (uint64_t)nw + 1);
            memmove(words[at + 1], words[at], sizeof words[0] * (size_t)(nw - at));
            unknown_word(&r, pool, words[at], sizeof words[0]);
            nw++;
        }
        size_t len = 0;
        out[0] = 0;
        for (int i = 0; i < nw && len + 1 < n; i++)
            len += (size_t)snprintf(out + len, n - len, "%s%s", i ? " " : "", words[i]);
        if (len + 8 >= n) return SF_ERANGE;
        /* Final punctuation (and, when nothing was added, always some). */
        static const char *const punct[] = {".", "!", "?", ",", "...", ";"};
        if (add == 0 || draw(&r, 2)) len += (size_t)snprintf(out + len, n - len, "%s", punct[draw(&r, 6)]);
        /* Casing: the tokenizer lower-cases, so these cost the embedding nothing. */
        int c = (int)draw(&r, 3);
        if (c == 1) out[0] = (char)toupper((unsigned char)out[0]);
        if (c == 2)
            for (size_t i = 0; i < len; i++) out[i] = (char)toupper((unsigned char)out[i]);
        if (sf_world_parse(w, out, &got) == 0 && same_parse(&want, &got)) return (int)len;
    }
    /* Only punctuation, which the parser never reads as a word. */
    snprintf(out, n, "%s.", caption);
    return (int)strlen(out);
}
