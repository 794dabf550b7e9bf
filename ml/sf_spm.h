/* sf_spm.h: SentencePiece tokenizers — plain C over Debian's libsentencepiece.
 *
 * Reads the model files of the two families that shiftforge runs:
 *   - T5 (`spiece.model`, a unigram model; DeepFloyd IF's text encoder):
 *     the text's pieces then `</s>`, no start token;
 *   - LLaMA and its kin (`tokenizer.model`, BPE with byte fallback; the
 *     instruction model): `<s>` then the text's pieces, and `</s>` only when
 *     asked (HF's add_eos_token).
 * The pieces themselves are libsentencepiece's (the reference
 * implementation, so the ids are those of python's sentencepiece and of HF's
 * slow tokenizers); this module adds the special tokens and the cut to a
 * maximum length as HF's tokenizers do (transformers' prepare_for_model, and
 * the tokenizers library's post_process): the text's ids are cut first, to
 * max_length minus the special tokens the family adds, then the special
 * tokens are added, so a cut sequence still starts with `<s>` (LLaMA) and
 * still ends with `</s>` (T5, and LLaMA with add_eos).
 *
 * The special ids are the model's own (its trainer_spec's unk/bos/eos/pad
 * ids): T5's spiece.model has pad 0, eos 1, unk 2 and no bos; LLaMA's
 * tokenizer.model unk 0, bos 1, eos 2 and no pad.  Text is plain text: a
 * `</s>` or `<extra_id_0>` written in it is encoded as characters, never as
 * the special token (HF's T5 sentinels <extra_id_N> are ids past the
 * model's pieces, which this module does not add).
 *
 * Errors: every function returns 0 (or a count) on success and a negative
 * SF_E… code (common/runtime/error.h) otherwise, with a message that names
 * the file and what is wrong in the caller's err buffer (loading) or in the
 * object's errstr (sf_spm_errstr).  No C++ exception crosses this header.
 *
 * Threading: a tokenizer is used by one thread at a time (its errstr is
 * per object); different tokenizers may be used from different threads.
 *
 * libsentencepiece carries its own protobuf, which cannot share a process
 * with libtorch's, so the implementation is a shared object of its own,
 * libsfspm.so, that the first load opens with RTLD_DEEPBIND from the
 * build's lib/ folder (or $SF_SPM_LIB): see ml/spm_shim.cpp.  Sanitizer
 * builds cannot open it and have no SentencePiece (SF_EUNSUPPORTED).
 */
#ifndef SF_SPM_H
#define SF_SPM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    SF_SPM_PLAIN = 0,   /* the model's pieces only: no special tokens, a plain cut */
    SF_SPM_T5 = 1,      /* pieces </s>; the cut keeps the </s> */
    SF_SPM_LLAMA = 2,   /* <s> pieces [</s> with add_eos]; the cut keeps them */
} sf_spm_family_t;

typedef struct {
    sf_spm_family_t family;
    int add_eos;          /* SF_SPM_LLAMA only: end with </s> too; ignored otherwise */
} sf_spm_opts_t;

typedef struct sf_spm_s sf_spm_t;

/* Largest model file read (the biggest SentencePiece models, 256k pieces,
 * are a few MB). */
#define SF_SPM_MAX_FILE (64u << 20)

/* Loads a SentencePiece model file (spiece.model, tokenizer.model) with
 * the rules of opts (borrowed; NULL = SF_SPM_PLAIN).  On success *out is a
 * new tokenizer that the caller frees with sf_spm_free.  Errors, in err:
 *   SF_ENOTFOUND "cannot open 'P': No such file or directory";
 *   SF_EIO       other read failures ("cannot read 'P': ..."), SF_ERANGE
 *                over SF_SPM_MAX_FILE;
 *   SF_EFORMAT   "'P' is not a SentencePiece model: ..." for an empty,
 *                truncated or garbage file (what is wrong, and where);
 *   SF_EINVAL    a family whose special token the model lacks ("T5 rules
 *                need an end token, and 'P' has none (eos_id -1)"), or an
 *                unknown family;
 *   SF_EUNSUPPORTED  libsfspm.so cannot be loaded (the message says why). */
int sf_spm_load(const char *path, const sf_spm_opts_t *opts, sf_spm_t **out, char *err, size_t errlen);

/* The same from a model file's bytes in memory (borrowed; copied).  `name`
 * (may be NULL: "model") stands for the file in messages. */
int sf_spm_load_mem(const void *buf, size_t len, const char *name, const sf_spm_opts_t *opts, sf_spm_t **out,
                    char *err, size_t errlen);

/* Frees *t and sets it to NULL; a NULL pointer or *t is fine. */
void sf_spm_free(sf_spm_t **t);

/* Encodes UTF-8 text (NUL-terminated; borrowed) into ids[0..cap) under the
 * tokenizer's family rules and returns how many ids it wrote.  max_length
 * > 0 cuts the result to at most max_length ids, special tokens included
 * (T5: the first max_length-1 text ids then </s>; LLaMA: <s> then the first
 * max_length-1, or max_length-2 with add_eos, text ids [then </s>]);
 * 0 means no cut.  ids may be NULL with cap 0: then nothing is written and
 * the return value is the number of ids the text needs.  Errors:
 *   SF_EINVAL   text that is not valid UTF-8 ("invalid UTF-8 at byte 7 of 9:
 *               0xff"), max_length < 0, or smaller than the special tokens;
 *   SF_ERANGE   the ids do not fit in cap (nothing is written). */
int sf_spm_encode(sf_spm_t *t, const char *text, int max_length, int32_t *ids, int cap);

/* Decodes ids (borrowed) back to text, as SentencePiece does: the pieces
 * joined, "▁" read as a space with the leading one dropped, byte pieces
 * <0xNN> put back together (an invalid sequence becomes U+FFFD), control
 * tokens (<s>, </s>, <pad>) dropped and <unk> written " ⁇ ".  *text is
 * malloc'd and NUL-terminated; the caller frees it (ownership moves).
 * Returns its length in bytes, which tells where it ends when it holds a
 * NUL byte (the byte piece <0x00>).  SF_ERANGE names an id outside the
 * vocabulary and its position. */
int sf_spm_decode(sf_spm_t *t, const int32_t *ids, int n, char **text);

/* The number of pieces (ids run 0..vocab_size-1). */
int sf_spm_vocab_size(const sf_spm_t *t);

/* The piece of an id (borrowed, valid as long as t), NULL for a bad id. */
const char *sf_spm_id_to_piece(const sf_spm_t *t, int id);

/* The id of a piece, or -1 when the model has no such piece (unlike
 * SentencePiece's PieceToId, which answers the unknown token's id). */
int sf_spm_piece_to_id(const sf_spm_t *t, const char *piece);

/* The model's special ids, -1 where it has none. */
int sf_spm_unk_id(const sf_spm_t *t);
int sf_spm_bos_id(const sf_spm_t *t);
int sf_spm_eos_id(const sf_spm_t *t);
int sf_spm_pad_id(const sf_spm_t *t);

/* The family the tokenizer was loaded with. */
sf_spm_family_t sf_spm_family(const sf_spm_t *t);

/* The tokenizer's last failure ("" if none). */
const char *sf_spm_errstr(const sf_spm_t *t);

/* ---- training ---- */

/* A LLaMA-style tokenizer.model as spm_train makes one: BPE with byte
 * fallback (every byte has a piece <0xNN>, so no text is ever <unk>), unk 0,
 * <s> 1, </s> 2 and no pad, digits split one by one, no normalisation
 * (identity) beyond the dummy prefix "▁", whitespace kept as it is. */
typedef struct {
    int vocab_size;            /* pieces in all: the 3 specials, the 256 bytes, the merges; >= 260.
                                  At most: a text with fewer possible merges gives fewer pieces
                                  (spm_train's hard_vocab_limit=false); sf_spm_vocab_size tells. */
    int max_sentence_length;   /* longer sentences (bytes) are skipped; 0: spm_train's 4192 */
} sf_spm_train_opts_t;

/* Trains a tokenizer from `n` sentences in memory (borrowed; NUL-terminated
 * UTF-8; may hold newlines) or, when sentences is NULL, from the text file
 * `input` (one sentence a line).  The result is deterministic for the same
 * sentences in the same order: libsentencepiece runs on one thread and
 * neither samples nor shuffles them.  On success *model holds the model
 * file's bytes (malloc'd; ownership moves to the caller, who may write them
 * out as tokenizer.model or give them to sf_spm_load_mem) and *len their
 * length.  Errors, in err: SF_EINVAL for bad arguments, a vocabulary too
 * small for the bytes and specials, or a text libsentencepiece refuses;
 * SF_ENOTFOUND / SF_EIO for the input
 * file; SF_EUNSUPPORTED when libsfspm.so cannot be loaded. */
int sf_spm_train_llama(const char *const *sentences, size_t n, const char *input, const sf_spm_train_opts_t *o,
                       uint8_t **model, size_t *len, char *err, size_t errlen);

#ifdef __cplusplus
}
#endif

#endif
