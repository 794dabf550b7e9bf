/* test_ml_classifier: timm ConvNeXt and ViT — the published parameter names
 * and shapes of convnext_atto and vit_tiny_patch16_224 with forward passes on
 * their real shapes, training on a toy task, checkpoints and bad input. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/runtime/error.h"
#include "ml/sf_ml.h"
#include "ml/sf_vision.h"
#include "sf_test.h"

typedef struct {
    char name[128];
    int ndim;
    int64_t shape[4];
} pspec_t;

static int n_expect;
static pspec_t expect[512];

static void want(const char *fmt, int i, int j, int ndim, int64_t a, int64_t b, int64_t c, int64_t d) {
    pspec_t *p = &expect[n_expect++];
    snprintf(p->name, sizeof p->name, fmt, i, j);
    p->ndim = ndim;
    p->shape[0] = a, p->shape[1] = b, p->shape[2] = c, p->shape[3] = d;
}

/* timm convnext_atto (conv_mlp=True): its state_dict keys. */
static void expect_convnext_atto(void) {
    n_expect = 0;
    const int depths[4] = {2, 2, 6, 2}, dims[4] = {40, 80, 160, 320};
    want("stem.0.weight", 0, 0, 4, 40, 3, 4, 4);
    want("stem.0.bias", 0, 0, 1, 40, 0, 0, 0);
    want("stem.1.weight", 0, 0, 1, 40, 0, 0, 0);
    want("stem.1.bias", 0, 0, 1, 40, 0, 0, 0);
    for (int s = 0; s < 4; s++) {
        int d = dims[s];
        if (s > 0) {
            want("stages.%d.downsample.0.weight", s, 0, 1, dims[s - 1], 0, 0, 0);
            want("stages.%d.downsample.0.bias", s, 0, 1, dims[s - 1], 0, 0, 0);
            want("stages.%d.downsample.1.weight", s, 0, 4, d, dims[s - 1], 2, 2);
            want("stages.%d.downsample.1.bias", s, 0, 1, d, 0, 0, 0);
        }
        for (int b = 0; b < depths[s]; b++) {
            want("stages.%d.blocks.%d.gamma", s, b, 1, d, 0, 0, 0);
            want("stages.%d.blocks.%d.conv_dw.weight", s, b, 4, d, 1, 7, 7);
            want("stages.%d.blocks.%d.conv_dw.bias", s, b, 1, d, 0, 0, 0);
            want("stages.%d.blocks.%d.norm.weight", s, b, 1, d, 0, 0, 0);
            want("stages.%d.blocks.%d.norm.bias", s, b, 1, d, 0, 0, 0);
            want("stages.%d.blocks.%d.mlp.fc1.weight", s, b, 4, 4 * d, d, 1, 1);
            want("stages.%d.blocks.%d.mlp.fc1.bias", s, b, 1, 4 * d, 0, 0, 0);
            want("stages.%d.blocks.%d.mlp.fc2.weight", s, b, 4, d, 4 * d, 1, 1);
            want("stages.%d.blocks.%d.mlp.fc2.bias", s, b, 1, d, 0, 0, 0);
        }
    }
    want("head.norm.weight", 0, 0, 1, 320, 0, 0, 0);
    want("head.norm.bias", 0, 0, 1, 320, 0, 0, 0);
    want("head.fc.weight", 0, 0, 2, 1000, 320, 0, 0);
    want("head.fc.bias", 0, 0, 1, 1000, 0, 0, 0);
}

/* timm vit_tiny_patch16_224. */
static void expect_vit_tiny(void) {
    n_expect = 0;
    want("cls_token", 0, 0, 3, 1, 1, 192, 0);
    want("pos_embed", 0, 0, 3, 1, 197, 192, 0);
    want("patch_embed.proj.weight", 0, 0, 4, 192, 3, 16, 16);
    want("patch_embed.proj.bias", 0, 0, 1, 192, 0, 0, 0);
    for (int i = 0; i < 12; i++) {
        want("blocks.%d.norm1.weight", i, 0, 1, 192, 0, 0, 0);
        want("blocks.%d.norm1.bias", i, 0, 1, 192, 0, 0, 0);
        want("blocks.%d.attn.qkv.weight", i, 0, 2, 576, 192, 0, 0);
        want("blocks.%d.attn.qkv.bias", i, 0, 1, 576, 0, 0, 0);
        want("blocks.%d.attn.proj.weight", i, 0, 2, 192, 192, 0, 0);
        want("blocks.%d.attn.proj.bias", i, 0, 1, 192, 0, 0, 0);
        want("blocks.%d.norm2.weight", i, 0, 1, 192, 0, 0, 0);
        want("blocks.%d.norm2.bias", i, 0, 1, 192, 0, 0, 0);
        want("blocks.%d.mlp.fc1.weight", i, 0, 2, 768, 192, 0, 0);
        want("blocks.%d.mlp.fc1.bias", i, 0, 1, 768, 0, 0, 0);
        want("blocks.%d.mlp.fc2.weight", i, 0, 2, 192, 768, 0, 0);
        want("blocks.%d.mlp.fc2.bias", i, 0, 1, 192, 0, 0, 0);
    }
    want("norm.weight", 0, 0, 1, 192, 0, 0, 0);
    want("norm.bias", 0, 0, 1, 192, 0, 0, 0);
    want("head.weight", 0, 0, 2, 1000, 192, 0, 0);
    want("head.bias", 0, 0, 1, 1000, 0, 0, 0);
}

static int names_match(const sf_classifier_t *m) {
    if (sf_classifier_param_count(m) != n_expect) {
        fprintf(stderr, "%d parameters, want %d\n", sf_classifier_param_count(m), n_expect);
        return 0;
    }
    for (int e = 0; e < n_expect; e++) {
        int found = 0;
        for (int i = 0; i < sf_classifier_param_count(m) && !found; i++) {
            int nd;
            int64_t sh[4];
            const char *name = sf_classifier_param(m, i, &nd, sh);
            if (strcmp(name, expect[e].name)) continue;
            found = 1;
            int same = nd == expect[e].ndim;
            for (int k = 0; same && k < nd; k++) same = sh[k] == expect[e].shape[k];
            if (!same) {
                fprintf(stderr, "%s: wrong shape\n", name);
                return 0;
            }
        }
        if (!found) {
            fprintf(stderr, "missing %s\n", expect[e].name);
            return 0;
        }
    }
    return 1;
}

static void real_config(int arch) {
    sf_classifier_config_t c;
    if (arch == 0) sf_classifier_config_convnext_atto(&c, 1000), expect_convnext_atto();
    else sf_classifier_config_vit_tiny(&c, 1000), expect_vit_tiny();
    sf_classifier_t *m;
    char err[256];
    if (sf_classifier_new(&c, "cpu", 1, &m, err, sizeof err)) {
        fprintf(stderr, "%s\n", err);
        sf_test_cur_failed_ = 1;
        return;
    }
    CHECK(names_match(m));
    /* Counts derived by hand from the shapes above (timm: 3.7M and 5.7M). */
    CHECK_EQ_INT(sf_classifier_num_params(m), arch == 0 ? 3695520 : 5717416);
    float *px = calloc(3 * 224 * 224, sizeof(float));
    float *logits = malloc(sizeof(float) * 1000);
    int pred = -1;
    for (int i = 0; i < 3 * 224 * 224; i++) px[i] = cosf(i * 0.01f);
    CHECK_EQ_INT(sf_classifier_forward(m, px, 1, logits, &pred), 0);
    CHECK(pred >= 0 && pred < 1000);
    for (int i = 0; i < 1000; i++) CHECK(isfinite(logits[i]));
    free(px);
    free(logits);
    sf_classifier_free(&m);
    CHECK(m == NULL);
}

TEST(convnext_atto_names_and_forward) { real_config(0); }
TEST(vit_tiny_names_and_forward) { real_config(1); }

static void tiny(int arch, sf_classifier_config_t *c) {
    if (arch == 0) {
        sf_classifier_config_convnext_atto(c, 4);
        c->image_size = 16;
        c->stem_patch = 2;
        c->n_stages = 2;
        c->depths[0] = c->depths[1] = 1;
        c->dims[0] = 16, c->dims[1] = 32;
        c->conv_mlp = 0;
        c->ls_init = 0.1f;
    } else {
        sf_classifier_config_vit_tiny(c, 4);
        c->image_size = 16;
        c->patch_size = 4;
        c->width = 32;
        c->depth = 2;
        c->heads = 2;
    }
}

/* Four classes told apart by which quadrant is bright. */
static void toy_batch(float *px, int *labels, int B, int S, uint32_t seed) {
    for (int b = 0; b < B; b++) {
        int q = labels[b] = (int)((seed + b * 7u) % 4);
        for (int c = 0; c < 3; c++)
            for (int y = 0; y < S; y++)
                for (int x = 0; x < S; x++) {
                    int in = (y >= S / 2) == (q / 2) && (x >= S / 2) == (q % 2);
                    float noise = (float)(((seed * 31u + b * 17u + c * 13u + y * 5u + x) * 2654435761u) >> 24) / 255.0f;
                    px[((b * 3 + c) * S + y) * S + x] = (in ? 1.5f : -0.5f) + 0.3f * noise;
                }
    }
}

static void train_toy(int arch) {
    sf_classifier_config_t c;
    tiny(arch, &c);
    sf_classifier_t *m;
    char err[256];
    CHECK_EQ_INT(sf_classifier_new(&c, "cpu", 3, &m, err, sizeof err), 0);
    enum { B = 16 };
    float px[B * 3 * 16 * 16];
    int labels[B], pred[B];
    float loss = 0, first = 0;
    for (int s = 0; s < 150; s++) {
        toy_batch(px, labels, B, 16, (uint32_t)s);
        CHECK_EQ_INT(sf_classifier_train_step(m, px, labels, B, arch == 0 ? 3e-3f : 1e-3f, &loss, NULL), 0);
        if (s == 0) first = loss;
    }
    CHECK(loss < first);
    toy_batch(px, labels, B, 16, 1000);
    CHECK_EQ_INT(sf_classifier_forward(m, px, B, NULL, pred), 0);
    int right = 0;
    for (int b = 0; b < B; b++) right += pred[b] == labels[b];
    if (right < 14) fprintf(stderr, "arch %d: %d of 16 right, loss %.3f -> %.3f\n", arch, right, first, loss);
    CHECK(right >= 14);

    /* Round trip through a checkpoint. */
    char dir[] = "/tmp/sf_cls_XXXXXX", p[128];
    CHECK(mkdtemp(dir));
    snprintf(p, sizeof p, "%s/m.safetensors", dir);
    CHECK_EQ_INT(sf_classifier_save(m, p), 0);
    sf_classifier_t *n;
    CHECK_EQ_INT(sf_classifier_load(p, NULL, "cpu", &n, err, sizeof err), 0);
    float a[B * 4], b2[B * 4];
    CHECK_EQ_INT(sf_classifier_forward(m, px, B, a, NULL), 0);
    CHECK_EQ_INT(sf_classifier_forward(n, px, B, b2, NULL), 0);
    for (int i = 0; i < B * 4; i++) CHECK_NEAR(a[i], b2[i], 1e-6);
    sf_classifier_free(&n);
    /* A config that disagrees with the file is refused with the tensor's name. */
    sf_classifier_config_t d = c;
    d.n_classes = 5;
    CHECK_EQ_INT(sf_classifier_load(p, &d, "cpu", &n, err, sizeof err), SF_EFORMAT);
    CHECK(strstr(err, "head"));
    /* Truncated file. */
    FILE *f = fopen(p, "r+b");
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fclose(f);
    CHECK_EQ_INT(truncate(p, len - 10), 0);
    CHECK_EQ_INT(sf_classifier_load(p, NULL, "cpu", &n, err, sizeof err), SF_EFORMAT);
    CHECK(n == NULL);
    unlink(p);
    rmdir(dir);
    /* Bad labels and configs. */
    labels[0] = 4;
    CHECK_EQ_INT(sf_classifier_train_step(m, px, labels, B, 1e-3f, NULL, NULL), SF_EINVAL);
    CHECK(strstr(sf_classifier_errstr(m), "label"));
    sf_classifier_free(&m);
    d = c;
    if (arch == 0) d.n_stages = 9;
    else d.heads = 5;
    CHECK_EQ_INT(sf_classifier_new(&d, "cpu", 1, &m, err, sizeof err), SF_EINVAL);
}

TEST(convnext_learns_toy_task_and_round_trips) { train_toy(0); }
TEST(vit_learns_toy_task_and_round_trips) { train_toy(1); }

int main(void) {
    sf_ml_opts_t o = {.threads = 1, .quiet = 1};
    sf_ml_init(&o);
    SF_RUN(convnext_atto_names_and_forward);
    SF_RUN(vit_tiny_names_and_forward);
    SF_RUN(convnext_learns_toy_task_and_round_trips);
    SF_RUN(vit_learns_toy_task_and_round_trips);
    SF_DONE();
}
