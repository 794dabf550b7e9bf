/* Unit tests for common/png: round trips in files and memory for gray, RGB
 * and RGBA, and corrupt input rejected with SF_EFORMAT, never a crash. */
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

#include "common/runtime/error.h"
#include "common/image/png.h"
#include "sf_test.h"

static void pattern(uint8_t *p, int w, int h, int ch) {
    for (int i = 0; i < w * h * ch; i++) p[i] = (uint8_t)(i * 37 + (i / 7) * 11);
}

TEST(rgb_file_round_trip) {
    char path[] = "/tmp/sf_png_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    close(fd);
    int w = 37, h = 23;
    uint8_t src[37 * 23 * 3];
    pattern(src, w, h, 3);
    CHECK_EQ_INT(sf_png_write(path, src, w, h, 3), 0);
    uint8_t *pix = NULL;
    int rw, rh;
    CHECK_EQ_INT(sf_png_read(path, &pix, &rw, &rh, NULL, 0), 0);
    CHECK_EQ_INT(rw, w);
    CHECK_EQ_INT(rh, h);
    CHECK(memcmp(pix, src, sizeof src) == 0);
    free(pix);
    unlink(path);
}

/* Gray and RGBA become RGB on read: gray replicated, alpha dropped. */
TEST(gray_and_rgba_read_as_rgb) {
    uint8_t g[5 * 4], rgba[5 * 4 * 4];
    pattern(g, 5, 4, 1);
    pattern(rgba, 5, 4, 4);
    uint8_t *buf = NULL, *pix = NULL;
    size_t len;
    int w, h;
    CHECK_EQ_INT(sf_png_encode(g, 5, 4, 1, &buf, &len), 0);
    CHECK_EQ_INT(sf_png_decode(buf, len, &pix, &w, &h, NULL, 0), 0);
    CHECK_EQ_INT(w * h, 20);
    for (int i = 0; i < 20; i++) CHECK(pix[3 * i] == g[i] && pix[3 * i + 1] == g[i] && pix[3 * i + 2] == g[i]);
    free(buf);
    free(pix);
    CHECK_EQ_INT(sf_png_encode(rgba, 5, 4, 4, &buf, &len), 0);
    CHECK_EQ_INT(sf_png_decode(buf, len, &pix, &w, &h, NULL, 0), 0);
    for (int i = 0; i < 20; i++) CHECK(memcmp(pix + 3 * i, rgba + 4 * i, 3) == 0);
    free(buf);
    free(pix);
}

TEST(corrupt_input_is_rejected) {
    uint8_t src[16 * 16 * 3];
    pattern(src, 16, 16, 3);
    uint8_t *buf = NULL, *pix = NULL;
    size_t len;
    int w, h;
    char err[200];
    CHECK_EQ_INT(sf_png_encode(src, 16, 16, 3, &buf, &len), 0);
    /* Every truncation fails cleanly. */
    for (size_t cut = 0; cut < len; cut += 3) {
        int rc = sf_png_decode(buf, cut, &pix, &w, &h, err, sizeof err);
        CHECK_EQ_INT(rc, SF_EFORMAT);
    }
    /* A bad signature is named. */
    uint8_t *bad = malloc(len);
    memcpy(bad, buf, len);
    bad[1] = 'X';
    CHECK_EQ_INT(sf_png_decode(bad, len, &pix, &w, &h, err, sizeof err), SF_EFORMAT);
    CHECK(strstr(err, "signature") != NULL);
    /* Flipped bytes anywhere: either rejected or decoded, never a crash
     * (the CRC catches nearly all of them). */
    int rejected = 0;
    for (size_t i = 8; i < len; i++) {
        memcpy(bad, buf, len);
        bad[i] ^= 0x5a;
        int rc = sf_png_decode(bad, len, &pix, &w, &h, err, sizeof err);
        if (rc == 0) free(pix);
        else rejected += rc == SF_EFORMAT;
    }
    CHECK(rejected > (int)(len - 8) * 9 / 10);
    free(bad);
    free(buf);
    CHECK_EQ_INT(sf_png_read("/nonexistent/x.png", &pix, &w, &h, err, sizeof err), SF_EIO);
    CHECK_EQ_INT(sf_png_write("/nonexistent/dir/x.png", src, 16, 16, 3), SF_EIO);
    CHECK_EQ_INT(sf_png_encode(src, 16, 16, 2, &buf, &len), SF_EINVAL);
    CHECK_EQ_INT(sf_png_encode(src, 0, 16, 3, &buf, &len), SF_EINVAL);
}

int main(void) {
    SF_RUN(rgb_file_round_trip);
    SF_RUN(gray_and_rgba_read_as_rgb);
    SF_RUN(corrupt_input_is_rejected);
    SF_DONE();
}
