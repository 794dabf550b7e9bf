/* client.h: sfctl's connection to the coordinator (client.c), used by every
 * command file and using none of them. */
#ifndef SFCTL_CLIENT_H
#define SFCTL_CLIENT_H

#include <stddef.h>

enum { SFCTL_EXIT_OK = 0, SFCTL_EXIT_FAIL = 1, SFCTL_EXIT_USAGE = 2, SFCTL_EXIT_UNREACHABLE = 3, SFCTL_EXIT_CANCELLED = 4 };

typedef struct {
    const char *coordinator;
    long timeout_ms;
    int quiet;
    const char *curve_key, *curve_server_key; /* --curve-key, --curve-server-key (NULL: environment) */
} sfctl_opts_t;
extern sfctl_opts_t g_opts;

typedef struct {
    int code;
    char error[1024];
    char run[32];
    char *json; /* malloc'd */
} sfctl_reply_t;

/* One request to the coordinator; returns an SFCTL_EXIT_… code.  A run id or
 * a spec over the protocol's limits (SF_WIRE_MAX_ID, SF_WIRE_MAX_SPEC) is
 * SFCTL_EXIT_USAGE, with out->error naming the limit, and is not sent. */
int sfctl_request(int op, const char *run, const char *spec, sfctl_reply_t *out);

/* Applies the CURVE client keys (flags or SF_CURVE_KEY / SF_CURVE_SERVER_KEY;
 * none: nothing) to sock before it connects, and opens *mon, a socket that
 * gets sock's handshake failures (NULL when none is watched). */
int sfctl_curve_setup(void *ctx, void *sock, void **mon, char *err, size_t n);
/* Reads one event from mon: 2 when the server refused our key, 1 for
 * another handshake failure (err says which), 0 for nothing. */
int sfctl_curve_event(void *mon, const char *endpoint, char *err, size_t n);

/* The folder of the running sfctl binary (its siblings: the daemons, sf-world). */
void sfctl_bin_dir(char *out, size_t n);

#endif
