/* Unit tests for common/runtime/fileio: whole files and streams read into one
 * NUL-terminated buffer, with the size limit and every failure named; atomic
 * writes (a reader sees the old file or the new one, never a temporary one
 * left behind) and mkdir -p. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/runtime/error.h"
#include "common/runtime/fileio.h"
#include "sf_test.h"

static void write_bytes(const char *path, const char *b, size_t n) {
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL);
    CHECK(fwrite(b, 1, n, f) == n);
    fclose(f);
}

TEST(reads_a_file_whole) {
    char dir[] = "/tmp/sf-test-fileio.XXXXXX", path[128], err[256];
    CHECK(mkdtemp(dir) != NULL);
    snprintf(path, sizeof path, "%s/a.bin", dir);
    /* Bytes with a NUL inside: the length, not strlen, tells where it ends. */
    write_bytes(path, "ab\0cd", 5);
    char *b;
    size_t n;
    CHECK_EQ_INT(sf_read_file(path, SF_READ_ANY_SIZE, &b, &n, err, sizeof err), 0);
    CHECK_EQ_INT(n, 5);
    CHECK(memcmp(b, "ab\0cd", 5) == 0 && b[5] == 0);
    free(b);
    /* Exactly at the limit is fine; one byte over is SF_ERANGE, named. */
    CHECK_EQ_INT(sf_read_file(path, 5, &b, &n, err, sizeof err), 0);
    free(b);
    CHECK_EQ_INT(sf_read_file(path, 4, &b, &n, err, sizeof err), SF_ERANGE);
    CHECK(b == NULL && strstr(err, path) && strstr(err, "over 4 bytes"));
    /* Empty file: an empty string. */
    write_bytes(path, "", 0);
    CHECK_EQ_INT(sf_read_file(path, SF_READ_ANY_SIZE, &b, &n, err, sizeof err), 0);
    CHECK_EQ_INT(n, 0);
    CHECK(b[0] == 0);
    free(b);
    /* Missing: SF_EIO, saying it cannot be opened, errno kept. */
    snprintf(path, sizeof path, "%s/missing", dir);
    CHECK_EQ_INT(sf_read_file(path, SF_READ_ANY_SIZE, &b, &n, err, sizeof err), SF_EIO);
    CHECK(strstr(err, "cannot open") && strstr(err, path));
    CHECK(sf_file_text(path, NULL) == NULL && errno == ENOENT);
    /* A directory opens but cannot be read. */
    CHECK_EQ_INT(sf_read_file(dir, SF_READ_ANY_SIZE, &b, &n, err, sizeof err), SF_EIO);
    CHECK(strstr(err, "cannot read") && strstr(err, dir));
    rmdir(dir);
}

TEST(reads_a_large_file_and_a_pipe) {
    /* 3 MiB + 7 through a file (sized up front) and through a pipe (grown
     * as it reads, past its first 64 KiB): the same bytes either way. */
    size_t n = 3 * (1 << 20) + 7;
    char path[] = "/tmp/sf-test-fileio-big.XXXXXX";
    char *want = (char *)sf_test_pattern_file(path, n);
    CHECK(want != NULL);
    size_t got;
    char *b = sf_file_text(path, &got);
    CHECK(b != NULL && got == n && memcmp(b, want, n) == 0 && b[n] == 0);
    free(b);
    char cmd[200];
    snprintf(cmd, sizeof cmd, "cat %s", path);
    FILE *p = popen(cmd, "r");
    CHECK(p != NULL);
    CHECK_EQ_INT(sf_read_stream(p, SF_READ_ANY_SIZE, &b, &got), 0);
    pclose(p);
    CHECK(got == n && memcmp(b, want, n) == 0 && b[n] == 0);
    free(b);
    /* A stream over the limit stops with SF_ERANGE and nothing to free. */
    p = popen(cmd, "r");
    CHECK_EQ_INT(sf_read_stream(p, 100000, &b, &got), SF_ERANGE);
    CHECK(b == NULL);
    pclose(p);
    unlink(path);
    free(want);
}

static int write_half_then_fail(FILE *f, void *arg) {
    (void)arg;
    fputs("half", f);
    return SF_EFORMAT;
}

static int count_entries(const char *dir) {
    char cmd[300];
    snprintf(cmd, sizeof cmd, "ls -A %s | wc -l", dir);
    FILE *p = popen(cmd, "r");
    int n = -1;
    if (p && fscanf(p, "%d", &n) != 1) n = -1;
    if (p) pclose(p);
    return n;
}

TEST(writes_atomically_and_makes_dirs) {
    char dir[] = "/tmp/sf-test-fileio-w.XXXXXX", sub[200], path[300];
    CHECK(mkdtemp(dir) != NULL);
    snprintf(sub, sizeof sub, "%s/a/b/c", dir);
    CHECK_EQ_INT(sf_mkdir_p(sub, 0755), 0);
    struct stat st;
    CHECK(stat(sub, &st) == 0 && S_ISDIR(st.st_mode));
    CHECK_EQ_INT(sf_mkdir_p(sub, 0755), 0); /* existing: fine */
    snprintf(path, sizeof path, "%s/f.txt", sub);
    CHECK_EQ_INT(sf_write_file_atomic(path, "old", 3), 0);
    CHECK_EQ_INT(sf_write_file_atomic(path, "new!", 4), 0);
    size_t n;
    char *b = sf_file_text(path, &n);
    CHECK(b && n == 4 && !memcmp(b, "new!", 4));
    free(b);
    /* A writer that fails leaves the old file and no temporary behind. */
    CHECK_EQ_INT(sf_write_atomic(path, write_half_then_fail, NULL), SF_EFORMAT);
    b = sf_file_text(path, &n);
    CHECK(b && n == 4 && !memcmp(b, "new!", 4));
    free(b);
    CHECK_EQ_INT(count_entries(sub), 1);
    /* A path whose folder is missing fails with SF_EIO and writes nothing. */
    snprintf(path, sizeof path, "%s/missing/f.txt", dir);
    CHECK_EQ_INT(sf_write_file_atomic(path, "x", 1), SF_EIO);
    /* mkdir -p through a file is an error. */
    snprintf(path, sizeof path, "%s/f.txt/d", sub);
    CHECK_EQ_INT(sf_mkdir_p(path, 0755), SF_EIO);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0);
}

int main(void) {
    SF_RUN(reads_a_file_whole);
    SF_RUN(writes_atomically_and_makes_dirs);
    SF_RUN(reads_a_large_file_and_a_pipe);
    SF_DONE();
}
