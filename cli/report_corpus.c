/* report_corpus.c: the report's "SFT corpus" section — for each run with a
 * corpus phase, which instruction model wrote the corpus and with what
 * prompt, how many captions each class got, how many draws failed the
 * sentence-and-class check (redrawn, or dropped after every draw failed),
 * whether the corpus was made by this run or reused from an earlier one,
 * and a few of its captions.  It reads what the corpus jobs wrote:
 * runs/<run>/corpus/<wnid>.json (the run's record) and the corpus lines
 * they point at (data_dir/corpus/<key>/<wnid>.jsonl). */
#include <cjson/cJSON.h>
#include <dirent.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/sfctl.h"
#include "common/runtime/fileio.h"

#define EXAMPLE_CLASSES 6
#define EXAMPLES_PER_CLASS 2

static int by_name(const struct dirent **a, const struct dirent **b) { return strcmp((*a)->d_name, (*b)->d_name); }

static int is_record(const struct dirent *e) {
    size_t l = strlen(e->d_name);
    return l > 5 && !strcmp(e->d_name + l - 5, ".json") && e->d_name[0] != '.';
}

/* The first n captions of a corpus file, as JSON strings (new array). */
static cJSON *examples(const char *data, const char *corpus, const char *wnid, int n) {
    char path[PATH_MAX * 2];
    snprintf(path, sizeof path, "%s/%s/%s.jsonl", data, corpus, wnid);
    cJSON *a = cJSON_CreateArray();
    char *text = sf_file_text(path, NULL);
    for (char *save = NULL, *l = text ? strtok_r(text, "\n", &save) : NULL; l && cJSON_GetArraySize(a) < n;
         l = strtok_r(NULL, "\n", &save)) {
        cJSON *o = cJSON_Parse(l);
        const cJSON *c = cJSON_GetObjectItemCaseSensitive(o, "caption");
        if (cJSON_IsString(c)) cJSON_AddItemToArray(a, cJSON_CreateString(c->valuestring));
        cJSON_Delete(o);
    }
    free(text);
    return a;
}

/* One run's records joined: totals and the examples (NULL: no corpus phase). */
static cJSON *run_corpus(const char *data, const char *run) {
    char dir[PATH_MAX * 2];
    snprintf(dir, sizeof dir, "%s/runs/%s/corpus", data, run);
    struct dirent **ents = NULL;
    int ne = scandir(dir, &ents, is_record, by_name);
    if (ne <= 0) {
        free(ents);
        return NULL;
    }
    cJSON *o = cJSON_CreateObject(), *ex = cJSON_CreateArray();
    double captions = 0, rejected = 0, resampled = 0, requested = 0;
    int classes = 0, reused = 0;
    for (int i = 0; i < ne; i++) {
        char path[PATH_MAX * 3];
        snprintf(path, sizeof path, "%s/%s", dir, ents[i]->d_name);
        char *t = sf_file_text(path, NULL);
        cJSON *rec = t ? cJSON_Parse(t) : NULL;
        free(t);
        const cJSON *corpus = cJSON_GetObjectItemCaseSensitive(rec, "corpus"),
                    *wnid = cJSON_GetObjectItemCaseSensitive(rec, "class");
        if (cJSON_IsString(corpus) && cJSON_IsString(wnid)) {
            classes++;
            captions += cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(rec, "captions"));
            rejected += cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(rec, "rejected"));
            resampled += cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(rec, "resampled"));
            requested += cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(rec, "requested"));
            reused += cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(rec, "cached"));
            if (!cJSON_GetObjectItemCaseSensitive(o, "model")) {
                static const char *const keep[] = {"model", "template", "instruction", "prompt", "corpus",
                                                   "temperature", "top_p", "attempts", "max_new_tokens"};
                for (size_t k = 0; k < sizeof keep / sizeof keep[0]; k++) {
                    const cJSON *v = cJSON_GetObjectItemCaseSensitive(rec, keep[k]);
                    if (v) cJSON_AddItemToObject(o, keep[k], cJSON_Duplicate(v, 1));
                }
            }
            if (cJSON_GetArraySize(ex) < EXAMPLE_CLASSES) {
                cJSON *e = cJSON_CreateObject();
                const cJSON *nm = cJSON_GetObjectItemCaseSensitive(rec, "name");
                cJSON_AddStringToObject(e, "class", wnid->valuestring);
                cJSON_AddStringToObject(e, "name", cJSON_IsString(nm) ? nm->valuestring : wnid->valuestring);
                cJSON_AddItemToObject(e, "captions", examples(data, corpus->valuestring, wnid->valuestring,
                                                              EXAMPLES_PER_CLASS));
                cJSON_AddItemToArray(ex, e);
            }
        }
        cJSON_Delete(rec);
        free(ents[i]);
    }
    free(ents);
    cJSON_AddStringToObject(o, "run", run);
    cJSON_AddNumberToObject(o, "classes", classes);
    cJSON_AddNumberToObject(o, "classes_reused", reused);
    cJSON_AddNumberToObject(o, "captions", captions);
    cJSON_AddNumberToObject(o, "requested", requested);
    cJSON_AddNumberToObject(o, "rejected", rejected);
    cJSON_AddNumberToObject(o, "resampled", resampled);
    cJSON_AddItemToObject(o, "examples", ex);
    return o;
}

static const char *str(const cJSON *o, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : "";
}

void sfctl_report_corpus(FILE *md, FILE *f, cJSON *js, const char *data, const char *const *runs, int nr) {
    cJSON *all = NULL;
    for (int r = 0; r < nr; r++) {
        cJSON *o = run_corpus(data, runs[r]);
        if (!o) continue;
        if (!all) {
            all = cJSON_AddArrayToObject(js, "corpus");
            fputs("<h2>SFT corpus (the corpus phase)</h2>\n<table id=\"corpus\"><tr><th>run</th><th>instruction "
                  "model</th><th>classes</th><th>captions (asked)</th><th>draws that failed the check, redrawn"
                  "</th><th>captions dropped (every draw failed)</th><th>classes reused from an earlier run</th>"
                  "</tr>\n", f);
            fputs("\n### SFT corpus (the corpus phase)\n\n| run | instruction model | classes | captions (asked) | "
                  "draws that failed the check, redrawn | captions dropped (every draw failed) | classes reused "
                  "from an earlier run |\n|---|---|---|---|---|---|---|\n", md);
        }
        const int classes = (int)cJSON_GetNumberValue(cJSON_GetObjectItem(o, "classes"));
        const double cap = cJSON_GetNumberValue(cJSON_GetObjectItem(o, "captions")),
                     asked = cJSON_GetNumberValue(cJSON_GetObjectItem(o, "requested")),
                     redrawn = cJSON_GetNumberValue(cJSON_GetObjectItem(o, "resampled")),
                     dropped = cJSON_GetNumberValue(cJSON_GetObjectItem(o, "rejected")),
                     reused = cJSON_GetNumberValue(cJSON_GetObjectItem(o, "classes_reused"));
        fprintf(md, "| %s | %s | %d | %.0f (%.0f) | %.0f | %.0f | %.0f |\n", runs[r], str(o, "model"), classes, cap,
                asked, redrawn, dropped, reused);
        fprintf(f, "<tr><td>%s</td><td>", runs[r]);
        sfctl_html_text(f, str(o, "model"));
        fprintf(f, "</td><td>%d</td><td>%.0f (%.0f)</td><td>%.0f</td><td>%.0f</td><td>%.0f</td></tr>\n", classes, cap,
                asked, redrawn, dropped, reused);
        cJSON_AddItemToArray(all, o);
    }
    if (!all) return;
    fputs("</table>\n", f);
    static const char note[] =
        "Each class's captions were sampled from the instruction model with the prompt below and kept when they are "
        "a sentence that names the class (the reward's check); a failed draw was drawn again, and a caption whose "
        "every draw failed was dropped. The learner's SFT read these captions. A corpus is stored once per model, "
        "prompt, settings and class, so a later run with the same asks reuses it (\"reused\").";
    fprintf(md, "\n%s\n", note);
    fprintf(f, "<p>%s</p>\n", note);
    for (const cJSON *o = all->child; o; o = o->next) {
        fprintf(md, "\nRun %s: temperature %g, top-p %g, at most %g draws per caption; prompt (for the first class):\n\n```\n%s\n```\n\n",
                str(o, "run"), cJSON_GetNumberValue(cJSON_GetObjectItem(o, "temperature")),
                cJSON_GetNumberValue(cJSON_GetObjectItem(o, "top_p")),
                cJSON_GetNumberValue(cJSON_GetObjectItem(o, "attempts")), str(o, "prompt"));
        fprintf(f, "<p>Run %s: temperature %g, top-p %g, at most %g draws per caption; prompt (for the first class):"
                   "</p><pre>", str(o, "run"), cJSON_GetNumberValue(cJSON_GetObjectItem(o, "temperature")),
                cJSON_GetNumberValue(cJSON_GetObjectItem(o, "top_p")),
                cJSON_GetNumberValue(cJSON_GetObjectItem(o, "attempts")));
        sfctl_html_text(f, str(o, "prompt"));
        fputs("</pre><table class=\"corpus-examples\"><tr><th>class</th><th>captions (the first of the corpus)</th></tr>\n", f);
        fputs("| class | captions (the first of the corpus) |\n|---|---|\n", md);
        const cJSON *ex = cJSON_GetObjectItem(o, "examples");
        for (const cJSON *e = ex ? ex->child : NULL; e; e = e->next) {
            fputs("<tr><td>", f);
            sfctl_html_text(f, str(e, "name"));
            fputs("</td><td style=\"text-align:left\">", f);
            fprintf(md, "| %s |", str(e, "name"));
            const cJSON *caps = cJSON_GetObjectItem(e, "captions");
            for (const cJSON *c = caps ? caps->child : NULL; c; c = c->next) {
                sfctl_html_text(f, c->valuestring);
                fputs(c->next ? "<br>" : "", f);
                /* A pipe would end the Markdown cell. */
                fputc(' ', md);
                for (const char *s = c->valuestring; *s; s++) fputs(*s == '|' ? "\\|" : (char[2]){*s, 0}, md);
                fputs(c->next ? " ·" : "", md);
            }
            fputs("</td></tr>\n", f);
            fputs(" |\n", md);
        }
        fputs("</table>\n", f);
    }
}
