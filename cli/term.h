/* term.h: text from others made safe to print on the operator's terminal.
 *
 * Run names, class names, worker ids, the coordinator's error messages and
 * whatever sfctl reads from Redis or a data folder are other people's text.
 * Printed raw, a control character in them is a command to the terminal:
 * ESC [ … repaints or hides lines, OSC sequences retitle the window or, on
 * some terminals, write the clipboard.  Every printer of such text goes
 * through this module (term.c): C0 controls, DEL, the C1 controls
 * (U+0080–U+009F) and bytes that are not UTF-8 are shown as visible escapes,
 * "\n", "\t", "\r", "\x1b", "\u009b", "\xff", and every other character,
 * UTF-8 included, as it is.  JSON output (--json) needs none of this: JSON
 * escapes control characters itself.
 */
#ifndef SFCTL_TERM_H
#define SFCTL_TERM_H

#include <stddef.h>
#include <stdio.h>

#include <cjson/cJSON.h>

/* The longest escape of one byte ("\u009b" for two), and so the most that
 * escaping can grow a text by: the result of n bytes is at most 4n. */
#define SFCTL_TERM_GROWTH 4

/* Writes s, escaped, into out (n > 0 bytes, always NUL-terminated), cut at
 * a character or escape boundary when it does not fit.  Returns out. */
char *sfctl_term_escape(const char *s, char *out, size_t n);

/* 1 when s prints as it is (nothing to escape), else 0. */
int sfctl_term_clean(const char *s);

/* Escapes every string of the tree, values and keys, in place, so that a
 * table printed from it is safe.  0, or SF_ENOMEM (the tree is then partly
 * escaped; the caller prints nothing from it). */
int sfctl_term_escape_json(cJSON *root);

/* fprintf whose whole result is escaped, but for one newline at its end:
 * for messages (errors above all) that carry others' text and no escape
 * sequence of their own. */
int sfctl_term_printf(FILE *f, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
