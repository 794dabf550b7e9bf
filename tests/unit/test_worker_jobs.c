/* Unit tests of the worker's job queue (worker/jobq.h), the rules worker.c's
 * on_jobs, on_cancel, start_next and push_result follow, on jobs made here
 * and a clock passed in.
 *
 * Expected values come from the documented rules: a worker asks for
 * slots × prefetch jobs and each result returns one credit once the
 * coordinator has it (docs/protocol.md, "Credit-based flow control";
 * docs/configuration.md, slots and prefetch); slots jobs run at once, the
 * rest wait in the order they came; a Cancel takes back queued jobs, and a
 * drain gives every queued job back as cancelled while running ones finish
 * (worker.c's header); busy time is the time jobs ran, start to result,
 * summed over slots and by kind (docs/metrics.md), none for a job that never
 * started. */
#include <stdint.h>

#include "tests/unit/sf_test.h"
#include "worker/jobq.h"

#define T0 5000000 /* µs on the passed-in clock, far from any real clock's */

static sf_job_t jobs[16];

static sf_job_t *job(int i, uint64_t id) {
    memset(&jobs[i], 0, sizeof jobs[i]);
    jobs[i].id = id;
    return &jobs[i];
}

TEST(credit_is_slots_times_prefetch_less_jobs_held) {
    sf_jobq_t q = {0};
    /* slots 2, prefetch 3: a fresh worker asks for 6. */
    CHECK_EQ_INT(sf_jobq_credit(&q, 2, 3, 0, 0), 6);
    for (int i = 0; i < 4; i++) sf_jobq_push(&q, job(i, 100 + i));
    CHECK_EQ_INT(q.queued, 4);
    /* 4 held (queued or running, it makes no difference): 2 left. */
    CHECK_EQ_INT(sf_jobq_credit(&q, 2, 3, 0, 0), 2);
    CHECK(sf_jobq_take(&q, 2));
    CHECK(sf_jobq_take(&q, 2));
    CHECK_EQ_INT(q.running, 2);
    CHECK_EQ_INT(q.queued, 2);
    CHECK_EQ_INT(sf_jobq_credit(&q, 2, 3, 0, 0), 2);
    /* A finished job whose result is not sent yet still holds its credit:
     * the coordinator gives it back only for a result it has. */
    q.running--;
    CHECK_EQ_INT(sf_jobq_credit(&q, 2, 3, 1, 0), 2);
    CHECK_EQ_INT(sf_jobq_credit(&q, 2, 3, 0, 0), 3);
    /* More held than credit (never below zero), and none while draining. */
    CHECK_EQ_INT(sf_jobq_credit(&q, 2, 3, 10, 0), 0);
    CHECK_EQ_INT(sf_jobq_credit(&q, 2, 3, 0, 1), 0);
}

/* Prefetch 0 (adaptive, docs/configuration.md): the hello's credit is slots
 * + 1, what a coordinator that does not size credit itself gives, and the
 * limit the coordinator may fill up to is 256 a slot, at most 65536 (the
 * protocol's cap on credit); a fixed prefetch sends no limit. */
TEST(adaptive_credit_advertises_slots_plus_one_and_its_limit) {
    sf_jobq_t q = {0};
    CHECK_EQ_INT(sf_jobq_credit(&q, 2, 0, 0, 0), 3);
    sf_jobq_push(&q, job(0, 1));
    CHECK_EQ_INT(sf_jobq_credit(&q, 2, 0, 0, 0), 2);
    CHECK_EQ_INT(sf_jobq_credit(&q, 2, 0, 0, 1), 0);
    CHECK_EQ_INT(sf_jobq_max_credit(1, 0), 256);
    CHECK_EQ_INT(sf_jobq_max_credit(2, 0), 512);
    CHECK_EQ_INT(sf_jobq_max_credit(300, 0), 65536);
    CHECK_EQ_INT(sf_jobq_max_credit(2, 3), 0);
}

TEST(at_most_slots_run_and_jobs_start_in_arrival_order) {
    sf_jobq_t q = {0};
    for (int i = 0; i < 5; i++) sf_jobq_push(&q, job(i, 10 + i));
    sf_job_t *a = sf_jobq_take(&q, 3), *b = sf_jobq_take(&q, 3), *c = sf_jobq_take(&q, 3);
    CHECK(a && b && c);
    CHECK_EQ_INT(a->id, 10);
    CHECK_EQ_INT(b->id, 11);
    CHECK_EQ_INT(c->id, 12);
    /* Every slot busy: nothing more starts. */
    CHECK(sf_jobq_take(&q, 3) == NULL);
    CHECK_EQ_INT(q.running, 3);
    CHECK_EQ_INT(q.queued, 2);
    /* A result frees a slot: the next oldest starts. */
    q.running--;
    sf_job_t *d = sf_jobq_take(&q, 3);
    CHECK(d);
    CHECK_EQ_INT(d->id, 13);
    CHECK(sf_jobq_take(&q, 3) == NULL);
    /* A job that comes later queues behind the one still waiting. */
    sf_jobq_push(&q, job(5, 99));
    q.running -= 2;
    sf_job_t *e = sf_jobq_take(&q, 3), *f = sf_jobq_take(&q, 3);
    CHECK(e && f);
    CHECK_EQ_INT(e->id, 14);
    CHECK_EQ_INT(f->id, 99);
    CHECK(sf_jobq_take(&q, 3) == NULL);
    CHECK_EQ_INT(q.queued, 0);
    CHECK(q.head == NULL && q.tail == NULL);
    /* The queue empties and fills again from nothing. */
    q.running = 0;
    sf_jobq_push(&q, job(6, 7));
    sf_job_t *g = sf_jobq_take(&q, 3);
    CHECK(g);
    CHECK_EQ_INT(g->id, 7);
}

TEST(cancel_takes_back_queued_jobs_only) {
    sf_jobq_t q = {0};
    for (int i = 0; i < 4; i++) sf_jobq_push(&q, job(i, 20 + i));
    sf_job_t *run = sf_jobq_take(&q, 1); /* 20 runs, 21..23 wait */
    CHECK(run);
    uint64_t ids[] = {20, 22, 777}; /* running, queued, unknown */
    CHECK_EQ_INT(sf_jobq_cancel(&q, ids, 3), 1);
    CHECK(!run->cancelled); /* a running job finishes */
    CHECK_EQ_INT(sf_jobq_refusal(run, 0) == NULL, 1);
    q.running--;
    /* The queued jobs come off in order; the cancelled one is refused as
     * cancelled, the others run. */
    sf_job_t *x = sf_jobq_take(&q, 1);
    CHECK(x);
    CHECK_EQ_INT(x->id, 21);
    CHECK(sf_jobq_refusal(x, 0) == NULL);
    q.running--;
    x = sf_jobq_take(&q, 1);
    CHECK(x);
    CHECK_EQ_INT(x->id, 22);
    CHECK(sf_jobq_refusal(x, 0) != NULL);
    CHECK_EQ_STR(sf_jobq_refusal(x, 0), "cancelled");
    q.running--;
    x = sf_jobq_take(&q, 1);
    CHECK(x);
    CHECK_EQ_INT(x->id, 23);
    CHECK(sf_jobq_refusal(x, 0) == NULL);
    /* The oldest queued job, and one named twice, are cancelled once. */
    q.running--;
    sf_jobq_push(&q, job(4, 30));
    sf_jobq_push(&q, job(5, 31));
    uint64_t again[] = {30, 30};
    CHECK_EQ_INT(sf_jobq_cancel(&q, again, 2), 1);
    x = sf_jobq_take(&q, 1);
    CHECK(x);
    CHECK_EQ_INT(x->id, 30);
    CHECK(sf_jobq_refusal(x, 0) != NULL);
    CHECK_EQ_STR(sf_jobq_refusal(x, 0), "cancelled");
}

TEST(drain_gives_queued_jobs_back_as_cancelled) {
    sf_job_t *a = job(0, 1), *b = job(1, 2);
    b->cancelled = 1;
    /* Draining, a job not cancelled goes back as "worker draining"; one a
     * Cancel named says so. */
    CHECK(sf_jobq_refusal(a, 1) != NULL);
    CHECK_EQ_STR(sf_jobq_refusal(a, 1), "worker draining");
    CHECK(sf_jobq_refusal(b, 1) != NULL);
    CHECK_EQ_STR(sf_jobq_refusal(b, 1), "cancelled");
    CHECK(sf_jobq_refusal(a, 0) == NULL);
}

TEST(busy_time_is_start_to_result_by_kind) {
    sf_jobq_t q = {0};
    /* kind 0 ran 1.5 s and 0.25 s; kind 2 ran 3 s. */
    CHECK_EQ_INT(sf_jobq_account(&q, 0, T0, T0 + 1500000), 1500000);
    CHECK_EQ_INT(sf_jobq_account(&q, 0, T0 + 10, T0 + 250010), 250000);
    CHECK_EQ_INT(sf_jobq_account(&q, 2, T0, T0 + 3000000), 3000000);
    CHECK_EQ_INT(q.kind_busy_us[0], 1750000);
    CHECK_EQ_INT(q.kind_jobs[0], 2);
    CHECK_EQ_INT(q.kind_busy_us[1], 0);
    CHECK_EQ_INT(q.kind_jobs[1], 0);
    CHECK_EQ_INT(q.kind_busy_us[2], 3000000);
    CHECK_EQ_INT(q.kind_jobs[2], 1);
    /* Summed over kinds (and so over slots: two jobs at once count twice). */
    CHECK_EQ_INT(sf_jobq_busy_us(&q, 3), 4750000);
    CHECK_EQ_INT(sf_jobq_busy_us(&q, 1), 1750000);
}

TEST(a_job_that_never_started_ran_for_no_time) {
    sf_jobq_t q = {0};
    /* Cancelled or drained while queued: started_us is 0, and the time
     * since the clock's epoch is not busy time. */
    CHECK_EQ_INT(sf_jobq_account(&q, 1, 0, T0), 0);
    CHECK_EQ_INT(q.kind_busy_us[1], 0);
    CHECK_EQ_INT(q.kind_jobs[1], 0);
    /* A job with no handler (an unknown kind) counts toward no kind, though
     * its result says how long it took. */
    CHECK_EQ_INT(sf_jobq_account(&q, -1, T0, T0 + 40), 40);
    CHECK_EQ_INT(sf_jobq_busy_us(&q, SF_JOBQ_MAX_KINDS), 0);
    /* A result's elapsed time is 32-bit µs: a longer one says 0, the busy
     * time still counts it. */
    CHECK_EQ_INT(sf_jobq_account(&q, 3, T0, T0 + 5000000000LL), 0);
    CHECK_EQ_INT(q.kind_busy_us[3], 5000000000LL);
}

int main(void) {
    SF_RUN(credit_is_slots_times_prefetch_less_jobs_held);
    SF_RUN(adaptive_credit_advertises_slots_plus_one_and_its_limit);
    SF_RUN(at_most_slots_run_and_jobs_start_in_arrival_order);
    SF_RUN(cancel_takes_back_queued_jobs_only);
    SF_RUN(drain_gives_queued_jobs_back_as_cancelled);
    SF_RUN(busy_time_is_start_to_result_by_kind);
    SF_RUN(a_job_that_never_started_ran_for_no_time);
    SF_DONE();
}
