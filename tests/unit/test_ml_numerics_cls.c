/* test_ml_numerics_cls: timm's ConvNeXt-Atto and ViT-Tiny and timm's
 * evaluation transform against an independent reference.
 *
 * tools/numerics/classifiers.py (/usr/bin/python3, regenerates everything)
 * ran torchvision's own ConvNeXt and VisionTransformer modules, configured
 * as convnext_atto and vit_tiny_patch16_224, on weights made by the shared
 * formula (tools/numerics/fill.py; here tests/unit/numerics_fill.h) under
 * timm's names, and on tests/fixtures/numerics/image.jpg preprocessed by
 * torchvision's transforms on a PIL image as timm evaluates.  The fixtures
 * hold the tensor list, the expected logits, the 8-bit centre crops, and
 * hashes of PIL resizes of the image.  Here:
 *   - the project's JPEG decoder gives PIL's pixels (hash);
 *   - common/image/resample.c gives PIL's resizes byte for byte (hashes of
 *     nine sizes, both filters, down, up, one axis, 1x1);
 *   - sf_classifier_preprocess gives torchvision's crop byte for byte and
 *     its normalised tensor bit for bit;
 *   - sf_classifier_forward on that tensor gives the reference logits within
 *     max|a - b| / max|b| <= 1e-4 (the fixture's logits_rel; fp32 sums in
 *     another order differ by ~1e-6);
 *   - and the check can fail: one weight deep in each net, moved by the
 *     fixture's delta, must push the same comparison over the tolerance.
 * The root is $SF_ROOT (tests/run.sh sets it) or the current directory. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/formats/safetensors.h"
#include "common/image/image.h"
#include "common/image/resample.h"
#include "common/runtime/error.h"
#include "common/runtime/fileio.h"
#include "ml/sf_ml.h"
#include "ml/sf_vision.h"
#include "numerics_fill.h"
#include "sf_test.h"

#define S 224

static void fixture_path(char *out, size_t n, const char *name) {
    const char *root = getenv("SF_ROOT") ? getenv("SF_ROOT") : ".";
    snprintf(out, n, "%s/tests/fixtures/numerics/%s", root, name);
}

static cJSON *load_json(const char *name) {
    char p[1024];
    fixture_path(p, sizeof p, name);
    char *text = sf_file_text(p, NULL);
    if (!text) {
        fprintf(stderr, "%s: cannot read\n", p);
        return NULL;
    }
    cJSON *o = cJSON_Parse(text);
    if (!o) fprintf(stderr, "%s: not JSON\n", p);
    free(text);
    return o;
}

static uint8_t *load_bytes(const char *name, size_t want) {
    char p[1024];
    size_t len = 0;
    fixture_path(p, sizeof p, name);
    char *b = sf_file_text(p, &len);
    if (b && len != want) {
        fprintf(stderr, "%s: %zu bytes, want %zu\n", p, len, want);
        free(b);
        return NULL;
    }
    return (uint8_t *)b;
}

static uint8_t *decode_image(const cJSON *img, int *w, int *h) {
    char p[1024], err[256];
    uint8_t *rgb = NULL;
    fixture_path(p, sizeof p, cJSON_GetObjectItem(img, "jpeg")->valuestring);
    if (sf_image_read(p, &rgb, w, h, err, sizeof err)) fprintf(stderr, "%s\n", err);
    return rgb;
}

static char *fnv_hex(const uint8_t *p, size_t n, char out[17]) {
    uint64_t h = 0xCBF29CE484222325ull;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 0x100000001B3ull;
    snprintf(out, 17, "%016llx", (unsigned long long)h);
    return out;
}

static double item_num(const cJSON *o, const char *k) { return cJSON_GetObjectItem(o, k)->valuedouble; }
static int item_int(const cJSON *o, const char *k) { return cJSON_GetObjectItem(o, k)->valueint; }

TEST(jpeg_decodes_as_pil_does) {
    cJSON *img = load_json("image.json");
    CHECK(img);
    int w = 0, h = 0;
    uint8_t *rgb = decode_image(img, &w, &h);
    CHECK(rgb);
    CHECK_EQ_INT(w, item_int(img, "w"));
    CHECK_EQ_INT(h, item_int(img, "h"));
    char hex[17];
    CHECK_EQ_STR(fnv_hex(rgb, (size_t)w * h * 3, hex), cJSON_GetObjectItem(img, "rgb_fnv1a64")->valuestring);
    free(rgb);
    cJSON_Delete(img);
}

TEST(resize_matches_pil_byte_for_byte) {
    cJSON *img = load_json("image.json");
    CHECK(img);
    int w, h, bad = 0;
    uint8_t *rgb = decode_image(img, &w, &h);
    CHECK(rgb);
    const cJSON *c;
    cJSON_ArrayForEach(c, cJSON_GetObjectItem(img, "resize")) {
        int ow = item_int(c, "w"), oh = item_int(c, "h");
        const char *f = cJSON_GetObjectItem(c, "filter")->valuestring;
        int filter = strcmp(f, "bicubic") ? SF_RESAMPLE_BILINEAR : SF_RESAMPLE_BICUBIC;
        uint8_t *out = malloc((size_t)ow * oh * 3);
        char hex[17];
        if (!out || sf_image_resize_pil(rgb, w, h, 3, ow, oh, filter, NULL, out)) bad++;
        else if (strcmp(fnv_hex(out, (size_t)ow * oh * 3, hex), cJSON_GetObjectItem(c, "fnv1a64")->valuestring)) {
            fprintf(stderr, "%dx%d %s: fnv %s, PIL's %s\n", ow, oh, f, hex,
                    cJSON_GetObjectItem(c, "fnv1a64")->valuestring);
            bad++;
        }
        /* A window is the same pixels as the full resize. */
        const sf_image_rect_t win = {ow / 3, oh / 4, ow - ow / 3 - ow / 5, oh - oh / 4};
        uint8_t *part = malloc((size_t)win.w * win.h * 3);
        if (out && part && sf_image_resize_pil(rgb, w, h, 3, ow, oh, filter, &win, part) == 0) {
            for (int y = 0; y < win.h; y++)
                if (memcmp(part + (size_t)y * win.w * 3, out + ((size_t)(y + win.y) * ow + win.x) * 3,
                           (size_t)win.w * 3)) {
                    fprintf(stderr, "%dx%d %s: window row %d differs\n", ow, oh, f, y);
                    bad++;
                    break;
                }
        } else bad++;
        free(part);
        free(out);
    }
    CHECK_EQ_INT(bad, 0);
    /* Bad arguments. */
    uint8_t px[3];
    const sf_image_rect_t outside = {1, 0, 1, 1};
    CHECK_EQ_INT(sf_image_resize_pil(rgb, w, h, 3, 1, 1, SF_RESAMPLE_BICUBIC, &outside, px), SF_EINVAL);
    CHECK_EQ_INT(sf_image_resize_pil(rgb, w, h, 5, 1, 1, SF_RESAMPLE_BICUBIC, NULL, px), SF_EINVAL);
    CHECK_EQ_INT(sf_image_resize_pil(rgb, w, h, 3, 1, 1, 7, NULL, px), SF_EINVAL);
    CHECK_EQ_INT(sf_image_resize_pil(rgb, w, h, 3, SF_RESAMPLE_MAX_DIM + 1, 1, SF_RESAMPLE_BICUBIC, NULL, px),
                 SF_ERANGE);
    free(rgb);
    cJSON_Delete(img);
}

typedef struct {
    const char *arch;
    void (*config)(sf_classifier_config_t *, int);
} arch_t;

static const arch_t ARCHS[2] = {{"convnext_atto", sf_classifier_config_convnext_atto},
                                {"vit_tiny_patch16_224", sf_classifier_config_vit_tiny}};

/* The stored crop as torchvision's ToTensor and Normalize make it. */
static void normalise(const sf_classifier_config_t *c, const uint8_t *crop, float *px) {
    for (size_t i = 0; i < (size_t)S * S; i++)
        for (int ch = 0; ch < 3; ch++)
            px[ch * S * S + i] = ((float)crop[i * 3 + ch] / 255.0f - c->mean[ch]) / c->std[ch];
}

static void preprocess(const arch_t *a) {
    char name[128];
    snprintf(name, sizeof name, "%s.json", a->arch);
    cJSON *fx = load_json(name), *img = load_json("image.json");
    CHECK(fx && img);
    const cJSON *pp = cJSON_GetObjectItem(fx, "preprocess");
    sf_classifier_config_t c;
    a->config(&c, 1000);
    /* The fixture was made with this config's crop_pct and normalisation. */
    CHECK((float)item_num(pp, "crop_pct") == c.crop_pct);
    CHECK_EQ_INT(c.interpolation, SF_INTERP_BICUBIC);
    for (int i = 0; i < 3; i++) {
        CHECK((float)cJSON_GetArrayItem(cJSON_GetObjectItem(pp, "mean"), i)->valuedouble == c.mean[i]);
        CHECK((float)cJSON_GetArrayItem(cJSON_GetObjectItem(pp, "std"), i)->valuedouble == c.std[i]);
    }
    snprintf(name, sizeof name, "%s.crop.rgb", a->arch);
    uint8_t *crop = load_bytes(name, (size_t)S * S * 3);
    CHECK(crop);
    int w, h;
    uint8_t *rgb = decode_image(img, &w, &h);
    CHECK(rgb);

    /* The resampler alone, on the reference's resize size and window. */
    const cJSON *rs = cJSON_GetObjectItem(pp, "resized");
    const sf_image_rect_t win = {item_int(pp, "crop_left"), item_int(pp, "crop_top"), S, S};
    uint8_t *mine = malloc((size_t)S * S * 3);
    CHECK(mine);
    CHECK_EQ_INT(sf_image_resize_pil(rgb, w, h, 3, cJSON_GetArrayItem(rs, 0)->valueint,
                                     cJSON_GetArrayItem(rs, 1)->valueint, SF_RESAMPLE_BICUBIC, &win, mine), 0);
    int differ = 0, worst = 0;
    for (size_t i = 0; i < (size_t)S * S * 3; i++) {
        int d = abs((int)mine[i] - (int)crop[i]);
        differ += d != 0;
        worst = d > worst ? d : worst;
    }
    if (differ) fprintf(stderr, "%s: %d crop bytes differ from PIL's, by up to %d\n", a->arch, differ, worst);
    CHECK_EQ_INT(differ, 0);

    /* The whole transform: sizes, window, normalisation, to the bit. */
    float *got = malloc(sizeof(float) * 3 * S * S), *want = malloc(sizeof(float) * 3 * S * S);
    CHECK(got && want);
    normalise(&c, crop, want);
    CHECK_EQ_INT(sf_classifier_preprocess(&c, rgb, w, h, got), 0);
    differ = 0;
    for (int i = 0; i < 3 * S * S; i++) differ += got[i] != want[i];
    if (differ) fprintf(stderr, "%s: %d of %d values differ from torchvision's tensor\n", a->arch, differ, 3 * S * S);
    CHECK_EQ_INT(differ, 0);
    CHECK_EQ_INT(sf_classifier_preprocess(&c, rgb, 0, h, got), SF_EINVAL);
    free(got);
    free(want);
    free(mine);
    free(rgb);
    free(crop);
    cJSON_Delete(fx);
    cJSON_Delete(img);
}

TEST(convnext_atto_preprocess_matches_torchvision) { preprocess(&ARCHS[0]); }

/* timm sizes with floor(224 / 0.8) in double: 280, where the float 0.8f
 * (0.800000012) would give 279.  The 300x240 image then resizes to 350x280
 * (torchvision: int(280 * 300 / 240)) and the crop starts at round(126 / 2)
 * = 63, round(56 / 2) = 28 (sizes by hand). */
TEST(crop_pct_is_taken_as_its_decimal) {
    cJSON *img = load_json("image.json");
    CHECK(img);
    int w, h;
    uint8_t *rgb = decode_image(img, &w, &h);
    cJSON_Delete(img);
    CHECK(rgb && w == 300 && h == 240);
    sf_classifier_config_t c;
    sf_classifier_config_convnext_atto(&c, 1000);
    c.crop_pct = 0.8f;
    const sf_image_rect_t win = {63, 28, S, S};
    uint8_t *crop = malloc((size_t)S * S * 3);
    float *got = malloc(sizeof(float) * 3 * S * S), *want = malloc(sizeof(float) * 3 * S * S);
    CHECK(crop && got && want);
    CHECK_EQ_INT(sf_image_resize_pil(rgb, w, h, 3, 350, 280, SF_RESAMPLE_BICUBIC, &win, crop), 0);
    normalise(&c, crop, want);
    CHECK_EQ_INT(sf_classifier_preprocess(&c, rgb, w, h, got), 0);
    CHECK(memcmp(got, want, sizeof(float) * 3 * S * S) == 0);
    free(crop);
    free(got);
    free(want);
    free(rgb);
}
TEST(vit_tiny_preprocess_matches_torchvision) { preprocess(&ARCHS[1]); }

/* Writes the fixture's tensors (timm names) from buf to path. */
static int write_weights(const cJSON *tensors, const float *buf, const char *path) {
    sf_st_writer_t *wr;
    int rc = sf_st_writer_new(&wr);
    size_t off = 0;
    const cJSON *t;
    cJSON_ArrayForEach(t, tensors) {
        if (rc) break;
        int64_t shape[4];
        int nd = 0;
        size_t n = 1;
        const cJSON *d;
        cJSON_ArrayForEach(d, cJSON_GetObjectItem(t, "shape")) n *= (size_t)(shape[nd++] = (int64_t)d->valuedouble);
        rc = sf_st_writer_add(wr, cJSON_GetObjectItem(t, "name")->valuestring, SF_ST_F32, nd, shape, buf + off,
                              n * sizeof(float));
        off += n;
    }
    if (rc == 0) rc = sf_st_writer_save(wr, path);
    sf_st_writer_free(&wr);
    return rc;
}

/* Loads path as the arch and returns max|logits - ref| / max|ref| on px, or
 * -1 on an error. */
static double rel_err_of(const arch_t *a, const char *path, const float *px, const float *ref) {
    sf_classifier_config_t c;
    a->config(&c, 1000);
    sf_classifier_t *m;
    char err[256];
    if (sf_classifier_load(path, &c, "cpu", &m, err, sizeof err)) {
        fprintf(stderr, "%s\n", err);
        return -1;
    }
    float logits[1000];
    double num = 0, den = 0;
    int rc = sf_classifier_forward(m, px, 1, logits, NULL);
    if (rc) fprintf(stderr, "forward: %s\n", sf_classifier_errstr(m));
    sf_classifier_free(&m);
    if (rc) return -1;
    for (int i = 0; i < 1000; i++) {
        num = fmax(num, fabs((double)logits[i] - ref[i]));
        den = fmax(den, fabs((double)ref[i]));
    }
    return num / den;
}

static void logits(const arch_t *a) {
    char name[128];
    snprintf(name, sizeof name, "%s.json", a->arch);
    cJSON *fx = load_json(name);
    CHECK(fx);
    const cJSON *tensors = cJSON_GetObjectItem(fx, "tensors"), *t;
    const double tol = item_num(cJSON_GetObjectItem(fx, "tolerance"), "logits_rel");
    CHECK(tol == 1e-4);

    /* The weights, from the formula, one buffer in the list's order. */
    size_t total = 0;
    cJSON_ArrayForEach(t, tensors) {
        size_t n = 1;
        const cJSON *d;
        cJSON_ArrayForEach(d, cJSON_GetObjectItem(t, "shape")) n *= (size_t)d->valuedouble;
        total += n;
    }
    float *buf = malloc(sizeof(float) * total);
    CHECK(buf);
    const cJSON *pert = cJSON_GetObjectItem(fx, "perturb");
    size_t off = 0, pert_at = SIZE_MAX;
    cJSON_ArrayForEach(t, tensors) {
        size_t n = 1;
        const cJSON *d;
        cJSON_ArrayForEach(d, cJSON_GetObjectItem(t, "shape")) n *= (size_t)d->valuedouble;
        const char *tn = cJSON_GetObjectItem(t, "name")->valuestring;
        nf_fill(tn, buf + off, n, item_num(t, "scale"), item_num(t, "offset"));
        if (!strcmp(tn, cJSON_GetObjectItem(pert, "name")->valuestring)) pert_at = off + (size_t)item_int(pert, "index");
        off += n;
    }
    CHECK(pert_at < total);

    snprintf(name, sizeof name, "%s.crop.rgb", a->arch);
    uint8_t *crop = load_bytes(name, (size_t)S * S * 3);
    CHECK(crop);
    sf_classifier_config_t c;
    a->config(&c, 1000);
    float *px = malloc(sizeof(float) * 3 * S * S), ref[1000];
    CHECK(px);
    normalise(&c, crop, px);
    const cJSON *row = cJSON_GetArrayItem(cJSON_GetObjectItem(fx, "logits"), 0);
    CHECK_EQ_INT(cJSON_GetArraySize(row), 1000);
    for (int i = 0; i < 1000; i++) ref[i] = (float)cJSON_GetArrayItem(row, i)->valuedouble;

    char dir[] = "/tmp/sf_numcls_XXXXXX", path[128];
    CHECK(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/%s.safetensors", dir, a->arch);
    int wrc = write_weights(tensors, buf, path);
    double e = wrc ? -1 : rel_err_of(a, path, px, ref);
    fprintf(stderr, "%s: logits rel err %.3g (tolerance %g)\n", a->arch, e, tol);

    /* The same comparison must fail on one changed weight. */
    buf[pert_at] += (float)item_num(pert, "delta");
    wrc = write_weights(tensors, buf, path);
    double ep = wrc ? -1 : rel_err_of(a, path, px, ref);
    fprintf(stderr, "%s: %s[%d] + %g: rel err %.3g (torchvision: %.3g)\n", a->arch,
            cJSON_GetObjectItem(pert, "name")->valuestring, item_int(pert, "index"), item_num(pert, "delta"), ep,
            item_num(pert, "rel_err"));
    unlink(path);
    rmdir(dir);
    free(buf);
    free(px);
    free(crop);
    cJSON_Delete(fx);
    CHECK(e >= 0 && e <= tol);
    CHECK(ep > tol);
}

TEST(convnext_atto_logits_match_torchvision) { logits(&ARCHS[0]); }
TEST(vit_tiny_logits_match_torchvision) { logits(&ARCHS[1]); }

int main(void) {
    sf_ml_opts_t o = {.threads = 1, .quiet = 1};
    sf_ml_init(&o);
    SF_RUN(jpeg_decodes_as_pil_does);
    SF_RUN(resize_matches_pil_byte_for_byte);
    SF_RUN(convnext_atto_preprocess_matches_torchvision);
    SF_RUN(vit_tiny_preprocess_matches_torchvision);
    SF_RUN(crop_pct_is_taken_as_its_decimal);
    SF_RUN(convnext_atto_logits_match_torchvision);
    SF_RUN(vit_tiny_logits_match_torchvision);
    SF_DONE();
}
