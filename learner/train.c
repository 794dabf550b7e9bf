/* train.c: the model jobs on libuv's thread pool — loading a run's policy
 * (with the supervised fine-tuning it may need before PPO, on the world's
 * caption corpus of the run's classes or on a JSONL corpus of its own, and
 * resuming from its last checkpoint), PPO updates, serialising the policy
 * image the workers get, and checkpoints — and, back on the loop,
 * after_work(), which takes over what a job made (see learner.h for the
 * threading rules).  A finished SFT is saved beside the run's checkpoints
 * and never repeated. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/method/classes.h"
#include "common/net/blob.h"
#include "common/runtime/error.h"
#include "common/runtime/fileio.h"
#include "common/runtime/log.h"
#include "common/text/bpe.h"
#include "common/text/sft_rows.h"
#include "learner/learner.h"
#include "world/world.h"

/* The files of a run's checkpoint folder, checkpoint_dir/<run>/. */
#define POLICY_FILE "policy.safetensors" /* the policy at its last update */
#define STATE_FILE "state.json"          /* its version, updates and the KL controller's beta */
#define SFT_FILE "sft.safetensors"       /* the fine-tuned policy PPO starts from */

/* checkpoint_dir/<run>/name, or the run's folder with name NULL; SF_ERANGE
 * when it does not fit in n. */
static int ckpt_path(const lrun_t *r, const char *name, char *out, size_t n) {
    int k = snprintf(out, n, "%s/%s%s%s", L.cfg.checkpoint_dir, r->id, name ? "/" : "", name ? name : "");
    return k < 0 || (size_t)k >= n ? SF_ERANGE : 0;
}

/* Saves m as the run's file name, through a temporary file and a rename, so
 * that a learner restarted at any moment finds the old file or the whole
 * new one; makes the run's folder first. */
static int ckpt_save(const lrun_t *r, sf_gpt2_t *m, const char *name) {
    char dir[PATH_MAX], path[PATH_MAX], tmp[PATH_MAX];
    int rc;
    if ((rc = ckpt_path(r, NULL, dir, sizeof dir)) || (rc = ckpt_path(r, name, path, sizeof path)) ||
        (rc = sf_mkdir_p(dir, 0755)) || (rc = sf_tmp_path(path, tmp, sizeof tmp)))
        return rc;
    if ((rc = sf_gpt2_save(m, tmp)) != 0) {
        unlink(tmp);
        return rc;
    }
    return sf_commit_tmp(tmp, path);
}

/* Serialises the policy into the job's result (the loop publishes it). */
static int serialise(lrun_t *r) {
    free(r->w_blob);
    r->w_blob = NULL;
    return sf_gpt2_to_bytes(r->policy, &r->w_blob, &r->w_blob_len);
}

typedef struct {
    uint32_t version;
    uint64_t updates;
    double kl_coef;
} ckpt_state_t;

static int write_state(FILE *f, void *arg) {
    const ckpt_state_t *s = arg;
    return fprintf(f, "{\"version\": %u, \"updates\": %llu, \"kl_coef\": %.9g}\n", s->version,
                   (unsigned long long)s->updates, s->kl_coef) < 0 ? SF_EIO : 0;
}

/* The policy and, beside it, its state (version, updates, the KL
 * controller's beta): what a restarted learner resumes from.  The policy's
 * file is the image serialise() has just made for the workers (the bytes
 * sf_gpt2_save would write), not a second serialisation. */
static int checkpoint(lrun_t *r, uint32_t version, uint64_t updates) {
    char dir[PATH_MAX], path[PATH_MAX], state[PATH_MAX];
    int rc;
    if ((rc = ckpt_path(r, NULL, dir, sizeof dir)) || (rc = ckpt_path(r, POLICY_FILE, path, sizeof path)) ||
        (rc = ckpt_path(r, STATE_FILE, state, sizeof state)) || (rc = sf_mkdir_p(dir, 0755)) ||
        (rc = sf_write_file_atomic(path, r->w_blob, r->w_blob_len)))
        return rc;
    ckpt_state_t st = {version, updates, r->trainer ? sf_ppo_kl_coef(r->trainer) : r->ppo.init_kl_coef};
    return sf_write_atomic(state, write_state, &st);
}

/* ---- SFT before PPO (within the loading job) ---------------------------- */

static int sft_progress(void *arg, int step, int steps, float loss) {
    lrun_t *r = arg;
    atomic_store(&r->sft_step, step);
    atomic_store(&r->sft_loss_x1e6, (int)fminf(loss * 1e6f, 2e9f));
    if (step == 1 || step % 200 == 0 || step == steps) sf_info("run %s: SFT step %d/%d loss %.4f", r->id, step, steps, loss);
    return atomic_load(&L.sft_stop);
}

/* The lines {"class", "caption"} of a JSONL corpus file as token rows;
 * with only >= 0, every line must be of that class (a corpus phase's file
 * holds one class). */
static int corpus_file_rows(const char *path, const sf_world_t *w, int only, const sf_bpe_t *bpe,
                            sf_sft_rows_t *rows, char *err, size_t n) {
    FILE *f = fopen(path, "r");
    if (!f) return sf_errf(SF_EIO, err, n, "SFT: cannot open the corpus %s: %s", path, strerror(errno));
    char *line = NULL;
    size_t cap = 0;
    int lineno = 0, rc = 0;
    while (rc == 0 && getline(&line, &cap, f) > 0) {
        lineno++;
        if (strspn(line, " \t\r\n") == strlen(line)) continue;
        cJSON *o = cJSON_Parse(line);
        const cJSON *c = cJSON_GetObjectItemCaseSensitive(o, "class"), *t = cJSON_GetObjectItemCaseSensitive(o, "caption");
        int k = cJSON_IsString(c) ? sf_world_class_find(w, c->valuestring) : -1;
        if (!cJSON_IsString(c) || !cJSON_IsString(t))
            rc = sf_errf(SF_EINVAL, err, n, "SFT: corpus %s line %d: want {\"class\": ..., \"caption\": ...}", path,
                         lineno);
        else if (k < 0 || (only >= 0 && k != only))
            rc = sf_errf(SF_EINVAL, err, n, "SFT: corpus %s line %d: %s class '%.64s'", path, lineno,
                         k < 0 ? "unknown" : "another", c->valuestring);
        else if (sf_sft_rows_add(rows, bpe, sf_world_class(w, k)->name, t->valuestring) != 0)
            rc = sf_errf(SF_EINVAL, err, n, "SFT: corpus %s line %d: the caption is empty or has control characters",
                         path, lineno);
        cJSON_Delete(o);
    }
    free(line);
    fclose(f);
    return rc;
}

/* The SFT corpus of run r as token rows: the corpus phase's files of the
 * run's classes, the world's corpus captions of them, or the lines
 * {"class", "caption"} of a JSONL file. */
static int sft_rows(lrun_t *r, sf_sft_rows_t *rows, int stride, char *err, size_t n) {
    char e[256];
    sf_bpe_t *bpe = NULL;
    sf_classlist_t *cl = NULL;
    sf_world_t *w = NULL;
    int rc = sf_bpe_load_dir(L.cfg.gpt2_vocab, &bpe, e, sizeof e);
    if (rc) { sf_errf(rc, err, n, "SFT: GPT-2 vocabulary (gpt2_vocab %s): %s", L.cfg.gpt2_vocab, e); goto out; }
    if ((rc = sf_classes_load(r->world, &cl, e, sizeof e)) != 0 ||
        (rc = sf_world_create(cl, SF_WORLD_DEFAULT_SIZE, &w)) != 0) {
        sf_errf(rc, err, n, "SFT: cannot make the world %s: %s", r->world, e);
        goto out;
    }
    if ((rc = sf_sft_rows_init(rows, stride)) != 0) goto out;
    if (r->corpus_dir[0]) {
        /* The corpus phase's: every caption its workers stored for the
         * run's classes (they were checked when they were written). */
        for (int i = 0; rc == 0 && i < r->n_classes; i++) {
            int k = sf_world_class_find(w, r->classes[i]);
            if (k < 0) { rc = sf_errf(SF_EINVAL, err, n, "SFT: class '%s' is not in %s", r->classes[i], r->world); break; }
            char path[PATH_MAX + 32];
            snprintf(path, sizeof path, "%s/%s.jsonl", r->corpus_dir, sf_world_class(w, k)->wnid);
            rc = corpus_file_rows(path, w, k, bpe, rows, err, n);
        }
    } else if (!r->sft_corpus[0]) {
        for (int i = 0; rc == 0 && i < r->n_classes; i++) {
            int k = sf_world_class_find(w, r->classes[i]);
            if (k < 0) { rc = sf_errf(SF_EINVAL, err, n, "SFT: class '%s' is not in %s", r->classes[i], r->world); break; }
            for (int j = 0; rc == 0 && j < r->sft_per_class; j++) {
                char cap[512];
                if (sf_world_corpus_caption(w, k, j, 1, cap, sizeof cap) != 0) break; /* the class has no more */
                rc = sf_sft_rows_add(rows, bpe, sf_world_class(w, k)->name, cap);
            }
        }
    } else {
        rc = corpus_file_rows(r->sft_corpus, w, -1, bpe, rows, err, n);
    }
    if (rc == 0 && rows->n == 0) rc = sf_errf(SF_EINVAL, err, n, "SFT: the corpus has no captions");
out:
    if (rc) sf_sft_rows_free(rows);
    sf_world_destroy(&w);
    sf_classes_free(&cl);
    sf_bpe_free(&bpe);
    return rc;
}

/* Fine-tunes r->ref on the run's corpus and saves it as the run's
 * sft.safetensors; or, when an earlier learner finished that, loads it. */
static int sft_work(lrun_t *r, char *err, size_t n) {
    char path[PATH_MAX], e[512] = "";
    sf_gpt2_t *m = NULL;
    if (ckpt_path(r, SFT_FILE, path, sizeof path) == 0 && access(path, R_OK) == 0) {
        if (sf_gpt2_load(path, L.cfg.device, &m, e, sizeof e) == 0) {
            sf_gpt2_free(&r->ref);
            r->ref = m;
            atomic_store(&r->sft_step, r->sft_steps);
            sf_info("run %s: SFT was done before; policy from %s", r->id, path);
            return 0;
        }
        sf_warn("run %s: %s unusable (%s); fine-tuning again", r->id, path, e);
    }
    sf_sft_rows_t rows;
    const int ctx = sf_gpt2_config(r->ref)->n_ctx, stride = ctx < 128 ? ctx : 128;
    int rc = sft_rows(r, &rows, stride, err, n);
    if (rc) return rc;
    sf_info("run %s: SFT of the policy: %d steps of %d over %d captions", r->id, r->sft_steps, r->sft_batch, rows.n);
    sf_sft_opts_t o;
    sf_sft_opts_default(&o);
    o.steps = r->sft_steps, o.batch = r->sft_batch, o.warmup = r->sft_warmup;
    o.lr = r->sft_lr, o.lr_min = r->sft_lr_min, o.seed = r->seed ^ 0x5f7ull;
    rc = sf_gpt2_sft(r->ref, rows.seqs, rows.plen, rows.slen, rows.n, rows.stride, &o, sft_progress, r, &r->sft_first,
                     &r->sft_last);
    sf_sft_rows_free(&rows);
    if (rc == SF_ECANCELED) return sf_errf(rc, err, n, "SFT stopped by a signal");
    if (rc) return sf_errf(rc, err, n, "SFT failed: %s", sf_gpt2_errstr(r->ref));
    /* A copy without the SFT optimiser's moments is what PPO keeps. */
    if ((rc = sf_gpt2_clone(r->ref, &m)) != 0) return sf_errf(rc, err, n, "cannot copy the policy: %s", sf_ml_errstr());
    sf_gpt2_free(&r->ref);
    r->ref = m;
    if (ckpt_save(r, r->ref, SFT_FILE) != 0)
        sf_warn("run %s: cannot save %s (a restarted learner will fine-tune again)", r->id, path);
    sf_info("run %s: SFT done: loss %.4f -> %.4f", r->id, r->sft_first, r->sft_last);
    return 0;
}

/* ---- the jobs ---------------------------------------------------------------- */

static void load_work(uv_work_t *w) {
    lrun_t *r = w->data;
    char model[PATH_MAX], state[PATH_MAX], err[512] = "";
    int rc = 0;
    sf_ppo_config_t pc = r->ppo; /* the loop reads r->ppo meanwhile */
    r->w_failed = 0;
    r->w_version = 0;
    r->w_updates = 0;
    if (r->random_policy) rc = sf_gpt2_new(&r->pcfg, L.cfg.device, r->seed, &r->ref, err, sizeof err);
    else rc = sf_gpt2_load(r->policy_path, L.cfg.device, &r->ref, err, sizeof err);
    if (rc) { snprintf(r->w_error, sizeof r->w_error, "cannot load the policy: %s", err); r->w_failed = 1; return; }
    if (r->sft_steps && (rc = sft_work(r, err, sizeof err)) != 0) {
        snprintf(r->w_error, sizeof r->w_error, "%s", err);
        r->w_failed = 1;
        return;
    }
    /* Resume from a checkpoint if this run has one. */
    char *buf = NULL;
    if (ckpt_path(r, POLICY_FILE, model, sizeof model) == 0 &&
        ckpt_path(r, STATE_FILE, state, sizeof state) == 0)
        buf = sf_file_text(state, NULL);
    if (buf) {
        cJSON *o = cJSON_Parse(buf);
        free(buf);
        cJSON *v = cJSON_GetObjectItem(o, "version"), *u = cJSON_GetObjectItem(o, "updates"),
              *kc = cJSON_GetObjectItem(o, "kl_coef");
        if (cJSON_IsNumber(v) && cJSON_IsNumber(u) && sf_gpt2_load(model, L.cfg.device, &r->policy, err, sizeof err) == 0) {
            r->w_version = (uint32_t)v->valuedouble;
            r->w_updates = (uint64_t)u->valuedouble;
            if (cJSON_IsNumber(kc)) pc.init_kl_coef = (float)kc->valuedouble;
            sf_info("run %s: resumed from checkpoint at version %u (%llu updates)", r->id, r->w_version,
                    (unsigned long long)r->w_updates);
        } else {
            sf_warn("run %s: checkpoint %s unusable (%s); starting from the initial policy", r->id, state,
                    err[0] ? err : "bad state file");
        }
        cJSON_Delete(o);
    }
    if (!r->policy && (rc = sf_gpt2_clone(r->ref, &r->policy)) != 0) {
        snprintf(r->w_error, sizeof r->w_error, "cannot copy the policy: %s", sf_ml_errstr());
        r->w_failed = 1;
        return;
    }
    r->w_kl_coef = pc.init_kl_coef;
    if ((rc = sf_ppo_new(r->policy, r->ref, &pc, &r->trainer, err, sizeof err)) != 0 || (rc = serialise(r)) != 0) {
        snprintf(r->w_error, sizeof r->w_error, "cannot set up PPO: %s", err[0] ? err : sf_ml_errstr());
        r->w_failed = 1;
        return;
    }
}

static void update_work(uv_work_t *w) {
    lrun_t *r = w->data;
    int n = r->n_batch, qs = 1, rs = 1;
    for (int i = 0; i < n; i++) {
        if (r->batch[i].qn > qs) qs = r->batch[i].qn;
        if (r->batch[i].rn > rs) rs = r->batch[i].rn;
    }
    int32_t *q = calloc((size_t)n * qs, sizeof *q), *resp = calloc((size_t)n * rs, sizeof *resp);
    int *ql = calloc((size_t)n, sizeof *ql), *rl = calloc((size_t)n, sizeof *rl);
    float *sc = calloc((size_t)n, sizeof *sc);
    /* The behaviour policy's log-probs and values (ppo.use_rollout_logprobs):
     * on_rollouts took only rollouts that have them. */
    const int beh = r->ppo.use_rollout_logprobs;
    float *lp = beh ? calloc((size_t)n * rs, sizeof *lp) : NULL, *val = beh ? calloc((size_t)n * rs, sizeof *val) : NULL;
    r->w_failed = 0;
    if (!q || !resp || !ql || !rl || !sc || (beh && (!lp || !val))) {
        snprintf(r->w_error, sizeof r->w_error, "out of memory for a PPO batch of %d", n);
        r->w_failed = 1;
    } else {
        for (int i = 0; i < n; i++) {
            memcpy(q + (size_t)i * qs, r->batch[i].query, (size_t)r->batch[i].qn * sizeof *q);
            memcpy(resp + (size_t)i * rs, r->batch[i].response, (size_t)r->batch[i].rn * sizeof *resp);
            ql[i] = r->batch[i].qn;
            rl[i] = r->batch[i].rn;
            sc[i] = r->batch[i].score;
            if (beh && r->batch[i].logprobs) {
                memcpy(lp + (size_t)i * rs, r->batch[i].logprobs, (size_t)r->batch[i].rn * sizeof *lp);
                memcpy(val + (size_t)i * rs, r->batch[i].values, (size_t)r->batch[i].rn * sizeof *val);
            }
        }
        sf_ppo_batch_t b = {n, qs, rs, q, ql, resp, rl, lp, val, sc};
        sf_ppo_stats_t st;
        int rc = sf_ppo_step(r->trainer, &b, &st);
        if (rc) {
            snprintf(r->w_error, sizeof r->w_error, "PPO step failed: %s", sf_ppo_errstr(r->trainer));
            r->w_failed = 1;
        } else if (serialise(r) != 0) {
            snprintf(r->w_error, sizeof r->w_error, "cannot serialise the policy: %s", sf_ml_errstr());
            r->w_failed = 1;
        } else {
            r->w_stats = st;
            r->w_version = r->version + 1;
            r->w_updates = r->updates + 1;
            int crc = checkpoint(r, r->w_version, r->w_updates);
            if (crc != 0) sf_warn("run %s: checkpoint failed: %s", r->id, sf_strerror(crc));
        }
    }
    free(q); free(resp); free(ql); free(rl); free(sc); free(lp); free(val);
}

/* Back on the loop: take over what the job made. */
static void adopt(lrun_t *r) {
    free(r->blob);
    r->blob = r->w_blob;
    r->blob_len = r->w_blob_len;
    r->blob_crc = sf_crc32(0, r->blob, r->blob_len);
    r->w_blob = NULL;
    r->version = r->w_version;
    r->updates = r->w_updates;
}

static void after_work(uv_work_t *w, int status) {
    lrun_t *r = w->data;
    (void)status;
    if (r->state == L_LOADING_MODEL) {
        if (r->w_failed) {
            snprintf(r->error, sizeof r->error, "%s", r->w_error);
            r->state = L_FAILED;
            sf_error("run %s: %s", r->id, r->error);
        } else {
            adopt(r);
            r->ppo.init_kl_coef = r->w_kl_coef;
            r->state = L_READY;
            sf_info("run %s: policy ready at version %u (%lld parameters); %llu of %llu updates done", r->id,
                    r->version, (long long)sf_gpt2_num_params(r->policy), (unsigned long long)r->updates,
                    (unsigned long long)r->target_updates);
        }
        learner_stats_write(r, 0);
    } else if (r->state == L_UPDATING) {
        L.updating--;
        for (int i = 0; i < r->n_batch; i++) roll_free(&r->batch[i]);
        free(r->batch);
        r->batch = NULL;
        r->n_batch = 0;
        r->state = L_READY;
        if (r->w_failed) {
            /* The batch is lost, the policy is as it was: keep serving. */
            snprintf(r->error, sizeof r->error, "%s", r->w_error);
            sf_error("run %s: %s", r->id, r->error);
            learner_stats_write(r, 0);
        } else {
            adopt(r);
            r->last = r->w_stats;
            r->nonsense = r->w_nonsense;
            r->image = r->w_image;
            r->error[0] = 0;
            sf_info("run %s: update %llu -> version %u: score %.4f kl %.4f beta %.4f entropy %.3f", r->id,
                    (unsigned long long)r->updates, r->version, r->last.mean_score, r->last.kl, r->last.kl_coef,
                    r->last.entropy);
            learner_stats_write(r, 1);
        }
    }
    learner_answer_waiters(r);
    /* The cores go to the next run with a batch waiting: the runs after this
     * one first, so that no run waits behind another's whole training. */
    for (lrun_t *o = r->next; o; o = o->next) learner_maybe_update(o);
    for (lrun_t *o = L.runs; o && o != r->next; o = o->next) learner_maybe_update(o);
}

void learner_maybe_update(lrun_t *r) {
    if (r->state == L_READY && r->ppo.use_rollout_logprobs) {
        int d = learner_batch_drop_without_behaviour(r->buf, &r->n_buf);
        if (d)
            sf_warn("run %s: dropped %d rollout(s) without log-probs, received before its spec was read "
                    "(the run uses the rollouts' log-probs: ppo.use_rollout_logprobs)", r->id, d);
    }
    if (!learner_batch_ready(r->state, r->n_buf, r->batch_size, r->updates, r->target_updates)) return;
    /* One update at a time: after_work hands the cores on. */
    if (L.updating) return;
    r->batch = malloc((size_t)r->batch_size * sizeof *r->batch);
    if (!r->batch) return;
    learner_batch_take(r->buf, &r->n_buf, r->batch, r->batch_size);
    r->n_batch = r->batch_size;
    r->w_nonsense = learner_batch_nonsense(r->batch, r->n_batch);
    r->w_image = learner_batch_image_check(r->batch, r->n_batch);
    r->state = L_UPDATING;
    r->work.data = r;
    if (uv_queue_work(L.loop, &r->work, update_work, after_work) == 0) L.updating++;
}

void learner_load(lrun_t *r) {
    r->work.data = r;
    uv_queue_work(L.loop, &r->work, load_work, after_work);
}
