/* jobq.h: the worker's job queue and its bookkeeping, apart from sockets and
 * the loop: the jobs received and not started (first in, first out), how
 * many run, the credit the worker may ask for, which queued job is started
 * or given back next, and the time jobs ran by kind.  worker.c drives it;
 * keeping the rules here lets tests/unit/test_worker_jobs.c check them with
 * a clock of its own.
 */
#ifndef SF_WORKER_JOBQ_H
#define SF_WORKER_JOBQ_H

#include <stddef.h>
#include <stdint.h>

#include "worker/worker.h"

#define SF_JOBQ_MAX_KINDS 64

typedef struct {
    sf_job_t *head, *tail;  /* received, not started */
    int queued, running;
    int64_t kind_busy_us[SF_JOBQ_MAX_KINDS]; /* summed time jobs ran (started to
                                                done), by handler index */
    uint64_t kind_jobs[SF_JOBQ_MAX_KINDS];
} sf_jobq_t;

/* Appends a received job (the queue holds it until sf_jobq_take). */
void sf_jobq_push(sf_jobq_t *q, sf_job_t *job);

/* Takes the oldest queued job when fewer than `slots` run, counting it as
 * running (the caller completes it, started or cancelled); NULL when the
 * queue is empty or every slot is busy. */
sf_job_t *sf_jobq_take(sf_jobq_t *q, long slots);

/* Why a job just taken must not start: "cancelled" (a Cancel named it while
 * it was queued), "worker draining" (queued jobs go back on a drain), or NULL
 * when it runs. */
const char *sf_jobq_refusal(const sf_job_t *job, int draining);

/* Marks the queued jobs whose ids are listed as cancelled; running jobs are
 * not touched (they finish).  Returns how many were marked. */
int sf_jobq_cancel(sf_jobq_t *q, const uint64_t *ids, size_t n_ids);

/* Adaptive credit (prefetch 0): the most jobs a worker lets the
 * coordinator send it, per slot (Hello.max_credit = slots × this, at most
 * 65536).  The coordinator sizes the backlog within it from measured job
 * times and round trips (coordinator/broker.c, sf_credit_hold). */
#define SF_JOBQ_ADAPTIVE_PER_SLOT 256

/* The credit to advertise: slots × prefetch less the jobs held — queued,
 * running, and finished with the result not sent yet (n_unsent), since each
 * result returns its credit only when the coordinator has it; 0 while
 * draining.  Prefetch 0 (adaptive) advertises slots + 1, what a coordinator
 * that does not size credit itself then gives. */
uint32_t sf_jobq_credit(const sf_jobq_t *q, long slots, long prefetch, int n_unsent, int draining);

/* Hello.max_credit: slots × SF_JOBQ_ADAPTIVE_PER_SLOT (at most 65536) for
 * prefetch 0, else 0 (a fixed credit). */
uint32_t sf_jobq_max_credit(long slots, long prefetch);

/* Accounts a finished job: the time it ran, now_us - started_us, is added
 * to kind `hi`'s busy time when it ran at all (hi >= 0: it had a handler;
 * started_us 0: it never started, cancelled or drained while queued, and
 * ran for no time).  Returns the elapsed time for the result (0 when none,
 * or when it does not fit in 32 bits). */
uint32_t sf_jobq_account(sf_jobq_t *q, int hi, int64_t started_us, int64_t now_us);

/* The busy time of the first n_kinds kinds, summed. */
int64_t sf_jobq_busy_us(const sf_jobq_t *q, int n_kinds);

#endif
