/* fileio.c: whole-file reads (see fileio.h). */
#include "common/fileio.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/error.h"

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
