/* libFuzzer target: a daemon's JSON config file (common/runtime/config.c). */
#include <stddef.h>
#include <stdint.h>

#include "common/runtime/config.h"

typedef struct {
    char *redis, *name;
    long port, slots;
    double ratio;
    int flag;
    char *metrics_host;
    long metrics_port;
    char *log_level;
    int log_json;
} cfg_t;

#define F(k, t, d, lo, hi, doc) {#k, t, offsetof(cfg_t, k), d, lo, hi, doc}
static const sf_cfg_field_t schema[] = {
    F(redis, SF_CFG_STRING, "127.0.0.1:6379", 1, 0, "redis"),
    F(name, SF_CFG_STRING, "", 1, 0, "name"),
    F(port, SF_CFG_INT, "5555", 1, 65535, "port"),
    F(slots, SF_CFG_INT, "1", 1, 4096, "slots"),
    F(ratio, SF_CFG_DOUBLE, "0.5", 0, 1, "ratio"),
    F(flag, SF_CFG_BOOL, "false", 0, 1, "flag"),
    SF_CFG_DAEMON_FIELDS(cfg_t),
    {NULL, 0, 0, NULL, 0, 0, NULL},
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    cfg_t c = {0}; /* sf_config_defaults frees strings already set: start zeroed */
    char err[512];
    sf_config_defaults(schema, &c);
    sf_config_load_text(schema, &c, "fuzz", (const char *)data, size, err, sizeof err);
    sf_config_free(schema, &c);
    return 0;
}
