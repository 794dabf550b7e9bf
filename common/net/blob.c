/* blob.c: CRC-32 and the chunk assembler (see blob.h). */
#include "common/net/blob.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/runtime/error.h"
#include "common/net/wire.h"

static uint32_t table[256];

static void init_table(void) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        table[i] = c;
    }
}

static pthread_once_t table_once = PTHREAD_ONCE_INIT;

uint32_t sf_crc32(uint32_t crc, const void *buf, size_t len) {
    /* Once, before any thread reads it (workers CRC from the thread pool). */
    pthread_once(&table_once, init_table);
    const uint8_t *p = buf;
    crc = ~crc;
    for (size_t i = 0; i < len; i++) crc = table[(crc ^ p[i]) & 0xff] ^ (crc >> 8);
    return ~crc;
}

int sf_crc32_file(const char *path, uint32_t *out) {
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    enum { PIECE = 1 << 20 };
    uint8_t *buf = malloc(PIECE);
    if (!buf) {
        fclose(f);
        errno = ENOMEM;
        return -1;
    }
    uint32_t crc = *out;
    size_t got;
    while ((got = fread(buf, 1, PIECE, f)) > 0) crc = sf_crc32(crc, buf, got);
    int bad = ferror(f);
    free(buf);
    fclose(f);
    if (bad) {
        errno = EIO;
        return -1;
    }
    *out = crc;
    return 0;
}

void sf_blob_asm_reset(sf_blob_asm_t *a) {
    free(a->data);
    free(a->have);
    memset(a, 0, sizeof *a);
}

int sf_blob_asm_add(sf_blob_asm_t *a, uint32_t version, uint32_t index, uint32_t count, uint64_t total_len,
                    uint32_t crc, const void *data, size_t len, char *err, size_t errlen) {
    if (total_len > SF_BLOB_MAX_LEN) {
        sf_blob_asm_reset(a);
        return sf_errf(SF_EFORMAT, err, errlen, "chunk %u of %u claims an image of %llu bytes, over the %llu-byte limit "
                       "(SF_BLOB_MAX_LEN)", index, count, (unsigned long long)total_len, SF_BLOB_MAX_LEN);
    }
    if (count == 0 || index >= count || total_len > (uint64_t)count * SF_WIRE_CHUNK ||
        total_len <= (uint64_t)(count - 1) * SF_WIRE_CHUNK) {
        sf_blob_asm_reset(a);
        return sf_errf(SF_EFORMAT, err, errlen, "chunk %u of %u does not fit an image of %llu bytes", index, count,
                       (unsigned long long)total_len);
    }
    if (!a->data || a->version != version) {
        sf_blob_asm_reset(a);
        a->data = malloc(total_len ? total_len : 1);
        a->have = calloc(count, 1);
        if (!a->data || !a->have) { sf_blob_asm_reset(a); return SF_ENOMEM; }
        a->version = version;
        a->count = count;
        a->total_len = total_len;
        a->crc = crc;
    } else if (a->count != count || a->total_len != total_len || a->crc != crc) {
        sf_blob_asm_reset(a);
        return sf_errf(SF_EFORMAT, err, errlen, "chunk %u of version %u contradicts the chunks before it", index, version);
    }
    uint64_t off = (uint64_t)index * SF_WIRE_CHUNK;
    uint64_t want = index + 1 == count ? total_len - off : SF_WIRE_CHUNK;
    if (len != want) {
        sf_blob_asm_reset(a);
        return sf_errf(SF_EFORMAT, err, errlen, "chunk %u has %zu bytes, expected %llu", index, len, (unsigned long long)want);
    }
    if (a->have[index]) return 0;
    memcpy(a->data + off, data, len);
    a->have[index] = 1;
    if (++a->received < a->count) return 0;
    if (sf_crc32(0, a->data, a->total_len) != a->crc) {
        sf_blob_asm_reset(a);
        return sf_errf(SF_EFORMAT, err, errlen, "policy image of version %u fails its CRC-32 check", version);
    }
    return 1;
}

void sf_blob_asm_take(sf_blob_asm_t *a, uint8_t **data, size_t *len) {
    *data = a->data;
    *len = (size_t)a->total_len;
    a->data = NULL;
    sf_blob_asm_reset(a);
}
