/* png.c: PNG encode/decode through libpng.
 *
 * libpng reports errors by longjmp out of its error callback; every entry
 * point here sets the jump target first and frees what it allocated on the
 * way back, so a corrupt file becomes SF_EFORMAT and never a crash or a leak.
 * Files and memory share one code path through custom read/write callbacks.
 */
#include "common/image/png.h"

#include <png.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/runtime/error.h"

typedef struct {
    FILE *f;               /* file I/O, or */
    const uint8_t *src;    /* memory read */
    size_t src_len, src_pos;
    uint8_t *dst;          /* memory write */
    size_t dst_len, dst_cap;
    int io_error;
    char msg[160];
} io_t;

static void on_error(png_structp png, png_const_charp m) {
    io_t *io = png_get_error_ptr(png);
    if (io) snprintf(io->msg, sizeof io->msg, "%s", m);
    png_longjmp(png, 1);
}

static void on_warning(png_structp png, png_const_charp m) {
    (void)png;
    (void)m;  /* warnings (e.g. a bad sRGB chunk) do not stop a read */
}

static void read_cb(png_structp png, png_bytep data, png_size_t n) {
    io_t *io = png_get_io_ptr(png);
    if (io->f) {
        if (fread(data, 1, n, io->f) != n) {
            io->io_error = 1;
            png_error(png, "file is truncated");
        }
        return;
    }
    if (io->src_len - io->src_pos < n) png_error(png, "data is truncated");
    memcpy(data, io->src + io->src_pos, n);
    io->src_pos += n;
}

static void write_cb(png_structp png, png_bytep data, png_size_t n) {
    io_t *io = png_get_io_ptr(png);
    if (io->f) {
        if (fwrite(data, 1, n, io->f) != n) {
            io->io_error = 1;
            png_error(png, "write failed");
        }
        return;
    }
    if (io->dst_len + n > io->dst_cap) {
        size_t cap = io->dst_cap ? io->dst_cap * 2 : 4096;
        while (cap < io->dst_len + n) cap *= 2;
        uint8_t *nb = realloc(io->dst, cap);
        if (!nb) png_error(png, "out of memory");
        io->dst = nb;
        io->dst_cap = cap;
    }
    memcpy(io->dst + io->dst_len, data, n);
    io->dst_len += n;
}

static void flush_cb(png_structp png) {
    io_t *io = png_get_io_ptr(png);
    if (io->f) fflush(io->f);
}

static int encode(io_t *io, const uint8_t *pix, int w, int h, int channels) {
    if (!pix || w <= 0 || h <= 0 || w > SF_PNG_MAX_DIM || h > SF_PNG_MAX_DIM) return SF_EINVAL;
    int type = channels == 1 ? PNG_COLOR_TYPE_GRAY : channels == 3 ? PNG_COLOR_TYPE_RGB
             : channels == 4 ? PNG_COLOR_TYPE_RGBA : -1;
    if (type < 0) return SF_EINVAL;
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, io, on_error, on_warning);
    if (!png) return SF_ENOMEM;
    png_infop info = png_create_info_struct(png);
    if (!info) {
        png_destroy_write_struct(&png, NULL);
        return SF_ENOMEM;
    }
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_write_struct(&png, &info);
        return io->io_error ? SF_EIO : SF_ENOMEM;
    }
    png_set_write_fn(png, io, write_cb, flush_cb);
    /* Level 6 and adaptive filters: our images are small, so the default
     * speed/size trade is fine. */
    png_set_IHDR(png, info, (png_uint_32)w, (png_uint_32)h, 8, type, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    for (int y = 0; y < h; y++)
        png_write_row(png, (png_const_bytep)(pix + (size_t)y * (size_t)w * (size_t)channels));
    png_write_end(png, info);
    png_destroy_write_struct(&png, &info);
    return 0;
}

static int decode(io_t *io, uint8_t **pix, int *pw, int *ph, char *err, size_t errlen) {
    uint8_t sig[8];
    if (io->f) {
        if (fread(sig, 1, 8, io->f) != 8) return sf_errf(SF_EFORMAT, err, errlen, "not a PNG (too short)");
    } else {
        if (io->src_len < 8) return sf_errf(SF_EFORMAT, err, errlen, "not a PNG (too short)");
        memcpy(sig, io->src, 8);
        io->src_pos = 8;
    }
    if (png_sig_cmp(sig, 0, 8)) return sf_errf(SF_EFORMAT, err, errlen, "not a PNG (bad signature)");
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, io, on_error, on_warning);
    if (!png) return SF_ENOMEM;
    png_infop info = png_create_info_struct(png);
    if (!info) {
        png_destroy_read_struct(&png, NULL, NULL);
        return SF_ENOMEM;
    }
    uint8_t *volatile out = NULL;
    png_bytep *volatile rows = NULL;
    if (setjmp(png_jmpbuf(png))) {
        if (rows) png_free(png, rows);
        png_destroy_read_struct(&png, &info, NULL);
        free(out);
        return sf_errf(io->io_error ? SF_EIO : SF_EFORMAT, err, errlen, "corrupt PNG: %s", io->msg);
    }
    png_set_read_fn(png, io, read_cb);
    png_set_sig_bytes(png, 8);
    png_set_user_limits(png, SF_PNG_MAX_DIM, SF_PNG_MAX_DIM);
    png_read_info(png, info);
    png_uint_32 w = png_get_image_width(png, info), h = png_get_image_height(png, info);
    int depth = png_get_bit_depth(png, info), type = png_get_color_type(png, info);
    /* Everything becomes 8-bit RGB. */
    if (depth == 16) png_set_strip_16(png);
    if (type == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
    if (type == PNG_COLOR_TYPE_GRAY && depth < 8) png_set_expand_gray_1_2_4_to_8(png);
    if (type == PNG_COLOR_TYPE_GRAY || type == PNG_COLOR_TYPE_GRAY_ALPHA) png_set_gray_to_rgb(png);
    if (type & PNG_COLOR_MASK_ALPHA) png_set_strip_alpha(png);
    if (png_get_valid(png, info, PNG_INFO_tRNS)) png_set_strip_alpha(png);
    png_set_interlace_handling(png);
    png_read_update_info(png, info);
    if (png_get_rowbytes(png, info) != (size_t)w * 3)
        png_error(png, "unsupported pixel layout");
    out = malloc((size_t)w * h * 3);
    if (!out) png_error(png, "out of memory");
    rows = png_malloc(png, sizeof(png_bytep) * h);
    for (png_uint_32 y = 0; y < h; y++) rows[y] = out + (size_t)y * w * 3;
    png_read_image(png, rows);
    png_free(png, rows);
    rows = NULL;
    png_read_end(png, NULL);
    png_destroy_read_struct(&png, &info, NULL);
    *pix = out;
    *pw = (int)w;
    *ph = (int)h;
    return 0;
}

int sf_png_write(const char *path, const uint8_t *pix, int w, int h, int channels) {
    if (!path) return SF_EINVAL;
    io_t io;
    memset(&io, 0, sizeof io);
    io.f = fopen(path, "wb");
    if (!io.f) return SF_EIO;
    int rc = encode(&io, pix, w, h, channels);
    if (fclose(io.f) != 0 && rc == 0) rc = SF_EIO;
    if (rc) remove(path);
    return rc;
}

int sf_png_read(const char *path, uint8_t **pix, int *w, int *h, char *err, size_t errlen) {
    if (!path || !pix || !w || !h) return SF_EINVAL;
    io_t io;
    memset(&io, 0, sizeof io);
    io.f = fopen(path, "rb");
    if (!io.f) return sf_errf(SF_EIO, err, errlen, "cannot open %s", path);
    int rc = decode(&io, pix, w, h, err, errlen);
    fclose(io.f);
    return rc;
}

int sf_png_encode(const uint8_t *pix, int w, int h, int channels, uint8_t **out, size_t *out_len) {
    if (!out || !out_len) return SF_EINVAL;
    io_t io;
    memset(&io, 0, sizeof io);
    int rc = encode(&io, pix, w, h, channels);
    if (rc) {
        free(io.dst);
        return rc;
    }
    *out = io.dst;
    *out_len = io.dst_len;
    return 0;
}

int sf_png_decode(const uint8_t *buf, size_t len, uint8_t **pix, int *w, int *h, char *err,
                  size_t errlen) {
    if (!buf || !pix || !w || !h) return SF_EINVAL;
    io_t io;
    memset(&io, 0, sizeof io);
    io.src = buf;
    io.src_len = len;
    return decode(&io, pix, w, h, err, errlen);
}
