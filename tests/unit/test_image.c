/* Unit tests for common/image: JPEGs written here with libjpeg's compressor
 * (RGB, grayscale, progressive, CMYK with and without the Adobe marker,
 * YCCK) and PNGs with common/png decode to RGB of the right size and
 * colours; truncated, garbage, over-large and endlessly progressive input is
 * refused with a message, never a crash, an exit() or a huge allocation.
 *
 * JPEG is lossy: colours are compared with a stated tolerance, on solid
 * blocks aligned to the 16x16 MCU so that chroma subsampling does not smear
 * them.
 *
 * With SF_IMAGE_CORPUS=DIR set, the program also writes the fuzz seed corpus
 * (tests/fuzz/corpus/image/) into DIR.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jpeglib.h>

#include "common/runtime/error.h"
#include "common/image/image.h"
#include "common/image/png.h"
#include "sf_test.h"

/* Compresses pix (w*h*comps, in colour space in) to a new buffer *out
 * (free()).  as: the colour space stored (JCS_UNKNOWN = libjpeg's default
 * for in).  scans: a custom progressive script, or NULL. */
typedef struct {
    J_COLOR_SPACE in, as;
    int comps, quality, progressive, adobe;
    const jpeg_scan_info *scans;
    int n_scans;
} jopt_t;

static int write_jpeg(const uint8_t *pix, int w, int h, jopt_t o, uint8_t **out, size_t *len) {
    struct jpeg_compress_struct c;
    struct jpeg_error_mgr jerr;
    unsigned char *mem = NULL;
    unsigned long mlen = 0;
    c.err = jpeg_std_error(&jerr);
    jpeg_create_compress(&c);
    jpeg_mem_dest(&c, &mem, &mlen);
    c.image_width = (JDIMENSION)w;
    c.image_height = (JDIMENSION)h;
    c.input_components = o.comps;
    c.in_color_space = o.in;
    jpeg_set_defaults(&c);
    if (o.as != JCS_UNKNOWN) jpeg_set_colorspace(&c, o.as);
    jpeg_set_quality(&c, o.quality ? o.quality : 95, TRUE);
    if (o.progressive) jpeg_simple_progression(&c);
    if (o.scans) {
        c.scan_info = o.scans;
        c.num_scans = o.n_scans;
    }
    if (o.comps == 4) c.write_Adobe_marker = o.adobe ? TRUE : FALSE;
    jpeg_start_compress(&c, TRUE);
    while (c.next_scanline < c.image_height) {
        JSAMPROW r = (JSAMPROW)(pix + (size_t)c.next_scanline * (size_t)w * (size_t)o.comps);
        jpeg_write_scanlines(&c, &r, 1);
    }
    jpeg_finish_compress(&c);
    jpeg_destroy_compress(&c);
    *out = mem;
    *len = mlen;
    return 0;
}

static const jopt_t RGB = {JCS_RGB, JCS_UNKNOWN, 3, 0, 0, 0, NULL, 0};
static const jopt_t GRAY = {JCS_GRAYSCALE, JCS_UNKNOWN, 1, 0, 0, 0, NULL, 0};

/* 64x64, four 32x32 solid quadrants of these colours. */
static const uint8_t QUAD[4][3] = {{255, 0, 0}, {0, 160, 0}, {30, 60, 220}, {200, 150, 50}};

static void quadrants(uint8_t *p) {
    for (int y = 0; y < 64; y++)
        for (int x = 0; x < 64; x++) memcpy(p + (y * 64 + x) * 3, QUAD[(y / 32) * 2 + x / 32], 3);
}

/* Largest channel error over the inner 24x24 of each quadrant. */
static int quad_error(const uint8_t *rgb) {
    int worst = 0;
    for (int q = 0; q < 4; q++)
        for (int y = 4; y < 28; y++)
            for (int x = 4; x < 28; x++) {
                const uint8_t *p = rgb + (((q / 2) * 32 + y) * 64 + (q % 2) * 32 + x) * 3;
                for (int c = 0; c < 3; c++) {
                    int d = abs((int)p[c] - QUAD[q][c]);
                    if (d > worst) worst = d;
                }
            }
    return worst;
}

/* A smooth ramp, 0..240 without wrapping. */
static void gradient(uint8_t *p, int w, int h, int ch) {
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            for (int c = 0; c < ch; c++)
                p[(y * w + x) * ch + c] = (uint8_t)(x * 120 / w + y * 60 / h + c * 20);
}

/* Colours: quality 95, solid MCU-aligned blocks come back within 6 per
 * channel; a smooth gradient of odd size within a mean of 3. */
TEST(rgb_jpeg_decodes_to_size_and_colours) {
    uint8_t src[64 * 64 * 3];
    quadrants(src);
    uint8_t *jpg = NULL, *rgb = NULL;
    size_t len;
    int w = 0, h = 0;
    char err[256];
    write_jpeg(src, 64, 64, RGB, &jpg, &len);
    CHECK_EQ_INT(sf_image_decode(jpg, len, &rgb, &w, &h, err, sizeof err), 0);
    CHECK_EQ_INT(w, 64);
    CHECK_EQ_INT(h, 64);
    CHECK(quad_error(rgb) <= 6);
    free(rgb);
    free(jpg);

    uint8_t g[37 * 23 * 3];
    gradient(g, 37, 23, 3);
    write_jpeg(g, 37, 23, RGB, &jpg, &len);
    CHECK_EQ_INT(sf_image_decode(jpg, len, &rgb, &w, &h, err, sizeof err), 0);
    CHECK_EQ_INT(w, 37);
    CHECK_EQ_INT(h, 23);
    long sum = 0;
    for (size_t i = 0; i < sizeof g; i++) sum += abs((int)rgb[i] - g[i]);
    CHECK((double)sum / (double)sizeof g < 3.0);
    int pw, ph;
    CHECK_EQ_INT(sf_image_probe(jpg, len, &pw, &ph, err, sizeof err), 0);
    CHECK(pw == 37 && ph == 23);
    free(rgb);
    free(jpg);
}

TEST(progressive_jpeg_decodes_like_baseline) {
    uint8_t src[64 * 64 * 3];
    quadrants(src);
    jopt_t o = RGB;
    o.progressive = 1;
    uint8_t *jpg = NULL, *rgb = NULL;
    size_t len;
    int w, h;
    char err[256];
    write_jpeg(src, 64, 64, o, &jpg, &len);
    CHECK_EQ_INT(sf_image_decode(jpg, len, &rgb, &w, &h, err, sizeof err), 0);
    CHECK(w == 64 && h == 64);
    CHECK(quad_error(rgb) <= 6);
    free(rgb);
    free(jpg);
}

/* Grayscale becomes R=G=B, each within 3 of the source. */
TEST(gray_jpeg_becomes_rgb) {
    uint8_t src[40 * 24];
    gradient(src, 40, 24, 1);
    uint8_t *jpg = NULL, *rgb = NULL;
    size_t len;
    int w, h;
    char err[256];
    write_jpeg(src, 40, 24, GRAY, &jpg, &len);
    CHECK_EQ_INT(sf_image_decode(jpg, len, &rgb, &w, &h, err, sizeof err), 0);
    CHECK(w == 40 && h == 24);
    for (int i = 0; i < 40 * 24; i++) {
        CHECK(rgb[3 * i] == rgb[3 * i + 1] && rgb[3 * i] == rgb[3 * i + 2]);
        CHECK(abs((int)rgb[3 * i] - src[i]) <= 3);
    }
    free(rgb);
    free(jpg);
}

/* 32x32, left half pure red ink (C=0 M=Y=1 K=0), right half 50% black
 * (K=0.5), written in the file's own convention: Adobe-marked files are
 * inverted (255 = no ink), as Photoshop writes them; plain ones are not.
 * Expected: red (255,0,0) and grey (127,127,127), within 6. */
static int check_cmyk(J_COLOR_SPACE as, int adobe) {
    uint8_t src[32 * 32 * 4];
    static const uint8_t ink[2][4] = {{0, 255, 255, 0}, {0, 0, 0, 128}};
    for (int y = 0; y < 32; y++)
        for (int x = 0; x < 32; x++)
            for (int c = 0; c < 4; c++) {
                uint8_t v = ink[x / 16][c];
                src[(y * 32 + x) * 4 + c] = adobe ? (uint8_t)(255 - v) : v;
            }
    jopt_t o = {JCS_CMYK, as, 4, 95, 0, adobe, NULL, 0};
    uint8_t *jpg = NULL, *rgb = NULL;
    size_t len;
    int w, h;
    char err[256];
    write_jpeg(src, 32, 32, o, &jpg, &len);
    int rc = sf_image_decode(jpg, len, &rgb, &w, &h, err, sizeof err);
    free(jpg);
    if (rc != 0 || w != 32 || h != 32) {
        fprintf(stderr, "cmyk decode: %d %s\n", rc, rc ? err : "");
        free(rgb);
        return 0;
    }
    static const uint8_t want[2][3] = {{255, 0, 0}, {127, 127, 127}};
    int ok = 1;
    for (int y = 2; y < 30; y++)
        for (int x = 2; x < 30; x++) {
            if (x >= 14 && x < 18) continue;  /* the edge between the halves */
            for (int c = 0; c < 3; c++)
                if (abs((int)rgb[(y * 32 + x) * 3 + c] - want[x / 16][c]) > 6) ok = 0;
        }
    free(rgb);
    return ok;
}

TEST(cmyk_jpeg_becomes_rgb) {
    CHECK(check_cmyk(JCS_CMYK, 1));    /* Adobe marker: inverted */
    CHECK(check_cmyk(JCS_CMYK, 0));    /* plain CMYK */
    CHECK(check_cmyk(JCS_YCCK, 1));    /* YCCK (always Adobe-marked) */
}

TEST(png_decodes_exactly) {
    uint8_t src[19 * 7 * 3];
    gradient(src, 19, 7, 3);
    uint8_t *png = NULL, *rgb = NULL;
    size_t len;
    int w, h;
    char err[256];
    CHECK_EQ_INT(sf_png_encode(src, 19, 7, 3, &png, &len), 0);
    CHECK_EQ_INT(sf_image_decode(png, len, &rgb, &w, &h, err, sizeof err), 0);
    CHECK(w == 19 && h == 7);
    CHECK(memcmp(rgb, src, sizeof src) == 0);
    free(rgb);
    /* Truncated PNG: refused like a truncated JPEG. */
    CHECK_EQ_INT(sf_image_decode(png, len / 2, &rgb, &w, &h, err, sizeof err), SF_EFORMAT);
    CHECK(strstr(err, "PNG") != NULL);
    free(png);
}

/* Cut at half: SF_EFORMAT naming the truncation.  Cut anywhere else (every
 * 5th byte, and just before the EOI marker), or cut and closed with an EOI:
 * SF_EFORMAT too, never a grey-padded image. */
TEST(truncated_jpeg_is_rejected) {
    /* Texture, so that most of the file is scan data and half-way falls
     * inside it. */
    uint8_t src[64 * 64 * 3];
    for (int i = 0; i < 64 * 64 * 3; i++) src[i] = (uint8_t)((i / 3 % 64) * 3 + i / 192 + (i % 3) * 30);
    for (int prog = 0; prog < 2; prog++) {
        jopt_t o = RGB;
        o.progressive = prog;
        uint8_t *jpg = NULL, *rgb = NULL;
        size_t len;
        int w, h;
        char err[256] = "";
        write_jpeg(src, 64, 64, o, &jpg, &len);
        CHECK_EQ_INT(sf_image_decode(jpg, len / 2, &rgb, &w, &h, err, sizeof err), SF_EFORMAT);
        CHECK(strstr(err, "truncated JPEG") != NULL);
        CHECK(strstr(err, "remature end") != NULL);  /* libjpeg's own words */
        for (size_t cut = 3; cut < len; cut += 5) {
            err[0] = 0;
            CHECK_EQ_INT(sf_image_decode(jpg, cut, &rgb, &w, &h, err, sizeof err), SF_EFORMAT);
            CHECK(err[0] != 0);
        }
        CHECK_EQ_INT(sf_image_decode(jpg, len - 2, &rgb, &w, &h, err, sizeof err), SF_EFORMAT);
        CHECK_EQ_INT(sf_image_decode(jpg, len - 1, &rgb, &w, &h, err, sizeof err), SF_EFORMAT);
        /* Cut at half and closed with an EOI marker, as a careless repair
         * would: the file "ends" properly but the scan's data runs out. */
        memcpy(jpg + len / 2, "\xFF\xD9", 2);
        CHECK_EQ_INT(sf_image_decode(jpg, len / 2 + 2, &rgb, &w, &h, err, sizeof err), SF_EFORMAT);
        CHECK(strstr(err, "truncated JPEG") != NULL);
        if (!prog) CHECK(strstr(err, "premature end of data segment") != NULL);
        CHECK(rgb == NULL);
        free(jpg);
    }
}

TEST(garbage_is_rejected) {
    uint8_t junk[300];
    for (size_t i = 0; i < sizeof junk; i++) junk[i] = (uint8_t)(i * 131 + 7);
    uint8_t *rgb = NULL;
    int w, h;
    char err[256];
    CHECK_EQ_INT(sf_image_decode(junk, sizeof junk, &rgb, &w, &h, err, sizeof err), SF_EFORMAT);
    CHECK_EQ_STR(err, "not a JPEG or PNG");
    CHECK_EQ_INT(sf_image_decode(junk, 0, &rgb, &w, &h, err, sizeof err), SF_EFORMAT);
    CHECK_EQ_INT(sf_image_decode(NULL, 0, &rgb, &w, &h, err, sizeof err), SF_EFORMAT);
    CHECK_EQ_INT(sf_image_decode(junk, sizeof junk, NULL, &w, &h, err, sizeof err), SF_EINVAL);
    /* JPEG and PNG magic followed by junk: libjpeg's / libpng's message,
     * and the process is still here (libjpeg's default would exit()). */
    junk[0] = 0xFF, junk[1] = 0xD8, junk[2] = 0xFF;
    CHECK_EQ_INT(sf_image_decode(junk, sizeof junk, &rgb, &w, &h, err, sizeof err), SF_EFORMAT);
    CHECK(strncmp(err, "corrupt JPEG: ", 14) == 0 && strlen(err) > 14);
    memcpy(junk, "\x89PNG\r\n\x1a\n", 8);
    CHECK_EQ_INT(sf_image_decode(junk, sizeof junk, &rgb, &w, &h, err, sizeof err), SF_EFORMAT);
    CHECK(strstr(err, "PNG") != NULL);
    CHECK(rgb == NULL);
}

/* Every single-byte corruption of a small JPEG either decodes to the right
 * size or is refused with SF_EFORMAT/SF_ERANGE and a message. */
TEST(flipped_bytes_never_crash) {
    uint8_t src[24 * 16 * 3];
    gradient(src, 24, 16, 3);
    uint8_t *jpg = NULL;
    size_t len;
    write_jpeg(src, 24, 16, RGB, &jpg, &len);
    uint8_t *bad = malloc(len);
    int refused = 0;
    for (size_t i = 3; i < len; i++) {
        memcpy(bad, jpg, len);
        bad[i] ^= 0xA5;
        uint8_t *rgb = NULL;
        int w, h;
        char err[256] = "";
        int rc = sf_image_decode(bad, len, &rgb, &w, &h, err, sizeof err);
        if (rc == 0) {
            CHECK(rgb != NULL && w > 0 && h > 0);
            free(rgb);
        } else {
            CHECK(rc == SF_EFORMAT || rc == SF_ERANGE);
            CHECK(err[0] != 0 && rgb == NULL);
            refused++;
        }
    }
    CHECK(refused > 0);
    free(bad);
    free(jpg);
}

/* Offset of the SOFn segment's height field in a JPEG, or 0. */
static size_t sof_offset(const uint8_t *j, size_t len) {
    for (size_t i = 2; i + 9 < len; i++)
        if (j[i] == 0xFF && (j[i + 1] == 0xC0 || j[i + 1] == 0xC2)) return i + 5;
    return 0;
}

static long maxrss_kb(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

/* A header patched to claim 60000x60000 (10 GB of RGB), or 16000x16000
 * (each side under the cap, 256 Mpx over it), or a PNG claiming
 * 20000x20000, is SF_ERANGE naming the size; it is decided from the header
 * (SF_ERANGE, not the SF_EFORMAT that decoding the missing data would
 * give), and the process's peak memory does not move. */
TEST(huge_declared_size_is_rejected_unallocated) {
    uint8_t src[16 * 16 * 3];
    gradient(src, 16, 16, 3);
    uint8_t *jpg = NULL, *rgb = NULL;
    size_t len;
    int w, h;
    char err[256];
    write_jpeg(src, 16, 16, RGB, &jpg, &len);
    size_t at = sof_offset(jpg, len);
    CHECK(at > 0);
    long rss0 = maxrss_kb();
    static const int sizes[][2] = {{60000, 60000}, {16000, 16000}, {20000, 10}};
    for (int i = 0; i < 3; i++) {
        jpg[at] = (uint8_t)(sizes[i][1] >> 8), jpg[at + 1] = (uint8_t)sizes[i][1];
        jpg[at + 2] = (uint8_t)(sizes[i][0] >> 8), jpg[at + 3] = (uint8_t)sizes[i][0];
        CHECK_EQ_INT(sf_image_decode(jpg, len, &rgb, &w, &h, err, sizeof err), SF_ERANGE);
        char want[32];
        snprintf(want, sizeof want, "%dx%d", sizes[i][0], sizes[i][1]);
        CHECK(strstr(err, want) != NULL);
        CHECK_EQ_INT(sf_image_probe(jpg, len, &w, &h, err, sizeof err), SF_ERANGE);
    }
    free(jpg);

    uint8_t *png = NULL;
    CHECK_EQ_INT(sf_png_encode(src, 16, 16, 3, &png, &len), 0);
    png[16] = 0, png[17] = 0, png[18] = 0x4E, png[19] = 0x20;  /* width 20000 */
    png[20] = 0, png[21] = 0, png[22] = 0x4E, png[23] = 0x20;  /* height 20000 */
    CHECK_EQ_INT(sf_image_decode(png, len, &rgb, &w, &h, err, sizeof err), SF_ERANGE);
    CHECK(strstr(err, "20000x20000") != NULL);
    free(png);
    CHECK(maxrss_kb() - rss0 < 32 * 1024);
    CHECK(rgb == NULL);
}

/* A grayscale progressive file of 568 scans (one coefficient per scan,
 * refined bit by bit) is refused; such scripts cost CPU out of all
 * proportion to their bytes. */
TEST(endless_progressive_scans_are_refused) {
    static jpeg_scan_info scans[1 + 63 + 63 * 8];
    int n = 0;
    scans[n++] = (jpeg_scan_info){1, {0}, 0, 0, 0, 0};
    for (int k = 1; k < 64; k++) scans[n++] = (jpeg_scan_info){1, {0}, k, k, 0, 8};
    for (int a = 8; a > 0; a--)
        for (int k = 1; k < 64; k++) scans[n++] = (jpeg_scan_info){1, {0}, k, k, a, a - 1};
    uint8_t src[16 * 16];
    gradient(src, 16, 16, 1);
    jopt_t o = GRAY;
    o.scans = scans;
    o.n_scans = n;
    uint8_t *jpg = NULL, *rgb = NULL;
    size_t len;
    int w, h;
    char err[256];
    write_jpeg(src, 16, 16, o, &jpg, &len);
    CHECK_EQ_INT(sf_image_decode(jpg, len, &rgb, &w, &h, err, sizeof err), SF_EFORMAT);
    CHECK(strstr(err, "more than 500 scans") != NULL);
    free(jpg);
    /* The same with 253 scans (Al up to 3) decodes. */
    n = 0;
    scans[n++] = (jpeg_scan_info){1, {0}, 0, 0, 0, 0};
    for (int k = 1; k < 64; k++) scans[n++] = (jpeg_scan_info){1, {0}, k, k, 0, 3};
    for (int a = 3; a > 0; a--)
        for (int k = 1; k < 64; k++) scans[n++] = (jpeg_scan_info){1, {0}, k, k, a, a - 1};
    o.n_scans = n;
    write_jpeg(src, 16, 16, o, &jpg, &len);
    CHECK_EQ_INT(sf_image_decode(jpg, len, &rgb, &w, &h, err, sizeof err), 0);
    CHECK(w == 16 && h == 16);
    free(rgb);
    free(jpg);
}

/* Files: decoded by content (a PNG named .jpg), missing files
 * SF_ENOTFOUND, folders and FIFOs SF_EIO without blocking, messages naming
 * the path. */
TEST(read_files) {
    char dir[] = "/tmp/sf_image_XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char path[256];
    uint8_t src[8 * 8 * 3];
    gradient(src, 8, 8, 3);
    snprintf(path, sizeof path, "%s/really_a_png.jpg", dir);
    CHECK_EQ_INT(sf_png_write(path, src, 8, 8, 3), 0);
    uint8_t *rgb = NULL;
    int w, h;
    char err[512];
    CHECK_EQ_INT(sf_image_read(path, &rgb, &w, &h, err, sizeof err), 0);
    CHECK(w == 8 && h == 8 && memcmp(rgb, src, sizeof src) == 0);
    free(rgb);
    rgb = NULL;
    unlink(path);
    CHECK_EQ_INT(sf_image_read(path, &rgb, &w, &h, err, sizeof err), SF_ENOTFOUND);
    CHECK(strstr(err, path) != NULL);
    CHECK_EQ_INT(sf_image_read(dir, &rgb, &w, &h, err, sizeof err), SF_EIO);
    snprintf(path, sizeof path, "%s/fifo.jpg", dir);
    CHECK(mkfifo(path, 0600) == 0);
    CHECK_EQ_INT(sf_image_read(path, &rgb, &w, &h, err, sizeof err), SF_EIO);
    unlink(path);
    snprintf(path, sizeof path, "%s/empty.jpg", dir);
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL);
    fclose(f);
    CHECK_EQ_INT(sf_image_read(path, &rgb, &w, &h, err, sizeof err), SF_EFORMAT);
    CHECK(strstr(err, "not a JPEG or PNG") != NULL && strstr(err, path) == err);
    unlink(path);
    rmdir(dir);
    CHECK(rgb == NULL);
}

static void write_file(const char *dir, const char *name, const uint8_t *b, size_t n) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f) return;
    fwrite(b, 1, n, f);
    fclose(f);
}

/* The fuzz seeds: tiny JPEGs (baseline RGB, progressive gray, Adobe CMYK)
 * and PNGs, each well under 2 KiB. */
static void write_corpus(const char *dir) {
    uint8_t src[8 * 8 * 4], *b = NULL;
    size_t n;
    gradient(src, 8, 8, 4);
    write_jpeg(src, 8, 8, RGB, &b, &n);
    write_file(dir, "rgb.jpg", b, n);
    free(b);
    jopt_t o = GRAY;
    o.progressive = 1;
    write_jpeg(src, 8, 8, o, &b, &n);
    write_file(dir, "gray_progressive.jpg", b, n);
    free(b);
    jopt_t c = {JCS_CMYK, JCS_UNKNOWN, 4, 90, 0, 1, NULL, 0};
    write_jpeg(src, 8, 8, c, &b, &n);
    write_file(dir, "cmyk_adobe.jpg", b, n);
    free(b);
    if (sf_png_encode(src, 4, 4, 3, &b, &n) == 0) write_file(dir, "rgb.png", b, n);
    free(b);
    if (sf_png_encode(src, 5, 3, 1, &b, &n) == 0) write_file(dir, "gray.png", b, n);
    free(b);
}

int main(void) {
    SF_RUN(rgb_jpeg_decodes_to_size_and_colours);
    SF_RUN(progressive_jpeg_decodes_like_baseline);
    SF_RUN(gray_jpeg_becomes_rgb);
    SF_RUN(cmyk_jpeg_becomes_rgb);
    SF_RUN(png_decodes_exactly);
    SF_RUN(truncated_jpeg_is_rejected);
    SF_RUN(garbage_is_rejected);
    SF_RUN(flipped_bytes_never_crash);
    SF_RUN(huge_declared_size_is_rejected_unallocated);
    SF_RUN(endless_progressive_scans_are_refused);
    SF_RUN(read_files);
    const char *corpus = getenv("SF_IMAGE_CORPUS");
    if (corpus) write_corpus(corpus);
    SF_DONE();
}
