/* clients.c: requests from sfctl (and any client): submit, status, cancel,
 * list runs, list workers, stats.  A submit or cancel is answered only after
 * Redis acknowledged it, so an accepted run survives a coordinator crash. */
#include <stdlib.h>
#include <string.h>

#include "common/runtime/error.h"
#include "common/runtime/log.h"
#include "coordinator/coord.h"

void sf_clients_reply(sf_coord_t *c, const void *rid, size_t rid_len, uint64_t tag, int code, const char *error,
                      const char *run, const char *json) {
    Sf__Reply rep = SF__REPLY__INIT;
    rep.tag = tag;
    rep.code = code;
    rep.error = (char *)(error ? error : "");
    rep.run = (char *)(run ? run : "");
    rep.json = (char *)(json ? json : "");
    Sf__Envelope env = SF__ENVELOPE__INIT;
    env.body_case = SF__ENVELOPE__BODY_REPLY;
    env.reply = &rep;
    if (sf_wire_send(c->csock, rid, rid_len, &env, &c->sbuf, &c->sbuf_cap) != 0) c->st.send_errors++;
}

static void reply_json(sf_coord_t *c, const void *rid, size_t rid_len, uint64_t tag, cJSON *o) {
    char *js = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    sf_clients_reply(c, rid, rid_len, tag, js ? 0 : SF_ENOMEM, js ? NULL : "out of memory", NULL, js);
    free(js);
}

static cJSON *stats_json(sf_coord_t *c) {
    cJSON *o = cJSON_CreateObject();
    const sf_stats_t *s = &c->st;
#define N(f) cJSON_AddNumberToObject(o, #f, (double)s->f)
    N(frames_in); N(frames_bad); N(frames_oversize); N(frames_version); N(frames_out); N(results_ok);
    N(results_failed); N(results_dup); N(results_stale); N(results_unknown); N(dispatched); N(requeued);
    N(expired); N(dead_lettered); N(workers_died); N(workers_left); N(workers_replaced); N(redis_batches);
    N(redis_errors); N(redis_reconnects); N(send_errors); N(dispatch_held);
#undef N
    cJSON_AddNumberToObject(o, "epoch", (double)c->epoch);
    int held;
    uint64_t held_jobs;
    sf_runs_held(c, &held, &held_jobs);
    cJSON_AddNumberToObject(o, "runs_held", held);      /* runs with job slots in memory */
    cJSON_AddNumberToObject(o, "jobs_held", (double)held_jobs);
    cJSON *lat = cJSON_AddObjectToObject(o, "latency_us");
    cJSON_AddNumberToObject(lat, "count", (double)c->latency.count);
    cJSON_AddNumberToObject(lat, "p50", (double)sf_hist_quantile(&c->latency, 0.50));
    cJSON_AddNumberToObject(lat, "p99", (double)sf_hist_quantile(&c->latency, 0.99));
    cJSON_AddNumberToObject(lat, "max", (double)c->latency.max);
    sf_store_info(c, o);
    return o;
}

static void on_request(sf_coord_t *c, const void *rid, size_t rid_len, const Sf__Request *q) {
    char err[512];
    switch (q->op) {
    case SF__REQUEST__OP__SUBMIT: {
        if (c->stopping) {
            sf_clients_reply(c, rid, rid_len, q->tag, SF_ESTATE, "the coordinator is shutting down", NULL, NULL);
            return;
        }
        /* The limits count what memory holds: runs with job slots, ended
         * ones included until they drop them (finished_hold_ms). */
        int held;
        uint64_t held_jobs;
        sf_runs_held(c, &held, &held_jobs);
        if (held >= c->cfg.max_runs) {
            snprintf(err, sizeof err, "%d runs hold job slots already (max_runs %ld; an ended run drops its slots "
                     "%ld ms after Redis has it)", held, c->cfg.max_runs, c->cfg.finished_hold_ms);
            sf_clients_reply(c, rid, rid_len, q->tag, SF_ERANGE, err, NULL, NULL);
            return;
        }
        sf_run_t *r = NULL;
        int rc = sf_run_create(c, q->spec_json, c->next_run_num, &r, err, sizeof err);
        if (rc == 0 && held_jobs + r->n_jobs > (uint64_t)c->cfg.max_jobs_held) {
            rc = sf_errf(SF_ERANGE, err, sizeof err,
                         "the coordinator holds %llu job slots and this run needs %u more: over max_jobs_held (%ld)",
                         (unsigned long long)held_jobs, r->n_jobs, c->cfg.max_jobs_held);
            sf_run_free(r);
        }
        if (rc) {
            sf_info("submit refused: %s", err);
            sf_clients_reply(c, rid, rid_len, q->tag, rc, err, NULL, NULL);
            return;
        }
        c->next_run_num++;
        sf_runs_insert(c, r);
        sf_info("run %s submitted: %d classes, %u jobs in %d phases, priority %d", r->id, r->classes->n, r->n_jobs,
                r->n_phases, r->priority);
        sf_store_run_saved(c, r, 1);
        sf_store_event(c, r, "submitted", r->name);
        sf_store_ack_reply(c, rid, rid_len, q->tag, r->num);
        c->dispatch_dirty = 1;
        return;
    }
    case SF__REQUEST__OP__STATUS: {
        sf_run_t *r = sf_runs_find(c, q->run);
        unsigned long num = 0;
        char *end = NULL;
        if (!r && q->run[0] == 'r' && (num = strtoul(q->run + 1, &end, 10)) > 0 && !*end && num < c->next_run_num) {
            snprintf(err, sizeof err, "run '%s' ended long ago and left the coordinator's memory (max_finished_runs); "
                     "Redis keeps its record: sfctl report, sfctl export", q->run);
            sf_clients_reply(c, rid, rid_len, q->tag, SF_ENOTFOUND, err, NULL, NULL);
            return;
        }
        if (!r) {
            snprintf(err, sizeof err, "no run '%s'", q->run);
            sf_clients_reply(c, rid, rid_len, q->tag, SF_ENOTFOUND, err, NULL, NULL);
            return;
        }
        reply_json(c, rid, rid_len, q->tag, sf_run_json(c, r, 1));
        return;
    }
    case SF__REQUEST__OP__CANCEL: {
        sf_run_t *r = sf_runs_find(c, q->run);
        if (!r) {
            snprintf(err, sizeof err, "no run '%s'", q->run);
            sf_clients_reply(c, rid, rid_len, q->tag, SF_ENOTFOUND, err, NULL, NULL);
            return;
        }
        if (!sf_run_active(r)) {
            snprintf(err, sizeof err, "run %s is already %s", r->id, sf_run_state_name(r->state));
            sf_clients_reply(c, rid, rid_len, q->tag, SF_ESTATE, err, r->id, NULL);
            return;
        }
        sf_broker_cancel_run(c, r);
        r->state = RUN_CANCELLED;
        r->finished_ms = sf_clock_wall_ms();
        sf_info("run %s cancelled", r->id);
        sf_store_run_saved(c, r, 0);
        sf_store_event(c, r, "cancelled", NULL);
        sf_store_ack_reply(c, rid, rid_len, q->tag, r->num);
        return;
    }
    case SF__REQUEST__OP__LIST_RUNS: {
        cJSON *a = cJSON_CreateArray();
        for (sf_run_t *r = c->runs; r; r = r->next) cJSON_AddItemToArray(a, sf_run_json(c, r, 0));
        reply_json(c, rid, rid_len, q->tag, a);
        return;
    }
    case SF__REQUEST__OP__LIST_WORKERS:
        reply_json(c, rid, rid_len, q->tag, sf_workers_json(c));
        return;
    case SF__REQUEST__OP__STATS:
        reply_json(c, rid, rid_len, q->tag, stats_json(c));
        return;
    default:
        sf_clients_reply(c, rid, rid_len, q->tag, SF_EINVAL, "unknown request", NULL, NULL);
    }
}

void sf_clients_on_frame(sf_coord_t *c, const void *rid, size_t rid_len, const void *buf, size_t len) {
    c->st.frames_in++;
    Sf__Envelope *env = sf_coord_decode(c, c->csock, rid, rid_len, buf, len, "a client");
    if (!env) return;
    if (env->body_case == SF__ENVELOPE__BODY_REQUEST) on_request(c, rid, rid_len, env->request);
    else {
        c->st.frames_bad++;
        sf_warn("a client sent a message that is not a request (body %d)", (int)env->body_case);
    }
    sf_wire_free(env);
}
