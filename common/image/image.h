/* image.h: decoding the photographs operators hand us (JPEG and PNG) to
 * 8-bit RGB, whatever the file's name says.
 *
 * Real reference and evaluation data (ImageNet, ImageNet-R/-A folders) is
 * mostly JPEG, with a few grayscale and CMYK files and the odd PNG named
 * .JPEG, so the format is decided by the first bytes: FF D8 FF is JPEG,
 * 89 50 4E 47 is PNG, anything else is SF_EFORMAT "not a JPEG or PNG".
 *
 * Output is always 8-bit RGB, row-major, channels interleaved (HWC), in a new
 * buffer of w*h*3 bytes.  Grayscale becomes R=G=B; CMYK and YCCK JPEGs are
 * converted naively (R = (1-C)(1-K) …), reading the Adobe marker as Photoshop
 * writes it (inverted CMYK).  Resizing is not here: ml/sf_vision.h's
 * sf_clip_preprocess takes any w x h.
 *
 * A hostile or damaged file is rejected with a message, never a crash, an
 * exit() or gigabytes of memory:
 *   - a declared size over SF_IMAGE_MAX_DIM a side or SF_IMAGE_MAX_PIXELS in
 *     all is SF_ERANGE, before any pixel memory is allocated;
 *   - every libjpeg error is SF_EFORMAT with libjpeg's message; libjpeg's
 *     warnings never reach stderr;
 *   - a truncated JPEG is SF_EFORMAT.  libjpeg only warns about one ("Premature
 *     end of JPEG file", "premature end of data segment") and pads the image
 *     with grey; we treat those two warnings as errors, so a JPEG must hold
 *     all its data up to its EOI marker.  Other warnings (extraneous bytes
 *     before a marker, a lost restart marker) leave a complete image that
 *     libjpeg has resynchronised, and are tolerated;
 *   - a progressive JPEG of more than SF_IMAGE_MAX_SCANS scans is SF_EFORMAT
 *     (a few hundred bytes of such scans can cost minutes of CPU).
 */
#ifndef SF_IMAGE_H
#define SF_IMAGE_H

#include <stddef.h>
#include <stdint.h>

#include "common/image/png.h"

/* Largest width or height accepted (the PNG reader's cap). */
#define SF_IMAGE_MAX_DIM SF_PNG_MAX_DIM
/* Largest w*h accepted: 64 Mpx, 192 MiB of RGB.  ImageNet's largest photos
 * are under 20 Mpx. */
#define SF_IMAGE_MAX_PIXELS (64L * 1024 * 1024)
/* Largest file sf_image_read loads. */
#define SF_IMAGE_MAX_FILE (256L * 1024 * 1024)
/* Most scans of a progressive JPEG (libjpeg-turbo's TJFLAG_LIMITSCANS value;
 * ordinary encoders write about 10). */
#define SF_IMAGE_MAX_SCANS 500

/* Decodes the JPEG or PNG in buf (len bytes, borrowed).  On success *rgb is a
 * new w*h*3 buffer the caller frees with free(), and *w, *h its size.  On
 * failure *rgb is untouched and err (may be NULL) gets a message:
 *   SF_EFORMAT  not a JPEG or PNG, corrupt, truncated, unsupported colour space
 *   SF_ERANGE   declared size over the caps above
 *   SF_ENOMEM   out of memory
 *   SF_EINVAL   NULL arguments */
int sf_image_decode(const uint8_t *buf, size_t len, uint8_t **rgb, int *w, int *h, char *err,
                    size_t errlen);

/* The same for a file: path must name a regular file (symlinks followed) of
 * at most SF_IMAGE_MAX_FILE bytes.  Messages start with the path.  Adds
 *   SF_ENOTFOUND  no such file
 *   SF_EIO        cannot open or read it, or it is not a regular file */
int sf_image_read(const char *path, uint8_t **rgb, int *w, int *h, char *err, size_t errlen);

/* Reads only the header of buf: *w, *h as declared.  Cheap (no pixel is
 * decoded) and with the same errors as sf_image_decode for the header,
 * including SF_ERANGE over the caps; a 0 here does not promise that the rest
 * of the file decodes. */
int sf_image_probe(const uint8_t *buf, size_t len, int *w, int *h, char *err, size_t errlen);

#endif
