/* diffusion_test_util.h: what the diffusion backend's two tests
 * (test_ml_diffusion: SD's contract and DDIM; test_ml_diffusion_if: IF's
 * cascade) share — paths under their scratch root, reading and editing a
 * pipeline's sf-diffusion.json, comparing images, and a load that must
 * fail.  Header-only; include it after sf_test_dirs.h, whose root it uses. */
#ifndef SF_DIFFUSION_TEST_UTIL_H
#define SF_DIFFUSION_TEST_UTIL_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "common/runtime/fileio.h"
#include "ml/sf_diffusion.h"

/* root/name; the path stays valid for the next 7 calls. */
static inline const char *sub(const char *name) {
    static char p[8][512];
    static int k;
    k = (k + 1) % 8;
    snprintf(p[k], sizeof p[k], "%s/%s", root, name);
    return p[k];
}

static inline cJSON *json_read(const char *dir) {
    char path[600];
    snprintf(path, sizeof path, "%s/sf-diffusion.json", dir);
    char *text = sf_file_text(path, NULL);
    cJSON *j = text ? cJSON_Parse(text) : NULL;
    free(text);
    return j;
}

static inline int json_write(const char *dir, cJSON *j) {
    char path[600];
    snprintf(path, sizeof path, "%s/sf-diffusion.json", dir);
    char *s = cJSON_Print(j);
    FILE *f = fopen(path, "w");
    int ok = f && s && fputs(s, f) >= 0;
    if (f) fclose(f);
    free(s);
    return ok ? 0 : -1;
}

static inline int max_diff(const uint8_t *a, const uint8_t *b, size_t n) {
    int m = 0;
    for (size_t i = 0; i < n; i++) {
        int d = abs((int)a[i] - (int)b[i]);
        if (d > m) m = d;
    }
    return m;
}

static inline int distinct_values(const uint8_t *a, size_t n) {
    int seen[256] = {0}, k = 0;
    for (size_t i = 0; i < n; i++) k += !seen[a[i]]++;
    return k;
}

/* sf_diffusion_load's code for dir; 999 when a failed load left an object. */
static inline int load_err(const char *dir, char *err, size_t n) {
    sf_diffusion_t *m = NULL;
    int rc = sf_diffusion_load(dir, "cpu", NULL, &m, err, n);
    if (rc == 0) sf_diffusion_free(&m);
    if (rc && m) return 999;
    return rc;
}

/* Sets obj.key of dir's sf-diffusion.json (obj a path of keys split by
 * '.': "upscaler", "upscaler.schedule"; NULL = the top) to v (taken), or
 * deletes it when v is NULL. */
static inline int edit(const char *dir, const char *obj, const char *key, cJSON *v) {
    cJSON *j = json_read(dir);
    if (!j) {
        cJSON_Delete(v);
        return -1;
    }
    cJSON *o = j;
    if (obj) {
        char path[100];
        snprintf(path, sizeof path, "%s", obj);
        char *save = NULL;
        for (char *p = strtok_r(path, ".", &save); p && o; p = strtok_r(NULL, ".", &save)) o = cJSON_GetObjectItem(o, p);
    }
    if (!o) {
        cJSON_Delete(j);
        cJSON_Delete(v);
        return -1;
    }
    if (v) {
        if (cJSON_GetObjectItem(o, key)) cJSON_ReplaceItemInObject(o, key, v);
        else cJSON_AddItemToObject(o, key, v);
    } else {
        cJSON_DeleteItemFromObject(o, key);
    }
    int rc = json_write(dir, j);
    cJSON_Delete(j);
    return rc;
}

#endif
