/* libFuzzer target: a frame off the wire (common/net/wire.c's checked decoder,
 * and the version peek the coordinator reads any frame with). */
#include <stddef.h>
#include <stdint.h>

#include "common/net/wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    Sf__Envelope *e = NULL;
    char err[256];
    uint32_t version, body;
    sf_wire_peek(data, size, &version, &body);
    if (sf_wire_decode(data, size, &e, err, sizeof err) == 0) sf_wire_free(e);
    return 0;
}
