/* metrics.c: a minimal HTTP/1.0 responder for Prometheus scrapes. */
#include "common/runtime/metrics.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/runtime/error.h"

#define MAX_REQUEST SF_METRICS_MAX_REQUEST
#define CLIENT_TIMEOUT_MS 5000

struct sf_metrics_s {
    uv_tcp_t server;
    uv_loop_t *loop;
    sf_metrics_render_cb cb;
    void *arg;
};

typedef struct {
    uv_tcp_t tcp;
    uv_timer_t timer;
    sf_metrics_t *srv;
    char req[MAX_REQUEST];
    size_t len;
    int closing, pending;
    uv_write_t w;
    char *resp;
} client_t;

void sf_mbuf_printf(sf_mbuf_t *m, const char *fmt, ...) {
    for (;;) {
        size_t room = m->cap - m->len;
        va_list ap;
        va_start(ap, fmt);
        int k = room ? vsnprintf(m->buf + m->len, room, fmt, ap) : -1;
        va_end(ap);
        if (k >= 0 && (size_t)k < room) { m->len += (size_t)k; return; }
        size_t nc = m->cap ? m->cap * 2 : 4096;
        while (k >= 0 && nc < m->len + (size_t)k + 1) nc *= 2;
        char *nb = realloc(m->buf, nc);
        if (!nb) return;
        m->buf = nb;
        m->cap = nc;
    }
}

void sf_metric_head(sf_mbuf_t *m, const char *name, const char *type, const char *help) {
    sf_mbuf_printf(m, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

void sf_metric_value(sf_mbuf_t *m, const char *name, const char *labels, double value) {
    if (labels && *labels) sf_mbuf_printf(m, "%s{%s} %.17g\n", name, labels, value);
    else sf_mbuf_printf(m, "%s %.17g\n", name, value);
}

static void on_closed(uv_handle_t *h) {
    client_t *c = h->data;
    if (--c->pending == 0) {
        free(c->resp);
        free(c);
    }
}

static void client_close(client_t *c) {
    if (c->closing) return;
    c->closing = 1;
    c->pending = 2;
    uv_close((uv_handle_t *)&c->tcp, on_closed);
    uv_close((uv_handle_t *)&c->timer, on_closed);
}

static void on_written(uv_write_t *w, int status) {
    (void)status;
    client_close(w->data);
}

static void respond(client_t *c, const char *status, const char *type, const char *body, size_t blen) {
    sf_mbuf_t m = {0};
    sf_mbuf_printf(&m, "HTTP/1.0 %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n", status,
                   type, blen);
    if (!m.buf) { client_close(c); return; }
    char *all = malloc(m.len + blen);
    if (!all) { free(m.buf); client_close(c); return; }
    memcpy(all, m.buf, m.len);
    memcpy(all + m.len, body, blen);
    c->resp = all;
    uv_buf_t b = uv_buf_init(all, (unsigned)(m.len + blen));
    c->w.data = c;
    uv_read_stop((uv_stream_t *)&c->tcp);
    if (uv_write(&c->w, (uv_stream_t *)&c->tcp, &b, 1, on_written) != 0) client_close(c);
    free(m.buf);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
    (void)suggested;
    client_t *c = h->data;
    buf->base = c->req + c->len;
    buf->len = MAX_REQUEST - 1 - c->len;
}

int sf_metrics_request(const char *req, size_t len) {
    if (!strstr(req, "\r\n\r\n") && !strstr(req, "\n\n"))
        return len >= MAX_REQUEST - 1 ? SF_METRICS_TOO_LARGE : SF_METRICS_MORE;
    if (strncmp(req, "GET ", 4) != 0) return SF_METRICS_NOT_GET;
    if (strncmp(req + 4, "/metrics ", 9) != 0 && strncmp(req + 4, "/ ", 2) != 0) return SF_METRICS_NOT_FOUND;
    return SF_METRICS_SERVE;
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf) {
    (void)buf;
    client_t *c = s->data;
    if (n < 0) { client_close(c); return; }
    c->len += (size_t)n;
    c->req[c->len] = 0;
    const char *b;
    switch (sf_metrics_request(c->req, c->len)) {
    case SF_METRICS_MORE:
        return;
    case SF_METRICS_TOO_LARGE:
        b = "request too large\n";
        respond(c, "431 Request Header Fields Too Large", "text/plain", b, strlen(b));
        return;
    case SF_METRICS_NOT_GET:
        b = "only GET\n";
        respond(c, "405 Method Not Allowed", "text/plain", b, strlen(b));
        return;
    case SF_METRICS_NOT_FOUND:
        b = "see /metrics\n";
        respond(c, "404 Not Found", "text/plain", b, strlen(b));
        return;
    }
    sf_mbuf_t m = {0};
    c->srv->cb(c->srv->arg, &m);
    respond(c, "200 OK", "text/plain; version=0.0.4", m.buf ? m.buf : "", m.len);
    free(m.buf);
}

static void on_timeout(uv_timer_t *t) { client_close(t->data); }

static void on_conn(uv_stream_t *server, int status) {
    if (status < 0) return;
    sf_metrics_t *m = server->data;
    client_t *c = calloc(1, sizeof *c);
    if (!c) return;
    c->srv = m;
    uv_tcp_init(m->loop, &c->tcp);
    uv_timer_init(m->loop, &c->timer);
    c->tcp.data = c->timer.data = c;
    if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0) { client_close(c); return; }
    uv_timer_start(&c->timer, on_timeout, CLIENT_TIMEOUT_MS, 0);
    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
}

int sf_metrics_start(uv_loop_t *loop, const char *host, int port, sf_metrics_render_cb cb, void *arg,
                     sf_metrics_t **out, char *err, size_t errlen) {
    *out = NULL;
    if (port == 0) return 0;
    sf_metrics_t *m = calloc(1, sizeof *m);
    if (!m) return SF_ENOMEM;
    m->loop = loop;
    m->cb = cb;
    m->arg = arg;
    struct sockaddr_storage addr;
    if (uv_ip4_addr(host, port, (struct sockaddr_in *)&addr) != 0 &&
        uv_ip6_addr(host, port, (struct sockaddr_in6 *)&addr) != 0) {
        free(m);
        return sf_errf(SF_EINVAL, err, errlen, "metrics: bad address %s", host);
    }
    uv_tcp_init(loop, &m->server);
    m->server.data = m;
    int rc = uv_tcp_bind(&m->server, (const struct sockaddr *)&addr, 0);
    if (rc == 0) rc = uv_listen((uv_stream_t *)&m->server, 64, on_conn);
    if (rc != 0) {
        uv_close((uv_handle_t *)&m->server, (uv_close_cb)free);
        return sf_errf(SF_EIO, err, errlen, "metrics: cannot listen on %s:%d: %s", host, port, uv_strerror(rc));
    }
    *out = m;
    return 0;
}

static void on_server_closed(uv_handle_t *h) { free(h->data); }

void sf_metrics_stop(sf_metrics_t *m) {
    if (m) uv_close((uv_handle_t *)&m->server, on_server_closed);
}
