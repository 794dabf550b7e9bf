/* Unit tests of coordinator/runs.c: a run's states (queued, running, done),
 * phases that wait for Redis's acknowledgements, the job layout, priority
 * order, the ready ring, per-class result counts, and the learner window
 * that reopens on the injected clock.  The store is the harness's record
 * (coord_harness.h), not Redis.
 *
 * Expected values come from the documented rules (runs.c's header and
 * docs/configuration.md, "Run spec") worked out by hand, not from the code. */
#include "tests/unit/coord_harness.h"
#include "tests/unit/sf_test.h"

#define T0 1000000

static sf_coord_t c;
static th_worker_t w1;

TEST(run_goes_queued_running_done_and_phases_wait_for_acks) {
    CHECK(th_coord_init(&c, T0) == 0);
    sf_run_t *r = th_submit(&c, "{\"method\":\"phases\",\"classes\":[\"n01440764\"],\"phases\":["
                                "{\"kind\":\"sleep\",\"name\":\"a\",\"items_per_class\":2},"
                                "{\"kind\":\"noop\",\"name\":\"b\"}]}", 1);
    CHECK(r);
    CHECK_EQ_INT(r->n_jobs, 3);
    CHECK_EQ_INT(r->state, RUN_QUEUED);
    CHECK_EQ_INT(r->started_ms, 0);
    CHECK(!th_has_event(1, "running"));
    /* A worker of both kinds with room for all: only phase a goes out. */
    CHECK(th_worker_hello(&c, &w1, "w1", "sleep,noop", 10) == 0);
    uint64_t ids[4];
    uint32_t att[4];
    CHECK_EQ_INT(th_worker_jobs(&w1, ids, att, 4), 2);
    CHECK_EQ_INT(r->state, RUN_RUNNING);
    CHECK(r->started_ms > 0);
    CHECK(th_has_event(1, "running"));
    for (int i = 0; i < 2; i++) CHECK(th_worker_result(&c, &w1, ids[i], 1, SF__RESULT__STATUS__OK) == 0);
    /* Done, not yet acknowledged by Redis: nothing counts, phase b waits. */
    CHECK_EQ_INT(th_count(TH_DONE, 1), 2);
    CHECK_EQ_INT(r->done, 0);
    CHECK_EQ_INT(r->phase, 0);
    th_tick(&c, T0 + 200);
    CHECK_EQ_INT(c.st.dispatched, 2);
    th_ack(&c);
    CHECK_EQ_INT(r->done, 2);
    CHECK_EQ_INT(r->phases[0].done, 2);
    CHECK_EQ_INT(r->phase, 1);
    CHECK(th_has_event(1, "phase_done"));
    CHECK_EQ_INT(r->state, RUN_RUNNING);
    th_tick(&c, T0 + 300);
    CHECK_EQ_INT(th_worker_jobs(&w1, ids, att, 4), 1);
    CHECK_EQ_INT(sf_job_index(ids[0]), 2);
    CHECK(th_worker_result(&c, &w1, ids[0], 1, SF__RESULT__STATUS__OK) == 0);
    CHECK_EQ_INT(r->state, RUN_RUNNING);
    th_ack(&c);
    CHECK_EQ_INT(r->state, RUN_DONE);
    CHECK_EQ_INT(r->done, 3);
    CHECK(r->finished_ms >= r->started_ms);
    CHECK(th_has_event(1, "done"));
    cJSON *st = sf_run_json(&c, r, 0);
    CHECK_EQ_STR(cJSON_GetObjectItem(st, "state")->valuestring, "done");
    cJSON_Delete(st);
    th_worker_close(&w1);
    th_coord_free(&c);
}

TEST(jobs_are_shards_of_classes) {
    CHECK(th_coord_init(&c, T0) == 0);
    /* 10 items in shards of 4: 3 shards per class (4, 4, 2), 3 classes. */
    sf_run_t *r = th_submit(&c, "{\"kind\":\"noop\",\"classes\":[\"n01440764\",\"n01443537\",\"n01484850\"],"
                                "\"items_per_class\":10,\"shard_size\":4}", 2);
    CHECK(r);
    CHECK_EQ_INT(r->n_jobs, 9);
    static const struct { uint32_t idx; int cls; uint32_t start, count; } want[] = {
        {0, 0, 0, 4}, {2, 0, 8, 2}, {3, 1, 0, 4}, {4, 1, 4, 4}, {8, 2, 8, 2},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        const char *wnid;
        uint32_t start, count;
        int cls;
        CHECK_EQ_INT(sf_run_job_shard(r, want[i].idx, &wnid, &start, &count, &cls), 1);
        CHECK_EQ_INT(cls, want[i].cls);
        CHECK_EQ_INT(start, want[i].start);
        CHECK_EQ_INT(count, want[i].count);
        CHECK_EQ_STR(wnid, r->classes->v[want[i].cls].wnid);
    }
    CHECK_EQ_STR(r->classes->v[1].wnid, "n01443537");
    th_coord_free(&c);
}

TEST(runs_are_in_priority_order_fifo_within) {
    CHECK(th_coord_init(&c, T0) == 0);
    static const int prio[] = {0, 5, 0, 5, -3};
    char spec[160];
    for (int i = 0; i < 5; i++) {
        snprintf(spec, sizeof spec, "{\"kind\":\"noop\",\"classes\":[\"n01440764\"],\"priority\":%d}", prio[i]);
        CHECK(th_submit(&c, spec, (uint32_t)i + 1));
    }
    static const uint32_t order[] = {2, 4, 1, 3, 5};
    int k = 0;
    for (sf_run_t *r = c.runs; r; r = r->next, k++) CHECK_EQ_INT(r->num, order[k]);
    CHECK_EQ_INT(k, 5);
    CHECK_EQ_STR(sf_runs_find(&c, "r4")->id, "r4");
    CHECK(sf_runs_find(&c, "r9") == NULL);
    th_coord_free(&c);
}

TEST(ready_ring_is_fifo_across_growth_and_wrap) {
    sf_ring_t q = {0};
    uint32_t v, next_out = 0, next_in = 0;
    /* Interleaved so the ring wraps before it grows past its first 256. */
    for (int round = 0; round < 10; round++) {
        for (int i = 0; i < 100; i++) CHECK_EQ_INT(sf_ring_push(&q, next_in++), 0);
        for (int i = 0; i < 60; i++) {
            CHECK(sf_ring_pop(&q, &v));
            CHECK_EQ_INT(v, next_out++);
        }
    }
    CHECK_EQ_INT(q.len, 400);
    while (sf_ring_pop(&q, &v)) CHECK_EQ_INT(v, next_out++);
    CHECK_EQ_INT(next_out, 1000);
    CHECK(!sf_ring_pop(&q, &v));
    free(q.v);
}

TEST(results_add_per_class_counts) {
    CHECK(th_coord_init(&c, T0) == 0);
    sf_run_t *r = th_submit(&c, "{\"kind\":\"generate\",\"classes\":[\"n01440764\",\"n01443537\"],"
                                "\"items_per_class\":2}", 3);
    CHECK(r);
    const char *a = "{\"generated\":5,\"kept\":3,\"dropped\":2}", *b = "{\"generated\":1,\"kept\":1}";
    CHECK_EQ_INT(sf_run_count_result(r, 2, a, strlen(a)), 1); /* job 2: class 1 */
    CHECK_EQ_INT(sf_run_count_result(r, 3, b, strlen(b)), 1);
    CHECK_EQ_INT(sf_run_count_result(r, 0, "oops", 4), 0);
    CHECK_EQ_INT(sf_run_count_result(r, 1, "{\"kept\":-1}", 11), 0);
    CHECK_EQ_INT(r->class_stat[1][SF_STAT_GENERATED], 6);
    CHECK_EQ_INT(r->class_stat[1][SF_STAT_KEPT], 4);
    CHECK_EQ_INT(r->class_stat[1][SF_STAT_DROPPED], 2);
    CHECK_EQ_INT(r->class_stat[0][SF_STAT_GENERATED] + r->class_stat[0][SF_STAT_KEPT], 0);
    th_coord_free(&c);
}

TEST(state_names_round_trip) {
    static const char *names[] = {"queued", "running", "done", "failed", "cancelled"};
    for (int i = 0; i <= RUN_CANCELLED; i++) {
        CHECK_EQ_STR(sf_run_state_name(i), names[i]);
        CHECK_EQ_INT(sf_run_state_parse(names[i]), i);
    }
    CHECK_EQ_INT(sf_run_state_parse("paused"), -1);
    CHECK_EQ_INT(sf_run_state_parse(NULL), -1);
}

/* Job idx of r done and acknowledged, as a result and its ack would. */
static void job_done(sf_run_t *r, uint32_t idx) {
    r->jobs[idx].state = JS_ACKING;
    sf_run_count_queued(r, idx, 0, NULL, 0);
    sf_run_count_acked(&c, r, idx, 0);
}

TEST(learner_window_reopens_after_the_learner_idles_3s) {
    CHECK(th_coord_init(&c, T0) == 0);
    sf_run_t *r = th_submit(&c, "{\"method\":\"phases\",\"classes\":[\"n01440764\"],\"phases\":["
                                "{\"kind\":\"rollout\",\"items_per_class\":100,\"until\":\"learner_done\"}]}", 4);
    CHECK(r);
    sf_phase_t *p = &r->phases[0];
    p->per_update = 2; /* the shift planner sets it; two jobs per update here */
    uint64_t kinds = 1ull << p->kind_id;
    /* At version 0 the window holds (0 + 2) updates: 4 jobs. */
    for (uint32_t i = 0; i < 4; i++) CHECK_EQ_INT(sf_run_take(&c, r, kinds), i);
    CHECK_EQ_INT(sf_run_take(&c, r, kinds), -1);
    for (uint32_t i = 0; i < 4; i++) job_done(r, i);
    /* Every job handed out is done; the learner says it is idle at version 0. */
    r->learner_idle = 1;
    sf_run_learner_state(&c, r, 0, 0, NULL);
    int64_t idle_at = th_now_ms;
    th_now_ms = idle_at + 2999;
    sf_run_learner_state(&c, r, 0, 0, NULL);
    CHECK_EQ_INT(sf_run_take(&c, r, kinds), -1);
    th_now_ms = idle_at + 3000;
    CHECK_EQ_INT(sf_run_take(&c, r, kinds), 4);
    CHECK_EQ_INT(sf_run_take(&c, r, kinds), 5);
    CHECK_EQ_INT(sf_run_take(&c, r, kinds), -1);
    CHECK_EQ_INT(p->reopened, 1);
    /* A new version opens the window by an update's worth at once. */
    r->learner_idle = 0;
    sf_run_learner_state(&c, r, 1, 0, NULL);
    CHECK_EQ_INT(sf_run_take(&c, r, kinds), 6);
    CHECK_EQ_INT(sf_run_take(&c, r, kinds), 7);
    CHECK_EQ_INT(sf_run_take(&c, r, kinds), -1);
    /* The learner is done: what was never handed out is skipped, and with
     * every handed-out job acknowledged the run is done. */
    for (uint32_t i = 4; i < 8; i++) job_done(r, i);
    sf_run_learner_state(&c, r, 1, 1, NULL);
    CHECK_EQ_INT(p->skipped, 92);
    CHECK_EQ_INT(r->state, RUN_DONE);
    CHECK(th_has_event(4, "learner_done"));
    th_coord_free(&c);
}

int main(void) {
    SF_RUN(run_goes_queued_running_done_and_phases_wait_for_acks);
    SF_RUN(jobs_are_shards_of_classes);
    SF_RUN(runs_are_in_priority_order_fifo_within);
    SF_RUN(ready_ring_is_fifo_across_growth_and_wrap);
    SF_RUN(results_add_per_class_counts);
    SF_RUN(state_names_round_trip);
    SF_RUN(learner_window_reopens_after_the_learner_idles_3s);
    SF_DONE();
}
