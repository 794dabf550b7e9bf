/* resample.h: resizing 8-bit images exactly as Pillow's Image.resize does.
 *
 * The published classifiers were evaluated on images that torchvision's
 * transforms resized with PIL (timm's evaluation transform), and a model's
 * accuracy moves with its preprocessing.  PIL's BILINEAR and BICUBIC are
 * not point interpolation: each output pixel is a convolution of the input
 * with the filter stretched by the downscale factor (antialiasing), done
 * separably with 8-bit fixed-point arithmetic.  This module reproduces
 * Pillow 9's result byte for byte:
 *
 *   - per axis, scale = in / out and filterscale = max(scale, 1); output i
 *     has centre (i + 0.5) * scale and takes the inputs from
 *     (int)(centre - support + 0.5) (at least 0) to
 *     (int)(centre + support + 0.5) (at most in), support = 1 (bilinear,
 *     triangle) or 2 (bicubic, Keys' kernel with a = -0.5) times
 *     filterscale; input j weighs filter((j - centre + 0.5) / filterscale),
 *     the weights normalised to sum 1, in double;
 *   - the weights become integers of 22 fractional bits, rounded half away
 *     from zero; a pass sums value * weight from 2^21 (rounding) and clips
 *     the sum >> 22 to 0..255;
 *   - the horizontal pass runs first and its result is stored as 8 bits
 *     before the vertical pass reads it; an axis whose size does not change
 *     is not resampled at all.
 *
 * The weights are computed in double as Pillow computes them; both must be
 * compiled without fused multiply-add contraction (x86-64's baseline has
 * none) for the results to agree everywhere.
 */
#ifndef SF_RESAMPLE_H
#define SF_RESAMPLE_H

#include <stdint.h>

enum { SF_RESAMPLE_BILINEAR = 0, SF_RESAMPLE_BICUBIC = 1 };

/* Largest input or output side accepted (SF_ERANGE beyond). */
#define SF_RESAMPLE_MAX_DIM (1 << 20)

/* A window of the resized image: columns x .. x+w-1, rows y .. y+h-1. */
typedef struct {
    int x, y, w, h;
} sf_image_rect_t;

/* Resizes src (w x h, `channels` 1..4 interleaved, row-major; borrowed) to
 * ow x oh as PIL's Image.resize((ow, oh), filter) does, and writes the part
 * of the result inside `win` to dst (win->w * win->h * channels bytes,
 * row-major).  win NULL is the whole ow x oh image.  Only what the window
 * needs is computed, so a centre crop costs the crop, not the resize; its
 * pixels are those of the full resize.
 *   SF_EINVAL  NULL pointers, a size < 1, channels outside 1..4, an unknown
 *              filter, a window not inside ow x oh
 *   SF_ERANGE  a side over SF_RESAMPLE_MAX_DIM
 *   SF_ENOMEM  out of memory */
int sf_image_resize_pil(const uint8_t *src, int w, int h, int channels, int ow, int oh, int filter,
                        const sf_image_rect_t *win, uint8_t *dst);

#endif
