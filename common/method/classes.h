/* classes.h: ImageNet class lists — the built-in ones and users' files.
 *
 * A class is a WordNet id (wnid), a display name (CLIP-style, as in
 * data/imagenet1k.tsv) and its WordNet lemmas.  Built-in lists are embedded in
 * the binaries: "imagenet-1k" (1000 classes) and "imagenet-a-r-86" (the 86
 * classes shared by ImageNet-A and ImageNet-R).  A user's list is one class a
 * line, by wnid or by display name (case-insensitive); '#' starts a comment.
 * Unknown classes, ambiguous names, duplicates and empty lists are rejected
 * with a message naming the offending line.
 */
#ifndef SF_CLASSES_H
#define SF_CLASSES_H

#include <stddef.h>

typedef struct sf_class_s {
    char wnid[16];     /* "n01440764" */
    int index;         /* index in ImageNet-1k, 0..999 */
    char *name;        /* display name, "great white shark" */
    char **lemmas;     /* WordNet lemmas, lemmas[0] is usually the name */
    int n_lemmas;
} sf_class_t;

typedef struct sf_classlist_s {
    sf_class_t *v;
    int n;
} sf_classlist_t;

/* The whole ImageNet-1k table, loaded once from the embedded data; borrowed,
 * valid for the life of the process. */
const sf_classlist_t *sf_classes_imagenet1k(void);

/* Looks a class up by wnid or display name (case-insensitive) in ImageNet-1k.
 * Returns NULL if unknown or (for names) ambiguous.  Borrowed. */
const sf_class_t *sf_classes_lookup(const char *wnid_or_name);

/* The WordNet 3.0 gloss of an ImageNet-1k class (data/imagenet1k_glosses.tsv),
 * e.g. "small golden or orange-red freshwater fishes …" for n01443537.
 * SF_ENOTFOUND (and "") for another wnid. */
int sf_class_gloss(const char *wnid, char *out, size_t n);

/* Parses a list (see above).  On success *out is a new list the caller frees
 * with sf_classes_free().  On failure returns SF_EINVAL and writes a message
 * such as "line 3: unknown class 'dgo'" into err. */
int sf_classes_parse(const char *text, size_t len, sf_classlist_t **out,
                     char *err, size_t errlen);

/* Loads "builtin:imagenet-1k", "builtin:imagenet-a-r-86", "-" (stdin) or a
 * file path, then parses it as above. */
int sf_classes_load(const char *spec, sf_classlist_t **out, char *err, size_t errlen);

/* Copies a list; *out is freed with sf_classes_free(). */
int sf_classes_dup(const sf_classlist_t *in, sf_classlist_t **out);

/* Frees *cl and sets it to NULL. */
void sf_classes_free(sf_classlist_t **cl);

/* 1 if `text` mentions the class by display name or any lemma, as whole
 * words, case-insensitively ("a Great White Shark swims" mentions it). */
int sf_classes_mentioned(const sf_class_t *c, const char *text);

/* 1 if `text` mentions class `other` (as sf_classes_mentioned) somewhere that
 * is not part of a mention of `target`: "a great white shark" mentions only
 * its own class even where another class is called "white shark", but "a
 * bald eagle" does mention "bald eagle" when the target is "eagle". */
int sf_classes_mentioned_apart(const sf_class_t *other, const sf_class_t *target, const char *text);

#endif
