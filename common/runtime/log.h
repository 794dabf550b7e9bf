/* log.h: one line per event on stderr, with a level and the program's name.
 *
 * Text form:  2026-11-28T16:02:10.123Z INFO  sf-coordinator: worker w1 joined
 * JSON form:  {"ts":"…","level":"info","prog":"sf-coordinator","msg":"…"}
 * The level and form come from sf_log_init() (config keys log_level and
 * log_json) or the SF_LOG_LEVEL / SF_LOG_JSON environment variables.
 */
#ifndef SF_LOG_H
#define SF_LOG_H

enum { SF_LOG_DEBUG = 0, SF_LOG_INFO = 1, SF_LOG_WARN = 2, SF_LOG_ERROR = 3 };

/* prog is borrowed and must outlive logging. level_name may be NULL. */
void sf_log_init(const char *prog, const char *level_name, int json);
int sf_log_level_parse(const char *name); /* -1 if unknown */
int sf_log_enabled(int level);
void sf_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define sf_debug(...) do { if (sf_log_enabled(SF_LOG_DEBUG)) sf_log(SF_LOG_DEBUG, __VA_ARGS__); } while (0)
#define sf_info(...) sf_log(SF_LOG_INFO, __VA_ARGS__)
#define sf_warn(...) sf_log(SF_LOG_WARN, __VA_ARGS__)
#define sf_error(...) sf_log(SF_LOG_ERROR, __VA_ARGS__)

#endif
