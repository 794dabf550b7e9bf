/* ledger.h: the worker's result ledger, a test option (`ledger` setting) for
 * the fault drill (tools/faults.py), which judges exactly-once against it
 * rather than against the coordinator's own counters.
 *
 * With a ledger, the worker appends one line per OK result, just before the
 * batch that carries it goes out:
 *
 *   <run> <job index> <attempt> <worker id> <epoch> <fnv>
 *
 * epoch is the coordinator incarnation that dispatched the job (its welcome's
 * epoch when the job arrived), so two dispatches of one attempt by two
 * coordinator incarnations are two lines; fnv is the FNV-1a 64 (hash.h, from
 * SF_HASH_BASIS, 16 hex digits) of the result payload as sent.  A line is
 * written before the send, so every result the coordinator could accept has
 * its line; a line without an accepted result is an execution whose result
 * was lost, stale or a duplicate (execution is at-least-once).
 *
 * An OK result with an empty payload (sleep, noop, fail, manifest) is given
 * one under a ledger, {"attempt":A,"worker":"W","epoch":E}, so that the
 * result Redis keeps names the one execution that was applied.  The method's
 * kinds keep their payloads (their fields are the contract's); the drill
 * matches them by payload hash.
 *
 * The file is opened with O_APPEND and each line is one write(2): the kernel
 * keeps what was written when the worker is SIGKILLed, which is the fault
 * the drill injects (it cuts no power, so there is no fsync).  Loop thread
 * only.
 */
#ifndef SF_WORKER_LEDGER_H
#define SF_WORKER_LEDGER_H

#include <stddef.h>
#include <stdint.h>

#include "worker/worker.h"

/* Opens (creating) the ledger at path for appending; refuses a worker id
 * that would break a line (empty, or with a space, quote or backslash).
 * Returns the descriptor, or -1 with err set. */
int sf_ledger_open(const char *path, const char *worker_id, char *err, size_t n);

/* Gives an OK job with an empty result the ledger's payload (job->out,
 * malloc'd, the worker frees it).  Anything else is left as it is. */
void sf_ledger_stamp(sf_job_t *job, const char *worker_id);

/* Appends the job's line (one write); logs a failed write once a minute. */
void sf_ledger_append(int fd, const sf_job_t *job, const char *worker_id);

#endif
