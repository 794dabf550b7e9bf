/* clock.h: the two clocks, named for what they are.
 *
 *   wall time (CLOCK_REALTIME)       only for what is stored or shown: Redis
 *                                    timestamps, events, logs, reports;
 *   monotonic time (CLOCK_MONOTONIC) for every interval, timeout and
 *                                    deadline kept in memory.
 * A name without "wall" or "mono" is a bug waiting for an NTP step.
 */
#ifndef SF_CLOCK_H
#define SF_CLOCK_H

#include <stdint.h>

/* Milliseconds since the Unix epoch. */
int64_t sf_clock_wall_ms(void);
/* Monotonic milliseconds, microseconds and seconds since an arbitrary start. */
int64_t sf_clock_mono_ms(void);
int64_t sf_clock_mono_us(void);
double sf_clock_mono_s(void);

#endif
