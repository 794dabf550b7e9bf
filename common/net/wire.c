/* wire.c: checked protobuf-c codec for sf.Envelope and the send helper. */
#include "common/net/wire.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "common/runtime/error.h"
#include "common/runtime/log.h"

static int str_ok(const char *s, size_t cap) { return !s || strnlen(s, cap + 1) <= cap; }

#define BAD(...) do { sf_errf(SF_EPROTO, err, errlen, __VA_ARGS__); goto fail; } while (0)

static int check_job(const Sf__Job *j, char *err, size_t errlen) {
    if (!str_ok(j->kind, 64) || !j->kind || !*j->kind) return sf_errf(SF_EPROTO, err, errlen, "job without a valid kind");
    if (!str_ok(j->run, 64) || !str_ok(j->wnid, 64)) return sf_errf(SF_EPROTO, err, errlen, "job run/wnid too long");
    /* A payload over SF_WIRE_MAX_PAYLOAD is not the frame's fault: the worker
     * fails that one job, naming the cap (the frame cap still bounds it). */
    if (j->attempt == 0) return sf_errf(SF_EPROTO, err, errlen, "job %llu with attempt 0", (unsigned long long)j->id);
    return 0;
}

int sf_wire_decode(const void *buf, size_t len, Sf__Envelope **out, char *err, size_t errlen) {
    *out = NULL;
    if (len > SF_WIRE_MAX_FRAME)
        return sf_errf(SF_EPROTO, err, errlen, "frame of %zu bytes over the %u-byte cap", len, SF_WIRE_MAX_FRAME);
    Sf__Envelope *e = sf__envelope__unpack(NULL, len, buf);
    if (!e) return sf_errf(SF_EPROTO, err, errlen, "undecodable frame (%zu bytes)", len);
    if (e->version != SF_PROTO_VERSION && e->body_case != SF__ENVELOPE__BODY_ERROR)
        BAD("protocol version %u, expected %u", e->version, SF_PROTO_VERSION);
    switch (e->body_case) {
    case SF__ENVELOPE__BODY_ERROR:
        if (!str_ok(e->error->message, SF_WIRE_MAX_STRING)) BAD("error message too long");
        break;
    case SF__ENVELOPE__BODY_HELLO: {
        const Sf__Hello *h = e->hello;
        if (!h->worker_id || !*h->worker_id) BAD("hello without a worker_id");
        if (!str_ok(h->worker_id, SF_WIRE_MAX_ID))
            BAD("hello with a worker_id of %zu bytes, over the %u-byte limit on ids", strlen(h->worker_id),
                SF_WIRE_MAX_ID);
        if (h->n_kinds == 0 || h->n_kinds > SF_WIRE_MAX_KINDS) BAD("hello with %zu kinds", h->n_kinds);
        for (size_t i = 0; i < h->n_kinds; i++)
            if (!h->kinds[i] || !*h->kinds[i] || !str_ok(h->kinds[i], 64)) BAD("hello with a bad kind name");
        if (!str_ok(h->device, 64) || !str_ok(h->version, 64) || !str_ok(h->host, 256)) BAD("hello with an over-long field");
        if (h->slots > 4096 || h->credit > 65536 || h->max_credit > 65536)
            BAD("hello with %u slots, %u credit, %u max_credit", h->slots, h->credit, h->max_credit);
        break;
    }
    case SF__ENVELOPE__BODY_CREDIT:
        if (e->credit->credit > 65536) BAD("credit of %u", e->credit->credit);
        break;
    case SF__ENVELOPE__BODY_RESULTS: {
        const Sf__ResultBatch *b = e->results;
        if (b->n_results > SF_WIRE_MAX_BATCH) BAD("%zu results in one batch", b->n_results);
        for (size_t i = 0; i < b->n_results; i++) {
            const Sf__Result *r = b->results[i];
            if (r->payload.len > SF_WIRE_MAX_PAYLOAD) BAD("result payload of %zu bytes", r->payload.len);
            if (!str_ok(r->error, SF_WIRE_MAX_STRING)) BAD("result error text too long");
            if ((unsigned)r->status > SF__RESULT__STATUS__FATAL) BAD("result status %d", (int)r->status);
        }
        break;
    }
    case SF__ENVELOPE__BODY_JOBS: {
        const Sf__JobBatch *b = e->jobs;
        if (b->n_jobs > SF_WIRE_MAX_BATCH) BAD("%zu jobs in one batch", b->n_jobs);
        for (size_t i = 0; i < b->n_jobs; i++)
            if (check_job(b->jobs[i], err, errlen)) goto fail;
        break;
    }
    case SF__ENVELOPE__BODY_CANCEL:
        if (e->cancel->n_ids > SF_WIRE_MAX_BATCH * 16) BAD("cancel of %zu ids", e->cancel->n_ids);
        break;
    case SF__ENVELOPE__BODY_SHUTDOWN:
        if (!str_ok(e->shutdown->reason, SF_WIRE_MAX_STRING)) BAD("shutdown reason too long");
        break;
    case SF__ENVELOPE__BODY_REQUEST: {
        const Sf__Request *r = e->request;
        if (!str_ok(r->run, 64)) BAD("request with an over-long run id");
        if (!str_ok(r->spec_json, SF_WIRE_MAX_SPEC)) BAD("run spec over %u bytes", SF_WIRE_MAX_SPEC);
        if ((unsigned)r->op > SF__REQUEST__OP__STATS) BAD("unknown request op %d", (int)r->op);
        break;
    }
    case SF__ENVELOPE__BODY_ROLLOUTS: {
        const Sf__RolloutBatch *b = e->rollouts;
        if (!b->run || !*b->run || !str_ok(b->run, 64)) BAD("rollouts without a valid run id");
        if (b->n_rollouts > SF_WIRE_MAX_ROLLOUTS) BAD("%zu rollouts in one batch", b->n_rollouts);
        for (size_t i = 0; i < b->n_rollouts; i++) {
            const Sf__Rollout *r = b->rollouts[i];
            if (r->n_query == 0 || r->n_query > SF_WIRE_MAX_TOKENS || r->n_response == 0 ||
                r->n_response > SF_WIRE_MAX_TOKENS)
                BAD("rollout %zu with %zu query and %zu response tokens", i, r->n_query, r->n_response);
            if ((r->n_logprobs && r->n_logprobs != r->n_response) || (r->n_values && r->n_values != r->n_response))
                BAD("rollout %zu: log-probs or values do not match the response length", i);
            for (size_t k = 0; k < r->n_query; k++) if (r->query[k] < 0) BAD("rollout %zu: negative token id", i);
            for (size_t k = 0; k < r->n_response; k++) if (r->response[k] < 0) BAD("rollout %zu: negative token id", i);
        }
        break;
    }
    case SF__ENVELOPE__BODY_POLICY_GET:
        if (!e->policy_get->run || !*e->policy_get->run || !str_ok(e->policy_get->run, 64)) BAD("policy request without a run id");
        break;
    case SF__ENVELOPE__BODY_POLICY_CHUNK: {
        const Sf__PolicyChunk *c = e->policy_chunk;
        if (!str_ok(c->run, 64) || !str_ok(c->error, SF_WIRE_MAX_STRING)) BAD("policy chunk with over-long strings");
        if (c->data.len > SF_WIRE_CHUNK) BAD("policy chunk of %zu bytes", c->data.len);
        if (c->count && (c->index >= c->count || c->total_len > (uint64_t)c->count * SF_WIRE_CHUNK))
            BAD("policy chunk %u of %u for %llu bytes", c->index, c->count, (unsigned long long)c->total_len);
        break;
    }
    case SF__ENVELOPE__BODY_ROLLOUT_ACK:
    case SF__ENVELOPE__BODY_REPLY:
    case SF__ENVELOPE__BODY_HEARTBEAT:
    case SF__ENVELOPE__BODY_WELCOME:
    case SF__ENVELOPE__BODY_RECONNECT:
        break;
    default:
        BAD("envelope without a body");
    }
    *out = e;
    return 0;
fail:
    sf__envelope__free_unpacked(e, NULL);
    return SF_EPROTO;
}

Sf__Envelope *sf_wire_decode_counted(const void *buf, size_t len, uint64_t *bad, const char *from) {
    char err[256];
    Sf__Envelope *env = NULL;
    if (sf_wire_decode(buf, len, &env, err, sizeof err) == 0) return env;
    ++*bad;
    if ((*bad & (*bad - 1)) == 0)
        sf_warn("dropped bad frame from %s (%llu so far): %s", from, (unsigned long long)*bad, err);
    return NULL;
}

void sf_wire_free(Sf__Envelope *env) {
    if (env) sf__envelope__free_unpacked(env, NULL);
}

/* A varint at p (below end) into *v; the bytes it took, 0 if malformed. */
static size_t varint(const uint8_t *p, const uint8_t *end, uint64_t *v) {
    *v = 0;
    for (size_t i = 0; i < 10 && p + i < end; i++) {
        *v |= (uint64_t)(p[i] & 0x7f) << (7 * i);
        if (!(p[i] & 0x80)) return i + 1;
    }
    return 0;
}

int sf_wire_peek(const void *buf, size_t len, uint32_t *version, uint32_t *body) {
    const uint8_t *p = buf, *end = p + len;
    *version = 0;
    *body = 0;
    while (p < end) {
        uint64_t key, v;
        size_t k = varint(p, end, &key);
        if (!k || key >> 3 == 0 || key >> 3 > 0x1fffffff) return SF_EPROTO;
        p += k;
        uint32_t field = (uint32_t)(key >> 3);
        switch (key & 7) {
        case 0: /* varint */
            if (!(k = varint(p, end, &v))) return SF_EPROTO;
            p += k;
            if (field == 1) *version = (uint32_t)v;
            break;
        case 1: /* fixed64 */
            if (end - p < 8) return SF_EPROTO;
            p += 8;
            break;
        case 2: /* length-delimited: a body is a message */
            if (!(k = varint(p, end, &v)) || v > (uint64_t)(end - p - (ptrdiff_t)k)) return SF_EPROTO;
            p += k + v;
            if (field != 1) *body = field;
            break;
        case 5: /* fixed32 */
            if (end - p < 4) return SF_EPROTO;
            p += 4;
            break;
        default:
            return SF_EPROTO;
        }
    }
    return 0;
}

int sf_wire_send_error(void *sock, const void *rid, size_t rid_len, int code, const char *message,
                       uint32_t peer_version, int fatal, uint8_t **buf, size_t *cap) {
    Sf__Error e = SF__ERROR__INIT;
    e.code = code;
    e.message = (char *)message;
    e.version = SF_PROTO_VERSION;
    e.peer_version = peer_version;
    e.fatal = fatal != 0;
    Sf__Envelope env = SF__ENVELOPE__INIT;
    env.body_case = SF__ENVELOPE__BODY_ERROR;
    env.error = &e;
    return sf_wire_send(sock, rid, rid_len, &env, buf, cap);
}

long sf_wire_pack(Sf__Envelope *env, uint8_t **buf, size_t *cap) {
    env->version = SF_PROTO_VERSION;
    size_t n = sf__envelope__get_packed_size(env);
    if (n > SF_WIRE_MAX_FRAME) return SF_ERANGE;
    if (n > *cap) {
        size_t nc = *cap ? *cap : 4096;
        while (nc < n) nc *= 2;
        uint8_t *nb = realloc(*buf, nc);
        if (!nb) return SF_ENOMEM;
        *buf = nb;
        *cap = nc;
    }
    return (long)sf__envelope__pack(env, *buf);
}

int sf_wire_send(void *sock, const void *rid, size_t rid_len, Sf__Envelope *env, uint8_t **buf, size_t *cap) {
    long n = sf_wire_pack(env, buf, cap);
    if (n < 0) return (int)n;
    if (rid && zmq_send(sock, rid, rid_len, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0) return SF_EIO;
    if (zmq_send(sock, *buf, (size_t)n, ZMQ_DONTWAIT) < 0) return SF_EIO;
    return 0;
}

int sf_wire_sockopts(void *sock) {
    int64_t maxmsg = SF_WIRE_MAX_RECV;
    int linger = 0, hwm = 100000;
    if (zmq_setsockopt(sock, ZMQ_MAXMSGSIZE, &maxmsg, sizeof maxmsg) ||
        zmq_setsockopt(sock, ZMQ_LINGER, &linger, sizeof linger) ||
        zmq_setsockopt(sock, ZMQ_SNDHWM, &hwm, sizeof hwm) ||
        zmq_setsockopt(sock, ZMQ_RCVHWM, &hwm, sizeof hwm))
        return SF_EIO;
    return 0;
}
