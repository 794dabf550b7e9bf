/* runs.c: the learner's runs and what workers ask of them.  A run is made
 * when the first rollout or policy request for it comes; its learner
 * settings come from its spec in Redis (the run hash's field `spec`):
 * "policy" (a checkpoint path) or "policy_config" (a random policy of that
 * shape, from "seed"), "ppo", and "sft" when the policy still needs its
 * supervised fine-tuning on a caption corpus before PPO
 * (docs/configuration.md).  While Redis cannot say, the run waits in
 * L_LOADING_SPEC.  Rollout batches are kept for the next update or dropped
 * as too old; policy images go out in chunks, and a request for a version
 * not made yet waits for it. */
#include <cjson/cJSON.h>
#include <hiredis/async.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "common/method/corpus.h"
#include "common/method/run_spec.h"
#include "common/net/wire.h"
#include "common/redis/keys.h"
#include "common/runtime/error.h"
#include "common/runtime/log.h"
#include "learner/learner.h"

static lrun_t *find_run(const char *id) {
    for (lrun_t *r = L.runs; r; r = r->next)
        if (!strcmp(r->id, id)) return r;
    return NULL;
}

static double jnum(const cJSON *o, const char *k, double def) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(it) ? it->valuedouble : def;
}

/* Reads the learner's settings from the run spec: "ppo", "sft" and the
 * policy, with the coordinator's rules (common/method/run_spec.c), since a spec
 * may also have been written to Redis directly. */
static int configure(lrun_t *r, const char *spec_json) {
    char *e = r->error;
    const size_t n = sizeof r->error;
    cJSON *spec = cJSON_Parse(spec_json);
    if (!spec) return sf_errf(SF_EINVAL, e, n, "the run spec in Redis is not JSON");
    sf_ppo_spec_t ps;
    sf_sft_spec_t ss;
    sf_ppo_spec_init(&ps);
    int rc = sf_ppo_spec_parse(spec, &ps, e, n);
    if (!rc) rc = sf_sft_spec_parse(spec, &ss, e, n);
    if (rc) goto out;
    sf_ppo_config_default(&r->ppo);
    r->batch_size = (int)ps.batch_size;
    r->max_staleness = (int)ps.max_staleness;
    r->target_updates = (uint64_t)ps.updates;
    r->ppo.mini_batch_size = (int)ps.mini_batch_size;
    r->ppo.ppo_epochs = (int)ps.ppo_epochs;
    r->ppo.prompt_baseline = (int)ps.prompt_baseline;
    r->ppo.use_rollout_logprobs = (int)ps.use_rollout_logprobs;
#define GIVEN(f) if (!isnan(ps.f)) r->ppo.f = (float)ps.f
    GIVEN(learning_rate); GIVEN(init_kl_coef); GIVEN(target); GIVEN(horizon); GIVEN(cliprange);
    GIVEN(cliprange_value); GIVEN(vf_coef); GIVEN(gamma); GIVEN(lam); GIVEN(max_grad_norm);
#undef GIVEN
    r->seed = (uint64_t)jnum(spec, "seed", 0);
    r->ppo.seed = r->seed;
    const cJSON *pol = cJSON_GetObjectItemCaseSensitive(spec, "policy");
    const cJSON *pc = cJSON_GetObjectItemCaseSensitive(spec, "policy_config");
    if (cJSON_IsString(pol)) {
        if (!sf_spec_models_path_ok(pol->valuestring)) {
            rc = sf_errf(SF_EINVAL, e, n, "run spec: 'policy' = \"%.100s\" must be a path inside the learner's "
                                          "models_dir (not absolute, no '..')", pol->valuestring);
            goto out;
        }
        snprintf(r->policy_path, sizeof r->policy_path, "%s/%s", L.cfg.models_dir, pol->valuestring);
    } else if (cJSON_IsObject(pc)) {
        r->random_policy = 1;
        sf_gpt2_config_124m(&r->pcfg);
        r->pcfg.n_layer = (int)jnum(pc, "n_layer", r->pcfg.n_layer);
        r->pcfg.n_head = (int)jnum(pc, "n_head", r->pcfg.n_head);
        r->pcfg.n_embd = (int)jnum(pc, "n_embd", r->pcfg.n_embd);
        r->pcfg.n_ctx = (int)jnum(pc, "n_ctx", r->pcfg.n_ctx);
        r->pcfg.vocab_size = (int)jnum(pc, "vocab_size", r->pcfg.vocab_size);
        r->pcfg.eos_id = (int)jnum(pc, "eos_id", r->pcfg.vocab_size - 1);
        if ((rc = sf_gpt2_config_check(&r->pcfg, e, n))) goto out;
    } else {
        rc = sf_errf(SF_EINVAL, e, n, "the run spec names no \"policy\" or \"policy_config\"");
        goto out;
    }
    if (ss.on) {
        r->sft_steps = (int)ss.steps;
        r->sft_batch = (int)ss.batch_size;
        r->sft_lr = (float)ss.learning_rate;
        r->sft_lr_min = (float)ss.min_learning_rate;
        r->sft_warmup = (int)ss.warmup;
        r->sft_per_class = (int)ss.captions_per_class;
        if (ss.corpus[0]) snprintf(r->sft_corpus, sizeof r->sft_corpus, "%s/%s", L.cfg.models_dir, ss.corpus);
        /* The corpus phase's corpus, where its workers stored it. */
        sf_shift_params_t sp;
        if ((rc = sf_shift_params_from_spec(spec, &sp, e, n))) goto out;
        if (strcmp(sp.corpus_model, "none")) {
            if (!sf_spec_models_path_ok(sp.corpus_model)) {
                rc = sf_errf(SF_EINVAL, e, n, "run spec: 'corpus_model' = \"%.100s\" must be a path inside "
                                              "models_dir", sp.corpus_model);
                goto out;
            }
            char key[17];
            sf_corpus_key(&sp, key);
            sf_corpus_paths(L.cfg.data_dir, key, "", r->corpus_dir, sizeof r->corpus_dir, NULL, 0, NULL, 0);
        }
        const cJSON *wl = cJSON_GetObjectItemCaseSensitive(spec, "world");
        snprintf(r->world, sizeof r->world, "%s", cJSON_IsString(wl) ? wl->valuestring : "builtin:imagenet-a-r-86");
        const cJSON *cl = cJSON_GetObjectItemCaseSensitive(spec, "classes");
        int nc = cJSON_GetArraySize(cl);
        if (!cJSON_IsArray(cl) || nc < 1) {
            rc = sf_errf(SF_EINVAL, e, n, "sft: the run spec has no classes");
            goto out;
        }
        if (!(r->classes = calloc((size_t)nc, sizeof *r->classes))) {
            rc = SF_ENOMEM;
            goto out;
        }
        for (const cJSON *it = cl->child; it; it = it->next)
            if (cJSON_IsString(it)) r->classes[r->n_classes++] = strdup(it->valuestring);
    }
out:
    cJSON_Delete(spec);
    return rc;
}

/* One learner per run.  LEASE_LUA takes or renews the run's lease (KEYS[1])
 * if it is free or ours; given the run's hash as KEYS[2] (the claim), it
 * returns the run's spec, else 1 (a renewal).  Another learner's lease: the
 * error "HELD <holder>". */
static const char LEASE_LUA[] =
    "local cur = redis.call('GET', KEYS[1]) "
    "if cur and cur ~= ARGV[1] then return redis.error_reply('HELD ' .. cur) end "
    "redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) "
    "if KEYS[2] then return redis.call('HGET', KEYS[2], 'spec') end return 1";

static void on_spec(redisAsyncContext *ac, void *reply, void *priv) {
    (void)ac;
    lrun_t *r = priv;
    redisReply *rep = reply;
    r->spec_asked = 0;
    if (rep && rep->type == REDIS_REPLY_ERROR && !strncmp(rep->str, "HELD ", 5)) {
        /* A standby for this run: the cron asks again, and this learner
         * takes the run once the other stops renewing its lease. */
        if (strcmp(r->held_by, rep->str + 5)) {
            snprintf(r->held_by, sizeof r->held_by, "%s", rep->str + 5);
            sf_info("run %s: the learner %s holds it (one learner per run); taking it if its lease lapses", r->id,
                    r->held_by);
        }
        return;
    }
    if (!rep || rep->type == REDIS_REPLY_ERROR) {
        /* Redis went away or is still loading its AOF after a restart: not
         * the run's fault; the cron asks again. */
        sf_warn("run %s: cannot read its spec yet (%s); asking again", r->id,
                rep ? rep->str : "connection lost");
        return;
    }
    r->owned = 1;
    if (r->held_by[0]) sf_info("run %s: its lease was free again: this learner holds it now", r->id);
    if (rep->type != REDIS_REPLY_STRING) {
        r->owned = 0; /* nothing to hold: the lease lapses by itself */
        snprintf(r->error, sizeof r->error, "no run %s in Redis", r->id);
        r->state = L_FAILED;
    } else if (configure(r, rep->str) != 0) {
        r->state = L_FAILED;
    } else {
        r->state = L_LOADING_MODEL;
        learner_load(r);
        return;
    }
    sf_error("run %s: %s", r->id, r->error);
    learner_stats_write(r, 0);
    learner_answer_waiters(r);
}

/* Reads the run's spec; while Redis is unreachable the run waits in
 * L_LOADING_SPEC and the cron (or Redis coming back) asks again. */
void learner_ask_spec(lrun_t *r) {
    redisAsyncContext *ac = sf_redis_conn_ac(&L.redis);
    if (!ac || r->spec_asked) return;
    char key[128], owner[160], ttl[24];
    snprintf(key, sizeof key, SF_KEY_RUN, L.cfg.redis_prefix, r->id);
    snprintf(owner, sizeof owner, SF_KEY_RUN_LEARNER_OWNER, L.cfg.redis_prefix, r->id);
    snprintf(ttl, sizeof ttl, "%ld", L.cfg.run_lease_ms);
    const char *argv[] = {"EVAL", LEASE_LUA, "2", owner, key, L.holder, ttl};
    if (redisAsyncCommandArgv(ac, on_spec, r, 7, argv, NULL) == REDIS_OK) r->spec_asked = 1;
}

static void on_renew(redisAsyncContext *ac, void *reply, void *priv) {
    (void)ac;
    lrun_t *r = priv;
    redisReply *rep = reply;
    r->renewing = 0;
    if (!rep || rep->type != REDIS_REPLY_ERROR || strncmp(rep->str, "HELD ", 5)) return;
    /* Another learner took the run while this one could not renew (paused,
     * cut off): it serves and writes nothing more of it. */
    r->owned = 0;
    r->lost = 1;
    snprintf(r->error, sizeof r->error, "run %s is held by another learner now (%s): one learner per run", r->id,
             rep->str + 5);
    sf_error("%s; this learner stops serving it", r->error);
    learner_answer_waiters(r);
}

void learner_renew_runs(void) {
    redisAsyncContext *ac = sf_redis_conn_ac(&L.redis);
    if (!ac) return;
    for (lrun_t *r = L.runs; r; r = r->next) {
        if (!r->owned || r->renewing) continue;
        char owner[160], ttl[24];
        snprintf(owner, sizeof owner, SF_KEY_RUN_LEARNER_OWNER, L.cfg.redis_prefix, r->id);
        snprintf(ttl, sizeof ttl, "%ld", L.cfg.run_lease_ms);
        const char *argv[] = {"EVAL", LEASE_LUA, "1", owner, L.holder, ttl};
        if (redisAsyncCommandArgv(ac, on_renew, r, 6, argv, NULL) == REDIS_OK) r->renewing = 1;
    }
}

lrun_t *learner_run_get(const char *id) {
    lrun_t *r = find_run(id);
    if (r) return r;
    r = calloc(1, sizeof *r);
    if (!r) return NULL;
    snprintf(r->id, sizeof r->id, "%s", id);
    r->state = L_LOADING_SPEC;
    r->next = L.runs;
    L.runs = r;
    sf_info("run %s: loading its learner settings", id);
    learner_ask_spec(r);
    return r;
}

/* ---- messages from workers ---------------------------------------------------- */

static void send_env(const void *rid, size_t rid_len, Sf__Envelope *env) {
    if (sf_wire_send(L.sock, rid, rid_len, env, &L.sbuf, &L.sbuf_cap) != 0)
        sf_debug("send failed: %s", zmq_strerror(zmq_errno()));
}

static void send_policy(lrun_t *r, const void *rid, size_t rid_len) {
    Sf__PolicyChunk c = SF__POLICY_CHUNK__INIT;
    Sf__Envelope env = SF__ENVELOPE__INIT;
    env.body_case = SF__ENVELOPE__BODY_POLICY_CHUNK;
    env.policy_chunk = &c;
    c.run = r->id;
    c.version = r->version;
    c.updates = r->updates;
    c.done = r->updates >= r->target_updates;
    if (r->state == L_FAILED || r->lost || !r->blob) {
        c.error = r->error[0] ? r->error : "the learner has no policy for this run";
        send_env(rid, rid_len, &env);
        return;
    }
    c.count = (uint32_t)((r->blob_len + SF_WIRE_CHUNK - 1) / SF_WIRE_CHUNK);
    if (c.count == 0) c.count = 1;
    c.total_len = r->blob_len;
    c.crc32 = r->blob_crc;
    for (uint32_t i = 0; i < c.count; i++) {
        size_t off = (size_t)i * SF_WIRE_CHUNK;
        c.index = i;
        c.data.data = r->blob + off;
        c.data.len = r->blob_len - off < SF_WIRE_CHUNK ? r->blob_len - off : SF_WIRE_CHUNK;
        send_env(rid, rid_len, &env);
    }
}

void learner_answer_waiters(lrun_t *r) {
    waiter_t **pp = &r->waiters;
    while (*pp) {
        waiter_t *w = *pp;
        if (r->state == L_FAILED || r->lost || (r->blob && r->version >= w->min_version)) {
            send_policy(r, w->rid, w->rid_len);
            *pp = w->next;
            free(w);
        } else {
            pp = &w->next;
        }
    }
}

static void on_rollouts(const void *rid, size_t rid_len, const Sf__RolloutBatch *b) {
    lrun_t *r = learner_run_get(b->run);
    Sf__RolloutAck ack = SF__ROLLOUT_ACK__INIT;
    char why[400];
    ack.run = b->run;
    if (!r) return;
    int verdict = learner_rollouts_verdict(r->lost ? L_FAILED : r->state, r->version, b->policy_version, r->max_staleness);
    if (verdict == LEARNER_ROLL_FAILED) {
        ack.error = r->error;
    } else if (verdict == LEARNER_ROLL_STALE) {
        ack.dropped_stale = (uint32_t)b->n_rollouts;
        r->dropped_stale += b->n_rollouts;
    } else {
        /* A run that uses the rollouts' own log-probs needs them with every
         * rollout (a third-party worker may leave them out): the batch is
         * refused whole, saying so, rather than trained on with a ratio of 1. */
        int refused = 0, bad_checks = 0;
        for (size_t i = 0; r->ppo.use_rollout_logprobs && i < b->n_rollouts && !refused; i++) {
            const Sf__Rollout *ro = b->rollouts[i];
            if (ro->n_logprobs != ro->n_response || ro->n_values != ro->n_response) {
                snprintf(why, sizeof why, "run %s uses the rollouts' log-probs and values (ppo.use_rollout_logprobs, "
                         "on when ppo.max_staleness > 0): rollout %zu has %zu log-probs and %zu values for %zu "
                         "response tokens", r->id, i, ro->n_logprobs, ro->n_values, ro->n_response);
                ack.error = why;
                refused = 1;
            }
        }
        for (size_t i = 0; !refused && i < b->n_rollouts; i++) {
            const Sf__Rollout *ro = b->rollouts[i];
            if (r->n_buf == r->cap_buf) {
                int nc = r->cap_buf ? r->cap_buf * 2 : 256;
                roll_t *nb = realloc(r->buf, (size_t)nc * sizeof *nb);
                if (!nb) break;
                r->buf = nb;
                r->cap_buf = nc;
            }
            roll_t *x = &r->buf[r->n_buf];
            x->qn = (int)ro->n_query;
            x->rn = (int)ro->n_response;
            x->query = malloc((size_t)x->qn * sizeof(int32_t));
            x->response = malloc((size_t)x->rn * sizeof(int32_t));
            const int behaviour = ro->n_logprobs == ro->n_response && ro->n_values == ro->n_response;
            x->logprobs = behaviour ? malloc((size_t)x->rn * sizeof(float)) : NULL;
            x->values = behaviour ? malloc((size_t)x->rn * sizeof(float)) : NULL;
            if (!x->query || !x->response || (behaviour && (!x->logprobs || !x->values))) {
                roll_free(x);
                break;
            }
            memcpy(x->query, ro->query, (size_t)x->qn * sizeof(int32_t));
            memcpy(x->response, ro->response, (size_t)x->rn * sizeof(int32_t));
            if (behaviour) {
                memcpy(x->logprobs, ro->logprobs, (size_t)x->rn * sizeof(float));
                memcpy(x->values, ro->values, (size_t)x->rn * sizeof(float));
            }
            x->score = ro->score;
            x->version = b->policy_version;
            /* A check whose score is no cosine is dropped; the rollout is kept. */
            const int check_ok = isfinite(ro->image_score) && fabsf(ro->image_score) <= 1.0f + 1e-4f;
            bad_checks += ro->image_checked && !check_ok;
            x->image_checked = ro->image_checked && check_ok;
            x->image_score = x->image_checked ? ro->image_score : 0;
            x->faithful = x->image_checked && ro->faithful;
            r->n_buf++;
            ack.accepted++;
        }
        if (bad_checks)
            sf_warn("run %s: %d rollout(s) of policy version %u came with an image score outside [-1, 1]; their "
                    "image checks were dropped", r->id, bad_checks, b->policy_version);
        r->received += ack.accepted;
    }
    ack.version = r->version;
    Sf__Envelope env = SF__ENVELOPE__INIT;
    env.body_case = SF__ENVELOPE__BODY_ROLLOUT_ACK;
    env.rollout_ack = &ack;
    send_env(rid, rid_len, &env);
    learner_maybe_update(r);
}

static void on_policy_get(const void *rid, size_t rid_len, const Sf__PolicyGet *g) {
    lrun_t *r = learner_run_get(g->run);
    if (!r) return;
    if (r->state == L_FAILED || (r->blob && r->version >= g->min_version)) {
        send_policy(r, rid, rid_len);
        return;
    }
    /* A worker asking again (its client resends unanswered requests) keeps
     * one place in the queue. */
    for (waiter_t *o = r->waiters; o; o = o->next)
        if (o->rid_len == rid_len && memcmp(o->rid, rid, rid_len) == 0) {
            if (g->min_version < o->min_version) o->min_version = g->min_version;
            return;
        }
    waiter_t *w = calloc(1, sizeof *w);
    if (!w) return;
    memcpy(w->rid, rid, rid_len);
    w->rid_len = rid_len;
    w->min_version = g->min_version;
    w->next = r->waiters;
    r->waiters = w;
}

void learner_on_readable(sf_zsock_t *zs) {
    zmq_msg_t rid, body;
    zmq_msg_init(&rid);
    zmq_msg_init(&body);
    int n = 0;
    for (; n < 1024; n++) {
        if (zmq_msg_recv(&rid, zs->sock, ZMQ_DONTWAIT) < 0) break;
        if (!zmq_msg_more(&rid) || zmq_msg_recv(&body, zs->sock, ZMQ_DONTWAIT) < 0) { L.frames_bad++; continue; }
        if (zmq_msg_more(&body)) {
            L.frames_bad++;
            while (zmq_msg_more(&body) && zmq_msg_recv(&body, zs->sock, ZMQ_DONTWAIT) >= 0) {}
            continue;
        }
        Sf__Envelope *env = sf_wire_decode_counted(zmq_msg_data(&body), zmq_msg_size(&body), &L.frames_bad, "a worker");
        if (!env) continue;
        if (env->body_case == SF__ENVELOPE__BODY_ROLLOUTS)
            on_rollouts(zmq_msg_data(&rid), zmq_msg_size(&rid), env->rollouts);
        else if (env->body_case == SF__ENVELOPE__BODY_POLICY_GET)
            on_policy_get(zmq_msg_data(&rid), zmq_msg_size(&rid), env->policy_get);
        else {
            L.frames_bad++;
            sf_warn("unexpected message (body %d)", (int)env->body_case);
        }
        sf_wire_free(env);
    }
    zmq_msg_close(&rid);
    zmq_msg_close(&body);
    if (n == 1024) sf_zsock_backlog(zs);
}
