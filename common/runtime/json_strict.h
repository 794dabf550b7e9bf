/* json_strict.h: reading JSON that a user, a file or a peer wrote, strictly.
 *
 * cJSON alone stops after the first value, so `{"a": 1} {"b": 2}` or a
 * config file with a stray line after its closing brace is half-read without
 * a word; and it keeps every copy of a key, so that a lookup sees the first
 * copy while a loop over the members sees both.  sf_json_parse_strict
 * accepts exactly one JSON value with nothing after it but whitespace, and
 * no object, at any depth, with the same key twice.  Every reader of user
 * JSON (config files, run specs, job payloads, sfctl's --spec, --payload and
 * --set) goes through it.
 *
 * Errors are SF_EINVAL and name the text (`what`, e.g. "config file 'w.json'"
 * or "--payload") and the place: "config file 'w.json': unexpected text
 * after the JSON value at line 4, column 1", "--payload: key 'ppo.updates'
 * is given twice".
 */
#ifndef SF_JSON_STRICT_H
#define SF_JSON_STRICT_H

#include <stddef.h>

#include <cjson/cJSON.h>

/* Parses len bytes of text (need not be NUL-terminated).  On success *out is
 * the tree, which the caller frees with cJSON_Delete; on failure *out is NULL
 * and err says why (SF_EINVAL, or SF_ENOMEM). */
int sf_json_parse_strict(const char *text, size_t len, const char *what, cJSON **out, char *err, size_t n);

/* The duplicate-key rule alone, for a tree parsed elsewhere (borrows root):
 * 0, or SF_EINVAL naming the first repeated key's path ("phases[1].name"). */
int sf_json_unique_keys(const cJSON *root, const char *what, char *err, size_t n);

#endif
