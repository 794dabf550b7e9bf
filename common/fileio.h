/* fileio.h: reading a whole file or stream into memory, one way for every
 * module (vocabularies, configs, class lists, checkpoints, manifests).
 *
 * A regular file is read into one allocation of its size, so a checkpoint of
 * gigabytes is never copied while its buffer grows; a pipe or stdin grows
 * the buffer as it reads.  The text is NUL-terminated after its length, so
 * it can be handed to a parser as a string.
 */
#ifndef SF_FILEIO_H
#define SF_FILEIO_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define SF_READ_ANY_SIZE SIZE_MAX

/* Reads the rest of f into *buf (malloc'd, NUL after its *len bytes; len may
 * be NULL).  0; SF_ERANGE when f holds more than max bytes, SF_EIO on a read
 * error (errno set), SF_ENOMEM.  *buf is NULL on failure. */
int sf_read_stream(FILE *f, size_t max, char **buf, size_t *len);

/* Opens path and reads it as sf_read_stream.  Every failure is SF_EIO except
 * SF_ERANGE (over max bytes) and SF_ENOMEM; err (may be NULL) names the path
 * and why: "cannot open 'P': …", "'P' is over N bytes", "cannot read 'P': …".
 * errno is kept from the failing call. */
int sf_read_file(const char *path, size_t max, char **buf, size_t *len, char *err, size_t errlen);

/* The whole file as text (malloc'd), or NULL with errno set: for callers that
 * say what is missing themselves. */
char *sf_file_text(const char *path, size_t *len);

#endif
