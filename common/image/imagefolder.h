/* imagefolder.h: an ImageNet-style folder of real images, root/<wnid>/<file>,
 * as operators give it for reference and evaluation data (ImageNet train and
 * val, ImageNet-R, ImageNet-A all share this layout).
 *
 * Opening lists the class folders asked for once; after that the listing is
 * fixed, so indexes are stable for the object's life.  Within a class, files
 * are sorted by name (bytewise), which makes "the first N images of class X"
 * the same on every machine.  A file is listed when its name
 *   - does not start with '.',
 *   - ends in .jpeg, .jpg or .png (any case),
 * and it is a regular file, through symlinks (a dangling symlink is listed,
 * so that reading it counts it as unreadable rather than hiding it).  The
 * format is decided by content (common/image/image.h), not by the extension.
 *
 * A wnid is one path component: 1 to SF_IMAGEFOLDER_MAX_WNID bytes, no '/',
 * no "..", no leading '.', no control characters; the class folder, resolved
 * through symlinks, must lie inside root.  Files inside may link anywhere.
 *
 * The object is read-only after open: several threads may read from it at
 * once.
 */
#ifndef SF_IMAGEFOLDER_H
#define SF_IMAGEFOLDER_H

#include <stddef.h>
#include <stdint.h>

#define SF_IMAGEFOLDER_MAX_WNID 64
/* Most files listed in one class (ImageNet's largest has 1,300). */
#define SF_IMAGEFOLDER_MAX_FILES (1 << 22)

typedef struct sf_imagefolder sf_imagefolder_t;

/* Lists root/<wnid>/ for each of wnids[0..n_wnids) (borrowed), in that order,
 * or when wnids is NULL every subfolder of root whose name is a valid wnid,
 * sorted by name (hidden folders and plain files in root are passed over).
 * *out is new; free it with sf_imagefolder_free().  Errors, with a message
 * in err (may be NULL):
 *   SF_EINVAL     a wnid that is not a valid component (named), a duplicate,
 *                 a class folder that resolves outside root, NULL arguments
 *   SF_ENOTFOUND  root or a class folder does not exist or is not a folder
 *                 (the path named)
 *   SF_EIO        a folder cannot be read
 *   SF_ERANGE     a class holds more than SF_IMAGEFOLDER_MAX_FILES files
 *   SF_ENOMEM */
int sf_imagefolder_open(const char *root, const char *const *wnids, int n_wnids,
                        sf_imagefolder_t **out, char *err, size_t errlen);

/* Frees *f and sets it to NULL; NULL and *f == NULL are fine. */
void sf_imagefolder_free(sf_imagefolder_t **f);

/* Classes in listing order; the name is borrowed from f. */
int sf_imagefolder_nclasses(const sf_imagefolder_t *f);
const char *sf_imagefolder_class(const sf_imagefolder_t *f, int i);

/* Files listed in class wnid (>= 0), or SF_ENOTFOUND if f has no such class. */
int sf_imagefolder_count(const sf_imagefolder_t *f, const char *wnid);

/* The path of file index of class wnid, "root/wnid/name", into buf (n bytes).
 * SF_ENOTFOUND for an unknown class, SF_ERANGE for an index out of range or
 * a buffer too small. */
int sf_imagefolder_path(const sf_imagefolder_t *f, const char *wnid, int index, char *buf,
                        size_t n);

/* Decodes file index of class wnid (sf_image_read): *rgb is a new w*h*3 RGB
 * buffer the caller frees with free().  Errors as sf_image_read, plus
 * SF_ENOTFOUND for an unknown class and SF_ERANGE for an index out of range. */
int sf_imagefolder_read(const sf_imagefolder_t *f, const char *wnid, int index, uint8_t **rgb,
                        int *w, int *h, char *err, size_t errlen);

/* One decoded image of a batch. */
typedef struct {
    uint8_t *rgb;   /* w*h*3, 8-bit RGB HWC; owned by the batch */
    int w, h;
    int index;      /* the file's index in its class */
} sf_imagefolder_image_t;

/* What sf_imagefolder_read_batch found. */
typedef struct {
    sf_imagefolder_image_t *images;  /* n_images, in file order; owned */
    int n_images;
    int n_skipped;                   /* unreadable files passed over */
    int next;                        /* first index not looked at: resume here */
    char first_err[320];             /* the first unreadable file's message, or "" */
} sf_imagefolder_batch_t;

/* Reads the files of class wnid from index start on, in order, passing over
 * files that do not decode (counted in n_skipped, the first one's message
 * kept), and stops after max_files files have been looked at or max_images
 * have decoded, whichever comes first, or at the class's end.  A negative
 * max_files or max_images means no limit.  So:
 *   the range [start, start+count):     start, count, -1
 *   the first N readable images:        0, -1, N
 * *out is overwritten; release it with sf_imagefolder_batch_free().  Returns
 * 0 whenever the class exists, even if every file was unreadable; negative
 * only for an unknown class (SF_ENOTFOUND), bad arguments (SF_EINVAL: start
 * < 0) or running out of memory (SF_ENOMEM, nothing kept), with err set. */
int sf_imagefolder_read_batch(const sf_imagefolder_t *f, const char *wnid, int start,
                              int max_files, int max_images, sf_imagefolder_batch_t *out,
                              char *err, size_t errlen);

/* Frees the images of b and zeroes it; b itself is the caller's. */
void sf_imagefolder_batch_free(sf_imagefolder_batch_t *b);

#endif
