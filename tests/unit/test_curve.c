/* Unit tests for common/curve: keygen, strict key files, the allowed-keys
 * folder, and a CURVE exchange over the keys it writes. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>

#include "common/net/curve.h"
#include "common/runtime/error.h"
#include "sf_test.h"

static char dir[64];

static const char *path(const char *name) {
    static char p[4][160];
    static int k;
    k = (k + 1) % 4;
    snprintf(p[k], sizeof p[k], "%s/%s", dir, name);
    return p[k];
}

static void write_file(const char *name, const char *text, mode_t mode) {
    const char *p = path(name);
    unlink(p);
    FILE *f = fopen(p, "w");
    fputs(text, f);
    fclose(f);
    chmod(p, mode);
}

TEST(keygen_writes_both_files_and_never_overwrites) {
    char err[600], pub[SF_CURVE_KEYLEN + 1];
    CHECK_EQ_INT(sf_curve_keygen(path("a"), pub, err, sizeof err), 0);
    struct stat st;
    CHECK_EQ_INT(stat(path("a.key"), &st), 0);
    CHECK_EQ_INT(st.st_mode & 0777, 0600);
    CHECK_EQ_INT(stat(path("a.pub"), &st), 0);
    CHECK_EQ_INT(st.st_mode & 0777, 0644);
    sf_curve_keypair_t kp;
    CHECK_EQ_INT(sf_curve_load_keypair(path("a.key"), &kp, err, sizeof err), 0);
    CHECK_EQ_STR(kp.public_key, pub);
    char pub2[SF_CURVE_KEYLEN + 1];
    CHECK_EQ_INT(sf_curve_load_public(path("a.pub"), pub2, err, sizeof err), 0);
    CHECK_EQ_STR(pub2, pub);
    /* A second keygen to the same prefix is refused and leaves the keys alone. */
    CHECK_EQ_INT(sf_curve_keygen(path("a"), NULL, err, sizeof err), SF_EEXIST);
    CHECK(strstr(err, "never overwrites"));
    sf_curve_keypair_t again;
    CHECK_EQ_INT(sf_curve_load_keypair(path("a.key"), &again, err, sizeof err), 0);
    CHECK_EQ_STR(again.secret_key, kp.secret_key);
    /* Only the .pub existing is refused too. */
    unlink(path("a.key"));
    CHECK_EQ_INT(sf_curve_keygen(path("a"), NULL, err, sizeof err), SF_EEXIST);
    CHECK(access(path("a.key"), F_OK) != 0);
    sf_curve_wipe(&kp);
    CHECK_EQ_INT(kp.secret_key[0], 0);
}

TEST(secret_files_readable_by_others_are_refused) {
    char err[600], pub[SF_CURVE_KEYLEN + 1];
    CHECK_EQ_INT(sf_curve_keygen(path("b"), pub, err, sizeof err), 0);
    sf_curve_keypair_t kp;
    CHECK_EQ_INT(sf_curve_load_keypair(path("b.key"), &kp, err, sizeof err), 0);
    char secret[SF_CURVE_KEYLEN + 1];
    memcpy(secret, kp.secret_key, sizeof secret);
    chmod(path("b.key"), 0640);
    CHECK(sf_curve_load_keypair(path("b.key"), &kp, err, sizeof err) != 0);
    CHECK(strstr(err, "0640") && strstr(err, "too open") && strstr(err, "chmod 600"));
    CHECK(!strstr(err, secret));
    chmod(path("b.key"), 0604);
    CHECK(sf_curve_load_keypair(path("b.key"), &kp, err, sizeof err) != 0);
    chmod(path("b.key"), 0400);
    CHECK_EQ_INT(sf_curve_load_keypair(path("b.key"), &kp, err, sizeof err), 0);
    /* A .key given where a public key is wanted: refused, secret not quoted. */
    CHECK(sf_curve_load_public(path("b.key"), pub, err, sizeof err) != 0);
    CHECK(strstr(err, "b.key:4") && strstr(err, "secret"));
    CHECK(!strstr(err, secret));
    CHECK_EQ_INT(sf_curve_load_keypair(path("nonexistent.key"), &kp, err, sizeof err), SF_EINVAL);
    CHECK(strstr(err, "nonexistent.key"));
}

TEST(bad_key_files_name_the_line) {
    char err[600], pub[SF_CURVE_KEYLEN + 1];
    sf_curve_keypair_t kp;
    CHECK_EQ_INT(sf_curve_keygen(path("c"), pub, err, sizeof err), 0);
    CHECK_EQ_INT(sf_curve_load_keypair(path("c.key"), &kp, err, sizeof err), 0);
    char good[512];
    /* Comments, blank lines, spaces and CRLF are fine. */
    snprintf(good, sizeof good, "# a comment\r\n\r\n   public=%s  \r\n\tsecret =  %s\r\n", kp.public_key, kp.secret_key);
    write_file("ok.key", good, 0600);
    sf_curve_keypair_t kp2;
    CHECK_EQ_INT(sf_curve_load_keypair(path("ok.key"), &kp2, err, sizeof err), 0);
    CHECK_EQ_STR(kp2.public_key, kp.public_key);
    /* The public line may be left out: it follows from the secret. */
    snprintf(good, sizeof good, "secret = %s\n", kp.secret_key);
    write_file("ok2.key", good, 0600);
    CHECK_EQ_INT(sf_curve_load_keypair(path("ok2.key"), &kp2, err, sizeof err), 0);
    CHECK_EQ_STR(kp2.public_key, kp.public_key);

    char text[512];
    /* A line without '=' (the key has its '=' taken out: Z85 keys may hold one,
     * and the split is at the first). */
    char noeq[64];
    snprintf(noeq, sizeof noeq, "%s", kp.secret_key);
    for (char *q = noeq; *q; q++) if (*q == '=') *q = 'x';
    snprintf(text, sizeof text, "public = %s\nsecret %s\n", kp.public_key, noeq);
    write_file("bad1.key", text, 0600);
    CHECK(sf_curve_load_keypair(path("bad1.key"), &kp2, err, sizeof err) != 0);
    CHECK(strstr(err, "bad1.key:2: expected"));
    CHECK(!strstr(err, noeq));
    snprintf(text, sizeof text, "public = %s\nsecret = %.39s\n", kp.public_key, kp.secret_key);
    write_file("bad2.key", text, 0600);
    CHECK(sf_curve_load_keypair(path("bad2.key"), &kp2, err, sizeof err) != 0);
    CHECK(strstr(err, "bad2.key:2: the secret key must be 40 characters of Z85 (got 39"));
    snprintf(text, sizeof text, "public = %.39s\"\n", kp.public_key);
    write_file("bad3.pub", text, 0644);
    CHECK(sf_curve_load_public(path("bad3.pub"), pub, err, sizeof err) != 0);
    CHECK(strstr(err, "bad3.pub:1:") && strstr(err, "not all Z85"));
    snprintf(text, sizeof text, "public = %s\npublic = %s\n", kp.public_key, kp.public_key);
    write_file("bad4.pub", text, 0644);
    CHECK(sf_curve_load_public(path("bad4.pub"), pub, err, sizeof err) != 0);
    CHECK(strstr(err, "bad4.pub:2: a second 'public' line"));
    write_file("bad5.pub", "# nothing here\n", 0644);
    CHECK(sf_curve_load_public(path("bad5.pub"), pub, err, sizeof err) != 0);
    CHECK(strstr(err, "no 'public = <key>' line"));
    snprintf(text, sizeof text, "pubkey = %s\n", kp.public_key);
    write_file("bad6.pub", text, 0644);
    CHECK(sf_curve_load_public(path("bad6.pub"), pub, err, sizeof err) != 0);
    CHECK(strstr(err, "bad6.pub:1: unknown name 'pubkey'"));
    /* A public key that does not belong to the secret one. */
    char other[SF_CURVE_KEYLEN + 1];
    CHECK_EQ_INT(sf_curve_keygen(path("d"), other, err, sizeof err), 0);
    snprintf(text, sizeof text, "public = %s\nsecret = %s\n", other, kp.secret_key);
    write_file("bad7.key", text, 0600);
    CHECK(sf_curve_load_keypair(path("bad7.key"), &kp2, err, sizeof err) != 0);
    CHECK(strstr(err, "does not belong"));
    write_file("bad8.key", "", 0600);
    CHECK(sf_curve_load_keypair(path("bad8.key"), &kp2, err, sizeof err) != 0);
    CHECK(strstr(err, "no 'secret = <key>' line"));
    CHECK(sf_curve_key_valid(kp.public_key) == 0);
    CHECK(sf_curve_key_valid("short") != 0);
    CHECK(sf_curve_key_valid("0000000000000000000000000000000000000\"\"\"") != 0);
}

TEST(allowed_folder) {
    char err[600], p1[SF_CURVE_KEYLEN + 1], p2[SF_CURVE_KEYLEN + 1], p3[SF_CURVE_KEYLEN + 1];
    char sub[128], pre[160];
    snprintf(sub, sizeof sub, "%s/allowed", dir);
    mkdir(sub, 0755);
    snprintf(pre, sizeof pre, "%s/w1", sub);
    CHECK_EQ_INT(sf_curve_keygen(pre, p1, err, sizeof err), 0);
    snprintf(pre, sizeof pre, "%s/w2", sub);
    CHECK_EQ_INT(sf_curve_keygen(pre, p2, err, sizeof err), 0);
    CHECK_EQ_INT(sf_curve_keygen(path("outsider"), p3, err, sizeof err), 0);
    /* The .key files in the folder are not .pub files: ignored. */
    sf_curve_allow_t a;
    CHECK_EQ_INT(sf_curve_allow_load(sub, &a, err, sizeof err), 0);
    CHECK_EQ_INT(a.n, 2);
    CHECK_EQ_STR(sf_curve_allow_find(&a, p1), "w1");
    CHECK_EQ_STR(sf_curve_allow_find(&a, p2), "w2");
    CHECK(sf_curve_allow_find(&a, p3) == NULL);
    sf_curve_allow_free(&a);
    /* One bad .pub file makes the whole folder an error naming it. */
    char bad[200];
    snprintf(bad, sizeof bad, "%s/broken.pub", sub);
    FILE *f = fopen(bad, "w");
    fputs("public = nope\n", f);
    fclose(f);
    CHECK(sf_curve_allow_load(sub, &a, err, sizeof err) != 0);
    CHECK(strstr(err, "broken.pub:1"));
    unlink(bad);
    CHECK(sf_curve_allow_load("/nonexistent-folder", &a, err, sizeof err) != 0);
    CHECK(strstr(err, "/nonexistent-folder"));
}

TEST(client_load_needs_both_files) {
    char err[600], pub[SF_CURVE_KEYLEN + 1];
    sf_curve_client_t cc;
    CHECK_EQ_INT(sf_curve_client_load("", NULL, "k", "s", &cc, err, sizeof err), 0);
    CHECK_EQ_INT(cc.on, 0);
    CHECK(sf_curve_client_load(path("e.key"), "", "curve_key_file", "curve_server_key_file", &cc, err, sizeof err) != 0);
    CHECK(strstr(err, "curve_key_file is set but curve_server_key_file is not"));
    CHECK_EQ_INT(sf_curve_keygen(path("e"), pub, err, sizeof err), 0);
    CHECK(sf_curve_client_load(path("e.key"), path("nonexistent.pub"), "k", "srv", &cc, err, sizeof err) != 0);
    CHECK(strstr(err, "srv: cannot open key file"));
    CHECK_EQ_INT(sf_curve_client_load(path("e.key"), path("e.pub"), "k", "s", &cc, err, sizeof err), 0);
    CHECK_EQ_INT(cc.on, 1);
    CHECK_EQ_STR(cc.server, pub);
}

/* With the keys keygen wrote, a CURVE client reaches a CURVE server (no
 * ZAP handler in this context: every key is let in). */
TEST(curve_round_trip) {
    char err[600], spub[SF_CURVE_KEYLEN + 1], cpub[SF_CURVE_KEYLEN + 1];
    CHECK_EQ_INT(sf_curve_keygen(path("srv"), spub, err, sizeof err), 0);
    CHECK_EQ_INT(sf_curve_keygen(path("cli"), cpub, err, sizeof err), 0);
    sf_curve_keypair_t skp;
    CHECK_EQ_INT(sf_curve_load_keypair(path("srv.key"), &skp, err, sizeof err), 0);
    sf_curve_client_t cc;
    CHECK_EQ_INT(sf_curve_client_load(path("cli.key"), path("srv.pub"), "k", "s", &cc, err, sizeof err), 0);
    void *ctx = zmq_ctx_new();
    void *srv = zmq_socket(ctx, ZMQ_ROUTER), *cli = zmq_socket(ctx, ZMQ_DEALER);
    int linger = 0;
    zmq_setsockopt(srv, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(cli, ZMQ_LINGER, &linger, sizeof linger);
    char ep[128];
    snprintf(ep, sizeof ep, "ipc://%s/rt.ipc", dir);
    CHECK_EQ_INT(sf_curve_server(srv, &skp, "test", err, sizeof err), 0);
    CHECK_EQ_INT(zmq_bind(srv, ep), 0);
    CHECK_EQ_INT(sf_curve_client(cli, &cc, err, sizeof err), 0);
    CHECK_EQ_INT(zmq_connect(cli, ep), 0);
    CHECK_EQ_INT(zmq_send(cli, "hello", 5, 0), 5);
    int timeo = 5000;
    zmq_setsockopt(srv, ZMQ_RCVTIMEO, &timeo, sizeof timeo);
    char rid[256], buf[16];
    CHECK(zmq_recv(srv, rid, sizeof rid, 0) > 0);
    CHECK_EQ_INT(zmq_recv(srv, buf, sizeof buf, 0), 5);
    CHECK(!memcmp(buf, "hello", 5));
    zmq_close(cli);
    zmq_close(srv);
    zmq_ctx_term(ctx);
}

int main(void) {
    snprintf(dir, sizeof dir, "/tmp/sf-test-curve-%d", (int)getpid());
    mkdir(dir, 0700);
    SF_RUN(keygen_writes_both_files_and_never_overwrites);
    SF_RUN(secret_files_readable_by_others_are_refused);
    SF_RUN(bad_key_files_name_the_line);
    SF_RUN(allowed_folder);
    SF_RUN(client_load_needs_both_files);
    SF_RUN(curve_round_trip);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", dir);
    SF_DONE();
}
