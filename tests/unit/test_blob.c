/* Unit tests for common/blob: CRC-32 against known values, and chunked
 * images reassembled in any order, with bad chunks refused. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "common/net/blob.h"
#include "common/runtime/error.h"
#include "common/net/wire.h"
#include "sf_test.h"

TEST(crc32_known_values) {
    /* The check value of CRC-32/ISO-HDLC. */
    CHECK_EQ_INT(sf_crc32(0, "123456789", 9), 0xCBF43926u);
    CHECK_EQ_INT(sf_crc32(0, "", 0), 0);
    /* Incremental equals whole. */
    CHECK_EQ_INT(sf_crc32(sf_crc32(0, "12345", 5), "6789", 4), 0xCBF43926u);
}

TEST(crc32_of_a_file) {
    /* Read in pieces, the file's CRC is its bytes' CRC (3 MiB + 7: several
     * pieces and a short one). */
    size_t n = 3 * (1 << 20) + 7;
    char path[] = "/tmp/sf-test-crc.XXXXXX";
    uint8_t *b = sf_test_pattern_file(path, n);
    CHECK(b != NULL);
    uint32_t crc = 0;
    CHECK_EQ_INT(sf_crc32_file(path, &crc), 0);
    CHECK_EQ_INT(crc, sf_crc32(0, b, n));
    /* Chained over two files as over their concatenation. */
    uint32_t two = sf_crc32(0, "abc", 3);
    CHECK_EQ_INT(sf_crc32_file(path, &two), 0);
    uint32_t want = sf_crc32(sf_crc32(0, "abc", 3), b, n);
    CHECK_EQ_INT(two, want);
    unlink(path);
    CHECK_EQ_INT(sf_crc32_file(path, &crc), -1);
    CHECK_EQ_INT(errno, ENOENT);
    free(b);
}

TEST(reassembles_out_of_order) {
    size_t n = 2 * SF_WIRE_CHUNK + 12345;
    uint8_t *img = malloc(n);
    for (size_t i = 0; i < n; i++) img[i] = (uint8_t)(i * 31 + 7);
    uint32_t crc = sf_crc32(0, img, n);
    sf_blob_asm_t a = {0};
    char err[200];
    int order[] = {2, 0, 0, 1};
    int rc = 0;
    for (int k = 0; k < 4; k++) {
        uint32_t i = (uint32_t)order[k];
        size_t len = i == 2 ? 12345 : SF_WIRE_CHUNK;
        rc = sf_blob_asm_add(&a, 5, i, 3, n, crc, img + (size_t)i * SF_WIRE_CHUNK, len, err, sizeof err);
        CHECK(rc >= 0);
    }
    CHECK_EQ_INT(rc, 1);
    uint8_t *out;
    size_t len;
    sf_blob_asm_take(&a, &out, &len);
    CHECK_EQ_INT(len, n);
    CHECK(memcmp(out, img, n) == 0);
    free(out);
    /* A corrupted chunk fails the CRC. */
    img[5] ^= 1;
    for (uint32_t i = 0; i < 3; i++)
        rc = sf_blob_asm_add(&a, 6, i, 3, n, crc, img + (size_t)i * SF_WIRE_CHUNK, i == 2 ? 12345 : SF_WIRE_CHUNK,
                             err, sizeof err);
    CHECK_EQ_INT(rc, SF_EFORMAT);
    CHECK(strstr(err, "CRC"));
    /* A short chunk, a lying count and a contradiction are refused. */
    CHECK_EQ_INT(sf_blob_asm_add(&a, 7, 0, 3, n, crc, img, 10, err, sizeof err), SF_EFORMAT);
    CHECK_EQ_INT(sf_blob_asm_add(&a, 7, 0, 1, n, crc, img, SF_WIRE_CHUNK, err, sizeof err), SF_EFORMAT);
    CHECK_EQ_INT(sf_blob_asm_add(&a, 8, 0, 3, n, crc, img, SF_WIRE_CHUNK, err, sizeof err), 0);
    CHECK_EQ_INT(sf_blob_asm_add(&a, 8, 1, 3, n, crc + 1, img, SF_WIRE_CHUNK, err, sizeof err), SF_EFORMAT);
    sf_blob_asm_reset(&a);
    free(img);
}

TEST(refuses_an_image_over_the_limit) {
    /* A chunk's header alone must not make a worker allocate gigabytes: the
     * first chunk of an image one byte over SF_BLOB_MAX_LEN is refused,
     * though whole and in place (without the limit it is taken, the whole
     * image allocated, and the rest awaited), naming the limit. */
    uint8_t *chunk = calloc(SF_WIRE_CHUNK, 1);
    CHECK(chunk != NULL);
    sf_blob_asm_t a = {0};
    char err[200] = "";
    uint64_t total = SF_BLOB_MAX_LEN + 1;
    uint32_t count = (uint32_t)((total + SF_WIRE_CHUNK - 1) / SF_WIRE_CHUNK);
    CHECK_EQ_INT(sf_blob_asm_add(&a, 1, 0, count, total, 0, chunk, SF_WIRE_CHUNK, err, sizeof err), SF_EFORMAT);
    CHECK(strstr(err, "limit"));
    CHECK(a.data == NULL && a.have == NULL);
    /* The most a header can claim (4 PiB), a full last chunk: the same. */
    count = 0xffffffffu;
    total = (uint64_t)count * SF_WIRE_CHUNK;
    CHECK_EQ_INT(sf_blob_asm_add(&a, 2, count - 1, count, total, 0, chunk, SF_WIRE_CHUNK, err, sizeof err), SF_EFORMAT);
    CHECK(a.data == NULL && a.have == NULL);
    /* An image of exactly the limit is taken (its last chunk, awaiting the rest). */
    count = (uint32_t)(SF_BLOB_MAX_LEN / SF_WIRE_CHUNK);
    CHECK_EQ_INT(sf_blob_asm_add(&a, 3, count - 1, count, SF_BLOB_MAX_LEN, 0, chunk, SF_WIRE_CHUNK, err, sizeof err), 0);
    CHECK_EQ_INT(a.total_len, SF_BLOB_MAX_LEN);
    sf_blob_asm_reset(&a);
    free(chunk);
}

int main(void) {
    SF_RUN(crc32_known_values);
    SF_RUN(crc32_of_a_file);
    SF_RUN(reassembles_out_of_order);
    SF_RUN(refuses_an_image_over_the_limit);
    SF_DONE();
}
