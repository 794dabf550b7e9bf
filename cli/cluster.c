/* cluster.c: `sfctl up` / `sfctl down` — a whole local cluster for a laptop,
 * the tests and the demo: a private redis-server (unix socket, AOF on,
 * noeviction) in a run directory, a coordinator, the PPO learner (when this
 * build has one) and N workers on ipc:// endpoints there; the workers share
 * DIR/data (reference statistics, run files, datasets) and read the models
 * from --models (default ./models) and GPT-2's vocabulary from --vocab
 * (default ./data/gpt2).  `up` stays in the foreground and stops everything on
 * SIGINT/SIGTERM, or with --detach returns once the cluster answers and leaves
 * `down` to stop it.  DIR/env holds SF_COORDINATOR for other shells.
 *
 * One cluster per directory: a second redis-server on the same AOF would
 * corrupt it.  DIR/pids lists each daemon with its start time (field 22 of
 * /proc/PID/stat) and executable, so that `up` can tell a live cluster from a
 * stale file and `down` signals a PID only while it is still the daemon `up`
 * started, never a process that inherited the number.  DIR/lock (flock) is
 * held while `up` checks and starts, and by `down` while it stops, so that
 * two commands on one directory never interleave.  `up` succeeds only when
 * every daemon it started is running and every worker has joined; a daemon
 * that exits during start-up stops the lot, with the end of its log. */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cli/sfctl.h"
#include "common/runtime/clock.h"
#include "common/runtime/error.h"
#include "common/runtime/fileio.h"
#include "proto/shiftforge.pb-c.h"

#define MAX_PROCS 260
/* How long each part of the start may take.  Workers and the learner load
 * libtorch first, slow on a busy 2-core box (tests/integration/lib.sh waits
 * as long for its workers). */
#define START_REDIS_MS 10000
#define START_COORDINATOR_MS 10000
#define START_JOIN_MS 30000
/* A daemon gets this long to stop after SIGTERM before SIGKILL. */
#define STOP_GRACE_MS 3000
/* How much of a failed daemon's log `up` shows. */
#define LOG_TAIL_LINES 12

/* One daemon of the cluster: started by this `up`, or read from DIR/pids. */
typedef struct {
    pid_t pid;
    unsigned long long start; /* field 22 of /proc/PID/stat: clock ticks after boot */
    char role[32];            /* redis, coordinator, learner, worker-N; its log is DIR/ROLE.log */
    char exe[PATH_MAX];       /* /proc/PID/exe once it has exec'd; "-" when unknown */
    long log_off;             /* the size of its log when it started: what follows is its own */
    int legacy;               /* from an old pids file: a PID alone, nothing to check it by */
} proc_t;

static proc_t procs[MAX_PROCS];
static int nprocs;
static char g_dir[PATH_MAX]; /* the run directory, absolute */
static volatile sig_atomic_t stop_flag;

static void on_stop(int s) { (void)s; stop_flag = 1; }

enum { PROC_GONE, PROC_OURS, PROC_OTHER };

/* The start time and executable (" (deleted)" cut off: a rebuilt binary is
 * still the one that was started) of pid; exe is "" when it cannot be read
 * (another user's process).  0, or -1 when no such pid runs. */
static int proc_identity(pid_t pid, unsigned long long *start, char *exe, size_t n) {
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    ssize_t k = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (k <= 0) return -1;
    buf[k] = 0;
    /* comm (field 2) may hold spaces and parentheses: count from the last
     * ')', after which comes field 3, the state.  A zombie has exited: it
     * waits only for a parent (or an init that reaps slowly) to reap it. */
    char *s = strrchr(buf, ')'), *save = NULL, *tok;
    if (!s) return -1;
    tok = strtok_r(s + 1, " ", &save);
    if (!tok || !strcmp(tok, "Z") || !strcmp(tok, "X")) return -1;
    for (int field = 3; tok && field < 22; field++) tok = strtok_r(NULL, " ", &save);
    if (!tok) return -1;
    char *end;
    errno = 0;
    *start = strtoull(tok, &end, 10);
    if (errno || end == tok) return -1;
    snprintf(path, sizeof path, "/proc/%d/exe", (int)pid);
    ssize_t m = readlink(path, exe, n - 1);
    exe[m > 0 ? m : 0] = 0;
    const char *del = " (deleted)";
    size_t el = strlen(exe), dl = strlen(del);
    if (el > dl && !strcmp(exe + el - dl, del)) exe[el - dl] = 0;
    return 0;
}

/* Whether e's PID is still the process e describes: PROC_OURS, PROC_GONE,
 * or PROC_OTHER with why (size n) saying what it is now. */
static int proc_check(const proc_t *e, char *why, size_t n) {
    unsigned long long start;
    char exe[PATH_MAX];
    if (proc_identity(e->pid, &start, exe, sizeof exe) != 0) {
        snprintf(why, n, "it has exited");
        return PROC_GONE;
    }
    double tck = (double)sysconf(_SC_CLK_TCK);
    if (start != e->start) {
        snprintf(why, n, "PID %d now belongs to another process (%.1000s, started %.2f s after boot, not %.2f s)",
                 (int)e->pid, *exe ? exe : "executable unreadable", (double)start / tck, (double)e->start / tck);
        return PROC_OTHER;
    }
    if (strcmp(exe, e->exe) != 0) {
        snprintf(why, n, "PID %d runs %.1000s, not %.1000s", (int)e->pid,
                 *exe ? exe : "an executable sfctl cannot read", e->exe);
        return PROC_OTHER;
    }
    return PROC_OURS;
}

/* Whether pid exists and its command line names dir (every daemon `up`
 * starts has a path in dir among its arguments): how an old pids file, which
 * has nothing else, is checked. */
static int cmdline_names_dir(pid_t pid, const char *dir) {
    char path[64], buf[16384], want[PATH_MAX + 2];
    snprintf(path, sizeof path, "/proc/%d/cmdline", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0;
    ssize_t k = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (k <= 0) return 0;
    for (ssize_t i = 0; i < k; i++) if (!buf[i]) buf[i] = ' ';
    buf[k] = 0;
    snprintf(want, sizeof want, "%s/", dir);
    return strstr(buf, want) != NULL;
}

static int pids_write(FILE *f, void *arg) {
    (void)arg;
    fprintf(f, "# written by sfctl up: pid, start time (field 22 of /proc/PID/stat), role, executable.\n"
               "# sfctl down signals a pid only while its start time and executable still match.\n");
    for (int i = 0; i < nprocs; i++)
        fprintf(f, "%d %llu %s %s\n", (int)procs[i].pid, procs[i].start, procs[i].role, procs[i].exe);
    return ferror(f) ? SF_EIO : 0;
}

/* Reads path into procs[]: lines "PID START ROLE EXE", or a PID alone (the
 * old format, marked legacy).  who prefixes the message about a line it
 * cannot read (skipped).  0, or -1 with errno when path cannot be opened. */
static int pids_read(const char *path, const char *who) {
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    nprocs = 0;
    char line[PATH_MAX + 128];
    for (int ln = 1; nprocs < MAX_PROCS && fgets(line, sizeof line, f); ln++) {
        line[strcspn(line, "\n")] = 0;
        if (line[0] == '#' || line[strspn(line, " \t")] == 0) continue;
        proc_t *e = &procs[nprocs];
        memset(e, 0, sizeof *e);
        int pid, off = 0;
        if (sscanf(line, "%d %llu %31s %n", &pid, &e->start, e->role, &off) == 3 && off > 0 && line[off]) {
            snprintf(e->exe, sizeof e->exe, "%s", line + off);
        } else if (sscanf(line, "%d %n", &pid, &off) == 1 && off > 0 && !line[off]) {
            e->legacy = 1;
            snprintf(e->role, sizeof e->role, "?");
        } else {
            fprintf(stderr, "%s: %s line %d: not a pid entry, ignored: %.60s\n", who, path, ln, line);
            continue;
        }
        /* Never 0 or -1 (a process group, every process) nor init. */
        if (pid <= 1) {
            fprintf(stderr, "%s: %s line %d: PID %d ignored\n", who, path, ln, pid);
            continue;
        }
        e->pid = pid;
        nprocs++;
    }
    fclose(f);
    return 0;
}

/* Takes DIR/lock (flock, exclusive), waiting when wait is set; returns its
 * descriptor (close-on-exec: the daemons must not hold it), or -1 with errno
 * (EWOULDBLOCK: someone holds it). */
static int lock_dir(const char *dir, int wait) {
    char p[PATH_MAX + 8];
    snprintf(p, sizeof p, "%s/lock", dir);
    int fd = open(p, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) return -1;
    while (flock(fd, LOCK_EX | (wait ? 0 : LOCK_NB)) != 0) {
        if (errno == EINTR && wait) continue;
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

/* Whether something accepts connections on the unix socket path. */
static int socket_answers(const char *path) {
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    size_t l = strlen(path);
    if (l >= sizeof a.sun_path) return 0;
    memcpy(a.sun_path, path, l + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int yes = fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof a) == 0;
    if (fd >= 0) close(fd);
    return yes;
}

/* 0 when no cluster runs in g_dir; otherwise says which processes of it
 * still run (or what else is in the way) and returns -1. */
static int check_not_alive(void) {
    char p[PATH_MAX + 16], live[2048] = "", why[PATH_MAX + 128];
    size_t ll = 0;
    snprintf(p, sizeof p, "%s/pids", g_dir);
    if (pids_read(p, "sfctl up") == 0) {
        for (int i = 0; i < nprocs && ll < sizeof live; i++) {
            const proc_t *e = &procs[i];
            if (e->legacy ? cmdline_names_dir(e->pid, g_dir) : proc_check(e, why, sizeof why) == PROC_OURS)
                ll += snprintf(live + ll, sizeof live - ll, "%s%s PID %d", ll ? ", " : "",
                               e->legacy ? "old-format entry" : e->role, (int)e->pid);
        }
        nprocs = 0;
    }
    if (*live) {
        fprintf(stderr, "sfctl up: a cluster is already running in %s (%s); stop it first with: sfctl down --dir %s\n",
                g_dir, live, g_dir);
        return -1;
    }
    /* No pids file speaks for it, but a redis-server there would share the AOF. */
    snprintf(p, sizeof p, "%s/redis.sock", g_dir);
    if (socket_answers(p)) {
        fprintf(stderr, "sfctl up: something answers on %s though %s/pids lists no live process: stop that "
                        "redis-server first\n", p, g_dir);
        return -1;
    }
    return 0;
}

/* Starts argv as role with stdout/stderr appended to DIR/ROLE.log, in its
 * own process group so that a terminal's ^C reaches only `up`, which then
 * stops it in order; records it in procs[] and DIR/pids.  A close-on-exec
 * pipe tells when the exec has happened (so /proc/PID/exe is the daemon's)
 * or why it failed.  Returns 0, or -1 having said why. */
static int spawn(const char *role, char *const argv[]) {
    char log[PATH_MAX + 48], pidfile[PATH_MAX + 16];
    snprintf(log, sizeof log, "%s/%s.log", g_dir, role);
    if (nprocs >= MAX_PROCS) { fprintf(stderr, "sfctl up: too many processes\n"); return -1; }
    proc_t *e = &procs[nprocs];
    memset(e, 0, sizeof *e);
    snprintf(e->role, sizeof e->role, "%s", role);
    struct stat st;
    e->log_off = stat(log, &st) == 0 ? (long)st.st_size : 0;
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0) { fprintf(stderr, "sfctl up: pipe: %s\n", strerror(errno)); return -1; }
    pid_t p = fork();
    if (p < 0) {
        fprintf(stderr, "sfctl up: cannot fork for %s: %s\n", role, strerror(errno));
        close(fds[0]);
        close(fds[1]);
        return -1;
    }
    if (p == 0) {
        close(fds[0]);
        setpgid(0, 0);
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) { dup2(fd, 1); dup2(fd, 2); close(fd); }
        int nul = open("/dev/null", O_RDONLY);
        if (nul >= 0) { dup2(nul, 0); close(nul); }
        execvp(argv[0], argv);
        int err = errno;
        if (write(fds[1], &err, sizeof err) < 0) { /* the parent then sees a bare exit */ }
        fprintf(stderr, "cannot start %s: %s\n", argv[0], strerror(err));
        _exit(127);
    }
    close(fds[1]);
    int err = 0;
    ssize_t k;
    while ((k = read(fds[0], &err, sizeof err)) < 0 && errno == EINTR) {}
    close(fds[0]);
    if (k == (ssize_t)sizeof err) {
        waitpid(p, NULL, 0);
        fprintf(stderr, "sfctl up: cannot start %s (%s): %s\n", role, argv[0], strerror(err));
        return -1;
    }
    e->pid = p;
    /* A daemon already gone (a zombie until we reap it, so its PID is not
     * reused meanwhile) has nothing to read: "-", and the start-up watch
     * reports it. */
    if (proc_identity(p, &e->start, e->exe, sizeof e->exe) != 0 || !e->exe[0]) snprintf(e->exe, sizeof e->exe, "-");
    nprocs++;
    snprintf(pidfile, sizeof pidfile, "%s/pids", g_dir);
    if (sf_write_atomic(pidfile, pids_write, NULL) != 0)
        fprintf(stderr, "sfctl up: cannot write %s: %s (sfctl down will not find this cluster)\n", pidfile,
                strerror(errno));
    return 0;
}

static void stop_all(void) {
    /* Workers first (they drain), then the coordinator, Redis last.  These
     * are our children: until reaped, their PIDs cannot be reused. */
    for (int i = nprocs - 1; i >= 0; i--) {
        if (procs[i].pid <= 0) continue;
        kill(procs[i].pid, SIGTERM);
        for (int t = 0; t < STOP_GRACE_MS / 20; t++) {
            if (waitpid(procs[i].pid, NULL, WNOHANG) == procs[i].pid) { procs[i].pid = 0; break; }
            usleep(20000);
        }
        if (procs[i].pid > 0) { kill(procs[i].pid, SIGKILL); waitpid(procs[i].pid, NULL, 0); procs[i].pid = 0; }
    }
    char p[PATH_MAX + 16];
    snprintf(p, sizeof p, "%s/pids", g_dir);
    unlink(p);
}

/* Prints the last lines e's daemon wrote to its log in this start. */
static void print_log_tail(const proc_t *e) {
    char path[PATH_MAX + 48], buf[8192];
    snprintf(path, sizeof path, "%s/%s.log", g_dir, e->role);
    FILE *f = fopen(path, "r");
    if (!f) return;
    long from = 0;
    if (fseek(f, 0, SEEK_END) == 0) from = ftell(f) - (long)(sizeof buf - 1);
    if (from < e->log_off) from = e->log_off;
    size_t k = fseek(f, from, SEEK_SET) == 0 ? fread(buf, 1, sizeof buf - 1, f) : 0;
    fclose(f);
    while (k > 0 && buf[k - 1] == '\n') k--;
    buf[k] = 0;
    if (k == 0) { fprintf(stderr, "  (%s has nothing from it)\n", path); return; }
    char *s = buf + k;
    for (int lines = 0; s > buf; s--)
        if (s[-1] == '\n' && ++lines == LOG_TAIL_LINES) break;
    fprintf(stderr, "  last lines of %s:\n", path);
    for (char *nl; s; s = nl ? nl + 1 : NULL) {
        nl = strchr(s, '\n');
        fprintf(stderr, "  | %.*s\n", nl ? (int)(nl - s) : (int)strlen(s), s);
    }
}

/* The index of a child of ours that has exited (reaped, its status in *st),
 * or -1. */
static int exited_child(int *st) {
    for (int i = 0; i < nprocs; i++)
        if (procs[i].pid > 0 && waitpid(procs[i].pid, st, WNOHANG) == procs[i].pid) return i;
    return -1;
}

/* Waits up to ms for ready(arg), watching the children meanwhile.  0 when
 * ready; 1 when the time ran out; -1 when a daemon exited or we were asked
 * to stop (said here, the exited one with the end of its log). */
static int wait_start(int (*ready)(void *), void *arg, int ms, int poll_ms) {
    const int64_t deadline = sf_clock_mono_ms() + ms;
    for (;;) {
        int st = 0, i = exited_child(&st);
        if (i >= 0) {
            proc_t *e = &procs[i];
            if (WIFSIGNALED(st))
                fprintf(stderr, "sfctl up: %s (PID %d) was killed by signal %d during start-up\n", e->role,
                        (int)e->pid, WTERMSIG(st));
            else
                fprintf(stderr, "sfctl up: %s (PID %d) exited with status %d during start-up\n", e->role,
                        (int)e->pid, WEXITSTATUS(st));
            e->pid = 0;
            print_log_tail(e);
            return -1;
        }
        if (stop_flag) { fprintf(stderr, "sfctl up: interrupted during start-up\n"); return -1; }
        if (ready(arg)) return 0;
        if (sf_clock_mono_ms() >= deadline) return 1;
        usleep((useconds_t)poll_ms * 1000);
    }
}

static int file_exists(void *path) { return access(path, F_OK) == 0; }

typedef struct {
    int want, joined;          /* workers */
    const char *learner_ipc;   /* NULL: no learner */
    char missing[512];         /* the workers not yet joined, when known */
} join_t;

/* Every worker has joined the coordinator and the learner (if any) serves. */
static int all_joined(void *arg) {
    join_t *j = arg;
    sfctl_reply_t rep;
    if (sfctl_request(SF__REQUEST__OP__LIST_WORKERS, NULL, NULL, &rep) == 0) {
        j->joined = 0;
        for (const char *q = rep.json; (q = strstr(q, "\"id\"")); q++) j->joined++;
        size_t ml = 0;
        j->missing[0] = 0;
        for (int i = 0; i < j->want && ml < sizeof j->missing; i++) {
            char id[32];
            snprintf(id, sizeof id, "\"local/%d\"", i);
            if (!strstr(rep.json, id))
                ml += snprintf(j->missing + ml, sizeof j->missing - ml, "%sworker-%d", ml ? ", " : "", i);
        }
    }
    free(rep.json);
    return j->joined >= j->want && (!j->learner_ipc || access(j->learner_ipc, F_OK) == 0);
}

/* Stops what this `up` started and gives up. */
static int start_failed(int lockfd) {
    stop_all();
    close(lockfd);
    fprintf(stderr, "sfctl up: stopped what it had started in %s\n", g_dir);
    return SFCTL_EXIT_FAIL;
}

int sfctl_up(int argc, char **argv) {
    const char *dir = NULL;
    int workers = 2, detach = 0;
    char *wargs[64];
    int nw = 0;
    const char *models = "models", *vocab = "data/gpt2";
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--dir") && i + 1 < argc) dir = argv[++i];
        else if (!strcmp(argv[i], "--models") && i + 1 < argc) models = argv[++i];
        else if (!strcmp(argv[i], "--vocab") && i + 1 < argc) vocab = argv[++i];
        else if (!strcmp(argv[i], "--workers") && i + 1 < argc) workers = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--detach")) detach = 1;
        else if (nw < 60) wargs[nw++] = argv[i]; /* passed to every worker */
    }
    if (!dir || workers < 0 || workers > 256) {
        fprintf(stderr, "sfctl up: usage: sfctl up --dir DIR [--workers N] [--models DIR] [--vocab DIR] [--detach] "
                        "[worker flags…]\n");
        return SFCTL_EXIT_USAGE;
    }
    mkdir(dir, 0755);
    char bdir[PATH_MAX], sock[PATH_MAX + 32], tmp[PATH_MAX + 64];
    if (!realpath(dir, g_dir)) {
        fprintf(stderr, "sfctl up: cannot use directory '%s'\n", dir);
        return SFCTL_EXIT_USAGE;
    }
    const char *adir = g_dir;
    sfctl_bin_dir(bdir, sizeof bdir);
    snprintf(sock, sizeof sock, "%s/redis.sock", adir);
    if (strlen(sock) > 100) { fprintf(stderr, "sfctl up: directory path too long for unix sockets\n"); return SFCTL_EXIT_USAGE; }

    /* Checking that nothing runs here and starting must be one step: two
     * `up`s at once would both find the directory free. */
    int lockfd = lock_dir(adir, 0);
    if (lockfd < 0) {
        if (errno == EWOULDBLOCK)
            fprintf(stderr, "sfctl up: another sfctl up or down is at work in %s (it holds %s/lock); not starting "
                            "a second cluster there\n", adir, adir);
        else
            fprintf(stderr, "sfctl up: cannot lock %s/lock: %s\n", adir, strerror(errno));
        return SFCTL_EXIT_FAIL;
    }
    if (check_not_alive() != 0) { close(lockfd); return SFCTL_EXIT_FAIL; }
    /* Sockets left by a cluster that died: the waits below look for new ones. */
    const char *stale[] = {"redis.sock", "workers.ipc", "clients.ipc", "learner.ipc"};
    for (size_t i = 0; i < sizeof stale / sizeof *stale; i++) {
        snprintf(tmp, sizeof tmp, "%s/%s", adir, stale[i]);
        unlink(tmp);
    }
    signal(SIGINT, on_stop);
    signal(SIGTERM, on_stop);

    char *rargv[] = {"redis-server", "--port", "0", "--unixsocket", sock, "--dir", (char *)adir, "--appendonly", "yes",
                     "--appendfsync", "always", "--maxmemory-policy", "noeviction", "--save", "", NULL};
    if (spawn("redis", rargv) != 0) return start_failed(lockfd);
    int w = wait_start(file_exists, sock, START_REDIS_MS, 20);
    if (w > 0) fprintf(stderr, "sfctl up: redis-server did not start within %d s (see %s/redis.log)\n",
                       START_REDIS_MS / 1000, adir);
    if (w != 0) return start_failed(lockfd);

    char coord[PATH_MAX + 32], redis[PATH_MAX + 40], wep[PATH_MAX + 32], cep[PATH_MAX + 32];
    snprintf(coord, sizeof coord, "%s/sf-coordinator", bdir);
    snprintf(redis, sizeof redis, "unix:%s", sock);
    snprintf(wep, sizeof wep, "ipc://%s/workers.ipc", adir);
    snprintf(cep, sizeof cep, "ipc://%s/clients.ipc", adir);
    char *cargv[] = {coord, "--redis", redis, "--worker-endpoint", wep, "--client-endpoint", cep, NULL};
    if (spawn("coordinator", cargv) != 0) return start_failed(lockfd);
    snprintf(tmp, sizeof tmp, "%s/clients.ipc", adir);
    w = wait_start(file_exists, tmp, START_COORDINATOR_MS, 20);
    if (w > 0) fprintf(stderr, "sfctl up: the coordinator did not start within %d s (see %s/coordinator.log)\n",
                       START_COORDINATOR_MS / 1000, adir);
    if (w != 0) return start_failed(lockfd);

    /* Paths the daemons get are absolute: they may resolve them later. */
    char amodels[PATH_MAX], avocab[PATH_MAX], adata[PATH_MAX + 8], ackpt[PATH_MAX + 16], lep[PATH_MAX + 32];
    char lipc[PATH_MAX + 16];
    if (!realpath(models, amodels)) snprintf(amodels, sizeof amodels, "%s", models);
    if (!realpath(vocab, avocab)) snprintf(avocab, sizeof avocab, "%s", vocab);
    snprintf(adata, sizeof adata, "%s/data", adir);
    snprintf(ackpt, sizeof ackpt, "%s/checkpoints", adir);
    snprintf(lep, sizeof lep, "ipc://%s/learner.ipc", adir);
    snprintf(lipc, sizeof lipc, "%s/learner.ipc", adir);
    mkdir(adata, 0755);
    join_t join = {.want = workers};
    char lbin[PATH_MAX + 32];
    snprintf(lbin, sizeof lbin, "%s/sf-learner", bdir);
    if (access(lbin, X_OK) == 0) {
        char *largv[] = {lbin, "--redis", redis, "--endpoint", lep, "--checkpoint-dir", ackpt,
                         "--models-dir", amodels, "--data-dir", adata, "--gpt2-vocab", avocab, NULL};
        if (spawn("learner", largv) != 0) return start_failed(lockfd);
        join.learner_ipc = lipc;
    }
    char wbin[PATH_MAX + 32];
    snprintf(wbin, sizeof wbin, "%s/sf-worker", bdir);
    for (int i = 0; i < workers; i++) {
        char id[64], role[32];
        snprintf(id, sizeof id, "local/%d", i);
        snprintf(role, sizeof role, "worker-%d", i);
        char *a[80];
        int k = 0;
        a[k++] = wbin; a[k++] = "--coordinator"; a[k++] = wep; a[k++] = "--worker-id"; a[k++] = id;
        a[k++] = "--learner"; a[k++] = lep; a[k++] = "--models-dir"; a[k++] = amodels;
        a[k++] = "--data-dir"; a[k++] = adata; a[k++] = "--gpt2-vocab"; a[k++] = avocab;
        for (int j = 0; j < nw; j++) a[k++] = wargs[j];
        a[k] = NULL;
        if (spawn(role, a) != 0) return start_failed(lockfd);
    }

    /* Ready when every worker has joined and the learner serves. */
    g_opts.coordinator = strdup(cep);
    w = wait_start(all_joined, &join, START_JOIN_MS, 50);
    if (w > 0) {
        if (join.joined < workers)
            fprintf(stderr, "sfctl up: only %d of %d workers joined within %d s (missing: %s; see their logs in %s)\n",
                    join.joined, workers, START_JOIN_MS / 1000, *join.missing ? join.missing : "?", adir);
        else
            fprintf(stderr, "sfctl up: the learner did not serve within %d s (see %s/learner.log)\n",
                    START_JOIN_MS / 1000, adir);
    }
    if (w != 0) return start_failed(lockfd);
    snprintf(tmp, sizeof tmp, "%s/env", adir);
    FILE *f = fopen(tmp, "w");
    if (f) { fprintf(f, "SF_COORDINATOR=%s\nSF_REDIS=%s\nSF_DATA=%s\n", cep, redis, adata); fclose(f); }
    close(lockfd);
    printf("cluster up in %s: redis %s, coordinator %s, %d workers, data in %s\n", adir, redis, cep, workers, adata);
    printf("  export SF_COORDINATOR=%s\n", cep);
    fflush(stdout);
    if (detach) return 0;
    while (!stop_flag) {
        int st;
        pid_t p = waitpid(-1, &st, WNOHANG);
        if (p > 0) {
            for (int i = 0; i < nprocs; i++) if (procs[i].pid == p) procs[i].pid = 0;
            fprintf(stderr, "sfctl up: process %d exited (%s %d)\n", (int)p, WIFSIGNALED(st) ? "signal" : "status",
                    WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st));
        }
        usleep(100000);
    }
    printf("stopping the cluster\n");
    stop_all();
    return 0;
}

/* Waits up to ms for e to stop being the process it was. */
static int wait_gone(const proc_t *e, int ms) {
    char why[PATH_MAX + 128];
    for (int t = 0; t < ms; t += 20) {
        if (proc_check(e, why, sizeof why) != PROC_OURS) return 0;
        usleep(20000);
    }
    return -1;
}

int sfctl_down(int argc, char **argv) {
    const char *dir = NULL;
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--dir") && i + 1 < argc) dir = argv[++i];
    if (!dir) { fprintf(stderr, "sfctl down: usage: sfctl down --dir DIR\n"); return SFCTL_EXIT_USAGE; }
    char p[PATH_MAX + 16], why[PATH_MAX + 128];
    snprintf(p, sizeof p, "%s/pids", dir);
    if (access(p, F_OK) != 0) { fprintf(stderr, "sfctl down: no cluster in %s\n", dir); return SFCTL_EXIT_USAGE; }
    /* An `up` still starting would go on adding daemons after we read the list. */
    int lockfd = lock_dir(dir, 0);
    if (lockfd < 0 && errno == EWOULDBLOCK) {
        fprintf(stderr, "sfctl down: an sfctl up is starting in %s; waiting for it\n", dir);
        lockfd = lock_dir(dir, 1);
    }
    if (pids_read(p, "sfctl down") != 0) {
        if (lockfd >= 0) close(lockfd);
        fprintf(stderr, "sfctl down: no cluster in %s\n", dir);
        return SFCTL_EXIT_USAGE;
    }
    int stopped = 0, unsure = 0;
    /* Not our children: a PID is signalled only while its start time and
     * executable say it is still the daemon `up` recorded, checked again
     * before each signal. */
    for (int i = nprocs - 1; i >= 0; i--) {
        const proc_t *e = &procs[i];
        if (e->legacy) {
            if (kill(e->pid, 0) == 0 || errno == EPERM) {
                fprintf(stderr, "sfctl down: skipped PID %d: %s is in the old format (a PID alone), so sfctl cannot "
                                "tell whether it is still this cluster's; stop it yourself if it is\n", (int)e->pid, p);
                unsure++;
            }
            continue;
        }
        int c = proc_check(e, why, sizeof why);
        if (c == PROC_GONE) continue;
        if (c == PROC_OTHER) {
            fprintf(stderr, "sfctl down: skipped %s (PID %d): %s\n", e->role, (int)e->pid, why);
            continue;
        }
        kill(e->pid, SIGTERM);
        if (wait_gone(e, STOP_GRACE_MS) != 0 && proc_check(e, why, sizeof why) == PROC_OURS) {
            fprintf(stderr, "sfctl down: %s (PID %d) did not stop within %d s: SIGKILL\n", e->role, (int)e->pid,
                    STOP_GRACE_MS / 1000);
            kill(e->pid, SIGKILL);
            wait_gone(e, 1000);
        }
        stopped++;
    }
    if (unsure) {
        /* Kept, so that `up` also sees them and refuses to start a second cluster. */
        fprintf(stderr, "sfctl down: stopped %d processes; %d left alone (%s kept)\n", stopped, unsure, p);
        if (lockfd >= 0) close(lockfd);
        return SFCTL_EXIT_FAIL;
    }
    unlink(p);
    if (lockfd >= 0) close(lockfd);
    printf("cluster in %s stopped (%d processes)\n", dir, stopped);
    return 0;
}
