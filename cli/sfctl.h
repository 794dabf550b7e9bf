/* sfctl.h: what sfctl's files share. */
#ifndef SFCTL_H
#define SFCTL_H

enum { SFCTL_EXIT_OK = 0, SFCTL_EXIT_FAIL = 1, SFCTL_EXIT_USAGE = 2, SFCTL_EXIT_UNREACHABLE = 3, SFCTL_EXIT_CANCELLED = 4 };

typedef struct {
    const char *coordinator;
    long timeout_ms;
    int quiet;
} sfctl_opts_t;
extern sfctl_opts_t g_opts;

typedef struct {
    int code;
    char error[1024];
    char run[32];
    char *json; /* malloc'd */
} sfctl_reply_t;

/* One request to the coordinator; returns an SFCTL_EXIT_… code. */
int sfctl_request(int op, const char *run, const char *spec, sfctl_reply_t *out);

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

/* world_cmd.c */
int sfctl_world(int argc, char **argv);

#endif
