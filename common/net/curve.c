/* curve.c: CURVE key files, keygen, allowed keys and socket setup (see
 * curve.h for the file format). */
#include "common/net/curve.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "common/runtime/error.h"

#define MAX_FILE 65536
#define MAX_ALLOWED 100000

static const char z85_chars[] =
    "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#";

int sf_curve_key_valid(const char *z85) {
    if (!z85 || strlen(z85) != SF_CURVE_KEYLEN) return SF_EINVAL;
    for (const char *p = z85; *p; p++)
        if (!strchr(z85_chars, *p)) return SF_EINVAL;
    uint8_t bin[32];
    return zmq_z85_decode(bin, z85) ? 0 : SF_EINVAL;
}

void sf_curve_wipe(sf_curve_keypair_t *kp) {
    if (kp) explicit_bzero(kp, sizeof *kp);
}

/* ---- key files ---------------------------------------------------------------------- */

/* Reads a whole key file.  With secret set, a file that group or others may
 * read is refused (checked on the open file, so it cannot change between
 * the check and the read). */
static char *slurp(const char *path, int secret, char *err, size_t n) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        sf_errf(errno == ENOENT ? SF_ENOTFOUND : SF_EIO, err, n, "cannot open key file '%s': %s", path,
                strerror(errno));
        return NULL;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        sf_errf(SF_EINVAL, err, n, "key file '%s' is not a regular file", path);
        close(fd);
        return NULL;
    }
    if (secret && (st.st_mode & 077)) {
        sf_errf(SF_EINVAL, err, n,
                "key file '%s' has permissions %04o, too open for a secret key: it must be readable by its owner "
                "only (chmod 600 '%s')",
                path, (unsigned)(st.st_mode & 07777), path);
        close(fd);
        return NULL;
    }
    if (st.st_size > MAX_FILE) {
        sf_errf(SF_ERANGE, err, n, "key file '%s' is %lld bytes; a key file is a few lines", path,
                (long long)st.st_size);
        close(fd);
        return NULL;
    }
    char *buf = malloc((size_t)st.st_size + 1);
    if (!buf) {
        close(fd);
        sf_errf(SF_ENOMEM, err, n, "out of memory");
        return NULL;
    }
    size_t got = 0;
    while (got < (size_t)st.st_size) {
        ssize_t k = read(fd, buf + got, (size_t)st.st_size - got);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) break;
        got += (size_t)k;
    }
    close(fd);
    buf[got] = 0;
    if (strlen(buf) != got) {
        explicit_bzero(buf, got);
        free(buf);
        sf_errf(SF_EFORMAT, err, n, "key file '%s' holds a NUL byte: not a key file", path);
        return NULL;
    }
    return buf;
}

static char *trim(char *s) {
    while (*s == ' ' || *s == '\t') s++;
    char *e = s + strlen(s);
    while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r')) *--e = 0;
    return s;
}

/* Parses `public = …` / `secret = …` lines.  pub and sec get the keys
 * found (empty if absent); sec may be NULL, and then a secret line is an
 * error (a .pub file). */
static int parse(const char *path, char *text, char *pub, char *sec, char *err, size_t n) {
    pub[0] = 0;
    if (sec) sec[0] = 0;
    int line = 0;
    for (char *p = text; p && *p;) {
        char *nl = strchr(p, '\n');
        if (nl) *nl = 0;
        line++;
        char *l = trim(p);
        p = nl ? nl + 1 : NULL;
        if (!*l || *l == '#') continue;
        char *eq = strchr(l, '=');
        if (!eq) return sf_errf(SF_EFORMAT, err, n, "%s:%d: expected 'public = <key>' or 'secret = <key>'", path, line);
        *eq = 0;
        char *name = trim(l), *val = trim(eq + 1);
        char *dst;
        if (!strcmp(name, "public")) dst = pub;
        else if (!strcmp(name, "secret")) {
            if (!sec)
                return sf_errf(SF_EINVAL, err, n,
                               "%s:%d: this file holds a secret key; give the public key file (.pub) instead — the "
                               "secret stays with its owner",
                               path, line);
            dst = sec;
        } else {
            return sf_errf(SF_EFORMAT, err, n, "%s:%d: unknown name '%.40s' (expected 'public' or 'secret')", path,
                           line, name);
        }
        if (*dst) return sf_errf(SF_EFORMAT, err, n, "%s:%d: a second '%s' line", path, line, name);
        if (sf_curve_key_valid(val) != 0)
            return sf_errf(SF_EFORMAT, err, n, "%s:%d: the %s key must be 40 characters of Z85 (got %zu characters%s)",
                           path, line, name, strlen(val), strlen(val) == SF_CURVE_KEYLEN ? ", not all Z85" : "");
        memcpy(dst, val, SF_CURVE_KEYLEN + 1);
    }
    return 0;
}

int sf_curve_parse(const char *name, const char *text, size_t len, char *pub, char *sec, char *err, size_t n) {
    pub[0] = 0;
    if (sec) sec[0] = 0;
    if (len > MAX_FILE) return sf_errf(SF_ERANGE, err, n, "%s: %zu bytes; a key file is a few lines", name, len);
    if (memchr(text, 0, len)) return sf_errf(SF_EFORMAT, err, n, "%s: holds a NUL byte: not a key file", name);
    char *copy = malloc(len + 1);
    if (!copy) return sf_errf(SF_ENOMEM, err, n, "out of memory");
    memcpy(copy, text, len);
    copy[len] = 0;
    int rc = parse(name, copy, pub, sec, err, n);
    explicit_bzero(copy, len);
    free(copy);
    return rc;
}

int sf_curve_load_keypair(const char *path, sf_curve_keypair_t *kp, char *err, size_t n) {
    memset(kp, 0, sizeof *kp);
    char *text = slurp(path, 1, err, n);
    if (!text) return SF_EINVAL;
    size_t len = strlen(text);
    int rc = parse(path, text, kp->public_key, kp->secret_key, err, n);
    explicit_bzero(text, len);
    free(text);
    if (rc) { sf_curve_wipe(kp); return rc; }
    if (!kp->secret_key[0]) {
        sf_curve_wipe(kp);
        return sf_errf(SF_EFORMAT, err, n, "%s: no 'secret = <key>' line (a keypair file from sfctl keygen, *.key, is needed)",
                       path);
    }
    char derived[SF_CURVE_KEYLEN + 1];
    if (zmq_curve_public(derived, kp->secret_key) != 0) {
        sf_curve_wipe(kp);
        return sf_errf(SF_EUNSUPPORTED, err, n, "%s: cannot derive the public key: %s (libzmq without CURVE?)", path,
                       zmq_strerror(zmq_errno()));
    }
    if (!kp->public_key[0]) memcpy(kp->public_key, derived, sizeof derived);
    else if (strcmp(derived, kp->public_key)) {
        sf_curve_wipe(kp);
        return sf_errf(SF_EFORMAT, err, n, "%s: the public key does not belong to the secret key", path);
    }
    return 0;
}

int sf_curve_load_public(const char *path, char *out, char *err, size_t n) {
    out[0] = 0;
    char *text = slurp(path, 0, err, n);
    if (!text) return SF_EINVAL;
    int rc = parse(path, text, out, NULL, err, n);
    free(text);
    if (rc) return rc;
    if (!out[0]) return sf_errf(SF_EFORMAT, err, n, "%s: no 'public = <key>' line", path);
    return 0;
}

/* ---- keygen ------------------------------------------------------------------------- */

static int write_new(const char *path, mode_t mode, const char *text, char *err, size_t n) {
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
    if (fd < 0)
        return sf_errf(errno == EEXIST ? SF_EEXIST : SF_EIO, err, n, "cannot create '%s': %s%s", path, strerror(errno),
                       errno == EEXIST ? " (keygen never overwrites a key)" : "");
    size_t len = strlen(text), off = 0;
    while (off < len) {
        ssize_t k = write(fd, text + off, len - off);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) break;
        off += (size_t)k;
    }
    /* The umask may have taken bits away; never added any.  Set exactly. */
    int ok = off == len && fchmod(fd, mode) == 0 && fsync(fd) == 0;
    if (close(fd) != 0) ok = 0;
    if (!ok) {
        unlink(path);
        return sf_errf(SF_EIO, err, n, "cannot write '%s': %s", path, strerror(errno));
    }
    return 0;
}

int sf_curve_keygen(const char *prefix, char *public_out, char *err, size_t n) {
    char kpath[4096], ppath[4096];
    if (!prefix || !*prefix) return sf_errf(SF_EINVAL, err, n, "no output prefix");
    if ((size_t)snprintf(kpath, sizeof kpath, "%s.key", prefix) >= sizeof kpath ||
        (size_t)snprintf(ppath, sizeof ppath, "%s.pub", prefix) >= sizeof ppath)
        return sf_errf(SF_ERANGE, err, n, "prefix too long");
    if (access(kpath, F_OK) == 0) return sf_errf(SF_EEXIST, err, n, "'%s' exists: keygen never overwrites a key", kpath);
    if (access(ppath, F_OK) == 0) return sf_errf(SF_EEXIST, err, n, "'%s' exists: keygen never overwrites a key", ppath);
    sf_curve_keypair_t kp;
    if (zmq_curve_keypair(kp.public_key, kp.secret_key) != 0)
        return sf_errf(SF_EUNSUPPORTED, err, n, "cannot make a CURVE keypair: %s (libzmq without CURVE?)",
                       zmq_strerror(zmq_errno()));
    char when[32];
    time_t now = time(NULL);
    struct tm tm;
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&now, &tm));
    char ktext[512], ptext[512];
    snprintf(ktext, sizeof ktext,
             "# shiftforge CURVE keypair, made by sfctl keygen at %s.\n"
             "# Keep it secret (mode 0600); give others %s.pub.\n"
             "public = %s\nsecret = %s\n",
             when, prefix, kp.public_key, kp.secret_key);
    snprintf(ptext, sizeof ptext,
             "# shiftforge CURVE public key, made by sfctl keygen at %s.\n"
             "public = %s\n",
             when, kp.public_key);
    int rc = write_new(kpath, 0600, ktext, err, n);
    explicit_bzero(ktext, sizeof ktext);
    if (rc == 0 && (rc = write_new(ppath, 0644, ptext, err, n)) != 0) unlink(kpath);
    if (rc == 0 && public_out) memcpy(public_out, kp.public_key, SF_CURVE_KEYLEN + 1);
    sf_curve_wipe(&kp);
    return rc;
}

/* ---- allowed keys ------------------------------------------------------------------- */

int sf_curve_allow_load(const char *dir, sf_curve_allow_t *out, char *err, size_t n) {
    DIR *d = opendir(dir);
    if (!d) return sf_errf(SF_EIO, err, n, "cannot read the allowed-keys folder '%s': %s", dir, strerror(errno));
    sf_curve_allow_t a = {0};
    int cap = 0, rc = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t len = strlen(e->d_name);
        if (e->d_name[0] == '.' || len < 5 || strcmp(e->d_name + len - 4, ".pub")) continue;
        if (a.n == MAX_ALLOWED) {
            rc = sf_errf(SF_ERANGE, err, n, "'%s' holds more than %d .pub files", dir, MAX_ALLOWED);
            break;
        }
        if (a.n == cap) {
            int nc = cap ? cap * 2 : 16;
            void *nk = realloc(a.keys, (size_t)nc * sizeof *a.keys);
            if (nk) a.keys = nk;
            void *nn = nk ? realloc(a.names, (size_t)nc * sizeof *a.names) : NULL;
            if (nn) a.names = nn;
            if (!nk || !nn) { rc = sf_errf(SF_ENOMEM, err, n, "out of memory"); break; }
            cap = nc;
        }
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if ((rc = sf_curve_load_public(path, a.keys[a.n], err, n)) != 0) break;
        snprintf(a.names[a.n], sizeof a.names[a.n], "%.*s", (int)(len - 4), e->d_name);
        a.n++;
    }
    closedir(d);
    if (rc) { sf_curve_allow_free(&a); return rc; }
    *out = a;
    return 0;
}

const char *sf_curve_allow_find(const sf_curve_allow_t *a, const char *z85) {
    for (int i = 0; a && i < a->n; i++)
        if (!strcmp(a->keys[i], z85)) return a->names[i];
    return NULL;
}

void sf_curve_allow_free(sf_curve_allow_t *a) {
    free(a->keys);
    free(a->names);
    memset(a, 0, sizeof *a);
}

/* ---- sockets ------------------------------------------------------------------------ */

int sf_curve_server(void *sock, const sf_curve_keypair_t *kp, const char *domain, char *err, size_t n) {
    int one = 1;
    if (zmq_setsockopt(sock, ZMQ_CURVE_SERVER, &one, sizeof one) ||
        zmq_setsockopt(sock, ZMQ_CURVE_SECRETKEY, kp->secret_key, SF_CURVE_KEYLEN) ||
        zmq_setsockopt(sock, ZMQ_ZAP_DOMAIN, domain, strlen(domain)))
        return sf_errf(SF_EIO, err, n, "cannot make a CURVE server socket: %s", zmq_strerror(zmq_errno()));
    return 0;
}

int sf_curve_client_load(const char *key_file, const char *server_file, const char *key_name,
                         const char *server_name, sf_curve_client_t *out, char *err, size_t n) {
    memset(out, 0, sizeof *out);
    int have_key = key_file && *key_file, have_server = server_file && *server_file;
    if (!have_key && !have_server) return 0;
    if (!have_key) return sf_errf(SF_EINVAL, err, n, "%s is set but %s is not: CURVE needs both", server_name, key_name);
    if (!have_server) return sf_errf(SF_EINVAL, err, n, "%s is set but %s is not: CURVE needs both", key_name, server_name);
    char e2[600];
    int rc = sf_curve_load_keypair(key_file, &out->kp, e2, sizeof e2);
    if (rc) return sf_errf(rc, err, n, "%s: %s", key_name, e2);
    if ((rc = sf_curve_load_public(server_file, out->server, e2, sizeof e2)) != 0) {
        sf_curve_wipe(&out->kp);
        return sf_errf(rc, err, n, "%s: %s", server_name, e2);
    }
    out->on = 1;
    return 0;
}

int sf_curve_client(void *sock, const sf_curve_client_t *cc, char *err, size_t n) {
    if (!cc || !cc->on) return 0;
    if (zmq_setsockopt(sock, ZMQ_CURVE_SERVERKEY, cc->server, SF_CURVE_KEYLEN) ||
        zmq_setsockopt(sock, ZMQ_CURVE_PUBLICKEY, cc->kp.public_key, SF_CURVE_KEYLEN) ||
        zmq_setsockopt(sock, ZMQ_CURVE_SECRETKEY, cc->kp.secret_key, SF_CURVE_KEYLEN))
        return sf_errf(SF_EIO, err, n, "cannot make a CURVE client socket: %s", zmq_strerror(zmq_errno()));
    return 0;
}
