/* Unit tests for world/sheet: the 5x7 font, contact-sheet layout and the
 * sheet of stored PNG files. */
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

#include "common/runtime/error.h"
#include "common/image/png.h"
#include "sf_test.h"
#include "world/sheet.h"

/* 'A' in the 5x7 font, row by row (the classic LCD glyph). */
TEST(font_draws_the_glyph) {
    static const char *A[7] = {" ### ", "#   #", "#   #", "#   #", "#####", "#   #", "#   #"};
    uint8_t c[8 * 10 * 3];
    memset(c, 0, sizeof c);
    const uint8_t ink[3] = {255, 255, 255};
    int x = sf_font_draw(c, 8, 10, 1, 1, "A", ink, 1);
    CHECK_EQ_INT(x, 1 + SF_FONT_W);
    for (int r = 0; r < 7; r++)
        for (int col = 0; col < 5; col++) {
            int on = c[3 * ((1 + r) * 8 + 1 + col)] == 255;
            CHECK_EQ_INT(on, A[r][col] == '#');
        }
    /* Unknown bytes are drawn as '?' (byte 1 and a byte past ASCII). */
    uint8_t q[8 * 10 * 3], u[8 * 10 * 3];
    memset(q, 0, sizeof q);
    memset(u, 0, sizeof u);
    sf_font_draw(q, 8, 10, 1, 1, "?", ink, 1);
    sf_font_draw(u, 8, 10, 1, 1, "\x01", ink, 1);
    int lit = 0;
    for (size_t i = 0; i < sizeof q; i++) lit += q[i] == 255;
    CHECK(lit > 0);
    CHECK(memcmp(q, u, sizeof q) == 0);
    memset(u, 0, sizeof u);
    sf_font_draw(u, 8, 10, 1, 1, "\xe9", ink, 1);
    CHECK(memcmp(q, u, sizeof q) == 0);
    /* Clipped at the edges and scaled: 'A' at scale 3 from (-1, -1) puts
     * glyph cell (col, row) at x, y = -1 + 3 col .. +2, so the 4 x 4 canvas
     * shows cells (0..1, 0..1) of the glyph, the top of " ### " over "#   #",
     * cut to 2 and 2 pixels; nothing is written outside it (ASan). */
    static const char *want[4] = {"..##", "..##", "##..", "##.."};
    uint8_t d[4 * 4 * 3];
    memset(d, 7, sizeof d);
    sf_font_draw(d, 4, 4, -1, -1, "A", ink, 3);
    for (int y = 0; y < 4; y++)
        for (int x2 = 0; x2 < 4; x2++) CHECK_EQ_INT(d[3 * (y * 4 + x2)], want[y][x2] == '#' ? 255 : 7);
    CHECK_EQ_INT(sf_font_draw(d, 4, 4, 0, 0, "ab", ink, 2), 2 * 2 * SF_FONT_W);
}

TEST(sheet_layout_and_labels) {
    enum { W = 10, H = 6, N = 5 };
    uint8_t img[N][W * H * 3];
    const uint8_t *imgs[N];
    const char *labels[N] = {"one", NULL, "a label long enough to wrap over lines", "x", "y"};
    for (int i = 0; i < N; i++) {
        memset(img[i], 40 * i, sizeof img[i]);
        imgs[i] = img[i];
    }
    uint8_t *c = NULL;
    int cw, ch;
    CHECK_EQ_INT(sf_sheet_render(imgs, labels, N, W, H, 3, 2, 2, "title", &c, &cw, &ch), 0);
    /* 3 columns of 20px cells, 2 rows, padding, a title line. */
    CHECK(cw >= 3 * 20 && cw < 3 * 20 + 40);
    CHECK(ch >= 2 * (12 + 2 * 8 * 2) + 16);
    /* Cell 4 (row 1, col 1) holds image 4's colour magnified. */
    int found = 0;
    for (int i = 0; i < cw * ch; i++) found += c[3 * i] == 160 && c[3 * i + 1] == 160;
    CHECK_EQ_INT(found, 20 * 12);
    free(c);
    CHECK_EQ_INT(sf_sheet_render(imgs, labels, 0, W, H, 3, 2, 2, NULL, &c, &cw, &ch), SF_EINVAL);
}

TEST(sheet_of_files_shows_bad_files) {
    char dir[] = "/tmp/sf_sheet_XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char a[256], b[256], out[256];
    snprintf(a, sizeof a, "%s/a.png", dir);
    snprintf(b, sizeof b, "%s/b.png", dir);
    snprintf(out, sizeof out, "%s/sheet.png", dir);
    uint8_t px[30 * 20 * 3];
    memset(px, 200, sizeof px);
    CHECK_EQ_INT(sf_png_write(a, px, 30, 20, 3), 0);
    FILE *f = fopen(b, "w");
    fputs("not a png", f);
    fclose(f);
    const char *paths[2] = {a, b};
    CHECK_EQ_INT(sf_sheet_write_files(out, paths, NULL, 2, 2, 32, "files"), 0);
    uint8_t *s = NULL;
    int w, h;
    CHECK_EQ_INT(sf_png_read(out, &s, &w, &h, NULL, 0), 0);
    int grey = 0, img = 0;
    for (int i = 0; i < w * h; i++) {
        grey += s[3 * i] == 160;
        img += s[3 * i] == 200;
    }
    CHECK(grey >= 32 * 32 - 200);       /* the bad file's cell (minus label ink) */
    CHECK_EQ_INT(img, 32 * 21);         /* 30x20 letterboxed into 32x32 */
    free(s);
    unlink(a);
    unlink(b);
    unlink(out);
    rmdir(dir);
}

int main(void) {
    SF_RUN(font_draws_the_glyph);
    SF_RUN(sheet_layout_and_labels);
    SF_RUN(sheet_of_files_shows_bad_files);
    SF_DONE();
}
