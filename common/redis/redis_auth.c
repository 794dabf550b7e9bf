/* redis_auth.c: Redis credentials and connections (see redis_auth.h). */
#include "common/redis/redis_auth.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/runtime/error.h"
#include "common/runtime/log.h"

#define MAX_PASSWORD 4096

static char *read_password(const char *path, char *err, size_t n) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        sf_errf(SF_EIO, err, n, "cannot open the Redis password file '%s': %s", path, strerror(errno));
        return NULL;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        sf_errf(SF_EINVAL, err, n, "the Redis password file '%s' is not a regular file", path);
        return NULL;
    }
    if (st.st_mode & 007)
        sf_warn("the Redis password file '%s' is readable by others (mode %04o): chmod o-rwx it", path,
                (unsigned)(st.st_mode & 07777));
    char *buf = malloc(MAX_PASSWORD + 2);
    if (!buf) {
        close(fd);
        sf_errf(SF_ENOMEM, err, n, "out of memory");
        return NULL;
    }
    size_t got = 0;
    while (got < MAX_PASSWORD + 1) {
        ssize_t k = read(fd, buf + got, MAX_PASSWORD + 1 - got);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) break;
        got += (size_t)k;
    }
    close(fd);
    buf[got] = 0;
    /* One trailing newline (echo, editors) is not part of the password. */
    if (got && buf[got - 1] == '\n') buf[--got] = 0;
    if (got && buf[got - 1] == '\r') buf[--got] = 0;
    const char *why = got > MAX_PASSWORD ? "is longer than 4096 bytes"
                      : got == 0         ? "is empty"
                      : strlen(buf) != got ? "holds a NUL byte"
                      : strchr(buf, '\n')  ? "holds more than one line"
                                           : NULL;
    if (why) {
        explicit_bzero(buf, MAX_PASSWORD + 2);
        free(buf);
        sf_errf(SF_EINVAL, err, n, "the Redis password file '%s' %s", path, why);
        return NULL;
    }
    return buf;
}

int sf_redis_auth_load(const char *user, const char *password_file, sf_redis_auth_t *a, char *err, size_t n) {
    memset(a, 0, sizeof *a);
    const char *u = user && *user ? user : getenv("SF_REDIS_USER");
    if (u && strlen(u) >= sizeof a->user) return sf_errf(SF_EINVAL, err, n, "the Redis user name is too long");
    if (u) snprintf(a->user, sizeof a->user, "%s", u);
    if (password_file && *password_file) {
        a->password = read_password(password_file, err, n);
        if (!a->password) return SF_EINVAL;
    } else {
        const char *p = getenv("SF_REDIS_PASSWORD");
        if (p && *p) {
            if (strlen(p) > MAX_PASSWORD) return sf_errf(SF_EINVAL, err, n, "SF_REDIS_PASSWORD is longer than 4096 bytes");
            a->password = strdup(p);
            if (!a->password) return sf_errf(SF_ENOMEM, err, n, "out of memory");
        }
    }
    if (a->user[0] && !a->password)
        return sf_errf(SF_EINVAL, err, n,
                       "Redis user '%s' has no password: set redis_password_file (or SF_REDIS_PASSWORD)", a->user);
    return 0;
}

int sf_redis_auth_refresh(sf_redis_auth_t *a, const char *user, const char *password_file, char *err, size_t n) {
    if (!password_file || !*password_file) return 0;
    sf_redis_auth_t fresh;
    int rc = sf_redis_auth_load(user, password_file, &fresh, err, n);
    if (rc) return rc;
    sf_redis_auth_free(a);
    *a = fresh;
    return 0;
}

const char *sf_redis_auth_who(const sf_redis_auth_t *a, char *buf, size_t n) {
    if (a && a->user[0]) snprintf(buf, n, "user '%s'", a->user);
    else snprintf(buf, n, "the default user");
    return buf;
}

void sf_redis_auth_free(sf_redis_auth_t *a) {
    if (a->password) {
        explicit_bzero(a->password, strlen(a->password));
        free(a->password);
    }
    a->password = NULL;
}

const char *sf_redis_auth_hint(const char *e) {
    if (!e) return "";
    if (!strncmp(e, "NOAUTH", 6)) return " (Redis wants a password: set redis_password_file or SF_REDIS_PASSWORD)";
    if (!strncmp(e, "WRONGPASS", 9) || strstr(e, "invalid password") || strstr(e, "invalid username"))
        return " (wrong user or password)";
    if (!strncmp(e, "NOPERM", 6)) return " (the Redis ACL user lacks a permission)";
    return "";
}

int sf_redis_addr_parse(const char *addr, char *host, size_t hn, int *port, int *is_unix) {
    *port = 0;
    if (strncmp(addr, "unix:", 5) == 0) {
        snprintf(host, hn, "%s", addr + 5);
        *is_unix = 1;
        return *host ? 0 : SF_EINVAL;
    }
    *is_unix = 0;
    const char *colon = strrchr(addr, ':');
    if (!colon) { snprintf(host, hn, "%s", addr); *port = 6379; return *host ? 0 : SF_EINVAL; }
    snprintf(host, hn, "%.*s", (int)(colon - addr), addr);
    *port = atoi(colon + 1);
    return *port > 0 && *port < 65536 && *host ? 0 : SF_EINVAL;
}

static int argv_auth(const sf_redis_auth_t *a, const char **argv, size_t *lens) {
    int argc = 0;
    argv[argc] = "AUTH", lens[argc++] = 4;
    if (a->user[0]) argv[argc] = a->user, lens[argc++] = strlen(a->user);
    argv[argc] = a->password, lens[argc++] = strlen(a->password);
    return argc;
}

redisContext *sf_redis_connect(const char *addr, const sf_redis_auth_t *a, struct timeval tv, char *err, size_t n) {
    char host[512];
    int port, is_unix;
    if (sf_redis_addr_parse(addr, host, sizeof host, &port, &is_unix)) {
        sf_errf(SF_EINVAL, err, n, "bad redis address '%s' (host:port or unix:/path)", addr);
        return NULL;
    }
    redisContext *rc = is_unix ? redisConnectUnixWithTimeout(host, tv) : redisConnectWithTimeout(host, port, tv);
    if (!rc || rc->err) {
        sf_errf(SF_EREDIS, err, n, "cannot connect to redis at %s: %s", addr, rc ? rc->errstr : "out of memory");
        if (rc) redisFree(rc);
        return NULL;
    }
    /* Without a password, a PING says at once whether Redis wants one. */
    int with_auth = a && a->password;
    const char *argv[3] = {"PING"};
    size_t lens[3] = {4};
    int argc = with_auth ? argv_auth(a, argv, lens) : 1;
    redisReply *r = redisCommandArgv(rc, argc, argv, lens);
    if (!r || r->type == REDIS_REPLY_ERROR) {
        char who[160];
        const char *e = r ? r->str : rc->errstr;
        if (with_auth)
            sf_errf(SF_EREDIS, err, n, "redis at %s refused AUTH as %s: %s%s", addr,
                    sf_redis_auth_who(a, who, sizeof who), e, sf_redis_auth_hint(e));
        else
            sf_errf(SF_EREDIS, err, n, "redis at %s: %s%s", addr, e, sf_redis_auth_hint(e));
        freeReplyObject(r);
        redisFree(rc);
        return NULL;
    }
    freeReplyObject(r);
    return rc;
}

int sf_redis_auth_async(redisAsyncContext *ac, const sf_redis_auth_t *a, redisCallbackFn *cb, void *arg) {
    if (!a || !a->password) return 0;
    const char *argv[3];
    size_t lens[3];
    int argc = argv_auth(a, argv, lens);
    return redisAsyncCommandArgv(ac, cb, arg, argc, argv, lens) == REDIS_OK ? 1 : SF_EREDIS;
}
