/* libFuzzer target: an image file of any kind (common/image/image.c): the sniffing,
 * libjpeg under our error manager (no exit(), warnings silenced, truncation
 * refused), the CMYK conversion, and the size caps before common/image/png.c.
 *
 * The seeds in tests/fuzz/corpus/image/ are tiny JPEGs (baseline RGB,
 * progressive grayscale, Adobe CMYK) and PNGs, written by
 *   SF_IMAGE_CORPUS=tests/fuzz/corpus/image build/tests/test_image
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "common/image/image.h"

/* Full decodes stay below 4 Mpx so that each input takes milliseconds:
 * a few hundred bytes can declare 64 Mpx, and libjpeg would decode every
 * one of them.  Larger headers still go through the probe. */
#define FUZZ_MAX_PIXELS (4L * 1024 * 1024)

static volatile unsigned sink;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char err[256];
    int pw = 0, ph = 0;
    if (sf_image_probe(data, size, &pw, &ph, err, sizeof err) == 0 &&
        (long)pw * (long)ph > FUZZ_MAX_PIXELS)
        return 0;
    uint8_t *rgb = NULL;
    int w = 0, h = 0;
    if (sf_image_decode(data, size, &rgb, &w, &h, err, sizeof err) != 0) {
        if (rgb) abort();  /* a failure must not hand out a buffer */
        return 0;
    }
    if (w != pw || h != ph || w <= 0 || h <= 0) abort();
    /* Touch every byte so that ASan sees a short buffer. */
    unsigned sum = 0;
    for (size_t i = 0; i < (size_t)w * (size_t)h * 3; i++) sum += rgb[i];
    sink = sum;
    free(rgb);
    return 0;
}
