/* libFuzzer target: a user's class list (common/method/classes.c) and the "class
 * mentioned" check on arbitrary text. */
#include <stddef.h>
#include <stdint.h>

#include "common/method/classes.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    sf_classlist_t *cl = NULL;
    char err[256];
    if (sf_classes_parse((const char *)data, size, &cl, err, sizeof err) == 0) sf_classes_free(&cl);
    char text[512];
    size_t n = size < sizeof text - 1 ? size : sizeof text - 1;
    for (size_t i = 0; i < n; i++) text[i] = data[i] ? (char)data[i] : ' ';
    text[n] = 0;
    const sf_classlist_t *all = sf_classes_imagenet1k();
    sf_classes_mentioned(&all->v[size % (size_t)all->n], text);
    return 0;
}
