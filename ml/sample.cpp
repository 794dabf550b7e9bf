// sample.cpp: sampling responses from GPT-2, with a KV cache.
//
// Prompts are left-padded to a common length so that every row's next token
// sits in the same column; positions count real tokens only, so a padded
// prompt gives the same logits as the unpadded one.  The first call runs the
// whole prompt and fills each layer's cache; each later call runs one new
// column against the cache.  Without the cache (use_cache = 0) every step
// recomputes the whole prefix: the reference that the cache must match.
//
// The draws come from our own generator on the CPU, in a fixed order, so the
// tokens depend only on the seed and the logits — not on the device, and not
// on whether the cache is used.
#include "ml/gpt2_internal.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>

extern "C" void sf_sample_opts_default(sf_sample_opts_t *o) {
    o->max_new_tokens = 32;
    o->temperature = 1.0f;
    o->top_k = 0;
    o->top_p = 1.0f;
    o->eos_id = -1;
    o->use_cache = 1;
    o->seed = 0;
}

extern "C" void sf_samples_free(sf_samples_t *s) {
    if (!s) return;
    free(s->tokens);
    free(s->logprobs);
    free(s->values);
    free(s->lengths);
    memset(s, 0, sizeof *s);
}

int sf_ml_draw(const float *p, int V, int top_k, float top_p, double u, std::vector<int> &idx) {
    const bool filter = (top_k > 0 && top_k < V) || top_p < 1.0f;
    if (!filter) {
        // Pure sampling, the PPO default: inverse CDF over the ids in order.
        double total = 0;
        for (int i = 0; i < V; i++) total += p[i];
        double target = u * total, acc = 0;
        for (int i = 0; i < V; i++) {
            acc += p[i];
            if (acc > target) return i;
        }
        for (int i = V - 1; i >= 0; i--)
            if (p[i] > 0) return i;
        return V - 1;
    }
    idx.resize(V);
    std::iota(idx.begin(), idx.end(), 0);
    // Descending probability, ties by id, so that the order is defined.
    auto by_prob = [&](int a, int b) { return p[a] > p[b] || (p[a] == p[b] && a < b); };
    int keep = V;
    if (top_k > 0 && top_k < V) {
        std::partial_sort(idx.begin(), idx.begin() + top_k, idx.end(), by_prob);
        keep = top_k;
    } else {
        std::sort(idx.begin(), idx.end(), by_prob);
    }
    if (top_p < 1.0f) {
        // HF's rule: keep the smallest prefix whose mass reaches top_p (at
        // least one token).
        double kept_total = 0;
        for (int i = 0; i < keep; i++) kept_total += p[idx[i]];
        double acc = 0;
        int n = 0;
        while (n < keep) {
            acc += p[idx[n]];
            n++;
            if (acc >= top_p * kept_total) break;
        }
        keep = n;
    }
    double kept = 0;
    for (int i = 0; i < keep; i++) kept += p[idx[i]];
    double target = u * kept, acc = 0;
    for (int i = 0; i < keep; i++) {
        acc += p[idx[i]];
        if (acc > target) return idx[i];
    }
    return idx[keep - 1];
}

extern "C" int sf_gpt2_sample(sf_gpt2_t *m, const int32_t *prompts, const int *prompt_lens,
                              int n, int stride, const sf_sample_opts_t *opts_in,
                              sf_samples_t *out) {
    if (!m || !prompts || !prompt_lens || n < 1 || stride < 1 || !out) return SF_EINVAL;
    memset(out, 0, sizeof *out);
    sf_sample_opts_t o;
    if (opts_in) o = *opts_in;
    else sf_sample_opts_default(&o);
    const auto &c = m->model->cfg;
    int P = 0;
    for (int i = 0; i < n; i++) {
        if (prompt_lens[i] < 1 || prompt_lens[i] > stride)
            return sf_ml_fail(&m->e, SF_EINVAL, "prompt %d: length %d (stride %d)", i,
                              prompt_lens[i], stride);
        for (int t = 0; t < prompt_lens[i]; t++) {
            int32_t id = prompts[(size_t)i * stride + t];
            if (id < 0 || id >= c.vocab_size)
                return sf_ml_fail(&m->e, SF_EINVAL, "prompt %d: token id %d outside the vocabulary",
                                  i, id);
        }
        P = std::max(P, prompt_lens[i]);
    }
    const int N = o.max_new_tokens;
    if (N < 1 || P + N > c.n_ctx)
        return sf_ml_fail(&m->e, SF_ERANGE, "prompt %d + %d new tokens exceeds context %d", P, N,
                          c.n_ctx);
    if (!(o.temperature > 0) || !(o.top_p > 0) || o.top_p > 1 || o.top_k < 0)
        return sf_ml_fail(&m->e, SF_EINVAL, "bad sampling options (temperature %g, top_k %d, "
                          "top_p %g)", o.temperature, o.top_k, o.top_p);
    const int eos = o.eos_id == -1 ? c.eos_id : o.eos_id;
    const int pad = eos >= 0 ? eos : c.eos_id;

    out->n = n;
    out->max_new = N;
    out->tokens = (int32_t *)malloc(sizeof(int32_t) * n * N);
    out->logprobs = (float *)calloc((size_t)n * N, sizeof(float));
    out->values = (float *)calloc((size_t)n * N, sizeof(float));
    out->lengths = (int *)calloc(n, sizeof(int));
    if (!out->tokens || !out->logprobs || !out->values || !out->lengths) {
        sf_samples_free(out);
        return sf_ml_fail(&m->e, SF_ENOMEM, "out of memory");
    }
    for (int i = 0; i < n * N; i++) out->tokens[i] = pad;

    SF_ML_TRY {
        torch::NoGradGuard ng;
        GPT2Impl &g = *m->model;
        const torch::Device dev = m->device;
        const int64_t Tmax = P + N, H = c.n_head, D = c.n_embd / c.n_head, V = c.vocab_size;

        // The sequence so far, left-padded: (n, Tmax) ids and mask on the CPU.
        torch::Tensor seq = torch::full({n, Tmax}, pad, torch::kLong);
        torch::Tensor msk = torch::zeros({n, Tmax}, torch::kBool);
        auto seq_a = seq.accessor<int64_t, 2>();
        auto msk_a = msk.accessor<bool, 2>();
        for (int i = 0; i < n; i++) {
            int off = P - prompt_lens[i];
            for (int t = 0; t < prompt_lens[i]; t++) {
                seq_a[i][off + t] = prompts[(size_t)i * stride + t];
                msk_a[i][off + t] = true;
            }
        }
        torch::Tensor pos = (msk.to(torch::kLong).cumsum(1) - 1).clamp_min(0);
        auto pos_a = pos.accessor<int64_t, 2>();

        std::vector<KVLayer> cache;
        if (o.use_cache) {
            // In the weights' dtype: the keys and values a layer computes.
            auto fo = torch::TensorOptions().dtype(g.wte->weight.scalar_type()).device(dev);
            for (int l = 0; l < c.n_layer; l++)
                cache.push_back({torch::empty({n, H, Tmax, D}, fo), torch::empty({n, H, Tmax, D}, fo)});
        }

        uint64_t rng = o.seed;
        std::vector<char> done(n, 0);
        std::vector<double> us(n);
        std::vector<int> drawn(n);
        int n_done = 0;
        // Rows per parallel task: a row of V probabilities is V additions.
        const int64_t grain = std::max<int64_t>(1, 32768 / V);
        for (int step = 0; step < N && n_done < n; step++) {
            const int64_t cur = P + step;   // columns filled so far
            torch::Tensor hid;              // (n, C) at the last column
            if (o.use_cache) {
                const int64_t q0 = step == 0 ? 0 : cur - 1, Tq = cur - q0;
                auto kmask = msk.narrow(1, 0, cur).to(dev);
                auto bias = sf_gpt2_attn_bias(kmask, q0, Tq);                    // (n, 1, Tq, cur)
                auto h = g.hidden(seq.narrow(1, q0, Tq).to(dev), pos.narrow(1, q0, Tq).to(dev),
                                  bias, &cache, q0);                              // (n, Tq, C)
                hid = h.select(1, Tq - 1);
            } else {
                auto kmask = msk.narrow(1, 0, cur).to(dev);
                auto bias = sf_gpt2_attn_bias(kmask, 0, cur);
                auto h = g.hidden(seq.narrow(1, 0, cur).to(dev), pos.narrow(1, 0, cur).to(dev),
                                  bias, nullptr, 0);
                hid = h.select(1, cur - 1);
            }
            // Log-probs and probabilities in float32 on the model's device
            // (a GPU's exp is free next to the CPU's over n x 50257), copied
            // back for the draws on the CPU.
            auto logits = g.logits(hid).to(torch::kFloat32);                 // (n, V)
            auto logp_d = torch::log_softmax(logits, -1);
            auto probs_d = o.temperature == 1.0f ? logp_d.exp() : torch::softmax(logits / o.temperature, -1);
            auto logp = logp_d.to(torch::kCPU).contiguous();
            auto probs = probs_d.to(torch::kCPU).contiguous();               // (n, V)
            auto vals = g.v_head->forward(hid).to(torch::kCPU, torch::kFloat32).contiguous();  // (n)
            const float *PR = probs.data_ptr<float>();
            const float *LP = logp.data_ptr<float>();
            const float *VA = vals.data_ptr<float>();
            // One draw per row per step, finished or not and in row order, so
            // that a row's draws do not depend on when the others stop; the
            // rows then draw in parallel (each from its own u).
            for (int i = 0; i < n; i++) us[i] = sf_ml_uniform01(&rng);
            at::parallel_for(0, n, grain, [&](int64_t i0, int64_t i1) {
                std::vector<int> idx;
                for (int64_t i = i0; i < i1; i++)
                    if (!done[i]) drawn[i] = sf_ml_draw(PR + (size_t)i * V, (int)V, o.top_k, o.top_p, us[i], idx);
            });
            for (int i = 0; i < n; i++) {
                int64_t next_pos = pos_a[i][cur - 1] + 1;
                if (done[i]) {
                    seq_a[i][cur] = pad;
                    msk_a[i][cur] = false;
                    pos_a[i][cur] = next_pos;
                    continue;
                }
                int tok = drawn[i];
                out->tokens[(size_t)i * N + step] = tok;
                out->logprobs[(size_t)i * N + step] = LP[(size_t)i * V + tok];
                out->values[(size_t)i * N + step] = VA[i];
                out->lengths[i] = step + 1;
                seq_a[i][cur] = tok;
                msk_a[i][cur] = true;
                pos_a[i][cur] = next_pos;
                if (tok == eos) {
                    done[i] = 1;
                    n_done++;
                }
            }
        }
        return 0;
    }
    catch (const std::exception &ex) {
        sf_samples_free(out);
        return sf_ml_fail(&m->e, SF_ETORCH, "sampling failed: %s", ex.what());
    }
}
