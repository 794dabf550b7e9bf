/* metrics.h: Prometheus text metrics over HTTP, on a libuv loop.
 *
 * Each daemon serves GET /metrics on its metrics port (0 = off).  The
 * daemon's render callback writes the exposition text into an sf_mbuf_t with
 * the helpers below; the server answers, then closes the connection.  A
 * request larger than 8 KiB or not a GET is refused; a slow client is cut off
 * after 5 seconds, so none can hold the loop. */
#ifndef SF_METRICS_H
#define SF_METRICS_H

#include <stddef.h>
#include <uv.h>

typedef struct {
    char *buf;
    size_t len, cap;
} sf_mbuf_t;

/* "# HELP name help\n# TYPE name type\n" */
void sf_metric_head(sf_mbuf_t *m, const char *name, const char *type, const char *help);
/* "name{labels} value\n"; labels may be NULL or "" */
void sf_metric_value(sf_mbuf_t *m, const char *name, const char *labels, double value);
void sf_mbuf_printf(sf_mbuf_t *m, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

typedef void (*sf_metrics_render_cb)(void *arg, sf_mbuf_t *out);

typedef struct sf_metrics_s sf_metrics_t;

/* The request buffer of a connection, its terminating NUL included: a request
 * whose headers do not end within SF_METRICS_MAX_REQUEST - 1 bytes is refused. */
#define SF_METRICS_MAX_REQUEST 8192

/* What the server makes of the request bytes received so far. */
enum {
    SF_METRICS_MORE = 0,  /* the headers have not ended: read on */
    SF_METRICS_TOO_LARGE, /* 431: no end of headers in SF_METRICS_MAX_REQUEST - 1 bytes */
    SF_METRICS_NOT_GET,   /* 405: a method other than GET */
    SF_METRICS_NOT_FOUND, /* 404: a path other than /metrics or / */
    SF_METRICS_SERVE,     /* 200: the exposition text */
};

/* Reads a request: req (borrowed) holds len bytes and a NUL at req[len],
 * as the connection's buffer does; nothing past that NUL is read.  The
 * headers end at the first blank line ("\r\n\r\n" or "\n\n") before the
 * first NUL byte; the request is answered once they have.  Returns one of the
 * SF_METRICS_* values above; pure (sf_metrics_start's server calls it on
 * each read, tests/fuzz/fuzz_http.c fuzzes it). */
int sf_metrics_request(const char *req, size_t len);

/* Listens on host:port; port 0 does nothing and returns 0 with *out NULL. */
int sf_metrics_start(uv_loop_t *loop, const char *host, int port, sf_metrics_render_cb cb, void *arg,
                     sf_metrics_t **out, char *err, size_t errlen);
void sf_metrics_stop(sf_metrics_t *m);

#endif
