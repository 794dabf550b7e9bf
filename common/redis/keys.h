/* keys.h: the Redis key schema, in one place (docs/redis-keys.md is the
 * operator's view of the same table; a test checks they agree).
 *
 * All keys start with a prefix (default "sf") so that several installations
 * can share one Redis.  Run ids are "r<N>".
 */
#ifndef SF_KEYS_H
#define SF_KEYS_H

#define SF_KEY_PREFIX "sf" /* the default prefix (config key redis_prefix) */

#define SF_KEY_RUNS          "%s:runs"              /* ZSET  run id by creation time (ms) */
#define SF_KEY_RUN_NEXT      "%s:run:next"          /* STRING last run number used */
#define SF_KEY_RUN           "%s:run:%s"            /* HASH  run state, totals, spec */
#define SF_KEY_RUN_DONE      "%s:run:%s:done"       /* STRING bitmap, bit i = job i done */
#define SF_KEY_RUN_LEASES    "%s:run:%s:leases"     /* HASH  job index -> "worker attempt deadline_ms" */
#define SF_KEY_RUN_DEAD      "%s:run:%s:dead"       /* HASH  job index -> JSON {attempts,error,worker,at_ms} */
#define SF_KEY_RUN_RESULTS   "%s:run:%s:results"    /* HASH  job index -> result payload (non-empty only) */
#define SF_KEY_RUN_CLASSES   "%s:run:%s:classes"    /* HASH  <wnid>:done|dead|total -> count */
#define SF_KEY_RUN_EVENTS    "%s:run:%s:events"     /* STREAM run events, capped */
#define SF_KEY_RUN_LEARNER   "%s:run:%s:learner"    /* HASH  the learner's state of the run: version, updates,
                                                     * target_updates, done, state, sft_*, counters, the last
                                                     * update's statistics, updated_ms, error (learner) */
#define SF_KEY_RUN_PPO       "%s:run:%s:ppo"        /* STREAM one entry per PPO update, capped (learner) */
#define SF_KEY_WORKERS       "%s:workers"           /* ZSET  worker id by last heartbeat (ms) */
#define SF_KEY_WORKER        "%s:worker:%s"         /* HASH  one worker, expires without heartbeats */
#define SF_KEY_COORDINATOR   "%s:coordinator"       /* HASH  pid, epoch, started_ms, heartbeat_ms, counters */
#define SF_KEY_EPOCH         "%s:coordinator:epoch" /* STRING coordinator incarnation counter */
#define SF_KEY_RUN_LEARNER_OWNER "%s:run:%s:learner:owner" /* STRING the learner that holds the run, with a TTL */
#define SF_KEY_LEADER        "%s:coordinator:leader" /* STRING "<epoch> <holder>" with a TTL: the leader lease */

#define SF_EVENTS_MAXLEN 1000 /* approximate cap of each run's event stream */
#define SF_PPO_MAXLEN 100000  /* approximate cap of each run's PPO stream */

#endif
