/* image.c: JPEG (libjpeg) and PNG (common/image/png.c) to 8-bit RGB, chosen by the
 * file's first bytes.
 *
 * libjpeg reports errors through error_exit, which by default prints and
 * calls exit(); ours formats the message and longjmps back to the entry
 * point, which frees what it allocated.  Warnings go through emit_message,
 * which by default prints them; ours stays silent, except that the two
 * warnings meaning "the data ran out" longjmp like errors (see image.h).
 * Sizes are checked against the caps right after the header, before
 * jpeg_start_decompress allocates anything in proportion to them.
 */
#include "common/image/image.h"

#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jpeglib.h>
#include <jerror.h>

#include "common/runtime/error.h"

/* libjpeg's working memory (progressive coefficient buffers mostly): at the
 * pixel cap a 4-component progressive file needs 512 MiB. */
#define JPEG_MAX_MEMORY (1024L * 1024 * 1024)

enum { FMT_NONE, FMT_JPEG, FMT_PNG };

static int sniff(const uint8_t *buf, size_t len) {
    if (len >= 3 && buf[0] == 0xFF && buf[1] == 0xD8 && buf[2] == 0xFF) return FMT_JPEG;
    if (len >= 4 && buf[0] == 0x89 && buf[1] == 'P' && buf[2] == 'N' && buf[3] == 'G') return FMT_PNG;
    return FMT_NONE;
}

static int check_size(long long w, long long h, char *err, size_t errlen) {
    if (w <= 0 || h <= 0)
        return sf_errf(SF_EFORMAT, err, errlen, "image declares an empty size %lldx%lld", w, h);
    if (w > SF_IMAGE_MAX_DIM || h > SF_IMAGE_MAX_DIM || w * h > SF_IMAGE_MAX_PIXELS)
        return sf_errf(SF_ERANGE, err, errlen,
                       "image declares %lldx%lld pixels, over the cap of %d a side and %ld in all", w,
                       h, SF_IMAGE_MAX_DIM, (long)SF_IMAGE_MAX_PIXELS);
    return 0;
}

/* ---- JPEG ---------------------------------------------------------------- */

typedef struct {
    struct jpeg_error_mgr pub;        /* first: libjpeg casts cinfo->err to this */
    struct jpeg_progress_mgr progress;
    jmp_buf jb;
    int truncated;
    char msg[JMSG_LENGTH_MAX];
} jerr_t;

static void on_error_exit(j_common_ptr c) {
    jerr_t *e = (jerr_t *)c->err;
    c->err->format_message(c, e->msg);
    longjmp(e->jb, 1);
}

/* level -1 is a warning, 0 and up are trace messages.  Nothing is printed. */
static void on_emit_message(j_common_ptr c, int level) {
    jerr_t *e = (jerr_t *)c->err;
    if (level >= 0) return;
    e->pub.num_warnings++;
    if (e->pub.msg_code == JWRN_JPEG_EOF || e->pub.msg_code == JWRN_HIT_MARKER) {
        e->truncated = 1;
        c->err->format_message(c, e->msg);
        longjmp(e->jb, 1);
    }
}

static void on_output_message(j_common_ptr c) {
    (void)c;
}

/* Called between units of input work; refuses endless progressive scans. */
static void on_progress(j_common_ptr c) {
    if (!c->is_decompressor) return;
    jerr_t *e = (jerr_t *)c->err;
    if (((j_decompress_ptr)c)->input_scan_number > SF_IMAGE_MAX_SCANS) {
        snprintf(e->msg, sizeof e->msg, "progressive JPEG has more than %d scans",
                 SF_IMAGE_MAX_SCANS);
        longjmp(e->jb, 1);
    }
}

/* Photoshop writes CMYK JPEGs inverted (0 = full ink) and marks them with an
 * Adobe APP14 segment; libjpeg's own writer also adds that segment.  Files
 * without it are read as plain CMYK.  No colour profile is applied: this is
 * the naive conversion PIL makes, close enough for recognition. */
static void cmyk_row_to_rgb(const uint8_t *in, uint8_t *out, int w, int inverted) {
    for (int x = 0; x < w; x++, in += 4, out += 3) {
        unsigned c = in[0], m = in[1], y = in[2], k = in[3];
        if (!inverted) {
            c = 255 - c;
            m = 255 - m;
            y = 255 - y;
            k = 255 - k;
        }
        out[0] = (uint8_t)((c * k + 127) / 255);
        out[1] = (uint8_t)((m * k + 127) / 255);
        out[2] = (uint8_t)((y * k + 127) / 255);
    }
}

/* Header only when rgb is NULL. */
static int decode_jpeg(const uint8_t *buf, size_t len, uint8_t **rgb, int *pw, int *ph, char *err,
                       size_t errlen) {
    struct jpeg_decompress_struct cinfo;
    jerr_t e;
    uint8_t *volatile out = NULL;
    uint8_t *volatile row = NULL;
    memset(&cinfo, 0, sizeof cinfo);
    memset(&e, 0, sizeof e);
    cinfo.err = jpeg_std_error(&e.pub);
    e.pub.error_exit = on_error_exit;
    e.pub.emit_message = on_emit_message;
    e.pub.output_message = on_output_message;
    e.progress.progress_monitor = on_progress;
    if (setjmp(e.jb)) {
        jpeg_destroy_decompress(&cinfo);
        free(out);
        free(row);
        return sf_errf(SF_EFORMAT, err, errlen, "%s JPEG: %s", e.truncated ? "truncated" : "corrupt",
                       e.msg);
    }
    jpeg_create_decompress(&cinfo);
    cinfo.progress = &e.progress;
    cinfo.mem->max_memory_to_use = JPEG_MAX_MEMORY;
    jpeg_mem_src(&cinfo, buf, (unsigned long)len);
    jpeg_read_header(&cinfo, TRUE);

    int rc = check_size(cinfo.image_width, cinfo.image_height, err, errlen);
    int cmyk = 0;
    if (rc == 0) {
        switch (cinfo.jpeg_color_space) {
        case JCS_GRAYSCALE:
        case JCS_RGB:
        case JCS_YCbCr:
            cinfo.out_color_space = JCS_RGB;
            break;
        case JCS_CMYK:
        case JCS_YCCK:  /* libjpeg turns YCCK into CMYK; we do the rest */
            cinfo.out_color_space = JCS_CMYK;
            cmyk = 1;
            break;
        default:
            rc = sf_errf(SF_EFORMAT, err, errlen,
                         "unsupported JPEG: colour space %d with %d components",
                         (int)cinfo.jpeg_color_space, cinfo.num_components);
        }
    }
    if (rc != 0 || !rgb) {
        if (rc == 0) {
            *pw = (int)cinfo.image_width;
            *ph = (int)cinfo.image_height;
        }
        jpeg_destroy_decompress(&cinfo);
        return rc;
    }
    int inverted = cmyk && cinfo.saw_Adobe_marker;

    jpeg_start_decompress(&cinfo);
    int w = (int)cinfo.output_width, h = (int)cinfo.output_height;
    if (w != (int)cinfo.image_width || h != (int)cinfo.image_height ||
        cinfo.output_components != (cmyk ? 4 : 3)) {
        jpeg_destroy_decompress(&cinfo);
        return sf_errf(SF_EFORMAT, err, errlen, "unsupported JPEG: decodes to %dx%dx%d", w, h,
                       cinfo.output_components);
    }
    out = malloc((size_t)w * (size_t)h * 3);
    if (cmyk) row = malloc((size_t)w * 4);
    if (!out || (cmyk && !row)) {
        jpeg_destroy_decompress(&cinfo);
        free(out);
        free(row);
        return sf_errf(SF_ENOMEM, err, errlen, "out of memory for a %dx%d image", w, h);
    }
    while (cinfo.output_scanline < cinfo.output_height) {
        uint8_t *dst = out + (size_t)cinfo.output_scanline * (size_t)w * 3;
        JSAMPROW r = cmyk ? row : dst;
        /* A memory source never suspends, so each call yields a row. */
        if (jpeg_read_scanlines(&cinfo, &r, 1) != 1) ERREXIT(&cinfo, JERR_INPUT_EMPTY);
        if (cmyk) cmyk_row_to_rgb(row, dst, w, inverted);
    }
    /* Reads on to the EOI marker, so a file cut just after its last scan is
     * refused like any other truncated file. */
    jpeg_finish_decompress(&cinfo);
    jpeg_destroy_decompress(&cinfo);
    free(row);
    *rgb = out;
    *pw = w;
    *ph = h;
    return 0;
}

/* ---- PNG ----------------------------------------------------------------- */

static uint32_t be32(const uint8_t *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* The PNG format puts IHDR first; reading it ourselves lets the pixel cap
 * apply before libpng allocates (png.c only caps each side). */
static int probe_png(const uint8_t *buf, size_t len, int *w, int *h, char *err, size_t errlen) {
    static const uint8_t sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
    if (len < 24) return sf_errf(SF_EFORMAT, err, errlen, "corrupt PNG: too short");
    if (memcmp(buf, sig, 8) != 0) return sf_errf(SF_EFORMAT, err, errlen, "corrupt PNG: bad signature");
    if (memcmp(buf + 12, "IHDR", 4) != 0)
        return sf_errf(SF_EFORMAT, err, errlen, "corrupt PNG: first chunk is not IHDR");
    int rc = check_size(be32(buf + 16), be32(buf + 20), err, errlen);
    if (rc) return rc;
    *w = (int)be32(buf + 16);
    *h = (int)be32(buf + 20);
    return 0;
}

/* ---- entry points -------------------------------------------------------- */

int sf_image_probe(const uint8_t *buf, size_t len, int *w, int *h, char *err, size_t errlen) {
    if ((!buf && len) || !w || !h) return sf_errf(SF_EINVAL, err, errlen, "sf_image_probe: NULL argument");
    switch (sniff(buf, len)) {
    case FMT_JPEG:
        return decode_jpeg(buf, len, NULL, w, h, err, errlen);
    case FMT_PNG:
        return probe_png(buf, len, w, h, err, errlen);
    default:
        return sf_errf(SF_EFORMAT, err, errlen, "not a JPEG or PNG");
    }
}

int sf_image_decode(const uint8_t *buf, size_t len, uint8_t **rgb, int *w, int *h, char *err,
                    size_t errlen) {
    if ((!buf && len) || !rgb || !w || !h)
        return sf_errf(SF_EINVAL, err, errlen, "sf_image_decode: NULL argument");
    switch (sniff(buf, len)) {
    case FMT_JPEG:
        return decode_jpeg(buf, len, rgb, w, h, err, errlen);
    case FMT_PNG: {
        int pw, ph;
        int rc = probe_png(buf, len, &pw, &ph, err, errlen);
        if (rc) return rc;
        return sf_png_decode(buf, len, rgb, w, h, err, errlen);
    }
    default:
        return sf_errf(SF_EFORMAT, err, errlen, "not a JPEG or PNG");
    }
}

int sf_image_read(const char *path, uint8_t **rgb, int *w, int *h, char *err, size_t errlen) {
    if (!path || !rgb || !w || !h) return sf_errf(SF_EINVAL, err, errlen, "sf_image_read: NULL argument");
    /* O_NONBLOCK so that a FIFO in place of a file cannot hang us; fstat
     * then refuses it. */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) {
        int e = errno;
        return sf_errf(e == ENOENT ? SF_ENOTFOUND : SF_EIO, err, errlen, "%s: cannot open: %s", path,
                       strerror(e));
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return sf_errf(SF_EIO, err, errlen, "%s: not a regular file", path);
    }
    if (st.st_size > SF_IMAGE_MAX_FILE) {
        close(fd);
        return sf_errf(SF_ERANGE, err, errlen, "%s: %lld bytes, over the %ld-byte cap", path,
                       (long long)st.st_size, (long)SF_IMAGE_MAX_FILE);
    }
    size_t cap = (size_t)st.st_size, len = 0;
    uint8_t *buf = malloc(cap ? cap : 1);
    if (!buf) {
        close(fd);
        return sf_errf(SF_ENOMEM, err, errlen, "%s: out of memory", path);
    }
    /* A file that shrinks while we read is decoded as far as it went (and
     * then most likely refused as truncated); one that grows is read up to
     * the size fstat gave. */
    while (len < cap) {
        ssize_t n = read(fd, buf + len, cap - len);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            int e = errno;
            close(fd);
            free(buf);
            return sf_errf(SF_EIO, err, errlen, "%s: read failed: %s", path, strerror(e));
        }
        if (n == 0) break;
        len += (size_t)n;
    }
    close(fd);
    char msg[256];
    int rc = sf_image_decode(buf, len, rgb, w, h, msg, sizeof msg);
    free(buf);
    if (rc) return sf_errf(rc, err, errlen, "%s: %s", path, msg);
    return 0;
}
