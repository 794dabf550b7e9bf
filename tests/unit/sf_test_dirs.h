/* sf_test_dirs.h: scratch folders for the unit tests that write model
 * folders (test_ml_realdirs, test_ml_timm): a root under /tmp the test makes,
 * fresh subfolders in it, text files, and a check that a message names what
 * it should.  Header-only: each test has its own root. */
#ifndef SF_TEST_DIRS_H
#define SF_TEST_DIRS_H

#include <ftw.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

static char root[64];

static inline int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb, (void)flag, (void)ftw;
    return remove(p);
}

static inline void rm_rf(const char *p) { nftw(p, rm_one, 16, FTW_DEPTH | FTW_PHYS); }

/* A fresh folder root/name (emptied if it exists); the path is valid until
 * the next call. */
static inline const char *folder(const char *name) {
    static char p[256];
    snprintf(p, sizeof p, "%s/%s", root, name);
    rm_rf(p);
    mkdir(p, 0755);
    return p;
}

static inline int write_text(const char *dir, const char *file, const char *text) {
    char p[512];
    snprintf(p, sizeof p, "%s/%s", dir, file);
    FILE *f = fopen(p, "w");
    if (!f) return -1;
    fputs(text, f);
    return fclose(f);
}

static inline int contains(const char *s, const char *sub) {
    if (!strstr(s, sub)) {
        fprintf(stderr, "  message \"%s\" lacks \"%s\"\n", s, sub);
        return 0;
    }
    return 1;
}

#endif
