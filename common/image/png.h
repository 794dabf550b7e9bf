/* png.h: PNG files for every image shiftforge stores (libpng underneath).
 *
 * Pixels are 8-bit, row-major, channels interleaved (1 = gray, 3 = RGB,
 * 4 = RGBA).  Reading always yields 8-bit RGB: gray, palette, alpha and
 * 16-bit files are converted, so callers handle one layout.  A file that is
 * not a PNG, is truncated or is corrupt is rejected with SF_EFORMAT and a
 * message; it never crashes the reader.
 */
#ifndef SF_PNG_H
#define SF_PNG_H

#include <stddef.h>
#include <stdint.h>

/* Largest width or height accepted on read, so a hostile header cannot make
 * us allocate gigabytes. */
#define SF_PNG_MAX_DIM 16384

/* Writes pix (w*h*channels bytes, borrowed) to path. */
int sf_png_write(const char *path, const uint8_t *pix, int w, int h, int channels);

/* Reads path as RGB.  On success *pix is a new w*h*3 buffer the caller
 * frees with free().  err (may be NULL) gets a message on failure. */
int sf_png_read(const char *path, uint8_t **pix, int *w, int *h, char *err, size_t errlen);

/* The same in memory: *out is a new buffer (free()) of *out_len bytes. */
int sf_png_encode(const uint8_t *pix, int w, int h, int channels, uint8_t **out, size_t *out_len);
int sf_png_decode(const uint8_t *buf, size_t len, uint8_t **pix, int *w, int *h, char *err,
                  size_t errlen);

#endif
