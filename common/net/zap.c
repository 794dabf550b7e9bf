/* zap.c: the ZAP handler (see zap.h).
 *
 * A request is [version "1.0"][request id][domain][address][routing id]
 * [mechanism][credentials…] (the REP socket strips the envelope); for
 * CURVE the one credential is the client's 32-byte public key.  The reply
 * is [version][request id][status code][status text][user id][metadata].
 * Every request gets a reply — malformed ones "500" — or the REP socket
 * would be stuck waiting to send.
 */
#include "common/net/zap.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "common/net/curve.h"
#include "common/runtime/error.h"
#include "common/runtime/log.h"
#include "common/net/zsock.h"

#define ZAP_ENDPOINT "inproc://zeromq.zap.01"
#define MAX_FRAMES 16
#define MAX_DOMAINS 8
#define SEEN 256              /* refused keys remembered for the log's rate limit */
#define LOG_EVERY_MS 60000    /* a refused key is logged at most this often */
#define DRAIN_BUDGET 256

typedef struct {
    char name[32];
    uint64_t refused, accepted;
} domain_t;

typedef struct {
    char key[SF_CURVE_KEYLEN + 1];
    const domain_t *dom;
    uint64_t last_ms;
    uint64_t suppressed;
} seen_t;

struct sf_zap_s {
    uv_loop_t *loop;
    void *sock;
    sf_zsock_t zs;
    char *dir;
    sf_curve_allow_t allow;
    domain_t dom[MAX_DOMAINS + 1]; /* the last one is "other" */
    int n_dom;
    seen_t seen[SEEN];
    uint64_t refused;
};

static domain_t *domain_of(sf_zap_t *z, const char *name, size_t len) {
    for (int i = 0; i < z->n_dom; i++)
        if (strlen(z->dom[i].name) == len && !memcmp(z->dom[i].name, name, len)) return &z->dom[i];
    return &z->dom[MAX_DOMAINS];
}

/* Logs a refused key unless it was logged for this domain within the last
 * minute. */
static void log_refused(sf_zap_t *z, const char *key, const domain_t *d, const char *domain, const char *addr) {
    uint64_t now = uv_now(z->loop);
    seen_t *slot = NULL, *oldest = &z->seen[0];
    for (int i = 0; i < SEEN; i++) {
        if (z->seen[i].dom == d && !strcmp(z->seen[i].key, key)) { slot = &z->seen[i]; break; }
        if (z->seen[i].last_ms < oldest->last_ms) oldest = &z->seen[i];
    }
    if (slot && slot->last_ms && now - slot->last_ms < LOG_EVERY_MS) {
        slot->suppressed++;
        return;
    }
    if (!slot) {
        slot = oldest;
        memset(slot, 0, sizeof *slot);
        memcpy(slot->key, key, sizeof slot->key);
        slot->dom = d;
    }
    if (slot->suppressed)
        sf_warn("CURVE: refused public key %s on %s from %s: not in curve_allowed_dir %s (%llu more refusals of it in "
                "the last minute)",
                key, domain, *addr ? addr : "a local peer", z->dir, (unsigned long long)slot->suppressed);
    else
        sf_warn("CURVE: refused public key %s on %s from %s: not in curve_allowed_dir %s", key, domain,
                *addr ? addr : "a local peer", z->dir);
    slot->last_ms = now ? now : 1;
    slot->suppressed = 0;
}

/* version and id: the request's frames (NULL when it had none). */
static void reply(sf_zap_t *z, zmq_msg_t *version, zmq_msg_t *id, const char *code, const char *text,
                  const char *user) {
    const void *v = version ? zmq_msg_data(version) : "1.0";
    size_t vl = version ? zmq_msg_size(version) : 3;
    const void *r = id ? zmq_msg_data(id) : "";
    size_t rl = id ? zmq_msg_size(id) : 0;
    if (zmq_send(z->sock, v, vl, ZMQ_SNDMORE) < 0 || zmq_send(z->sock, r, rl, ZMQ_SNDMORE) < 0 ||
        zmq_send(z->sock, code, strlen(code), ZMQ_SNDMORE) < 0 ||
        zmq_send(z->sock, text, strlen(text), ZMQ_SNDMORE) < 0 ||
        zmq_send(z->sock, user, strlen(user), ZMQ_SNDMORE) < 0 || zmq_send(z->sock, "", 0, 0) < 0)
        sf_warn("CURVE: cannot answer a ZAP request: %s", zmq_strerror(zmq_errno()));
}

/* Reads one whole request (up to MAX_FRAMES frames kept, the rest
 * discarded); returns the number of frames, 0 when nothing was waiting. */
static int read_request(sf_zap_t *z, zmq_msg_t *f, int *dropped) {
    int k = 0;
    *dropped = 0;
    for (;;) {
        zmq_msg_t tmp, *m = k < MAX_FRAMES ? &f[k] : &tmp;
        zmq_msg_init(m);
        if (zmq_msg_recv(m, z->sock, k == 0 ? ZMQ_DONTWAIT : 0) < 0) {
            zmq_msg_close(m);
            return k;
        }
        int more = zmq_msg_more(m);
        if (m == &tmp) { zmq_msg_close(&tmp); (*dropped)++; }
        else k++;
        if (!more) return k + *dropped;
    }
}

static void handle(sf_zap_t *z, zmq_msg_t *f, int nf) {
    /* Text copies of the frames we print (domain, address). */
    char domain[64] = "", addr[64] = "";
    if (nf < 7 || nf > MAX_FRAMES || zmq_msg_size(&f[0]) != 3 || memcmp(zmq_msg_data(&f[0]), "1.0", 3)) {
        sf_warn("CURVE: a malformed ZAP request (%d frames)", nf);
        reply(z, nf > 0 ? &f[0] : NULL, nf > 1 ? &f[1] : NULL, "500", "malformed request", "");
        return;
    }
    snprintf(domain, sizeof domain, "%.*s", (int)zmq_msg_size(&f[2]), (const char *)zmq_msg_data(&f[2]));
    snprintf(addr, sizeof addr, "%.*s", (int)zmq_msg_size(&f[3]), (const char *)zmq_msg_data(&f[3]));
    domain_t *d = domain_of(z, zmq_msg_data(&f[2]), zmq_msg_size(&f[2]));
    int curve = zmq_msg_size(&f[5]) == 5 && !memcmp(zmq_msg_data(&f[5]), "CURVE", 5);
    if (!curve || nf != 7 || zmq_msg_size(&f[6]) != 32) {
        d->refused++;
        z->refused++;
        sf_warn("CURVE: refused a %.*s handshake on %s from %s: only CURVE clients are served",
                (int)(zmq_msg_size(&f[5]) < 16 ? zmq_msg_size(&f[5]) : 16), (const char *)zmq_msg_data(&f[5]),
                domain, *addr ? addr : "a local peer");
        reply(z, &f[0], &f[1], "400", "only CURVE", "");
        return;
    }
    char key[SF_CURVE_KEYLEN + 1];
    zmq_z85_encode(key, zmq_msg_data(&f[6]), 32);
    const char *name = sf_curve_allow_find(&z->allow, key);
    if (name) {
        d->accepted++;
        sf_debug("CURVE: allowed %s (%s) on %s from %s", name, key, domain, *addr ? addr : "a local peer");
        reply(z, &f[0], &f[1], "200", "OK", name);
    } else {
        d->refused++;
        z->refused++;
        log_refused(z, key, d, domain, addr);
        reply(z, &f[0], &f[1], "400", "public key not allowed", "");
    }
}

static void on_readable(sf_zsock_t *zs) {
    sf_zap_t *z = zs->data;
    zmq_msg_t f[MAX_FRAMES];
    int n = 0;
    for (; n < DRAIN_BUDGET; n++) {
        int dropped, nf = read_request(z, f, &dropped);
        if (nf == 0) break;
        handle(z, f, nf);
        for (int i = 0; i < nf - dropped; i++) zmq_msg_close(&f[i]);
    }
    if (n == DRAIN_BUDGET) sf_zsock_backlog(zs);
}

int sf_zap_start(uv_loop_t *loop, void *zctx, const char *allowed_dir, const char *const *domains, sf_zap_t **out,
                 char *err, size_t n) {
    *out = NULL;
    sf_zap_t *z = calloc(1, sizeof *z);
    if (!z) return sf_errf(SF_ENOMEM, err, n, "out of memory");
    z->loop = loop;
    z->dir = strdup(allowed_dir);
    for (int i = 0; domains && domains[i] && z->n_dom < MAX_DOMAINS; i++)
        snprintf(z->dom[z->n_dom++].name, sizeof z->dom[0].name, "%s", domains[i]);
    snprintf(z->dom[MAX_DOMAINS].name, sizeof z->dom[0].name, "other");
    int rc = z->dir ? sf_curve_allow_load(allowed_dir, &z->allow, err, n) : SF_ENOMEM;
    if (rc) {
        free(z->dir);
        free(z);
        return rc;
    }
    z->sock = zmq_socket(zctx, ZMQ_REP);
    int linger = 0;
    if (!z->sock || zmq_setsockopt(z->sock, ZMQ_LINGER, &linger, sizeof linger) || zmq_bind(z->sock, ZAP_ENDPOINT)) {
        rc = sf_errf(SF_EIO, err, n, "cannot bind the ZAP handler (%s): %s", ZAP_ENDPOINT, zmq_strerror(zmq_errno()));
        if (z->sock) zmq_close(z->sock);
        sf_curve_allow_free(&z->allow);
        free(z->dir);
        free(z);
        return rc;
    }
    z->zs.data = z;
    if (sf_zsock_init(loop, &z->zs, z->sock, on_readable) != 0) {
        zmq_close(z->sock);
        sf_curve_allow_free(&z->allow);
        free(z->dir);
        free(z);
        return sf_errf(SF_EIO, err, n, "cannot watch the ZAP handler's socket");
    }
    if (z->allow.n == 0)
        sf_warn("CURVE: no *.pub file in curve_allowed_dir %s: every client is refused until one is added "
                "(then send SIGHUP)", allowed_dir);
    *out = z;
    return 0;
}

int sf_zap_reload(sf_zap_t *z) {
    char err[600];
    sf_curve_allow_t a;
    int rc = sf_curve_allow_load(z->dir, &a, err, sizeof err);
    if (rc) {
        sf_error("CURVE: reloading the allowed keys failed, keeping the %d loaded before: %s", z->allow.n, err);
        return rc;
    }
    sf_curve_allow_free(&z->allow);
    z->allow = a;
    /* A key allowed now should be logged at once if it is refused again later. */
    memset(z->seen, 0, sizeof z->seen);
    sf_info("CURVE: %d allowed client keys loaded from %s", a.n, z->dir);
    return 0;
}

int sf_zap_allowed(const sf_zap_t *z) { return z ? z->allow.n : 0; }

uint64_t sf_zap_refused(const sf_zap_t *z) { return z ? z->refused : 0; }

void sf_zap_metrics(const sf_zap_t *z, sf_mbuf_t *m, const char *prefix) {
    if (!z) return;
    char name[96], l[64];
    const char *what[2] = {"refused", "accepted"};
    const char *help[2] = {"CURVE handshakes refused (public key not allowed), by server socket",
                           "CURVE handshakes accepted, by server socket"};
    for (int w = 0; w < 2; w++) {
        snprintf(name, sizeof name, "%s_curve_%s_total", prefix, what[w]);
        sf_metric_head(m, name, "counter", help[w]);
        for (int i = 0; i <= MAX_DOMAINS; i++) {
            if (i >= z->n_dom && i < MAX_DOMAINS) continue;
            const domain_t *d = &z->dom[i];
            if (i == MAX_DOMAINS && !d->refused && !d->accepted) continue;
            snprintf(l, sizeof l, "domain=\"%s\"", d->name);
            sf_metric_value(m, name, l, (double)(w ? d->accepted : d->refused));
        }
    }
    snprintf(name, sizeof name, "%s_curve_allowed_keys", prefix);
    sf_metric_head(m, name, "gauge", "public keys in curve_allowed_dir");
    sf_metric_value(m, name, NULL, z->allow.n);
}

static void on_closed(sf_zsock_t *zs) {
    sf_zap_t *z = zs->data;
    zmq_close(z->sock);
    sf_curve_allow_free(&z->allow);
    free(z->dir);
    free(z);
}

void sf_zap_close(sf_zap_t *z) {
    if (z) sf_zsock_close(&z->zs, on_closed);
}
