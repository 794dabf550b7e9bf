/* handlers.c: the built-in job kinds that need no model — for tests,
 * benchmarks and fault drills:
 *   noop    succeeds at once;
 *   sleep   succeeds after payload "ms" milliseconds per item of its shard
 *           (default 10), so a shard of 4 items sleeps 4 × ms;
 *   fail    fails the first payload "times" attempts (default: always), then
 *           succeeds; with "fatal": true the failure is not retried;
 *   crash   exits the worker process on the spot (as a SIGKILL would). */
#include <cjson/cJSON.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "worker/worker.h"

static int noop(sf_wk_t *wk, sf_job_t *job) {
    (void)wk;
    job->status = SF_JOB_OK;
    return 0;
}

static double payload_num(const sf_job_t *job, const char *key, double def) {
    if (!job->payload_len) return def;
    cJSON *o = cJSON_ParseWithLength(job->payload, job->payload_len);
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, key);
    double v = cJSON_IsNumber(it) ? it->valuedouble : cJSON_IsBool(it) ? cJSON_IsTrue(it) : def;
    cJSON_Delete(o);
    return v;
}

static void on_sleep_done(uv_timer_t *t) {
    sf_job_t *job = t->data;
    job->status = job->cancelled ? SF_JOB_CANCELLED : SF_JOB_OK;
    sf_wk_complete(job->wk, job);
}

static int sleep_(sf_wk_t *wk, sf_job_t *job) {
    double ms = payload_num(job, "ms", 10) * (job->item_count ? job->item_count : 1);
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

static int fail(sf_wk_t *wk, sf_job_t *job) {
    (void)wk;
    double times = payload_num(job, "times", 1e9);
    int fatal = payload_num(job, "fatal", 0) != 0;
    if (job->attempt <= times) {
        job->status = fatal ? SF_JOB_FATAL : SF_JOB_FAILED;
        snprintf(job->error, sizeof job->error, "fail: failing as asked on attempt %u", job->attempt);
        return -1;
    }
    job->status = SF_JOB_OK;
    return 0;
}

static int crash(sf_wk_t *wk, sf_job_t *job) {
    (void)wk;
    (void)job;
    /* As abrupt as SIGKILL: nothing is flushed, no goodbye is sent. */
    raise(SIGKILL);
    _exit(137);
}

const sf_handler_t sf_builtin_handlers[] = {
    {"noop", SF_RUN_INLINE, noop, "succeeds at once"},
    {"sleep", SF_RUN_TIMER, sleep_, "succeeds after payload ms per item"},
    {"fail", SF_RUN_INLINE, fail, "fails payload times attempts, then succeeds"},
    {"crash", SF_RUN_INLINE, crash, "kills the worker process"},
    {NULL, 0, NULL, NULL},
};
