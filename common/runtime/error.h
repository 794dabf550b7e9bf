/* error.h: shiftforge's error codes.
 *
 * Every function that can fail returns int: 0 on success, a negative SF_E…
 * code otherwise.  sf_strerror() gives the text.  Long-lived objects also keep
 * an `err` code and an `errstr` buffer describing their last failure; the
 * sf_errbuf_* helpers fill such a buffer.
 */
#ifndef SF_ERROR_H
#define SF_ERROR_H

#include <stddef.h>

enum {
    SF_OK = 0,
    SF_EINVAL = -1,       /* bad argument or bad input */
    SF_ENOMEM = -2,       /* allocation failed */
    SF_EIO = -3,          /* file or socket I/O failed */
    SF_EPROTO = -4,       /* malformed or unexpected wire message */
    SF_ENOTFOUND = -5,    /* no such run, class, key, file */
    SF_ERANGE = -6,       /* value or size out of bounds */
    SF_EEXIST = -7,       /* already exists */
    SF_ETORCH = -8,       /* libtorch raised an exception */
    SF_ESTATE = -9,       /* operation not valid in the current state */
    SF_ETIMEDOUT = -10,   /* a deadline passed */
    SF_ECANCELED = -11,   /* cancelled by the operator */
    SF_EUNSUPPORTED = -12,/* not built in or not supported */
    SF_EFORMAT = -13,     /* a file is truncated, corrupt or lies about itself */
    SF_EREDIS = -14,      /* Redis refused or is unreachable */
};

const char *sf_strerror(int err);

/* Formats into buf (size n) and returns err, so that a failure path is one
 * line: `return sf_errf(SF_EINVAL, ebuf, n, "bad key '%s'", key);`.
 * buf may be NULL. */
int sf_errf(int err, char *buf, size_t n, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#endif
