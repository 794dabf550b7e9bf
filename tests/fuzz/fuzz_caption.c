/* libFuzzer target: captions fed to the world's parser and generator
 * (world/grammar.c, world/world.c), as a policy could write them. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/method/classes.h"
#include "world/world.h"

static sf_world_t *w;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!w) {
        sf_classlist_t *cl;
        char err[128];
        if (sf_classes_load("builtin:imagenet-a-r-86", &cl, err, sizeof err) != 0 || sf_world_create(cl, 32, &w) != 0)
            abort();
        sf_classes_free(&cl);
    }
    char *cap = malloc(size + 1);
    memcpy(cap, data, size);
    cap[size] = 0;
    sf_world_parse_t p;
    sf_world_parse(w, cap, &p);
    sf_world_gen_t g;
    static uint8_t rgb[32 * 32 * 3];
    sf_world_generate(w, cap, size, (size & 1) ? rgb : NULL, &g);
    free(cap);
    return 0;
}
