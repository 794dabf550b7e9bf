/* sheet.c: contact sheets and a 5x7 bitmap font.
 *
 * The font is the classic 5x7 LCD character set, stored column-major (one
 * byte per column, bit 0 at the top), because that is compact and every glyph
 * fits a 6x8 cell with one pixel of spacing.  Labels are drawn at the
 * sheet's magnification so they stay legible next to magnified images.
 */
#include "world/sheet.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/runtime/error.h"
#include "common/image/png.h"

static const uint8_t font5x7[95][5] = {
    {0x00, 0x00, 0x00, 0x00, 0x00}, {0x00, 0x00, 0x5F, 0x00, 0x00}, {0x00, 0x07, 0x00, 0x07, 0x00},
    {0x14, 0x7F, 0x14, 0x7F, 0x14}, {0x24, 0x2A, 0x7F, 0x2A, 0x12}, {0x23, 0x13, 0x08, 0x64, 0x62},
    {0x36, 0x49, 0x55, 0x22, 0x50}, {0x00, 0x05, 0x03, 0x00, 0x00}, {0x00, 0x1C, 0x22, 0x41, 0x00},
    {0x00, 0x41, 0x22, 0x1C, 0x00}, {0x08, 0x2A, 0x1C, 0x2A, 0x08}, {0x08, 0x08, 0x3E, 0x08, 0x08},
    {0x00, 0x50, 0x30, 0x00, 0x00}, {0x08, 0x08, 0x08, 0x08, 0x08}, {0x00, 0x60, 0x60, 0x00, 0x00},
    {0x20, 0x10, 0x08, 0x04, 0x02}, {0x3E, 0x51, 0x49, 0x45, 0x3E}, {0x00, 0x42, 0x7F, 0x40, 0x00},
    {0x42, 0x61, 0x51, 0x49, 0x46}, {0x21, 0x41, 0x45, 0x4B, 0x31}, {0x18, 0x14, 0x12, 0x7F, 0x10},
    {0x27, 0x45, 0x45, 0x45, 0x39}, {0x3C, 0x4A, 0x49, 0x49, 0x30}, {0x01, 0x71, 0x09, 0x05, 0x03},
    {0x36, 0x49, 0x49, 0x49, 0x36}, {0x06, 0x49, 0x49, 0x29, 0x1E}, {0x00, 0x36, 0x36, 0x00, 0x00},
    {0x00, 0x56, 0x36, 0x00, 0x00}, {0x08, 0x14, 0x22, 0x41, 0x00}, {0x14, 0x14, 0x14, 0x14, 0x14},
    {0x00, 0x41, 0x22, 0x14, 0x08}, {0x02, 0x01, 0x51, 0x09, 0x06}, {0x32, 0x49, 0x79, 0x41, 0x3E},
    {0x7E, 0x11, 0x11, 0x11, 0x7E}, {0x7F, 0x49, 0x49, 0x49, 0x36}, {0x3E, 0x41, 0x41, 0x41, 0x22},
    {0x7F, 0x41, 0x41, 0x22, 0x1C}, {0x7F, 0x49, 0x49, 0x49, 0x41}, {0x7F, 0x09, 0x09, 0x09, 0x01},
    {0x3E, 0x41, 0x49, 0x49, 0x7A}, {0x7F, 0x08, 0x08, 0x08, 0x7F}, {0x00, 0x41, 0x7F, 0x41, 0x00},
    {0x20, 0x40, 0x41, 0x3F, 0x01}, {0x7F, 0x08, 0x14, 0x22, 0x41}, {0x7F, 0x40, 0x40, 0x40, 0x40},
    {0x7F, 0x02, 0x0C, 0x02, 0x7F}, {0x7F, 0x04, 0x08, 0x10, 0x7F}, {0x3E, 0x41, 0x41, 0x41, 0x3E},
    {0x7F, 0x09, 0x09, 0x09, 0x06}, {0x3E, 0x41, 0x51, 0x21, 0x5E}, {0x7F, 0x09, 0x19, 0x29, 0x46},
    {0x46, 0x49, 0x49, 0x49, 0x31}, {0x01, 0x01, 0x7F, 0x01, 0x01}, {0x3F, 0x40, 0x40, 0x40, 0x3F},
    {0x1F, 0x20, 0x40, 0x20, 0x1F}, {0x3F, 0x40, 0x38, 0x40, 0x3F}, {0x63, 0x14, 0x08, 0x14, 0x63},
    {0x07, 0x08, 0x70, 0x08, 0x07}, {0x61, 0x51, 0x49, 0x45, 0x43}, {0x00, 0x7F, 0x41, 0x41, 0x00},
    {0x02, 0x04, 0x08, 0x10, 0x20}, {0x00, 0x41, 0x41, 0x7F, 0x00}, {0x04, 0x02, 0x01, 0x02, 0x04},
    {0x40, 0x40, 0x40, 0x40, 0x40}, {0x00, 0x01, 0x02, 0x04, 0x00}, {0x20, 0x54, 0x54, 0x54, 0x78},
    {0x7F, 0x48, 0x44, 0x44, 0x38}, {0x38, 0x44, 0x44, 0x44, 0x20}, {0x38, 0x44, 0x44, 0x48, 0x7F},
    {0x38, 0x54, 0x54, 0x54, 0x18}, {0x08, 0x7E, 0x09, 0x01, 0x02}, {0x0C, 0x52, 0x52, 0x52, 0x3E},
    {0x7F, 0x08, 0x04, 0x04, 0x78}, {0x00, 0x44, 0x7D, 0x40, 0x00}, {0x20, 0x40, 0x44, 0x3D, 0x00},
    {0x7F, 0x10, 0x28, 0x44, 0x00}, {0x00, 0x41, 0x7F, 0x40, 0x00}, {0x7C, 0x04, 0x18, 0x04, 0x78},
    {0x7C, 0x08, 0x04, 0x04, 0x78}, {0x38, 0x44, 0x44, 0x44, 0x38}, {0x7C, 0x14, 0x14, 0x14, 0x08},
    {0x08, 0x14, 0x14, 0x18, 0x7C}, {0x7C, 0x08, 0x04, 0x04, 0x08}, {0x48, 0x54, 0x54, 0x54, 0x20},
    {0x04, 0x3F, 0x44, 0x40, 0x20}, {0x3C, 0x40, 0x40, 0x20, 0x7C}, {0x1C, 0x20, 0x40, 0x20, 0x1C},
    {0x3C, 0x40, 0x30, 0x40, 0x3C}, {0x44, 0x28, 0x10, 0x28, 0x44}, {0x0C, 0x50, 0x50, 0x50, 0x3C},
    {0x44, 0x64, 0x54, 0x4C, 0x44}, {0x00, 0x08, 0x36, 0x41, 0x00}, {0x00, 0x00, 0x7F, 0x00, 0x00},
    {0x00, 0x41, 0x36, 0x08, 0x00}, {0x08, 0x04, 0x08, 0x10, 0x08},
};

int sf_font_draw(uint8_t *rgb, int W, int H, int x, int y, const char *text, const uint8_t color[3],
                 int scale) {
    if (!rgb || !text || scale < 1) return x;
    for (; *text; text++) {
        unsigned char ch = (unsigned char)*text;
        const uint8_t *g = font5x7[(ch < 32 || ch > 126) ? '?' - 32 : ch - 32];
        for (int col = 0; col < 5; col++)
            for (int row = 0; row < 7; row++) {
                if (!(g[col] >> row & 1)) continue;
                for (int dy = 0; dy < scale; dy++)
                    for (int dx = 0; dx < scale; dx++) {
                        int px = x + col * scale + dx, py = y + row * scale + dy;
                        if (px < 0 || py < 0 || px >= W || py >= H) continue;
                        memcpy(rgb + 3 * ((size_t)py * (size_t)W + (size_t)px), color, 3);
                    }
            }
        x += SF_FONT_W * scale;
    }
    return x;
}

/* Splits `label` into at most `lines` lines of at most `width` chars,
 * breaking at spaces where it can; the last line is cut with "..". */
static int wrap(const char *label, int width, int lines, char out[][128]) {
    int n = 0;
    const char *p = label;
    while (*p && n < lines) {
        while (*p == ' ') p++;
        int len = (int)strlen(p);
        if (len <= width) {
            snprintf(out[n++], 128, "%s", p);
            break;
        }
        int cut = width;
        while (cut > 0 && p[cut] != ' ') cut--;
        if (cut == 0) cut = width;
        if (n == lines - 1) {
            snprintf(out[n++], 128, "%.*s..", width > 2 ? width - 2 : width, p);
            break;
        }
        snprintf(out[n++], 128, "%.*s", cut, p);
        p += cut;
    }
    return n;
}

int sf_sheet_render(const uint8_t *const *imgs, const char *const *labels, int n, int w, int h,
                    int cols, int scale, int label_lines, const char *title, uint8_t **out, int *ow,
                    int *oh) {
    if (!imgs || n <= 0 || w <= 0 || h <= 0 || scale < 1 || !out || !ow || !oh) return SF_EINVAL;
    if (cols <= 0) cols = n < 8 ? n : 8;
    if (label_lines < 0) label_lines = 0;
    int rows = (n + cols - 1) / cols, pad = 4 * scale > 8 ? 8 : 4 * scale;
    int fs = scale > 1 ? 2 : 1;  /* labels a little smaller than the images */
    int cw = w * scale, chh = h * scale + (labels ? label_lines * SF_FONT_H * fs + 2 : 0);
    int top = title ? SF_FONT_H * fs + pad : 0;
    int W = cols * (cw + pad) + pad, H = rows * (chh + pad) + pad + top;
    uint8_t *c = malloc((size_t)W * (size_t)H * 3);
    if (!c) return SF_ENOMEM;
    memset(c, 245, (size_t)W * (size_t)H * 3);
    static const uint8_t ink[3] = {20, 20, 30};
    if (title) sf_font_draw(c, W, H, pad, pad, title, ink, fs);
    for (int i = 0; i < n; i++) {
        int x0 = pad + (i % cols) * (cw + pad), y0 = top + pad + (i / cols) * (chh + pad);
        if (imgs[i])
            for (int y = 0; y < h * scale; y++)
                for (int x = 0; x < w * scale; x++)
                    memcpy(c + 3 * ((size_t)(y0 + y) * (size_t)W + (size_t)(x0 + x)),
                           imgs[i] + 3 * ((size_t)(y / scale) * (size_t)w + (size_t)(x / scale)), 3);
        if (!labels || !labels[i] || label_lines == 0) continue;
        char lines[8][128];
        int nl = wrap(labels[i], cw / (SF_FONT_W * fs), label_lines > 8 ? 8 : label_lines, lines);
        for (int l = 0; l < nl; l++)
            sf_font_draw(c, W, H, x0, y0 + h * scale + 2 + l * SF_FONT_H * fs, lines[l], ink, fs);
    }
    *out = c;
    *ow = W;
    *oh = H;
    return 0;
}

int sf_sheet_write(const char *path, const uint8_t *const *imgs, const char *const *labels, int n,
                   int w, int h, int cols, int scale, int label_lines, const char *title) {
    uint8_t *c;
    int W, H;
    int rc = sf_sheet_render(imgs, labels, n, w, h, cols, scale, label_lines, title, &c, &W, &H);
    if (rc) return rc;
    rc = sf_png_write(path, c, W, H, 3);
    free(c);
    return rc;
}

/* Nearest-neighbour resize of an RGB image into a cell x cell square,
 * letterboxed on the sheet's background so aspect ratios survive. */
static void fit(const uint8_t *src, int w, int h, uint8_t *dst, int cell) {
    memset(dst, 245, (size_t)cell * (size_t)cell * 3);
    double k = (double)cell / (w > h ? w : h);
    int ow = (int)(w * k), oh = (int)(h * k);
    if (ow < 1) ow = 1;
    if (oh < 1) oh = 1;
    int x0 = (cell - ow) / 2, y0 = (cell - oh) / 2;
    for (int y = 0; y < oh; y++)
        for (int x = 0; x < ow; x++) {
            int sx = (int)(x / k), sy = (int)(y / k);
            if (sx >= w) sx = w - 1;
            if (sy >= h) sy = h - 1;
            memcpy(dst + 3 * ((size_t)(y0 + y) * (size_t)cell + (size_t)(x0 + x)),
                   src + 3 * ((size_t)sy * (size_t)w + (size_t)sx), 3);
        }
}

int sf_sheet_write_files(const char *out, const char *const *paths, const char *const *labels, int n,
                         int cols, int cell, const char *title) {
    if (!out || !paths || n <= 0 || cell < 8 || cell > 1024) return SF_EINVAL;
    size_t cb = (size_t)cell * (size_t)cell * 3;
    uint8_t *pix = malloc(cb * (size_t)n);
    const uint8_t **imgs = malloc(sizeof *imgs * (size_t)n);
    char (*lab)[160] = malloc(sizeof *lab * (size_t)n);
    const char **labs = malloc(sizeof *labs * (size_t)n);
    int rc = SF_ENOMEM;
    if (!pix || !imgs || !lab || !labs) goto done;
    for (int i = 0; i < n; i++) {
        uint8_t *src = NULL;
        int w, h;
        char err[120] = "";
        imgs[i] = pix + cb * (size_t)i;
        if (sf_png_read(paths[i], &src, &w, &h, err, sizeof err) == 0) {
            fit(src, w, h, pix + cb * (size_t)i, cell);
            free(src);
            snprintf(lab[i], sizeof lab[i], "%s", labels && labels[i] ? labels[i] : paths[i]);
        } else {
            memset(pix + cb * (size_t)i, 160, cb);
            snprintf(lab[i], sizeof lab[i], "%s: %s", paths[i], err[0] ? err : "unreadable");
        }
        labs[i] = lab[i];
    }
    rc = sf_sheet_write(out, imgs, labs, n, cell, cell, cols, 1, 3, title);
done:
    free(pix);
    free(imgs);
    free(lab);
    free(labs);
    return rc;
}
