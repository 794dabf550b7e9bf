/* sheet.h: contact sheets — a grid of images with text labels — and the tiny
 * bitmap font that writes the labels, so people can look at what the world
 * (or any image producer) makes without an image viewer that knows our
 * formats.
 */
#ifndef SF_SHEET_H
#define SF_SHEET_H

#include <stddef.h>
#include <stdint.h>

/* Glyph cell of the built-in 5x7 font (ASCII 32..126; others draw as '?'). */
#define SF_FONT_W 6
#define SF_FONT_H 8

/* Draws text at (x, y) into an RGB canvas of W x H, each font pixel a
 * scale x scale block, clipped at the edges.  Returns the x after the text. */
int sf_font_draw(uint8_t *rgb, int W, int H, int x, int y, const char *text, const uint8_t color[3],
                 int scale);

/* Lays out n images (each w x h RGB, borrowed) in `cols` columns, each
 * magnified `scale` times with up to `label_lines` lines of its label
 * (wrapped at spaces) underneath, and writes the PNG to path.  labels may be
 * NULL, and any label may be NULL.  title (may be NULL) goes on top. */
int sf_sheet_write(const char *path, const uint8_t *const *imgs, const char *const *labels, int n,
                   int w, int h, int cols, int scale, int label_lines, const char *title);

/* The same into memory: *out is a new RGB canvas (free()) of *ow x *oh. */
int sf_sheet_render(const uint8_t *const *imgs, const char *const *labels, int n, int w, int h,
                    int cols, int scale, int label_lines, const char *title, uint8_t **out, int *ow,
                    int *oh);

/* A sheet of PNG files (any sizes, borrowed paths), each scaled by nearest
 * neighbour to cell x cell: for looking at a stored dataset.  A file that
 * cannot be read shows as a grey cell labelled with the error, so one bad
 * file does not hide the rest. */
int sf_sheet_write_files(const char *out, const char *const *paths, const char *const *labels, int n,
                         int cols, int cell, const char *title);

#endif
