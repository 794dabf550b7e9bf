/* test_ml_llama_train: training the LLaMA causal LM (ml/sf_llama.h: fresh
 * weights, sf_llama_sft, sf_llama_save) and the LLaMA tokenizer trainer
 * (ml/sf_spm.h: sf_spm_train_llama) — what sf-train instruct is built from.
 *
 *   - SFT lowers the response loss of a tiny copy task (prompt: <s>, a
 *     marker, four random ids; response: the same four ids, </s>) from
 *     about ln V to under a tenth of it, and the trained model then copies
 *     greedily; the same seed gives bit-identical weights, another seed
 *     other ones.
 *   - Saving then sf_llama_load gives identical logits (bit for bit: both
 *     are float32 and the same module), tied and untied; config.json says
 *     model_type llama and LlamaForCausalLM; a tied folder has no
 *     lm_head.weight.
 *   - The saved folder read by the independent torch.nn reference
 *     (tools/numerics/llama_ref.py --folder, its own safetensors reader, in
 *     float64) gives the same logits: err = max|got - want| / max|want| <
 *     TOL_REF = 1e-5, as test_ml_llama's fp32 tolerance (float32 sums in
 *     another order differ by a few 1e-7 of the logits' scale).
 *   - The tokenizer trainer, on spm_ref.py's corpus: the same pieces from
 *     memory and from the file, the same bytes twice, LLaMA's ids (unk 0,
 *     <s> 1, </s> 2, no pad, the 256 byte pieces from id 3), the same
 *     vocabulary as python's SentencePieceTrainer with the documented
 *     settings, and python's sentencepiece loading the model the C code
 *     trained and encoding spm_ref.py's 620 test strings (whitespace runs,
 *     tabs, newlines, digits, unseen characters, emoji) to the ids that
 *     sf_spm_encode gives, and decoding them alike.
 *   - Bad input: a row whose response is empty, an id outside the
 *     vocabulary, options out of range, a vocabulary too small — refused
 *     with the code and a message naming what is wrong.
 *
 * Without python's torch or sentencepiece the test is skipped (exit 77). */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/runtime/error.h"
#include "common/runtime/fileio.h"
#include "ml/sf_llama.h"
#include "ml/sf_ml.h"
#include "ml/sf_spm.h"
#include "sf_test.h"
#include "sf_test_dirs.h"

#define PY "/usr/bin/python3"
#define TOL_REF 1e-5

/* The copy task: V ids, rows of prompt <s> 3 a b c d (P = 6) and response
 * a b c d </s>, ids a.. drawn from 4..V-1. */
#define V 40
#define STRIDE 12
#define NROWS 256

static const char *src_root(void) { return getenv("SF_ROOT") ? getenv("SF_ROOT") : "."; }

static int32_t seqs[NROWS * STRIDE];
static int plen[NROWS], slen[NROWS];

static void make_rows(void) {
    uint64_t r = 99;
    for (int i = 0; i < NROWS; i++) {
        int32_t *row = seqs + i * STRIDE;
        row[0] = 1, row[1] = 3;
        for (int j = 0; j < 4; j++) {
            r = r * 6364136223846793005ull + 1442695040888963407ull;
            row[2 + j] = 4 + (int32_t)((r >> 33) % (V - 4));
            row[6 + j] = row[2 + j];
        }
        row[10] = 2;
        plen[i] = 6, slen[i] = 11;
    }
}

static void tiny_config(sf_llama_config_t *c, int tied) {
    sf_llama_config_small(c);
    c->num_hidden_layers = 2, c->hidden_size = 32, c->num_attention_heads = 4, c->num_key_value_heads = 2;
    c->intermediate_size = 64, c->vocab_size = V, c->max_position_embeddings = 32, c->tie_word_embeddings = tied;
}

static void tiny_opts(sf_llama_sft_opts_t *o) {
    sf_llama_sft_opts_default(o);
    o->steps = 300, o->batch = 16, o->warmup = 20, o->lr = 1e-2f, o->lr_min = 1e-3f, o->seed = 3;
}

/* A trained tiny model (seed: the init's), or NULL. */
static sf_llama_t *trained(int tied, uint64_t seed, float *first, float *last) {
    sf_llama_config_t c;
    tiny_config(&c, tied);
    sf_llama_t *m = NULL;
    char err[256];
    if (sf_llama_new(&c, "cpu", seed, &m, err, sizeof err)) {
        fprintf(stderr, "new: %s\n", err);
        return NULL;
    }
    sf_llama_sft_opts_t o;
    tiny_opts(&o);
    if (sf_llama_sft(m, seqs, plen, slen, NROWS, STRIDE, &o, NULL, NULL, first, last)) {
        fprintf(stderr, "sft: %s\n", sf_llama_errstr(m));
        sf_llama_free(&m);
    }
    return m;
}

/* Logits (4, STRIDE, V) of the first four rows, right-padded at their
 * lengths (malloc'd). */
static float *logits_of(sf_llama_t *m) {
    float *l = malloc(sizeof(float) * 4 * STRIDE * V);
    int lens[4] = {11, 7, 11, 9};
    if (sf_llama_forward(m, seqs, lens, 4, STRIDE, l)) {
        fprintf(stderr, "forward: %s\n", sf_llama_errstr(m));
        free(l);
        return NULL;
    }
    return l;
}

static int n_progress;
static int count_progress(void *arg, int step, int steps, float loss, float lr) {
    (void)arg, (void)steps, (void)loss;
    n_progress++;
    return step == 5 && lr > 0 ? 1 : 0;   /* stop after five steps */
}

TEST(sft_lowers_the_loss_and_learns_to_copy) {
    float first = 0, last = 0;
    sf_llama_t *m = trained(1, 11, &first, &last);
    CHECK(m != NULL);
    if (!m) return;
    printf("  copy task: loss %.3f -> %.4f (ln V = %.3f)\n", first, last, log(V));
    CHECK(first > 0.8 * log(V));
    CHECK(last < 0.1 * first);
    /* Greedy continuations of held-out prompts copy their four ids. */
    int ok = 0;
    for (int k = 0; k < 8; k++) {
        int32_t prompt[6] = {1, 3, 4 + (7 * k + 1) % (V - 4), 4 + (11 * k + 5) % (V - 4), 4 + (3 * k + 2) % (V - 4),
                             4 + (13 * k + 7) % (V - 4)};
        int32_t out[5];
        int len = 0;
        sf_sample_opts_t o;
        sf_sample_opts_default(&o);
        o.max_new_tokens = 5, o.top_k = 1, o.seed = 1;
        CHECK_EQ_INT(sf_llama_sample(m, prompt, 6, 1, &o, out, &len), 0);
        ok += len == 5 && !memcmp(out, prompt + 2, sizeof(int32_t) * 4) && out[4] == 2;
    }
    printf("  held-out prompts copied greedily: %d of 8\n", ok);
    CHECK(ok >= 6);
    sf_llama_free(&m);
}

TEST(sft_is_deterministic_for_a_seed) {
    sf_llama_t *a = trained(1, 11, NULL, NULL), *b = trained(1, 11, NULL, NULL), *c = trained(1, 12, NULL, NULL);
    CHECK(a && b && c);
    if (a && b && c) {
        float *la = logits_of(a), *lb = logits_of(b), *lc = logits_of(c);
        CHECK(la && lb && lc);
        if (la && lb && lc) {
            CHECK(memcmp(la, lb, sizeof(float) * 4 * STRIDE * V) == 0);
            CHECK(memcmp(la, lc, sizeof(float) * 4 * STRIDE * V) != 0);
        }
        free(la), free(lb), free(lc);
    }
    sf_llama_free(&a), sf_llama_free(&b), sf_llama_free(&c);
}

TEST(progress_reports_and_stops) {
    sf_llama_config_t c;
    tiny_config(&c, 1);
    sf_llama_t *m = NULL;
    char err[256];
    CHECK_EQ_INT(sf_llama_new(&c, "cpu", 1, &m, err, sizeof err), 0);
    sf_llama_sft_opts_t o;
    tiny_opts(&o);
    n_progress = 0;
    CHECK_EQ_INT(sf_llama_sft(m, seqs, plen, slen, NROWS, STRIDE, &o, count_progress, NULL, NULL, NULL),
                 SF_ECANCELED);
    CHECK_EQ_INT(n_progress, 5);
    sf_llama_free(&m);
}

/* Saves m into root/name and checks that sf_llama_load reads it back to
 * the same logits, bit for bit. */
static void save_and_reload(sf_llama_t *m, const char *name, int tied) {
    const char *dir = folder(name);
    CHECK_EQ_INT(sf_llama_save(m, dir), 0);
    sf_llama_t *r = NULL;
    char err[512];
    CHECK_EQ_INT(sf_llama_load(dir, "cpu", NULL, &r, err, sizeof err), 0);
    if (!r) {
        fprintf(stderr, "load: %s\n", err);
        return;
    }
    CHECK_EQ_INT(sf_llama_config(r)->tie_word_embeddings, tied);
    CHECK_EQ_INT(sf_llama_config(r)->num_key_value_heads, 2);
    CHECK_EQ_INT(sf_llama_num_params(r), sf_llama_num_params(m));
    float *a = logits_of(m), *b = logits_of(r);
    CHECK(a && b && memcmp(a, b, sizeof(float) * 4 * STRIDE * V) == 0);
    free(a), free(b);
    sf_llama_free(&r);
    char p[512];
    snprintf(p, sizeof p, "%s/config.json", dir);
    char *text = sf_file_text(p, NULL);
    cJSON *j = text ? cJSON_Parse(text) : NULL;
    CHECK(j != NULL);
    if (j) {
        CHECK_EQ_STR(cJSON_GetObjectItem(j, "model_type")->valuestring, "llama");
        CHECK_EQ_STR(cJSON_GetArrayItem(cJSON_GetObjectItem(j, "architectures"), 0)->valuestring,
                     "LlamaForCausalLM");
        CHECK(cJSON_GetObjectItem(j, "rms_norm_eps")->valuedouble == 1e-6);
    }
    cJSON_Delete(j);
    free(text);
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    size_t len = 0;
    char *st = sf_file_text(p, &len);
    CHECK(st != NULL && len > 8);
    if (st) CHECK((strstr(st + 8, "\"lm_head.weight\"") != NULL) == !tied);
    free(st);
}

TEST(save_then_load_gives_identical_logits) {
    sf_llama_t *m = trained(1, 11, NULL, NULL);
    CHECK(m != NULL);
    if (m) save_and_reload(m, "tied", 1);
    sf_llama_free(&m);
    m = trained(0, 11, NULL, NULL);
    CHECK(m != NULL);
    if (m) save_and_reload(m, "untied", 0);
    sf_llama_free(&m);
}

/* The torch.nn reference on a saved folder: rel. error of our logits. */
static double reference_err(const char *name, int tied) {
    sf_llama_t *m = trained(tied, 21, NULL, NULL);
    if (!m) return -1;
    const char *dir = folder(name);
    double e = -1;
    float *got = NULL, *want = NULL;
    int lens[4] = {11, 7, 11, 9};
    char p[512], cmd[2048];
    if (sf_llama_save(m, dir)) goto done;
    /* The rows the reference runs, each alone at its length. */
    cJSON *j = cJSON_CreateObject(), *rows = cJSON_AddArrayToObject(j, "tokens");
    for (int b = 0; b < 4; b++) {
        cJSON *row = cJSON_CreateArray();
        for (int t = 0; t < STRIDE; t++) cJSON_AddItemToArray(row, cJSON_CreateNumber(seqs[b * STRIDE + t]));
        cJSON_AddItemToArray(rows, row);
    }
    cJSON_AddItemToObject(j, "lengths", cJSON_CreateIntArray(lens, 4));
    char *js = cJSON_Print(j);
    cJSON_Delete(j);
    write_text(root, "in.json", js);
    free(js);
    snprintf(cmd, sizeof cmd, PY " '%s/tools/numerics/llama_ref.py' --folder '%s' '%s/in.json' '%s/want.f32' >'%s/ref.log' 2>&1",
             src_root(), dir, root, root, root);
    if (system(cmd) != 0) {
        snprintf(p, sizeof p, "%s/ref.log", root);
        char *log = sf_file_text(p, NULL);
        fprintf(stderr, "llama_ref.py --folder failed:\n%s\n", log ? log : "(no log)");
        free(log);
        goto done;
    }
    snprintf(p, sizeof p, "%s/want.f32", root);
    size_t len = 0;
    want = (float *)sf_file_text(p, &len);
    got = logits_of(m);
    if (!want || !got || len != sizeof(float) * 4 * STRIDE * V) goto done;
    double d = 0, mx = 0;
    for (int b = 0; b < 4; b++)
        for (int t = 0; t < lens[b]; t++)
            for (int v = 0; v < V; v++) {
                size_t i = ((size_t)b * STRIDE + t) * V + v;
                d = fmax(d, fabs(got[i] - want[i]));
                mx = fmax(mx, fabs(want[i]));
            }
    e = d / mx;
    printf("  %s: saved folder vs torch.nn reference: max|got - want| / max|want| = %.3g (max |want| %.2f)\n", name,
           e, mx);
done:
    free(got);
    free(want);
    sf_llama_free(&m);
    return e;
}

TEST(saved_folder_matches_the_torch_reference) {
    double e = reference_err("ref-tied", 1);
    CHECK(e >= 0 && e < TOL_REF);
    e = reference_err("ref-untied", 0);
    CHECK(e >= 0 && e < TOL_REF);
}

TEST(bad_rows_and_options_are_refused) {
    sf_llama_config_t c;
    tiny_config(&c, 1);
    sf_llama_t *m = NULL;
    char err[256];
    CHECK_EQ_INT(sf_llama_new(&c, "cpu", 1, &m, err, sizeof err), 0);
    sf_llama_sft_opts_t o;
    tiny_opts(&o);
    int pl[2] = {6, 6}, sl[2] = {11, 6};
    CHECK_EQ_INT(sf_llama_sft(m, seqs, pl, sl, 2, STRIDE, &o, NULL, NULL, NULL, NULL), SF_EINVAL);
    CHECK(contains(sf_llama_errstr(m), "row 1: prompt 6 and length 6"));
    int32_t bad[STRIDE];
    memcpy(bad, seqs, sizeof bad);
    bad[7] = V;
    sl[1] = 11;
    int32_t two[2 * STRIDE];
    memcpy(two, seqs, sizeof bad);
    memcpy(two + STRIDE, bad, sizeof bad);
    CHECK_EQ_INT(sf_llama_sft(m, two, pl, sl, 2, STRIDE, &o, NULL, NULL, NULL, NULL), SF_EINVAL);
    CHECK(contains(sf_llama_errstr(m), "row 1: token id 40 at 7"));
    o.lr = 0;
    CHECK_EQ_INT(sf_llama_sft(m, seqs, plen, slen, NROWS, STRIDE, &o, NULL, NULL, NULL, NULL), SF_EINVAL);
    tiny_opts(&o);
    CHECK_EQ_INT(sf_llama_sft(m, seqs, plen, slen, NROWS, 40, &o, NULL, NULL, NULL, NULL), SF_ERANGE);
    CHECK(contains(sf_llama_errstr(m), "max_position_embeddings 32"));
    sf_llama_free(&m);
    c.num_key_value_heads = 3;
    CHECK_EQ_INT(sf_llama_new(&c, "cpu", 1, &m, err, sizeof err), SF_EINVAL);
    CHECK(contains(err, "not a multiple of num_key_value_heads 3"));
    CHECK(m == NULL);
}

/* ---- the tokenizer trainer ---- */

static char **lines;
static size_t n_lines;

static void read_corpus(void) {
    char p[512];
    snprintf(p, sizeof p, "%s/spm/corpus.txt", root);
    size_t len = 0;
    char *text = sf_file_text(p, &len);
    if (!text) return;
    for (char *s = text; *s;) {
        char *nl = strchr(s, '\n');
        if (nl) *nl = 0;
        lines = realloc(lines, sizeof *lines * (n_lines + 1));
        lines[n_lines++] = strdup(s);
        if (!nl) break;
        s = nl + 1;
    }
    free(text);
}

TEST(spm_trainer_matches_python_and_encodes_alike) {
    read_corpus();
    CHECK(n_lines == 3000);
    if (n_lines != 3000) return;
    sf_spm_train_opts_t o = {.vocab_size = 700};
    uint8_t *a = NULL, *b = NULL, *f = NULL;
    size_t al = 0, bl = 0, fl = 0;
    char err[512], p[512];
    int rc = sf_spm_train_llama((const char *const *)lines, n_lines, NULL, &o, &a, &al, err, sizeof err);
    if (rc) fprintf(stderr, "  train: %s\n", err);
    CHECK_EQ_INT(rc, 0);
    CHECK_EQ_INT(sf_spm_train_llama((const char *const *)lines, n_lines, NULL, &o, &b, &bl, err, sizeof err), 0);
    CHECK(a && b && al == bl && memcmp(a, b, al) == 0);
    snprintf(p, sizeof p, "%s/spm/corpus.txt", root);
    CHECK_EQ_INT(sf_spm_train_llama(NULL, 0, p, &o, &f, &fl, err, sizeof err), 0);
    sf_spm_t *t = NULL, *tf = NULL;
    CHECK_EQ_INT(sf_spm_load_mem(a, al, "trained", NULL, &t, err, sizeof err), 0);
    CHECK_EQ_INT(sf_spm_load_mem(f, fl, "from-file", NULL, &tf, err, sizeof err), 0);
    if (!t || !tf) goto done;
    CHECK_EQ_INT(sf_spm_unk_id(t), 0);
    CHECK_EQ_INT(sf_spm_bos_id(t), 1);
    CHECK_EQ_INT(sf_spm_eos_id(t), 2);
    CHECK_EQ_INT(sf_spm_pad_id(t), -1);
    CHECK_EQ_STR(sf_spm_id_to_piece(t, 3), "<0x00>");
    CHECK_EQ_STR(sf_spm_id_to_piece(t, 258), "<0xFF>");
    CHECK_EQ_INT(sf_spm_vocab_size(t), 700);
    int same_file = sf_spm_vocab_size(tf) == 700;
    for (int i = 0; same_file && i < 700; i++) same_file = !strcmp(sf_spm_id_to_piece(t, i), sf_spm_id_to_piece(tf, i));
    CHECK(same_file);
    /* LLaMA's rules load it, and the model file is what python reads. */
    sf_spm_t *ll = NULL;
    sf_spm_opts_t lo = {SF_SPM_LLAMA, 0};
    CHECK_EQ_INT(sf_spm_load_mem(a, al, "trained", &lo, &ll, err, sizeof err), 0);
    int32_t ids[8];
    CHECK(sf_spm_encode(ll, "a", 0, ids, 8) >= 2 && ids[0] == 1);
    sf_spm_free(&ll);
    snprintf(p, sizeof p, "%s/spm/c.model", root);
    CHECK_EQ_INT(sf_write_file_atomic(p, a, al), 0);
    char cmd[1024];
    snprintf(cmd, sizeof cmd,
             PY " '%s/tools/numerics/spm_train_ref.py' encode '%s/spm/c.model' '%s/spm/strings.json' '%s/spm/c.json' "
                ">>'%s/spm/log' 2>&1 && " PY " '%s/tools/numerics/spm_train_ref.py' encode '%s/spm/py.model' "
                "'%s/spm/strings.json' '%s/spm/py.json' >>'%s/spm/log' 2>&1",
             src_root(), root, root, root, root, src_root(), root, root, root, root);
    CHECK_EQ_INT(system(cmd), 0);
    snprintf(p, sizeof p, "%s/spm/c.json", root);
    char *ct = sf_file_text(p, NULL);
    snprintf(p, sizeof p, "%s/spm/py.json", root);
    char *pt = sf_file_text(p, NULL);
    cJSON *cj = ct ? cJSON_Parse(ct) : NULL, *pj = pt ? cJSON_Parse(pt) : NULL;
    free(ct), free(pt);
    CHECK(cj && pj);
    if (cj && pj) {
        /* The vocabulary python's trainer makes with the documented
         * settings is ours, piece for piece. */
        const cJSON *pp = cJSON_GetObjectItem(pj, "pieces"), *x;
        int i = 0, same = cJSON_GetArraySize(pp) == sf_spm_vocab_size(t);
        cJSON_ArrayForEach(x, pp) {
            if (same && strcmp(x->valuestring, sf_spm_id_to_piece(t, i))) {
                fprintf(stderr, "  piece %d: python's trainer \"%s\", ours \"%s\"\n", i, x->valuestring,
                        sf_spm_id_to_piece(t, i));
                same = 0;
            }
            i++;
        }
        CHECK(same);
        /* python's sentencepiece on our model: the same ids and text. */
        const cJSON *want = cJSON_GetObjectItem(cj, "ids"), *dec = cJSON_GetObjectItem(cj, "decoded");
        snprintf(p, sizeof p, "%s/spm/strings.json", root);
        char *st = sf_file_text(p, NULL);
        cJSON *strs = st ? cJSON_Parse(st) : NULL;
        free(st);
        int n = 0, ok = 0, dec_ok = 0;
        const cJSON *s;
        cJSON_ArrayForEach(s, strs) {
            const cJSON *w = cJSON_GetArrayItem(want, n);
            int32_t got[4096];
            int k = sf_spm_encode(t, s->valuestring, 0, got, 4096), good = k == cJSON_GetArraySize(w);
            for (int q = 0; good && q < k; q++) good = got[q] == cJSON_GetArrayItem(w, q)->valueint;
            if (!good && n - ok < 3) fprintf(stderr, "  string %d \"%s\": ids differ from python's\n", n, s->valuestring);
            ok += good;
            char *text = NULL;
            int tl = k >= 0 ? sf_spm_decode(t, got, k, &text) : -1;
            dec_ok += tl >= 0 && !strcmp(text, cJSON_GetArrayItem(dec, n)->valuestring);
            free(text);
            n++;
        }
        printf("  %d strings: ids as python's sentencepiece %d, decoded alike %d\n", n, ok, dec_ok);
        CHECK(n >= 600);
        CHECK_EQ_INT(ok, n);
        CHECK_EQ_INT(dec_ok, n);
        cJSON_Delete(strs);
    }
    cJSON_Delete(cj);
    cJSON_Delete(pj);
done:
    sf_spm_free(&t);
    sf_spm_free(&tf);
    free(a), free(b), free(f);
}

TEST(spm_trainer_refuses_bad_input) {
    const char *s[] = {"a b c", "d e f"};
    sf_spm_train_opts_t o = {.vocab_size = 100};
    uint8_t *m = (uint8_t *)"x";
    size_t len = 1;
    char err[512];
    CHECK_EQ_INT(sf_spm_train_llama(s, 2, NULL, &o, &m, &len, err, sizeof err), SF_EINVAL);
    CHECK(contains(err, "vocab_size 100"));
    CHECK(m == NULL && len == 0);
    o.vocab_size = 300;
    const char *badutf[] = {"ok", "bad \xff here"};
    CHECK_EQ_INT(sf_spm_train_llama(badutf, 2, NULL, &o, &m, &len, err, sizeof err), SF_EINVAL);
    CHECK(contains(err, "sentence 1: invalid UTF-8 at byte 4"));
    CHECK_EQ_INT(sf_spm_train_llama(NULL, 0, "/nonexistent/corpus.txt", &o, &m, &len, err, sizeof err),
                 SF_ENOTFOUND);
    CHECK(contains(err, "/nonexistent/corpus.txt"));
}

static void cleanup(void) {
    if (root[0] && !getenv("SF_KEEP")) rm_rf(root);
    for (size_t i = 0; i < n_lines; i++) free(lines[i]);
    free(lines);
}

int main(void) {
    if (system(PY " -c 'import torch, sentencepiece' >/dev/null 2>&1") != 0) {
        printf("skipped: " PY " cannot import torch and sentencepiece (Debian's python3-torch and "
               "python3-sentencepiece; make deps installs them)\n");
        return 77;
    }
    sf_ml_opts_t mo = {.threads = 1, .quiet = 1};
    sf_ml_init(&mo);
    snprintf(root, sizeof root, "/tmp/sf_llama_train_XXXXXX");
    if (!mkdtemp(root)) {
        perror("mkdtemp");
        return 1;
    }
    atexit(cleanup);
    char cmd[1024];
    snprintf(cmd, sizeof cmd, PY " '%s/tools/numerics/spm_train_ref.py' corpus '%s/spm' >'%s/spm.log' 2>&1",
             src_root(), root, root);
    if (system(cmd) != 0) {
        fprintf(stderr, "tools/numerics/spm_train_ref.py corpus failed (see %s/spm.log)\n", root);
        return 1;
    }
    make_rows();
    SF_RUN(sft_lowers_the_loss_and_learns_to_copy);
    SF_RUN(sft_is_deterministic_for_a_seed);
    SF_RUN(progress_reports_and_stops);
    SF_RUN(save_then_load_gives_identical_logits);
    SF_RUN(saved_folder_matches_the_torch_reference);
    SF_RUN(bad_rows_and_options_are_refused);
    SF_RUN(spm_trainer_matches_python_and_encodes_alike);
    SF_RUN(spm_trainer_refuses_bad_input);
    SF_DONE();
}
