/* client.c: how sfctl reaches the coordinator — the global options, one
 * request and its reply, the CURVE keys and handshake watch of that request
 * — and where sfctl's sibling binaries are.  Every command file uses this;
 * it uses none of them.
 *
 * sfctl speaks CURVE when --curve-key FILE (its own keypair, a .key file)
 * and --curve-server-key FILE (the coordinator's .pub) are given, or
 * SF_CURVE_KEY and SF_CURVE_SERVER_KEY name them.  A monitor on the socket
 * sees the coordinator refuse our key, so that sfctl can say so instead of
 * waiting for its timeout.
 */
#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "cli/client.h"
#include "common/net/curve.h"
#include "common/net/wire.h"
#include "common/net/zsock.h"
#include "common/runtime/clock.h"
#include "common/runtime/error.h"

sfctl_opts_t g_opts = {NULL, 5000, 0, NULL, NULL};

void sfctl_bin_dir(char *out, size_t n) {
    char exe[PATH_MAX];
    ssize_t k = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (k <= 0) { snprintf(out, n, "."); return; }
    exe[k] = 0;
    snprintf(out, n, "%s", dirname(exe));
}

static sf_curve_client_t g_cc;
static int g_loaded;

int sfctl_curve_setup(void *ctx, void *sock, void **mon, char *err, size_t n) {
    *mon = NULL;
    if (!g_loaded) {
        const char *k = g_opts.curve_key ? g_opts.curve_key : getenv("SF_CURVE_KEY");
        const char *s = g_opts.curve_server_key ? g_opts.curve_server_key : getenv("SF_CURVE_SERVER_KEY");
        if (sf_curve_client_load(k, s, "--curve-key (SF_CURVE_KEY)", "--curve-server-key (SF_CURVE_SERVER_KEY)",
                                 &g_cc, err, n) != 0)
            return SF_EINVAL;
        g_loaded = 1;
    }
    if (!g_cc.on) return 0;
    if (sf_curve_client(sock, &g_cc, err, n) != 0) return SF_EIO;
    /* Watch the handshake; set up before connecting so no event is missed. */
    char ep[64];
    snprintf(ep, sizeof ep, "inproc://sfctl-monitor-%p", sock);
    if (zmq_socket_monitor(sock, ep,
                           ZMQ_EVENT_HANDSHAKE_FAILED_AUTH | ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL |
                               ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL) != 0)
        return 0; /* no monitor: a refusal then shows as a timeout */
    void *m = zmq_socket(ctx, ZMQ_PAIR);
    int linger = 0;
    if (m) zmq_setsockopt(m, ZMQ_LINGER, &linger, sizeof linger);
    if (!m || zmq_connect(m, ep) != 0) {
        if (m) zmq_close(m);
        return 0;
    }
    *mon = m;
    return 0;
}

int sfctl_curve_event(void *mon, const char *endpoint, char *err, size_t n) {
    zmq_msg_t a, b;
    zmq_msg_init(&a);
    zmq_msg_init(&b);
    int rc = 0;
    if (zmq_msg_recv(&a, mon, ZMQ_DONTWAIT) < 0) goto out;
    if (zmq_msg_more(&a)) zmq_msg_recv(&b, mon, 0);
    if (zmq_msg_size(&a) < 6) goto out;
    const uint8_t *d = zmq_msg_data(&a);
    uint16_t event;
    uint32_t value;
    memcpy(&event, d, 2);
    memcpy(&value, d + 2, 4);
    if (event == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH) {
        snprintf(err, n,
                 "the coordinator at %s refused this client's CURVE key (public key %s, ZAP status %u): its .pub "
                 "file must be in the coordinator's curve_allowed_dir",
                 endpoint, g_cc.kp.public_key, value);
        rc = 2;
    } else {
        snprintf(err, n,
                 "the CURVE handshake with %s failed: is --curve-server-key (SF_CURVE_SERVER_KEY) the coordinator's "
                 "public key, and does the coordinator use CURVE?",
                 endpoint);
        rc = 1;
    }
out:
    zmq_msg_close(&a);
    zmq_msg_close(&b);
    return rc;
}

/* The protocol's caps on what a request carries (common/net/wire.h,
 * docs/protocol.md).  Over them, the coordinator refuses the whole frame as
 * a protocol error (exit 1, naming no flag), and a spec past the 16 MiB
 * frame cannot even be sent (once "cannot send to the coordinator", exit 3,
 * as if it were down).  So they are checked here, before anything is sent,
 * as the bad input they are (exit 2). */
static int check_limits(const char *run, const char *spec, sfctl_reply_t *out) {
    const size_t rl = run ? strlen(run) : 0, sl = spec ? strlen(spec) : 0;
    if (rl > SF_WIRE_MAX_ID) {
        snprintf(out->error, sizeof out->error,
                 "the run id is %zu bytes, over the protocol's limit of %u bytes on ids (SF_WIRE_MAX_ID)", rl,
                 SF_WIRE_MAX_ID);
        return SFCTL_EXIT_USAGE;
    }
    if (sl > SF_WIRE_MAX_SPEC) {
        snprintf(out->error, sizeof out->error,
                 "the run spec is %zu bytes, over the protocol's limit of %u bytes (%u MiB, SF_WIRE_MAX_SPEC)", sl,
                 SF_WIRE_MAX_SPEC, SF_WIRE_MAX_SPEC >> 20);
        return SFCTL_EXIT_USAGE;
    }
    return 0;
}

int sfctl_request(int op, const char *run, const char *spec, sfctl_reply_t *out) {
    memset(out, 0, sizeof *out);
    int lrc = check_limits(run, spec, out);
    if (lrc) return lrc;
    void *ctx = zmq_ctx_new();
    void *s = zmq_socket(ctx, ZMQ_DEALER);
    int linger = 0, rc = SFCTL_EXIT_UNREACHABLE;
    zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger);
    int64_t maxmsg = SF_WIRE_MAX_FRAME;
    zmq_setsockopt(s, ZMQ_MAXMSGSIZE, &maxmsg, sizeof maxmsg);
    void *mon = NULL;
    char hs[512] = ""; /* the last CURVE handshake failure */
    if (sfctl_curve_setup(ctx, s, &mon, out->error, sizeof out->error) != 0) {
        rc = SFCTL_EXIT_USAGE;
        goto done;
    }
    /* A list (a leader and its standbys): connected to all, and with
     * ZMQ_IMMEDIATE the request goes only to one that accepted the
     * connection — a standby binds nothing until it leads. */
    const int n_eps = sf_endpoints_count(g_opts.coordinator), list = n_eps > 1;
    if (list) {
        int one = 1, ms = (int)g_opts.timeout_ms;
        zmq_setsockopt(s, ZMQ_IMMEDIATE, &one, sizeof one);
        zmq_setsockopt(s, ZMQ_SNDTIMEO, &ms, sizeof ms);
    }
    for (int i = 0; i < n_eps; i++) {
        char ep[512];
        sf_endpoint_at(g_opts.coordinator, i, ep, sizeof ep);
        if (zmq_connect(s, ep) != 0) {
            snprintf(out->error, sizeof out->error, "bad coordinator endpoint '%s': %s", ep, zmq_strerror(zmq_errno()));
            rc = SFCTL_EXIT_USAGE;
            goto done;
        }
    }
    Sf__Request q = SF__REQUEST__INIT;
    q.tag = (uint64_t)getpid() << 20 | (uint64_t)(time(NULL) & 0xfffff);
    q.op = (Sf__Request__Op)op;
    q.run = (char *)(run ? run : "");
    q.spec_json = (char *)(spec ? spec : "");
    Sf__Envelope env = SF__ENVELOPE__INIT;
    env.body_case = SF__ENVELOPE__BODY_REQUEST;
    env.request = &q;
    uint8_t *buf = NULL;
    size_t cap = 0;
    long n = sf_wire_pack(&env, &buf, &cap);
    if (n < 0 || zmq_send(s, buf, (size_t)n, 0) < 0) {
        free(buf);
        if (list && zmq_errno() == EAGAIN)
            snprintf(out->error, sizeof out->error, "no coordinator of %s accepted a connection within %ld ms",
                     g_opts.coordinator, g_opts.timeout_ms);
        else
            snprintf(out->error, sizeof out->error, "cannot send to the coordinator");
        goto done;
    }
    free(buf);
    zmq_pollitem_t pi[2] = {{s, 0, ZMQ_POLLIN, 0}, {mon, 0, ZMQ_POLLIN, 0}};
    const int64_t t0 = sf_clock_mono_ms();
    for (;;) {
        long left = g_opts.timeout_ms - (long)(sf_clock_mono_ms() - t0);
        if (left < 0) left = 0;
        if (zmq_poll(pi, mon ? 2 : 1, left) <= 0) {
            snprintf(out->error, sizeof out->error, "no answer from the coordinator at %s within %ld ms%s%s",
                     g_opts.coordinator, g_opts.timeout_ms, *hs ? "; " : "", hs);
            goto done;
        }
        if (pi[0].revents & ZMQ_POLLIN) break;
        int ev = sfctl_curve_event(mon, g_opts.coordinator, hs, sizeof hs);
        if (ev == 2) {
            /* Refused: waiting longer cannot help. */
            snprintf(out->error, sizeof out->error, "%s", hs);
            rc = SFCTL_EXIT_FAIL;
            goto done;
        }
    }
    zmq_msg_t m;
    zmq_msg_init(&m);
    zmq_msg_recv(&m, s, 0);
    Sf__Envelope *r = NULL;
    char err[256];
    if (sf_wire_decode(zmq_msg_data(&m), zmq_msg_size(&m), &r, err, sizeof err) == 0 &&
        r->body_case == SF__ENVELOPE__BODY_ERROR) {
        /* Refused (read whatever version the coordinator speaks). */
        const Sf__Error *e = r->error;
        snprintf(out->error, sizeof out->error,
                 "the coordinator at %s refused the request: %s (it speaks protocol version %u, this sfctl %u)",
                 g_opts.coordinator, e->message && *e->message ? e->message : sf_strerror(e->code), e->version,
                 SF_PROTO_VERSION);
        sf_wire_free(r);
        zmq_msg_close(&m);
        rc = SFCTL_EXIT_FAIL;
        goto done;
    }
    if (!r || r->body_case != SF__ENVELOPE__BODY_REPLY) {
        snprintf(out->error, sizeof out->error, "bad reply from the coordinator: %s", r ? "not a reply" : err);
        sf_wire_free(r);
        zmq_msg_close(&m);
        rc = SFCTL_EXIT_FAIL;
        goto done;
    }
    zmq_msg_close(&m);
    out->code = r->reply->code;
    snprintf(out->error, sizeof out->error, "%s", r->reply->error);
    snprintf(out->run, sizeof out->run, "%s", r->reply->run);
    out->json = strdup(r->reply->json);
    sf_wire_free(r);
    rc = out->code == 0 ? 0 : out->code == SF_EINVAL || out->code == SF_ENOTFOUND ? SFCTL_EXIT_USAGE : SFCTL_EXIT_FAIL;
done:
    if (mon) {
        zmq_socket_monitor(s, NULL, 0);
        zmq_close(mon);
    }
    zmq_close(s);
    zmq_ctx_term(ctx);
    return rc;
}
