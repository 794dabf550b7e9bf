/* jobq.c: the worker's job queue and its bookkeeping (jobq.h). */
#include "worker/jobq.h"

void sf_jobq_push(sf_jobq_t *q, sf_job_t *job) {
    job->next = NULL;
    if (q->tail) q->tail->next = job;
    else q->head = job;
    q->tail = job;
    q->queued++;
}

sf_job_t *sf_jobq_take(sf_jobq_t *q, long slots) {
    if (!q->head || q->running >= slots) return NULL;
    sf_job_t *j = q->head;
    q->head = j->next;
    if (!q->head) q->tail = NULL;
    q->queued--;
    q->running++;
    return j;
}

const char *sf_jobq_refusal(const sf_job_t *job, int draining) {
    if (job->cancelled) return "cancelled";
    if (draining) return "worker draining";
    return NULL;
}

int sf_jobq_cancel(sf_jobq_t *q, const uint64_t *ids, size_t n_ids) {
    int n = 0;
    for (size_t i = 0; i < n_ids; i++)
        for (sf_job_t *j = q->head; j; j = j->next)
            if (j->id == ids[i] && !j->cancelled) {
                j->cancelled = 1;
                n++;
            }
    return n;
}

uint32_t sf_jobq_credit(const sf_jobq_t *q, long slots, long prefetch, int n_unsent, int draining) {
    long cap = (prefetch > 0 ? slots * prefetch : slots + 1) - q->queued - q->running - n_unsent;
    return cap > 0 && !draining ? (uint32_t)cap : 0;
}

uint32_t sf_jobq_max_credit(long slots, long prefetch) {
    if (prefetch > 0) return 0;
    long m = slots * SF_JOBQ_ADAPTIVE_PER_SLOT;
    return m > 65536 ? 65536 : (uint32_t)m;
}

uint32_t sf_jobq_account(sf_jobq_t *q, int hi, int64_t started_us, int64_t now_us) {
    int64_t el = started_us ? now_us - started_us : 0;
    if (hi >= 0 && hi < SF_JOBQ_MAX_KINDS && el > 0) {
        q->kind_busy_us[hi] += el;
        q->kind_jobs[hi]++;
    }
    return el > 0 && el < UINT32_MAX ? (uint32_t)el : 0;
}

int64_t sf_jobq_busy_us(const sf_jobq_t *q, int n_kinds) {
    int64_t t = 0;
    for (int i = 0; i < n_kinds && i < SF_JOBQ_MAX_KINDS; i++) t += q->kind_busy_us[i];
    return t;
}
