/* config.h: daemon configuration from one JSON file plus command-line flags.
 *
 * A daemon describes its settings as a table of sf_cfg_field_t (key, type,
 * offset into its config struct, default, bounds, doc).  Loading a file
 * rejects unknown keys, wrong types and out-of-range values with a message
 * naming the key; flags (`--key value` or `--key=value`) override the file.
 * docs/configuration.md documents every table, and a test checks that it does.
 */
#ifndef SF_CONFIG_H
#define SF_CONFIG_H

#include <stddef.h>
#include <stdio.h>

typedef enum { SF_CFG_STRING, SF_CFG_INT, SF_CFG_DOUBLE, SF_CFG_BOOL } sf_cfg_type_t;

typedef struct sf_cfg_field_s {
    const char *key;
    sf_cfg_type_t type;
    size_t offset;       /* char * (owned), long, double or int */
    const char *def;     /* default as text; NULL means "" / 0 */
    double min, max;     /* bounds for numbers; min > max means unbounded */
    const char *doc;
} sf_cfg_field_t;

/* The settings every daemon has, as the last rows of its table; its config
 * struct T needs the fields metrics_host (char *), metrics_port (long),
 * log_level (char *) and log_json (int). */
#define SF_CFG_DAEMON_FIELDS(T)                                                                         \
    {"metrics_host", SF_CFG_STRING, offsetof(T, metrics_host), "127.0.0.1", 1, 0,                     \
     "address the Prometheus metrics endpoint binds"},                                                \
    {"metrics_port", SF_CFG_INT, offsetof(T, metrics_port), "0", 0, 65535, "port of GET /metrics (0: off)"}, \
    {"log_level", SF_CFG_STRING, offsetof(T, log_level), "info", 1, 0, "debug, info, warn or error"},   \
    {"log_json", SF_CFG_BOOL, offsetof(T, log_json), "false", 1, 0, "log one JSON object per line"}

/* Fills obj with the defaults of schema (terminated by a NULL key); obj
 * starts zeroed (string fields already set are freed first). */
int sf_config_defaults(const sf_cfg_field_t *schema, void *obj);

/* Applies a JSON object file.  Unknown keys are errors. */
int sf_config_load_file(const sf_cfg_field_t *schema, void *obj, const char *path,
                        char *err, size_t errlen);

/* The same from len bytes of JSON text; `name` names it in errors. */
int sf_config_load_text(const sf_cfg_field_t *schema, void *obj, const char *name, const char *buf, size_t len,
                        char *err, size_t errlen);

/* Sets one key from text (as a flag would). */
int sf_config_set(const sf_cfg_field_t *schema, void *obj, const char *key,
                  const char *value, char *err, size_t errlen);

/* Parses argv: `--config FILE` is applied first, then every `--key value` /
 * `--key=value` in order (booleans also as bare `--key`).  Non-option words
 * are left in argv and their count returned through *nrest (argv is
 * reordered so they come first).  `--help` sets *help. */
int sf_config_args(const sf_cfg_field_t *schema, void *obj, int argc, char **argv,
                   int *nrest, int *help, char *err, size_t errlen);

/* Checks, at a daemon's start, that the folder setting `key` names a folder
 * this process can write in, or one it could create (its nearest existing
 * ancestor is a folder it can write in), by making a file there and
 * removing it; it leaves nothing behind.  0, or SF_EINVAL with err naming
 * the key and the path: "config key 'data_dir' = '/srv/data': not writable
 * (Read-only file system)". */
int sf_config_check_dir(const char *key, const char *path, char *err, size_t errlen);

/* Prints "--key (type, default X): doc" lines. */
void sf_config_usage(const sf_cfg_field_t *schema, FILE *out);

/* Frees the strings of obj. */
void sf_config_free(const sf_cfg_field_t *schema, void *obj);

#endif
