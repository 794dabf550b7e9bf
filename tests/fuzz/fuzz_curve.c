/* libFuzzer target: CURVE key files (common/net/curve.c), read both as a
 * keypair file and as a public key file. */
#include <stddef.h>
#include <stdint.h>

#include "common/net/curve.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char pub[SF_CURVE_KEYLEN + 1], sec[SF_CURVE_KEYLEN + 1], err[512];
    sf_curve_parse("fuzz", (const char *)data, size, pub, sec, err, sizeof err);
    sf_curve_parse("fuzz", (const char *)data, size, pub, NULL, err, sizeof err);
    return 0;
}
