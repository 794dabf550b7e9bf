/* sf_loadgen: many workers on the real worker protocol, for measuring one
 * coordinator with 1,000 or 4,000 of them (tools/bench_scale.sh,
 * tests/integration/test_many_workers.sh).
 *
 *   sf_loadgen ENDPOINT WORKERS [--procs P] [--prefetch K] [--slots S]
 *              [--prefix NAME] [--seconds LIMIT]
 *
 * P processes (default 2) each hold WORKERS / P DEALER sockets.  Each socket
 * is one worker: it says Hello (kinds noop, S slots; prefetch 0, the
 * default, asks for adaptive credit as sf-worker does: Hello.max_credit =
 * 256 × S and credit S + 1; K ≥ 1 a fixed credit S × K), answers every
 * JobBatch at once with one ResultBatch of OK results (elapsed 1 µs, as a
 * no-op handler), sends a Heartbeat when it has been quiet for half the
 * coordinator's interval, and says Hello again on a Reconnect.  It stops on
 * SIGTERM or SIGINT, or after LIMIT seconds (default 3600), and prints one
 * line per process:
 *   loadgen proc I: W workers welcomed, J jobs, B batches, H heartbeats,
 *   cpu U s user S s system
 * and, from the parent, the sums (`loadgen total: …`), so a driver can check
 * that the jobs it received are the jobs the run has (each exactly once).
 * It never runs a job: only the coordinator, Redis and the protocol are
 * measured.  The processes share no state, so the generator scales with
 * cores and need not be the bound. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "common/net/wire.h"

typedef struct {
    void *sock;
    char id[64];
    int welcomed;
    int64_t last_send_ms;
} lg_worker_t;

static volatile sig_atomic_t stop;
static void on_signal(int s) { (void)s; stop = 1; }

static int64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static uint8_t *sbuf;
static size_t sbuf_cap;
static long slots = 1, prefetch = 0;
static uint64_t n_jobs, n_batches, n_heartbeats, n_send_fail;

static void send_env(lg_worker_t *w, Sf__Envelope *env) {
    if (sf_wire_send(w->sock, NULL, 0, env, &sbuf, &sbuf_cap) != 0) n_send_fail++;
    else w->last_send_ms = now_ms();
}

static void hello(lg_worker_t *w) {
    char *kinds[] = {"noop"};
    Sf__Hello h = SF__HELLO__INIT;
    h.worker_id = w->id;
    h.n_kinds = 1;
    h.kinds = kinds;
    h.device = "cpu";
    h.slots = (uint32_t)slots;
    h.version = "loadgen";
    h.pid = (uint32_t)getpid();
    h.host = "loadgen";
    h.credit = (uint32_t)(prefetch ? slots * prefetch : slots + 1);
    h.max_credit = prefetch ? 0 : (uint32_t)(slots * 256 > 65536 ? 65536 : slots * 256);
    Sf__Envelope env = SF__ENVELOPE__INIT;
    env.body_case = SF__ENVELOPE__BODY_HELLO;
    env.hello = &h;
    send_env(w, &env);
}

static Sf__Result res[SF_WIRE_MAX_BATCH];
static Sf__Result *resp[SF_WIRE_MAX_BATCH];

static void answer(lg_worker_t *w, const Sf__JobBatch *b) {
    size_t n = b->n_jobs < SF_WIRE_MAX_BATCH ? b->n_jobs : SF_WIRE_MAX_BATCH;
    for (size_t i = 0; i < n; i++) {
        sf__result__init(&res[i]);
        res[i].id = b->jobs[i]->id;
        res[i].attempt = b->jobs[i]->attempt;
        res[i].status = SF__RESULT__STATUS__OK;
        res[i].error = "";
        res[i].elapsed_us = 1;
        resp[i] = &res[i];
    }
    Sf__ResultBatch rb = SF__RESULT_BATCH__INIT;
    rb.n_results = n;
    rb.results = resp;
    Sf__Envelope env = SF__ENVELOPE__INIT;
    env.body_case = SF__ENVELOPE__BODY_RESULTS;
    env.results = &rb;
    send_env(w, &env);
    n_jobs += n;
    n_batches++;
}

static int run_proc(int proc, const char *ep, int first, int count, const char *prefix, int limit_s) {
    void *ctx = zmq_ctx_new();
    zmq_ctx_set(ctx, ZMQ_MAX_SOCKETS, count + 64);
    lg_worker_t *ws = calloc((size_t)count, sizeof *ws);
    zmq_pollitem_t *items = calloc((size_t)count, sizeof *items);
    if (!ctx || !ws || !items) { fprintf(stderr, "loadgen: out of memory\n"); return 1; }
    for (int i = 0; i < count; i++) {
        lg_worker_t *w = &ws[i];
        snprintf(w->id, sizeof w->id, "%s/%d", prefix, first + i);
        w->sock = zmq_socket(ctx, ZMQ_DEALER);
        if (!w->sock || sf_wire_sockopts(w->sock) != 0 || zmq_connect(w->sock, ep) != 0) {
            fprintf(stderr, "loadgen proc %d: socket %d: %s (ulimit -n is too low?)\n", proc, i, zmq_strerror(zmq_errno()));
            return 1;
        }
        items[i].socket = w->sock;
        items[i].events = ZMQ_POLLIN;
        hello(w);
    }
    uint32_t hb_ms = SF_HEARTBEAT_MS;
    int welcomed = 0;
    int64_t start = now_ms(), last_hb_check = start;
    zmq_msg_t m;
    zmq_msg_init(&m);
    while (!stop && now_ms() - start < (int64_t)limit_s * 1000) {
        int rc = zmq_poll(items, count, 100);
        if (rc < 0 && zmq_errno() != EINTR) break;
        for (int i = 0; rc > 0 && i < count; i++) {
            if (!(items[i].revents & ZMQ_POLLIN)) continue;
            lg_worker_t *w = &ws[i];
            for (int k = 0; k < 64 && zmq_msg_recv(&m, w->sock, ZMQ_DONTWAIT) >= 0; k++) {
                Sf__Envelope *env;
                char err[256];
                if (sf_wire_decode(zmq_msg_data(&m), zmq_msg_size(&m), &env, err, sizeof err) != 0) {
                    fprintf(stderr, "loadgen: %s got a bad frame: %s\n", w->id, err);
                    continue;
                }
                switch (env->body_case) {
                case SF__ENVELOPE__BODY_WELCOME:
                    if (!w->welcomed) welcomed++;
                    w->welcomed = 1;
                    if (env->welcome->heartbeat_ms) hb_ms = env->welcome->heartbeat_ms;
                    break;
                case SF__ENVELOPE__BODY_JOBS: answer(w, env->jobs); break;
                case SF__ENVELOPE__BODY_RECONNECT: hello(w); break;
                case SF__ENVELOPE__BODY_ERROR:
                    fprintf(stderr, "loadgen: %s refused: %s\n", w->id, env->error->message ? env->error->message : "?");
                    break;
                default: break;
                }
                sf_wire_free(env);
            }
        }
        int64_t t = now_ms();
        if (t - last_hb_check >= (int64_t)hb_ms / 4) {
            last_hb_check = t;
            for (int i = 0; i < count; i++) {
                if (t - ws[i].last_send_ms < (int64_t)hb_ms / 2) continue;
                Sf__Heartbeat hb = SF__HEARTBEAT__INIT;
                Sf__Envelope env = SF__ENVELOPE__INIT;
                env.body_case = SF__ENVELOPE__BODY_HEARTBEAT;
                env.heartbeat = &hb;
                send_env(&ws[i], &env);
                n_heartbeats++;
            }
        }
    }
    zmq_msg_close(&m);
    /* Leave as a worker does: the coordinator then counts them as left,
     * not dead, and gives back nothing (they hold nothing). */
    for (int i = 0; i < count; i++) {
        Sf__Shutdown sd = SF__SHUTDOWN__INIT;
        sd.reason = "load generator stopped";
        Sf__Envelope env = SF__ENVELOPE__INIT;
        env.body_case = SF__ENVELOPE__BODY_SHUTDOWN;
        env.shutdown = &sd;
        send_env(&ws[i], &env);
        zmq_close(ws[i].sock);
    }
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("loadgen proc %d: %d workers welcomed, %llu jobs, %llu batches, %llu heartbeats, %llu failed sends, "
           "cpu %.2f s user %.2f s system\n",
           proc, welcomed, (unsigned long long)n_jobs, (unsigned long long)n_batches,
           (unsigned long long)n_heartbeats, (unsigned long long)n_send_fail,
           ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6, ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6);
    fflush(stdout);
    zmq_ctx_term(ctx);
    free(ws);
    free(items);
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: sf_loadgen ENDPOINT WORKERS [--procs P] [--prefetch K] [--slots S] [--prefix NAME] "
                        "[--seconds LIMIT]\n");
        return 2;
    }
    const char *ep = argv[1], *prefix = "lg";
    int workers = atoi(argv[2]), procs = 2, limit_s = 3600;
    for (int i = 3; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) { fprintf(stderr, "sf_loadgen: %s needs a value\n", a); return 2; }
        if (!strcmp(a, "--procs")) procs = atoi(v);
        else if (!strcmp(a, "--prefetch")) prefetch = atol(v);
        else if (!strcmp(a, "--slots")) slots = atol(v);
        else if (!strcmp(a, "--prefix")) prefix = v;
        else if (!strcmp(a, "--seconds")) limit_s = atoi(v);
        else { fprintf(stderr, "sf_loadgen: unknown option %s\n", a); return 2; }
        i++;
    }
    if (workers < 1 || workers > 65536 || procs < 1 || procs > workers || slots < 1 || slots > 4096 || prefetch < 0 ||
        prefetch > 1024 || limit_s < 1) {
        fprintf(stderr, "sf_loadgen: out of range: workers %d procs %d slots %ld prefetch %ld seconds %d\n", workers,
                procs, slots, prefetch, limit_s);
        return 2;
    }
    struct sigaction sa = {0};
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    pid_t *kids = calloc((size_t)procs, sizeof *kids);
    int *rfd = calloc((size_t)procs, sizeof *rfd);
    if (!kids || !rfd) return 1;
    for (int p = 0; p < procs; p++) {
        int first = (int)((long)workers * p / procs), last = (int)((long)workers * (p + 1) / procs);
        int fds[2];
        if (pipe(fds) != 0) return 1;
        kids[p] = fork();
        if (kids[p] == 0) {
            /* Each child's stdout goes through a pipe the parent reads, so
             * the totals can be summed. */
            close(fds[0]);
            dup2(fds[1], 1);
            close(fds[1]);
            _exit(run_proc(p, ep, first, last - first, prefix, limit_s));
        }
        close(fds[1]);
        if (kids[p] < 0) { perror("sf_loadgen: fork"); return 1; }
        rfd[p] = fds[0];
    }
    /* Until a signal, or until every child has ended (--seconds). */
    for (int left = procs; !stop && left > 0;) {
        int st;
        if (waitpid(-1, &st, 0) > 0) left--;
    }
    for (int p = 0; p < procs; p++) kill(kids[p], SIGTERM);
    unsigned long long tj = 0, tb = 0, th = 0, tf = 0;
    int tw = 0;
    double tu = 0, ts = 0;
    for (int p = 0; p < procs; p++) {
        FILE *f = fdopen(rfd[p], "r");
        char line[512];
        while (f && fgets(line, sizeof line, f)) {
            fputs(line, stdout);
            int pi, w;
            unsigned long long j, b, h, fl;
            double u, s;
            if (sscanf(line, "loadgen proc %d: %d workers welcomed, %llu jobs, %llu batches, %llu heartbeats, "
                             "%llu failed sends, cpu %lf s user %lf s system",
                       &pi, &w, &j, &b, &h, &fl, &u, &s) == 8) {
                tw += w, tj += j, tb += b, th += h, tf += fl, tu += u, ts += s;
            }
        }
        if (f) fclose(f);
        waitpid(kids[p], NULL, 0);
    }
    printf("loadgen total: %d workers welcomed, %llu jobs, %llu batches, %llu heartbeats, %llu failed sends, "
           "cpu %.2f s user %.2f s system\n",
           tw, tj, tb, th, tf, tu, ts);
    free(kids);
    free(rfd);
    return 0;
}
