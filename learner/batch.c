/* batch.c: the learner's rules for rollouts and PPO batches (batch.h). */
#include <math.h>
#include <string.h>

#include "learner/batch.h"
#include "learner/learner.h"

int learner_rollouts_verdict(int state, uint32_t version, uint32_t policy_version, int max_staleness) {
    if (state == L_FAILED) return LEARNER_ROLL_FAILED;
    if (version > policy_version + (uint32_t)max_staleness && state != L_LOADING_SPEC) return LEARNER_ROLL_STALE;
    return LEARNER_ROLL_ACCEPT;
}

int learner_batch_ready(int state, int n_buf, int batch_size, uint64_t updates, uint64_t target_updates) {
    return state == L_READY && n_buf >= batch_size && updates < target_updates;
}

void learner_batch_take(roll_t *buf, int *n_buf, roll_t *batch, int n) {
    memcpy(batch, buf, (size_t)n * sizeof *batch);
    memmove(buf, buf + n, (size_t)(*n_buf - n) * sizeof *buf);
    *n_buf -= n;
}

double learner_batch_nonsense(const roll_t *batch, int n) {
    int bad = 0;
    for (int i = 0; i < n; i++) bad += batch[i].score <= -1.0f + 1e-6f;
    return n ? (double)bad / n : 0.0;
}

learner_image_check_t learner_batch_image_check(const roll_t *batch, int n) {
    learner_image_check_t c = {0, NAN, NAN};
    double score = 0;
    int faithful = 0;
    for (int i = 0; i < n; i++) {
        if (!batch[i].image_checked) continue;
        c.checked++;
        score += batch[i].image_score;
        faithful += batch[i].faithful != 0;
    }
    if (c.checked) c.image_score = score / c.checked, c.faithful = (double)faithful / c.checked;
    return c;
}

int learner_batch_drop_without_behaviour(roll_t *buf, int *n_buf) {
    int kept = 0, dropped = 0;
    for (int i = 0; i < *n_buf; i++) {
        if (buf[i].logprobs && buf[i].values) buf[kept++] = buf[i];
        else roll_free(&buf[i]), dropped++;
    }
    *n_buf = kept;
    return dropped;
}
