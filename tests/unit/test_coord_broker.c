/* Unit tests of coordinator/broker.c (and the cancel of clients.c) on an
 * injected monotonic clock: liveness, lease expiry, retry backoff,
 * dead-lettering, stale and duplicate results, cancellation.  The store is
 * the harness's record (coord_harness.h), not Redis; the workers are fake
 * peers on the real protocol.
 *
 * Expected times come from the settings' documented meaning
 * (docs/configuration.md): a worker is dead after heartbeat_ms x liveness of
 * silence; a job's lease is lease_ms from its dispatch; the first retry waits
 * retry_base_ms, doubling with each attempt up to retry_max_ms.  The clock
 * starts far from the wall clock's value, so a decision left on the wall
 * clock fails these tests. */
#include "tests/unit/coord_harness.h"
#include "tests/unit/sf_test.h"

#include <unistd.h>
#include <zmq.h>

#define T0 1000000 /* ms on the injected clock: 16 minutes, not 56 years */

static sf_coord_t c;
static th_worker_t w1, w2;

static void *client;

static void done(void) {
    if (client) zmq_close(client);
    client = NULL;
    th_worker_close(&w1);
    th_worker_close(&w2);
    th_coord_free(&c);
}

TEST(worker_silent_past_liveness_is_dead_and_its_jobs_requeued) {
    CHECK(th_coord_init(&c, T0) == 0);
    sf_run_t *r = th_submit(&c, "{\"kind\":\"sleep\",\"classes\":[\"n01440764\"],\"items_per_class\":4}", 1);
    CHECK(r);
    CHECK(th_worker_hello(&c, &w1, "w1", "sleep", 2) == 0);
    uint64_t ids[8], ids2[8];
    uint32_t att[8], att2[8];
    CHECK_EQ_INT(th_worker_jobs(&w1, ids, att, 8), 2);
    CHECK_EQ_INT(r->leased, 2);
    CHECK_EQ_INT(r->state, RUN_RUNNING);
    /* Heard at T0+2000; the window is 1000 ms x 3. */
    th_tick(&c, T0 + 2000);
    CHECK(th_worker_heartbeat(&c, &w1) == 0);
    th_tick(&c, T0 + 2000 + 2999);
    CHECK(c.workers[0].used);
    CHECK_EQ_INT(c.st.workers_died, 0);
    CHECK_EQ_INT(r->leased, 2);
    CHECK_EQ_INT(c.st.requeued, 0);
    th_tick(&c, T0 + 2000 + 3001);
    CHECK(!c.workers[0].used);
    CHECK_EQ_INT(c.st.workers_died, 1);
    CHECK_EQ_INT(th_count(TH_WORKER_GONE, 0), 1);
    CHECK_EQ_INT(r->leased, 0);
    CHECK_EQ_INT(c.st.requeued, 2);
    CHECK_EQ_INT(th_count(TH_REQUEUED, 1), 2);
    for (int i = 0; i < 2; i++) CHECK_EQ_INT(r->jobs[sf_job_index(ids[i])].state, JS_READY);
    /* Another worker gets every job: the two given back on their second
     * attempt, the two never handed out on their first. */
    CHECK(th_worker_hello(&c, &w2, "w2", "sleep", 8) == 0);
    CHECK_EQ_INT(th_worker_jobs(&w2, ids2, att2, 8), 4);
    for (int i = 0; i < 4; i++) {
        int requeued = ids2[i] == ids[0] || ids2[i] == ids[1];
        CHECK_EQ_INT(att2[i], requeued ? 2 : 1);
    }
    done();
}

TEST(lease_expires_at_its_deadline_not_before) {
    CHECK(th_coord_init(&c, T0) == 0);
    c.cfg.heartbeat_ms = 1;     /* leases are checked each heartbeat interval: here, every tick */
    c.cfg.liveness = 1000000;   /* the worker stays alive throughout */
    /* Dispatched 999 ms after start, so the deadline is not on a whole second. */
    th_tick(&c, T0 + 999);
    sf_run_t *r = th_submit(&c, "{\"kind\":\"sleep\",\"classes\":[\"n01440764\"],\"lease_ms\":2000}", 2);
    CHECK(r);
    CHECK(th_worker_hello(&c, &w1, "w1", "sleep", 1) == 0);
    uint64_t id;
    uint32_t att;
    CHECK_EQ_INT(th_worker_jobs(&w1, &id, &att, 1), 1);
    CHECK_EQ_INT(att, 1);
    th_tick(&c, T0 + 999 + 2000 - 1);
    CHECK_EQ_INT(r->jobs[0].state, JS_LEASED);
    CHECK_EQ_INT(c.st.expired, 0);
    /* The deadline (T0+2999) has passed at the next whole second of uptime,
     * the resolution a job slot keeps: late by less than a second, never early. */
    th_tick(&c, T0 + 3000);
    CHECK_EQ_INT(c.st.expired, 1);
    CHECK_EQ_INT(r->jobs[0].state, JS_READY);
    CHECK_EQ_INT(th_count(TH_REQUEUED, 2), 1);
    CHECK_EQ_INT(r->leased, 0);
    /* The expired attempt's result comes late: stale, it counts for nothing,
     * and the credit it returns takes the job again, as attempt 2. */
    CHECK(th_worker_result(&c, &w1, id, 1, SF__RESULT__STATUS__OK) == 0);
    CHECK_EQ_INT(c.st.results_stale, 1);
    CHECK_EQ_INT(th_count(TH_DONE, 2), 0);
    CHECK_EQ_INT(th_worker_jobs(&w1, &id, &att, 1), 1);
    CHECK_EQ_INT(att, 2);
    /* Dispatched at uptime 3000: a deadline on a whole second, exactly. */
    th_tick(&c, T0 + 5000 - 1);
    CHECK_EQ_INT(c.st.expired, 1);
    CHECK_EQ_INT(r->jobs[0].state, JS_LEASED);
    th_tick(&c, T0 + 5000);
    CHECK_EQ_INT(c.st.expired, 2);
    CHECK_EQ_INT(r->jobs[0].state, JS_READY);
    done();
}

/* Fails job `id` on attempt `want` and checks that it waits `delay` ms on
 * the clock before it is handed out again. */
static int fail_and_wait(sf_run_t *r, uint64_t *id, uint32_t want, int64_t delay) {
    uint32_t att = 0;
    uint64_t dispatched = c.st.dispatched;
    if (th_worker_result(&c, &w1, *id, want, SF__RESULT__STATUS__FAILED) != 0) return __LINE__;
    if (r->jobs[0].state != JS_BACKOFF) return __LINE__;
    int64_t t = th_now_ms;
    th_tick(&c, t + delay - 1);
    if (r->jobs[0].state != JS_BACKOFF || c.st.dispatched != dispatched) return __LINE__;
    th_tick(&c, t + delay);
    if (c.st.dispatched != dispatched + 1 || r->jobs[0].state != JS_LEASED) return __LINE__;
    if (th_worker_jobs(&w1, id, &att, 1) != 1 || att != want + 1) return __LINE__;
    return 0;
}

TEST(retry_backoff_delays_a_failed_job_until_its_time) {
    CHECK(th_coord_init(&c, T0) == 0);
    c.cfg.liveness = 1000;
    sf_run_t *r = th_submit(&c, "{\"kind\":\"sleep\",\"classes\":[\"n01440764\"],\"max_attempts\":4,"
                                "\"retry_base_ms\":500,\"retry_max_ms\":1500}", 3);
    CHECK(r);
    CHECK(th_worker_hello(&c, &w1, "w1", "sleep", 1) == 0);
    uint64_t id;
    uint32_t att;
    CHECK_EQ_INT(th_worker_jobs(&w1, &id, &att, 1), 1);
    CHECK_EQ_INT(fail_and_wait(r, &id, 1, 500), 0);
    CHECK_EQ_INT(fail_and_wait(r, &id, 2, 1000), 0);
    CHECK_EQ_INT(fail_and_wait(r, &id, 3, 1500), 0); /* 2000, capped at retry_max_ms */
    CHECK_EQ_INT(r->retries, 3);
    CHECK_EQ_INT(th_count(TH_REQUEUED, 3), 3);
    /* The fourth of four attempts fails: dead-lettered, and the run fails
     * once Redis has acknowledged it. */
    CHECK(th_worker_result(&c, &w1, id, 4, SF__RESULT__STATUS__FAILED) == 0);
    CHECK_EQ_INT(th_count(TH_DEAD, 3), 1);
    CHECK_EQ_INT(c.st.dead_lettered, 1);
    CHECK_EQ_INT(r->state, RUN_RUNNING);
    th_ack(&c);
    CHECK_EQ_INT(r->dead, 1);
    CHECK_EQ_INT(r->state, RUN_FAILED);
    CHECK(th_has_event(3, "failed"));
    done();
}

TEST(fatal_result_is_dead_at_once_and_duplicates_count_once) {
    CHECK(th_coord_init(&c, T0) == 0);
    sf_run_t *r = th_submit(&c, "{\"kind\":\"sleep\",\"classes\":[\"n01440764\"],\"items_per_class\":2}", 4);
    CHECK(r);
    CHECK(th_worker_hello(&c, &w1, "w1", "sleep", 2) == 0);
    uint64_t ids[2];
    uint32_t att[2];
    CHECK_EQ_INT(th_worker_jobs(&w1, ids, att, 2), 2);
    CHECK(th_worker_result(&c, &w1, ids[0], 1, SF__RESULT__STATUS__OK) == 0);
    CHECK(th_worker_result(&c, &w1, ids[0], 1, SF__RESULT__STATUS__OK) == 0);
    CHECK_EQ_INT(c.st.results_ok, 1);
    CHECK_EQ_INT(c.st.results_dup, 1);
    CHECK_EQ_INT(th_count(TH_DONE, 4), 1);
    CHECK(th_worker_result(&c, &w1, ids[1], 1, SF__RESULT__STATUS__FATAL) == 0);
    CHECK_EQ_INT(th_count(TH_DEAD, 4), 1);
    CHECK_EQ_INT(th_count(TH_REQUEUED, 4), 0);
    th_ack(&c);
    CHECK_EQ_INT(r->done, 1);
    CHECK_EQ_INT(r->dead, 1);
    CHECK_EQ_INT(r->state, RUN_FAILED);
    done();
}

TEST(job_that_kills_its_workers_is_dead_lettered) {
    CHECK(th_coord_init(&c, T0) == 0);
    sf_run_t *r = th_submit(&c, "{\"kind\":\"sleep\",\"classes\":[\"n01440764\"],\"max_attempts\":1}", 5);
    CHECK(r);
    CHECK(th_worker_hello(&c, &w1, "w1", "sleep", 1) == 0);
    uint64_t id;
    uint32_t att;
    CHECK_EQ_INT(th_worker_jobs(&w1, &id, &att, 1), 1);
    th_tick(&c, T0 + 3001);
    CHECK_EQ_INT(c.st.workers_died, 1);
    CHECK_EQ_INT(th_count(TH_DEAD, 5), 1);
    CHECK_EQ_INT(th_count(TH_REQUEUED, 5), 0);
    th_ack(&c);
    CHECK_EQ_INT(r->state, RUN_FAILED);
    done();
}

/* A client: a DEALER with routing id "client" on the coordinator's client
 * ROUTER, so that replies sent at once (errors, status) can be read back. */
static char last_reply_error[512];

/* A request from a client, through clients.c as a frame (as main.c's
 * drain hands it over); the error text of an immediate reply lands in
 * last_reply_error ("" when it had none, or no reply came at once). */
static void client_request_full(Sf__Request__Op op, const char *run, const char *spec) {
    if (!client) {
        client = zmq_socket(c.zctx, ZMQ_DEALER);
        int ms = 200, linger = 0;
        zmq_setsockopt(client, ZMQ_RCVTIMEO, &ms, sizeof ms);
        zmq_setsockopt(client, ZMQ_LINGER, &linger, sizeof linger);
        zmq_setsockopt(client, ZMQ_ROUTING_ID, "client", 6);
        char ep[128];
        size_t eplen = sizeof ep;
        zmq_getsockopt(c.csock, ZMQ_LAST_ENDPOINT, ep, &eplen);
        zmq_connect(client, ep);
    }
    Sf__Request q = SF__REQUEST__INIT;
    q.tag = 1;
    q.op = op;
    q.run = (char *)(run ? run : "");
    q.spec_json = (char *)(spec ? spec : "");
    Sf__Envelope env = SF__ENVELOPE__INIT;
    env.body_case = SF__ENVELOPE__BODY_REQUEST;
    env.request = &q;
    uint8_t *buf = NULL;
    size_t cap = 0;
    long n = sf_wire_pack(&env, &buf, &cap);
    if (n > 0) sf_clients_on_frame(&c, "client", 6, buf, (size_t)n);
    free(buf);
    last_reply_error[0] = 0;
    zmq_msg_t m;
    zmq_msg_init(&m);
    if (zmq_msg_recv(&m, client, 0) >= 0) {
        Sf__Envelope *e = NULL;
        char err[256];
        if (sf_wire_decode(zmq_msg_data(&m), zmq_msg_size(&m), &e, err, sizeof err) == 0 &&
            e->body_case == SF__ENVELOPE__BODY_REPLY && e->reply->error)
            snprintf(last_reply_error, sizeof last_reply_error, "%s", e->reply->error);
        if (e) sf_wire_free(e);
    }
    zmq_msg_close(&m);
}

static void client_request(Sf__Request__Op op, const char *run) { client_request_full(op, run, NULL); }
static void client_request_spec(const char *spec) { client_request_full(SF__REQUEST__OP__SUBMIT, NULL, spec); }

TEST(cancel_stops_a_run_and_tells_its_workers) {
    CHECK(th_coord_init(&c, T0) == 0);
    sf_run_t *r = th_submit(&c, "{\"kind\":\"sleep\",\"classes\":[\"n01440764\"],\"items_per_class\":4}", 6);
    CHECK(r);
    CHECK(th_worker_hello(&c, &w1, "w1", "sleep", 2) == 0);
    uint64_t ids[2];
    uint32_t att[2];
    CHECK_EQ_INT(th_worker_jobs(&w1, ids, att, 2), 2);
    client_request(SF__REQUEST__OP__CANCEL, "r6");
    CHECK_EQ_INT(r->state, RUN_CANCELLED);
    CHECK(r->finished_ms > 0);
    CHECK(th_has_event(6, "cancelled"));
    Sf__Envelope *cm = th_worker_recv(&w1, SF__ENVELOPE__BODY_CANCEL);
    CHECK(cm);
    int both = cm->cancel->n_ids == 2 && ((cm->cancel->ids[0] == ids[0] && cm->cancel->ids[1] == ids[1]) ||
                                          (cm->cancel->ids[0] == ids[1] && cm->cancel->ids[1] == ids[0]));
    sf_wire_free(cm);
    CHECK(both);
    /* A result that comes anyway is not counted, and nothing more goes out
     * though the worker has credit again. */
    CHECK(th_worker_result(&c, &w1, ids[0], 1, SF__RESULT__STATUS__OK) == 0);
    CHECK_EQ_INT(th_count(TH_DONE, 6), 0);
    CHECK_EQ_INT(r->done_w, 0);
    th_tick(&c, T0 + 1000);
    CHECK_EQ_INT(c.st.dispatched, 2);
    th_ack(&c);
    CHECK_EQ_INT(r->state, RUN_CANCELLED);
    done();
}

/* A spec whose payload is a string field of `bytes` characters. */
static char *spec_with_payload(size_t bytes, int items) {
    char *s = malloc(bytes + 200);
    if (!s) return NULL;
    int k = snprintf(s, 200, "{\"kind\":\"sleep\",\"classes\":[\"n01440764\"],\"items_per_class\":%d,"
                             "\"payload\":{\"pad\":\"", items);
    memset(s + k, 'x', bytes);
    strcpy(s + k + bytes, "\"}}");
    return s;
}

TEST(payloads_over_the_job_cap_are_refused_at_submit) {
    CHECK(th_coord_init(&c, T0) == 0);
    char *spec = spec_with_payload(5u << 20, 1);
    CHECK(spec);
    sf_run_t *r = NULL;
    char err[512];
    CHECK(sf_run_create(&c, spec, 7, &r, err, sizeof err) != 0);
    CHECK(r == NULL);
    /* The message names the cap, in bytes. */
    CHECK(strstr(err, "4194304") != NULL);
    free(spec);
    done();
}

TEST(a_retry_base_above_its_cap_is_refused) {
    CHECK(th_coord_init(&c, T0) == 0);
    sf_run_t *r = NULL;
    char err[512];
    CHECK(sf_run_create(&c, "{\"kind\":\"sleep\",\"classes\":[\"n01440764\"],\"retry_base_ms\":5000,"
                            "\"retry_max_ms\":1000}", 7, &r, err, sizeof err) != 0);
    CHECK(strstr(err, "retry_base_ms") && strstr(err, "retry_max_ms"));
    /* Against the coordinator's default cap (60 s) too. */
    CHECK(sf_run_create(&c, "{\"kind\":\"sleep\",\"classes\":[\"n01440764\"],\"retry_base_ms\":70000}", 7, &r,
                        err, sizeof err) != 0);
    CHECK(strstr(err, "default") != NULL);
    CHECK(r == NULL);
    done();
}

TEST(a_spec_with_text_after_it_or_a_key_twice_is_refused) {
    CHECK(th_coord_init(&c, T0) == 0);
    sf_run_t *r = NULL;
    char err[512];
    /* Another client than sfctl may send these; the coordinator reads
     * specs as strictly as sfctl does. */
    CHECK(sf_run_create(&c, "{\"kind\":\"sleep\",\"classes\":[\"n01440764\"]} {\"kind\":\"noop\"}", 7, &r, err,
                        sizeof err) != 0);
    CHECK(strstr(err, "after") != NULL);
    CHECK(sf_run_create(&c, "{\"kind\":\"sleep\",\"kind\":\"noop\",\"classes\":[\"n01440764\"]}", 7, &r, err,
                        sizeof err) != 0);
    CHECK(strstr(err, "'kind'") != NULL);
    CHECK(r == NULL);
    done();
}

TEST(large_payloads_go_in_batches_that_fit_a_frame) {
    CHECK(th_coord_init(&c, T0) == 0);
    /* 3 MiB each: eight jobs in one batch would be a 24 MiB frame, over the
     * 16 MiB cap, which could not be sent. */
    char *spec = spec_with_payload(3u << 20, 8);
    CHECK(spec);
    sf_run_t *r = th_submit(&c, spec, 8);
    free(spec);
    CHECK(r);
    CHECK(th_worker_hello(&c, &w1, "w1", "sleep", 8) == 0);
    uint64_t ids[8];
    uint32_t att[8];
    int got = 0;
    while (got < 8) {
        int n = th_worker_jobs(&w1, ids + got, att + got, 8 - got);
        CHECK(n > 0);
        CHECK(n <= 4);
        got += n;
        th_tick(&c, th_now_ms + 100); /* the next loop turn's pump sends the next batch */
    }
    CHECK_EQ_INT(r->leased, 8);
    done();
}

TEST(a_kind_no_worker_offers_is_flagged_then_fails) {
    CHECK(th_coord_init(&c, T0) == 0);
    c.cfg.no_worker_timeout_ms = 20000;
    CHECK(th_worker_hello(&c, &w1, "w1", "sleep", 2) == 0);
    /* Past the first liveness window after start (3 s), in which the workers
     * of a coordinator before this one are still saying hello. */
    th_tick(&c, T0 + 3000);
    sf_run_t *r = th_submit(&c, "{\"kind\":\"bogus\",\"classes\":[\"n01440764\"]}", 9);
    CHECK(r);
    th_tick(&c, T0 + 3100);
    CHECK(th_has_event(9, "waiting_for_worker"));
    cJSON *o = sf_run_json(&c, r, 0);
    const cJSON *k = cJSON_GetObjectItemCaseSensitive(o, "waiting_for_kind");
    CHECK(cJSON_IsString(k) && !strcmp(k->valuestring, "bogus"));
    cJSON_Delete(o);
    /* A worker that keeps heartbeating does not change it; at 20 s of
     * waiting the run fails, naming the kind. */
    for (int64_t t = T0 + 4000; t < T0 + 3100 + 19900; t += 1000) {
        th_tick(&c, t);
        CHECK(th_worker_heartbeat(&c, &w1) == 0);
    }
    CHECK_EQ_INT(r->state, RUN_QUEUED);
    th_tick(&c, T0 + 3100 + 20000);
    CHECK_EQ_INT(r->state, RUN_FAILED);
    CHECK(strstr(r->last_error, "'bogus'") != NULL);
    CHECK(th_has_event(9, "failed"));
    done();
}

TEST(a_worker_offering_the_kind_ends_the_wait) {
    CHECK(th_coord_init(&c, T0) == 0);
    th_tick(&c, T0 + 3000);
    sf_run_t *r = th_submit(&c, "{\"kind\":\"noop\",\"classes\":[\"n01440764\"]}", 10);
    CHECK(r);
    th_tick(&c, T0 + 3100);
    CHECK(r->kind_wait_ms != 0);
    CHECK(th_worker_hello(&c, &w1, "w1", "noop", 2) == 0);
    th_tick(&c, T0 + 3200);
    CHECK(r->kind_wait_ms == 0);
    CHECK(th_has_event(10, "worker_found"));
    uint64_t id;
    uint32_t att;
    CHECK_EQ_INT(th_worker_jobs(&w1, &id, &att, 1), 1);
    done();
}

TEST(a_dead_job_in_a_required_phase_fails_the_run_at_once) {
    CHECK(th_coord_init(&c, T0) == 0);
    sf_run_t *r = th_submit(&c, "{\"method\":\"phases\",\"classes\":[\"n01440764\"],\"phases\":["
                                "{\"kind\":\"sleep\",\"name\":\"embed\",\"items_per_class\":3},"
                                "{\"kind\":\"sleep\",\"name\":\"after\",\"items_per_class\":2}]}", 11);
    CHECK(r);
    r->phases[0].required = 1; /* as the shift planner marks its embed phase */
    CHECK(th_worker_hello(&c, &w1, "w1", "sleep", 1) == 0);
    uint64_t id;
    uint32_t att;
    CHECK_EQ_INT(th_worker_jobs(&w1, &id, &att, 1), 1);
    CHECK(th_worker_result(&c, &w1, id, att, SF__RESULT__STATUS__FATAL) == 0);
    th_ack(&c);
    /* Failed at once, when Redis has the dead job: what was handed out
     * meanwhile (the credit came back with the result) is cancelled, and
     * nothing more goes out, of this phase or the next. */
    CHECK_EQ_INT(r->state, RUN_FAILED);
    CHECK(strstr(r->last_error, "phase embed") != NULL);
    uint64_t sent = c.st.dispatched;
    CHECK(sent <= 2);
    CHECK(th_worker_heartbeat(&c, &w1) == 0);
    th_tick(&c, T0 + 1000);
    CHECK_EQ_INT(c.st.dispatched, sent);
    for (int i = 0; i < th_n_facts; i++) CHECK(th_facts[i].type != TH_LEASED || th_facts[i].idx < 3);
    CHECK_EQ_INT(r->leased, 0);
    done();
}

TEST(the_shift_planner_marks_the_phases_others_read) {
    CHECK(th_coord_init(&c, T0) == 0);
    sf_run_t *r = th_submit(&c, "{\"method\":\"shift\",\"classes\":[\"n01614925\"],\"strategy\":\"d3s\"}", 12);
    CHECK(r);
    int embed = 0;
    for (int i = 0; i < r->n_phases; i++) {
        const sf_phase_t *p = &r->phases[i];
        if (!strcmp(p->kind, "embed")) embed = p->required;
        if (!strcmp(p->kind, "manifest") || !strcmp(p->kind, "rollout") || !strcmp(p->kind, "finetune"))
            CHECK(!p->required);
    }
    CHECK(embed);
    done();
}

TEST(ended_runs_leave_memory_and_the_limits_count_what_is_held) {
    CHECK(th_coord_init(&c, T0) == 0);
    c.cfg.max_jobs_held = 1000;
    c.cfg.max_finished_runs = 2;
    sf_run_t *r = th_submit(&c, "{\"kind\":\"sleep\",\"classes\":[\"n01440764\"],\"items_per_class\":600}", 13);
    CHECK(r);
    CHECK(th_worker_hello(&c, &w1, "w1", "sleep", 1) == 0);
    uint64_t id;
    uint32_t att;
    CHECK_EQ_INT(th_worker_jobs(&w1, &id, &att, 1), 1);
    /* 600 held: a run of 600 more is over max_jobs_held, named so. */
    th_n_facts = 0;
    client_request_spec("{\"kind\":\"sleep\",\"classes\":[\"n01440764\"],\"items_per_class\":600}");
    CHECK(sf_runs_find_num(&c, c.next_run_num) == NULL);
    CHECK(strstr(last_reply_error, "max_jobs_held") != NULL);
    /* Cancelled: its slots stay while Redis has not acknowledged it, then
     * for finished_hold_ms, then leave; status still answers. */
    client_request(SF__REQUEST__OP__CANCEL, "r13");
    CHECK_EQ_INT(r->state, RUN_CANCELLED);
    th_tick(&c, T0 + 1000);
    CHECK(r->jobs != NULL);
    th_tick(&c, T0 + 1000 + 2000);
    CHECK(r->jobs == NULL);
    CHECK(r->spec_json == NULL);
    int held;
    uint64_t jobs;
    sf_runs_held(&c, &held, &jobs);
    CHECK_EQ_INT(held, 0);
    cJSON *o = sf_run_json(&c, r, 1);
    CHECK(o);
    CHECK(!strcmp(cJSON_GetObjectItemCaseSensitive(o, "state")->valuestring, "cancelled"));
    cJSON_Delete(o);
    /* Now the same run fits; a result for the old one is unknown, not a crash. */
    CHECK(th_worker_result(&c, &w1, id, att, SF__RESULT__STATUS__OK) == 0);
    CHECK(th_submit(&c, "{\"kind\":\"sleep\",\"classes\":[\"n01440764\"],\"items_per_class\":600}", 14));
    /* Past max_finished_runs (2) ended runs, the oldest leave memory; status
     * says where the record is. */
    client_request(SF__REQUEST__OP__CANCEL, "r14");
    CHECK(th_submit(&c, "{\"kind\":\"sleep\",\"classes\":[\"n01440764\"]}", 15));
    client_request(SF__REQUEST__OP__CANCEL, "r15");
    c.next_run_num = 16;
    th_tick(&c, T0 + 10000);
    CHECK(sf_runs_find_num(&c, 13) == NULL);
    CHECK(sf_runs_find_num(&c, 14) != NULL && sf_runs_find_num(&c, 15) != NULL);
    client_request(SF__REQUEST__OP__STATUS, "r13");
    CHECK(strstr(last_reply_error, "left the coordinator's memory") != NULL);
    done();
}

/* Adaptive credit: the hold for a phase, by hand from its documented rule
 * (coord.h): slots + ceil(2 × slots × srtt / job time), at least slots + 1,
 * exactly slots + 1 while the job time is unknown or a second or more, never
 * above the worker's limit. */
TEST(adaptive_credit_hold_follows_job_time_and_round_trip) {
    CHECK_EQ_INT(sf_credit_hold(1, 256, 1000, 0), 2);         /* not measured yet */
    CHECK_EQ_INT(sf_credit_hold(1, 256, 1000, 2000000), 2);   /* 2-s jobs */
    CHECK_EQ_INT(sf_credit_hold(2, 512, 1000, 2000000), 3);
    CHECK_EQ_INT(sf_credit_hold(2, 512, 900000, 1000000), 3); /* a slow link, 1-s jobs: still one */
    CHECK_EQ_INT(sf_credit_hold(1, 256, 1000, 999999), 2);    /* ceil(2000 / 999999) = 1 */
    CHECK_EQ_INT(sf_credit_hold(1, 256, 1000, 100), 21);      /* 1 + 2000 / 100 */
    CHECK_EQ_INT(sf_credit_hold(4, 1024, 500, 3000), 6);      /* 4 + ceil(4000 / 3000) */
    CHECK_EQ_INT(sf_credit_hold(1, 256, 1000, 1), 256);       /* 1 + 2000, over the limit */
    CHECK_EQ_INT(sf_credit_hold(1, 0, 1000, 1), 2001);        /* no limit given */
    CHECK_EQ_INT(sf_credit_hold(0, 256, 1000, 0), 2);         /* no slots said: one */
}

/* A worker with adaptive credit is first sent its slots plus one job; once
 * its results say the jobs take a microsecond and come back after at least
 * 2 ms, it holds its whole limit.  A phase of 2-s jobs never puts more than
 * its slots plus one on a worker, however many it asks for. */
TEST(adaptive_worker_streams_tiny_jobs_and_holds_slots_plus_one_long_job) {
    CHECK(th_coord_init(&c, T0) == 0);
    sf_run_t *tiny = th_submit(&c, "{\"kind\":\"noop\",\"classes\":[\"n01440764\"],\"items_per_class\":2000}", 1);
    CHECK(tiny);
    CHECK(th_worker_hello_ex(&c, &w1, "w1", "noop", 1, 2, 256) == 0);
    uint64_t ids[1024];
    uint32_t att[1024];
    CHECK_EQ_INT(th_worker_jobs(&w1, ids, att, 1024), 2);
    CHECK_EQ_INT(c.workers[0].leased, 2);
    usleep(3000);
    CHECK(th_worker_result_ex(&c, &w1, ids[0], att[0], SF__RESULT__STATUS__OK, 1, 0) == 0);
    CHECK(th_worker_result_ex(&c, &w1, ids[1], att[1], SF__RESULT__STATUS__OK, 1, 0) == 0);
    CHECK(c.workers[0].srtt_us >= 2000);
    CHECK_EQ_INT(tiny->phases[0].job_us, 1);
    int got = 0;
    while (c.workers[0].leased < 256 && got < 256) {
        int n = th_worker_jobs(&w1, ids, att, 1024);
        CHECK(n > 0);
        got += n;
        th_tick(&c, th_now_ms + 100);
    }
    CHECK_EQ_INT(c.workers[0].leased, 256);

    /* 2-s jobs for a worker of two slots that asks for up to 512. */
    sf_run_t *slow = th_submit(&c, "{\"kind\":\"sleep\",\"classes\":[\"n01440764\"],\"items_per_class\":20}", 2);
    CHECK(slow);
    CHECK(th_worker_hello_ex(&c, &w2, "w2", "sleep", 2, 3, 512) == 0);
    CHECK_EQ_INT(th_worker_jobs(&w2, ids, att, 1024), 3);
    uint64_t held[8];
    uint32_t held_att[8];
    int nh = 3;
    for (int i = 0; i < 3; i++) held[i] = ids[i], held_att[i] = att[i];
    for (int round = 0; round < 6; round++) {
        usleep(3000);
        /* The oldest job finishes after 2 s, having waited in the worker. */
        CHECK(th_worker_result_ex(&c, &w2, held[0], held_att[0], SF__RESULT__STATUS__OK, 2000000,
                                  round ? 2000000 : 0) == 0);
        for (int i = 1; i < nh; i++) held[i - 1] = held[i], held_att[i - 1] = held_att[i];
        nh--;
        int n = th_worker_jobs(&w2, ids, att, 1024);
        CHECK_EQ_INT(n, 1); /* one back for the one done: slots + 1 held */
        held[nh] = ids[0], held_att[nh] = att[0], nh++;
        CHECK_EQ_INT(c.workers[1].leased, 3);
    }
    CHECK_EQ_INT(slow->phases[0].job_us, 2000000);
    done();
}

/* A run of long jobs before a run of tiny ones (higher priority) is not
 * kept waiting by them: a worker full of tiny jobs gets no more of them
 * while the long run has work, and takes the long run's slots + 1 as the
 * tiny ones drain. */
TEST(adaptive_credit_keeps_priority_over_a_stream_of_tiny_jobs) {
    CHECK(th_coord_init(&c, T0) == 0);
    sf_run_t *tiny = th_submit(&c, "{\"kind\":\"noop\",\"classes\":[\"n01440764\"],\"items_per_class\":5000}", 1);
    CHECK(tiny);
    CHECK(th_worker_hello_ex(&c, &w1, "w1", "noop,sleep", 1, 2, 256) == 0);
    static uint64_t ids[1024], held[1024];
    static uint32_t att[1024], held_att[1024];
    int nh = th_worker_jobs(&w1, held, held_att, 1024);
    CHECK_EQ_INT(nh, 2);
    usleep(3000);
    for (int i = 0; i < nh; i++)
        CHECK(th_worker_result_ex(&c, &w1, held[i], held_att[i], SF__RESULT__STATUS__OK, 1, 0) == 0);
    nh = 0;
    while (nh < 256) {
        int n = th_worker_jobs(&w1, ids, att, 1024);
        CHECK(n > 0);
        for (int i = 0; i < n; i++) held[nh] = ids[i], held_att[nh] = att[i], nh++;
        th_tick(&c, th_now_ms + 100);
    }
    CHECK_EQ_INT(nh, 256);
    sf_run_t *slow = th_submit(&c, "{\"kind\":\"sleep\",\"classes\":[\"n01440764\"],\"items_per_class\":20,"
                                   "\"priority\":5}", 2);
    CHECK(slow);
    CHECK(c.runs == slow); /* first in priority order */
    for (int i = 0; i < nh; i++)
        CHECK(th_worker_result_ex(&c, &w1, held[i], held_att[i], SF__RESULT__STATUS__OK, 1, 0) == 0);
    th_tick(&c, th_now_ms + 100);
    CHECK_EQ_INT(tiny->leased, 0);
    CHECK_EQ_INT(slow->leased, 2);
    CHECK_EQ_INT(c.workers[0].leased, 2);
    done();
}

int main(void) {
    SF_RUN(worker_silent_past_liveness_is_dead_and_its_jobs_requeued);
    SF_RUN(adaptive_credit_hold_follows_job_time_and_round_trip);
    SF_RUN(adaptive_worker_streams_tiny_jobs_and_holds_slots_plus_one_long_job);
    SF_RUN(adaptive_credit_keeps_priority_over_a_stream_of_tiny_jobs);
    SF_RUN(lease_expires_at_its_deadline_not_before);
    SF_RUN(retry_backoff_delays_a_failed_job_until_its_time);
    SF_RUN(fatal_result_is_dead_at_once_and_duplicates_count_once);
    SF_RUN(job_that_kills_its_workers_is_dead_lettered);
    SF_RUN(cancel_stops_a_run_and_tells_its_workers);
    SF_RUN(payloads_over_the_job_cap_are_refused_at_submit);
    SF_RUN(large_payloads_go_in_batches_that_fit_a_frame);
    SF_RUN(a_retry_base_above_its_cap_is_refused);
    SF_RUN(a_spec_with_text_after_it_or_a_key_twice_is_refused);
    SF_RUN(a_kind_no_worker_offers_is_flagged_then_fails);
    SF_RUN(a_worker_offering_the_kind_ends_the_wait);
    SF_RUN(a_dead_job_in_a_required_phase_fails_the_run_at_once);
    SF_RUN(the_shift_planner_marks_the_phases_others_read);
    SF_RUN(ended_runs_leave_memory_and_the_limits_count_what_is_held);
    SF_DONE();
}
