/* view.c: what sfctl prints — tables for status, runs and workers, and the
 * live progress bars of `watch` (redrawn in place on a terminal, one plain
 * line per change otherwise, so that logs and pipes stay readable).  Every
 * string of the coordinator's JSON (run names, class names, worker ids,
 * errors) is escaped before it is printed (term.h). */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/runtime/clock.h"
#include "cli/sfctl.h"
#include "cli/term.h"
#include "proto/shiftforge.pb-c.h"

static double num(const cJSON *o, const char *k) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(it) ? it->valuedouble : 0;
}

static const char *str(const cJSON *o, const char *k) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(it) ? it->valuestring : "";
}

static void bar(char *out, size_t n, double frac, int width) {
    if (width > (int)n - 3) width = (int)n - 3;
    int full = (int)(frac * width + 0.5);
    size_t o = 0;
    out[o++] = '[';
    for (int i = 0; i < width; i++) out[o++] = i < full ? '#' : '.';
    out[o++] = ']';
    out[o] = 0;
}

static void print_status(const cJSON *r) {
    printf("run       %s %s\n", str(r, "id"), str(r, "name"));
    printf("state     %s   phase %s   priority %g\n", str(r, "state"), str(r, "phase"), num(r, "priority"));
    printf("jobs      %g done, %g dead, %g total, %g leased, %g retries\n", num(r, "done"), num(r, "dead"),
           num(r, "total"), num(r, "leased"), num(r, "retries"));
    if (*str(r, "waiting_for_kind"))
        printf("waiting   no connected worker offers kind '%s' (for %.0f s; the run fails after no_worker_timeout_ms)\n",
               str(r, "waiting_for_kind"), num(r, "waiting_ms") / 1000);
    const cJSON *lat = cJSON_GetObjectItemCaseSensitive(r, "latency_us");
    if (lat && num(lat, "count") > 0)
        printf("latency   p50 %.0f us, p99 %.0f us (dispatch to result acknowledged)\n", num(lat, "p50"), num(lat, "p99"));
    const cJSON *ph = cJSON_GetObjectItemCaseSensitive(r, "phases");
    printf("\n%-16s %-10s %10s %10s %8s\n", "PHASE", "KIND", "DONE", "TOTAL", "DEAD");
    for (const cJSON *p = ph ? ph->child : NULL; p; p = p->next)
        printf("%-16s %-10s %10g %10g %8g\n", str(p, "name"), str(p, "kind"), num(p, "done"), num(p, "total"), num(p, "dead"));
    const cJSON *cl = cJSON_GetObjectItemCaseSensitive(r, "classes");
    int ncl = cJSON_GetArraySize(cl), shown = 0;
    if (ncl) {
        printf("\n%-11s %-28s %8s %8s %6s\n", "CLASS", "NAME", "DONE", "TOTAL", "DEAD");
        for (const cJSON *c = cl->child; c && shown < 20; c = c->next, shown++)
            printf("%-11s %-28.28s %8g %8g %6g\n", str(c, "wnid"), str(c, "name"), num(c, "done"), num(c, "total"), num(c, "dead"));
        if (ncl > shown) printf("… %d more classes (sfctl status --json shows all)\n", ncl - shown);
    }
    const cJSON *dl = cJSON_GetObjectItemCaseSensitive(r, "dead_jobs");
    if (cJSON_GetArraySize(dl)) {
        printf("\nDEAD-LETTERED JOBS\n");
        for (const cJSON *d = dl->child; d; d = d->next)
            printf("  job %-8g attempts %-3g %s\n", num(d, "job"), num(d, "attempts"), str(d, "error"));
    }
    if (*str(r, "last_error")) printf("\nlast error: %s\n", str(r, "last_error"));
}

int sfctl_print_table(int op, const char *json) {
    cJSON *o = cJSON_Parse(json);
    if (!o || sfctl_term_escape_json(o) != 0) {
        fprintf(stderr, "sfctl: the coordinator sent unreadable JSON\n");
        cJSON_Delete(o);
        return SFCTL_EXIT_FAIL;
    }
    if (op == SF__REQUEST__OP__STATUS) print_status(o);
    else if (op == SF__REQUEST__OP__LIST_RUNS) {
        printf("%-8s %-10s %-14s %10s %10s %8s %5s  %s\n", "RUN", "STATE", "PHASE", "DONE", "TOTAL", "DEAD", "PRIO", "NAME");
        for (const cJSON *r = o->child; r; r = r->next)
            printf("%-8s %-10s %-14.14s %10g %10g %8g %5g  %s\n", str(r, "id"), str(r, "state"), str(r, "phase"),
                   num(r, "done"), num(r, "total"), num(r, "dead"), num(r, "priority"), str(r, "name"));
    } else if (op == SF__REQUEST__OP__LIST_WORKERS) {
        printf("%-24s %-8s %-20s %5s %6s %6s %10s %8s\n", "WORKER", "DEVICE", "KINDS", "SLOTS", "LEASED", "BUSY", "DONE", "SEEN");
        for (const cJSON *w = o->child; w; w = w->next)
            printf("%-24.24s %-8s %-20.20s %5g %6g %6g %10g %6gms\n", str(w, "id"), str(w, "device"), str(w, "kinds"),
                   num(w, "slots"), num(w, "leased"), num(w, "busy"), num(w, "done"), num(w, "last_seen_ms_ago"));
    } else {
        for (const cJSON *it = o->child; it; it = it->next) {
            if (cJSON_IsNumber(it)) printf("%-22s %.0f\n", it->string, it->valuedouble);
            else if (cJSON_IsBool(it)) printf("%-22s %s\n", it->string, cJSON_IsTrue(it) ? "yes" : "no");
            else if (cJSON_IsObject(it))
                for (const cJSON *s = it->child; s; s = s->next) printf("%-22s %.0f\n", s->string, s->valuedouble);
        }
    }
    cJSON_Delete(o);
    return 0;
}


int sfctl_watch(const char *run, long interval_ms, int quiet_start) {
    (void)quiet_start;
    int tty = isatty(1), lines = 0, misses = 0;
    double t0 = sf_clock_mono_s(), last_done = -1, last_t = t0, rate = 0;
    char last_line[512] = "";
    for (;;) {
        sfctl_reply_t rep;
        int rc = sfctl_request(SF__REQUEST__OP__STATUS, run, NULL, &rep);
        if (rc) {
            free(rep.json);
            /* The coordinator may be restarting: keep watching for a while. */
            if (rc == SFCTL_EXIT_UNREACHABLE && ++misses < 60) {
                if (!tty) sfctl_term_printf(stderr, "sfctl watch: %s; retrying\n", rep.error);
                usleep((useconds_t)interval_ms * 1000);
                continue;
            }
            sfctl_term_printf(stderr, "sfctl watch: %s\n", rep.error);
            return rc;
        }
        misses = 0;
        cJSON *r = cJSON_Parse(rep.json);
        free(rep.json);
        if (!r || sfctl_term_escape_json(r) != 0) {
            fprintf(stderr, "sfctl watch: the coordinator sent unreadable JSON\n");
            cJSON_Delete(r);
            return SFCTL_EXIT_FAIL;
        }
        double done = num(r, "done"), total = num(r, "total"), dead = num(r, "dead"), now = sf_clock_mono_s();
        if (last_done >= 0 && now > last_t) {
            double inst = (done - last_done) / (now - last_t);
            rate = rate > 0 ? 0.7 * rate + 0.3 * inst : inst;
        }
        last_done = done;
        last_t = now;
        const char *state = str(r, "state");
        int finished = !strcmp(state, "done") || !strcmp(state, "failed") || !strcmp(state, "cancelled");
        if (tty) {
            if (lines) printf("\033[%dA", lines);
            lines = 0;
            printf("\033[2K%s %s  state %s  %.0fs elapsed\n", str(r, "id"), str(r, "name"), state, now - t0);
            lines++;
            const cJSON *ph = cJSON_GetObjectItemCaseSensitive(r, "phases");
            for (const cJSON *p = ph ? ph->child : NULL; p; p = p->next) {
                double pd = num(p, "done") + num(p, "dead"), pt = num(p, "total");
                char b[64];
                bar(b, sizeof b, pt > 0 ? pd / pt : 0, 30);
                printf("\033[2K  %-14.14s %s %5.1f%%  %.0f/%.0f  dead %.0f\n", str(p, "name"), b,
                       pt > 0 ? 100 * pd / pt : 0, pd, pt, num(p, "dead"));
                lines++;
            }
            if (*str(r, "waiting_for_kind")) {
                printf("\033[2K  waiting: no connected worker offers kind '%s' (%.0f s)\n", str(r, "waiting_for_kind"),
                       num(r, "waiting_ms") / 1000);
                lines++;
            }
            double left = total - done - dead;
            printf("\033[2K  %.0f jobs/s  ETA %s\n", rate, rate > 0 && !finished ? ({
                static char eta[32]; snprintf(eta, sizeof eta, "%.0fs", left / rate); eta; }) : "-");
            lines++;
            fflush(stdout);
        } else {
            char line[512];
            int k = snprintf(line, sizeof line, "%s state=%s phase=%s done=%.0f/%.0f dead=%.0f", str(r, "id"), state,
                             str(r, "phase"), done, total, dead);
            if (*str(r, "waiting_for_kind") && k > 0 && (size_t)k < sizeof line)
                snprintf(line + k, sizeof line - (size_t)k, " waiting_for_kind=%s", str(r, "waiting_for_kind"));
            if (strcmp(line, last_line)) {
                printf("%s\n", line);
                fflush(stdout);
                snprintf(last_line, sizeof last_line, "%s", line);
            }
        }
        if (finished) {
            int code = !strcmp(state, "done") ? 0 : !strcmp(state, "cancelled") ? SFCTL_EXIT_CANCELLED : SFCTL_EXIT_FAIL;
            if (code == SFCTL_EXIT_FAIL)
                sfctl_term_printf(stderr, "run %s failed: %.0f jobs dead; last error: %s\n", run, dead,
                                  str(r, "last_error"));
            cJSON_Delete(r);
            return code;
        }
        cJSON_Delete(r);
        usleep((useconds_t)interval_ms * 1000);
    }
}
