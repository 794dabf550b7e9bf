/* sf_test.h: the few macros every unit test uses.
 *
 * A test file is one program; each TEST runs in the order listed by main()
 * through SF_RUN.  A failed check prints file:line and the expression, marks the
 * test failed and returns from it.  The program exits non-zero if any test
 * failed, so tests/run.sh can run each file in its own process with a timeout.
 */
#ifndef SF_TEST_H
#define SF_TEST_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int sf_test_failed_;
static int sf_test_cur_failed_;
static int sf_test_count_;

#define TEST(name) static void name(void)

/* n patterned bytes (malloc'd), also written to a new temp file made from
 * the mkstemp template `path`; NULL if either fails. */
static inline unsigned char *sf_test_pattern_file(char *path, size_t n) {
    unsigned char *b = malloc(n ? n : 1);
    if (!b) return NULL;
    for (size_t i = 0; i < n; i++) b[i] = (unsigned char)(i * 2654435761u >> 13);
    int fd = mkstemp(path), ok = 0;
    if (fd >= 0) {
        FILE *f = fdopen(fd, "wb");
        if (f) {
            ok = fwrite(b, 1, n, f) == n;
            ok = fclose(f) == 0 && ok;
        } else close(fd);
    }
    if (!ok) { free(b); return NULL; }
    return b;
}

#define SF_RUN(name)                                                          \
    do {                                                                      \
        sf_test_cur_failed_ = 0;                                              \
        sf_test_count_++;                                                     \
        name();                                                               \
        printf("%s %s\n", sf_test_cur_failed_ ? "not ok" : "ok", #name);      \
        fflush(stdout);                                                       \
        if (sf_test_cur_failed_) sf_test_failed_++;                           \
    } while (0)

#define SF_DONE()                                                             \
    do {                                                                      \
        printf("%d passed, %d failed\n", sf_test_count_ - sf_test_failed_,    \
               sf_test_failed_);                                              \
        return sf_test_failed_ ? 1 : 0;                                       \
    } while (0)

#define CHECK(expr)                                                           \
    do {                                                                      \
        if (!(expr)) {                                                        \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, \
                    #expr);                                                   \
            sf_test_cur_failed_ = 1;                                          \
            return;                                                           \
        }                                                                     \
    } while (0)

#define CHECK_EQ_INT(a, b)                                                    \
    do {                                                                      \
        long long a_ = (long long)(a), b_ = (long long)(b);                   \
        if (a_ != b_) {                                                       \
            fprintf(stderr, "%s:%d: %s == %s failed: %lld != %lld\n",         \
                    __FILE__, __LINE__, #a, #b, a_, b_);                      \
            sf_test_cur_failed_ = 1;                                          \
            return;                                                           \
        }                                                                     \
    } while (0)

#define CHECK_EQ_STR(a, b)                                                    \
    do {                                                                      \
        const char *a_ = (a), *b_ = (b);                                      \
        if (!a_ || !b_ || strcmp(a_, b_) != 0) {                              \
            fprintf(stderr, "%s:%d: %s == %s failed: \"%s\" != \"%s\"\n",     \
                    __FILE__, __LINE__, #a, #b, a_ ? a_ : "(null)",           \
                    b_ ? b_ : "(null)");                                      \
            sf_test_cur_failed_ = 1;                                          \
            return;                                                           \
        }                                                                     \
    } while (0)

#define CHECK_NEAR(a, b, tol)                                                 \
    do {                                                                      \
        double a_ = (double)(a), b_ = (double)(b);                            \
        if (!(fabs(a_ - b_) <= (tol))) {                                      \
            fprintf(stderr, "%s:%d: |%s - %s| <= %g failed: %.9g vs %.9g\n",  \
                    __FILE__, __LINE__, #a, #b, (double)(tol), a_, b_);       \
            sf_test_cur_failed_ = 1;                                          \
            return;                                                           \
        }                                                                     \
    } while (0)

#endif
