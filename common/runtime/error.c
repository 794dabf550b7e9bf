/* error.c: text for SF_E… codes. */
#include "common/runtime/error.h"

#include <stdarg.h>
#include <stdio.h>

const char *sf_strerror(int err) {
    switch (err) {
    case SF_OK: return "success";
    case SF_EINVAL: return "invalid argument or input";
    case SF_ENOMEM: return "out of memory";
    case SF_EIO: return "input/output error";
    case SF_EPROTO: return "protocol error";
    case SF_ENOTFOUND: return "not found";
    case SF_ERANGE: return "out of range";
    case SF_EEXIST: return "already exists";
    case SF_ETORCH: return "libtorch error";
    case SF_ESTATE: return "invalid state";
    case SF_ETIMEDOUT: return "timed out";
    case SF_ECANCELED: return "cancelled";
    case SF_EUNSUPPORTED: return "not supported";
    case SF_EFORMAT: return "bad file format";
    case SF_EREDIS: return "redis error";
    default: return "unknown error";
    }
}

int sf_errf(int err, char *buf, size_t n, const char *fmt, ...) {
    if (buf && n > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(buf, n, fmt, ap);
        va_end(ap);
    }
    return err;
}
