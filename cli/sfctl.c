/* sfctl: the operator's client.
 *
 *   sfctl [--coordinator EP] [--timeout MS] [--curve-key F --curve-server-key F] COMMAND [ARGS]
 *   submit   --classes SPEC [--kind K] [--items-per-class N] [--shard-size N]
 *            [--payload JSON] [--priority P] [--max-attempts N] [--lease-ms MS]
 *            [--retry-base-ms MS] [--retry-max-ms MS] [--name TEXT] [--spec FILE]
 *            [--set KEY=JSON …] [--json] [--wait]; method "shift": --ppo-updates N,
 *            --ppo KEY=NUMBER and a flag for each setting of the job contract
 *            (common/method/contract.h; sfctl --help lists them)
 *   status RUN [--json]      watch RUN [--interval MS]     cancel RUN
 *   runs [--json]            workers [--json]              stats [--json]
 *   export RUN --to DIR [--data DIR]
 *   report RUN [--compare RUN…] --out DIR [--data DIR] [--redis ADDR]
 *   up --dir DIR [--workers N] [worker flags…]             down --dir DIR
 *   top [--redis ADDR] [--interval MS] [--once]
 *   world …                  (the embedded world: sheets, corpus)
 *   keygen --out PREFIX      a CURVE keypair: PREFIX.key (mode 0600) and PREFIX.pub
 *
 * Exit codes a script can rely on: 0 success; 1 the coordinator refused or
 * the run failed; 2 bad usage or bad input (e.g. an unknown class); 3 the
 * coordinator did not answer in time; 4 the run was cancelled.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "cli/sfctl.h"
#include "cli/term.h"
#include "common/method/classes.h"
#include "common/method/contract.h"
#include "common/runtime/error.h"
#include "common/runtime/fileio.h"
#include "common/runtime/json_strict.h"
#include "common/net/wire.h"


/* Prints `text` from column `col`, wrapped at 100 columns (the cursor is at
 * column `at`). */
static void print_wrapped(FILE *f, const char *text, int at, int col) {
    for (const char *w = text; *w;) {
        size_t l = strcspn(w, " ");
        if (at > col && at + 1 + (int)l > 100) {
            fprintf(f, "\n%*s", col, "");
            at = col;
        } else if (at > col) {
            fputc(' ', f);
            at++;
        } else {
            at += fprintf(f, "%*s", col - at, "");
        }
        at += fprintf(f, "%.*s", (int)l, w);
        w += l;
        while (*w == ' ') w++;
    }
    fputc('\n', f);
}

/* The method's flags, one a line, from the job contract's table. */
static void usage_method_flags(FILE *f) {
    int n;
    const sf_setting_t *t = sf_shift_settings(&n);
    for (int i = 0; i < n; i++) {
        if (!t[i].flag) continue;
        char doc[600];
        const char *arg = t[i].type == SF_SET_STR ? "S" : t[i].type == SF_SET_UINT ? "N" : "X";
        if (sf_setting_planner_set(&t[i]) || (t[i].type == SF_SET_NUM && isnan(t[i].def)))
            snprintf(doc, sizeof doc, "%s", t[i].doc);
        else if (t[i].type == SF_SET_STR) snprintf(doc, sizeof doc, "%s [%s]", t[i].doc, t[i].sdef);
        else snprintf(doc, sizeof doc, "%s [%g]", t[i].doc, t[i].def);
        int at = fprintf(f, "             %s %s", t[i].flag, arg);
        print_wrapped(f, doc, at, 45);
    }
}

static void usage(FILE *f) {
    fputs("usage: sfctl [--coordinator EP] [--timeout MS] [--curve-key FILE --curve-server-key FILE]\n"
          "             COMMAND [ARGS]\n"
          "commands:\n"
          "  submit   submit a run (--classes SPEC, --kind, --items-per-class, --shard-size,\n"
          "           --payload JSON, --priority, --max-attempts, --lease-ms, --retry-base-ms,\n"
          "           --retry-max-ms, --name, --spec FILE, --set KEY=JSON, --json, --wait); the\n"
          "           method (--method shift, implied by --strategy, --generator, --policy and\n"
          "           --reference): --ppo-updates N, --ppo KEY=NUMBER and one flag per setting\n"
          "           (docs/configuration.md, \"Method shift\"; default in brackets):\n",
          f);
    usage_method_flags(f);
    fputs("  export   RUN --to DIR [--data DIR]: copy a run's dataset (ImageFolder + manifest.jsonl)\n"
          "  report   RUN [--compare RUN…] --out DIR [--data DIR] [--redis ADDR]: the paper's tables\n"
          "           and figures as HTML, Markdown and JSON\n"
          "  status   RUN: the run's state, phases, classes and dead jobs\n"
          "  watch    RUN: live progress bars until the run ends\n"
          "  cancel   RUN: cancel a run; leased jobs are cancelled on their workers\n"
          "  runs     list runs          workers  list workers      stats  coordinator counters\n"
          "  top      [--redis ADDR]: full-screen live view of runs, workers and the learner\n"
          "  up       --dir DIR [--workers N]: a local cluster (redis, coordinator, workers)\n"
          "  down     --dir DIR: stop a local cluster\n"
          "  world    the embedded world (sfctl world --help)\n"
          "  keygen   --out PREFIX: a CURVE keypair, PREFIX.key (secret, mode 0600) and PREFIX.pub\n"
          "SPEC is a file of wnids or class names, '-' for stdin, builtin:imagenet-a-r-86 or\n"
          "builtin:imagenet-1k.  The coordinator endpoint defaults to $SF_COORDINATOR or\n"
          "tcp://127.0.0.1:5556.  With CURVE, --curve-key is this client's keypair (.key) and\n"
          "--curve-server-key the coordinator's public key (.pub); $SF_CURVE_KEY and\n"
          "$SF_CURVE_SERVER_KEY name them when the flags are not given.\n",
          f);
}

/* A class SPEC that is neither builtin:, '-' nor an existing file, and does
 * not look like a path, is a comma-separated list of classes. */
static int is_inline_list(const char *spec) {
    if (!strncmp(spec, "builtin:", 8) || !strcmp(spec, "-") || access(spec, F_OK) == 0) return 0;
    if (strchr(spec, '/')) return 0;
    size_t n = strlen(spec);
    return !(n > 4 && (!strcmp(spec + n - 4, ".txt") || !strcmp(spec + n - 4, ".tsv")));
}

/* spec[key] = the number val; `flag` names it in the error. */
static int set_number_flag(cJSON *spec, const char *key, const char *flag, const char *val) {
    char *end;
    double v = strtod(val, &end);
    if (!*val || *end) {
        sfctl_term_printf(stderr, "sfctl submit: %s needs a number, got '%s'\n", flag, val);
        return -1;
    }
    cJSON_DeleteItemFromObjectCaseSensitive(spec, key);
    cJSON_AddNumberToObject(spec, key, v);
    return 0;
}

/* The numeric flags of every run, whatever its method: "--max-attempts" is
 * the key max_attempts. */
static int is_run_number_flag(const char *a) {
    static const char *const flags[] = {"--items-per-class", "--priority",      "--max-attempts",
                                        "--lease-ms",        "--retry-base-ms", "--retry-max-ms", NULL};
    for (const char *const *f = flags; *f; f++)
        if (!strcmp(*f, a)) return 1;
    return 0;
}

static int cmd_submit(int argc, char **argv) {
    const sf_setting_t *set;
    cJSON *spec = cJSON_CreateObject();
    const char *classes = NULL;
    int json = 0, wait = 0, rc = SFCTL_EXIT_USAGE;
    char err[600];
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
#define NEEDV() do { if (!v) { sfctl_term_printf(stderr, "sfctl submit: %s needs a value\n", a); goto out; } i++; } while (0)
        if (!strcmp(a, "--json")) json = 1;
        else if (!strcmp(a, "--wait")) wait = 1;
        else if (!strcmp(a, "--classes")) { NEEDV(); classes = v; }
        else if (!strcmp(a, "--spec")) {
            NEEDV();
            char *txt, what[300];
            size_t len;
            if (sf_read_file(v, SF_READ_ANY_SIZE, &txt, &len, err, sizeof err)) {
                sfctl_term_printf(stderr, "sfctl submit: --spec: %s\n", err);
                goto out;
            }
            /* Strict: text after the object, or a key twice, is refused
             * rather than half-read (json_strict.h). */
            snprintf(what, sizeof what, "--spec %s", v);
            cJSON *f;
            int prc = sf_json_parse_strict(txt, len, what, &f, err, sizeof err);
            free(txt);
            if (prc) {
                sfctl_term_printf(stderr, "sfctl submit: %s\n", err);
                goto out;
            }
            if (!cJSON_IsObject(f)) {
                sfctl_term_printf(stderr, "sfctl submit: --spec %s is not a JSON object\n", v);
                cJSON_Delete(f);
                goto out;
            }
            for (cJSON *it = f->child; it; it = it->next) {
                cJSON_DeleteItemFromObjectCaseSensitive(spec, it->string);
                cJSON_AddItemToObject(spec, it->string, cJSON_Duplicate(it, 1));
            }
            cJSON_Delete(f);
        } else if (!strcmp(a, "--ppo-updates") || !strcmp(a, "--ppo")) {
            /* --ppo-updates N is ppo.updates; --ppo KEY=NUMBER any other PPO setting. */
            NEEDV();
            char key[64];
            const char *val = v;
            if (!strcmp(a, "--ppo")) {
                const char *eq = strchr(v, '=');
                if (!eq || eq == v || (size_t)(eq - v) >= sizeof key) {
                    sfctl_term_printf(stderr, "sfctl submit: --ppo needs KEY=NUMBER, got '%s'\n", v);
                    goto out;
                }
                snprintf(key, sizeof key, "%.*s", (int)(eq - v), v);
                val = eq + 1;
            } else {
                snprintf(key, sizeof key, "updates");
            }
            cJSON *ppo = cJSON_GetObjectItemCaseSensitive(spec, "ppo");
            if (!cJSON_IsObject(ppo)) {
                cJSON_DeleteItemFromObjectCaseSensitive(spec, "ppo");
                ppo = cJSON_AddObjectToObject(spec, "ppo");
            }
            char what[80];
            snprintf(what, sizeof what, "--ppo %s", key);
            if (set_number_flag(ppo, key, !strcmp(a, "--ppo") ? what : a, val)) goto out;
        } else if ((set = sf_setting_by_flag(a))) {
            /* A setting of method shift (the contract's table): a string
             * (strategy, generator, policy, reference) also implies the
             * method; a number may be a --kind run's too (--shard-size). */
            NEEDV();
            if (set->type != SF_SET_STR) {
                if (set_number_flag(spec, set->key, a, v)) goto out;
            } else {
                cJSON_DeleteItemFromObjectCaseSensitive(spec, set->key);
                cJSON_AddStringToObject(spec, set->key, v);
                if (!cJSON_GetObjectItemCaseSensitive(spec, "method")) cJSON_AddStringToObject(spec, "method", "shift");
            }
        } else if (!strcmp(a, "--kind") || !strcmp(a, "--name") || !strcmp(a, "--method")) {
            NEEDV();
            cJSON_DeleteItemFromObjectCaseSensitive(spec, a + 2);
            cJSON_AddStringToObject(spec, a + 2, v);
        } else if (!strcmp(a, "--payload") || !strcmp(a, "--set")) {
            NEEDV();
            const char *key = "payload", *val = v;
            char kbuf[64];
            if (!strcmp(a, "--set")) {
                const char *eq = strchr(v, '=');
                if (!eq || eq == v || (size_t)(eq - v) >= sizeof kbuf) {
                    sfctl_term_printf(stderr, "sfctl submit: --set needs KEY=JSON, got '%s'\n", v);
                    goto out;
                }
                snprintf(kbuf, sizeof kbuf, "%.*s", (int)(eq - v), v);
                key = kbuf;
                val = eq + 1;
            }
            char what[96];
            snprintf(what, sizeof what, "%s%s%s", a, key == kbuf ? " " : "", key == kbuf ? key : "");
            cJSON *pv;
            if (sf_json_parse_strict(val, strlen(val), what, &pv, err, sizeof err)) {
                sfctl_term_printf(stderr, "sfctl submit: %s\n", err);
                goto out;
            }
            cJSON_DeleteItemFromObjectCaseSensitive(spec, key);
            cJSON_AddItemToObject(spec, key, pv);
        } else if (is_run_number_flag(a)) {
            NEEDV();
            char key[64];
            snprintf(key, sizeof key, "%s", a + 2);
            for (char *q = key; *q; q++) if (*q == '-') *q = '_';
            if (set_number_flag(spec, key, a, v)) goto out;
        } else {
            sfctl_term_printf(stderr, "sfctl submit: unknown option '%s'\n", a);
            goto out;
        }
#undef NEEDV
    }
    if (classes) {
        sf_classlist_t *cl = NULL;
        int rc2;
        if (is_inline_list(classes)) {
            /* "--classes goldfish,n01440764": an inline, comma-separated list. */
            char *txt = strdup(classes);
            for (char *q = txt; *q; q++) if (*q == ',') *q = '\n';
            rc2 = sf_classes_parse(txt, strlen(txt), &cl, err, sizeof err);
            free(txt);
        } else {
            rc2 = sf_classes_load(classes, &cl, err, sizeof err);
        }
        if (rc2 != 0) {
            sfctl_term_printf(stderr, "sfctl submit: %s\n", err);
            goto out;
        }
        cJSON *arr = cJSON_CreateArray();
        for (int i = 0; i < cl->n; i++) cJSON_AddItemToArray(arr, cJSON_CreateString(cl->v[i].wnid));
        sf_classes_free(&cl);
        cJSON_DeleteItemFromObjectCaseSensitive(spec, "classes");
        cJSON_AddItemToObject(spec, "classes", arr);
    }
    if (!cJSON_GetObjectItemCaseSensitive(spec, "classes")) {
        fprintf(stderr, "sfctl submit: no classes (use --classes SPEC or a spec file with \"classes\")\n");
        goto out;
    }
    char *js = cJSON_PrintUnformatted(spec);
    sfctl_reply_t rep;
    rc = sfctl_request(SF__REQUEST__OP__SUBMIT, NULL, js, &rep);
    free(js);
    if (rc) {
        sfctl_term_printf(stderr, "sfctl submit: %s\n", rep.error);
        free(rep.json);
        goto out;
    }
    if (json) printf("{\"run\":\"%s\"}\n", rep.run);
    else sfctl_term_printf(stdout, "%s\n", rep.run);
    fflush(stdout);
    free(rep.json);
    if (wait) rc = sfctl_watch(rep.run, 500, 1);
out:
    cJSON_Delete(spec);
    return rc;
}

static int simple(int op, const char *name, const char *run, int json) {
    sfctl_reply_t rep;
    int rc = sfctl_request(op, run, NULL, &rep);
    if (rc) {
        sfctl_term_printf(stderr, "sfctl %s: %s\n", name, rep.error);
        free(rep.json);
        return rc;
    }
    if (op == SF__REQUEST__OP__CANCEL && json) printf("{\"run\":\"%s\",\"state\":\"cancelled\"}\n", rep.run);
    else if (op == SF__REQUEST__OP__CANCEL) sfctl_term_printf(stdout, "%s cancelled\n", rep.run);
    else if (json) printf("%s\n", rep.json);
    else rc = sfctl_print_table(op, rep.json);
    free(rep.json);
    return rc;
}

int main(int argc, char **argv) {
    g_opts.coordinator = getenv("SF_COORDINATOR") ? getenv("SF_COORDINATOR") : "tcp://127.0.0.1:5556";
    int i = 1;
    for (; i < argc && !strncmp(argv[i], "--", 2); i++) {
        if (!strcmp(argv[i], "--coordinator") && i + 1 < argc) g_opts.coordinator = argv[++i];
        else if (!strcmp(argv[i], "--timeout") && i + 1 < argc) g_opts.timeout_ms = atol(argv[++i]);
        else if (!strcmp(argv[i], "--curve-key") && i + 1 < argc) g_opts.curve_key = argv[++i];
        else if (!strcmp(argv[i], "--curve-server-key") && i + 1 < argc) g_opts.curve_server_key = argv[++i];
        else if (!strcmp(argv[i], "--help")) { usage(stdout); return 0; }
        else { sfctl_term_printf(stderr, "sfctl: unknown option '%s'\n", argv[i]); usage(stderr); return SFCTL_EXIT_USAGE; }
    }
    if (i >= argc) { usage(stderr); return SFCTL_EXIT_USAGE; }
    const char *cmd = argv[i];
    int sub_argc = argc - i;
    char **sub = argv + i;
    int json = 0;
    const char *run = NULL;
    for (int k = 1; k < sub_argc; k++) {
        if (!strcmp(sub[k], "--json")) json = 1;
        else if (!run && sub[k][0] != '-') run = sub[k];
    }
    if (!strcmp(cmd, "submit")) return cmd_submit(sub_argc, sub);
    if (!strcmp(cmd, "runs")) return simple(SF__REQUEST__OP__LIST_RUNS, cmd, NULL, json);
    if (!strcmp(cmd, "workers")) return simple(SF__REQUEST__OP__LIST_WORKERS, cmd, NULL, json);
    if (!strcmp(cmd, "stats")) return simple(SF__REQUEST__OP__STATS, cmd, NULL, json);
    if (!strcmp(cmd, "up")) return sfctl_up(sub_argc, sub);
    if (!strcmp(cmd, "down")) return sfctl_down(sub_argc, sub);
    if (!strcmp(cmd, "world")) return sfctl_world(sub_argc, sub);
    if (!strcmp(cmd, "keygen")) return sfctl_keygen(sub_argc, sub);
    if (!strcmp(cmd, "top")) return sfctl_top(sub_argc, sub);
    if (!strcmp(cmd, "export")) return sfctl_export(sub_argc, sub);
    if (!strcmp(cmd, "report")) return sfctl_report(sub_argc, sub);
    if (!strcmp(cmd, "status") || !strcmp(cmd, "cancel") || !strcmp(cmd, "watch")) {
        if (!run) { sfctl_term_printf(stderr, "sfctl %s: which run? (e.g. sfctl %s r1)\n", cmd, cmd); return SFCTL_EXIT_USAGE; }
        if (!strcmp(cmd, "status")) return simple(SF__REQUEST__OP__STATUS, cmd, run, json);
        if (!strcmp(cmd, "cancel")) return simple(SF__REQUEST__OP__CANCEL, cmd, run, json);
        long interval = 500;
        for (int k = 1; k + 1 < sub_argc; k++)
            if (!strcmp(sub[k], "--interval")) interval = atol(sub[k + 1]);
        return sfctl_watch(run, interval > 0 ? interval : 500, 0);
    }
    sfctl_term_printf(stderr, "sfctl: unknown command '%s'\n", cmd);
    usage(stderr);
    return SFCTL_EXIT_USAGE;
}
