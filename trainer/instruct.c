/* instruct.c: sf-train's world instruction model — a small LLaMA-architecture
 * causal LM (ml/sf_llama.h) with its own SentencePiece tokenizer (BPE with
 * byte fallback, LLaMA's special ids), trained on (instruction -> caption)
 * pairs: the corpus phase's default prompt for a class (sf_corpus_prompt,
 * the Alpaca template) and the world's typical-context captions of that
 * class (sf_world_corpus_caption).  It stands in for the paper's Alpaca-7B
 * in the corpus phase, so it is judged the way that phase uses it: captions
 * sampled with the phase's default settings must pass the reward's
 * sentence-and-class check.
 *
 * Output: OUT/instruct-world/{config.json, model.safetensors,
 * tokenizer.model}, an HF LLaMA folder, OUT/instruct.stamp and
 * OUT/instruct.quality.json.
 *
 * How a row is tokenised is the corpus phase's contract: the prompt with
 * LLaMA's rules (<s> then its pieces), the caption on its own (its pieces,
 * which start with the dummy prefix "▁") then </s>.  A sampled continuation
 * decodes (sf_spm_decode drops the leading "▁") to the caption's text.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/method/classes.h"
#include "common/method/corpus.h"
#include "common/method/reward.h"
#include "common/runtime/clock.h"
#include "common/runtime/error.h"
#include "common/runtime/fileio.h"
#include "ml/sf_llama.h"
#include "ml/sf_spm.h"
#include "trainer/data.h"

/* Settings, all in the stamp key.  The model is small enough to ship (about
 * 0.9 M parameters, 3.5 MB of float32) and to train in minutes on one
 * thread; 2 key-value heads under 4 query heads keep grouped-query
 * attention in the path the corpus phase runs. */
#define INS_VERSION 1
#define INS_VOCAB 2000          /* SentencePiece pieces, at most (fewer if the text has no more merges) */
#define INS_LAYERS 4
#define INS_HEADS 4
#define INS_KV_HEADS 2
#define INS_HIDDEN 128
#define INS_INTERMEDIATE 352
#define INS_POSITIONS 256
#define INS_SEEDS 16            /* corpus seeds a class: captions (seed, k) for k < INS_PER_SEED */
#define INS_PER_SEED 32
#define INS_STEPS 3000          /* at scale 1 */
#define INS_BATCH 32
#define INS_WARMUP 100
#define INS_LR 3e-3f
#define INS_LR_MIN 3e-4f
#define INS_WD 0.1f
#define INS_CLIP 1.0f
#define INS_INIT_SEED 2025
#define INS_BATCH_SEED 7
#define INS_STRIDE 160          /* tokens a row at most: prompt and caption */

/* The corpus phase's default sampling, which the quality figures use. */
#define INS_EVAL_TEMPERATURE 0.8f
#define INS_EVAL_TOP_P 0.95f
#define INS_EVAL_MAX_NEW 48
#define INS_EVAL_ROWS 8         /* samples a class */
#define INS_EVAL_SEED0 900001   /* sampling seeds never used in training (which samples nothing) */

/* The training rows: prompt ids then caption ids and </s>. */
typedef struct {
    int n, cap;
    int32_t *seqs; /* (cap, INS_STRIDE) */
    int *plen, *slen;
} rows_t;

static void rows_free(rows_t *r) {
    free(r->seqs);
    free(r->plen);
    free(r->slen);
    memset(r, 0, sizeof *r);
}

static int rows_init(rows_t *r, int cap) {
    memset(r, 0, sizeof *r);
    r->cap = cap;
    r->seqs = calloc((size_t)cap * INS_STRIDE, sizeof *r->seqs);
    r->plen = calloc(cap, sizeof *r->plen);
    r->slen = calloc(cap, sizeof *r->slen);
    if (!r->seqs || !r->plen || !r->slen) {
        rows_free(r);
        return SF_ENOMEM;
    }
    return 0;
}

/* Appends a row: prompt ids (already encoded, P of them) then caption's
 * pieces and </s>.  SF_ERANGE when it does not fit in INS_STRIDE. */
static int rows_add(rows_t *r, sf_spm_t *plain, const int32_t *prompt, int P, const char *caption) {
    if (r->n >= r->cap) return SF_ERANGE;
    int32_t *row = r->seqs + (size_t)r->n * INS_STRIDE;
    memcpy(row, prompt, sizeof *row * P);
    int k = sf_spm_encode(plain, caption, 0, row + P, INS_STRIDE - P - 1);
    if (k < 0) {
        fprintf(stderr, "instruct: cannot encode \"%s\": %s\n", caption, sf_spm_errstr(plain));
        return k;
    }
    row[P + k] = sf_spm_eos_id(plain);
    r->plen[r->n] = P;
    r->slen[r->n] = P + k + 1;
    r->n++;
    return 0;
}

/* sf_llama_sft's progress callback: a line every 50 steps. */
static int progress(void *arg, int step, int steps, float loss, float lr) {
    (void)lr;
    sf_train_meter_step(arg, step, steps, loss, 0);
    return 0;
}

/* Samples INS_EVAL_ROWS captions a class with the corpus phase's default
 * settings and measures the shares that pass the reward's check (against
 * the other classes too, as the corpus phase checks them), that pass it for
 * their class alone, and that are distinct. */
static int evaluate(sf_llama_t *m, sf_spm_t *tok, const sf_world_t *w, const sf_classlist_t *among,
                    int32_t *const *prompts, const int *plen, double *pass, double *pass_class, double *distinct,
                    double *mean_words) {
    const int K = sf_world_n_classes(w), R = INS_EVAL_ROWS, N = INS_EVAL_MAX_NEW;
    int32_t *out = malloc(sizeof *out * (size_t)R * N);
    int *len = malloc(sizeof *len * R);
    char **texts = calloc((size_t)K * R, sizeof *texts);
    int rc = out && len && texts ? 0 : SF_ENOMEM, ok = 0, okc = 0, total = 0, shown = 0;
    long words = 0;
    for (int k = 0; rc == 0 && k < K; k++) {
        sf_sample_opts_t o;
        sf_sample_opts_default(&o);
        o.temperature = INS_EVAL_TEMPERATURE, o.top_p = INS_EVAL_TOP_P, o.top_k = 0, o.max_new_tokens = N;
        o.eos_id = -1, o.use_cache = 1, o.seed = INS_EVAL_SEED0 + (uint64_t)k;
        if ((rc = sf_llama_sample(m, prompts[k], plen[k], R, &o, out, len))) {
            fprintf(stderr, "instruct: sampling: %s\n", sf_llama_errstr(m));
            break;
        }
        const sf_class_t *cl = sf_world_class(w, k);
        for (int i = 0; rc == 0 && i < R; i++) {
            int n = len[i];
            if (n > 0 && out[(size_t)i * N + n - 1] == sf_spm_eos_id(tok)) n--;
            char *text = NULL;
            int tl = sf_spm_decode(tok, out + (size_t)i * N, n, &text);
            if (tl < 0) {
                rc = tl;
                break;
            }
            const int good = sf_reward_check(cl, among, text) == 0, goodc = sf_reward_check(cl, NULL, text) == 0;
            ok += good, okc += goodc, total++;
            for (const char *p = text; *p;) {
                while (*p == ' ') p++;
                if (!*p) break;
                words++;
                while (*p && *p != ' ') p++;
            }
            if (i == 0 && k % 17 == 0 && shown++ < 6)
                fprintf(stderr, "instruct: %-20s -> \"%s\"%s\n", cl->name, text, good ? "" : "  (fails the check)");
            texts[(size_t)k * R + i] = text;
        }
    }
    /* Distinct captions over all classes (a class's captions name it, so
     * two classes rarely share one). */
    int uniq = 0;
    for (int i = 0; rc == 0 && i < total; i++) {
        int dup = 0;
        for (int j = 0; j < i && !dup; j++) dup = !strcmp(texts[i], texts[j]);
        uniq += !dup;
    }
    for (int i = 0; texts && i < K * R; i++) free(texts[i]);
    free(texts);
    free(out);
    free(len);
    *pass = total ? (double)ok / total : 0;
    *pass_class = total ? (double)okc / total : 0;
    *distinct = total ? (double)uniq / total : 0;
    *mean_words = total ? (double)words / total : 0;
    return rc;
}

int sf_train_instruct(sf_train_ctx_t *c) {
    const sf_world_t *w = c->world;
    const int K = sf_world_n_classes(w);
    const int steps = (int)(INS_STEPS * c->scale) + 1;
    /* Small scales (the test models) see fewer captions, and the rows per
     * class never drop below what a few hundred steps can use. */
    int seeds = (int)(INS_SEEDS * c->scale + 0.999);
    if (seeds < 2) seeds = 2;
    if (seeds > INS_SEEDS) seeds = INS_SEEDS;
    const int warmup = steps / 10 < INS_WARMUP ? steps / 10 : INS_WARMUP;
    sf_llama_config_t cfg;
    sf_llama_config_small(&cfg);
    cfg.num_hidden_layers = INS_LAYERS, cfg.num_attention_heads = INS_HEADS, cfg.num_key_value_heads = INS_KV_HEADS;
    cfg.hidden_size = INS_HIDDEN, cfg.intermediate_size = INS_INTERMEDIATE, cfg.max_position_embeddings = INS_POSITIONS;
    cfg.head_dim = INS_HIDDEN / INS_HEADS;
    char settings[512];
    snprintf(settings, sizeof settings,
             "instruct v%d spm bpe %d layers %d heads %d kv %d hidden %d intermediate %d captions %dx%d steps %d "
             "batch %d lr %g to %g cosine warmup %d wd %g clip %g seeds %d/%d prompt \"%s\" / \"%s\"",
             INS_VERSION, INS_VOCAB, INS_LAYERS, INS_HEADS, INS_KV_HEADS, INS_HIDDEN, INS_INTERMEDIATE, seeds,
             INS_PER_SEED, steps, INS_BATCH, INS_LR, INS_LR_MIN, warmup, INS_WD, INS_CLIP, INS_INIT_SEED,
             INS_BATCH_SEED, SF_CORPUS_TEMPLATE_ALPACA, SF_CORPUS_INSTRUCTION);
    /* The vocabulary's size is the tokenizer's, known only after training
     * it; the key holds the config with the requested size. */
    cfg.vocab_size = INS_VOCAB;
    const uint64_t key = sf_train_key(w, settings, &cfg, sizeof cfg);
    if (sf_train_up_to_date(c, "instruct", key)) return 0;

    char err[512], dir[1024], path[1100];
    snprintf(dir, sizeof dir, "%s/instruct-world", c->out);
    const int per_class = seeds * INS_PER_SEED, N = K * per_class;
    /* Prompts and captions as text, then the tokenizer trained on them (the
     * prompts weighted as often as they occur in the rows). */
    char **caps = calloc(N, sizeof *caps), **prompts_txt = calloc(K, sizeof *prompts_txt);
    const char **sent = calloc((size_t)N * 2, sizeof *sent);
    int32_t **prompts = calloc(K, sizeof *prompts);
    int *plen = calloc(K, sizeof *plen);
    int rc = caps && prompts_txt && sent && prompts && plen ? 0 : SF_ENOMEM;
    double t0 = sf_clock_mono_s();
    for (int k = 0; rc == 0 && k < K; k++) {
        char buf[1024];
        if ((rc = sf_corpus_prompt(NULL, NULL, sf_world_class(w, k)->name, buf, sizeof buf)) == 0 &&
            !(prompts_txt[k] = strdup(buf)))
            rc = SF_ENOMEM;
        for (int i = 0; rc == 0 && i < per_class; i++) {
            char cap[512];
            if ((rc = sf_world_corpus_caption(w, k, i % INS_PER_SEED, 1 + (uint64_t)(i / INS_PER_SEED), cap,
                                              sizeof cap - 1)) != 0)
                break;
            /* The world's captions are phrases without a final mark; the
             * instruction asks for a sentence, and the reward's check wants
             * one (as the GPT-2 policy's rows, common/text/sft_rows.c). */
            size_t l = strlen(cap);
            if (l && cap[l - 1] != '.' && cap[l - 1] != '!' && cap[l - 1] != '?') cap[l] = '.', cap[l + 1] = 0;
            if (!(caps[k * per_class + i] = strdup(cap))) rc = SF_ENOMEM;
        }
    }
    size_t ns = 0;
    for (int i = 0; rc == 0 && i < N; i++) {
        sent[ns++] = caps[i];
        sent[ns++] = prompts_txt[i / per_class];
    }
    uint8_t *spm_bytes = NULL;
    size_t spm_len = 0;
    sf_spm_t *tok = NULL, *plain = NULL;
    if (rc == 0) {
        sf_spm_train_opts_t so = {.vocab_size = INS_VOCAB};
        if ((rc = sf_spm_train_llama(sent, ns, NULL, &so, &spm_bytes, &spm_len, err, sizeof err)))
            fprintf(stderr, "instruct: tokenizer: %s\n", err);
    }
    const sf_spm_opts_t llama_rules = {SF_SPM_LLAMA, 0}, plain_rules = {SF_SPM_PLAIN, 0};
    if (rc == 0 && ((rc = sf_spm_load_mem(spm_bytes, spm_len, "tokenizer.model", &llama_rules, &tok, err,
                                          sizeof err)) ||
                    (rc = sf_spm_load_mem(spm_bytes, spm_len, "tokenizer.model", &plain_rules, &plain, err,
                                          sizeof err))))
        fprintf(stderr, "instruct: tokenizer: %s\n", err);
    if (rc == 0) cfg.vocab_size = sf_spm_vocab_size(tok);
    double spm_s = sf_clock_mono_s() - t0;
    rows_t rows = {0};
    if (rc == 0) rc = rows_init(&rows, N);
    int max_len = 0;
    long resp_tokens = 0;
    for (int k = 0; rc == 0 && k < K; k++) {
        if (!(prompts[k] = malloc(sizeof(int32_t) * INS_STRIDE))) {
            rc = SF_ENOMEM;
            break;
        }
        if ((plen[k] = sf_spm_encode(tok, prompts_txt[k], 0, prompts[k], INS_STRIDE)) < 0) {
            fprintf(stderr, "instruct: prompt: %s\n", sf_spm_errstr(tok));
            rc = plen[k];
            break;
        }
        for (int i = 0; rc == 0 && i < per_class; i++) {
            if ((rc = rows_add(&rows, plain, prompts[k], plen[k], caps[k * per_class + i])) == 0) {
                max_len = rows.slen[rows.n - 1] > max_len ? rows.slen[rows.n - 1] : max_len;
                resp_tokens += rows.slen[rows.n - 1] - plen[k];
            }
        }
    }
    sf_llama_t *m = NULL;
    if (rc == 0 && (rc = sf_llama_new(&cfg, "cpu", INS_INIT_SEED, &m, err, sizeof err)))
        fprintf(stderr, "instruct: %s\n", err);
    float first = 0, last = 0;
    double t1 = sf_clock_mono_s();
    if (rc == 0) {
        fprintf(stderr,
                "instruct: %" PRId64 " parameters, tokenizer of %d pieces (%.1f s); %d rows (%d classes x %d), "
                "prompt %d-%d tokens, longest row %d, %.1f response tokens a row; %d steps of %d\n",
                sf_llama_num_params(m), cfg.vocab_size, spm_s, rows.n, K, per_class, plen[0], plen[K - 1], max_len,
                (double)resp_tokens / rows.n, steps, INS_BATCH);
        sf_llama_sft_opts_t o;
        sf_llama_sft_opts_default(&o);
        o.steps = steps, o.batch = INS_BATCH, o.warmup = warmup, o.lr = INS_LR, o.lr_min = INS_LR_MIN;
        o.decay = SF_LLAMA_DECAY_COSINE, o.weight_decay = INS_WD, o.max_grad_norm = INS_CLIP, o.seed = INS_BATCH_SEED;
        sf_train_meter_t pr;
        sf_train_meter_start(&pr, "instruct", 50, 0);
        if ((rc = sf_llama_sft(m, rows.seqs, rows.plen, rows.slen, rows.n, INS_STRIDE, &o, progress, &pr, &first,
                               &last)))
            fprintf(stderr, "instruct: %s\n", sf_llama_errstr(m));
    }
    double train_s = sf_clock_mono_s() - t1;
    /* The folder first, then the quality figures from the model as saved
     * (reloaded), so they describe what ships. */
    sf_llama_t *saved = NULL;
    if (rc == 0 && (rc = sf_llama_save(m, dir))) fprintf(stderr, "instruct: %s\n", sf_llama_errstr(m));
    snprintf(path, sizeof path, "%s/tokenizer.model", dir);
    if (rc == 0 && (rc = sf_write_file_atomic(path, spm_bytes, spm_len)))
        fprintf(stderr, "instruct: cannot write %s\n", path);
    if (rc == 0 && (rc = sf_llama_load(dir, "cpu", "fp32", &saved, err, sizeof err)))
        fprintf(stderr, "instruct: reloading: %s\n", err);
    sf_classlist_t *among = NULL;
    if (rc == 0 && (rc = sf_classes_load("builtin:imagenet-a-r-86", &among, err, sizeof err)))
        fprintf(stderr, "instruct: %s\n", err);
    double pass = 0, pass_class = 0, distinct = 0, words = 0, t2 = sf_clock_mono_s();
    if (rc == 0) rc = evaluate(saved, tok, w, among, prompts, plen, &pass, &pass_class, &distinct, &words);
    double eval_s = sf_clock_mono_s() - t2;
    if (rc == 0) {
        char json[1024];
        snprintf(json, sizeof json,
                 "{\"passes_check\": %.4f, \"passes_check_class_only\": %.4f, \"distinct\": %.4f, "
                 "\"mean_words\": %.2f, \"samples\": %d, \"first_loss\": %.4f, \"final_loss\": %.4f, "
                 "\"steps\": %d, \"batch\": %d, \"rows\": %d, \"train_s\": %.0f, \"eval_s\": %.0f, "
                 "\"parameters\": %" PRId64 ", \"vocab\": %d, \"layers\": %d, \"hidden\": %d, \"heads\": %d, "
                 "\"kv_heads\": %d, \"temperature\": %g, \"top_p\": %g, \"top_k\": 0, \"max_new_tokens\": %d, "
                 "\"threads\": %d}",
                 pass, pass_class, distinct, words, K * INS_EVAL_ROWS, first, last, steps, INS_BATCH, rows.n, train_s,
                 eval_s, sf_llama_num_params(saved), cfg.vocab_size, cfg.num_hidden_layers, cfg.hidden_size,
                 cfg.num_attention_heads, cfg.num_key_value_heads, INS_EVAL_TEMPERATURE, INS_EVAL_TOP_P,
                 INS_EVAL_MAX_NEW, c->threads);
        if ((rc = sf_train_quality_write(c, "instruct", json)) == 0) fprintf(stderr, "instruct: %s\n", json);
    }
    /* The stamp holds the settings on one line (the manifest reads the
     * second line): the template's newlines are written as "\n".  The key
     * is of the settings as they are. */
    char line[640];
    size_t o = 0;
    for (const char *q = settings; *q && o + 3 < sizeof line; q++) {
        if (*q == '\n') line[o++] = '\\', line[o++] = 'n';
        else line[o++] = *q;
    }
    line[o] = 0;
    if (rc == 0) rc = sf_train_stamp_write(c, "instruct", key, line);
    sf_classes_free(&among);
    sf_llama_free(&saved);
    sf_llama_free(&m);
    sf_spm_free(&tok);
    sf_spm_free(&plain);
    free(spm_bytes);
    rows_free(&rows);
    for (int i = 0; caps && i < N; i++) free(caps[i]);
    for (int k = 0; k < K; k++) {
        if (prompts_txt) free(prompts_txt[k]);
        if (prompts) free(prompts[k]);
    }
    free(caps);
    free(prompts_txt);
    free(sent);
    free(prompts);
    free(plen);
    return rc;
}
