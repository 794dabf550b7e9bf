/* Unit tests for common/redis_auth: where credentials come from, the
 * password file's checks, messages that name the user and never the
 * password, and addresses. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/runtime/error.h"
#include "common/redis/redis_auth.h"
#include "sf_test.h"

static char file[64];

static void write_pw(const char *text) {
    FILE *f = fopen(file, "w");
    fputs(text, f);
    fclose(f);
    chmod(file, 0600);
}

TEST(file_env_and_precedence) {
    char err[600], who[160];
    sf_redis_auth_t a;
    unsetenv("SF_REDIS_USER");
    unsetenv("SF_REDIS_PASSWORD");
    CHECK_EQ_INT(sf_redis_auth_load(NULL, NULL, &a, err, sizeof err), 0);
    CHECK(a.password == NULL);
    CHECK_EQ_STR(sf_redis_auth_who(&a, who, sizeof who), "the default user");
    write_pw("s3cret pass\n");
    CHECK_EQ_INT(sf_redis_auth_load("sf", file, &a, err, sizeof err), 0);
    CHECK_EQ_STR(a.password, "s3cret pass");
    CHECK_EQ_STR(sf_redis_auth_who(&a, who, sizeof who), "user 'sf'");
    sf_redis_auth_free(&a);
    CHECK(a.password == NULL);
    write_pw("crlf\r\n");
    CHECK_EQ_INT(sf_redis_auth_load(NULL, file, &a, err, sizeof err), 0);
    CHECK_EQ_STR(a.password, "crlf");
    sf_redis_auth_free(&a);
    /* The environment when the config says nothing; the config wins. */
    setenv("SF_REDIS_USER", "envuser", 1);
    setenv("SF_REDIS_PASSWORD", "envpass", 1);
    CHECK_EQ_INT(sf_redis_auth_load("", "", &a, err, sizeof err), 0);
    CHECK_EQ_STR(a.user, "envuser");
    CHECK_EQ_STR(a.password, "envpass");
    sf_redis_auth_free(&a);
    write_pw("filepass");
    CHECK_EQ_INT(sf_redis_auth_load("cfguser", file, &a, err, sizeof err), 0);
    CHECK_EQ_STR(a.user, "cfguser");
    CHECK_EQ_STR(a.password, "filepass");
    sf_redis_auth_free(&a);
    unsetenv("SF_REDIS_USER");
    unsetenv("SF_REDIS_PASSWORD");
}

TEST(bad_password_files) {
    char err[600];
    sf_redis_auth_t a;
    write_pw("");
    CHECK(sf_redis_auth_load(NULL, file, &a, err, sizeof err) != 0);
    CHECK(strstr(err, file) && strstr(err, "is empty"));
    write_pw("one\ntwo\n");
    CHECK(sf_redis_auth_load(NULL, file, &a, err, sizeof err) != 0);
    CHECK(strstr(err, "more than one line"));
    CHECK(!strstr(err, "one\n"));
    CHECK(sf_redis_auth_load(NULL, "/nonexistent/pw", &a, err, sizeof err) != 0);
    CHECK(strstr(err, "/nonexistent/pw"));
    /* A user needs a password. */
    CHECK(sf_redis_auth_load("alice", NULL, &a, err, sizeof err) != 0);
    CHECK(strstr(err, "'alice'") && strstr(err, "redis_password_file"));
}

TEST(refresh_keeps_the_old_password_on_error) {
    char err[600];
    sf_redis_auth_t a;
    write_pw("first\n");
    CHECK_EQ_INT(sf_redis_auth_load("u", file, &a, err, sizeof err), 0);
    write_pw("second\n");
    CHECK_EQ_INT(sf_redis_auth_refresh(&a, "u", file, err, sizeof err), 0);
    CHECK_EQ_STR(a.password, "second");
    unlink(file);
    CHECK(sf_redis_auth_refresh(&a, "u", file, err, sizeof err) != 0);
    CHECK_EQ_STR(a.password, "second");
    CHECK_EQ_STR(a.user, "u");
    CHECK_EQ_INT(sf_redis_auth_refresh(&a, "u", "", err, sizeof err), 0);
    CHECK_EQ_STR(a.password, "second");
    sf_redis_auth_free(&a);
}

TEST(addresses) {
    char host[256];
    int port, is_unix;
    CHECK_EQ_INT(sf_redis_addr_parse("unix:/tmp/r.sock", host, sizeof host, &port, &is_unix), 0);
    CHECK_EQ_INT(is_unix, 1);
    CHECK_EQ_STR(host, "/tmp/r.sock");
    CHECK_EQ_INT(sf_redis_addr_parse("redis.local:6380", host, sizeof host, &port, &is_unix), 0);
    CHECK_EQ_STR(host, "redis.local");
    CHECK_EQ_INT(port, 6380);
    CHECK_EQ_INT(sf_redis_addr_parse("redis.local", host, sizeof host, &port, &is_unix), 0);
    CHECK_EQ_INT(port, 6379);
    CHECK(sf_redis_addr_parse("h:99999", host, sizeof host, &port, &is_unix) != 0);
    CHECK(sf_redis_addr_parse("unix:", host, sizeof host, &port, &is_unix) != 0);
}

TEST(hints) {
    CHECK(strstr(sf_redis_auth_hint("NOAUTH Authentication required."), "wants a password"));
    CHECK(strstr(sf_redis_auth_hint("WRONGPASS invalid username-password pair"), "wrong user or password"));
    CHECK_EQ_STR(sf_redis_auth_hint("ERR other"), "");
}

int main(void) {
    snprintf(file, sizeof file, "/tmp/sf-test-redis-auth-%d", (int)getpid());
    SF_RUN(file_env_and_precedence);
    SF_RUN(bad_password_files);
    SF_RUN(refresh_keeps_the_old_password_on_error);
    SF_RUN(addresses);
    SF_RUN(hints);
    unlink(file);
    SF_DONE();
}
