/* safetensors.c: the safetensors format (see safetensors.h).
 *
 * Data is little-endian on disk and read with memcpy, so an unaligned tensor
 * (the format only aligns the header to 8 bytes) is fine.  The code assumes a
 * little-endian host, which every machine shiftforge targets is.
 */
#include "common/formats/safetensors.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/runtime/error.h"
#include "common/runtime/fileio.h"

_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "safetensors.c assumes little-endian");

/* A header larger than this is refused: HF's own limit is 100 MB. */
#define ST_MAX_HEADER (100u << 20)

static const struct { const char *name; size_t size; } dtypes[] = {
    [SF_ST_F32] = {"F32", 4}, [SF_ST_F16] = {"F16", 2}, [SF_ST_BF16] = {"BF16", 2},
    [SF_ST_F64] = {"F64", 8}, [SF_ST_I64] = {"I64", 8}, [SF_ST_I32] = {"I32", 4},
    [SF_ST_I16] = {"I16", 2}, [SF_ST_I8] = {"I8", 1},   [SF_ST_U8] = {"U8", 1},
    [SF_ST_BOOL] = {"BOOL", 1},
};
#define N_DTYPES ((int)(sizeof dtypes / sizeof dtypes[0]))

size_t sf_st_dtype_size(sf_st_dtype_t dt) {
    return (int)dt >= 0 && (int)dt < N_DTYPES ? dtypes[dt].size : 0;
}

const char *sf_st_dtype_name(sf_st_dtype_t dt) {
    return (int)dt >= 0 && (int)dt < N_DTYPES ? dtypes[dt].name : "?";
}

struct sf_st_s {
    uint8_t *owned;          /* the image when copied or loaded from a file */
    cJSON *header;
    sf_st_tensor_t *t;
    int n;
    sf_st_t **parts;         /* a sharded checkpoint: its shards, which own
                                the images and names t[] points into */
    int n_parts;
};

static void tensors_free(sf_st_t *st) {
    free(st->t);
    st->t = NULL;
    st->n = 0;
}

void sf_st_free(sf_st_t **stp) {
    if (!stp || !*stp) return;
    sf_st_t *st = *stp;
    tensors_free(st);
    cJSON_Delete(st->header);
    free(st->owned);
    for (int i = 0; i < st->n_parts; i++) sf_st_free(&st->parts[i]);
    free(st->parts);
    free(st);
    *stp = NULL;
}

/* Parses one header entry into t, checking it against the data section of
 * data_len bytes. */
static int parse_entry(const cJSON *e, const uint8_t *data, size_t data_len, sf_st_tensor_t *t,
                       char *err, size_t errlen) {
    const char *name = e->string;
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(e, "dtype");
    const cJSON *shape = cJSON_GetObjectItemCaseSensitive(e, "shape");
    const cJSON *offs = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
    if (!cJSON_IsObject(e) || !cJSON_IsString(dt) || !cJSON_IsArray(shape) ||
        !cJSON_IsArray(offs) || cJSON_GetArraySize(offs) != 2)
        return sf_errf(SF_EFORMAT, err, errlen, "tensor '%s': malformed header entry", name);
    int k;
    for (k = 0; k < N_DTYPES; k++)
        if (strcmp(dt->valuestring, dtypes[k].name) == 0) break;
    if (k == N_DTYPES)
        return sf_errf(SF_EFORMAT, err, errlen, "tensor '%s': unknown dtype '%s'", name,
                       dt->valuestring);
    t->name = name;
    t->dtype = (sf_st_dtype_t)k;
    t->ndim = cJSON_GetArraySize(shape);
    if (t->ndim > SF_ST_MAX_DIMS)
        return sf_errf(SF_EFORMAT, err, errlen, "tensor '%s': %d dims", name, t->ndim);
    /* Byte counts are checked in double first so that a lying shape cannot
     * overflow the int64 product. */
    double dnumel = 1;
    int64_t numel = 1;
    for (int i = 0; i < t->ndim; i++) {
        const cJSON *d = cJSON_GetArrayItem(shape, i);
        if (!cJSON_IsNumber(d) || d->valuedouble < 0 || d->valuedouble > 9.0e15 ||
            d->valuedouble != (double)(int64_t)d->valuedouble)
            return sf_errf(SF_EFORMAT, err, errlen, "tensor '%s': bad shape", name);
        t->shape[i] = (int64_t)d->valuedouble;
        dnumel *= d->valuedouble;
        if (dnumel * (double)dtypes[k].size > (double)data_len + 1)
            return sf_errf(SF_EFORMAT, err, errlen,
                           "tensor '%s': shape needs more bytes than the file has", name);
        numel *= t->shape[i];
    }
    t->numel = numel;
    const cJSON *b = cJSON_GetArrayItem(offs, 0), *en = cJSON_GetArrayItem(offs, 1);
    if (!cJSON_IsNumber(b) || !cJSON_IsNumber(en) || b->valuedouble < 0 ||
        en->valuedouble < b->valuedouble || en->valuedouble > (double)data_len)
        return sf_errf(SF_EFORMAT, err, errlen,
                       "tensor '%s': data_offsets outside the %zu-byte data section", name,
                       data_len);
    size_t begin = (size_t)b->valuedouble, end = (size_t)en->valuedouble;
    t->nbytes = end - begin;
    if ((uint64_t)numel * dtypes[k].size != t->nbytes)
        return sf_errf(SF_EFORMAT, err, errlen,
                       "tensor '%s': %zu bytes for %lld elements of %s", name, t->nbytes,
                       (long long)numel, dtypes[k].name);
    t->data = data + begin;
    return 0;
}

int sf_st_parse(const void *buf, size_t len, int copy, sf_st_t **out, char *err, size_t errlen) {
    *out = NULL;
    if (!buf && len) return SF_EINVAL;
    if (len < 8) return sf_errf(SF_EFORMAT, err, errlen, "file of %zu bytes has no header", len);
    uint64_t hlen;
    memcpy(&hlen, buf, 8);
    if (hlen > ST_MAX_HEADER || hlen > len - 8)
        return sf_errf(SF_EFORMAT, err, errlen,
                       "header length %llu does not fit the %zu-byte file",
                       (unsigned long long)hlen, len);
    sf_st_t *st = calloc(1, sizeof *st);
    if (!st) return SF_ENOMEM;
    const uint8_t *img = buf;
    if (copy) {
        st->owned = malloc(len ? len : 1);
        if (!st->owned) { free(st); return SF_ENOMEM; }
        memcpy(st->owned, buf, len);
        img = st->owned;
    }
    int rc = 0;
    st->header = cJSON_ParseWithLength((const char *)img + 8, (size_t)hlen);
    if (!cJSON_IsObject(st->header)) {
        rc = sf_errf(SF_EFORMAT, err, errlen, "header is not a JSON object");
        goto fail;
    }
    int n = cJSON_GetArraySize(st->header);
    st->t = calloc((size_t)n + 1, sizeof *st->t);
    if (!st->t) { rc = SF_ENOMEM; goto fail; }
    const uint8_t *data = img + 8 + hlen;
    size_t data_len = len - 8 - (size_t)hlen;
    for (cJSON *e = st->header->child; e; e = e->next) {
        if (strcmp(e->string, "__metadata__") == 0) {
            if (!cJSON_IsObject(e)) {
                rc = sf_errf(SF_EFORMAT, err, errlen, "__metadata__ is not an object");
                goto fail;
            }
            for (cJSON *m = e->child; m; m = m->next)
                if (!cJSON_IsString(m)) {
                    rc = sf_errf(SF_EFORMAT, err, errlen, "__metadata__.%s is not a string",
                                 m->string);
                    goto fail;
                }
            continue;
        }
        if ((rc = parse_entry(e, data, data_len, &st->t[st->n], err, errlen)) != 0) goto fail;
        st->n++;
    }
    *out = st;
    return 0;
fail:
    sf_st_free(&st);
    return rc;
}

static int load_sharded(const char *path, sf_st_t **out, char *err, size_t errlen);

static int ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

int sf_st_load(const char *path, sf_st_t **out, char *err, size_t errlen) {
    *out = NULL;
    if (ends_with(path, ".index.json")) return load_sharded(path, out, err, errlen);
    char *buf;
    size_t got;
    int rc = sf_read_file(path, SF_READ_ANY_SIZE, &buf, &got, err, errlen);
    if (rc) return rc;
    char sub[256] = "";
    rc = sf_st_parse((const uint8_t *)buf, got, 0, out, sub, sizeof sub);
    if (rc) {
        free(buf);
        return sf_errf(rc, err, errlen, "%s: %s", path, sub);
    }
    (*out)->owned = (uint8_t *)buf;   /* the parsed view now owns the image */
    return 0;
}

/* A shard's name in an index: a plain file name beside the index. */
static int shard_name_ok(const char *s) {
    size_t l = strlen(s);
    if (l == 0 || l > 255 || s[0] == '.' || !ends_with(s, ".safetensors")) return 0;
    for (const char *c = s; *c; c++)
        if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') || *c == '.' ||
              *c == '_' || *c == '-'))
            return 0;
    return 1;
}

/* A sharded checkpoint's index: its JSON, its weight map, and its shards'
 * file names (borrowed from the JSON) and paths, in the order the map first
 * names them. */
typedef struct {
    cJSON *json;
    const cJSON *wm;
    const char **names;
    char **paths;
    int n;
} st_index_t;

static void index_close(st_index_t *ix) {
    for (int k = 0; k < ix->n; k++) free(ix->paths[k]);
    free(ix->paths);
    free(ix->names);
    cJSON_Delete(ix->json);
    memset(ix, 0, sizeof *ix);
}

static int index_open(const char *path, st_index_t *ix, char *err, size_t errlen) {
    memset(ix, 0, sizeof *ix);
    char *text;
    size_t len;
    int rc = sf_read_file(path, ST_MAX_HEADER, &text, &len, err, errlen);
    if (rc) return rc == SF_ERANGE ? SF_EFORMAT : rc;   /* no index is that large */
    ix->json = cJSON_ParseWithLength(text, len);
    free(text);
    ix->wm = cJSON_GetObjectItemCaseSensitive(ix->json, "weight_map");
    if (!cJSON_IsObject(ix->wm) || !ix->wm->child) {
        index_close(ix);
        return sf_errf(SF_EFORMAT, err, errlen, "%s: not a sharded-checkpoint index (no \"weight_map\" object)", path);
    }
    const int entries = cJSON_GetArraySize(ix->wm);
    ix->names = calloc((size_t)entries, sizeof *ix->names);
    ix->paths = calloc((size_t)entries, sizeof *ix->paths);
    if (!ix->names || !ix->paths) { index_close(ix); return SF_ENOMEM; }
    const char *slash = strrchr(path, '/');
    const int dlen = slash ? (int)(slash - path + 1) : 0;
    for (const cJSON *e = ix->wm->child; e && !rc; e = e->next) {
        if (!cJSON_IsString(e) || !shard_name_ok(e->valuestring)) {
            rc = sf_errf(SF_EFORMAT, err, errlen, "%s: tensor '%.200s' is mapped to \"%.200s\", not a .safetensors "
                         "file name beside the index", path, e->string, cJSON_IsString(e) ? e->valuestring : "?");
            break;
        }
        int k = 0;
        while (k < ix->n && strcmp(ix->names[k], e->valuestring)) k++;
        if (k < ix->n) continue;
        if (!(ix->paths[k] = malloc((size_t)dlen + strlen(e->valuestring) + 1))) { rc = SF_ENOMEM; break; }
        sprintf(ix->paths[k], "%.*s%s", dlen, path, e->valuestring);
        ix->names[ix->n++] = e->valuestring;
    }
    if (rc) index_close(ix);
    return rc;
}

/* The shard the index puts a tensor of the weight map in. */
static int index_shard_of(const st_index_t *ix, const cJSON *e) {
    int k = 0;
    while (strcmp(ix->names[k], e->valuestring)) k++;
    return k;
}

int sf_st_files(const char *path, char ***files, int *n, char *err, size_t errlen) {
    *files = NULL;
    *n = 0;
    st_index_t ix = {0};
    int rc = ends_with(path, ".index.json") ? index_open(path, &ix, err, errlen) : 0;
    if (rc) return rc;
    char **v = calloc((size_t)ix.n + 1, sizeof *v);
    if (v && (v[0] = strdup(path))) {
        for (int k = 0; k < ix.n; k++) v[k + 1] = ix.paths[k], ix.paths[k] = NULL;
        *files = v;
        *n = ix.n + 1;
    } else {
        free(v);
        rc = SF_ENOMEM;
    }
    index_close(&ix);
    return rc;
}

void sf_st_files_free(char **files, int n) {
    for (int i = 0; i < n; i++) free(files[i]);
    free(files);
}

int sf_st_folder_weights(const char *dir, char *out, size_t n) {
    struct stat sb;
    snprintf(out, n, "%s/model.safetensors", dir);
    if (stat(out, &sb) == 0 && S_ISREG(sb.st_mode)) return 0;
    snprintf(out, n, "%s/model.safetensors.index.json", dir);
    if (stat(out, &sb) == 0 && S_ISREG(sb.st_mode)) return 0;
    snprintf(out, n, "%s/model.safetensors", dir);
    return SF_ENOTFOUND;
}

static int load_sharded(const char *path, sf_st_t **out, char *err, size_t errlen) {
    st_index_t ix;
    int rc = index_open(path, &ix, err, errlen);
    if (rc) return rc;
    sf_st_t *st = calloc(1, sizeof *st);
    if (!st || !(st->parts = calloc((size_t)ix.n, sizeof *st->parts))) rc = SF_ENOMEM;
    for (int k = 0; !rc && k < ix.n; k++)
        if (!(rc = sf_st_load(ix.paths[k], &st->parts[k], err, errlen))) st->n_parts++;
    /* Every tensor of every shard, once; and every one the index names, where it says. */
    int total = 0;
    for (int k = 0; !rc && k < st->n_parts; k++) total += st->parts[k]->n;
    if (!rc && !(st->t = calloc((size_t)total + 1, sizeof *st->t))) rc = SF_ENOMEM;
    for (int k = 0; !rc && k < st->n_parts; k++)
        for (int i = 0; !rc && i < st->parts[k]->n; i++) {
            const sf_st_tensor_t *t = &st->parts[k]->t[i];
            if (sf_st_find(st, t->name))
                rc = sf_errf(SF_EFORMAT, err, errlen, "%s: tensor '%s' is in two shards (the second: %s)", path,
                             t->name, ix.names[k]);
            else st->t[st->n++] = *t;
        }
    for (const cJSON *e = ix.wm->child; e && !rc; e = e->next) {
        const int k = index_shard_of(&ix, e);
        if (!sf_st_find(st->parts[k], e->string))
            rc = sf_errf(SF_EFORMAT, err, errlen, "%s: the index puts tensor '%.200s' in %s, which lacks it", path,
                         e->string, ix.names[k]);
    }
    index_close(&ix);
    if (rc) sf_st_free(&st);
    *out = st;
    return rc;
}

int sf_st_count(const sf_st_t *st) { return st ? st->n : 0; }

const sf_st_tensor_t *sf_st_get(const sf_st_t *st, int i) {
    return st && i >= 0 && i < st->n ? &st->t[i] : NULL;
}

const sf_st_tensor_t *sf_st_find(const sf_st_t *st, const char *name) {
    if (!st || !name) return NULL;
    for (int i = 0; i < st->n; i++)
        if (strcmp(st->t[i].name, name) == 0) return &st->t[i];
    return NULL;
}

const char *sf_st_meta(const sf_st_t *st, const char *key) {
    if (!st || !key) return NULL;
    if (st->n_parts) return sf_st_meta(st->parts[0], key);   /* a sharded checkpoint: the first shard's */
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(st->header, "__metadata__");
    const cJSON *v = m ? cJSON_GetObjectItemCaseSensitive(m, key) : NULL;
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* ---- half precision ---- */

float sf_st_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1F, man = h & 0x3FF, bits;
    if (exp == 0) {
        if (man == 0) {
            bits = sign;
        } else {   /* subnormal: renormalise */
            int e = -1;
            do { e++; man <<= 1; } while (!(man & 0x400));
            bits = sign | ((uint32_t)(127 - 15 - e) << 23) | ((man & 0x3FF) << 13);
        }
    } else if (exp == 31) {
        bits = sign | 0x7F800000u | (man << 13);
    } else {
        bits = sign | ((exp + 127 - 15) << 23) | (man << 13);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

uint16_t sf_st_f32_to_f16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000);
    uint32_t exp = (x >> 23) & 0xFF, man = x & 0x7FFFFF;
    if (exp == 0xFF) return sign | 0x7C00 | (man ? 0x200 : 0);
    int e = (int)exp - 127 + 15;
    if (e >= 31) return sign | 0x7C00;
    if (e <= 0) {
        if (e < -10) return sign;
        man |= 0x800000;
        int shift = 14 - e;
        uint32_t half = man >> shift, rem = man & ((1u << shift) - 1), mid = 1u << (shift - 1);
        if (rem > mid || (rem == mid && (half & 1))) half++;
        return sign | (uint16_t)half;
    }
    uint32_t half = ((uint32_t)e << 10) | (man >> 13), rem = man & 0x1FFF;
    if (rem > 0x1000 || (rem == 0x1000 && (half & 1))) half++;   /* may carry into exp: fine */
    return sign | (uint16_t)half;
}

float sf_st_bf16_to_f32(uint16_t h) {
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

uint16_t sf_st_f32_to_bf16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    if ((x & 0x7FFFFFFF) > 0x7F800000) return (uint16_t)((x >> 16) | 0x40);   /* NaN stays NaN */
    x += 0x7FFF + ((x >> 16) & 1);
    return (uint16_t)(x >> 16);
}

int sf_st_to_f32(const sf_st_tensor_t *t, float *out, size_t n) {
    if (!t || (size_t)t->numel != n) return SF_EINVAL;
    const uint8_t *p = t->data;
    switch (t->dtype) {
    case SF_ST_F32:
        memcpy(out, p, n * 4);
        return 0;
    case SF_ST_F16:
    case SF_ST_BF16:
        for (size_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, p + 2 * i, 2);
            out[i] = t->dtype == SF_ST_F16 ? sf_st_f16_to_f32(h) : sf_st_bf16_to_f32(h);
        }
        return 0;
    case SF_ST_F64:
        for (size_t i = 0; i < n; i++) {
            double d;
            memcpy(&d, p + 8 * i, 8);
            out[i] = (float)d;
        }
        return 0;
    default:
        return SF_EUNSUPPORTED;
    }
}

/* ---- writing ---- */

typedef struct {
    char *name;
    sf_st_dtype_t dtype;
    int ndim;
    int64_t shape[SF_ST_MAX_DIMS];
    const void *data;
    size_t nbytes;
} wentry_t;

struct sf_st_writer_s {
    wentry_t *e;
    int n, cap;
    cJSON *meta;
};

int sf_st_writer_new(sf_st_writer_t **out) {
    *out = calloc(1, sizeof **out);
    return *out ? 0 : SF_ENOMEM;
}

void sf_st_writer_free(sf_st_writer_t **wp) {
    if (!wp || !*wp) return;
    sf_st_writer_t *w = *wp;
    for (int i = 0; i < w->n; i++) free(w->e[i].name);
    free(w->e);
    cJSON_Delete(w->meta);
    free(w);
    *wp = NULL;
}

int sf_st_writer_add(sf_st_writer_t *w, const char *name, sf_st_dtype_t dtype, int ndim,
                     const int64_t *shape, const void *data, size_t nbytes) {
    if (!w || !name || !*name || strcmp(name, "__metadata__") == 0 || ndim < 0 ||
        ndim > SF_ST_MAX_DIMS || (int)dtype < 0 || (int)dtype >= N_DTYPES || (!data && nbytes))
        return SF_EINVAL;
    uint64_t numel = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0) return SF_EINVAL;
        numel *= (uint64_t)shape[i];
    }
    if (numel * dtypes[dtype].size != nbytes) return SF_EINVAL;
    for (int i = 0; i < w->n; i++)
        if (strcmp(w->e[i].name, name) == 0) return SF_EEXIST;
    if (w->n == w->cap) {
        int cap = w->cap ? w->cap * 2 : 32;
        wentry_t *ne = realloc(w->e, (size_t)cap * sizeof *ne);
        if (!ne) return SF_ENOMEM;
        w->e = ne;
        w->cap = cap;
    }
    wentry_t *e = &w->e[w->n];
    memset(e, 0, sizeof *e);
    if (!(e->name = strdup(name))) return SF_ENOMEM;
    e->dtype = dtype;
    e->ndim = ndim;
    for (int i = 0; i < ndim; i++) e->shape[i] = shape[i];
    e->data = data;
    e->nbytes = nbytes;
    w->n++;
    return 0;
}

int sf_st_writer_meta(sf_st_writer_t *w, const char *key, const char *value) {
    if (!w || !key || !value) return SF_EINVAL;
    if (!w->meta && !(w->meta = cJSON_CreateObject())) return SF_ENOMEM;
    cJSON_DeleteItemFromObjectCaseSensitive(w->meta, key);
    return cJSON_AddStringToObject(w->meta, key, value) ? 0 : SF_ENOMEM;
}

/* Builds the JSON header, padded with spaces to a multiple of 8 bytes so
 * that the data section starts aligned. */
static char *build_header(const sf_st_writer_t *w, size_t *hlen, size_t *data_len) {
    cJSON *h = cJSON_CreateObject();
    if (!h) return NULL;
    if (w->meta) cJSON_AddItemToObject(h, "__metadata__", cJSON_Duplicate(w->meta, 1));
    size_t off = 0;
    for (int i = 0; i < w->n; i++) {
        const wentry_t *e = &w->e[i];
        cJSON *o = cJSON_AddObjectToObject(h, e->name);
        cJSON *sh = o ? cJSON_AddArrayToObject(o, "shape") : NULL;
        cJSON *of = o ? cJSON_AddArrayToObject(o, "data_offsets") : NULL;
        if (!of || !cJSON_AddStringToObject(o, "dtype", dtypes[e->dtype].name)) {
            cJSON_Delete(h);
            return NULL;
        }
        for (int k = 0; k < e->ndim; k++)
            cJSON_AddItemToArray(sh, cJSON_CreateNumber((double)e->shape[k]));
        cJSON_AddItemToArray(of, cJSON_CreateNumber((double)off));
        cJSON_AddItemToArray(of, cJSON_CreateNumber((double)(off + e->nbytes)));
        off += e->nbytes;
    }
    char *s = cJSON_PrintUnformatted(h);
    cJSON_Delete(h);
    if (!s) return NULL;
    size_t l = strlen(s), pl = (l + 7) & ~(size_t)7;
    char *p = realloc(s, pl + 1);
    if (!p) { free(s); return NULL; }
    memset(p + l, ' ', pl - l);
    p[pl] = 0;
    *hlen = pl;
    *data_len = off;
    return p;
}

int sf_st_writer_bytes(sf_st_writer_t *w, uint8_t **buf, size_t *len) {
    *buf = NULL;
    size_t hlen, dlen;
    char *h = build_header(w, &hlen, &dlen);
    if (!h) return SF_ENOMEM;
    uint8_t *out = malloc(8 + hlen + dlen);
    if (!out) { free(h); return SF_ENOMEM; }
    uint64_t hl = hlen;
    memcpy(out, &hl, 8);
    memcpy(out + 8, h, hlen);
    free(h);
    size_t off = 8 + hlen;
    for (int i = 0; i < w->n; i++) {
        if (w->e[i].nbytes) memcpy(out + off, w->e[i].data, w->e[i].nbytes);
        off += w->e[i].nbytes;
    }
    *buf = out;
    *len = off;
    return 0;
}

typedef struct { const sf_st_writer_t *w; const char *h; size_t hlen; } save_t;

static int write_st(FILE *f, void *arg) {
    const save_t *s = arg;
    uint64_t hl = s->hlen;
    int ok = fwrite(&hl, 8, 1, f) == 1 && fwrite(s->h, 1, s->hlen, f) == s->hlen;
    for (int i = 0; ok && i < s->w->n; i++)
        ok = !s->w->e[i].nbytes || fwrite(s->w->e[i].data, 1, s->w->e[i].nbytes, f) == s->w->e[i].nbytes;
    return ok ? 0 : SF_EIO;
}

int sf_st_writer_save(sf_st_writer_t *w, const char *path) {
    size_t hlen, dlen;
    char *h = build_header(w, &hlen, &dlen);
    if (!h) return SF_ENOMEM;
    save_t s = {w, h, hlen};
    int rc = sf_write_atomic(path, write_st, &s);
    free(h);
    return rc;
}
