// spm.cpp: SentencePiece tokenizers (ml/sf_spm.h) over Debian's
// libsentencepiece, with T5's and LLaMA's special tokens and cuts.
//
// This file is built as a shared object of its own, libsfspm.so, which
// ml/spm_shim.cpp loads (it says why); the functions here are static and
// reach the public API through the table sf_spm__impl returns.
//
// libsentencepiece does the pieces; this file checks what comes in (the
// model file's framing, UTF-8, ids) so that bad input gets a message that
// says what is wrong, and adds the family rules.  libsentencepiece reports
// failures as util::Status, not exceptions, but it allocates, so every entry
// point still catches whatever C++ may throw.
#include "ml/sf_spm.h"
#include "ml/spm_internal.h"

extern "C" {
#include "common/runtime/error.h"
#include "common/runtime/fileio.h"
}

#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>

#include <cerrno>
#include <climits>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <string>
#include <unordered_map>
#include <vector>

struct sf_spm_s {
    sentencepiece::SentencePieceProcessor sp;
    sf_spm_family_t family = SF_SPM_PLAIN;
    bool add_eos = false;
    int n = 0;
    int unk = -1, bos = -1, eos = -1, pad = -1;
    int err = 0;
    char errstr[512] = "";
};

// Records a failure on the tokenizer and returns code.
static int fail(sf_spm_t *t, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(sf_spm_t *t, int code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(t->errstr, sizeof t->errstr, fmt, ap);
    va_end(ap);
    t->err = code;
    return code;
}

// Runs f, an entry point's work on tokenizer t, with whatever C++ it
// throws turned into t's error.
template <class F> static int guarded(sf_spm_t *t, F f) {
    try {
        return f();
    } catch (const std::bad_alloc &) {
        return fail(t, SF_ENOMEM, "out of memory");
    } catch (const std::exception &ex) {
        return fail(t, SF_EINVAL, "libsentencepiece: %s", ex.what());
    } catch (...) {
        return fail(t, SF_EINVAL, "unknown C++ exception");
    }
}

// ---- the model file's framing ----

// Reads a protobuf varint at p[*at..n); false when it runs past the end or
// over 10 bytes.
static bool read_varint(const uint8_t *p, size_t n, size_t *at, uint64_t *v) {
    *v = 0;
    for (int shift = 0; shift < 70 && *at < n; shift += 7) {
        uint8_t b = p[(*at)++];
        *v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) return true;
    }
    return false;
}

// A model file is a serialised sentencepiece.ModelProto: its pieces (field
// 1, one per piece), then trainer_spec (2), normalizer_spec (3) and
// optionally self_test_data (4) and denormalizer_spec (5).  libsentencepiece
// would accept a file cut on a field boundary (protobuf cannot tell) and
// answer with a model of fewer pieces and default normalisation, and its
// message for other damage is protobuf's.  So the top-level fields are
// walked here first: every field must be whole, and the normalizer spec,
// which spm_train always writes after the pieces, must be there.  On
// failure *why says what is wrong and where.
static bool check_framing(const uint8_t *p, size_t n, std::string *why) {
    char msg[256];
    size_t at = 0;
    long pieces = 0;
    bool normalizer = false;
    while (at < n) {
        size_t start = at;
        uint64_t tag = 0, len = 0;
        if (!read_varint(p, n, &at, &tag) || (tag >> 3) == 0 || (tag >> 3) > 536870911u) {
            snprintf(msg, sizeof msg, "no protobuf field at byte %zu of %zu (0x%02x)", start, n, p[start]);
            *why = msg;
            return false;
        }
        uint64_t field = tag >> 3;
        switch (tag & 7) {
        case 0:
            if (!read_varint(p, n, &at, &len)) goto cut;
            break;
        case 1:
            if (n - at < 8) goto cut;
            at += 8;
            break;
        case 2:
            if (!read_varint(p, n, &at, &len) || len > n - at) goto cut;
            at += len;
            break;
        case 5:
            if (n - at < 4) goto cut;
            at += 4;
            break;
        default:
            snprintf(msg, sizeof msg, "field %llu at byte %zu of %zu has wire type %d, which a model never uses",
                     (unsigned long long)field, start, n, (int)(tag & 7));
            *why = msg;
            return false;
        }
        if (field == 1) pieces++;
        if (field == 3) normalizer = true;
        continue;
    cut:
        snprintf(msg, sizeof msg, "truncated: field %llu at byte %zu runs past the end of the file (%zu bytes)",
                 (unsigned long long)field, start, n);
        *why = msg;
        return false;
    }
    if (pieces == 0) {
        *why = "it holds no pieces";
        return false;
    }
    if (!normalizer) {
        snprintf(msg, sizeof msg, "truncated: its %ld pieces are not followed by the normalizer spec", pieces);
        *why = msg;
        return false;
    }
    return true;
}

// ---- loading ----

static const char *family_name(sf_spm_family_t f) {
    switch (f) {
    case SF_SPM_PLAIN: return "plain";
    case SF_SPM_T5: return "T5";
    case SF_SPM_LLAMA: return "LLaMA";
    }
    return "unknown";
}

static int load_bytes(const void *buf, size_t len, const char *name, const sf_spm_opts_t *opts, sf_spm_t **out,
                      char *err, size_t errlen) {
    sf_spm_opts_t o = opts ? *opts : sf_spm_opts_t{SF_SPM_PLAIN, 0};
    if (o.family != SF_SPM_PLAIN && o.family != SF_SPM_T5 && o.family != SF_SPM_LLAMA)
        return sf_errf(SF_EINVAL, err, errlen, "%s: unknown tokenizer family %d", name, (int)o.family);
    if (len == 0) return sf_errf(SF_EFORMAT, err, errlen, "'%s' is not a SentencePiece model: it is empty", name);
    std::string why;
    if (!check_framing((const uint8_t *)buf, len, &why))
        return sf_errf(SF_EFORMAT, err, errlen, "'%s' is not a SentencePiece model: %s", name, why.c_str());

    std::unique_ptr<sf_spm_t> t(new sf_spm_t);
    auto st = t->sp.LoadFromSerializedProto(std::string((const char *)buf, len));
    if (!st.ok())
        return sf_errf(SF_EFORMAT, err, errlen, "'%s' is not a SentencePiece model: libsentencepiece: %s", name,
                       st.ToString().c_str());
    t->family = o.family;
    t->add_eos = o.family == SF_SPM_LLAMA && o.add_eos;
    t->n = t->sp.GetPieceSize();
    t->unk = t->sp.unk_id();
    t->bos = t->sp.bos_id();
    t->eos = t->sp.eos_id();
    t->pad = t->sp.pad_id();
    // Each family's special tokens must exist in the model.
    const char *need = nullptr, *which = "eos";
    int id = t->eos;
    if (t->family == SF_SPM_T5 && t->eos < 0) {
        need = "an end token";
    } else if (t->family == SF_SPM_LLAMA && t->bos < 0) {
        need = "a start token";
        which = "bos";
        id = t->bos;
    } else if (t->add_eos && t->eos < 0) {
        need = "an end token (add_eos)";
    }
    if (need)
        return sf_errf(SF_EINVAL, err, errlen, "%s rules need %s, and '%s' has none (%s_id %d)",
                       family_name(o.family), need, name, which, id);
    *out = t.release();
    return 0;
}

static int spm_load_mem(const void *buf, size_t len, const char *name, const sf_spm_opts_t *opts,
                        sf_spm_t **out, char *err, size_t errlen) {
    if (!out || (!buf && len)) return sf_errf(SF_EINVAL, err, errlen, "sf_spm_load_mem: bad arguments");
    *out = nullptr;
    try {
        return load_bytes(buf, len, name ? name : "model", opts, out, err, errlen);
    } catch (const std::bad_alloc &) {
        return sf_errf(SF_ENOMEM, err, errlen, "%s: out of memory", name ? name : "model");
    } catch (const std::exception &ex) {
        return sf_errf(SF_EFORMAT, err, errlen, "'%s': libsentencepiece: %s", name ? name : "model", ex.what());
    } catch (...) {
        return sf_errf(SF_EFORMAT, err, errlen, "'%s': unknown C++ exception", name ? name : "model");
    }
}

static int spm_load(const char *path, const sf_spm_opts_t *opts, sf_spm_t **out, char *err, size_t errlen) {
    if (!path || !out) return sf_errf(SF_EINVAL, err, errlen, "sf_spm_load: bad arguments");
    *out = nullptr;
    char *buf = nullptr;
    size_t len = 0;
    int rc = sf_read_file(path, SF_SPM_MAX_FILE, &buf, &len, err, errlen);
    if (rc) return rc == SF_EIO && errno == ENOENT ? SF_ENOTFOUND : rc;
    rc = spm_load_mem(buf, len, path, opts, out, err, errlen);
    free(buf);
    return rc;
}

static void spm_free(sf_spm_t **t) {
    if (!t || !*t) return;
    delete *t;
    *t = nullptr;
}

// ---- encoding and decoding ----

// The offset of the first byte that is not part of well-formed UTF-8 (RFC
// 3629: no overlong forms, no surrogates, nothing past U+10FFFF), or -1.
static long utf8_bad(const unsigned char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        size_t k = 0;
        unsigned lo = 0x80, hi = 0xbf;   // the range of the second byte
        if (c < 0x80) { i++; continue; }
        else if (c >= 0xc2 && c <= 0xdf) k = 1;
        else if (c >= 0xe0 && c <= 0xef) { k = 2; if (c == 0xe0) lo = 0xa0; if (c == 0xed) hi = 0x9f; }
        else if (c >= 0xf0 && c <= 0xf4) { k = 3; if (c == 0xf0) lo = 0x90; if (c == 0xf4) hi = 0x8f; }
        else return (long)i;
        if (n - i <= k) return (long)i;
        if (s[i + 1] < lo || s[i + 1] > hi) return (long)i;
        for (size_t j = 2; j <= k; j++)
            if ((s[i + j] & 0xc0) != 0x80) return (long)i;
        i += k + 1;
    }
    return -1;
}

static int encode(sf_spm_t *t, const char *text, int max_length, int32_t *ids, int cap) {
    size_t len = strlen(text);
    long bad = utf8_bad((const unsigned char *)text, len);
    if (bad >= 0)
        return fail(t, SF_EINVAL, "invalid UTF-8 at byte %ld of %zu: 0x%02x", bad, len,
                    (unsigned char)text[bad]);
    int pre = t->family == SF_SPM_LLAMA ? 1 : 0;
    int post = t->family == SF_SPM_T5 || t->add_eos ? 1 : 0;
    if (max_length > 0 && max_length < pre + post)
        return fail(t, SF_EINVAL, "max_length %d leaves no room for the %d special tokens of %s", max_length,
                    pre + post, family_name(t->family));
    std::vector<int> v;
    auto st = t->sp.Encode(text, &v);
    if (!st.ok()) return fail(t, SF_EINVAL, "libsentencepiece cannot encode the text: %s", st.ToString().c_str());
    if (v.size() > (size_t)INT_MAX / 2) return fail(t, SF_ERANGE, "text of %zu bytes gives too many ids", len);
    // The cut of HF's tokenizers: the text's ids first, to leave room for
    // the special tokens, which are then added.
    int keep = (int)v.size();
    if (max_length > 0 && keep > max_length - pre - post) keep = max_length - pre - post;
    int total = pre + keep + post;
    if (!ids && cap == 0) return total;
    if (total > cap) return fail(t, SF_ERANGE, "%d ids do not fit in %d", total, cap);
    int k = 0;
    if (pre) ids[k++] = t->bos;
    for (int i = 0; i < keep; i++) ids[k++] = v[i];
    if (post) ids[k++] = t->eos;
    return total;
}

static int spm_encode(sf_spm_t *t, const char *text, int max_length, int32_t *ids, int cap) {
    if (!t) return SF_EINVAL;
    if (!text || max_length < 0 || cap < 0 || (cap > 0 && !ids))
        return fail(t, SF_EINVAL, "sf_spm_encode: bad arguments (max_length %d, cap %d)", max_length, cap);
    return guarded(t, [&] { return encode(t, text, max_length, ids, cap); });
}

static int spm_decode(sf_spm_t *t, const int32_t *ids, int n, char **text) {
    if (!t) return SF_EINVAL;
    if (!text || n < 0 || (n > 0 && !ids)) return fail(t, SF_EINVAL, "sf_spm_decode: bad arguments (n %d)", n);
    *text = nullptr;
    return guarded(t, [&] {
        std::vector<int> v(ids, ids + n);
        for (int i = 0; i < n; i++)
            if (v[i] < 0 || v[i] >= t->n)
                return fail(t, SF_ERANGE, "id %d at position %d is outside the vocabulary (%d pieces)", v[i], i,
                            t->n);
        std::string s;
        auto st = t->sp.Decode(v, &s);
        if (!st.ok()) return fail(t, SF_EINVAL, "libsentencepiece cannot decode: %s", st.ToString().c_str());
        if (s.size() > (size_t)INT_MAX) return fail(t, SF_ERANGE, "the decoded text is over 2 GB");
        char *out = (char *)malloc(s.size() + 1);
        if (!out) return fail(t, SF_ENOMEM, "out of memory");
        memcpy(out, s.data(), s.size());
        out[s.size()] = 0;
        *text = out;
        return (int)s.size();
    });
}

// ---- the vocabulary ----

static int spm_vocab_size(const sf_spm_t *t) { return t->n; }

static const char *spm_id_to_piece(const sf_spm_t *t, int id) {
    if (id < 0 || id >= t->n) return nullptr;
    // IdToPiece returns a reference into the model, which lives as long as t.
    return t->sp.IdToPiece(id).c_str();
}

static int spm_piece_to_id(const sf_spm_t *t, const char *piece) {
    if (!piece) return -1;
    try {
        int id = t->sp.PieceToId(piece);
        // PieceToId answers unk_id for a piece it does not know.
        if (id < 0 || id >= t->n || t->sp.IdToPiece(id) != piece) return -1;
        return id;
    } catch (...) {
        return -1;
    }
}

static int spm_unk_id(const sf_spm_t *t) { return t->unk; }
static int spm_bos_id(const sf_spm_t *t) { return t->bos; }
static int spm_eos_id(const sf_spm_t *t) { return t->eos; }
static int spm_pad_id(const sf_spm_t *t) { return t->pad; }
static sf_spm_family_t spm_family(const sf_spm_t *t) { return t->family; }
static const char *spm_errstr(const sf_spm_t *t) { return t ? t->errstr : ""; }

// ---- training ----

// Hands libsentencepiece's trainer the caller's sentences one by one, so
// that a corpus in memory needs no temporary file.
class ArrayIterator : public sentencepiece::SentenceIterator {
  public:
    ArrayIterator(const char *const *s, size_t n) : s_(s), n_(n) {}
    bool done() const override { return i_ >= n_; }
    void Next() override { i_++; }
    const std::string &value() const override {
        cur_ = s_[i_];
        return cur_;
    }
    sentencepiece::util::Status status() const override { return sentencepiece::util::Status(); }

  private:
    const char *const *s_;
    size_t n_, i_ = 0;
    mutable std::string cur_;
};

static int train_llama(const char *const *sentences, size_t n, const char *input, const sf_spm_train_opts_t *o,
                       uint8_t **model, size_t *len, char *err, size_t errlen) {
    if (!o || !model || !len || (!sentences && !input) || (sentences && n == 0))
        return sf_errf(SF_EINVAL, err, errlen, "sf_spm_train_llama: bad arguments (no sentences or no output)");
    *model = nullptr;
    *len = 0;
    // 3 specials and 256 bytes, and at least one piece of text.
    if (o->vocab_size < 260 || o->vocab_size > (1 << 20) || o->max_sentence_length < 0)
        return sf_errf(SF_EINVAL, err, errlen, "vocab_size %d out of range (260 to %d: the 3 special and 256 byte "
                       "pieces come first)", o->vocab_size, 1 << 20);
    for (size_t i = 0; sentences && i < n; i++) {
        if (!sentences[i]) return sf_errf(SF_EINVAL, err, errlen, "sentence %zu is NULL", i);
        size_t l = strlen(sentences[i]);
        long bad = utf8_bad((const unsigned char *)sentences[i], l);
        if (bad >= 0)
            return sf_errf(SF_EINVAL, err, errlen, "sentence %zu: invalid UTF-8 at byte %ld of %zu", i, bad, l);
    }
    if (!sentences) {
        FILE *f = fopen(input, "rb");
        if (!f) return sf_errf(errno == ENOENT ? SF_ENOTFOUND : SF_EIO, err, errlen, "cannot open '%s': %s", input,
                               strerror(errno));
        fclose(f);
    }
    // The settings of LLaMA's own tokenizer.model (its trainer_spec), less
    // what only matters for a web-scale corpus; num_threads 1 and no
    // sampling or shuffling make the result a function of the sentences.
    std::unordered_map<std::string, std::string> kw = {
        {"model_type", "bpe"},
        {"vocab_size", std::to_string(o->vocab_size)},
        {"byte_fallback", "true"},
        {"split_digits", "true"},
        {"character_coverage", "1.0"},
        {"normalization_rule_name", "identity"},
        {"add_dummy_prefix", "true"},
        {"remove_extra_whitespaces", "false"},
        {"allow_whitespace_only_pieces", "true"},
        {"split_by_unicode_script", "true"},
        {"unk_id", "0"},
        {"bos_id", "1"},
        {"eos_id", "2"},
        {"pad_id", "-1"},
        {"num_threads", "1"},
        {"input_sentence_size", "0"},
        {"shuffle_input_sentence", "false"},
        {"hard_vocab_limit", "false"},
        {"minloglevel", "2"},
    };
    if (o->max_sentence_length > 0) kw["max_sentence_length"] = std::to_string(o->max_sentence_length);
    if (!sentences) kw["input"] = input;
    std::string proto;
    try {
        std::unique_ptr<ArrayIterator> it(sentences ? new ArrayIterator(sentences, n) : nullptr);
        auto st = sentencepiece::SentencePieceTrainer::Train(kw, it.get(), &proto);
        if (!st.ok())
            return sf_errf(SF_EINVAL, err, errlen, "libsentencepiece cannot train: %s", st.ToString().c_str());
    } catch (const std::bad_alloc &) {
        return sf_errf(SF_ENOMEM, err, errlen, "out of memory");
    } catch (const std::exception &ex) {
        return sf_errf(SF_EINVAL, err, errlen, "libsentencepiece: %s", ex.what());
    }
    if (proto.empty()) return sf_errf(SF_EINVAL, err, errlen, "libsentencepiece wrote an empty model");
    uint8_t *buf = (uint8_t *)malloc(proto.size());
    if (!buf) return sf_errf(SF_ENOMEM, err, errlen, "out of memory");
    memcpy(buf, proto.data(), proto.size());
    *model = buf;
    *len = proto.size();
    return 0;
}

// The one symbol this shared object exports for ml/spm_shim.cpp.
extern "C" const sf_spm__impl_t *sf_spm__impl(void) {
    static const sf_spm__impl_t impl = {
        SF_SPM__ABI,     spm_load,       spm_load_mem,    spm_free,   spm_encode, spm_decode,
        spm_vocab_size,  spm_id_to_piece, spm_piece_to_id, spm_unk_id, spm_bos_id, spm_eos_id,
        spm_pad_id,      spm_family,     spm_errstr,      train_llama,
    };
    return &impl;
}
