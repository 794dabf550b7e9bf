/* top.c: `sfctl top` — a full-screen live view of a cluster, read from Redis
 * (the source of truth, so it shows the same after any daemon restarts):
 * runs with progress bars, the phases and slowest classes of the newest
 * active run, workers and their last heartbeat, and the learner.
 *
 *   sfctl top [--redis ADDR] [--redis-user U] [--redis-password-file F] [--interval MS] [--once]
 *
 * ADDR is host:port or unix:/path (default $SF_REDIS, then 127.0.0.1:6379).
 * With a password (the file, or $SF_REDIS_PASSWORD; user $SF_REDIS_USER)
 * every connection sends AUTH first.
 * It fits itself to the terminal (resizes included), draws with plain ASCII so
 * that it works over any SSH session, and quits on q or ^C.  --once prints one
 * frame without the full-screen mode (for scripts and logs). */
#include <errno.h>
#include <hiredis/hiredis.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/select.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "cli/sfctl.h"
#include "cli/term.h"
#include "common/redis/keys.h"
#include "common/redis/redis_auth.h"

#define MAXW 400

static int W = 80, H = 24, row;
static char frame[128][MAXW + 1];
static volatile sig_atomic_t stop_flag;

static void on_sig(int s) { (void)s; stop_flag = 1; }

/* One screen line, cut to the width.  Everything on it but the format is
 * Redis's (run names, worker ids, class fields), so the whole line is
 * escaped before it is cut (term.h). */
static void line(const char *fmt, ...) {
    if (row >= H || row >= 128) return;
    char raw[MAXW * 2 + 1];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(raw, sizeof raw, fmt, ap);
    va_end(ap);
    sfctl_term_escape(raw, frame[row], (size_t)W + 1);
    row++;
}

static const char *field(redisReply *h, const char *name) {
    for (size_t i = 0; h && h->type == REDIS_REPLY_ARRAY && i + 1 < h->elements; i += 2)
        if (!strcmp(h->element[i]->str, name)) return h->element[i + 1]->str;
    return "";
}

static double num(redisReply *h, const char *name) { return atof(field(h, name)); }

static void bar(char *out, int width, double frac) {
    if (width < 3) width = 3;
    if (frac < 0) frac = 0;
    if (frac > 1) frac = 1;
    int full = (int)(frac * (width - 2) + 0.5);
    out[0] = '[';
    for (int i = 0; i < width - 2; i++) out[1 + i] = i < full ? '#' : '.';
    out[width - 1] = ']';
    out[width] = 0;
}

static void draw(redisContext *rc, const char *addr, const char *prefix) {
    row = 0;
    char now[32];
    time_t t = time(NULL);
    strftime(now, sizeof now, "%Y-%m-%d %H:%M:%S", localtime(&t));
    line("shiftforge top - redis %s - %s   (q quits)", addr, now);
    line("%s", "");
    redisReply *runs = redisCommand(rc, "ZREVRANGE " SF_KEY_RUNS " 0 9", prefix);
    int bw = W - 64;
    if (bw > 40) bw = 40;
    line("RUNS");
    line("%-7s %-9s %-12s %-*s %15s %6s  %s", "RUN", "STATE", "PHASE", bw > 3 ? bw : 3, "PROGRESS", "DONE/TOTAL", "DEAD", "NAME");
    char focus[32] = "";
    for (size_t i = 0; runs && runs->type == REDIS_REPLY_ARRAY && i < runs->elements; i++) {
        const char *id = runs->element[i]->str;
        redisReply *h = redisCommand(rc, "HGETALL " SF_KEY_RUN, prefix, id);
        double done = num(h, "done"), total = num(h, "total"), dead = num(h, "dead"), skipped = num(h, "skipped");
        char b[64], dt[32];
        bar(b, bw > 3 ? bw : 3, total > 0 ? (done + dead + skipped) / total : 0);
        snprintf(dt, sizeof dt, "%.0f/%.0f", done, total);
        const char *st = field(h, "state");
        line("%-7s %-9s %-12.12s %s %15s %6.0f  %s", id, st, field(h, "phase"), b, dt, dead, field(h, "name"));
        if (!focus[0] && (!strcmp(st, "running") || !strcmp(st, "queued"))) snprintf(focus, sizeof focus, "%s", id);
        freeReplyObject(h);
    }
    if (!runs || runs->type != REDIS_REPLY_ARRAY || runs->elements == 0) line("  (no runs)");
    if (!focus[0] && runs && runs->type == REDIS_REPLY_ARRAY && runs->elements)
        snprintf(focus, sizeof focus, "%s", runs->element[0]->str);
    freeReplyObject(runs);

    if (focus[0]) {
        /* The slowest classes of the focused run: the ones with most left. */
        redisReply *cl = redisCommand(rc, "HGETALL " SF_KEY_RUN_CLASSES, prefix, focus);
        struct { char wnid[16]; double done, total; } c[1000];
        int nc = 0;
        for (size_t i = 0; cl && cl->type == REDIS_REPLY_ARRAY && i + 1 < cl->elements; i += 2) {
            const char *f = cl->element[i]->str, *colon = strchr(f, ':');
            if (!colon || (size_t)(colon - f) >= sizeof c[0].wnid) continue;
            int k = 0;
            while (k < nc && strncmp(c[k].wnid, f, (size_t)(colon - f))) k++;
            if (k == nc) {
                if (nc == 1000) continue;
                memset(&c[nc], 0, sizeof c[nc]);
                memcpy(c[nc].wnid, f, (size_t)(colon - f));
                nc++;
            }
            double v = atof(cl->element[i + 1]->str);
            if (!strcmp(colon + 1, "done")) c[k].done = v;
            else if (!strcmp(colon + 1, "total")) c[k].total = v;
        }
        freeReplyObject(cl);
        int show = H - row - 14;
        if (show > 6) show = 6;
        if (show > 0 && nc > 0) {
            line("%s", "");
            line("CLASSES of %s (%d; most left first)", focus, nc);
            for (int s = 0; s < show && s < nc; s++) {
                int best = -1;
                for (int k = 0; k < nc; k++)
                    if (c[k].total >= 0 && (best < 0 || c[k].total - c[k].done > c[best].total - c[best].done)) best = k;
                if (best < 0) break;
                char b[64];
                bar(b, 22, c[best].total > 0 ? c[best].done / c[best].total : 0);
                line("  %-11s %s %4.0f/%-4.0f", c[best].wnid, b, c[best].done, c[best].total);
                c[best].total = -1;
            }
        }
        redisReply *lh = redisCommand(rc, "HGETALL " SF_KEY_RUN_LEARNER, prefix, focus);
        if (lh && lh->type == REDIS_REPLY_ARRAY && lh->elements) {
            line("%s", "");
            line("LEARNER of %s: %s, version %s, updates %s/%s, score %.4f, KL %.3f, beta %.4f, buffered %s", focus,
                 field(lh, "state"), field(lh, "version"), field(lh, "updates"), field(lh, "target_updates"),
                 num(lh, "mean_score"), num(lh, "kl"), num(lh, "kl_coef"), field(lh, "buffered"));
            if (atoi(field(lh, "sft_steps")) > 0) {
                char b[64];
                double st = atof(field(lh, "sft_step")), n = atof(field(lh, "sft_steps"));
                bar(b, 22, st / n);
                line("  SFT       %s %4.0f/%-4.0f loss %.4f", b, st, n, num(lh, "sft_loss"));
            }
        }
        freeReplyObject(lh);
    }

    redisReply *ws = redisCommand(rc, "ZRANGE " SF_KEY_WORKERS " 0 -1", prefix);
    line("%s", "");
    int nw = ws && ws->type == REDIS_REPLY_ARRAY ? (int)ws->elements : 0;
    line("WORKERS (%d)", nw);
    line("%-22s %-6s %-8s %-18s %5s %6s %9s %8s", "ID", "STATE", "DEVICE", "KINDS", "BUSY", "LEASED", "DONE", "SEEN");
    long long nowms = (long long)t * 1000;
    for (int i = 0; i < nw && row < H - 1; i++) {
        redisReply *h = redisCommand(rc, "HGETALL " SF_KEY_WORKER, prefix, ws->element[i]->str);
        double seen = (double)(nowms - atoll(field(h, "last_seen_ms"))) / 1000.0;
        line("%-22.22s %-6s %-8.8s %-18.18s %5s %6s %9s %7.1fs", ws->element[i]->str, field(h, "state"),
             field(h, "device"), field(h, "kinds"), field(h, "busy"), field(h, "leased"), field(h, "done"),
             seen < 0 ? 0 : seen);
        freeReplyObject(h);
    }
    if (nw > 0 && row >= H - 1) line("  ...");
    freeReplyObject(ws);
}

static void term_size(void) {
    struct winsize ws;
    if (ioctl(1, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0) {
        W = ws.ws_col < MAXW ? ws.ws_col : MAXW;
        H = ws.ws_row;
    }
}

static sf_redis_auth_t auth;
static char conn_err[700];

static redisContext *connect_redis(const char *addr) {
    struct timeval tv = {2, 0};
    return sf_redis_connect(addr, &auth, tv, conn_err, sizeof conn_err);
}

int sfctl_top(int argc, char **argv) {
    const char *addr = getenv("SF_REDIS") ? getenv("SF_REDIS") : "127.0.0.1:6379", *prefix = SF_KEY_PREFIX;
    const char *user = NULL, *password_file = NULL;
    long interval = 1000;
    int once = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--redis") && i + 1 < argc) addr = argv[++i];
        else if (!strcmp(argv[i], "--prefix") && i + 1 < argc) prefix = argv[++i];
        else if (!strcmp(argv[i], "--redis-user") && i + 1 < argc) user = argv[++i];
        else if (!strcmp(argv[i], "--redis-password-file") && i + 1 < argc) password_file = argv[++i];
        else if (!strcmp(argv[i], "--interval") && i + 1 < argc) interval = atol(argv[++i]);
        else if (!strcmp(argv[i], "--once")) once = 1;
        else {
            fprintf(stderr, "sfctl top: usage: sfctl top [--redis ADDR] [--redis-user U] [--redis-password-file F] "
                            "[--prefix P] [--interval MS] [--once]\n");
            return SFCTL_EXIT_USAGE;
        }
    }
    if (sf_redis_auth_load(user, password_file, &auth, conn_err, sizeof conn_err) != 0) {
        sfctl_term_printf(stderr, "sfctl top: %s\n", conn_err);
        return SFCTL_EXIT_USAGE;
    }
    redisContext *rc = connect_redis(addr);
    if (!rc) {
        sfctl_term_printf(stderr, "sfctl top: %s\n", conn_err);
        sf_redis_auth_free(&auth);
        return SFCTL_EXIT_UNREACHABLE;
    }
    if (once || !isatty(1)) {
        W = MAXW;
        H = 128;
        if (isatty(1)) term_size();
        draw(rc, addr, prefix);
        for (int i = 0; i < row; i++) printf("%s\n", frame[i]);
        redisFree(rc);
        sf_redis_auth_free(&auth);
        return 0;
    }
    struct termios old, raw;
    int have_tty = tcgetattr(0, &old) == 0;
    if (have_tty) {
        raw = old;
        raw.c_lflag &= ~(tcflag_t)(ICANON | ECHO);
        tcsetattr(0, TCSANOW, &raw);
    }
    signal(SIGINT, on_sig);
    signal(SIGTERM, on_sig);
    printf("\033[?1049h\033[?25l");
    while (!stop_flag) {
        term_size();
        if (rc) draw(rc, addr, prefix);
        if (!rc || rc->err) {
            if (rc) redisFree(rc);
            rc = connect_redis(addr);
            row = 0;
            line("shiftforge top - redis %s unreachable, retrying", addr);
        }
        printf("\033[H");
        for (int i = 0; i < H; i++) printf("%s\033[K%s", i < row ? frame[i] : "", i + 1 < H ? "\r\n" : "");
        fflush(stdout);
        fd_set fds;
        FD_ZERO(&fds);
        FD_SET(0, &fds);
        struct timeval tv = {interval / 1000, (interval % 1000) * 1000};
        if (select(1, &fds, NULL, NULL, &tv) > 0) {
            char ch;
            if (read(0, &ch, 1) == 1 && (ch == 'q' || ch == 'Q')) break;
        }
    }
    printf("\033[?25h\033[?1049l");
    fflush(stdout);
    if (have_tty) tcsetattr(0, TCSANOW, &old);
    if (rc) redisFree(rc);
    sf_redis_auth_free(&auth);
    return 0;
}
