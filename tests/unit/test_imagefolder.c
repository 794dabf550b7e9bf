/* Unit tests for common/imagefolder on a real folder tree made in /tmp:
 * sorted listing, the extension and hidden-file filter, content sniffing,
 * unreadable files skipped and counted with the first message kept, wnid
 * validation, missing folders, empty classes and symlinks that would lead
 * outside root. */
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jpeglib.h>

#include "common/runtime/error.h"
#include "common/image/imagefolder.h"
#include "common/image/png.h"
#include "sf_test.h"

static char root[64];
static char outside[64];

static void put(const char *rel, const void *b, size_t n) {
    char path[256];
    snprintf(path, sizeof path, "%s/%s", root, rel);
    FILE *f = fopen(path, "wb");
    if (!f) return;
    fwrite(b, 1, n, f);
    fclose(f);
}

static void mkd(const char *rel) {
    char path[256];
    snprintf(path, sizeof path, "%s/%s", root, rel);
    mkdir(path, 0755);
}

/* A w x h RGB JPEG of one grey level, into a new buffer (free()). */
static uint8_t *jpeg_of(int w, int h, int level, size_t *len) {
    struct jpeg_compress_struct c;
    struct jpeg_error_mgr jerr;
    unsigned char *mem = NULL;
    unsigned long mlen = 0;
    uint8_t *row = malloc((size_t)w * 3);
    memset(row, level, (size_t)w * 3);
    c.err = jpeg_std_error(&jerr);
    jpeg_create_compress(&c);
    jpeg_mem_dest(&c, &mem, &mlen);
    c.image_width = (JDIMENSION)w;
    c.image_height = (JDIMENSION)h;
    c.input_components = 3;
    c.in_color_space = JCS_RGB;
    jpeg_set_defaults(&c);
    jpeg_start_compress(&c, TRUE);
    while (c.next_scanline < c.image_height) jpeg_write_scanlines(&c, &row, 1);
    jpeg_finish_compress(&c);
    jpeg_destroy_compress(&c);
    free(row);
    *len = mlen;
    return mem;
}

static void put_jpeg(const char *rel, int w, int h) {
    size_t n;
    uint8_t *j = jpeg_of(w, h, 128, &n);
    put(rel, j, n);
    free(j);
}

static void put_png(const char *rel, int w, int h) {
    uint8_t *pix = calloc((size_t)w * h, 3);
    char path[256];
    snprintf(path, sizeof path, "%s/%s", root, rel);
    sf_png_write(path, pix, w, h, 3);
    free(pix);
}

/* root/
 *   n01/  a.jpg 10x10, b.JPEG 11x10, c.png 12x10 (PNG), e.PNG 13x10 (a JPEG),
 *         d.txt, .hidden.jpg, sub.jpg/ (a folder), f.jpeg -> outside image,
 *         g.jpg (a FIFO)
 *   n02/  x.jpeg (garbage), y.jpg (truncated), z.jpg 20x10, zz.jpg -> nowhere
 *   empty/
 *   .git/  notes.txt      (hidden: not a class)
 *   a..b/                 (not a valid wnid: not a class)
 *   file.txt              (not a folder: not a class)
 *   escape -> outside/    (a class folder outside root)
 *   broken -> nowhere     (a dangling link: not a class) */
static int setup(void) {
    snprintf(root, sizeof root, "/tmp/sf_imgf_XXXXXX");
    snprintf(outside, sizeof outside, "/tmp/sf_imgf_out_XXXXXX");
    if (!mkdtemp(root) || !mkdtemp(outside)) return -1;
    mkd("n01");
    mkd("n02");
    mkd("empty");
    mkd(".git");
    mkd("a..b");
    mkd("n01/sub.jpg");
    put_jpeg("n01/a.jpg", 10, 10);
    put_jpeg("n01/b.JPEG", 11, 10);
    put_png("n01/c.png", 12, 10);
    put_jpeg("e.tmp", 13, 10);
    char from[256], to[256];
    snprintf(from, sizeof from, "%s/e.tmp", root);
    snprintf(to, sizeof to, "%s/n01/e.PNG", root);
    if (rename(from, to) != 0) return -1;
    put("n01/d.txt", "hello", 5);
    put_jpeg("n01/.hidden.jpg", 5, 5);
    snprintf(to, sizeof to, "%s/n01/g.jpg", root);
    if (mkfifo(to, 0600) != 0) return -1;
    /* An image outside root, linked in as a file: followed. */
    size_t n;
    uint8_t *j = jpeg_of(14, 10, 200, &n);
    snprintf(to, sizeof to, "%s/pic.jpg", outside);
    FILE *f = fopen(to, "wb");
    if (!f) return -1;
    fwrite(j, 1, n, f);
    fclose(f);
    snprintf(from, sizeof from, "%s/n01/f.jpeg", root);
    if (symlink(to, from) != 0) return -1;
    put("n02/x.jpeg", "this is not an image at all", 27);
    put("n02/y.jpg", j, n / 2);
    free(j);
    put_jpeg("n02/z.jpg", 20, 10);
    snprintf(from, sizeof from, "%s/n02/zz.jpg", root);
    if (symlink("/nonexistent/zz.jpg", from) != 0) return -1;
    put(".git/notes.txt", "x", 1);
    put("file.txt", "x", 1);
    snprintf(from, sizeof from, "%s/escape", root);
    if (symlink(outside, from) != 0) return -1;
    snprintf(from, sizeof from, "%s/broken", root);
    if (symlink("/nonexistent/n03", from) != 0) return -1;
    return 0;
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

static void teardown(void) {
    nftw(root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    nftw(outside, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* Every valid subfolder, sorted; a symlinked class folder leading outside
 * root is refused even when listing everything. */
TEST(open_all_lists_sorted_classes) {
    sf_imagefolder_t *f = NULL;
    char err[512];
    CHECK_EQ_INT(sf_imagefolder_open(root, NULL, 0, &f, err, sizeof err), SF_EINVAL);
    CHECK(strstr(err, "outside") != NULL && strstr(err, "escape") != NULL);
    CHECK(f == NULL);
    char link[256];
    snprintf(link, sizeof link, "%s/escape", root);
    CHECK(unlink(link) == 0);
    CHECK_EQ_INT(sf_imagefolder_open(root, NULL, 0, &f, err, sizeof err), 0);
    CHECK_EQ_INT(sf_imagefolder_nclasses(f), 3);
    CHECK_EQ_STR(sf_imagefolder_class(f, 0), "empty");
    CHECK_EQ_STR(sf_imagefolder_class(f, 1), "n01");
    CHECK_EQ_STR(sf_imagefolder_class(f, 2), "n02");
    CHECK(sf_imagefolder_class(f, 3) == NULL);
    CHECK_EQ_INT(sf_imagefolder_count(f, "empty"), 0);
    sf_imagefolder_free(&f);
    CHECK(f == NULL);
    sf_imagefolder_free(&f);
    /* A trailing slash on root changes nothing. */
    char r2[80];
    snprintf(r2, sizeof r2, "%s//", root);
    CHECK_EQ_INT(sf_imagefolder_open(r2, NULL, 0, &f, err, sizeof err), 0);
    char path[256], want[256];
    CHECK_EQ_INT(sf_imagefolder_path(f, "n01", 0, path, sizeof path), 0);
    snprintf(want, sizeof want, "%s/n01/a.jpg", root);
    CHECK_EQ_STR(path, want);
    sf_imagefolder_free(&f);
}

/* n01: the five image files in byte order (upper case sorts first), each
 * decoding to its own size; text, hidden, folder and FIFO entries left out;
 * the PNG named .jpg-style and the JPEG named .PNG decode by content. */
TEST(listing_filters_and_reads_by_content) {
    const char *want[] = {"n01"};
    sf_imagefolder_t *f = NULL;
    char err[512];
    CHECK_EQ_INT(sf_imagefolder_open(root, want, 1, &f, err, sizeof err), 0);
    CHECK_EQ_INT(sf_imagefolder_count(f, "n01"), 5);
    static const char *names[] = {"a.jpg", "b.JPEG", "c.png", "e.PNG", "f.jpeg"};
    static const int widths[] = {10, 11, 12, 13, 14};
    for (int i = 0; i < 5; i++) {
        char path[256];
        CHECK_EQ_INT(sf_imagefolder_path(f, "n01", i, path, sizeof path), 0);
        CHECK(strcmp(strrchr(path, '/') + 1, names[i]) == 0);
        uint8_t *rgb = NULL;
        int w = 0, h = 0;
        CHECK_EQ_INT(sf_imagefolder_read(f, "n01", i, &rgb, &w, &h, err, sizeof err), 0);
        CHECK_EQ_INT(w, widths[i]);
        CHECK_EQ_INT(h, 10);
        free(rgb);
    }
    uint8_t *rgb = NULL;
    int w, h;
    CHECK_EQ_INT(sf_imagefolder_read(f, "n01", 5, &rgb, &w, &h, err, sizeof err), SF_ERANGE);
    CHECK_EQ_INT(sf_imagefolder_read(f, "n01", -1, &rgb, &w, &h, err, sizeof err), SF_ERANGE);
    CHECK_EQ_INT(sf_imagefolder_read(f, "n02", 0, &rgb, &w, &h, err, sizeof err), SF_ENOTFOUND);
    CHECK_EQ_INT(sf_imagefolder_count(f, "n02"), SF_ENOTFOUND);
    char small[8];
    CHECK_EQ_INT(sf_imagefolder_path(f, "n01", 0, small, sizeof small), SF_ERANGE);
    CHECK(rgb == NULL);
    sf_imagefolder_free(&f);
}

/* n02 is x.jpeg (garbage), y.jpg (truncated), z.jpg (good), zz.jpg
 * (dangling link, listed so that it is counted). */
TEST(batches_skip_and_count_unreadable_files) {
    const char *want[] = {"n02", "empty"};
    sf_imagefolder_t *f = NULL;
    sf_imagefolder_batch_t b;
    char err[512];
    CHECK_EQ_INT(sf_imagefolder_open(root, want, 2, &f, err, sizeof err), 0);
    CHECK_EQ_STR(sf_imagefolder_class(f, 0), "n02");  /* the order asked */
    CHECK_EQ_INT(sf_imagefolder_count(f, "n02"), 4);

    /* The first readable image: two files passed over, the first message
     * (the garbage file, by path) kept. */
    CHECK_EQ_INT(sf_imagefolder_read_batch(f, "n02", 0, -1, 1, &b, err, sizeof err), 0);
    CHECK_EQ_INT(b.n_images, 1);
    CHECK_EQ_INT(b.images[0].index, 2);
    CHECK(b.images[0].w == 20 && b.images[0].h == 10 && b.images[0].rgb != NULL);
    CHECK_EQ_INT(b.n_skipped, 2);
    CHECK_EQ_INT(b.next, 3);
    CHECK(strstr(b.first_err, "/n02/x.jpeg") != NULL);
    CHECK(strstr(b.first_err, "not a JPEG or PNG") != NULL);
    sf_imagefolder_batch_free(&b);
    CHECK(b.images == NULL && b.n_images == 0);

    /* Resuming where it stopped: the dangling link is counted. */
    CHECK_EQ_INT(sf_imagefolder_read_batch(f, "n02", 3, -1, 1, &b, err, sizeof err), 0);
    CHECK_EQ_INT(b.n_images, 0);
    CHECK_EQ_INT(b.n_skipped, 1);
    CHECK_EQ_INT(b.next, 4);
    CHECK(strstr(b.first_err, "zz.jpg") != NULL);
    sf_imagefolder_batch_free(&b);

    /* A file range: [1, 3) holds the truncated file and the good one. */
    CHECK_EQ_INT(sf_imagefolder_read_batch(f, "n02", 1, 2, -1, &b, err, sizeof err), 0);
    CHECK_EQ_INT(b.n_images, 1);
    CHECK_EQ_INT(b.n_skipped, 1);
    CHECK_EQ_INT(b.next, 3);
    CHECK(strstr(b.first_err, "y.jpg") != NULL && strstr(b.first_err, "truncated") != NULL);
    sf_imagefolder_batch_free(&b);

    /* The whole class. */
    CHECK_EQ_INT(sf_imagefolder_read_batch(f, "n02", 0, -1, -1, &b, err, sizeof err), 0);
    CHECK(b.n_images == 1 && b.n_skipped == 3 && b.next == 4);
    sf_imagefolder_batch_free(&b);

    /* Empty class, a start past the end, and bad calls. */
    CHECK_EQ_INT(sf_imagefolder_read_batch(f, "empty", 0, -1, 10, &b, err, sizeof err), 0);
    CHECK(b.n_images == 0 && b.n_skipped == 0 && b.next == 0 && b.first_err[0] == 0);
    CHECK_EQ_INT(sf_imagefolder_read_batch(f, "n02", 9, -1, 10, &b, err, sizeof err), 0);
    CHECK(b.n_images == 0 && b.next == 9);
    CHECK_EQ_INT(sf_imagefolder_read_batch(f, "n02", -1, -1, 10, &b, err, sizeof err), SF_EINVAL);
    CHECK_EQ_INT(sf_imagefolder_read_batch(f, "n09", 0, -1, 10, &b, err, sizeof err), SF_ENOTFOUND);
    CHECK(strstr(err, "n09") != NULL);
    sf_imagefolder_free(&f);
}

TEST(invalid_wnids_are_named) {
    static const char *bad[] = {"../etc", "a/b", ".hidden", "", "..", "a..b", "tab\there",
                                "n0123456789012345678901234567890123456789012345678901234567890123"};
    sf_imagefolder_t *f = NULL;
    char err[512];
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        const char *one[] = {"n01", bad[i]};
        err[0] = 0;
        CHECK_EQ_INT(sf_imagefolder_open(root, one, 2, &f, err, sizeof err), SF_EINVAL);
        CHECK(strstr(err, "invalid wnid") != NULL);
        if (bad[i][0]) CHECK(strstr(err, bad[i]) != NULL);
        CHECK(f == NULL);
    }
    const char *none[] = {NULL};
    CHECK_EQ_INT(sf_imagefolder_open(root, none, 1, &f, err, sizeof err), SF_EINVAL);
    const char *dup[] = {"n01", "n01"};
    CHECK_EQ_INT(sf_imagefolder_open(root, dup, 2, &f, err, sizeof err), SF_EINVAL);
    CHECK(strstr(err, "twice") != NULL);
    /* 64 bytes is the longest accepted: it passes validation and is then
     * missing. */
    const char *long64[] = {"n012345678901234567890123456789012345678901234567890123456789012"};
    CHECK_EQ_INT((int)strlen(long64[0]), 64);
    CHECK_EQ_INT(sf_imagefolder_open(root, long64, 1, &f, err, sizeof err), SF_ENOTFOUND);
    CHECK_EQ_INT(sf_imagefolder_open(root, NULL, -1, &f, err, sizeof err), SF_EINVAL);
    CHECK_EQ_INT(sf_imagefolder_open(NULL, NULL, 0, &f, err, sizeof err), SF_EINVAL);
    CHECK(f == NULL);
}

TEST(missing_folders_are_named) {
    sf_imagefolder_t *f = NULL;
    char err[512], want[256];
    const char *ask[] = {"n01", "n99"};
    CHECK_EQ_INT(sf_imagefolder_open(root, ask, 2, &f, err, sizeof err), SF_ENOTFOUND);
    snprintf(want, sizeof want, "%s/n99", root);
    CHECK(strstr(err, want) != NULL);
    const char *file[] = {"file.txt"};
    CHECK_EQ_INT(sf_imagefolder_open(root, file, 1, &f, err, sizeof err), SF_ENOTFOUND);
    CHECK(strstr(err, "not a folder") != NULL);
    CHECK_EQ_INT(sf_imagefolder_open("/nonexistent/imagenet", NULL, 0, &f, err, sizeof err),
                 SF_ENOTFOUND);
    CHECK(strstr(err, "/nonexistent/imagenet") != NULL);
    CHECK(f == NULL);
    /* Zero classes asked: an empty, valid folder object. */
    CHECK_EQ_INT(sf_imagefolder_open(root, ask, 0, &f, err, sizeof err), 0);
    CHECK_EQ_INT(sf_imagefolder_nclasses(f), 0);
    sf_imagefolder_free(&f);
}

/* A class folder that is a symlink leading outside root is refused when
 * asked for by name; one leading to another folder inside root is fine. */
TEST(class_symlinks_stay_inside_root) {
    char from[256];
    snprintf(from, sizeof from, "%s/escape", root);
    unlink(from);  /* left by the first test if it failed early */
    CHECK(symlink(outside, from) == 0);
    snprintf(from, sizeof from, "%s/alias", root);
    CHECK(symlink("n02", from) == 0);
    sf_imagefolder_t *f = NULL;
    char err[512];
    const char *esc[] = {"escape"};
    CHECK_EQ_INT(sf_imagefolder_open(root, esc, 1, &f, err, sizeof err), SF_EINVAL);
    CHECK(strstr(err, "outside") != NULL);
    const char *alias[] = {"alias"};
    CHECK_EQ_INT(sf_imagefolder_open(root, alias, 1, &f, err, sizeof err), 0);
    CHECK_EQ_INT(sf_imagefolder_count(f, "alias"), 4);
    sf_imagefolder_free(&f);
}

int main(void) {
    if (setup() != 0) {
        perror("setup");
        teardown();
        return 1;
    }
    SF_RUN(open_all_lists_sorted_classes);
    SF_RUN(listing_filters_and_reads_by_content);
    SF_RUN(batches_skip_and_count_unreadable_files);
    SF_RUN(invalid_wnids_are_named);
    SF_RUN(missing_folders_are_named);
    SF_RUN(class_symlinks_stay_inside_root);
    teardown();
    SF_DONE();
}
