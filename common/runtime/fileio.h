/* fileio.h: files, one way for every module: reading a whole file or stream
 * into memory (vocabularies, configs, class lists, checkpoints, manifests),
 * writing one so that no reader ever sees half of it, and mkdir -p.
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

/* Writing through a temporary name and a rename, so that a reader sees the
 * old file or the whole new one, and a job retried after a crash rewrites
 * the same bytes.  The temporary file is "<path>.tmp.<pid>" beside path
 * (same file system); it is removed when anything fails.  Errors are SF_EIO
 * with errno kept from the failing call. */

/* Writes len bytes of buf (borrowed) to path. */
int sf_write_file_atomic(const char *path, const void *buf, size_t len);

/* Writes path with fn(f, arg), which returns 0 or a negative SF_E… code
 * (returned as it is). */
typedef int (*sf_write_fn)(FILE *f, void *arg);
int sf_write_atomic(const char *path, sf_write_fn fn, void *arg);

/* The temporary name sf_write_atomic uses for path, for writers that need a
 * path of their own (a model's save function); then sf_commit_tmp renames it
 * into place (or removes it and returns SF_EIO). */
int sf_tmp_path(const char *path, char *out, size_t n);
int sf_commit_tmp(const char *tmp, const char *path);

/* mkdir -p with mode (before umask): 0, or SF_EIO (errno set) naming
 * nothing; an existing directory is success. */
int sf_mkdir_p(const char *path, unsigned mode);

#endif
