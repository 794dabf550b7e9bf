/* fileio.c: whole-file reads (see fileio.h). */
#include "common/runtime/fileio.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/runtime/error.h"

int sf_read_stream(FILE *f, size_t max, char **buf, size_t *len) {
    *buf = NULL;
    if (len) *len = 0;
    size_t cap = 1 << 16, n = 0;
    struct stat st;
    if (fstat(fileno(f), &st) == 0 && S_ISREG(st.st_mode) && st.st_size >= 0) {
        if ((uint64_t)st.st_size > max) return SF_ERANGE;
        cap = (size_t)st.st_size + 1;   /* the file and its NUL: no growth */
    }
    char *b = malloc(cap);
    if (!b) return SF_ENOMEM;
    for (;;) {
        if (n == cap - 1) {             /* full: grow only if there is more */
            int c = fgetc(f);
            if (c == EOF) break;
            size_t nc = cap < SIZE_MAX / 2 ? cap * 2 : SIZE_MAX;
            char *nb = nc > cap ? realloc(b, nc) : NULL;
            if (!nb) { free(b); return SF_ENOMEM; }
            b = nb, cap = nc;
            b[n++] = (char)c;
        }
        size_t k = fread(b + n, 1, cap - 1 - n, f);
        n += k;
        if (n > max) { free(b); return SF_ERANGE; }
        if (k == 0) break;
    }
    if (ferror(f)) {
        int e = errno;
        free(b);
        errno = e ? e : EIO;
        return SF_EIO;
    }
    b[n] = 0;
    *buf = b;
    if (len) *len = n;
    return 0;
}

int sf_read_file(const char *path, size_t max, char **buf, size_t *len, char *err, size_t errlen) {
    *buf = NULL;
    if (len) *len = 0;
    FILE *f = fopen(path, "rb");
    int rc, e;
    if (!f) {
        e = errno;
        rc = sf_errf(SF_EIO, err, errlen, "cannot open '%s': %s", path, strerror(e));
    } else {
        errno = 0;
        rc = sf_read_stream(f, max, buf, len);
        e = errno;
        fclose(f);
        if (rc == SF_ERANGE) sf_errf(rc, err, errlen, "'%s' is over %zu bytes", path, max);
        else if (rc == SF_ENOMEM) sf_errf(rc, err, errlen, "'%s': out of memory", path);
        else if (rc) sf_errf(rc, err, errlen, "cannot read '%s': %s", path, strerror(e));
    }
    errno = e;   /* from the failing call, for callers that use it */
    return rc;
}

char *sf_file_text(const char *path, size_t *len) {
    char *b;
    return sf_read_file(path, SF_READ_ANY_SIZE, &b, len, NULL, 0) ? NULL : b;
}

int sf_tmp_path(const char *path, char *out, size_t n) {
    int k = snprintf(out, n, "%s.tmp.%d", path, (int)getpid());
    if (k < 0 || (size_t)k >= n) { errno = ENAMETOOLONG; return SF_EIO; }
    return 0;
}

int sf_commit_tmp(const char *tmp, const char *path) {
    if (rename(tmp, path) == 0) return 0;
    int e = errno;
    unlink(tmp);
    errno = e;
    return SF_EIO;
}

int sf_write_atomic(const char *path, sf_write_fn fn, void *arg) {
    size_t n = strlen(path) + 32;
    char *tmp = malloc(n);
    if (!tmp) return SF_ENOMEM;
    int rc = sf_tmp_path(path, tmp, n);
    FILE *f = rc ? NULL : fopen(tmp, "wb");
    if (!rc && !f) rc = SF_EIO;
    if (f) {
        rc = fn(f, arg);
        int e = errno;
        if (fclose(f) != 0 && !rc) rc = SF_EIO, e = errno;
        errno = e;
        if (rc) unlink(tmp), errno = e;
        else rc = sf_commit_tmp(tmp, path);
    }
    free(tmp);
    return rc;
}

typedef struct { const void *buf; size_t len; } mem_t;

static int write_mem(FILE *f, void *arg) {
    const mem_t *m = arg;
    return m->len && fwrite(m->buf, 1, m->len, f) != m->len ? SF_EIO : 0;
}

int sf_write_file_atomic(const char *path, const void *buf, size_t len) {
    mem_t m = {buf, len};
    return sf_write_atomic(path, write_mem, &m);
}

int sf_mkdir_p(const char *path, unsigned mode) {
    size_t n = strlen(path);
    char *tmp = malloc(n + 1);
    if (!tmp) return SF_ENOMEM;
    memcpy(tmp, path, n + 1);
    int rc = 0;
    for (char *q = tmp + 1; !rc && *q; q++)
        if (*q == '/') {
            *q = 0;
            if (mkdir(tmp, (mode_t)mode) != 0 && errno != EEXIST) rc = SF_EIO;
            *q = '/';
        }
    if (!rc && n && mkdir(tmp, (mode_t)mode) != 0 && errno != EEXIST) rc = SF_EIO;
    free(tmp);
    return rc;
}
