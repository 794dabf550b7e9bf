/* config.c: schema-checked JSON configuration with flag overrides. */
#include "common/runtime/config.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/runtime/error.h"
#include "common/runtime/fileio.h"
#include "common/runtime/json_strict.h"

static const sf_cfg_field_t *find(const sf_cfg_field_t *s, const char *key) {
    for (; s->key; s++)
        if (strcmp(s->key, key) == 0) return s;
    return NULL;
}

static int set_number(const sf_cfg_field_t *f, void *obj, double v, char *err, size_t n) {
    if (f->min <= f->max && (v < f->min || v > f->max))
        return sf_errf(SF_EINVAL, err, n, "config key '%s': %g is outside [%g, %g]", f->key, v, f->min, f->max);
    char *p = (char *)obj + f->offset;
    if (f->type == SF_CFG_INT) {
        if (v != floor(v)) return sf_errf(SF_EINVAL, err, n, "config key '%s': %g is not a whole number", f->key, v);
        *(long *)p = (long)v;
    } else {
        *(double *)p = v;
    }
    return 0;
}

static int set_text(const sf_cfg_field_t *f, void *obj, const char *value, char *err, size_t n) {
    char *p = (char *)obj + f->offset;
    switch (f->type) {
    case SF_CFG_STRING: {
        char *d = strdup(value ? value : "");
        if (!d) return SF_ENOMEM;
        free(*(char **)p);
        *(char **)p = d;
        return 0;
    }
    case SF_CFG_BOOL:
        if (!value || !strcasecmp(value, "true") || !strcmp(value, "1") || !strcasecmp(value, "yes")) *(int *)p = 1;
        else if (!strcasecmp(value, "false") || !strcmp(value, "0") || !strcasecmp(value, "no")) *(int *)p = 0;
        else return sf_errf(SF_EINVAL, err, n, "config key '%s': '%s' is not a boolean", f->key, value);
        return 0;
    case SF_CFG_INT:
    case SF_CFG_DOUBLE: {
        if (!value || !*value) return sf_errf(SF_EINVAL, err, n, "config key '%s' needs a number", f->key);
        char *end;
        errno = 0;
        double v = strtod(value, &end);
        if (*end || errno) return sf_errf(SF_EINVAL, err, n, "config key '%s': '%s' is not a number", f->key, value);
        return set_number(f, obj, v, err, n);
    }
    }
    return SF_EINVAL;
}

int sf_config_defaults(const sf_cfg_field_t *schema, void *obj) {
    char err[256];
    for (const sf_cfg_field_t *f = schema; f->key; f++) {
        const char *d = f->def ? f->def : (f->type == SF_CFG_STRING ? "" : f->type == SF_CFG_BOOL ? "false" : "0");
        int rc = set_text(f, obj, d, err, sizeof err);
        if (rc) return rc;
    }
    return 0;
}

int sf_config_set(const sf_cfg_field_t *schema, void *obj, const char *key, const char *value, char *err, size_t n) {
    const sf_cfg_field_t *f = find(schema, key);
    if (!f) return sf_errf(SF_EINVAL, err, n, "unknown config key '%s'", key);
    return set_text(f, obj, value, err, n);
}

int sf_config_load_text(const sf_cfg_field_t *schema, void *obj, const char *name, const char *buf, size_t len,
                        char *err, size_t n) {
    /* Strict: text after the object, or a key given twice, would otherwise
     * be dropped without a word (json_strict.h). */
    char what[300];
    snprintf(what, sizeof what, "config file '%s'", name);
    cJSON *root;
    int rc = sf_json_parse_strict(buf, len, what, &root, err, n);
    if (rc) return rc;
    if (!cJSON_IsObject(root)) {
        rc = sf_errf(SF_EINVAL, err, n, "config file '%s': top level must be an object", name);
        goto out;
    }
    for (cJSON *it = root->child; it && rc == 0; it = it->next) {
        const sf_cfg_field_t *f = find(schema, it->string);
        if (!f) { rc = sf_errf(SF_EINVAL, err, n, "config file '%s': unknown key '%s'", name, it->string); break; }
        switch (f->type) {
        case SF_CFG_STRING:
            if (!cJSON_IsString(it)) rc = sf_errf(SF_EINVAL, err, n, "config file '%s': key '%s' must be a string", name, f->key);
            else rc = set_text(f, obj, it->valuestring, err, n);
            break;
        case SF_CFG_BOOL:
            if (!cJSON_IsBool(it)) rc = sf_errf(SF_EINVAL, err, n, "config file '%s': key '%s' must be true or false", name, f->key);
            else *(int *)((char *)obj + f->offset) = cJSON_IsTrue(it);
            break;
        default:
            if (!cJSON_IsNumber(it)) rc = sf_errf(SF_EINVAL, err, n, "config file '%s': key '%s' must be a number", name, f->key);
            else rc = set_number(f, obj, it->valuedouble, err, n);
        }
    }
out:
    cJSON_Delete(root);
    return rc;
}

int sf_config_load_file(const sf_cfg_field_t *schema, void *obj, const char *path, char *err, size_t n) {
    char *buf, e2[300];
    size_t len;
    int rc = sf_read_file(path, 16u << 20, &buf, &len, e2, sizeof e2);
    if (rc) return sf_errf(rc, err, n, "config file: %s", e2);
    rc = sf_config_load_text(schema, obj, path, buf, len, err, n);
    free(buf);
    return rc;
}

int sf_config_args(const sf_cfg_field_t *schema, void *obj, int argc, char **argv, int *nrest, int *help,
                   char *err, size_t n) {
    *help = 0;
    *nrest = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--config") == 0 || strncmp(argv[i], "--config=", 9) == 0) {
            const char *path = argv[i][8] == '=' ? argv[i] + 9 : (i + 1 < argc ? argv[i + 1] : NULL);
            if (!path) return sf_errf(SF_EINVAL, err, n, "--config needs a file");
            int rc = sf_config_load_file(schema, obj, path, err, n);
            if (rc) return rc;
        }
    }
    char **rest = calloc((size_t)argc + 1, sizeof *rest);
    if (!rest) return SF_ENOMEM;
    int nr = 0, rc = 0;
    for (int i = 1; i < argc && rc == 0; i++) {
        char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) { *help = 1; continue; }
        if (strncmp(a, "--", 2) != 0 || a[2] == 0) { rest[nr++] = a; continue; }
        char key[128];
        const char *val = NULL;
        const char *eq = strchr(a + 2, '=');
        size_t kl = eq ? (size_t)(eq - a - 2) : strlen(a + 2);
        if (kl >= sizeof key) { rc = sf_errf(SF_EINVAL, err, n, "option '%s' is too long", a); break; }
        memcpy(key, a + 2, kl);
        key[kl] = 0;
        for (char *q = key; *q; q++) if (*q == '-') *q = '_';
        if (strcmp(key, "config") == 0) { if (!eq) i++; continue; }
        const sf_cfg_field_t *f = find(schema, key);
        if (!f) { rc = sf_errf(SF_EINVAL, err, n, "unknown option '--%.*s'", (int)kl, a + 2); break; }
        if (eq) val = eq + 1;
        else if (f->type == SF_CFG_BOOL && (i + 1 >= argc || strncmp(argv[i + 1], "--", 2) == 0)) val = "true";
        else if (i + 1 < argc) val = argv[++i];
        else { rc = sf_errf(SF_EINVAL, err, n, "option '--%s' needs a value", f->key); break; }
        rc = set_text(f, obj, val, err, n);
    }
    for (int i = 0; i < nr; i++) argv[1 + i] = rest[i];
    *nrest = nr;
    free(rest);
    return rc;
}

/* 1 when a file can be made in folder dir, else 0 with errno saying why:
 * one is made and removed at once, since access() says yes to root where
 * nobody can write (/proc, some network file systems). */
static int can_write_in(const char *dir) {
    char probe[PATH_MAX];
    if (snprintf(probe, sizeof probe, "%s/.sf-write-check.XXXXXX", dir) >= (int)sizeof probe) {
        errno = ENAMETOOLONG;
        return 0;
    }
    int fd = mkstemp(probe);
    if (fd < 0) return 0;
    close(fd);
    unlink(probe);
    return 1;
}

int sf_config_check_dir(const char *key, const char *path, char *err, size_t n) {
    if (!path || !*path) return sf_errf(SF_EINVAL, err, n, "config key '%s' is empty: it needs a folder", key);
    struct stat st;
    if (stat(path, &st) == 0) {
        if (!S_ISDIR(st.st_mode)) return sf_errf(SF_EINVAL, err, n, "config key '%s' = '%s': not a folder", key, path);
        if (!can_write_in(path))
            return sf_errf(SF_EINVAL, err, n, "config key '%s' = '%s': not writable (%s)", key, path, strerror(errno));
        return 0;
    }
    if (errno != ENOENT)
        return sf_errf(SF_EINVAL, err, n, "config key '%s' = '%s': %s", key, path, strerror(errno));
    /* Missing: the daemon makes it (mkdir -p) when it first writes, so the
     * nearest ancestor that exists must be a folder it can write in. */
    char *up = strdup(path);
    if (!up) return SF_ENOMEM;
    int rc = 0;
    for (;;) {
        size_t l = strlen(up);
        while (l > 1 && up[l - 1] == '/') up[--l] = 0;
        char *slash = strrchr(up, '/');
        if (!slash) snprintf(up, l + 1, ".");
        else if (slash == up) up[1] = 0;
        else *slash = 0;
        if (stat(up, &st) == 0) {
            if (!S_ISDIR(st.st_mode))
                rc = sf_errf(SF_EINVAL, err, n, "config key '%s' = '%s': cannot be made, '%s' is not a folder", key,
                             path, up);
            else if (!can_write_in(up))
                rc = sf_errf(SF_EINVAL, err, n, "config key '%s' = '%s': cannot be made in '%s' (%s)", key, path, up,
                             strerror(errno));
            break;
        }
        if (errno != ENOENT) {
            rc = sf_errf(SF_EINVAL, err, n, "config key '%s' = '%s': cannot be made: '%s': %s", key, path, up,
                         strerror(errno));
            break;
        }
        if (!strcmp(up, ".") || !strcmp(up, "/")) break; /* both exist; a deleted cwd ends here */
    }
    free(up);
    return rc;
}

void sf_config_usage(const sf_cfg_field_t *schema, FILE *out) {
    static const char *tn[] = {"string", "integer", "number", "boolean"};
    for (const sf_cfg_field_t *f = schema; f->key; f++) {
        char opt[80];
        snprintf(opt, sizeof opt, "--%s", f->key);
        for (char *q = opt + 2; *q; q++) if (*q == '_') *q = '-';
        fprintf(out, "  %-26s %s (%s, default %s)\n", opt, f->doc, tn[f->type],
                f->def && *f->def ? f->def : "none");
    }
}

void sf_config_free(const sf_cfg_field_t *schema, void *obj) {
    for (const sf_cfg_field_t *f = schema; f->key; f++) {
        if (f->type == SF_CFG_STRING) {
            char **p = (char **)((char *)obj + f->offset);
            free(*p);
            *p = NULL;
        }
    }
}
