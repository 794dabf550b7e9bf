/* cluster.c: `sfctl up` / `sfctl down` — a whole local cluster for a laptop,
 * the tests and the demo: a private redis-server (unix socket, AOF on,
 * noeviction) in a run directory, a coordinator, the PPO learner (when this
 * build has one) and N workers on ipc:// endpoints there; the workers share
 * DIR/data (reference statistics, run files, datasets) and read the models
 * from --models (default ./models) and GPT-2's vocabulary from --vocab
 * (default ./data/gpt2).  `up` stays in the foreground and stops everything on
 * SIGINT/SIGTERM, or with --detach returns once the cluster answers and leaves
 * `down` to stop it.  DIR/env holds SF_COORDINATOR for other shells. */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cli/sfctl.h"
#include "proto/shiftforge.pb-c.h"

#define MAX_PROCS 260

static pid_t procs[MAX_PROCS];
static int nprocs;
static volatile sig_atomic_t stop_flag;

static void on_stop(int s) { (void)s; stop_flag = 1; }

/* Starts argv with stdout/stderr to logfile, in its own process group so
 * that a terminal's ^C reaches only `up`, which then stops it in order. */
static pid_t spawn(char *const argv[], const char *logfile) {
    pid_t p = fork();
    if (p < 0) return -1;
    if (p == 0) {
        setpgid(0, 0);
        int fd = open(logfile, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) { dup2(fd, 1); dup2(fd, 2); close(fd); }
        int nul = open("/dev/null", O_RDONLY);
        if (nul >= 0) { dup2(nul, 0); close(nul); }
        execvp(argv[0], argv);
        fprintf(stderr, "cannot start %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    if (nprocs < MAX_PROCS) procs[nprocs++] = p;
    return p;
}

static int wait_for_file(const char *path, int ms) {
    for (int t = 0; t < ms; t += 20) {
        if (access(path, F_OK) == 0) return 0;
        usleep(20000);
    }
    return -1;
}

static void stop_all(const char *dir) {
    /* Workers first (they drain), then the coordinator, Redis last. */
    for (int i = nprocs - 1; i >= 0; i--) {
        if (procs[i] <= 0) continue;
        kill(procs[i], SIGTERM);
        for (int t = 0; t < 150; t++) {
            if (waitpid(procs[i], NULL, WNOHANG) == procs[i]) { procs[i] = 0; break; }
            usleep(20000);
        }
        if (procs[i] > 0) { kill(procs[i], SIGKILL); waitpid(procs[i], NULL, 0); procs[i] = 0; }
    }
    char p[PATH_MAX];
    snprintf(p, sizeof p, "%s/pids", dir);
    unlink(p);
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
    char adir[PATH_MAX], bdir[PATH_MAX], sock[PATH_MAX + 32], tmp[PATH_MAX + 64];
    if (!realpath(dir, adir)) { fprintf(stderr, "sfctl up: cannot use directory '%s'\n", dir); return SFCTL_EXIT_USAGE; }
    sfctl_bin_dir(bdir, sizeof bdir);
    snprintf(sock, sizeof sock, "%s/redis.sock", adir);
    if (strlen(sock) > 100) { fprintf(stderr, "sfctl up: directory path too long for unix sockets\n"); return SFCTL_EXIT_USAGE; }
    signal(SIGINT, on_stop);
    signal(SIGTERM, on_stop);

    char log[PATH_MAX + 32];
    snprintf(log, sizeof log, "%s/redis.log", adir);
    char *rargv[] = {"redis-server", "--port", "0", "--unixsocket", sock, "--dir", adir, "--appendonly", "yes",
                     "--appendfsync", "always", "--maxmemory-policy", "noeviction", "--save", "", NULL};
    if (spawn(rargv, log) < 0 || wait_for_file(sock, 10000) != 0) {
        fprintf(stderr, "sfctl up: redis-server did not start (see %s)\n", log);
        stop_all(adir);
        return SFCTL_EXIT_FAIL;
    }
    char coord[PATH_MAX + 32], redis[PATH_MAX + 40], wep[PATH_MAX + 32], cep[PATH_MAX + 32];
    snprintf(coord, sizeof coord, "%s/sf-coordinator", bdir);
    snprintf(redis, sizeof redis, "unix:%s", sock);
    snprintf(wep, sizeof wep, "ipc://%s/workers.ipc", adir);
    snprintf(cep, sizeof cep, "ipc://%s/clients.ipc", adir);
    snprintf(log, sizeof log, "%s/coordinator.log", adir);
    char *cargv[] = {coord, "--redis", redis, "--worker-endpoint", wep, "--client-endpoint", cep, NULL};
    spawn(cargv, log);
    snprintf(tmp, sizeof tmp, "%s/clients.ipc", adir);
    if (wait_for_file(tmp, 10000) != 0) {
        fprintf(stderr, "sfctl up: the coordinator did not start (see %s)\n", log);
        stop_all(adir);
        return SFCTL_EXIT_FAIL;
    }
    /* Paths the daemons get are absolute: they may resolve them later. */
    char amodels[PATH_MAX], avocab[PATH_MAX], adata[PATH_MAX + 8], ackpt[PATH_MAX + 16], lep[PATH_MAX + 32];
    if (!realpath(models, amodels)) snprintf(amodels, sizeof amodels, "%s", models);
    if (!realpath(vocab, avocab)) snprintf(avocab, sizeof avocab, "%s", vocab);
    snprintf(adata, sizeof adata, "%s/data", adir);
    snprintf(ackpt, sizeof ackpt, "%s/checkpoints", adir);
    snprintf(lep, sizeof lep, "ipc://%s/learner.ipc", adir);
    mkdir(adata, 0755);
    char lbin[PATH_MAX + 32];
    snprintf(lbin, sizeof lbin, "%s/sf-learner", bdir);
    if (access(lbin, X_OK) == 0) {
        snprintf(log, sizeof log, "%s/learner.log", adir);
        char *largv[] = {lbin, "--redis", redis, "--endpoint", lep, "--checkpoint-dir", ackpt,
                         "--models-dir", amodels, "--gpt2-vocab", avocab, NULL};
        spawn(largv, log);
    }
    char wbin[PATH_MAX + 32];
    snprintf(wbin, sizeof wbin, "%s/sf-worker", bdir);
    for (int i = 0; i < workers; i++) {
        char id[64];
        snprintf(id, sizeof id, "local/%d", i);
        char *a[80];
        int k = 0;
        a[k++] = wbin; a[k++] = "--coordinator"; a[k++] = wep; a[k++] = "--worker-id"; a[k++] = id;
        a[k++] = "--learner"; a[k++] = lep; a[k++] = "--models-dir"; a[k++] = amodels;
        a[k++] = "--data-dir"; a[k++] = adata; a[k++] = "--gpt2-vocab"; a[k++] = avocab;
        for (int j = 0; j < nw; j++) a[k++] = wargs[j];
        a[k] = NULL;
        snprintf(log, sizeof log, "%s/worker-%d.log", adir, i);
        spawn(a, log);
    }
    snprintf(tmp, sizeof tmp, "%s/env", adir);
    FILE *f = fopen(tmp, "w");
    if (f) { fprintf(f, "SF_COORDINATOR=%s\nSF_REDIS=%s\nSF_DATA=%s\n", cep, redis, adata); fclose(f); }
    snprintf(tmp, sizeof tmp, "%s/pids", adir);
    f = fopen(tmp, "w");
    if (f) { for (int i = 0; i < nprocs; i++) fprintf(f, "%d\n", (int)procs[i]); fclose(f); }

    /* Ready when every worker has joined. */
    g_opts.coordinator = strdup(cep);
    for (int t = 0; t < 200 && !stop_flag; t++) {
        sfctl_reply_t rep;
        if (sfctl_request(SF__REQUEST__OP__LIST_WORKERS, NULL, NULL, &rep) == 0) {
            int n = 0;
            for (const char *q = rep.json; (q = strstr(q, "\"id\"")); q++) n++;
            free(rep.json);
            if (n >= workers) break;
        } else {
            free(rep.json);
        }
        usleep(50000);
    }
    printf("cluster up in %s: redis %s, coordinator %s, %d workers, data in %s\n", adir, redis, cep, workers, adata);
    printf("  export SF_COORDINATOR=%s\n", cep);
    fflush(stdout);
    if (detach) return 0;
    while (!stop_flag) {
        int st;
        pid_t p = waitpid(-1, &st, WNOHANG);
        if (p > 0) {
            for (int i = 0; i < nprocs; i++) if (procs[i] == p) procs[i] = 0;
            fprintf(stderr, "sfctl up: process %d exited (%s %d)\n", (int)p, WIFSIGNALED(st) ? "signal" : "status",
                    WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st));
        }
        usleep(100000);
    }
    printf("stopping the cluster\n");
    stop_all(adir);
    return 0;
}

int sfctl_down(int argc, char **argv) {
    const char *dir = NULL;
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--dir") && i + 1 < argc) dir = argv[++i];
    if (!dir) { fprintf(stderr, "sfctl down: usage: sfctl down --dir DIR\n"); return SFCTL_EXIT_USAGE; }
    char p[PATH_MAX];
    snprintf(p, sizeof p, "%s/pids", dir);
    FILE *f = fopen(p, "r");
    if (!f) { fprintf(stderr, "sfctl down: no cluster in %s\n", dir); return SFCTL_EXIT_USAGE; }
    int pid;
    while (nprocs < MAX_PROCS && fscanf(f, "%d", &pid) == 1) procs[nprocs++] = pid;
    fclose(f);
    /* Not our children: wait by polling kill(pid, 0). */
    for (int i = nprocs - 1; i >= 0; i--) {
        if (procs[i] <= 0 || kill(procs[i], SIGTERM) != 0) continue;
        int t = 0;
        while (kill(procs[i], 0) == 0 && t++ < 150) usleep(20000);
        if (kill(procs[i], 0) == 0) kill(procs[i], SIGKILL);
    }
    unlink(p);
    printf("cluster in %s stopped\n", dir);
    return 0;
}
