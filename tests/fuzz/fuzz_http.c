/* libFuzzer target: the metrics server's request reader,
 * sf_metrics_request() (common/runtime/metrics.c), which every daemon's
 * metrics port calls on the bytes a client has sent so far.
 *
 * The input is those bytes, copied into a buffer of exactly len + 1 bytes
 * whose last is the NUL the server's buffer keeps, so that ASan sees any read
 * past it.  The answer must be what the header comment promises, recomputed
 * here without the library's string functions; abort() where it is not:
 *  - the headers end at the first "\r\n\r\n" or "\n\n" before the first NUL;
 *    until they do, the answer is "more", or "too large" from
 *    SF_METRICS_MAX_REQUEST - 1 bytes on (never anything else);
 *  - once they have: a request not starting "GET " is never served ("not
 *    GET"); "GET /metrics " and "GET / " are served; any other GET is "not
 *    found". */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/runtime/metrics.h"

static int starts(const uint8_t *s, size_t n, const char *prefix) {
    size_t k = 0;
    for (; prefix[k]; k++)
        if (k >= n || s[k] != (uint8_t)prefix[k]) return 0;
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *req = malloc(size + 1);
    if (!req) return 0;
    memcpy(req, data, size);
    req[size] = 0;
    int got = sf_metrics_request(req, size);
    free(req);

    /* The text the server looks at: up to the first NUL. */
    size_t n = 0;
    while (n < size && data[n]) n++;
    int ended = 0;
    for (size_t i = 0; i + 1 < n && !ended; i++)
        ended = (data[i] == '\n' && data[i + 1] == '\n') ||
                (i + 3 < n && data[i] == '\r' && data[i + 1] == '\n' && data[i + 2] == '\r' && data[i + 3] == '\n');
    int want;
    if (!ended) want = size >= SF_METRICS_MAX_REQUEST - 1 ? SF_METRICS_TOO_LARGE : SF_METRICS_MORE;
    else if (!starts(data, n, "GET ")) want = SF_METRICS_NOT_GET;
    else if (starts(data, n, "GET /metrics ") || starts(data, n, "GET / ")) want = SF_METRICS_SERVE;
    else want = SF_METRICS_NOT_FOUND;
    if (got != want) abort();
    return 0;
}
