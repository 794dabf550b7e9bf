/* test_ml_spm: the SentencePiece tokenizers (ml/sf_spm.h) against python's
 * sentencepiece.
 *
 * tools/numerics/spm_ref.py (/usr/bin/python3 with Debian's
 * python3-sentencepiece) trains two tiny models into a temporary folder —
 * a T5-like unigram one (<pad> 0, </s> 1, <unk> 2, no <s>) and a LLaMA-like
 * BPE one with byte fallback (<unk> 0, <s> 1, </s> 2) — and writes, for 620
 * strings (several scripts, emoji, whitespace runs, tabs, newlines, digits,
 * characters the corpus never had, the special tokens' text, the empty
 * string), python's ids and decoded text, the ids with the family's special
 * tokens (sentencepiece's add_bos / add_eos), and the cuts to seven maximum
 * lengths by HF's rule.  Here every one must match id for id and byte for
 * byte, and so must the vocabulary and the special ids.  Then small cases
 * worked out by hand (the special tokens' places, the cuts at the edges,
 * byte fallback's ids, NFKC and whitespace), and the errors: a missing file,
 * the model cut in half and at other points, garbage bytes, an empty file,
 * invalid UTF-8, ids outside the vocabulary, a family the model cannot
 * serve.  Without python's sentencepiece the test is skipped (exit 77). */
#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/runtime/error.h"
#include "common/runtime/fileio.h"
#include "ml/sf_spm.h"
#include "sf_test.h"
#include "sf_test_dirs.h"

#define PY "/usr/bin/python3"
#define ROOM 4096

/* One model's fixture: the header line and the rows after it. */
typedef struct {
    const char *name;
    cJSON *head;
    cJSON *rows;   /* array of the other lines */
} fixture_t;

static fixture_t t5 = {"t5", NULL, NULL}, llama = {"llama", NULL, NULL};
static char t5_path[256], llama_path[256];
static char *model_bytes;   /* t5.model, cut in half; freed by cleanup */

static const char *src_root(void) { return getenv("SF_ROOT") ? getenv("SF_ROOT") : "."; }

static void cleanup(void) {
    free(model_bytes);
    cJSON_Delete(t5.head);
    cJSON_Delete(t5.rows);
    cJSON_Delete(llama.head);
    cJSON_Delete(llama.rows);
    if (root[0]) rm_rf(root);
}

static int load_fixture(fixture_t *f) {
    char p[512];
    snprintf(p, sizeof p, "%s/%s.jsonl", root, f->name);
    char *text = sf_file_text(p, NULL);
    if (!text) {
        fprintf(stderr, "cannot read %s\n", p);
        return -1;
    }
    f->rows = cJSON_CreateArray();
    int line = 0;
    for (char *s = text, *nl; *s; s = nl + 1, line++) {
        nl = strchr(s, '\n');
        if (!nl) nl = s + strlen(s) - 1;
        else *nl = 0;
        cJSON *j = cJSON_Parse(s);
        if (!j) {
            fprintf(stderr, "%s:%d: not JSON\n", p, line + 1);
            free(text);
            return -1;
        }
        if (line == 0) f->head = j;
        else cJSON_AddItemToArray(f->rows, j);
    }
    free(text);
    return f->head ? 0 : -1;
}

static sf_spm_t *open_model(const char *path, sf_spm_family_t fam, int add_eos) {
    char err[512];
    sf_spm_opts_t o = {fam, add_eos};
    sf_spm_t *t = NULL;
    if (sf_spm_load(path, &o, &t, err, sizeof err)) fprintf(stderr, "%s\n", err);
    return t;
}

/* Prints a string with control characters escaped. */
static void put_text(const char *s) {
    for (; *s; s++)
        if ((unsigned char)*s < 0x20) fprintf(stderr, "\\x%02x", *s);
        else fputc(*s, stderr);
}

/* 1 if got[0..n) equals the JSON array want; prints the first 10 misses. */
static int same_ids(const char *what, const char *text, const int32_t *got, int n, const cJSON *want) {
    static int printed;
    int wn = cJSON_GetArraySize(want), ok = n == wn;
    for (int i = 0; ok && i < n; i++) ok = got[i] == cJSON_GetArrayItem(want, i)->valueint;
    if (!ok && printed++ < 10) {
        fprintf(stderr, "%s \"", what);
        put_text(text);
        fprintf(stderr, "\": C gives %d ids:", n);
        for (int i = 0; i < n; i++) fprintf(stderr, " %d", got[i]);
        fprintf(stderr, "\n  python %d ids:", wn);
        for (int i = 0; i < wn; i++) fprintf(stderr, " %d", cJSON_GetArrayItem(want, i)->valueint);
        fprintf(stderr, "\n");
    }
    return ok;
}

static int same_text(const char *what, const char *got, const char *want) {
    static int printed;
    int ok = got && strcmp(got, want) == 0;
    if (!ok && printed++ < 10) {
        fprintf(stderr, "%s: C decodes \"", what);
        put_text(got ? got : "(null)");
        fprintf(stderr, "\", python \"");
        put_text(want);
        fprintf(stderr, "\"\n");
    }
    return ok;
}

/* Compares one model with python on every row; returns the rows that
 * differ, *n the strings compared and *nd the decode-only rows. */
static int compare_model(const fixture_t *f, const char *path, int *n, int *nd) {
    int is_t5 = strcmp(f->name, "t5") == 0;
    sf_spm_t *plain = open_model(path, SF_SPM_PLAIN, 0);
    sf_spm_t *fam = open_model(path, is_t5 ? SF_SPM_T5 : SF_SPM_LLAMA, 0);
    sf_spm_t *fam_eos = is_t5 ? NULL : open_model(path, SF_SPM_LLAMA, 1);
    if (!plain || !fam || (!is_t5 && !fam_eos)) return -1;
    static int32_t ids[ROOM];
    int bad = 0;
    const cJSON *row;
    cJSON_ArrayForEach(row, f->rows) {
        const cJSON *dec = cJSON_GetObjectItem(row, "decode");
        const char *want_text = cJSON_GetObjectItem(row, "decoded")->valuestring;
        if (dec) {   /* a random id sequence, decoded */
            int m = cJSON_GetArraySize(dec);
            for (int i = 0; i < m; i++) ids[i] = cJSON_GetArrayItem(dec, i)->valueint;
            char *s = NULL;
            int rc = sf_spm_decode(plain, ids, m, &s);
            bad += rc != (int)strlen(want_text) || !same_text(f->name, s, want_text);
            free(s);
            (*nd)++;
            continue;
        }
        const char *text = cJSON_GetObjectItem(row, "text")->valuestring;
        int ok = 1;
        int k = sf_spm_encode(plain, text, 0, ids, ROOM);
        ok = k >= 0 && same_ids(f->name, text, ids, k, cJSON_GetObjectItem(row, "ids"));
        /* The count-only call agrees with the ids written. */
        ok = ok && sf_spm_encode(plain, text, 0, NULL, 0) == k;
        char *s = NULL;
        ok = ok && sf_spm_decode(plain, ids, k, &s) == (int)strlen(want_text) && same_text(f->name, s, want_text);
        free(s);
        /* Plain text never yields a control token, whatever it spells. */
        for (int i = 0; ok && i < k; i++)
            ok = ids[i] != sf_spm_eos_id(plain) && ids[i] != sf_spm_bos_id(plain) && ids[i] != sf_spm_pad_id(plain);
        k = sf_spm_encode(fam, text, 0, ids, ROOM);
        ok = ok && k >= 0 && same_ids(is_t5 ? "t5 family" : "llama family", text, ids, k,
                                      cJSON_GetObjectItem(row, "family"));
        const cJSON *c;
        cJSON_ArrayForEach(c, cJSON_GetObjectItem(row, "cut")) {
            int m = atoi(c->string);
            k = sf_spm_encode(fam, text, m, ids, ROOM);
            ok = ok && k >= 0 && k <= m && same_ids(is_t5 ? "t5 cut" : "llama cut", text, ids, k, c);
        }
        if (!is_t5) {
            k = sf_spm_encode(fam_eos, text, 0, ids, ROOM);
            ok = ok && k >= 0 && same_ids("llama+eos", text, ids, k, cJSON_GetObjectItem(row, "family_eos"));
            cJSON_ArrayForEach(c, cJSON_GetObjectItem(row, "cut_eos")) {
                int m = atoi(c->string);
                k = sf_spm_encode(fam_eos, text, m, ids, ROOM);
                ok = ok && k >= 0 && k <= m && same_ids("llama+eos cut", text, ids, k, c);
            }
        }
        bad += !ok;
        (*n)++;
    }
    sf_spm_free(&plain);
    sf_spm_free(&fam);
    sf_spm_free(&fam_eos);
    return bad;
}

TEST(t5_matches_python) {
    int n = 0, nd = 0, bad = compare_model(&t5, t5_path, &n, &nd);
    fprintf(stderr, "t5: %d strings and %d id sequences compared, %d differ\n", n, nd, bad);
    CHECK(n >= 500);
    CHECK_EQ_INT(bad, 0);
}

TEST(llama_matches_python) {
    int n = 0, nd = 0, bad = compare_model(&llama, llama_path, &n, &nd);
    fprintf(stderr, "llama: %d strings and %d id sequences compared, %d differ\n", n, nd, bad);
    CHECK(n >= 500);
    CHECK_EQ_INT(bad, 0);
}

static void check_vocab(const fixture_t *f, const char *path, int unk, int bos, int eos, int pad) {
    sf_spm_t *t = open_model(path, SF_SPM_PLAIN, 0);
    CHECK(t);
    const cJSON *v = cJSON_GetObjectItem(f->head, "vocab");
    CHECK_EQ_INT(sf_spm_vocab_size(t), cJSON_GetArraySize(v));
    for (int i = 0; i < sf_spm_vocab_size(t); i++) {
        const char *want = cJSON_GetArrayItem(v, i)->valuestring;
        CHECK_EQ_STR(sf_spm_id_to_piece(t, i), want);
        CHECK_EQ_INT(sf_spm_piece_to_id(t, want), i);
    }
    CHECK(sf_spm_id_to_piece(t, -1) == NULL);
    CHECK(sf_spm_id_to_piece(t, sf_spm_vocab_size(t)) == NULL);
    CHECK_EQ_INT(sf_spm_piece_to_id(t, "no such piece"), -1);
    /* The model's special ids, as python reads them and as trained. */
    CHECK_EQ_INT(sf_spm_unk_id(t), cJSON_GetObjectItem(f->head, "unk")->valueint);
    CHECK_EQ_INT(sf_spm_bos_id(t), cJSON_GetObjectItem(f->head, "bos")->valueint);
    CHECK_EQ_INT(sf_spm_eos_id(t), cJSON_GetObjectItem(f->head, "eos")->valueint);
    CHECK_EQ_INT(sf_spm_pad_id(t), cJSON_GetObjectItem(f->head, "pad")->valueint);
    CHECK_EQ_INT(sf_spm_unk_id(t), unk);
    CHECK_EQ_INT(sf_spm_bos_id(t), bos);
    CHECK_EQ_INT(sf_spm_eos_id(t), eos);
    CHECK_EQ_INT(sf_spm_pad_id(t), pad);
    sf_spm_free(&t);
    CHECK(t == NULL);
}

TEST(vocabularies_and_special_ids) {
    check_vocab(&t5, t5_path, 2, -1, 1, 0);
    if (sf_test_cur_failed_) return;
    check_vocab(&llama, llama_path, 0, 1, 2, -1);
}

/* ids[0..n) == want[0..wn). */
static int eq(const int32_t *ids, int n, const int32_t *want, int wn) {
    if (n != wn) {
        fprintf(stderr, "  %d ids, want %d\n", n, wn);
        return 0;
    }
    for (int i = 0; i < n; i++)
        if (ids[i] != want[i]) {
            fprintf(stderr, "  id %d is %d, want %d\n", i, ids[i], want[i]);
            return 0;
        }
    return 1;
}

TEST(t5_rules_by_hand) {
    sf_spm_t *p = open_model(t5_path, SF_SPM_PLAIN, 0), *t = open_model(t5_path, SF_SPM_T5, 0);
    CHECK(p && t);
    CHECK_EQ_INT(sf_spm_family(t), SF_SPM_T5);
    int32_t x[64], y[64], w[64];
    int n = sf_spm_encode(p, "a photo of the cat on the beach", 0, x, 64);
    CHECK(n >= 4);
    /* pieces then </s> (id 1); no start token. */
    memcpy(w, x, n * sizeof *x);
    w[n] = 1;
    CHECK(eq(y, sf_spm_encode(t, "a photo of the cat on the beach", 0, y, 64), w, n + 1));
    /* A cut keeps room for </s>: max_length 3 is the first 2 pieces and </s>. */
    int32_t w3[] = {x[0], x[1], 1};
    CHECK(eq(y, sf_spm_encode(t, "a photo of the cat on the beach", 3, y, 64), w3, 3));
    /* max_length n + 1 fits exactly; n cuts one piece. */
    CHECK(eq(y, sf_spm_encode(t, "a photo of the cat on the beach", n + 1, y, 64), w, n + 1));
    w[n - 1] = 1;
    CHECK(eq(y, sf_spm_encode(t, "a photo of the cat on the beach", n, y, 64), w, n));
    /* max_length 1 is </s> alone; the empty text is </s>. */
    int32_t eos[] = {1};
    CHECK(eq(y, sf_spm_encode(t, "a photo of the cat on the beach", 1, y, 64), eos, 1));
    CHECK(eq(y, sf_spm_encode(t, "", 0, y, 64), eos, 1));
    CHECK(eq(y, sf_spm_encode(t, "", 1, y, 64), eos, 1));
    /* add_eos is LLaMA's option: T5 always ends with </s>, once. */
    sf_spm_t *t2 = open_model(t5_path, SF_SPM_T5, 1);
    CHECK(t2);
    CHECK(eq(y, sf_spm_encode(t2, "", 0, y, 64), eos, 1));
    sf_spm_free(&t2);
    /* NFKC: fullwidth letters are the ASCII ones; runs of spaces, tabs and
     * newlines are one space; the text of </s> is characters, not id 1. */
    n = sf_spm_encode(p, "Abc", 0, x, 64);
    CHECK(eq(y, sf_spm_encode(p, "\xef\xbc\xa1\xef\xbd\x82\xef\xbd\x83", 0, y, 64), x, n));
    n = sf_spm_encode(p, "a cat", 0, x, 64);
    CHECK(eq(y, sf_spm_encode(p, "  a \t\n  cat  ", 0, y, 64), x, n));
    n = sf_spm_encode(p, "</s>", 0, x, 64);
    CHECK(n > 1);
    for (int i = 0; i < n; i++) CHECK(x[i] != 1);
    /* A character the corpus never had is <unk> (2), decoded " ⁇ ". */
    n = sf_spm_encode(p, "\xe0\xb9\x84", 0, x, 64);   /* Thai sara ai maimalai */
    CHECK(n >= 1 && x[n - 1] == 2);
    int32_t u[] = {2};
    char *s = NULL;
    CHECK_EQ_INT(sf_spm_decode(p, u, 1, &s), 5);
    CHECK_EQ_STR(s, " \xe2\x81\x87 ");
    free(s);
    /* Control tokens decode to nothing. */
    int32_t ctl[] = {0, 1, 0};
    CHECK_EQ_INT(sf_spm_decode(p, ctl, 3, &s), 0);
    CHECK_EQ_STR(s, "");
    free(s);
    sf_spm_free(&p);
    sf_spm_free(&t);
}

TEST(llama_rules_by_hand) {
    sf_spm_t *p = open_model(llama_path, SF_SPM_PLAIN, 0), *t = open_model(llama_path, SF_SPM_LLAMA, 0);
    sf_spm_t *te = open_model(llama_path, SF_SPM_LLAMA, 1);
    CHECK(p && t && te);
    const char *text = "a photo of the cat on the beach";
    int32_t x[64], y[64], w[64];
    int n = sf_spm_encode(p, text, 0, x, 64);
    CHECK(n >= 4);
    /* <s> (id 1) then the pieces; no </s>. */
    w[0] = 1;
    memcpy(w + 1, x, n * sizeof *x);
    CHECK(eq(y, sf_spm_encode(t, text, 0, y, 64), w, n + 1));
    /* The cut is from the right and counts <s>: max_length 3 = <s> p0 p1. */
    CHECK(eq(y, sf_spm_encode(t, text, 3, y, 64), w, 3));
    CHECK(eq(y, sf_spm_encode(t, text, n + 1, y, 64), w, n + 1));
    CHECK(eq(y, sf_spm_encode(t, text, n, y, 64), w, n));
    CHECK(eq(y, sf_spm_encode(t, text, 1, y, 64), w, 1));
    int32_t bos[] = {1}, bos_eos[] = {1, 2};
    CHECK(eq(y, sf_spm_encode(t, "", 0, y, 64), bos, 1));
    /* With add_eos: <s> pieces </s> (id 2), and a cut keeps both. */
    w[n + 1] = 2;
    CHECK(eq(y, sf_spm_encode(te, text, 0, y, 64), w, n + 2));
    CHECK(eq(y, sf_spm_encode(te, text, n + 2, y, 64), w, n + 2));
    int32_t w3[] = {1, x[0], 2};
    CHECK(eq(y, sf_spm_encode(te, text, 3, y, 64), w3, 3));
    CHECK(eq(y, sf_spm_encode(te, text, 2, y, 64), bos_eos, 2));
    CHECK(eq(y, sf_spm_encode(te, "", 0, y, 64), bos_eos, 2));
    /* Too short for the special tokens, a negative length: refused. */
    CHECK_EQ_INT(sf_spm_encode(te, text, 1, y, 64), SF_EINVAL);
    CHECK(contains(sf_spm_errstr(te), "max_length 1"));
    CHECK_EQ_INT(sf_spm_encode(t, text, -1, y, 64), SF_EINVAL);
    /* The count-only call, and a buffer too small. */
    CHECK_EQ_INT(sf_spm_encode(t, text, 0, NULL, 0), n + 1);
    CHECK_EQ_INT(sf_spm_encode(t, text, 0, y, n), SF_ERANGE);
    CHECK(contains(sf_spm_errstr(t), "do not fit"));
    /* Byte fallback: the 256 byte pieces follow the 3 special ones, so an
     * unseen character is its UTF-8 bytes at 3 + byte.  The cat emoji
     * U+1F431 is F0 9F 90 B1, after the dummy prefix "▁" (a piece of its
     * own, or its bytes E2 96 81). */
    CHECK_EQ_STR(sf_spm_id_to_piece(p, 3), "<0x00>");
    CHECK_EQ_STR(sf_spm_id_to_piece(p, 3 + 0xf0), "<0xF0>");
    int k = 0, sp = sf_spm_piece_to_id(p, "\xe2\x96\x81");
    if (sp >= 0) w[k++] = sp;
    else w[k++] = 3 + 0xe2, w[k++] = 3 + 0x96, w[k++] = 3 + 0x81;
    w[k++] = 3 + 0xf0, w[k++] = 3 + 0x9f, w[k++] = 3 + 0x90, w[k++] = 3 + 0xb1;
    CHECK(eq(y, sf_spm_encode(p, "\xf0\x9f\x90\xb1", 0, y, 64), w, k));
    char *s = NULL;
    CHECK_EQ_INT(sf_spm_decode(p, w, k, &s), 4);
    CHECK_EQ_STR(s, "\xf0\x9f\x90\xb1");
    free(s);
    /* Half a character's bytes decode to U+FFFD. */
    int32_t half[] = {3 + 0xf0, 3 + 0x9f};
    CHECK(sf_spm_decode(p, half, 2, &s) >= 0);
    CHECK(contains(s, "\xef\xbf\xbd"));
    free(s);
    /* The byte piece <0x00> decodes to a NUL byte; the length says so. */
    int32_t nul[] = {3 + 'a', 3, 3 + 'b'};
    CHECK_EQ_INT(sf_spm_decode(p, nul, 3, &s), 3);
    CHECK(memcmp(s, "a\0b", 4) == 0);
    free(s);
    /* No normalisation: whitespace runs are kept, fullwidth letters are not
     * ASCII ones. */
    n = sf_spm_encode(p, "a cat", 0, x, 64);
    CHECK(sf_spm_encode(p, "a   cat", 0, y, 64) != n || memcmp(x, y, n * sizeof *x) != 0);
    n = sf_spm_encode(p, "Abc", 0, x, 64);
    CHECK(sf_spm_encode(p, "\xef\xbc\xa1\xef\xbd\x82\xef\xbd\x83", 0, y, 64) != n || memcmp(x, y, n * sizeof *x));
    sf_spm_free(&p);
    sf_spm_free(&t);
    sf_spm_free(&te);
}

/* Loads every proper prefix of a model file's bytes; returns how many are
 * not refused with SF_EFORMAT naming the model (printing the first 3). */
static int cuts_that_load(const char *path, const char *name) {
    size_t len = 0;
    char *m = sf_file_text(path, &len), err[512];
    if (!m) return -1;
    int bad = 0;
    for (size_t cut = 0; cut < len; cut++) {
        sf_spm_t *t = NULL;
        int rc = sf_spm_load_mem(m, cut, name, NULL, &t, err, sizeof err);
        if (rc == SF_EFORMAT && !t && strstr(err, name)) continue;
        if (bad++ < 3) fprintf(stderr, "  %s cut at %zu of %zu: %d %s\n", name, cut, len, rc, rc ? err : "loads");
        sf_spm_free(&t);
    }
    free(m);
    return bad;
}

TEST(bad_files_are_named_and_refused) {
    char err[512], p[512];
    const char *dir = folder("bad");
    sf_spm_t *t = (sf_spm_t *)&t;   /* a failed load must set it to NULL */
    /* A missing file. */
    snprintf(p, sizeof p, "%s/no-such-dir/spiece.model", dir);
    CHECK_EQ_INT(sf_spm_load(p, NULL, &t, err, sizeof err), SF_ENOTFOUND);
    CHECK(t == NULL);
    CHECK(contains(err, p) && contains(err, "No such file"));
    /* Every cut of both models, as bytes.  libsentencepiece alone loads
     * 398 cuts of the T5 model with 0.1.97 (those on a piece's boundary: a model of
     * fewer pieces with default normalisation) and 1 of the LLaMA one (all
     * but its normalizer spec); the framing check refuses them all. */
    CHECK_EQ_INT(cuts_that_load(t5_path, "t5.model"), 0);
    CHECK_EQ_INT(cuts_that_load(llama_path, "llama.model"), 0);
    /* The real model cut in half, as a file. */
    size_t len = 0;
    model_bytes = sf_file_text(t5_path, &len);
    CHECK(model_bytes && len > 1000);
    const char *m = model_bytes;
    snprintf(p, sizeof p, "%s/half.model", dir);
    CHECK_EQ_INT(sf_write_file_atomic(p, m, len / 2), 0);
    CHECK_EQ_INT(sf_spm_load(p, NULL, &t, err, sizeof err), SF_EFORMAT);
    CHECK(t == NULL);
    CHECK(contains(err, p) && contains(err, "not a SentencePiece model") && contains(err, "truncated"));
    /* The whole bytes load: the cuts failed for being cuts. */
    CHECK_EQ_INT(sf_spm_load_mem(m, len, "t5.model", NULL, &t, err, sizeof err), 0);
    sf_spm_free(&t);
    /* Garbage bytes, an empty file, a JSON file, a model with no
     * normalizer spec. */
    snprintf(p, sizeof p, "%s/garbage.model.XXXXXX", dir);
    unsigned char *g = sf_test_pattern_file(p, 4096);
    CHECK(g);
    free(g);
    CHECK_EQ_INT(sf_spm_load(p, NULL, &t, err, sizeof err), SF_EFORMAT);
    CHECK(t == NULL && contains(err, p) && contains(err, "not a SentencePiece model"));
    CHECK(write_text(dir, "empty.model", "") == 0);
    snprintf(p, sizeof p, "%s/empty.model", dir);
    CHECK_EQ_INT(sf_spm_load(p, NULL, &t, err, sizeof err), SF_EFORMAT);
    CHECK(contains(err, p) && contains(err, "empty"));
    CHECK(write_text(dir, "tokenizer.json", "{\"model\": {\"type\": \"Unigram\"}}\n") == 0);
    snprintf(p, sizeof p, "%s/tokenizer.json", dir);
    CHECK_EQ_INT(sf_spm_load(p, NULL, &t, err, sizeof err), SF_EFORMAT);
    CHECK(contains(err, p) && contains(err, "not a SentencePiece model"));
    CHECK_EQ_INT(sf_spm_load_mem("\x0a\x03\x0a\x01\x61", 5, NULL, NULL, &t, err, sizeof err), SF_EFORMAT);
    CHECK(contains(err, "'model'") && contains(err, "normalizer"));
    /* A family the model cannot serve: T5's model has no <s>. */
    sf_spm_opts_t o = {SF_SPM_LLAMA, 0};
    CHECK_EQ_INT(sf_spm_load(t5_path, &o, &t, err, sizeof err), SF_EINVAL);
    CHECK(t == NULL && contains(err, "LLaMA rules need a start token") && contains(err, t5_path));
    o.family = (sf_spm_family_t)7;
    CHECK_EQ_INT(sf_spm_load(t5_path, &o, &t, err, sizeof err), SF_EINVAL);
    CHECK(contains(err, "unknown tokenizer family 7"));
}

TEST(bad_text_and_ids_are_refused) {
    sf_spm_t *t = open_model(llama_path, SF_SPM_LLAMA, 0);
    CHECK(t);
    int32_t y[64];
    static const struct {
        const char *text;
        const char *where;
    } bad[] = {
        {"abc\xff", "at byte 3 of 4: 0xff"},
        {"\xc0\xaf", "at byte 0 of 2: 0xc0"},             /* overlong '/' */
        {"ok \xed\xa0\x80", "at byte 3 of 6: 0xed"},      /* a UTF-16 surrogate */
        {"\xf4\x90\x80\x80", "at byte 0 of 4: 0xf4"},     /* past U+10FFFF */
        {"euro \xe2\x82", "at byte 5 of 7: 0xe2"},        /* cut short */
        {"\x80", "at byte 0 of 1: 0x80"},                 /* a lone continuation byte */
        {"a\xe2\x28\xa1", "at byte 1 of 4: 0xe2"},        /* a bad continuation byte */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECK_EQ_INT(sf_spm_encode(t, bad[i].text, 0, y, 64), SF_EINVAL);
        CHECK(contains(sf_spm_errstr(t), "invalid UTF-8") && contains(sf_spm_errstr(t), bad[i].where));
    }
    /* The edges of valid UTF-8 pass. */
    CHECK(sf_spm_encode(t, "\xf4\x8f\xbf\xbf \xef\xbf\xbf \xc2\x80 \xed\x9f\xbf", 0, y, 64) > 1);
    /* Ids outside the vocabulary. */
    char *s = (char *)"unchanged";
    int32_t ids[] = {5, sf_spm_vocab_size(t)};
    CHECK_EQ_INT(sf_spm_decode(t, ids, 2, &s), SF_ERANGE);
    CHECK(s == NULL);
    char want[96];
    snprintf(want, sizeof want, "id %d at position 1 is outside the vocabulary", sf_spm_vocab_size(t));
    CHECK(contains(sf_spm_errstr(t), want));
    ids[1] = -3;
    CHECK_EQ_INT(sf_spm_decode(t, ids, 2, &s), SF_ERANGE);
    CHECK(contains(sf_spm_errstr(t), "id -3 at position 1"));
    /* Nothing is an empty text. */
    CHECK_EQ_INT(sf_spm_decode(t, ids, 0, &s), 0);
    CHECK_EQ_STR(s, "");
    free(s);
    sf_spm_free(&t);
}

int main(void) {
    if (system(PY " -c 'import sentencepiece' >/dev/null 2>&1") != 0) {
        printf("skipped: " PY " cannot import sentencepiece (Debian's python3-sentencepiece; make deps installs it)\n");
        return 77;
    }
    /* The implementation loads (ml/spm_shim.cpp): an empty model is a
     * format error, not a missing library.  Sanitizer builds have none. */
    char err[768];
    sf_spm_t *none = NULL;
    int rc = sf_spm_load_mem("", 0, "probe", NULL, &none, err, sizeof err);
    if (rc == SF_EUNSUPPORTED && strstr(err, "sanitizer")) {
        printf("skipped: %s\n", err);
        return 77;
    }
    if (rc != SF_EFORMAT) {
        fprintf(stderr, "the SentencePiece library does not load: %d %s\n", rc, err);
        return 1;
    }
    snprintf(root, sizeof root, "/tmp/sf_spm_XXXXXX");
    if (!mkdtemp(root)) {
        perror("mkdtemp");
        return 1;
    }
    atexit(cleanup);
    char cmd[1024];
    snprintf(cmd, sizeof cmd, PY " '%s/tools/numerics/spm_ref.py' '%s' >'%s/ref.log' 2>&1", src_root(), root,
             root);
    if (system(cmd) != 0) {
        snprintf(cmd, sizeof cmd, "%s/ref.log", root);
        char *log = sf_file_text(cmd, NULL);
        fprintf(stderr, "tools/numerics/spm_ref.py failed:\n%s\n", log ? log : "(no log)");
        free(log);
        return 1;
    }
    if (load_fixture(&t5) || load_fixture(&llama)) return 1;
    snprintf(t5_path, sizeof t5_path, "%s/t5.model", root);
    snprintf(llama_path, sizeof llama_path, "%s/llama.model", root);
    SF_RUN(vocabularies_and_special_ids);
    SF_RUN(t5_matches_python);
    SF_RUN(llama_matches_python);
    SF_RUN(t5_rules_by_hand);
    SF_RUN(llama_rules_by_hand);
    SF_RUN(bad_files_are_named_and_refused);
    SF_RUN(bad_text_and_ids_are_refused);
    SF_DONE();
}
