/* keys.c: sfctl's CURVE side — `sfctl keygen`, and the keys and handshake
 * watch of its requests to the coordinator.
 *
 * sfctl speaks CURVE when --curve-key FILE (its own keypair, a .key file)
 * and --curve-server-key FILE (the coordinator's .pub) are given, or
 * SF_CURVE_KEY and SF_CURVE_SERVER_KEY name them.  A monitor on the socket
 * sees the coordinator refuse our key, so that sfctl can say so instead of
 * waiting for its timeout.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "cli/sfctl.h"
#include "common/net/curve.h"
#include "common/runtime/error.h"

int sfctl_keygen(int argc, char **argv) {
    const char *out = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--out") && i + 1 < argc) out = argv[++i];
        else {
            fprintf(stderr, "sfctl keygen: usage: sfctl keygen --out PREFIX (writes PREFIX.key and PREFIX.pub)\n");
            return SFCTL_EXIT_USAGE;
        }
    }
    if (!out) {
        fprintf(stderr, "sfctl keygen: --out PREFIX is needed (writes PREFIX.key and PREFIX.pub)\n");
        return SFCTL_EXIT_USAGE;
    }
    char err[600], pub[SF_CURVE_KEYLEN + 1];
    int rc = sf_curve_keygen(out, pub, err, sizeof err);
    if (rc) {
        fprintf(stderr, "sfctl keygen: %s\n", err);
        return rc == SF_EEXIST ? SFCTL_EXIT_USAGE : SFCTL_EXIT_FAIL;
    }
    printf("wrote %s.key (keypair, mode 0600: keep it secret) and %s.pub (public key: give it to the servers)\n"
           "public key: %s\n",
           out, out, pub);
    return SFCTL_EXIT_OK;
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
