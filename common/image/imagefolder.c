/* imagefolder.c: listing root/<wnid>/ folders once, and reading their images
 * by class and index.
 *
 * A wnid comes from an operator's request, so it is checked as a path
 * component before it touches the file system, and the class folder is
 * resolved (realpath) and must lie under the resolved root: neither "..", a
 * slash nor a symlinked class folder can lead a request outside root.
 */
#include "common/image/imagefolder.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/runtime/error.h"
#include "common/image/image.h"

typedef struct {
    char *wnid;
    char **files;   /* names only, sorted */
    int n;
} klass_t;

struct sf_imagefolder {
    char *root;     /* as given, without trailing slashes */
    klass_t *v;
    int n;
};

/* Why s is not a valid wnid, or NULL if it is. */
static const char *wnid_problem(const char *s) {
    if (!s) return "NULL";
    size_t n = strnlen(s, SF_IMAGEFOLDER_MAX_WNID + 1);
    if (n == 0) return "empty";
    if (n > SF_IMAGEFOLDER_MAX_WNID) return "longer than 64 bytes";
    if (s[0] == '.') return "starts with '.'";
    if (strstr(s, "..")) return "contains \"..\"";
    for (const char *p = s; *p; p++) {
        if (*p == '/') return "contains '/'";
        if ((unsigned char)*p < 0x20 || *p == 0x7f) return "contains a control character";
    }
    return NULL;
}

static int has_image_ext(const char *name) {
    const char *dot = strrchr(name, '.');
    if (!dot || dot == name) return 0;
    return !strcasecmp(dot, ".jpeg") || !strcasecmp(dot, ".jpg") || !strcasecmp(dot, ".png");
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void free_names(char **v, int n) {
    for (int i = 0; i < n; i++) free(v[i]);
    free(v);
}

/* Appends a copy of s to *v (*n used, *cap allocated). */
static int push_name(char ***v, int *n, int *cap, const char *s) {
    if (*n == *cap) {
        int nc = *cap ? *cap * 2 : 64;
        char **nv = realloc(*v, sizeof(char *) * (size_t)nc);
        if (!nv) return SF_ENOMEM;
        *v = nv;
        *cap = nc;
    }
    char *c = strdup(s);
    if (!c) return SF_ENOMEM;
    (*v)[(*n)++] = c;
    return 0;
}

/* Lists root/wnid into k.  rroot is root resolved. */
static int list_class(const char *root, const char *rroot, const char *wnid, klass_t *k, char *err,
                      size_t errlen) {
    char path[PATH_MAX], real[PATH_MAX];
    if ((size_t)snprintf(path, sizeof path, "%s/%s", root, wnid) >= sizeof path)
        return sf_errf(SF_EINVAL, err, errlen, "class folder path %s/%s is too long", root, wnid);
    if (!realpath(path, real)) {
        int e = errno;
        if (e == ENOENT) return sf_errf(SF_ENOTFOUND, err, errlen, "%s: no such class folder", path);
        return sf_errf(SF_EIO, err, errlen, "%s: %s", path, strerror(e));
    }
    size_t rl = strlen(rroot);
    int inside = strcmp(rroot, "/") == 0 ? real[0] == '/' && real[1] != 0
                                         : strncmp(real, rroot, rl) == 0 && real[rl] == '/';
    if (!inside)
        return sf_errf(SF_EINVAL, err, errlen, "class folder %s resolves to %s, outside %s", path,
                       real, rroot);
    DIR *d = opendir(real);
    if (!d) {
        int e = errno;
        if (e == ENOTDIR) return sf_errf(SF_ENOTFOUND, err, errlen, "%s: not a folder", path);
        return sf_errf(SF_EIO, err, errlen, "%s: %s", path, strerror(e));
    }
    int dfd = dirfd(d), n = 0, cap = 0, rc = 0;
    char **files = NULL;
    struct dirent *de;
    /* readdir signals an error only through errno. */
    while ((errno = 0, de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.' || !has_image_ext(de->d_name)) continue;
        struct stat st;
        /* Follows symlinks.  A name that cannot be stat'ed (a dangling
         * link, no permission) is listed: reading it fails and is counted,
         * where skipping it would hide the problem.  Anything else that is
         * not a regular file (a folder, a FIFO) is passed over. */
        if (fstatat(dfd, de->d_name, &st, 0) == 0 && !S_ISREG(st.st_mode)) continue;
        if (n >= SF_IMAGEFOLDER_MAX_FILES) {
            rc = sf_errf(SF_ERANGE, err, errlen, "%s: more than %d image files", path,
                         SF_IMAGEFOLDER_MAX_FILES);
            break;
        }
        if ((rc = push_name(&files, &n, &cap, de->d_name)) != 0) {
            sf_errf(rc, err, errlen, "%s: out of memory listing it", path);
            break;
        }
    }
    if (rc == 0 && errno != 0) rc = sf_errf(SF_EIO, err, errlen, "%s: %s", path, strerror(errno));
    closedir(d);
    if (rc == 0 && !(k->wnid = strdup(wnid))) rc = sf_errf(SF_ENOMEM, err, errlen, "out of memory");
    if (rc) {
        free_names(files, n);
        return rc;
    }
    if (n > 1) qsort(files, (size_t)n, sizeof *files, cmp_str);
    k->files = files;
    k->n = n;
    return 0;
}

/* Every subfolder of root with a valid wnid name, sorted. */
static int list_subfolders(const char *root, char ***out, int *nout, char *err, size_t errlen) {
    DIR *d = opendir(root);
    if (!d) return sf_errf(SF_EIO, err, errlen, "%s: %s", root, strerror(errno));
    int dfd = dirfd(d), n = 0, cap = 0, rc = 0;
    char **v = NULL;
    struct dirent *de;
    /* readdir signals an error only through errno. */
    while ((errno = 0, de = readdir(d)) != NULL) {
        struct stat st;
        if (wnid_problem(de->d_name)) continue;
        if (fstatat(dfd, de->d_name, &st, 0) != 0 || !S_ISDIR(st.st_mode)) continue;
        if ((rc = push_name(&v, &n, &cap, de->d_name)) != 0) {
            sf_errf(rc, err, errlen, "out of memory listing %s", root);
            break;
        }
    }
    if (rc == 0 && errno != 0) rc = sf_errf(SF_EIO, err, errlen, "%s: %s", root, strerror(errno));
    closedir(d);
    if (rc) {
        free_names(v, n);
        return rc;
    }
    if (n > 1) qsort(v, (size_t)n, sizeof *v, cmp_str);
    *out = v;
    *nout = n;
    return 0;
}

void sf_imagefolder_free(sf_imagefolder_t **pf) {
    if (!pf || !*pf) return;
    sf_imagefolder_t *f = *pf;
    for (int i = 0; i < f->n; i++) {
        free(f->v[i].wnid);
        free_names(f->v[i].files, f->v[i].n);
    }
    free(f->v);
    free(f->root);
    free(f);
    *pf = NULL;
}

int sf_imagefolder_open(const char *root, const char *const *wnids, int n_wnids,
                        sf_imagefolder_t **out, char *err, size_t errlen) {
    if (!root || !*root || !out || n_wnids < 0)
        return sf_errf(SF_EINVAL, err, errlen, "sf_imagefolder_open: bad arguments");
    if (wnids) {
        for (int i = 0; i < n_wnids; i++) {
            const char *why = wnid_problem(wnids[i]);
            if (why)
                return sf_errf(SF_EINVAL, err, errlen, "invalid wnid '%.80s': %s",
                               wnids[i] ? wnids[i] : "(null)", why);
            for (int j = 0; j < i; j++)
                if (strcmp(wnids[i], wnids[j]) == 0)
                    return sf_errf(SF_EINVAL, err, errlen, "wnid '%s' is asked for twice", wnids[i]);
        }
    }
    struct stat st;
    if (stat(root, &st) != 0) {
        int e = errno;
        return sf_errf(e == ENOENT ? SF_ENOTFOUND : SF_EIO, err, errlen, "%s: %s", root, strerror(e));
    }
    if (!S_ISDIR(st.st_mode)) return sf_errf(SF_ENOTFOUND, err, errlen, "%s: not a folder", root);
    char rroot[PATH_MAX];
    if (!realpath(root, rroot)) return sf_errf(SF_EIO, err, errlen, "%s: %s", root, strerror(errno));

    sf_imagefolder_t *f = calloc(1, sizeof *f);
    char **all = NULL;
    int n_all = 0, rc = 0;
    if (!f || !(f->root = strdup(root))) {
        rc = sf_errf(SF_ENOMEM, err, errlen, "out of memory");
        goto fail;
    }
    for (size_t l = strlen(f->root); l > 1 && f->root[l - 1] == '/'; l--) f->root[l - 1] = 0;
    if (!wnids) {
        if ((rc = list_subfolders(f->root, &all, &n_all, err, errlen)) != 0) goto fail;
        wnids = (const char *const *)all;
        n_wnids = n_all;
    }
    if (n_wnids > 0 && !(f->v = calloc((size_t)n_wnids, sizeof *f->v))) {
        rc = sf_errf(SF_ENOMEM, err, errlen, "out of memory");
        goto fail;
    }
    for (int i = 0; i < n_wnids; i++) {
        if ((rc = list_class(f->root, rroot, wnids[i], &f->v[i], err, errlen)) != 0) goto fail;
        f->n++;
    }
    free_names(all, n_all);
    *out = f;
    return 0;
fail:
    free_names(all, n_all);
    sf_imagefolder_free(&f);
    return rc;
}

int sf_imagefolder_nclasses(const sf_imagefolder_t *f) {
    return f ? f->n : 0;
}

const char *sf_imagefolder_class(const sf_imagefolder_t *f, int i) {
    return f && i >= 0 && i < f->n ? f->v[i].wnid : NULL;
}

static const klass_t *find(const sf_imagefolder_t *f, const char *wnid) {
    if (!f || !wnid) return NULL;
    for (int i = 0; i < f->n; i++)
        if (strcmp(f->v[i].wnid, wnid) == 0) return &f->v[i];
    return NULL;
}

int sf_imagefolder_count(const sf_imagefolder_t *f, const char *wnid) {
    const klass_t *k = find(f, wnid);
    return k ? k->n : SF_ENOTFOUND;
}

int sf_imagefolder_path(const sf_imagefolder_t *f, const char *wnid, int index, char *buf,
                        size_t n) {
    const klass_t *k = find(f, wnid);
    if (!k) return SF_ENOTFOUND;
    if (index < 0 || index >= k->n || !buf) return SF_ERANGE;
    if ((size_t)snprintf(buf, n, "%s/%s/%s", f->root, k->wnid, k->files[index]) >= n)
        return SF_ERANGE;
    return 0;
}

int sf_imagefolder_read(const sf_imagefolder_t *f, const char *wnid, int index, uint8_t **rgb,
                        int *w, int *h, char *err, size_t errlen) {
    const klass_t *k = find(f, wnid);
    if (!k)
        return sf_errf(SF_ENOTFOUND, err, errlen, "no class '%.80s' in this folder",
                       wnid ? wnid : "(null)");
    if (index < 0 || index >= k->n)
        return sf_errf(SF_ERANGE, err, errlen, "class %s has %d files, no index %d", k->wnid, k->n,
                       index);
    size_t len = strlen(f->root) + strlen(k->wnid) + strlen(k->files[index]) + 3;
    char *path = malloc(len);
    if (!path) return sf_errf(SF_ENOMEM, err, errlen, "out of memory");
    snprintf(path, len, "%s/%s/%s", f->root, k->wnid, k->files[index]);
    int rc = sf_image_read(path, rgb, w, h, err, errlen);
    free(path);
    return rc;
}

void sf_imagefolder_batch_free(sf_imagefolder_batch_t *b) {
    if (!b) return;
    for (int i = 0; i < b->n_images; i++) free(b->images[i].rgb);
    free(b->images);
    memset(b, 0, sizeof *b);
}

int sf_imagefolder_read_batch(const sf_imagefolder_t *f, const char *wnid, int start,
                              int max_files, int max_images, sf_imagefolder_batch_t *out,
                              char *err, size_t errlen) {
    if (!out) return sf_errf(SF_EINVAL, err, errlen, "sf_imagefolder_read_batch: NULL batch");
    memset(out, 0, sizeof *out);
    const klass_t *k = find(f, wnid);
    if (!k)
        return sf_errf(SF_ENOTFOUND, err, errlen, "no class '%.80s' in this folder",
                       wnid ? wnid : "(null)");
    if (start < 0) return sf_errf(SF_EINVAL, err, errlen, "negative start index %d", start);
    int cap = 0, i;
    for (i = start; i < k->n; i++) {
        if (max_files >= 0 && i - start >= max_files) break;
        if (max_images >= 0 && out->n_images >= max_images) break;
        sf_imagefolder_image_t im = {.index = i};
        char msg[sizeof out->first_err];
        int rc = sf_imagefolder_read(f, wnid, i, &im.rgb, &im.w, &im.h, msg, sizeof msg);
        if (rc == SF_ENOMEM) {
            /* Our memory, not the file's fault: stop rather than count it. */
            sf_imagefolder_batch_free(out);
            return sf_errf(rc, err, errlen, "%s", msg);
        }
        if (rc) {
            if (out->n_skipped++ == 0) snprintf(out->first_err, sizeof out->first_err, "%s", msg);
            continue;
        }
        if (out->n_images == cap) {
            int nc = cap ? cap * 2 : 16;
            sf_imagefolder_image_t *nv = realloc(out->images, sizeof *nv * (size_t)nc);
            if (!nv) {
                free(im.rgb);
                sf_imagefolder_batch_free(out);
                return sf_errf(SF_ENOMEM, err, errlen, "out of memory");
            }
            out->images = nv;
            cap = nc;
        }
        out->images[out->n_images++] = im;
    }
    out->next = i;
    return 0;
}
