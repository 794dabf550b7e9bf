/* Unit tests for common/config: defaults, files, flags, and clear errors. */
#include <stddef.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/runtime/config.h"
#include "common/runtime/error.h"
#include "sf_test.h"

typedef struct { char *name; long n; double x; int flag; } cfg_t;
static const sf_cfg_field_t schema[] = {
    {"name", SF_CFG_STRING, offsetof(cfg_t, name), "anon", 1, 0, "a name"},
    {"n", SF_CFG_INT, offsetof(cfg_t, n), "3", 1, 10, "a count"},
    {"x", SF_CFG_DOUBLE, offsetof(cfg_t, x), "0.5", 1, 0, "a number"},
    {"flag", SF_CFG_BOOL, offsetof(cfg_t, flag), "false", 1, 0, "a switch"},
    {NULL, 0, 0, NULL, 0, 0, NULL},
};

static const char *write_tmp(const char *text) {
    static char path[64];
    snprintf(path, sizeof path, "/tmp/sf-test-config-%d.json", (int)getpid());
    FILE *f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
    return path;
}

TEST(defaults_file_flags) {
    cfg_t c = {0};
    char err[256];
    CHECK_EQ_INT(sf_config_defaults(schema, &c), 0);
    CHECK_EQ_STR(c.name, "anon");
    CHECK_EQ_INT(c.n, 3);
    const char *p = write_tmp("{\"name\": \"w1\", \"n\": 7, \"flag\": true}");
    char *argv[] = {"prog", "--config", (char *)p, "--n", "9", "word", "--x=2.5", NULL};
    int nrest, help;
    CHECK_EQ_INT(sf_config_args(schema, &c, 7, argv, &nrest, &help, err, sizeof err), 0);
    CHECK_EQ_STR(c.name, "w1");
    CHECK_EQ_INT(c.n, 9);             /* the flag wins over the file */
    CHECK_NEAR(c.x, 2.5, 1e-12);
    CHECK_EQ_INT(c.flag, 1);
    CHECK_EQ_INT(nrest, 1);
    CHECK_EQ_STR(argv[1], "word");
    unlink(p);
    sf_config_free(schema, &c);
}

TEST(errors_name_the_key) {
    cfg_t c = {0};
    char err[256];
    sf_config_defaults(schema, &c);
    const char *p = write_tmp("{\"nme\": \"typo\"}");
    CHECK_EQ_INT(sf_config_load_file(schema, &c, p, err, sizeof err), SF_EINVAL);
    CHECK(strstr(err, "unknown key 'nme'"));
    p = write_tmp("{\"n\": 11}");
    CHECK_EQ_INT(sf_config_load_file(schema, &c, p, err, sizeof err), SF_EINVAL);
    CHECK(strstr(err, "'n'") && strstr(err, "outside"));
    p = write_tmp("{\"n\": 2.5}");
    CHECK_EQ_INT(sf_config_load_file(schema, &c, p, err, sizeof err), SF_EINVAL);
    CHECK(strstr(err, "whole number"));
    p = write_tmp("{\"flag\": \"yes\"}");
    CHECK_EQ_INT(sf_config_load_file(schema, &c, p, err, sizeof err), SF_EINVAL);
    CHECK(strstr(err, "true or false"));
    p = write_tmp("{\"n\": 1,\n \"x\": }");
    CHECK_EQ_INT(sf_config_load_file(schema, &c, p, err, sizeof err), SF_EINVAL);
    CHECK(strstr(err, "invalid JSON near line 2"));
    unlink(p);
    CHECK_EQ_INT(sf_config_load_file(schema, &c, "/nonexistent.json", err, sizeof err), SF_EIO);
    CHECK_EQ_INT(sf_config_set(schema, &c, "bogus", "1", err, sizeof err), SF_EINVAL);
    CHECK(strstr(err, "unknown config key 'bogus'"));
    char *argv[] = {"prog", "--n", NULL};
    int nrest, help;
    CHECK_EQ_INT(sf_config_args(schema, &c, 2, argv, &nrest, &help, err, sizeof err), SF_EINVAL);
    CHECK(strstr(err, "needs a value"));
    sf_config_free(schema, &c);
}

/* What cJSON alone lets through: a file read only up to its first value, or
 * a key whose first copy a lookup sees while the loop applies both. */
TEST(trailing_text_and_repeated_keys_are_errors) {
    cfg_t c = {0};
    char err[256];
    sf_config_defaults(schema, &c);
    const char *p = write_tmp("{\"n\": 4}\n{\"n\": 5}\n");
    CHECK_EQ_INT(sf_config_load_file(schema, &c, p, err, sizeof err), SF_EINVAL);
    CHECK(strstr(err, p) && strstr(err, "unexpected text after the JSON value at line 2"));
    p = write_tmp("{\"name\": \"w1\"} trailing");
    CHECK_EQ_INT(sf_config_load_file(schema, &c, p, err, sizeof err), SF_EINVAL);
    CHECK(strstr(err, "after the JSON value at line 1, column 16"));
    p = write_tmp("{\"n\": 4, \"x\": 1, \"n\": 5}");
    CHECK_EQ_INT(sf_config_load_file(schema, &c, p, err, sizeof err), SF_EINVAL);
    CHECK(strstr(err, p) && strstr(err, "key 'n' is given twice"));
    CHECK_EQ_INT(c.n, 3); /* nothing of a refused file is applied */
    p = write_tmp("\n  {\"n\": 4}  \n\n");
    CHECK_EQ_INT(sf_config_load_file(schema, &c, p, err, sizeof err), 0);
    CHECK_EQ_INT(c.n, 4);
    unlink(p);
    sf_config_free(schema, &c);
}

TEST(check_dir_names_the_key_and_the_path) {
    char dir[] = "/tmp/sf-test-config-dir-XXXXXX", path[256], err[512];
    CHECK(mkdtemp(dir) != NULL);
    CHECK_EQ_INT(sf_config_check_dir("data_dir", dir, err, sizeof err), 0);
    snprintf(path, sizeof path, "%s/not/yet/there", dir); /* made when first written */
    CHECK_EQ_INT(sf_config_check_dir("data_dir", path, err, sizeof err), 0);
    snprintf(path, sizeof path, "%s/file", dir);
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    fclose(f);
    CHECK_EQ_INT(sf_config_check_dir("data_dir", path, err, sizeof err), SF_EINVAL);
    CHECK(strstr(err, "config key 'data_dir'") && strstr(err, path) && strstr(err, "not a folder"));
    snprintf(path, sizeof path, "%s/file/sub", dir); /* under a file: cannot be made */
    CHECK_EQ_INT(sf_config_check_dir("checkpoint_dir", path, err, sizeof err), SF_EINVAL);
    CHECK(strstr(err, "config key 'checkpoint_dir'") && strstr(err, path));
    CHECK_EQ_INT(sf_config_check_dir("data_dir", "/proc/sf-test/x", err, sizeof err), SF_EINVAL);
    CHECK(strstr(err, "'/proc/sf-test/x'") && strstr(err, "cannot be made in '/proc'"));
    CHECK_EQ_INT(sf_config_check_dir("data_dir", "", err, sizeof err), SF_EINVAL);
    CHECK(strstr(err, "'data_dir' is empty"));
    /* A folder without write permission (root may write anyway). */
    snprintf(path, sizeof path, "%s/ro", dir);
    CHECK_EQ_INT(mkdir(path, 0555), 0);
    if (geteuid() != 0) {
        CHECK_EQ_INT(sf_config_check_dir("data_dir", path, err, sizeof err), SF_EINVAL);
        CHECK(strstr(err, "not writable"));
    }
    rmdir(path);
    snprintf(path, sizeof path, "%s/file", dir);
    unlink(path);
    CHECK_EQ_INT(rmdir(dir), 0);
}

int main(void) {
    SF_RUN(defaults_file_flags);
    SF_RUN(errors_name_the_key);
    SF_RUN(trailing_text_and_repeated_keys_are_errors);
    SF_RUN(check_dir_names_the_key_and_the_path);
    SF_DONE();
}
