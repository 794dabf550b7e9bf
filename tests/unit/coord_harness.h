/* coord_harness.h: a coordinator without main.c and without Redis, for the
 * unit tests of its run and broker logic (test_coord_*.c).
 *
 * The tests link runs.c, shift.c, broker.c and clients.c as they are.  What
 * those call of store.c is defined by the harness (coord_harness.c): it
 * records each fact the coordinator queues for Redis instead of writing it,
 * and th_ack() plays Redis acknowledging them, the way main.c's
 * sf_coord_on_acked() hands acknowledgements to the runs.  The clock is
 * injected (sf_coord_t.mono_ms reads th_now_ms), and far from the wall
 * clock's value, so a decision still made on the wall clock goes wrong.
 * Workers are fake peers: a ZeroMQ DEALER each, speaking the real protocol to
 * the coordinator's real ROUTER over inproc.
 */
#ifndef SF_COORD_HARNESS_H
#define SF_COORD_HARNESS_H

#include <stdint.h>

#include "coordinator/coord.h"

/* The injected monotonic clock, ms.  Tests move it with th_tick(). */
extern int64_t th_now_ms;

/* What the coordinator asked Redis to record, in order. */
enum { TH_LEASED = 1, TH_REQUEUED, TH_SKIPPED, TH_DONE, TH_DEAD, TH_EVENT, TH_SAVED, TH_WORKER_GONE };
typedef struct {
    int type;
    uint32_t run, idx;
    char what[64];      /* TH_EVENT: its type; TH_WORKER_GONE: the worker id */
} th_fact_t;
#define TH_MAX_FACTS 65536
extern th_fact_t th_facts[TH_MAX_FACTS];
extern int th_n_facts;
/* Facts of this type (and run, when run is nonzero). */
int th_count(int type, uint32_t run);
/* Whether run num recorded an event of this type. */
int th_has_event(uint32_t run, const char *type);

/* A coordinator with main.c's default settings (written out here, not read
 * from main.c), the injected clock at t0_ms, and its worker and client
 * ROUTERs bound to fresh inproc endpoints.  0 or -1. */
int th_coord_init(sf_coord_t *c, int64_t t0_ms);
void th_coord_free(sf_coord_t *c);

/* A run submitted as clients.c does, numbered num; NULL (and a message on
 * stderr) if the spec is refused. */
sf_run_t *th_submit(sf_coord_t *c, const char *spec_json, uint32_t num);

/* Redis acknowledges every done and dead job queued so far. */
void th_ack(sf_coord_t *c);

/* Moves the clock to to_ms (never back) in steps of the cron's 100 ms,
 * running at each step what main.c's cron and pump do for workers: the
 * broker's cron, then dispatch. */
void th_tick(sf_coord_t *c, int64_t to_ms);

/* A fake worker: a DEALER connected to the coordinator's worker ROUTER. */
typedef struct {
    void *sock;
    char id[64];
} th_worker_t;

/* Connects and says hello (kinds comma-separated), as sf-worker does; 0 once
 * the Welcome came back, -1 otherwise. */
int th_worker_hello(sf_coord_t *c, th_worker_t *w, const char *id, const char *kinds, uint32_t credit);
/* The same with its slots and Hello.max_credit (above 0: adaptive credit). */
int th_worker_hello_ex(sf_coord_t *c, th_worker_t *w, const char *id, const char *kinds, uint32_t slots,
                       uint32_t credit, uint32_t max_credit);
void th_worker_close(th_worker_t *w);
/* Sends env and has the coordinator handle it as main.c's drain does
 * (sf_broker_on_frame, then dispatch).  0 or -1. */
int th_worker_send(sf_coord_t *c, th_worker_t *w, Sf__Envelope *env);
int th_worker_result(sf_coord_t *c, th_worker_t *w, uint64_t id, uint32_t attempt, Sf__Result__Status status);
/* The same with the time the job ran and waited in the worker. */
int th_worker_result_ex(sf_coord_t *c, th_worker_t *w, uint64_t id, uint32_t attempt, Sf__Result__Status status,
                        uint32_t elapsed_us, uint32_t queued_us);
int th_worker_heartbeat(sf_coord_t *c, th_worker_t *w);
/* The next message with this body, skipping the others (heartbeats),
 * waiting up to 10 s; NULL if none came.  Free it with sf_wire_free(). */
Sf__Envelope *th_worker_recv(th_worker_t *w, Sf__Envelope__BodyCase body);
/* Reads one JobBatch into ids and attempts (at most max); the count, or -1
 * if none came. */
int th_worker_jobs(th_worker_t *w, uint64_t *ids, uint32_t *attempts, int max);

#endif
