/* keys.c: `sfctl keygen`, a CURVE keypair for a daemon or a client (the keys
 * of sfctl's own requests are set up in client.c). */
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
