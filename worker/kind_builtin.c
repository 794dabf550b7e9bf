/* kind_builtin.c: the built-in job kinds that need no model — for tests,
 * benchmarks and fault drills:
 *   noop    succeeds at once;
 *   sleep   succeeds after payload "ms" milliseconds per item of its shard
 *           (default 10), so a shard of 4 items sleeps 4 × ms;
 *   fail    fails the first payload "times" attempts (default: always), then
 *           succeeds; with "fatal": true the failure is not retried;
 *   crash   exits the worker process on the spot (as a SIGKILL would).
 * Their settings are not the method's (common/method/contract.h): they are
 * read here, in test_params, with their defaults in one place. */
#include <cjson/cJSON.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "worker/kinds.h"

/* The test kinds' settings.  Payloads come from tests and drills, so the
 * reading is lenient: a key that is absent or not a number (or a bool) keeps
 * its default. */
typedef struct {
    double ms;    /* sleep: per item */
    double times; /* fail: attempts that fail (1e9: every one) */
    int fatal;    /* fail: not retried */
} test_params_t;

static const test_params_t test_defaults = {.ms = 10, .times = 1e9, .fatal = 0};

static double num_or(const cJSON *o, const char *key, double def) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsNumber(it) ? it->valuedouble : cJSON_IsBool(it) ? cJSON_IsTrue(it) : def;
}

static test_params_t test_params(const sf_job_t *job) {
    test_params_t p = test_defaults;
    if (!job->payload_len) return p;
    cJSON *o = cJSON_ParseWithLength(job->payload, job->payload_len);
    p.ms = num_or(o, "ms", p.ms);
    p.times = num_or(o, "times", p.times);
    p.fatal = num_or(o, "fatal", p.fatal) != 0;
    cJSON_Delete(o);
    return p;
}

int sf_noop_job(sf_wk_t *wk, sf_job_t *job) {
    (void)wk;
    job->status = SF_JOB_OK;
    return 0;
}

static void on_sleep_done(uv_timer_t *t) {
    sf_job_t *job = t->data;
    job->status = job->cancelled ? SF_JOB_CANCELLED : SF_JOB_OK;
    sf_wk_complete(job->wk, job);
}

int sf_sleep_job(sf_wk_t *wk, sf_job_t *job) {
    double ms = test_params(job).ms * (job->item_count ? job->item_count : 1);
    if (ms < 0 || ms > 86400000) {
        job->status = SF_JOB_FATAL;
        snprintf(job->error, sizeof job->error, "sleep: 'ms' = %g is out of range", ms);
        return -1;
    }
    uv_timer_init(sf_wk_loop(wk), &job->timer);
    job->timer.data = job;
    uv_timer_start(&job->timer, on_sleep_done, (uint64_t)ms, 0);
    return 0;
}

int sf_fail_job(sf_wk_t *wk, sf_job_t *job) {
    (void)wk;
    const test_params_t p = test_params(job);
    if (job->attempt <= p.times) {
        job->status = p.fatal ? SF_JOB_FATAL : SF_JOB_FAILED;
        snprintf(job->error, sizeof job->error, "fail: failing as asked on attempt %u", job->attempt);
        return -1;
    }
    job->status = SF_JOB_OK;
    return 0;
}

int sf_crash_job(sf_wk_t *wk, sf_job_t *job) {
    (void)wk;
    (void)job;
    /* As abrupt as SIGKILL: nothing is flushed, no goodbye is sent. */
    raise(SIGKILL);
    _exit(137);
}
