/* ledger.c: the worker's result ledger for the fault drill (ledger.h). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/net/wire.h"
#include "common/runtime/clock.h"
#include "common/runtime/error.h"
#include "common/runtime/hash.h"
#include "common/runtime/log.h"
#include "worker/ledger.h"

int sf_ledger_open(const char *path, const char *worker_id, char *err, size_t n) {
    if (!*worker_id || strpbrk(worker_id, " \t\r\n\"\\")) {
        sf_errf(SF_EINVAL, err, n, "config key 'ledger' needs a worker_id without spaces, quotes or backslashes "
                "(it is a field of each line), not '%s'", worker_id);
        return -1;
    }
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) sf_errf(SF_EIO, err, n, "config key 'ledger': cannot open '%s': %s", path, strerror(errno));
    return fd;
}

void sf_ledger_stamp(sf_job_t *job, const char *worker_id) {
    if (job->status != SF_JOB_OK || job->out_len) return;
    char buf[256];
    int len = snprintf(buf, sizeof buf, "{\"attempt\":%u,\"worker\":\"%s\",\"epoch\":%llu}", job->attempt, worker_id,
                       (unsigned long long)job->epoch);
    if (len < 0 || (size_t)len >= sizeof buf || !(job->out = malloc((size_t)len))) return;
    memcpy(job->out, buf, (size_t)len);
    job->out_len = (size_t)len;
}

void sf_ledger_append(int fd, const sf_job_t *job, const char *worker_id) {
    static int64_t warned_ms = -60000;
    char line[512];
    uint64_t h = sf_fnv1a(SF_HASH_BASIS, job->out, job->out_len);
    int len = snprintf(line, sizeof line, "%s %u %u %s %llu %016llx\n", job->run, sf_job_index(job->id), job->attempt,
                       worker_id, (unsigned long long)job->epoch, (unsigned long long)h);
    if (len < 0 || (size_t)len >= sizeof line) return;
    /* One write per line: with O_APPEND it lands whole at the end. */
    ssize_t w = write(fd, line, (size_t)len);
    if (w != len && sf_clock_mono_ms() - warned_ms >= 60000) {
        warned_ms = sf_clock_mono_ms();
        sf_error("ledger: a line was not written (%s): the drill will count its result as unmatched",
                 w < 0 ? strerror(errno) : "short write");
    }
}
