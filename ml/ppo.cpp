// ppo.cpp: the SFT step and TRL's classic PPO step for the GPT-2 policy.
//
// The PPO step follows trl.PPOTrainer (v0.4-0.7) piece by piece:
//   1. old log-probs and values from the policy, reference log-probs from the
//      frozen copy, over query+response (no grad);
//   2. per-token rewards -beta * (logp - logp_ref), the score added at the
//      last response token (compute_rewards);
//   3. GAE with gamma, lambda, returns = advantages + values, advantages
//      whitened (compute_advantages);
//   4. ppo_epochs passes over shuffled minibatches: clipped policy loss,
//      clipped value loss times vf_coef, optional gradient clipping, Adam;
//      a minibatch whose mean ratio exceeds ratio_threshold is skipped;
//   5. the adaptive KL controller updated with the batch's mean KL.
// The loss pieces are plain tensor functions, exposed through the C API on
// arrays so that tests can check them against hand-computed values.
//
// What makes a step fast for a small policy, whose cost is its 50,257-word
// vocabulary (tools/bench_learner.sh): log-probs only at real response
// tokens; the reference's log-probs once per batch, without grad; the
// rollouts' own log-probs and values, when the run uses them, with no
// forward pass of the policy before the epochs; each minibatch without the
// columns that are padding in all its rows, and the transformer on real
// positions only (GPT2Impl::hidden, train_fast); log-probs, entropies and
// their gradient through the fused vocabulary head (GPT2Impl::
// token_logprobs), which never forms an (N, V) gradient, once per distinct
// hidden state (distinct_states); the token embedding's gradient added
// sparsely to the head's; gradients released rather than zeroed between
// minibatches; and Adam in one pass over each parameter (FusedAdam).  The
// straightforward path (log_softmax and gather on the padded batch,
// torch::optim::Adam) stays as the reference that test_ml_ppo.c holds the
// fast one to (sf__ppo_reference).
#include "ml/gpt2_internal.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

// ---- the pieces, on tensors ----

static torch::Tensor masked_mean(const torch::Tensor &x, const torch::Tensor &mask) {
    return (x * mask).sum() / mask.sum();
}

// Variance with Bessel's correction, as TRL's masked_var.
static torch::Tensor masked_var(const torch::Tensor &x, const torch::Tensor &mask) {
    auto mean = masked_mean(x, mask);
    auto centred = x - mean;
    auto var = masked_mean(centred * centred, mask);
    auto n = mask.sum();
    return var * n / (n - 1);
}

static torch::Tensor masked_whiten(const torch::Tensor &x, const torch::Tensor &mask, bool shift_mean) {
    auto mean = masked_mean(x, mask), var = masked_var(x, mask);
    auto w = (x - mean) * torch::rsqrt(var + 1e-8);
    return shift_mean ? w : w + mean;
}

static torch::Tensor kl_term(const torch::Tensor &lp, const torch::Tensor &ref, sf_kl_penalty_t pen) {
    auto d = lp - ref;
    if (pen == SF_KL_ABS) return d.abs();
    if (pen == SF_KL_MSE) return 0.5 * d * d;
    return d;
}

// scores (B), logprobs/ref/mask (B, T) -> rewards (B, T).
static torch::Tensor compute_rewards(const torch::Tensor &scores, const torch::Tensor &lp,
                                     const torch::Tensor &ref, const torch::Tensor &mask,
                                     double beta, sf_kl_penalty_t pen) {
    auto rewards = -beta * kl_term(lp, ref, pen) * mask;
    // The last masked index of each row: T-1 minus the first 1 of the
    // reversed mask.
    const int64_t T = mask.size(1);
    auto last = (T - 1) - mask.flip(1).argmax(1);                   // (B)
    rewards.scatter_add_(1, last.unsqueeze(1), scores.unsqueeze(1).to(rewards.dtype()));
    return rewards;
}

// values/rewards/mask (B, T) -> advantages, returns (B, T), not whitened.
static void gae(const torch::Tensor &values_in, const torch::Tensor &rewards_in,
                const torch::Tensor &mask, double gamma, double lam, torch::Tensor *adv,
                torch::Tensor *ret) {
    auto values = values_in * mask, rewards = rewards_in * mask;
    const int64_t T = values.size(1);
    std::vector<torch::Tensor> rev;
    auto last = torch::zeros({values.size(0)}, values.options());
    for (int64_t t = T - 1; t >= 0; t--) {
        auto next = t < T - 1 ? values.select(1, t + 1) : torch::zeros_like(last);
        auto delta = rewards.select(1, t) + gamma * next - values.select(1, t);
        last = delta + gamma * lam * last;
        rev.push_back(last);
    }
    std::reverse(rev.begin(), rev.end());
    *adv = torch::stack(rev, 1);
    *ret = *adv + values;
}

struct LossOut {
    torch::Tensor loss, pg_loss, vf_loss;      // scalars with grad
    float clipfrac, vf_clipfrac, approxkl, policykl, ratio_mean, pg_loss_v, vf_loss_v;
};

// TRL's PPOTrainer.loss on one minibatch (all (B, T) tensors).
static LossOut ppo_loss(const torch::Tensor &old_lp, const torch::Tensor &lp,
                        const torch::Tensor &old_values, const torch::Tensor &vpreds,
                        const torch::Tensor &adv, const torch::Tensor &returns,
                        const torch::Tensor &mask, const sf_ppo_config_t &c) {
    LossOut o;
    auto vclipped = torch::max(torch::min(vpreds, old_values + c.cliprange_value),
                               old_values - c.cliprange_value);
    auto vf1 = (vpreds - returns).pow(2), vf2 = (vclipped - returns).pow(2);
    o.vf_loss = 0.5 * masked_mean(torch::max(vf1, vf2), mask);
    auto ratio = torch::exp(lp - old_lp);
    auto pg1 = -adv * ratio, pg2 = -adv * torch::clamp(ratio, 1.0 - c.cliprange, 1.0 + c.cliprange);
    o.pg_loss = masked_mean(torch::max(pg1, pg2), mask);
    o.loss = o.pg_loss + c.vf_coef * o.vf_loss;
    torch::NoGradGuard ng;
    o.vf_clipfrac = masked_mean(torch::gt(vf2, vf1).to(torch::kFloat32), mask).item<float>();
    o.clipfrac = masked_mean(torch::gt(pg2, pg1).to(torch::kFloat32), mask).item<float>();
    auto d = lp - old_lp;
    o.approxkl = (0.5 * masked_mean(d * d, mask)).item<float>();
    o.policykl = masked_mean(-d, mask).item<float>();
    o.ratio_mean = masked_mean(ratio, mask).item<float>();
    o.pg_loss_v = o.pg_loss.item<float>();
    o.vf_loss_v = o.vf_loss.item<float>();
    return o;
}

// ---- the pieces, on arrays ----

static torch::Tensor arr(const float *p, int64_t n, int64_t T) { return sf_ml_from_f32(p, {n, T}); }

extern "C" int sf_ppo_rewards(const float *scores, const float *logprobs, const float *ref,
                              const float *mask, int n, int T, float beta, sf_kl_penalty_t pen,
                              float *rewards) {
    if (!scores || !logprobs || !ref || !mask || !rewards || n < 1 || T < 1) return SF_EINVAL;
    SF_ML_TRY {
        torch::NoGradGuard ng;
        auto r = compute_rewards(sf_ml_from_f32(scores, {n}), arr(logprobs, n, T), arr(ref, n, T),
                                 arr(mask, n, T), beta, pen);
        sf_ml_to_f32(r, rewards);
        return 0;
    }
    SF_ML_CATCH(nullptr)
}

extern "C" int sf_ppo_gae(const float *values, const float *rewards, const float *mask, int n,
                          int T, float gamma, float lam, float *advantages, float *returns) {
    if (!values || !rewards || !mask || !advantages || !returns || n < 1 || T < 1) return SF_EINVAL;
    SF_ML_TRY {
        torch::NoGradGuard ng;
        torch::Tensor a, r;
        gae(arr(values, n, T), arr(rewards, n, T), arr(mask, n, T), gamma, lam, &a, &r);
        sf_ml_to_f32(a, advantages);
        sf_ml_to_f32(r, returns);
        return 0;
    }
    SF_ML_CATCH(nullptr)
}

extern "C" int sf_ppo_whiten(const float *x, const float *mask, int count, int shift_mean,
                             float *out) {
    if (!x || !mask || !out || count < 2) return SF_EINVAL;
    SF_ML_TRY {
        torch::NoGradGuard ng;
        sf_ml_to_f32(masked_whiten(arr(x, 1, count), arr(mask, 1, count), shift_mean != 0), out);
        return 0;
    }
    SF_ML_CATCH(nullptr)
}

extern "C" int sf_ppo_loss(const float *old_lp, const float *lp, const float *old_values,
                           const float *vpreds, const float *adv, const float *returns,
                           const float *mask, int count, const sf_ppo_config_t *cfg,
                           sf_ppo_stats_t *s) {
    if (!old_lp || !lp || !old_values || !vpreds || !adv || !returns || !mask || !cfg || !s ||
        count < 1)
        return SF_EINVAL;
    SF_ML_TRY {
        torch::NoGradGuard ng;
        LossOut o = ppo_loss(arr(old_lp, 1, count), arr(lp, 1, count), arr(old_values, 1, count),
                             arr(vpreds, 1, count), arr(adv, 1, count), arr(returns, 1, count),
                             arr(mask, 1, count), *cfg);
        s->pg_loss = o.pg_loss_v;
        s->vf_loss = o.vf_loss_v;
        s->total_loss = o.loss.item<float>();
        s->clipfrac = o.clipfrac;
        s->vf_clipfrac = o.vf_clipfrac;
        s->approxkl = o.approxkl;
        s->policykl = o.policykl;
        s->ratio_mean = o.ratio_mean;
        return 0;
    }
    SF_ML_CATCH(nullptr)
}

extern "C" float sf_ppo_kl_update(float value, float current_kl, int n_steps, float target,
                                  float horizon) {
    double err = std::min(0.2, std::max(-0.2, (double)current_kl / target - 1.0));
    return (float)(value * (1.0 + err * n_steps / horizon));
}

// ---- query + response batches ----

// Rows of a rollout batch laid out for one forward pass: the query
// left-padded to Q columns, the response right-padded to R, so that response
// token i of every row sits in column Q + i and is predicted from column
// Q - 1 + i.
struct QR {
    PaddedBatch b;
    int64_t Q = 0, R = 0;
    torch::Tensor resp;    // (B, R) int64, on the device
    torch::Tensor rmask;   // (B, R) float, on the device
    torch::Tensor tok;     // (B, Q+R) int64 the tokens, on the CPU
    std::vector<int> qlen, rlen;   // each row's real query and response tokens
};

static QR build_qr(const int32_t *query, const int *qlen, int qstride, const int32_t *resp,
                   const int *rlen, int rstride, int n, torch::Device dev) {
    QR q;
    for (int i = 0; i < n; i++) {
        q.Q = std::max<int64_t>(q.Q, qlen[i]);
        q.R = std::max<int64_t>(q.R, rlen[i]);
    }
    auto tok = torch::zeros({n, q.Q + q.R}, torch::kLong);
    auto msk = torch::zeros({n, q.Q + q.R}, torch::kBool);
    auto ta = tok.accessor<int64_t, 2>();
    auto ma = msk.accessor<bool, 2>();
    for (int i = 0; i < n; i++) {
        int64_t off = q.Q - qlen[i];
        for (int t = 0; t < qlen[i]; t++) {
            ta[i][off + t] = query[(size_t)i * qstride + t];
            ma[i][off + t] = true;
        }
        for (int t = 0; t < rlen[i]; t++) {
            ta[i][q.Q + t] = resp[(size_t)i * rstride + t];
            ma[i][q.Q + t] = true;
        }
    }
    q.b = sf_gpt2_batch(tok, msk, dev);
    q.tok = tok;
    q.resp = q.b.tokens.narrow(1, q.Q, q.R);
    q.rmask = q.b.mask.narrow(1, q.Q, q.R).to(torch::kFloat32);
    q.qlen.assign(qlen, qlen + n);
    q.rlen.assign(rlen, rlen + n);
    return q;
}

// Rows `rows` (CPU, int64) of a QR (for minibatches and forward chunks).
// trim: without the columns that are padding in every one of these rows
// (the batch is padded to its longest query and response, a minibatch
// rarely holds both), so that the rows' Q and R are their own longest; the
// real tokens' positions, attention and outputs are the same.
static QR qr_rows(const QR &q, const torch::Tensor &rows, bool trim = false) {
    QR s;
    s.Q = q.Q;
    s.R = q.R;
    auto ra = rows.accessor<int64_t, 1>();
    if (trim) {
        s.Q = s.R = 0;
        for (int64_t i = 0; i < rows.size(0); i++) {
            s.Q = std::max<int64_t>(s.Q, q.qlen[ra[i]]);
            s.R = std::max<int64_t>(s.R, q.rlen[ra[i]]);
        }
    }
    for (int64_t i = 0; i < rows.size(0); i++) {
        s.qlen.push_back(q.qlen[ra[i]]);
        s.rlen.push_back(q.rlen[ra[i]]);
    }
    const int64_t c0 = q.Q - s.Q, T = s.Q + s.R;
    auto r = rows.to(q.b.tokens.device());
    s.b.tokens = q.b.tokens.index_select(0, r).narrow(1, c0, T);
    s.tok = q.tok.index_select(0, rows).narrow(1, c0, T);
    s.b.mask = q.b.mask.index_select(0, r).narrow(1, c0, T);
    s.b.pos = q.b.pos.index_select(0, r).narrow(1, c0, T);
    s.b.bias = q.b.bias.index_select(0, r).narrow(2, c0, T).narrow(3, c0, T);
    s.resp = q.resp.index_select(0, r).narrow(1, 0, s.R);
    s.rmask = q.rmask.index_select(0, r).narrow(1, 0, s.R);
    return s;
}

// The distinct hidden states that predict a QR's real response tokens, in
// the order qr_forward keeps those (row by row): rollouts of one prompt
// predict their first token from one state, and their next ones too while
// they agree, and the vocabulary head needs each state once.  *rep (U): the
// first kept position of each state; *rows (N): each kept position's state;
// both left undefined when all differ.
static void distinct_states(const QR &q, torch::Tensor *rep, torch::Tensor *rows) {
    const int64_t B = q.tok.size(0), Q = q.Q;
    auto ta = q.tok.accessor<int64_t, 2>();
    std::vector<int64_t> base(B + 1, 0);
    for (int64_t r = 0; r < B; r++) base[r + 1] = base[r] + q.rlen[r];
    std::vector<int64_t> id(base[B]), reps;
    for (int64_t r = 0; r < B; r++) {
        // The earlier rows of the same query, with how many leading
        // response tokens they share with this one.
        std::vector<std::pair<int64_t, int64_t>> same;
        for (int64_t r2 = 0; r2 < r; r2++) {
            bool eq = q.qlen[r2] == q.qlen[r];
            for (int64_t c = Q - q.qlen[r]; eq && c < Q; c++) eq = ta[r][c] == ta[r2][c];
            int64_t l = 0;
            while (eq && l < std::min(q.rlen[r], q.rlen[r2]) && ta[r][Q + l] == ta[r2][Q + l]) l++;
            if (eq) same.push_back({r2, l});
        }
        for (int64_t t = 0; t < q.rlen[r]; t++) {
            int64_t found = -1;
            for (const auto &sl : same)
                if (sl.second >= t && q.rlen[sl.first] > t) {
                    found = id[base[sl.first] + t];
                    break;
                }
            if (found < 0) {
                found = (int64_t)reps.size();
                reps.push_back(base[r] + t);
            }
            id[base[r] + t] = found;
        }
    }
    if ((int64_t)reps.size() == base[B]) return;
    const auto dev = q.resp.device();
    *rep = torch::tensor(reps, torch::kLong).to(dev);
    *rows = torch::tensor(id, torch::kLong).to(dev);
}

// x (B, r) zero-padded on the right to (B, R).
static torch::Tensor pad_cols(const torch::Tensor &x, int64_t R) {
    if (x.size(1) == R) return x;
    return torch::constant_pad_nd(x, {0, R - x.size(1)}, 0);
}

// Log-probs and values (B, R) of the response tokens, and optionally the
// response logits' token entropies (B, R).
// The vocabulary projection dominates a small policy's cost (50,257 logits a
// token), so it runs on the real response tokens only, not on the padding
// up to the batch's longest response; padded positions get 0 (every use
// masks them).  fused: through GPT2Impl::token_logprobs (PPO); else
// log_softmax and gather on the logits (SFT, and PPO's reference path).
static void qr_forward(GPT2Impl &g, const QR &q, torch::Tensor *lp, torch::Tensor *values,
                       torch::Tensor *entropy, bool fused = false) {
    auto hid = g.hidden(q.b.tokens, q.b.pos, q.b.bias, nullptr, 0, fused)  // (B, Q+R, C)
                   .narrow(1, q.Q - 1, q.R);                         // (B, R, C)
    const int64_t B = hid.size(0), R = hid.size(1);
    auto keep = q.rmask.reshape({B * R}).nonzero().squeeze(1);       // (N) real tokens
    auto hk = hid.reshape({B * R, hid.size(2)}).index_select(0, keep);   // (N, C)
    auto yk = q.resp.reshape({B * R}).index_select(0, keep);             // (N)
    torch::Tensor lpk, ent;
    if (fused) {
        torch::Tensor rep, rows;
        distinct_states(q, &rep, &rows);
        lpk = g.token_logprobs(rep.defined() ? hk.index_select(0, rep) : hk, yk, rows, entropy ? &ent : nullptr);
    } else {
        auto logp = torch::log_softmax(g.logits(hk), -1);            // (N, V)
        lpk = logp.gather(1, yk.unsqueeze(1)).squeeze(1);
        if (entropy) {
            // Only logged: kept out of the graph so that backward does not
            // carry two more (N, V) tensors.
            torch::NoGradGuard ng;
            auto lpd = logp.detach();
            ent = -(lpd.exp() * lpd).sum(-1);
        }
    }
    *lp = torch::zeros({B * R}, lpk.options()).index_copy(0, keep, lpk).reshape({B, R});
    if (values) *values = g.v_head->forward(hid);
    if (entropy) {
        torch::NoGradGuard ng;
        *entropy = torch::zeros({B * R}, ent.options()).index_copy(0, keep, ent.detach()).reshape({B, R});
    }
}

// ---- SFT ----

static void set_lr(torch::optim::Adam &opt, double lr) {
    for (auto &grp : opt.param_groups())
        static_cast<torch::optim::AdamOptions &>(grp.options()).lr(lr);
}

extern "C" int sf_gpt2_sft_step(sf_gpt2_t *m, const int32_t *seqs, const int *prompt_lens,
                                const int *seq_lens, int n, int stride, float lr,
                                float max_grad_norm, float *loss) {
    if (!m || !seqs || !prompt_lens || !seq_lens || n < 1 || stride < 2 || !(lr > 0))
        return SF_EINVAL;
    const auto &c = m->model->cfg;
    for (int i = 0; i < n; i++) {
        if (prompt_lens[i] < 1 || seq_lens[i] <= prompt_lens[i] || seq_lens[i] > stride ||
            seq_lens[i] > c.n_ctx)
            return sf_ml_fail(&m->e, SF_EINVAL, "SFT row %d: prompt %d, sequence %d, stride %d", i,
                              prompt_lens[i], seq_lens[i], stride);
        for (int t = 0; t < seq_lens[i]; t++)
            if (seqs[(size_t)i * stride + t] < 0 || seqs[(size_t)i * stride + t] >= c.vocab_size)
                return sf_ml_fail(&m->e, SF_EINVAL, "SFT row %d: token id outside the vocabulary", i);
    }
    SF_ML_TRY {
        // The prompt/response split is the query/response split of PPO, so
        // the same layout serves: loss on response tokens only.
        std::vector<int> rlen(n);
        for (int i = 0; i < n; i++) rlen[i] = seq_lens[i] - prompt_lens[i];
        std::vector<int32_t> resp((size_t)n * stride);
        for (int i = 0; i < n; i++)
            memcpy(&resp[(size_t)i * stride], seqs + (size_t)i * stride + prompt_lens[i],
                   sizeof(int32_t) * rlen[i]);
        QR q = build_qr(seqs, prompt_lens, stride, resp.data(), rlen.data(), stride, n, m->device);
        if (!m->opt)
            m->opt = std::make_unique<torch::optim::Adam>(m->model->parameters(),
                                                          torch::optim::AdamOptions(lr));
        set_lr(*m->opt, lr);
        torch::Tensor lp;
        qr_forward(*m->model, q, &lp, nullptr, nullptr);
        auto l = -masked_mean(lp, q.rmask);
        m->opt->zero_grad();
        l.backward();
        if (max_grad_norm > 0) torch::nn::utils::clip_grad_norm_(m->model->parameters(), max_grad_norm);
        m->opt->step();
        if (loss) *loss = l.item<float>();
        return 0;
    }
    SF_ML_CATCH(&m->e)
}

extern "C" void sf_sft_opts_default(sf_sft_opts_t *o) {
    if (!o) return;
    o->steps = 1000, o->batch = 16, o->warmup = 100;
    o->lr = 3e-3f, o->lr_min = 3e-4f, o->max_grad_norm = 0;
    o->seed = 5;
}

extern "C" int sf_gpt2_sft(sf_gpt2_t *m, const int32_t *seqs, const int *prompt_lens, const int *seq_lens, int n,
                           int stride, const sf_sft_opts_t *o, sf_sft_progress_fn progress, void *arg,
                           float *first_loss, float *last_loss) {
    if (!m || !seqs || !prompt_lens || !seq_lens || n < 1 || stride < 2 || !o || o->steps < 1 || o->batch < 1 ||
        o->warmup < 0 || !(o->lr > 0) || !(o->lr_min >= 0))
        return SF_EINVAL;
    std::vector<int32_t> bs((size_t)o->batch * stride);
    std::vector<int> bp(o->batch), bl(o->batch);
    std::vector<float> tail;
    uint64_t r = o->seed;
    for (int step = 0; step < o->steps; step++) {
        for (int j = 0; j < o->batch; j++) {
            int i = (int)(sf_splitmix64(&r) % (uint64_t)n);
            memcpy(&bs[(size_t)j * stride], seqs + (size_t)i * stride, sizeof(int32_t) * stride);
            bp[j] = prompt_lens[i], bl[j] = seq_lens[i];
        }
        float lr = o->lr;
        if (step < o->warmup)
            lr = o->lr * (float)(step + 1) / (float)o->warmup;
        else if (o->steps > o->warmup)
            lr = o->lr_min + 0.5f * (o->lr - o->lr_min) *
                                 (1.0f + std::cos(3.14159265f * (float)(step - o->warmup) / (float)(o->steps - o->warmup)));
        float loss = 0;
        int rc = sf_gpt2_sft_step(m, bs.data(), bp.data(), bl.data(), o->batch, stride, lr, o->max_grad_norm, &loss);
        if (rc) return rc;
        if (step == 0 && first_loss) *first_loss = loss;
        if (o->steps - step <= 25) tail.push_back(loss);
        if (progress && progress(arg, step + 1, o->steps, loss)) return SF_ECANCELED;
    }
    if (last_loss) {
        double s = 0;
        for (float x : tail) s += x;
        *last_loss = tail.empty() ? 0.0f : (float)(s / (double)tail.size());
    }
    return 0;
}

// ---- Adam in one pass ----

// torch::optim::Adam's step (no weight decay, no AMSGrad) on one float32
// parameter, written as libtorch writes it:
//   m = m b1 + (1 - b1) g;  v = v b2 + (1 - b2) g g;
//   p += -step (m / (sqrt(v) / sqrt(bc2) + eps)),  step = lr / bc1,
// but in one pass over p, g, m, v instead of eight (the policy's 3.2 M
// embedding weights are stepped 16 times an update).  Equal to libtorch's up
// to the rounding of each operation (an ulp).
struct AdamConsts {
    float b1, b2, omb1, omb2, sbc2, eps, neg_step;
};

static void adam_scalar(float *p, const float *g, float *m, float *v, int64_t n, const AdamConsts &k) {
    for (int64_t i = 0; i < n; i++) {
        const float mi = m[i] * k.b1 + k.omb1 * g[i];
        const float vi = v[i] * k.b2 + k.omb2 * g[i] * g[i];
        m[i] = mi;
        v[i] = vi;
        p[i] += k.neg_step * mi / (std::sqrt(vi) / k.sbc2 + k.eps);
    }
}

// The same four floats at a time: the compiler does not vectorise the loop
// above (sqrt sets errno), and the pass is bound by memory (AVX2 gains
// nothing measurable).
static void adam_span(float *p, const float *g, float *m, float *v, int64_t n, const AdamConsts &k) {
    int64_t i = 0;
#if defined(__SSE2__)
    const __m128 b1 = _mm_set1_ps(k.b1), b2 = _mm_set1_ps(k.b2), omb1 = _mm_set1_ps(k.omb1),
                 omb2 = _mm_set1_ps(k.omb2), sbc2 = _mm_set1_ps(k.sbc2), eps = _mm_set1_ps(k.eps),
                 ns = _mm_set1_ps(k.neg_step);
    for (; i + 4 <= n; i += 4) {
        const __m128 gi = _mm_loadu_ps(g + i);
        const __m128 mi = _mm_add_ps(_mm_mul_ps(_mm_loadu_ps(m + i), b1), _mm_mul_ps(omb1, gi));
        const __m128 vi = _mm_add_ps(_mm_mul_ps(_mm_loadu_ps(v + i), b2), _mm_mul_ps(_mm_mul_ps(omb2, gi), gi));
        _mm_storeu_ps(m + i, mi);
        _mm_storeu_ps(v + i, vi);
        const __m128 d = _mm_add_ps(_mm_div_ps(_mm_sqrt_ps(vi), sbc2), eps);
        _mm_storeu_ps(p + i, _mm_add_ps(_mm_loadu_ps(p + i), _mm_div_ps(_mm_mul_ps(ns, mi), d)));
    }
#endif
    adam_scalar(p + i, g + i, m + i, v + i, n - i, k);
}

struct FusedAdam {
    std::vector<torch::Tensor> params, m, v;
    std::vector<int64_t> steps;
    double lr, beta1 = 0.9, beta2 = 0.999, eps = 1e-8;   // torch::optim::AdamOptions' defaults

    FusedAdam(std::vector<torch::Tensor> ps, double lr_) : params(std::move(ps)), lr(lr_) {
        torch::NoGradGuard ng;
        for (auto &p : params) {
            m.push_back(torch::zeros_like(p, torch::MemoryFormat::Contiguous));
            v.push_back(torch::zeros_like(p, torch::MemoryFormat::Contiguous));
            steps.push_back(0);
        }
    }
    // Gradients are released, not zeroed: the next backward pass then takes
    // its gradient tensors over instead of adding them to zeros.
    void zero_grad() {
        for (auto &p : params) p.mutable_grad().reset();
    }
    void step() {
        torch::NoGradGuard ng;
        for (size_t i = 0; i < params.size(); i++) {
            torch::Tensor &p = params[i];
            const torch::Tensor &g = p.grad();
            if (!g.defined()) continue;
            const int64_t t = ++steps[i];
            const double bc1 = 1 - std::pow(beta1, (double)t), bc2 = 1 - std::pow(beta2, (double)t);
            const double step_size = lr / bc1;
            if (p.device().is_cpu() && p.scalar_type() == torch::kFloat32 && g.scalar_type() == torch::kFloat32 &&
                p.is_contiguous() && g.is_contiguous() && !g.is_sparse()) {
                const AdamConsts k{(float)beta1, (float)beta2, (float)(1 - beta1), (float)(1 - beta2),
                                   (float)std::sqrt(bc2), (float)eps, (float)-step_size};
                float *pp = p.data_ptr<float>(), *mp = m[i].data_ptr<float>(), *vp = v[i].data_ptr<float>();
                const float *gp = g.data_ptr<float>();
                at::parallel_for(0, p.numel(), 1 << 16, [&](int64_t b, int64_t e) {
                    adam_span(pp + b, gp + b, mp + b, vp + b, e - b, k);
                });
            } else {
                m[i].mul_(beta1).add_(g, 1 - beta1);
                v[i].mul_(beta2).addcmul_(g, g, 1 - beta2);
                p.addcdiv_(m[i], (v[i].sqrt() / std::sqrt(bc2)).add_(eps), -step_size);
            }
        }
    }
};

// ---- the PPO trainer ----

extern "C" void sf_ppo_config_default(sf_ppo_config_t *c) {
    memset(c, 0, sizeof *c);
    c->learning_rate = 1.41e-5f;
    c->mini_batch_size = 1;
    c->ppo_epochs = 4;
    c->gamma = 1.0f;
    c->lam = 0.95f;
    c->cliprange = 0.2f;
    c->cliprange_value = 0.2f;
    c->vf_coef = 0.1f;
    c->adap_kl_ctrl = 1;
    c->init_kl_coef = 0.2f;
    c->target = 6.0f;
    c->horizon = 10000.0f;
    c->kl_penalty = SF_KL_KL;
    c->max_grad_norm = 0.0f;
    c->ratio_threshold = 10.0f;
    c->early_stopping = 0;
    c->target_kl = 1.0f;
    c->score_clip = 0.0f;
    c->whiten_rewards = 0;
    c->use_rollout_logprobs = 0;
    c->seed = 0;
}

// TRL's RunningMoments: batch moments merged into running ones, starting
// from mean 0, std 1 and a vanishing count.
struct RunningMoments {
    double mean = 0, var = 1, std = 1, count = 1e-24;
    void update(const std::vector<double> &xs) {
        double n = (double)xs.size(), m = 0, v = 0;
        for (double x : xs) m += x;
        m /= n;
        for (double x : xs) v += (x - m) * (x - m);
        v /= n;
        double delta = m - mean, tot = count + n;
        double old_sum = var * count + delta * delta * count * n / tot;
        mean += delta * n / tot;
        var = (old_sum + v * n) / tot;
        std = std::sqrt(var * tot / (tot - 1));
        count = tot;
    }
};

struct sf_ppo_s {
    sf_gpt2_t *policy = nullptr;
    RunningMoments running;
    sf_gpt2_t *ref = nullptr;
    bool own_ref = false;
    sf_ppo_config_t cfg;
    double kl_coef = 0.2;
    uint64_t steps = 0;
    std::unique_ptr<FusedAdam> fopt;
    std::unique_ptr<torch::optim::Adam> opt;   // the reference path's
    bool reference = false;                    // sf__ppo_reference
    sf_ml_err_t e;
};

extern "C" int sf_ppo_new(sf_gpt2_t *policy, sf_gpt2_t *ref, const sf_ppo_config_t *cfg,
                          sf_ppo_t **out, char *err, size_t errlen) {
    *out = nullptr;
    if (!policy) return sf_errf(SF_EINVAL, err, errlen, "no policy");
    sf_ppo_config_t c;
    if (cfg) c = *cfg;
    else sf_ppo_config_default(&c);
    if (c.mini_batch_size < 1 || c.ppo_epochs < 1 || !(c.learning_rate > 0) || !(c.horizon > 0) ||
        !(c.target > 0) || c.cliprange < 0 || c.cliprange_value < 0 || c.lam < 0 || c.gamma < 0)
        return sf_errf(SF_EINVAL, err, errlen, "bad PPO configuration");
    if (ref && memcmp(sf_gpt2_config(ref), sf_gpt2_config(policy), sizeof(sf_gpt2_config_t)) != 0)
        return sf_errf(SF_EINVAL, err, errlen, "reference and policy differ in configuration");
    auto *p = new (std::nothrow) sf_ppo_s();
    if (!p) return sf_errf(SF_ENOMEM, err, errlen, "out of memory");
    p->policy = policy;
    p->cfg = c;
    p->kl_coef = c.init_kl_coef;
    int rc = 0;
    if (ref) {
        p->ref = ref;
    } else if ((rc = sf_gpt2_clone(policy, &p->ref)) != 0) {
        sf_errf(rc, err, errlen, "cannot copy the reference: %s", sf_gpt2_errstr(policy));
        delete p;
        return rc;
    } else {
        p->own_ref = true;
    }
    try {
        for (auto &t : p->ref->model->parameters()) t.set_requires_grad(false);
        p->fopt = std::make_unique<FusedAdam>(policy->model->parameters(), c.learning_rate);
        p->opt = std::make_unique<torch::optim::Adam>(policy->model->parameters(),
                                                      torch::optim::AdamOptions(c.learning_rate));
    } catch (const std::exception &ex) {
        sf_errf(SF_ETORCH, err, errlen, "%s", ex.what());
        sf_ppo_free(&p);
        return SF_ETORCH;
    }
    *out = p;
    return 0;
}

extern "C" void sf_ppo_free(sf_ppo_t **pp) {
    if (!pp || !*pp) return;
    if ((*pp)->own_ref) sf_gpt2_free(&(*pp)->ref);
    delete *pp;
    *pp = nullptr;
}

// Tests only (test_ml_ppo.c declares it): on, the steps take the
// straightforward path, to which the fast one must stay equal up to
// rounding.  Set before the first step.
extern "C" void sf__ppo_reference(sf_ppo_t *p, int on) {
    if (p) p->reference = on != 0;
}

extern "C" const char *sf_ppo_errstr(const sf_ppo_t *p) { return p ? p->e.errstr : ""; }
extern "C" float sf_ppo_kl_coef(const sf_ppo_t *p) { return p ? (float)p->kl_coef : 0.0f; }

static int check_batch(sf_ppo_t *p, const sf_ppo_batch_t *b) {
    const auto &c = p->policy->model->cfg;
    if (!b || b->n < 1 || !b->query || !b->query_len || !b->response || !b->response_len ||
        !b->scores || b->query_stride < 1 || b->response_stride < 1)
        return sf_ml_fail(&p->e, SF_EINVAL, "PPO batch: missing arrays or no rollouts");
    if (p->cfg.use_rollout_logprobs && (!b->logprobs || !b->values))
        return sf_ml_fail(&p->e, SF_EINVAL, "PPO batch: use_rollout_logprobs needs logprobs and values");
    int tokens = 0;
    for (int i = 0; i < b->n; i++) {
        int ql = b->query_len[i], rl = b->response_len[i];
        if (ql < 1 || ql > b->query_stride || rl < 1 || rl > b->response_stride ||
            ql + rl > c.n_ctx)
            return sf_ml_fail(&p->e, SF_EINVAL, "rollout %d: query %d, response %d tokens", i, ql, rl);
        for (int t = 0; t < ql; t++) {
            int32_t id = b->query[(size_t)i * b->query_stride + t];
            if (id < 0 || id >= c.vocab_size)
                return sf_ml_fail(&p->e, SF_EINVAL, "rollout %d: query id %d", i, id);
        }
        for (int t = 0; t < rl; t++) {
            int32_t id = b->response[(size_t)i * b->response_stride + t];
            if (id < 0 || id >= c.vocab_size)
                return sf_ml_fail(&p->e, SF_EINVAL, "rollout %d: response id %d", i, id);
        }
        if (!std::isfinite(b->scores[i]))
            return sf_ml_fail(&p->e, SF_EINVAL, "rollout %d: score is not finite", i);
        tokens += rl;
    }
    // Advantages are whitened over the batch's response tokens, which needs
    // two of them (Bessel's correction).
    if (tokens < 2)
        return sf_ml_fail(&p->e, SF_EINVAL, "PPO batch: %d response token(s), need 2", tokens);
    return 0;
}

// The leave-one-out mean score of each rollout's prompt group (rollouts
// whose query ids are equal); a rollout alone with its prompt gets the mean
// of all the others (0 in a batch of one).
static std::vector<float> prompt_baseline(const sf_ppo_batch_t *b) {
    const int n = b->n;
    std::vector<int> group(n, -1);
    std::vector<double> sum;
    std::vector<int> count;
    double total = 0;
    for (int i = 0; i < n; i++) {
        total += b->scores[i];
        const int32_t *qi = b->query + (size_t)i * b->query_stride;
        for (int j = 0; j < i && group[i] < 0; j++)
            if (b->query_len[j] == b->query_len[i] &&
                !memcmp(b->query + (size_t)j * b->query_stride, qi, sizeof(int32_t) * b->query_len[i]))
                group[i] = group[j];
        if (group[i] < 0) {
            group[i] = (int)sum.size();
            sum.push_back(0);
            count.push_back(0);
        }
        sum[group[i]] += b->scores[i];
        count[group[i]]++;
    }
    std::vector<float> base(n);
    for (int i = 0; i < n; i++) {
        const int g = group[i];
        if (count[g] > 1) base[i] = (float)((sum[g] - b->scores[i]) / (count[g] - 1));
        else base[i] = n > 1 ? (float)((total - b->scores[i]) / (n - 1)) : 0.0f;
    }
    return base;
}

// Rows of the batch per forward pass without grad: bounds the (rows, R, V)
// logits tensor for a 50257-word vocabulary.
#define FORWARD_CHUNK 32

extern "C" int sf_ppo_step(sf_ppo_t *p, const sf_ppo_batch_t *b, sf_ppo_stats_t *st) {
    if (!p) return SF_EINVAL;
    int rc = check_batch(p, b);
    if (rc) return rc;
    sf_ppo_stats_t s;
    memset(&s, 0, sizeof s);
    SF_ML_TRY {
        const sf_ppo_config_t &c = p->cfg;
        const bool fused = !p->reference;
        GPT2Impl &g = *p->policy->model, &ref = *p->ref->model;
        const torch::Device dev = p->policy->device;
        const int n = b->n;
        QR q = build_qr(b->query, b->query_len, b->query_stride, b->response, b->response_len,
                        b->response_stride, n, dev);
        const torch::Tensor &mask = q.rmask;                          // (n, R)

        // 1. Old log-probs and values, reference log-probs.
        torch::Tensor old_lp, old_v, ref_lp;
        {
            torch::NoGradGuard ng;
            std::vector<torch::Tensor> lps, vs, rlps;
            for (int i0 = 0; i0 < n; i0 += FORWARD_CHUNK) {
                auto rows = torch::arange(i0, std::min(n, i0 + FORWARD_CHUNK), torch::kLong);
                QR sub = qr_rows(q, rows, fused);
                torch::Tensor lp, v, rlp;
                if (!c.use_rollout_logprobs) {
                    qr_forward(g, sub, &lp, &v, nullptr, fused);
                    lps.push_back(pad_cols(lp, q.R));
                    vs.push_back(pad_cols(v, q.R));
                }
                qr_forward(ref, sub, &rlp, nullptr, nullptr, fused);
                rlps.push_back(pad_cols(rlp, q.R));
            }
            ref_lp = torch::cat(rlps, 0);
            if (c.use_rollout_logprobs) {
                auto full_lp = sf_ml_from_f32(b->logprobs, {n, b->response_stride});
                auto full_v = sf_ml_from_f32(b->values, {n, b->response_stride});
                old_lp = full_lp.narrow(1, 0, q.R).to(dev) * mask;
                old_v = full_v.narrow(1, 0, q.R).to(dev) * mask;
            } else {
                old_lp = torch::cat(lps, 0);
                old_v = torch::cat(vs, 0);
            }
        }

        // 2-3. Rewards, advantages, returns.
        torch::Tensor raw_scores = sf_ml_from_f32(b->scores, {n}).clone();
        torch::Tensor scores = raw_scores.to(dev);
        if (c.prompt_baseline) {
            std::vector<float> base = prompt_baseline(b);
            scores = scores - sf_ml_from_f32(base.data(), {n}).to(dev);
        }
        if (c.use_score_scaling) {
            p->running.update(std::vector<double>(b->scores, b->scores + n));
            const double scale = p->running.std + 1.1920929e-07;   // + float32 eps, as TRL
            scores = c.use_score_norm ? (scores - p->running.mean) / scale : scores / scale;
        }
        if (c.score_clip > 0) scores = scores.clamp(-c.score_clip, c.score_clip);
        torch::Tensor adv, returns, rewards;
        {
            torch::NoGradGuard ng;
            rewards = compute_rewards(scores, old_lp, ref_lp, mask, p->kl_coef, c.kl_penalty);
            if (c.whiten_rewards) rewards = masked_whiten(rewards, mask, false);
            gae(old_v, rewards, mask, c.gamma, c.lam, &adv, &returns);
            s.advantages_mean = masked_mean(adv, mask).item<float>();
            adv = masked_whiten(adv, mask, true);
        }

        // 4. Epochs over shuffled minibatches.
        auto gen = at::detail::createCPUGenerator(c.seed * 1000003ULL + p->steps);
        double acc_pg = 0, acc_vf = 0, acc_tot = 0, acc_cf = 0, acc_vcf = 0, acc_ak = 0,
               acc_pk = 0, acc_ratio = 0, acc_ent = 0;
        int counted = 0;
        bool stop = false;
        for (int ep = 0; ep < c.ppo_epochs && !stop; ep++) {
            auto perm = torch::randperm(n, gen, torch::kLong);
            for (int i0 = 0; i0 < n && !stop; i0 += c.mini_batch_size) {
                auto rows = perm.narrow(0, i0, std::min(c.mini_batch_size, n - i0));
                auto rd = rows.to(dev);
                QR sub = qr_rows(q, rows, fused);
                torch::Tensor lp, vpred, ent;
                qr_forward(g, sub, &lp, &vpred, &ent, fused);
                auto mb = [&](const torch::Tensor &x) { return x.index_select(0, rd).narrow(1, 0, sub.R); };
                LossOut o = ppo_loss(mb(old_lp), lp, mb(old_v), vpred, mb(adv), mb(returns), sub.rmask, c);
                acc_pg += o.pg_loss_v;
                acc_vf += o.vf_loss_v;
                acc_tot += o.loss.item<float>();
                acc_cf += o.clipfrac;
                acc_vcf += o.vf_clipfrac;
                acc_ak += o.approxkl;
                acc_pk += o.policykl;
                acc_ratio += o.ratio_mean;
                acc_ent += masked_mean(ent.detach(), sub.rmask).item<float>();
                counted++;
                // The guard: a ratio this far from 1 means the minibatch
                // is off-policy garbage (or the policy blew up); TRL zeroes
                // its loss, here the optimiser step is skipped outright.
                if (o.ratio_mean > c.ratio_threshold) {
                    s.skipped++;
                    continue;
                }
                if (fused) p->fopt->zero_grad();
                else p->opt->zero_grad();
                o.loss.backward();
                if (c.max_grad_norm > 0)
                    torch::nn::utils::clip_grad_norm_(g.parameters(), c.max_grad_norm);
                if (fused) p->fopt->step();
                else p->opt->step();
                s.minibatches++;
                if (c.early_stopping && o.approxkl > 1.5 * c.target_kl) stop = true;
            }
        }
        if (fused) p->fopt->zero_grad();
        else p->opt->zero_grad();

        // 5. Statistics and the KL controller.
        torch::NoGradGuard ng;
        auto kl_seq = ((old_lp - ref_lp) * mask).sum(1);             // (n)
        s.kl = kl_seq.mean().item<float>();
        s.entropy = (-old_lp * mask).sum(1).mean().item<float>();
        s.mean_score = raw_scores.mean().item<float>();
        s.kl_coef = (float)p->kl_coef;
        s.returns_mean = masked_mean(returns, mask).item<float>();
        s.values_mean = masked_mean(old_v, mask).item<float>();
        double k = counted ? 1.0 / counted : 0.0;
        s.pg_loss = (float)(acc_pg * k);
        s.vf_loss = (float)(acc_vf * k);
        s.total_loss = (float)(acc_tot * k);
        s.clipfrac = (float)(acc_cf * k);
        s.vf_clipfrac = (float)(acc_vcf * k);
        s.approxkl = (float)(acc_ak * k);
        s.policykl = (float)(acc_pk * k);
        s.ratio_mean = (float)(acc_ratio * k);
        s.policy_entropy = (float)(acc_ent * k);
        if (c.adap_kl_ctrl) p->kl_coef = sf_ppo_kl_update((float)p->kl_coef, s.kl, n, c.target, c.horizon);
        s.next_kl_coef = (float)p->kl_coef;
        p->steps++;
        if (st) *st = s;
        return 0;
    }
    SF_ML_CATCH(&p->e)
}
