/* Unit tests for common/log: one line per event, levels filter, JSON form
 * escapes what it must. */
#include <fcntl.h>
#include <unistd.h>

#include "common/runtime/log.h"
#include "sf_test.h"

static char *capture(void (*fn)(void)) {
    char path[] = "/tmp/sf-test-log-XXXXXX";
    int fd = mkstemp(path);
    int saved = dup(2);
    dup2(fd, 2);
    fn();
    dup2(saved, 2);
    close(saved);
    static char buf[4096];
    lseek(fd, 0, SEEK_SET);
    ssize_t n = read(fd, buf, sizeof buf - 1);
    buf[n > 0 ? n : 0] = 0;
    close(fd);
    unlink(path);
    return buf;
}

static void text_lines(void) {
    sf_log_init("sf-test", "info", 0);
    sf_debug("hidden %d", 1);
    sf_info("shown %d", 2);
    sf_warn("careful");
}

static void json_lines(void) {
    sf_log_init("sf-test", "warn", 1);
    sf_info("hidden");
    sf_error("a \"quoted\"\nline");
}

TEST(levels_and_forms) {
    char *out = capture(text_lines);
    CHECK(strstr(out, "hidden") == NULL);
    CHECK(strstr(out, "INFO  sf-test["));
    CHECK(strstr(out, "shown 2\n"));
    CHECK(strstr(out, "WARN  sf-test["));
    out = capture(json_lines);
    CHECK(strstr(out, "hidden") == NULL);
    CHECK(strstr(out, "\"level\":\"error\""));
    CHECK(strstr(out, "\"msg\":\"a \\\"quoted\\\"\\nline\"}\n"));
    CHECK_EQ_INT(sf_log_level_parse("WARNING"), SF_LOG_WARN);
    CHECK_EQ_INT(sf_log_level_parse("loud"), -1);
}

int main(void) {
    SF_RUN(levels_and_forms);
    SF_DONE();
}
