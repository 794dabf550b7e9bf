/* cli.c: `sfctl world ...` — look at the world and write its corpus.
 *
 *   world sheet  --classes SPEC --set base|world-R|world-A|caption:"TEXT"|attr:NAME
 *                [--n N] [--out sheet.png] [--size S] [--scale K] [--cols C]
 *                [--seed S] [--start I]
 *   world corpus --classes SPEC [--out corpus.jsonl] [--per-class N] [--seed S]
 *   world parse  --classes SPEC "CAPTION"
 *
 * A caption set may hold "{class}", which is replaced by each class's name in
 * turn; without it every cell is the same caption with another seed.
 * attr:NAME shows every value of one attribute (one class a row), the rest
 * held plain, which is how one sees what each attribute word does.  Labels
 * under each cell say what was drawn, so a sheet doubles as a check of the
 * world's ground truth.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/method/classes.h"
#include "common/runtime/error.h"
#include "world/sheet.h"
#include "world/world.h"

#define EXIT_USAGE 2

static void usage(FILE *f) {
    fputs("usage: sfctl world sheet  --classes SPEC --set base|world-R|world-A|caption:\"TEXT\"|attr:NAME\n"
          "                          [--n N] [--out FILE.png] [--size S] [--scale K] [--cols C]\n"
          "                          [--seed S] [--start I]\n"
          "       sfctl world corpus --classes SPEC [--out FILE.jsonl] [--per-class N] [--seed S]\n"
          "       sfctl world parse  --classes SPEC \"CAPTION\"\n"
          "SPEC: builtin:imagenet-a-r-86, builtin:imagenet-1k, a file of wnids or names, or '-'.\n"
          "A caption may contain {class}, replaced by each class in turn.  attr:NAME (style,\n"
          "scene, light, color, size, position, rotation, count, occlusion, clutter) shows\n"
          "every value of one attribute, one class a row.\n",
          f);
}

typedef struct {
    const char *classes, *set, *out, *caption;
    int n, size, scale, cols, per_class;
    uint64_t seed, start;
} opts_t;

static int parse_int(const char *s, long lo, long hi, long *v) {
    char *end;
    errno = 0;
    long x = strtol(s, &end, 10);
    if (errno || *end || end == s || x < lo || x > hi) return -1;
    *v = x;
    return 0;
}

static int parse_opts(int argc, char **argv, opts_t *o) {
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 1;
        }
        if (a[0] != '-' || a[1] != '-') {
            if (o->caption) goto bad;
            o->caption = a;
            continue;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "sfctl world: %s needs a value\n", a);
            return -1;
        }
        const char *v = argv[++i];
        long x;
        if (!strcmp(a, "--classes")) o->classes = v;
        else if (!strcmp(a, "--set")) o->set = v;
        else if (!strcmp(a, "--out")) o->out = v;
        else if (!strcmp(a, "--n")) { if (parse_int(v, 1, 4096, &x)) goto badv; o->n = (int)x; }
        else if (!strcmp(a, "--size")) {
            if (parse_int(v, SF_WORLD_MIN_SIZE, SF_WORLD_MAX_SIZE, &x)) goto badv;
            o->size = (int)x;
        } else if (!strcmp(a, "--scale")) { if (parse_int(v, 1, 8, &x)) goto badv; o->scale = (int)x; }
        else if (!strcmp(a, "--cols")) { if (parse_int(v, 1, 64, &x)) goto badv; o->cols = (int)x; }
        else if (!strcmp(a, "--per-class")) { if (parse_int(v, 1, 64, &x)) goto badv; o->per_class = (int)x; }
        else if (!strcmp(a, "--seed")) { if (parse_int(v, 0, 0x7fffffffL, &x)) goto badv; o->seed = (uint64_t)x; }
        else if (!strcmp(a, "--start")) { if (parse_int(v, 0, 0x7fffffffL, &x)) goto badv; o->start = (uint64_t)x; }
        else {
            fprintf(stderr, "sfctl world: unknown option %s\n", a);
            return -1;
        }
        continue;
    badv:
        fprintf(stderr, "sfctl world: bad value '%s' for %s\n", v, a);
        return -1;
    }
    return 0;
bad:
    fprintf(stderr, "sfctl world: unexpected argument '%s'\n", argv[argc - 1]);
    return -1;
}

static int load_world(const opts_t *o, sf_world_t **w) {
    if (!o->classes) {
        fprintf(stderr, "sfctl world: --classes SPEC is required\n");
        return EXIT_USAGE;
    }
    sf_classlist_t *cl = NULL;
    char err[256] = "";
    int rc = sf_classes_load(o->classes, &cl, err, sizeof err);
    if (rc) {
        fprintf(stderr, "sfctl world: %s: %s\n", o->classes, err[0] ? err : sf_strerror(rc));
        return EXIT_USAGE;
    }
    rc = sf_world_create(cl, o->size, w);
    sf_classes_free(&cl);
    if (rc) {
        fprintf(stderr, "sfctl world: cannot make the world: %s\n", sf_strerror(rc));
        return 1;
    }
    return 0;
}

static void describe(const sf_world_t *w, const sf_world_attrs_t *a, int set, char *buf, size_t n) {
    const char *name = a->cls >= 0 ? sf_world_class(w, a->cls)->name : "(nothing)";
    int o = snprintf(buf, n, "%s: ", name);
    if (o < 0 || (size_t)o >= n) return;
    char *p = buf + o;
    size_t left = n - (size_t)o;
    if (set == SF_WORLD_SET_R) {
        snprintf(p, left, "%s, %s", sf_world_value_name(SF_ATTR_STYLE, a->v[SF_ATTR_STYLE]),
                 sf_world_value_name(SF_ATTR_SCENE, a->v[SF_ATTR_SCENE]));
        return;
    }
    int k = snprintf(p, left, "%s %s", sf_world_value_name(SF_ATTR_COLOR, a->v[SF_ATTR_COLOR]),
                     sf_world_value_name(SF_ATTR_SCENE, a->v[SF_ATTR_SCENE]));
    /* Only what departs from the ordinary, so labels stay short. */
    static const int extra[] = {SF_ATTR_STYLE, SF_ATTR_LIGHT, SF_ATTR_SIZE, SF_ATTR_ROT, SF_ATTR_COUNT,
                                SF_ATTR_OCCL, SF_ATTR_CLUTTER};
    static const int normal[] = {SF_STYLE_PHOTO, SF_LIGHT_DAY, SF_SIZE_MEDIUM, SF_ROT_UPRIGHT,
                                 SF_COUNT_ONE, SF_OCCL_NONE, SF_CLUTTER_NONE};
    for (size_t i = 0; i < sizeof extra / sizeof extra[0] && k > 0 && (size_t)k < left; i++) {
        int at = extra[i];
        if (a->v[at] == normal[i]) continue;
        const char *vn = sf_world_value_name(at, a->v[at]);
        if (at == SF_ATTR_OCCL) vn = a->v[at] == SF_OCCL_PARTIAL ? "occluded" : "hidden";
        k += snprintf(p + k, left - (size_t)k, " %s", vn);
    }
}

/* Replaces the first "{class}" in tmpl by name. */
static void fill_caption(const char *tmpl, const char *name, char *out, size_t n) {
    const char *at = strstr(tmpl, "{class}");
    if (!at) snprintf(out, n, "%s", tmpl);
    else snprintf(out, n, "%.*s%s%s", (int)(at - tmpl), tmpl, name, at + 7);
}

static int cmd_sheet(const opts_t *o) {
    if (!o->set) {
        fprintf(stderr, "sfctl world sheet: --set base|world-R|world-A|caption:\"TEXT\" is required\n");
        return EXIT_USAGE;
    }
    const char *caption = !strncmp(o->set, "caption:", 8) ? o->set + 8 : NULL;
    int attr = -1;
    if (!strncmp(o->set, "attr:", 5))
        for (int a = 0; a < SF_N_ATTRS; a++)
            if (!strcmp(o->set + 5, sf_world_attr_name(a))) attr = a;
    int set = caption || attr >= 0 ? -1 : sf_world_set_lookup(o->set);
    if (!caption && attr < 0 && set < 0) {
        fprintf(stderr, "sfctl world sheet: unknown set '%s'\n", o->set);
        return EXIT_USAGE;
    }
    sf_world_t *w = NULL;
    int rc = load_world(o, &w);
    if (rc) return rc;
    size_t ib = sf_world_image_bytes(w);
    uint8_t *pix = malloc(ib * (size_t)o->n);
    const uint8_t **imgs = malloc(sizeof *imgs * (size_t)o->n);
    char (*lab)[160] = malloc(sizeof *lab * (size_t)o->n);
    const char **labels = malloc(sizeof *labels * (size_t)o->n);
    if (!pix || !imgs || !lab || !labels) {
        rc = 1;
        goto done;
    }
    for (int i = 0; i < o->n; i++) {
        uint8_t *img = pix + ib * (size_t)i;
        uint64_t idx = o->start + (uint64_t)i;
        sf_world_attrs_t a;
        if (caption) {
            char cap[512];
            int cls = (int)(idx % (uint64_t)sf_world_n_classes(w));
            fill_caption(caption, sf_world_class(w, cls)->name, cap, sizeof cap);
            sf_world_gen_t g;
            rc = sf_world_generate(w, cap, o->seed + idx, img, &g);
            if (!rc) {
                describe(w, &g.attrs, -1, lab[i], sizeof lab[i]);
                if (g.outcome != SF_GEN_OK) {
                    size_t l = strlen(lab[i]);
                    snprintf(lab[i] + l, sizeof lab[i] - l, " [%s]", sf_world_outcome_name(g.outcome));
                }
            }
        } else if (attr >= 0) {
            /* One row per class, one column per value of the attribute, the
             * rest a plain base image, so only that attribute moves. */
            int nv = sf_world_attr_nvalues(attr);
            int cls = (int)((idx / (uint64_t)nv) % (uint64_t)sf_world_n_classes(w));
            sf_world_base_sample(w, cls, o->seed, NULL, &a);
            a.v[SF_ATTR_STYLE] = SF_STYLE_PHOTO;
            a.v[SF_ATTR_LIGHT] = SF_LIGHT_DAY;
            a.v[SF_ATTR_COUNT] = SF_COUNT_ONE;
            a.v[SF_ATTR_OCCL] = SF_OCCL_NONE;
            a.v[SF_ATTR_CLUTTER] = SF_CLUTTER_NONE;
            a.v[SF_ATTR_SIZE] = SF_SIZE_MEDIUM;
            a.v[SF_ATTR_POS] = SF_POS_CENTER;
            a.v[SF_ATTR_ROT] = SF_ROT_UPRIGHT;
            a.v[attr] = (int)(idx % (uint64_t)nv);
            rc = sf_world_render(w, &a, img);
            if (!rc)
                snprintf(lab[i], sizeof lab[i], "%s: %s", sf_world_class(w, cls)->name,
                         sf_world_value_name(attr, a.v[attr]));
        } else if (set == SF_WORLD_SET_BASE) {
            /* The sheet of "base" shows training items (0, 1, ...), not the
             * held-out test items. */
            int n = sf_world_n_classes(w);
            rc = sf_world_base_sample(w, (int)(idx % (uint64_t)n), idx / (uint64_t)n + o->seed, img, &a);
            if (!rc) describe(w, &a, set, lab[i], sizeof lab[i]);
        } else {
            rc = sf_world_testset_get(w, set, idx, img, NULL, &a);
            if (!rc) describe(w, &a, set, lab[i], sizeof lab[i]);
        }
        if (rc) {
            fprintf(stderr, "sfctl world sheet: image %d: %s\n", i, sf_strerror(rc));
            rc = 1;
            goto done;
        }
        imgs[i] = img;
        labels[i] = lab[i];
    }
    char title[600];
    snprintf(title, sizeof title, "%s  (%d classes, %dx%d)",
             caption ? caption : attr >= 0 ? o->set : sf_world_set_name(set),
             sf_world_n_classes(w), sf_world_size(w), sf_world_size(w));
    rc = sf_sheet_write(o->out, imgs, labels, o->n, sf_world_size(w), sf_world_size(w), o->cols,
                        o->scale, 3, title);
    if (rc) {
        fprintf(stderr, "sfctl world sheet: cannot write %s: %s\n", o->out, sf_strerror(rc));
        rc = 1;
    } else {
        printf("%s: %d images\n", o->out, o->n);
    }
done:
    free(pix);
    free(imgs);
    free(lab);
    free(labels);
    sf_world_destroy(&w);
    return rc;
}

static int cmd_corpus(const opts_t *o) {
    sf_world_t *w = NULL;
    int rc = load_world(o, &w);
    if (rc) return rc;
    FILE *f = strcmp(o->out, "-") ? fopen(o->out, "w") : stdout;
    if (!f) {
        fprintf(stderr, "sfctl world corpus: cannot open %s: %s\n", o->out, strerror(errno));
        sf_world_destroy(&w);
        return 1;
    }
    rc = sf_world_corpus_write(w, f, o->per_class, o->seed);
    if (f != stdout && fclose(f) != 0 && rc == 0) rc = SF_EIO;
    if (rc) fprintf(stderr, "sfctl world corpus: %s\n", sf_strerror(rc));
    else if (f != stdout)
        fprintf(stderr, "%s: %d captions\n", o->out, o->per_class * sf_world_n_classes(w));
    sf_world_destroy(&w);
    return rc ? 1 : 0;
}

static int cmd_parse(const opts_t *o) {
    if (!o->caption) {
        fprintf(stderr, "sfctl world parse: give a caption\n");
        return EXIT_USAGE;
    }
    sf_world_t *w = NULL;
    int rc = load_world(o, &w);
    if (rc) return rc;
    sf_world_parse_t p;
    sf_world_parse(w, o->caption, &p);
    printf("class: %s\n", p.cls >= 0 ? sf_world_class(w, p.cls)->name : "(none)");
    for (int a = 0; a < SF_N_ATTRS; a++)
        if (p.named & (1u << a)) printf("%s: %s\n", sf_world_attr_name(a), sf_world_value_name(a, p.v[a]));
    printf("words: %d  unknown: %d  contradictions: %d  p_fail: %.3f\n", p.n_words, p.n_unknown,
           p.contradictions, sf_world_failure_prob(&p));
    sf_world_destroy(&w);
    return 0;
}

int sf_world_cli_main(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? EXIT_USAGE : 0;
    }
    opts_t o = {NULL, NULL, NULL, NULL, 32, SF_WORLD_DEFAULT_SIZE, 2, 0, 16, 0, 0};
    int rc = parse_opts(argc, argv, &o);
    if (rc) return rc > 0 ? 0 : EXIT_USAGE;
    if (!strcmp(argv[1], "sheet")) {
        if (!o.out) o.out = "sheet.png";
        return cmd_sheet(&o);
    }
    if (!strcmp(argv[1], "corpus")) {
        if (!o.out) o.out = "-";
        return cmd_corpus(&o);
    }
    if (!strcmp(argv[1], "parse")) return cmd_parse(&o);
    fprintf(stderr, "sfctl world: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return EXIT_USAGE;
}
