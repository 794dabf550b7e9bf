/* export.c: `sfctl export RUN --to DIR [--data DIR]` — copies a run's
 * dataset (kept images in ImageFolder layout and manifest.jsonl) out of the
 * cluster's shared data folder, checking on the way that every kept entry
 * of the manifest has its image and every image its entry.
 *
 * The data folder is --data, else $SF_DATA (set by `sfctl up`'s env file),
 * else ./sf-data, as the workers' data_dir.
 */
#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/sfctl.h"
#include "common/runtime/error.h"
#include "common/runtime/fileio.h"

static int valid_run(const char *s) {
    size_t n = strlen(s);
    if (n == 0 || n > 64) return 0;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') || *s == '_' || *s == '-'))
            return 0;
    return 1;
}

static int copy_stream(FILE *out, void *arg) {
    FILE *in = arg;
    char buf[65536];
    size_t n;
    int ok = 1;
    while ((n = fread(buf, 1, sizeof buf, in)) > 0) ok &= fwrite(buf, 1, n, out) == n;
    return ok && !ferror(in) ? 0 : SF_EIO;
}

/* Copies from to `to` through a temporary name (an interrupted export never
 * leaves half an image under its final name). */
static int copy_file(const char *from, const char *to) {
    FILE *in = fopen(from, "rb");
    if (!in) return -1;
    int rc = sf_write_atomic(to, copy_stream, in);
    fclose(in);
    return rc ? -1 : 0;
}

/* Is `file` ("<wnid>/<id>.png") among the manifest's kept entries? */
static int in_manifest(char **files, int n, const char *file) {
    for (int i = 0; i < n; i++)
        if (strcmp(files[i], file) == 0) return 1;
    return 0;
}

int sfctl_export(int argc, char **argv) {
    const char *run = NULL, *to = NULL, *data = getenv("SF_DATA");
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--to") && i + 1 < argc) to = argv[++i];
        else if (!strcmp(argv[i], "--data") && i + 1 < argc) data = argv[++i];
        else if (argv[i][0] != '-' && !run) run = argv[i];
        else {
            fprintf(stderr, "sfctl export: unknown argument '%s'\n", argv[i]);
            return SFCTL_EXIT_USAGE;
        }
    }
    if (!data || !*data) data = "sf-data";
    if (!run || !to) {
        fprintf(stderr, "sfctl export: usage: sfctl export RUN --to DIR [--data DIR]\n");
        return SFCTL_EXIT_USAGE;
    }
    if (!valid_run(run)) {
        fprintf(stderr, "sfctl export: '%s' is not a run id\n", run);
        return SFCTL_EXIT_USAGE;
    }
    char src[PATH_MAX], dst[PATH_MAX], path[PATH_MAX * 2];
    snprintf(src, sizeof src, "%s/datasets/%s", data, run);
    snprintf(path, sizeof path, "%s/manifest.jsonl", src);
    FILE *mf = fopen(path, "r");
    if (!mf) {
        fprintf(stderr, "sfctl export: no dataset for %s: cannot open %s: %s\n", run, path, strerror(errno));
        return SFCTL_EXIT_FAIL;
    }
    /* The manifest: every line an image, kept ones with their file. */
    char **files = NULL;
    int nfiles = 0, cap = 0, entries = 0, bad = 0;
    char line[65536];
    while (fgets(line, sizeof line, mf)) {
        cJSON *o = cJSON_Parse(line);
        if (!o) { bad++; continue; }
        entries++;
        const cJSON *f = cJSON_GetObjectItemCaseSensitive(o, "file");
        if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, "kept")) && cJSON_IsString(f)) {
            if (nfiles == cap) files = realloc(files, sizeof *files * (size_t)(cap = cap ? cap * 2 : 256));
            files[nfiles++] = strdup(f->valuestring);
        }
        cJSON_Delete(o);
    }
    fclose(mf);
    mkdir(to, 0755);
    snprintf(dst, sizeof dst, "%s/%s", to, run);
    if (mkdir(dst, 0755) != 0 && errno != EEXIST) {
        fprintf(stderr, "sfctl export: cannot create %s: %s\n", dst, strerror(errno));
        return SFCTL_EXIT_FAIL;
    }
    int copied = 0, classes = 0, orphans = 0, missing = 0;
    DIR *d = opendir(src);
    for (struct dirent *e; d && (e = readdir(d));) {
        if (e->d_name[0] == '.') continue;
        char cdir[PATH_MAX * 2];
        snprintf(cdir, sizeof cdir, "%s/%s", src, e->d_name);
        struct stat st;
        if (stat(cdir, &st) != 0 || !S_ISDIR(st.st_mode)) continue;
        classes++;
        snprintf(path, sizeof path, "%s/%s", dst, e->d_name);
        mkdir(path, 0755);
        DIR *cd = opendir(cdir);
        for (struct dirent *f; cd && (f = readdir(cd));) {
            size_t l = strlen(f->d_name);
            if (l < 5 || strcmp(f->d_name + l - 4, ".png") != 0) continue;
            char rel[600], from[PATH_MAX * 3], target[PATH_MAX * 3];
            snprintf(rel, sizeof rel, "%s/%s", e->d_name, f->d_name);
            if (!in_manifest(files, nfiles, rel)) { orphans++; continue; }
            snprintf(from, sizeof from, "%s/%s", src, rel);
            snprintf(target, sizeof target, "%s/%s", dst, rel);
            if (copy_file(from, target) != 0) {
                fprintf(stderr, "sfctl export: cannot copy %s: %s\n", from, strerror(errno));
                closedir(cd);
                closedir(d);
                return SFCTL_EXIT_FAIL;
            }
            copied++;
        }
        if (cd) closedir(cd);
    }
    if (d) closedir(d);
    for (int i = 0; i < nfiles; i++) {
        snprintf(path, sizeof path, "%s/%s", src, files[i]);
        struct stat st;
        if (stat(path, &st) != 0) {
            if (missing++ < 5) fprintf(stderr, "sfctl export: the manifest names %s, which is missing\n", files[i]);
        }
        free(files[i]);
    }
    free(files);
    char mfrom[PATH_MAX * 2], mto[PATH_MAX * 2];
    snprintf(mfrom, sizeof mfrom, "%s/manifest.jsonl", src);
    snprintf(mto, sizeof mto, "%s/manifest.jsonl", dst);
    if (copy_file(mfrom, mto) != 0) {
        fprintf(stderr, "sfctl export: cannot copy the manifest: %s\n", strerror(errno));
        return SFCTL_EXIT_FAIL;
    }
    printf("exported %s to %s: %d images in %d classes, manifest of %d entries (%d kept)\n", run, dst, copied, classes,
           entries, nfiles);
    if (orphans || missing || bad) {
        fprintf(stderr, "sfctl export: %d images without a manifest entry (not copied), %d entries without their "
                        "image, %d unreadable manifest lines\n", orphans, missing, bad);
        return SFCTL_EXIT_FAIL;
    }
    return SFCTL_EXIT_OK;
}
