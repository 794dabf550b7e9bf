/* blob.h: large byte images (policy weights) cut into chunks for the wire
 * and put back together, checked with CRC-32 — never through Redis.
 *
 * The sender cuts an image into chunks of SF_WIRE_CHUNK bytes; the receiver
 * feeds chunks of one (version) in any order to an assembler, which says when
 * the image is complete and whether its CRC-32 matches.  A chunk of another
 * version starts over; duplicates are ignored; a chunk that contradicts the
 * ones before (total length, count, CRC) is an error.
 */
#ifndef SF_BLOB_H
#define SF_BLOB_H

#include <stddef.h>
#include <stdint.h>

/* CRC-32 (IEEE 802.3, as zlib's crc32), continuing from `crc` (0 to start). */
uint32_t sf_crc32(uint32_t crc, const void *buf, size_t len);
/* The CRC-32 of a whole file, continuing from *crc (0 to start; chains
 * over several files), read in 1 MiB pieces (a checkpoint of gigabytes is
 * never held in memory for it).  0, or -1 with errno set (*crc unchanged). */
int sf_crc32_file(const char *path, uint32_t *crc);

/* The largest image an assembler takes: the 20 bytes of a chunk's header
 * would otherwise have it allocate whatever total_len they claim (up to
 * count x SF_WIRE_CHUNK, petabytes).  The largest policy the project sends is
 * GPT-2 124M with its value head as float32 safetensors (learner/train.c,
 * sf_gpt2_to_bytes: 124.4 M parameters, about 475 MiB); 1 GiB leaves twice
 * that. */
#define SF_BLOB_MAX_LEN (1ull << 30)

typedef struct sf_blob_asm_s {
    uint32_t version, count, received, crc;
    uint64_t total_len;
    uint8_t *data;           /* (total_len) */
    uint8_t *have;           /* (count) */
} sf_blob_asm_t;

/* Adds one chunk.  Returns 1 when the image is complete and its CRC matches,
 * 0 when more chunks are needed, or SF_EFORMAT (a total_len over
 * SF_BLOB_MAX_LEN among the reasons) / SF_ENOMEM (the assembler is then
 * reset).  On 1, take the image with sf_blob_asm_take(). */
int sf_blob_asm_add(sf_blob_asm_t *a, uint32_t version, uint32_t index, uint32_t count,
                    uint64_t total_len, uint32_t crc, const void *data, size_t len,
                    char *err, size_t errlen);

/* Hands the completed image over (*data is malloc'd, the caller frees it) and
 * resets the assembler. */
void sf_blob_asm_take(sf_blob_asm_t *a, uint8_t **data, size_t *len);

void sf_blob_asm_reset(sf_blob_asm_t *a);

#endif
