/* safetensors.h: reading and writing the safetensors format in C.
 *
 * A file is an 8-byte little-endian header length N, N bytes of JSON
 * ({"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]},
 * ..., "__metadata__": {"k": "v"}}), then the raw little-endian tensor data,
 * offsets relative to its start.  HF checkpoints (model.safetensors) and the
 * checkpoints and policy versions shiftforge writes itself use it.
 *
 * Reading checks everything against the buffer's real size: a truncated
 * file, a header that lies about offsets, shapes whose byte count disagrees
 * with the offsets, an unknown dtype — each is SF_EFORMAT with a message, never
 * a read out of bounds.
 */
#ifndef SF_SAFETENSORS_H
#define SF_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

typedef enum {
    SF_ST_F32, SF_ST_F16, SF_ST_BF16, SF_ST_F64,
    SF_ST_I64, SF_ST_I32, SF_ST_I16, SF_ST_I8, SF_ST_U8, SF_ST_BOOL,
} sf_st_dtype_t;

#define SF_ST_MAX_DIMS 8

typedef struct {
    const char *name;                 /* borrowed from the file object */
    sf_st_dtype_t dtype;
    int ndim;
    int64_t shape[SF_ST_MAX_DIMS];
    int64_t numel;
    const uint8_t *data;              /* borrowed; may be unaligned */
    size_t nbytes;
} sf_st_tensor_t;

typedef struct sf_st_s sf_st_t;

/* Parses a safetensors image of len bytes.  When `copy` is 0 the file object
 * borrows buf, which must outlive it; otherwise it keeps its own copy. */
int sf_st_parse(const void *buf, size_t len, int copy, sf_st_t **out, char *err, size_t errlen);

/* Reads and parses a file.  A path ending in ".index.json" is a sharded
 * checkpoint as Hugging Face writes it ({"weight_map": {tensor: shard file}},
 * shards beside the index): every shard is loaded and the result is one
 * view of all their tensors.  A shard named outside the index's folder, a
 * missing shard, a tensor the index places in a shard that lacks it, or a
 * tensor in two shards is an error naming it. */
int sf_st_load(const char *path, sf_st_t **out, char *err, size_t errlen);

/* The weights of a model folder: dir/model.safetensors, or else its sharded
 * index dir/model.safetensors.index.json, written into out (n bytes).
 * SF_ENOTFOUND (out: the single-file path) when neither is a file. */
int sf_st_folder_weights(const char *dir, char *out, size_t n);

/* The files a checkpoint is made of: path itself, and for a sharded index
 * then its shards, in the order the index first names them (checked as
 * sf_st_load checks them).  Free with sf_st_files_free. */
int sf_st_files(const char *path, char ***files, int *n, char *err, size_t errlen);
void sf_st_files_free(char **files, int n);

/* Frees *st and sets it to NULL. */
void sf_st_free(sf_st_t **st);

/* Tensors in header order; sf_st_find returns NULL for an unknown name.
 * Borrowed, valid for the life of st. */
int sf_st_count(const sf_st_t *st);
const sf_st_tensor_t *sf_st_get(const sf_st_t *st, int i);
const sf_st_tensor_t *sf_st_find(const sf_st_t *st, const char *name);

/* A "__metadata__" value, or NULL.  Borrowed. */
const char *sf_st_meta(const sf_st_t *st, const char *key);

/* Converts a floating tensor (F32, F16, BF16, F64) into n floats; n must be
 * its numel.  Other dtypes give SF_EUNSUPPORTED. */
int sf_st_to_f32(const sf_st_tensor_t *t, float *out, size_t n);

/* Bytes per element of a dtype, and its name in the header ("F32", ...). */
size_t sf_st_dtype_size(sf_st_dtype_t dt);
const char *sf_st_dtype_name(sf_st_dtype_t dt);

/* ---- writing ---- */

typedef struct sf_st_writer_s sf_st_writer_t;

int sf_st_writer_new(sf_st_writer_t **out);
void sf_st_writer_free(sf_st_writer_t **w);

/* Adds a tensor.  Borrows data (nbytes = numel * dtype size) until the image
 * has been produced by sf_st_writer_bytes or sf_st_writer_save.  Names must be
 * unique; SF_EEXIST otherwise. */
int sf_st_writer_add(sf_st_writer_t *w, const char *name, sf_st_dtype_t dtype, int ndim,
                     const int64_t *shape, const void *data, size_t nbytes);

/* Adds a "__metadata__" string entry (copied). */
int sf_st_writer_meta(sf_st_writer_t *w, const char *key, const char *value);

/* Produces the file image into a malloc'd buffer the caller frees. */
int sf_st_writer_bytes(sf_st_writer_t *w, uint8_t **buf, size_t *len);

/* Writes the image to path (through a temporary file renamed into place, so a
 * reader never sees half a checkpoint). */
int sf_st_writer_save(sf_st_writer_t *w, const char *path);

/* float <-> half helpers, round to nearest even. */
uint16_t sf_st_f32_to_f16(float f);
float sf_st_f16_to_f32(uint16_t h);
uint16_t sf_st_f32_to_bf16(float f);
float sf_st_bf16_to_f32(uint16_t h);

#endif
