/* test_safetensors.c: round trips, half-precision conversions, and files
 * that are truncated or lie about themselves. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/runtime/error.h"
#include "common/formats/safetensors.h"
#include "tests/unit/sf_test.h"

static uint8_t *image(size_t *len) {
    static float w[2][3] = {{1, -2, 3.5f}, {0.25f, -0.125f, 1e-3f}};
    static uint16_t h[4], bh[4];
    static int32_t ids[3] = {7, -1, 50256};
    const float hv[4] = {1.0f, -2.5f, 65504.0f, 6.1035156e-05f};
    for (int i = 0; i < 4; i++) {
        h[i] = sf_st_f32_to_f16(hv[i]);
        bh[i] = sf_st_f32_to_bf16(hv[i]);
    }
    sf_st_writer_t *wr;
    if (sf_st_writer_new(&wr)) return NULL;
    int64_t s23[2] = {2, 3}, s4[1] = {4}, s3[1] = {3}, s0[2] = {0, 5};
    int rc = sf_st_writer_add(wr, "h.0.attn.c_attn.weight", SF_ST_F32, 2, s23, w, sizeof w);
    rc |= sf_st_writer_add(wr, "half", SF_ST_F16, 1, s4, h, sizeof h);
    rc |= sf_st_writer_add(wr, "bhalf", SF_ST_BF16, 1, s4, bh, sizeof bh);
    rc |= sf_st_writer_add(wr, "ids", SF_ST_I32, 1, s3, ids, sizeof ids);
    rc |= sf_st_writer_add(wr, "empty", SF_ST_F32, 2, s0, NULL, 0);
    rc |= sf_st_writer_meta(wr, "format", "pt");
    uint8_t *buf = NULL;
    if (rc == 0) rc = sf_st_writer_bytes(wr, &buf, len);
    sf_st_writer_free(&wr);
    return rc ? NULL : buf;
}

TEST(test_roundtrip) {
    size_t len;
    uint8_t *buf = image(&len);
    CHECK(buf);
    uint64_t hl;
    memcpy(&hl, buf, 8);
    CHECK_EQ_INT(hl % 8, 0);
    char err[256];
    sf_st_t *st;
    CHECK_EQ_INT(sf_st_parse(buf, len, 1, &st, err, sizeof err), 0);
    free(buf);   /* the copy must not depend on it */
    CHECK_EQ_INT(sf_st_count(st), 5);
    CHECK_EQ_STR(sf_st_meta(st, "format"), "pt");
    CHECK(sf_st_meta(st, "nope") == NULL);
    const sf_st_tensor_t *t = sf_st_find(st, "h.0.attn.c_attn.weight");
    CHECK(t && t->dtype == SF_ST_F32 && t->ndim == 2 && t->shape[0] == 2 && t->shape[1] == 3);
    float f[6];
    CHECK_EQ_INT(sf_st_to_f32(t, f, 6), 0);
    CHECK(f[2] == 3.5f && f[5] == 1e-3f);
    CHECK_EQ_INT(sf_st_to_f32(t, f, 5), SF_EINVAL);
    t = sf_st_find(st, "half");
    CHECK_EQ_INT(sf_st_to_f32(t, f, 4), 0);
    CHECK(f[0] == 1.0f && f[1] == -2.5f && f[2] == 65504.0f);
    CHECK_NEAR(f[3], 6.1035156e-05, 1e-9);
    t = sf_st_find(st, "bhalf");
    CHECK_EQ_INT(sf_st_to_f32(t, f, 4), 0);
    CHECK(f[0] == 1.0f && f[1] == -2.5f);
    CHECK_NEAR(f[2], 65504.0, 300);
    t = sf_st_find(st, "ids");
    CHECK(t && t->dtype == SF_ST_I32 && t->numel == 3);
    int32_t ids[3];
    memcpy(ids, t->data, sizeof ids);
    CHECK(ids[2] == 50256);
    CHECK_EQ_INT(sf_st_to_f32(t, f, 3), SF_EUNSUPPORTED);
    t = sf_st_find(st, "empty");
    CHECK(t && t->numel == 0 && t->nbytes == 0);
    sf_st_free(&st);
    CHECK(st == NULL);
}

TEST(test_half_conversions) {
    /* Exact values, rounding to nearest even, overflow, subnormals. */
    CHECK_EQ_INT(sf_st_f32_to_f16(1.0f), 0x3C00);
    CHECK_EQ_INT(sf_st_f32_to_f16(-2.0f), 0xC000);
    CHECK_EQ_INT(sf_st_f32_to_f16(65504.0f), 0x7BFF);
    CHECK_EQ_INT(sf_st_f32_to_f16(1e6f), 0x7C00);
    CHECK_EQ_INT(sf_st_f32_to_f16(1.0f + 1.0f / 2048), 0x3C00);   /* tie to even */
    CHECK_EQ_INT(sf_st_f32_to_f16(5.9604645e-08f), 0x0001);       /* smallest subnormal */
    CHECK(sf_st_f16_to_f32(0x0001) == 5.9604645e-08f);
    CHECK(sf_st_f16_to_f32(0x3555) > 0.333f && sf_st_f16_to_f32(0x3555) < 0.334f);
    for (uint32_t h = 0; h < 0x7C00; h++)   /* every finite positive half round-trips */
        CHECK_EQ_INT(sf_st_f32_to_f16(sf_st_f16_to_f32((uint16_t)h)), h);
    CHECK_EQ_INT(sf_st_f32_to_bf16(1.0f), 0x3F80);
    CHECK(sf_st_bf16_to_f32(0xC020) == -2.5f);
}

TEST(test_every_truncation_is_an_error) {
    size_t len;
    uint8_t *buf = image(&len);
    CHECK(buf);
    int ok = 0;
    for (size_t l = 0; l < len; l++) {
        /* A fresh heap copy of exactly l bytes so that ASan sees any overread. */
        uint8_t *c = malloc(l ? l : 1);
        memcpy(c, buf, l);
        sf_st_t *st = NULL;
        char err[256];
        int rc = sf_st_parse(c, l, 0, &st, err, sizeof err);
        if (rc == 0) ok++;
        else if (rc != SF_EFORMAT) ok += 1000;
        sf_st_free(&st);
        free(c);
    }
    free(buf);
    CHECK_EQ_INT(ok, 0);
}

static int parse_header(const char *json, size_t data_len, char *err, size_t errlen) {
    size_t hl = strlen(json);
    uint8_t *b = calloc(1, 8 + hl + data_len);
    uint64_t h = hl;
    memcpy(b, &h, 8);
    memcpy(b + 8, json, hl);
    sf_st_t *st = NULL;
    int rc = sf_st_parse(b, 8 + hl + data_len, 0, &st, err, errlen);
    sf_st_free(&st);
    free(b);
    return rc;
}

TEST(test_lying_headers) {
    char err[256];
    CHECK_EQ_INT(parse_header("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8,
                              err, sizeof err), 0);
    /* offsets past the end of the data */
    CHECK_EQ_INT(parse_header("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,16]}}", 8,
                              err, sizeof err), SF_EFORMAT);
    CHECK(strstr(err, "'a'") != NULL);
    /* shape disagrees with the byte count */
    CHECK_EQ_INT(parse_header("{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 16,
                              err, sizeof err), SF_EFORMAT);
    /* a shape whose product overflows 64 bits */
    CHECK_EQ_INT(parse_header("{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,16],"
                              "\"data_offsets\":[0,0]}}", 8, err, sizeof err), SF_EFORMAT);
    /* reversed and negative offsets, unknown dtype, missing fields */
    CHECK_EQ_INT(parse_header("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,4]}}", 8,
                              err, sizeof err), SF_EFORMAT);
    CHECK_EQ_INT(parse_header("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[-4,0]}}", 8,
                              err, sizeof err), SF_EFORMAT);
    CHECK_EQ_INT(parse_header("{\"a\":{\"dtype\":\"F7\",\"shape\":[1],\"data_offsets\":[0,4]}}", 8,
                              err, sizeof err), SF_EFORMAT);
    CHECK_EQ_INT(parse_header("{\"a\":{\"shape\":[1]}}", 8, err, sizeof err), SF_EFORMAT);
    CHECK_EQ_INT(parse_header("[1,2]", 8, err, sizeof err), SF_EFORMAT);
    CHECK_EQ_INT(parse_header("{\"__metadata__\":{\"k\":3}}", 0, err, sizeof err), SF_EFORMAT);
    /* a header length larger than the file */
    uint8_t b[16] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f};
    sf_st_t *st;
    CHECK_EQ_INT(sf_st_parse(b, sizeof b, 0, &st, err, sizeof err), SF_EFORMAT);
}

TEST(test_writer_rejects) {
    sf_st_writer_t *w;
    CHECK_EQ_INT(sf_st_writer_new(&w), 0);
    float x[4] = {0};
    int64_t s[1] = {4};
    CHECK_EQ_INT(sf_st_writer_add(w, "x", SF_ST_F32, 1, s, x, sizeof x), 0);
    CHECK_EQ_INT(sf_st_writer_add(w, "x", SF_ST_F32, 1, s, x, sizeof x), SF_EEXIST);
    CHECK_EQ_INT(sf_st_writer_add(w, "y", SF_ST_F32, 1, s, x, 8), SF_EINVAL);
    CHECK_EQ_INT(sf_st_writer_add(w, "__metadata__", SF_ST_F32, 1, s, x, sizeof x), SF_EINVAL);
    sf_st_writer_free(&w);
    CHECK(w == NULL);
}

TEST(test_save_load_file) {
    char path[] = "/tmp/sf_st_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    close(fd);
    sf_st_writer_t *w;
    CHECK_EQ_INT(sf_st_writer_new(&w), 0);
    float x[5] = {1, 2, 3, 4, 5};
    int64_t s[1] = {5};
    CHECK_EQ_INT(sf_st_writer_add(w, "wte.weight", SF_ST_F32, 1, s, x, sizeof x), 0);
    CHECK_EQ_INT(sf_st_writer_save(w, path), 0);
    sf_st_writer_free(&w);
    sf_st_t *st;
    char err[256];
    CHECK_EQ_INT(sf_st_load(path, &st, err, sizeof err), 0);
    float y[5];
    CHECK_EQ_INT(sf_st_to_f32(sf_st_find(st, "wte.weight"), y, 5), 0);
    CHECK(memcmp(x, y, sizeof x) == 0);
    sf_st_free(&st);
    /* The same file cut short is refused with the path in the message. */
    CHECK_EQ_INT(truncate(path, 20), 0);
    CHECK_EQ_INT(sf_st_load(path, &st, err, sizeof err), SF_EFORMAT);
    CHECK(strstr(err, path) != NULL);
    unlink(path);
    CHECK_EQ_INT(sf_st_load(path, &st, err, sizeof err), SF_EIO);
}

/* Writes a shard holding tensors named names[0..n) of 3 floats each. */
static void write_shard(const char *path, const char *const *names, int n, float base) {
    sf_st_writer_t *w;
    float v[8][3];
    int64_t s[1] = {3};
    if (sf_st_writer_new(&w)) return;
    sf_st_writer_meta(w, "format", "pt");
    for (int i = 0; i < n; i++) {
        for (int j = 0; j < 3; j++) v[i][j] = base + 10 * i + j;
        sf_st_writer_add(w, names[i], SF_ST_F32, 1, s, v[i], sizeof v[i]);
    }
    sf_st_writer_save(w, path);
    sf_st_writer_free(&w);
}

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    if (f) fputs(text, f), fclose(f);
}

TEST(test_sharded) {
    /* A Hugging Face sharded checkpoint: an index and two shards beside it
     * load as one view; a lying or escaping index is an error naming it. */
    char dir[] = "/tmp/sf_shard_XXXXXX", p[512], idx[512];
    CHECK(mkdtemp(dir) != NULL);
    const char *a[] = {"h.0.w", "h.0.b"}, *b[] = {"h.1.w"};
    snprintf(p, sizeof p, "%s/model-00001-of-00002.safetensors", dir);
    write_shard(p, a, 2, 0);
    snprintf(p, sizeof p, "%s/model-00002-of-00002.safetensors", dir);
    write_shard(p, b, 1, 100);
    snprintf(idx, sizeof idx, "%s/model.safetensors.index.json", dir);
    write_text(idx, "{\"metadata\":{\"total_size\":36},\"weight_map\":{\"h.0.w\":\"model-00001-of-00002.safetensors\","
                    "\"h.0.b\":\"model-00001-of-00002.safetensors\",\"h.1.w\":\"model-00002-of-00002.safetensors\"}}");
    sf_st_t *st;
    char err[512] = "";
    CHECK_EQ_INT(sf_st_load(idx, &st, err, sizeof err), 0);
    CHECK_EQ_INT(sf_st_count(st), 3);
    float y[3];
    CHECK_EQ_INT(sf_st_to_f32(sf_st_find(st, "h.0.b"), y, 3), 0);
    CHECK_NEAR(y[2], 12, 0);
    CHECK_EQ_INT(sf_st_to_f32(sf_st_find(st, "h.1.w"), y, 3), 0);
    CHECK_NEAR(y[0], 100, 0);
    CHECK_EQ_STR(sf_st_meta(st, "format"), "pt");
    sf_st_free(&st);
    /* The folder's weights are the index (no model.safetensors), made of the
     * index and its two shards, in the order it names them. */
    char w[600];
    CHECK_EQ_INT(sf_st_folder_weights(dir, w, sizeof w), 0);
    CHECK_EQ_STR(w, idx);
    char **files;
    int nf;
    CHECK_EQ_INT(sf_st_files(idx, &files, &nf, err, sizeof err), 0);
    CHECK_EQ_INT(nf, 3);
    CHECK_EQ_STR(files[0], idx);
    CHECK(strstr(files[1], "/model-00001-of-00002.safetensors") != NULL);
    CHECK(strstr(files[2], "/model-00002-of-00002.safetensors") != NULL);
    sf_st_files_free(files, nf);
    CHECK_EQ_INT(sf_st_files(p, &files, &nf, err, sizeof err), 0);   /* a single file is itself */
    CHECK_EQ_INT(nf, 1);
    CHECK_EQ_STR(files[0], p);
    sf_st_files_free(files, nf);
    snprintf(w, sizeof w, "%s/model.safetensors", dir);
    write_shard(w, b, 1, 0);   /* a single file wins over an index */
    CHECK_EQ_INT(sf_st_folder_weights(dir, w, sizeof w), 0);
    CHECK(strstr(w, "/model.safetensors") && !strstr(w, "index"));
    unlink(w);
    CHECK_EQ_INT(sf_st_folder_weights("/nonexistent-sf", w, sizeof w), SF_ENOTFOUND);
    static const struct { const char *index, *want; } bad[] = {
        {"{\"weight_map\":{\"h.0.w\":\"../model-00001-of-00002.safetensors\"}}", "not a .safetensors file name"},
        {"{\"weight_map\":{\"h.0.w\":\"/etc/passwd\"}}", "not a .safetensors file name"},
        {"{\"weight_map\":{\"h.0.w\":\"missing.safetensors\"}}", "missing.safetensors"},
        {"{\"weight_map\":{\"h.1.b\":\"model-00002-of-00002.safetensors\"}}",
         "puts tensor 'h.1.b' in model-00002-of-00002.safetensors, which lacks it"},
        {"{\"weight_map\":{}}", "no \"weight_map\""},
        {"[1,2", "no \"weight_map\""},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        write_text(idx, bad[i].index);
        err[0] = 0;
        CHECK(sf_st_load(idx, &st, err, sizeof err) != 0);
        CHECK(st == NULL);
        if (strstr(bad[i].want, "file name") || strstr(bad[i].want, "weight_map")) {   /* the list checks these too */
            char **f2;
            int n2;
            CHECK(sf_st_files(idx, &f2, &n2, err, sizeof err) != 0);
            CHECK(f2 == NULL && n2 == 0);
        }
        if (!strstr(err, bad[i].want)) fprintf(stderr, "# %s: got '%s'\n", bad[i].index, err);
        CHECK(strstr(err, bad[i].want) != NULL);
    }
    /* The same tensor in two shards. */
    snprintf(p, sizeof p, "%s/model-00002-of-00002.safetensors", dir);
    write_shard(p, a, 1, 5);
    write_text(idx, "{\"weight_map\":{\"h.0.w\":\"model-00001-of-00002.safetensors\","
                    "\"h.0.b\":\"model-00002-of-00002.safetensors\"}}");
    CHECK(sf_st_load(idx, &st, err, sizeof err) != 0);
    CHECK(strstr(err, "tensor 'h.0.w' is in two shards") != NULL);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK_EQ_INT(system(cmd), 0);
}

int main(void) {
    SF_RUN(test_roundtrip);
    SF_RUN(test_half_conversions);
    SF_RUN(test_every_truncation_is_an_error);
    SF_RUN(test_lying_headers);
    SF_RUN(test_writer_rejects);
    SF_RUN(test_save_load_file);
    SF_RUN(test_sharded);
    SF_DONE();
}
