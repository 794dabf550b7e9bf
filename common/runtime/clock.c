/* clock.c: see clock.h. */
#include "common/runtime/clock.h"

#include <time.h>

static int64_t ns(clockid_t id) {
    struct timespec ts;
    clock_gettime(id, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t sf_clock_wall_ms(void) { return ns(CLOCK_REALTIME) / 1000000; }
int64_t sf_clock_mono_ms(void) { return ns(CLOCK_MONOTONIC) / 1000000; }
int64_t sf_clock_mono_us(void) { return ns(CLOCK_MONOTONIC) / 1000; }
double sf_clock_mono_s(void) { return (double)ns(CLOCK_MONOTONIC) * 1e-9; }
