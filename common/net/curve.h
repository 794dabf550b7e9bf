/* curve.h: ZeroMQ CURVE keys — key files, `sfctl keygen`, the allowed-keys
 * folder of a server, and socket setup.
 *
 * Key files are text, one `name = value` line per key; blank lines and
 * lines starting with '#' are ignored:
 *
 *     # shiftforge CURVE keypair (sfctl keygen): keep it secret, mode 0600
 *     public = Yne@$w-vo<fVvi]a<NY6T1ed:M$fCG*[IaLV{hID
 *     secret = D:)Q[IlAW!ahhC2ac:9*A}h:p?([4%wOTJ%JR%cs
 *
 * PREFIX.key holds both lines and must not be readable by group or others
 * (like ssh, such a file is refused); PREFIX.pub holds the `public` line
 * only and is what other parties get.  A key is 40 characters of Z85 (32
 * bytes).  Errors name the file and line and never quote a secret.
 */
#ifndef SF_CURVE_H
#define SF_CURVE_H

#include <stddef.h>

#define SF_CURVE_KEYLEN 40 /* Z85 characters of a key */

typedef struct {
    char public_key[SF_CURVE_KEYLEN + 1];
    char secret_key[SF_CURVE_KEYLEN + 1];
} sf_curve_keypair_t;

/* 0 if z85 is a well-formed key (40 Z85 characters that decode). */
int sf_curve_key_valid(const char *z85);

/* Writes PREFIX.key (mode 0600) and PREFIX.pub (mode 0644) with a fresh
 * keypair; refuses (SF_EEXIST) if either exists.  The public key goes into
 * public_out (41 bytes) when it is not NULL. */
int sf_curve_keygen(const char *prefix, char *public_out, char *err, size_t n);

/* Reads a keypair file (a .key): both keys, the public one matching the
 * secret one, and a mode that group and others cannot read. */
int sf_curve_load_keypair(const char *path, sf_curve_keypair_t *kp, char *err, size_t n);

/* Reads a public key file (a .pub) into out (41 bytes).  A file holding a
 * secret key is refused: the secret stays with its owner. */
int sf_curve_load_public(const char *path, char *out, char *err, size_t n);

/* Parses the text of a key file (len bytes; `name` names it in errors)
 * into pub and, when sec is not NULL, sec (41 bytes each; "" where a line
 * is absent).  With sec NULL a secret line is an error (a .pub file).  The
 * files' loaders above add the checks of the file itself. */
int sf_curve_parse(const char *name, const char *text, size_t len, char *pub, char *sec, char *err, size_t n);

/* Forgets the secret (zeroes the struct). */
void sf_curve_wipe(sf_curve_keypair_t *kp);

/* The public keys a server accepts: every *.pub file in a folder. */
typedef struct {
    char (*keys)[SF_CURVE_KEYLEN + 1];
    char (*names)[64]; /* file name without .pub */
    int n;
} sf_curve_allow_t;

/* Loads every *.pub file of dir (hidden files skipped); a bad file is an
 * error naming it.  *out is filled only on success. */
int sf_curve_allow_load(const char *dir, sf_curve_allow_t *out, char *err, size_t n);
/* The name of the file that allows z85, or NULL. */
const char *sf_curve_allow_find(const sf_curve_allow_t *a, const char *z85);
void sf_curve_allow_free(sf_curve_allow_t *a);

/* Makes sock a CURVE server with kp (before bind).  ZAP requests for it
 * carry `domain` (see zap.h). */
int sf_curve_server(void *sock, const sf_curve_keypair_t *kp, const char *domain, char *err, size_t n);

/* A client's keys: its own keypair and the server's public key. */
typedef struct {
    int on;
    sf_curve_keypair_t kp;
    char server[SF_CURVE_KEYLEN + 1];
} sf_curve_client_t;

/* Loads a client's keys from key_file (a .key) and server_file (the
 * server's .pub).  Both empty: CURVE off (out->on = 0).  One without the
 * other is an error naming the settings key_name and server_name. */
int sf_curve_client_load(const char *key_file, const char *server_file, const char *key_name,
                         const char *server_name, sf_curve_client_t *out, char *err, size_t n);

/* Makes sock a CURVE client (before connect); does nothing if !cc->on. */
int sf_curve_client(void *sock, const sf_curve_client_t *cc, char *err, size_t n);

#endif
