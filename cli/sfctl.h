/* sfctl.h: sfctl's commands, one file each; sfctl.c dispatches to them.
 * How a command reaches the coordinator is cli/client.h. */
#ifndef SFCTL_H
#define SFCTL_H

#include <stddef.h>
#include <stdio.h>

#include <cjson/cJSON.h>

#include "cli/client.h"

/* view.c */
int sfctl_print_table(int op, const char *json);
int sfctl_watch(const char *run, long interval_ms, int quiet_start);

/* cluster.c */
int sfctl_up(int argc, char **argv);
int sfctl_down(int argc, char **argv);

/* top.c */
int sfctl_top(int argc, char **argv);
/* `sfctl export RUN --to DIR [--data DIR]` (export.c). */
int sfctl_export(int argc, char **argv);
/* `sfctl report RUN [--compare RUN…] --out DIR [--data DIR] [--redis ADDR]` (report.c). */
int sfctl_report(int argc, char **argv);
/* Text into HTML, with <, >, & and " escaped (report.c). */
void sfctl_html_text(FILE *f, const char *s);
/* The report's "SFT corpus" section for the runs with a corpus phase, into
 * the Markdown, the HTML and the JSON (report_corpus.c). */
void sfctl_report_corpus(FILE *md, FILE *html, cJSON *js, const char *data, const char *const *runs, int nr);

/* keys.c: `sfctl keygen --out PREFIX`. */
int sfctl_keygen(int argc, char **argv);

/* world_cmd.c */
int sfctl_world(int argc, char **argv);

#endif
