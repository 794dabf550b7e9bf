/* log.c: the one-line logger.  Lines are written with a single write(2) so
 * that lines of several processes sharing a terminal do not interleave. */
#include "common/runtime/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static const char *g_prog = "shiftforge";
static int g_level = SF_LOG_INFO;
static int g_json;

static const char *level_names[] = {"debug", "info", "warn", "error"};

int sf_log_level_parse(const char *name) {
    if (!name) return -1;
    for (int i = 0; i < 4; i++)
        if (strcasecmp(name, level_names[i]) == 0) return i;
    if (strcasecmp(name, "warning") == 0) return SF_LOG_WARN;
    return -1;
}

void sf_log_init(const char *prog, const char *level_name, int json) {
    if (prog) g_prog = prog;
    const char *env = getenv("SF_LOG_LEVEL");
    int lv = sf_log_level_parse(level_name ? level_name : env);
    if (lv >= 0) g_level = lv;
    const char *ej = getenv("SF_LOG_JSON");
    g_json = json || (ej && *ej && strcmp(ej, "0") != 0);
}

int sf_log_enabled(int level) { return level >= g_level; }

static size_t json_escape(char *out, size_t n, const char *s) {
    size_t o = 0;
    for (; *s && o + 7 < n; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') { out[o++] = '\\'; out[o++] = (char)c; }
        else if (c == '\n') { out[o++] = '\\'; out[o++] = 'n'; }
        else if (c < 0x20) o += (size_t)snprintf(out + o, n - o, "\\u%04x", c);
        else out[o++] = (char)c;
    }
    out[o] = 0;
    return o;
}

void sf_log(int level, const char *fmt, ...) {
    if (level < g_level) return;
    if (level < 0) level = 0;
    if (level > 3) level = 3;
    char msg[2048], line[4200], ts[40];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    struct timeval tv;
    gettimeofday(&tv, NULL);
    struct tm tm;
    gmtime_r(&tv.tv_sec, &tm);
    size_t k = strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(ts + k, sizeof ts - k, ".%03dZ", (int)(tv.tv_usec / 1000));
    int len;
    if (g_json) {
        char esc[4100];
        json_escape(esc, sizeof esc, msg);
        len = snprintf(line, sizeof line,
                       "{\"ts\":\"%s\",\"level\":\"%s\",\"prog\":\"%s\",\"pid\":%d,\"msg\":\"%s\"}\n",
                       ts, level_names[level], g_prog, (int)getpid(), esc);
    } else {
        char up[8];
        size_t i = 0;
        for (; level_names[level][i] && i < sizeof up - 1; i++) up[i] = (char)(level_names[level][i] - 'a' + 'A');
        up[i] = 0;
        len = snprintf(line, sizeof line, "%s %-5s %s[%d]: %s\n", ts, up, g_prog, (int)getpid(), msg);
    }
    if (len > (int)sizeof line - 1) len = (int)sizeof line - 1;
    ssize_t w = write(2, line, (size_t)len);
    (void)w;
}
