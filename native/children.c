/*
 * The init's children, found without a walk.
 *
 * wait4(-1) visits every child of the init in the kernel (do_wait), some
 * 0.3 ms for 1600 children whose task structs are cold, and a SIGCHLD
 * always needs one: SIGCHLD is not queued per child, so a second child
 * that ends before the first SIGCHLD is read sends none, and an orphan
 * among them would stay a zombie.  A real-time exit signal would queue one
 * per child, but exec resets every task's exit signal to SIGCHLD.
 *
 * So a pod's init spawns from a second thread, the spawner.  A child's
 * parent is the thread that forked it, and the kernel keeps a list of
 * children per thread; orphans are given to the thread group's leader
 * (the init's main thread: the namespace's child reaper, or the first live
 * thread of a subreaper).  Each child of the spawner gets a pidfd, in one
 * epoll of its own, readable once the child has ended.  A SIGCHLD then
 * costs what it touches:
 *   - the spawner's children that ended: the epoll's ready list, each one
 *     reaped through its pidfd (waitid P_PIDFD), never by a pid that could
 *     have been reused;
 *   - the main thread's own children (orphans, and anything it spawned
 *     itself): wait4(-1, __WNOTHREAD), a walk of that list alone.
 * A child that could not have a pidfd is reported untracked: while one is
 * alive, the interpreter walks every child instead.
 *
 * A pidfd is an fd, and the init's fds are its apps' log pipes first: the
 * pidfds open at once are at most a quarter of what the open-files limit
 * allows above 1024 (none under a limit of 1024; 130816 under Debian's
 * hard limit of 524288, to which the init raises its own).
 *
 * The interpreter hands a batch of spawns to the thread and waits for its
 * answer: the two never run at once, so nothing is shared in between.  The
 * thread is made once the init has its namespaces: it takes the init's as
 * they are then, and its children take the thread's.
 *
 * A batch of S1_SHARED_FROM spawns or more is shared with helper threads,
 * one per further CPU the init may run on (at most S1_CREW threads in all),
 * made by the spawner for its first such batch: each takes the next spawn
 * not taken yet.  A spawning thread waits while its child runs up to its
 * exec, so one thread leaves a CPU idle part of the time (a quarter of two
 * CPUs here, /proc/stat read around 1600 posix_spawns); with a helper, 1600
 * spawns took 15% less time (a one-off C loop of posix_spawn, 3 runs).
 * The helpers' children are the helpers': they are tracked and reaped as
 * the spawner's are.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "stage1.h"

#ifndef P_PIDFD
#define P_PIDFD 3
#endif

static int s1_epfd = -1;         /* the pidfds of the spawner's children */
static int s1_running;
static int s1_open_pidfds;       /* in that epoll */
/* The hand-over: a byte down go, a byte back up done (a round trip costs
 * some 10 us of CPU on this 2-core VM, timed by hand). */
static int s1_go[2] = { -1, -1 }, s1_done[2] = { -1, -1 };
static struct {
    const struct s1_spawn *const *reqs;
    int n;
    struct s1_spawned *out;
} s1_job;

static void s1_byte(int fd, int out)
{
    char c = 0;
    ssize_t rc;

    do
        rc = out ? write(fd, &c, 1) : read(fd, &c, 1);
    while (rc < 0 && errno == EINTR);
    if (rc != 1)
        abort();        /* the hand-over is broken: never let both threads run on */
}

/* The signal mask, with the raw system call: glibc's pthread_sigmask
 * leaves 32 and 33 out of any set it is given, and the init keeps them
 * blocked (signals.c: their default action would end it). */
static void s1_mask(const sigset_t *set, sigset_t *old)
{
    syscall(SYS_rt_sigprocmask, SIG_SETMASK, set, old, _NSIG / 8);
}

/* Pidfds live from this fd up, above what an app's own soft limit allows:
 * a child that has set its RLIMIT_NOFILE (the init's was raised) still
 * needs a free fd under it (open_tree, spawn.c). */
#define PIDFD_LOW 1024

/* fd moved to a number >= low (close-on-exec), the original closed: the
 * thread's pipes and epoll stay clear of 0, 1 and 2 (which an init started
 * without them would hand out, and apps get by number), pidfds above
 * PIDFD_LOW. */
static int s1_move_fd(int fd, int low)
{
    int moved;

    if (fd < 0 || fd >= low)
        return fd;
    moved = fcntl(fd, F_DUPFD_CLOEXEC, low);
    if (moved < 0)
        return fd;      /* no room up there: it stays where it is */
    close(fd);
    return moved;
}

static int s1_pidfd_room(void)
{
    struct rlimit rl;
    int64_t most;

    if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur <= PIDFD_LOW)
        return 0;
    most = rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur > (1 << 30) ? 1 << 28
                                                                   : ((int64_t)rl.rlim_cur - PIDFD_LOW) / 4;
    return most > s1_open_pidfds ? (int)(most - s1_open_pidfds) : 0;
}

/* A pidfd for each child of a batch, while there is room for one, in the
 * epoll (its data the pid and the pidfd), from fd PIDFD_LOW up.  Opened
 * after the whole batch, not with each clone (CLONE_PIDFD): a child copies
 * the fd table of the thread that forks it, so each pidfd open during the
 * batch would be copied by every later spawn of it.  Opening them by pid
 * is safe here: no child of the batch can have been reaped, and its pid
 * reused, since the one thread that reaps them waits for this batch. */
static void s1_track(struct s1_spawned *out, int n)
{
    struct epoll_event ev;
    int i, pidfd, room = s1_pidfd_room();

    for (i = 0; i < n && room > 0; i++) {
        if (out[i].pid <= 0)
            continue;
        pidfd = s1_move_fd((int)syscall(SYS_pidfd_open, out[i].pid, 0), PIDFD_LOW);
        if (pidfd < 0)
            continue;
        ev.events = EPOLLIN;
        ev.data.u64 = (uint32_t)out[i].pid | (uint64_t)(uint32_t)pidfd << 32;
        if (epoll_ctl(s1_epfd, EPOLL_CTL_ADD, pidfd, &ev) < 0) {
            close(pidfd);
            continue;
        }
        out[i].tracked = 1;
        s1_open_pidfds++;
        room--;
    }
}

/* Every signal blocked in the calling thread, and its name: glibc unblocks
 * its cancellation signal (32) in every new thread. */
static void s1_thread_setup(void)
{
    sigset_t all;

    memset(&all, 0xff, sizeof all);
    s1_mask(&all, NULL);
    prctl(PR_SET_NAME, "spawner", 0, 0, 0);
}

/* A detached thread with a small stack (it only forks and execs). */
static int s1_thread(void *(*main)(void *), void *arg)
{
    pthread_attr_t attr;
    pthread_t thread;
    int err;

    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 128 * 1024);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    err = pthread_create(&thread, &attr, main, arg);
    pthread_attr_destroy(&attr);
    return err;
}

#define S1_CREW 4              /* threads that share a batch, the spawner included */
#define S1_SHARED_FROM 32      /* the smallest batch they share */

static int s1_helpers = -1;    /* running (-1: none made yet) */
static pthread_mutex_t s1_crew_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t s1_crew_go = PTHREAD_COND_INITIALIZER;
static pthread_cond_t s1_crew_done = PTHREAD_COND_INITIALIZER;
static unsigned s1_crew_batch;   /* how many batches were shared */
static int s1_crew_busy;         /* helpers not done with the current one */
static int s1_crew_next;         /* its next spawn to take */

/* arg: how many batches had been shared when the spawner made it (the
 * spawner alone counts them): the next one is its first. */
static void *s1_helper_main(void *arg)
{
    unsigned seen = (unsigned)(uintptr_t)arg;

    s1_thread_setup();
    pthread_mutex_lock(&s1_crew_lock);
    s1_crew_busy--;             /* set up: the spawner waits for this (s1_make_helpers) */
    pthread_cond_signal(&s1_crew_done);
    for (;;) {
        while (s1_crew_batch == seen)
            pthread_cond_wait(&s1_crew_go, &s1_crew_lock);
        seen = s1_crew_batch;
        pthread_mutex_unlock(&s1_crew_lock);
        s1_spawn_claimed(s1_job.reqs, s1_job.n, s1_job.out, &s1_crew_next);
        pthread_mutex_lock(&s1_crew_lock);
        if (--s1_crew_busy == 0)
            pthread_cond_signal(&s1_crew_done);
    }
    return NULL;
}

/* glibc's cancellation signal, 32.  glibc starts every new thread with
 * the mask of the thread that made it less 32, until the thread blocks
 * everything itself (s1_thread_setup), and the first thread a process
 * makes has glibc unblock 32 and 33 in the thread that makes it, until
 * the mask is put back; 32's default action ends the process.  A 32 the
 * init was sent waits in its signalfd's queue (while the interpreter waits
 * for a batch, say), and would be delivered to such a thread.  So no
 * thread is made while one waits (s1_cancel_hold answers -1: no spawner,
 * or no helpers for that batch), and while one is made 32 is ignored (the
 * raw call: glibc refuses 32): one sent in that moment is lost instead of
 * ending the init.  s1_cancel_release puts the disposition back once the
 * new thread has every signal blocked. */
struct s1_ksigaction {           /* the kernel's struct sigaction */
    void *handler;
    unsigned long flags;
    void *restorer;
    uint64_t mask;
};

static int s1_cancel_hold(struct s1_ksigaction *old)
{
    struct s1_ksigaction ignore = { (void *)SIG_IGN, 0, NULL, 0 };
    uint64_t pending = 0;

    if (syscall(SYS_rt_sigpending, &pending, sizeof pending) < 0 || (pending >> 31) & 1)
        return -1;
    return syscall(SYS_rt_sigaction, 32, &ignore, old, sizeof ignore.mask) < 0 ? -1 : 0;
}

static void s1_cancel_release(const struct s1_ksigaction *old)
{
    syscall(SYS_rt_sigaction, 32, old, NULL, sizeof old->mask);
}

/* The helpers, made once: as many as the init has further CPUs to run on,
 * within S1_CREW.  However many could be made is how many there are. */
static void s1_make_helpers(void)
{
    cpu_set_t cpus;
    struct s1_ksigaction cancel;
    int want = 0;

    if (s1_cancel_hold(&cancel) < 0)
        return;         /* this batch is spawned by the spawner alone; the next may make them */
    s1_helpers = 0;
    if (sched_getaffinity(0, sizeof cpus, &cpus) == 0)
        want = (CPU_COUNT(&cpus) < S1_CREW ? CPU_COUNT(&cpus) : S1_CREW) - 1;
    /* One at a time, each waited for until it has every signal blocked. */
    pthread_mutex_lock(&s1_crew_lock);
    while (s1_helpers < want) {
        s1_crew_busy = 1;
        if (s1_thread(s1_helper_main, (void *)(uintptr_t)s1_crew_batch))
            break;
        while (s1_crew_busy > 0)
            pthread_cond_wait(&s1_crew_done, &s1_crew_lock);
        s1_helpers++;
    }
    s1_crew_busy = 0;
    pthread_mutex_unlock(&s1_crew_lock);
    s1_cancel_release(&cancel);
}

/* A batch is shared when it is big enough and no spawn of it takes the
 * terminal: the app that has it in the end must be the last one in the
 * batch's order, as it is spawned alone. */
static int s1_shared(void)
{
    int i;

    if (s1_job.n < S1_SHARED_FROM)
        return 0;
    for (i = 0; i < s1_job.n; i++)
        if (s1_job.reqs[i]->tty_fd >= 0)
            return 0;
    if (s1_helpers < 0)
        s1_make_helpers();
    return s1_helpers > 0;
}

static void s1_spawn_job(void)
{
    if (!s1_shared()) {
        s1_spawn_batch(s1_job.reqs, s1_job.n, s1_job.out);
        return;
    }
    s1_read_dispositions();
    pthread_mutex_lock(&s1_crew_lock);
    s1_crew_next = 0;
    s1_crew_busy = s1_helpers;
    s1_crew_batch++;
    pthread_cond_broadcast(&s1_crew_go);
    pthread_mutex_unlock(&s1_crew_lock);
    s1_spawn_claimed(s1_job.reqs, s1_job.n, s1_job.out, &s1_crew_next);
    pthread_mutex_lock(&s1_crew_lock);
    while (s1_crew_busy > 0)
        pthread_cond_wait(&s1_crew_done, &s1_crew_lock);
    pthread_mutex_unlock(&s1_crew_lock);
}

static void *s1_spawner_main(void *unused)
{
    s1_thread_setup();
    s1_byte(s1_done[1], 1);     /* set up: s1_spawner_start waits for this */
    for (;;) {
        s1_byte(s1_go[0], 0);
        s1_spawn_job();
        s1_track(s1_job.out, s1_job.n);
        s1_byte(s1_done[1], 1);
    }
    return NULL;
}

/* The hand-over pipes and the epoll closed (the pidfds in it stay: each is
 * closed as its child is reaped). */
static void s1_close_handover(void)
{
    int i;

    for (i = 0; i < 2; i++) {
        if (s1_go[i] >= 0)
            close(s1_go[i]);
        if (s1_done[i] >= 0)
            close(s1_done[i]);
        s1_go[i] = s1_done[i] = -1;
    }
    if (s1_epfd >= 0)
        close(s1_epfd);
    s1_epfd = -1;
}

/* A process forked from the init has no spawner thread (fork copies the
 * calling thread alone): it spawns by itself, and its children, having no
 * pidfd, are found by a walk. */
static void s1_after_fork(void)
{
    s1_running = 0;
    s1_close_handover();
    s1_open_pidfds = 0;
    /* The helpers are gone with the spawner; a spawner made again starts a
     * crew of its own, from nothing copied of this one's. */
    s1_helpers = -1;
    s1_crew_batch = 0;
    s1_crew_busy = 0;
    s1_crew_next = 0;
    pthread_mutex_init(&s1_crew_lock, NULL);
    pthread_cond_init(&s1_crew_go, NULL);
    pthread_cond_init(&s1_crew_done, NULL);
}

/* Start the spawner thread (once).  It starts with every signal blocked,
 * as the init keeps them (they are read from a signalfd): none is ever
 * delivered to it; not while a 32 waits, and with 32 ignored while it is
 * made (s1_cancel_hold). */
int s1_spawner_start(void)
{
    sigset_t all, old;
    siginfo_t si;
    struct s1_ksigaction cancel;
    int err, i, self;

    if (s1_running)
        return 0;
    /* waitid(P_PIDFD) came in Linux 5.4, a release after pidfd_open: on
     * an older kernel there is no tracking, and reaping is as before. */
    self = (int)syscall(SYS_pidfd_open, getpid(), 0);
    if (self < 0)
        return -errno;
    err = syscall(SYS_waitid, P_PIDFD, self, &si, WEXITED | WNOHANG, NULL) < 0 ? errno : 0;
    close(self);
    if (err != ECHILD)
        return -(err ? err : EINVAL);
    if (pipe2(s1_go, O_CLOEXEC) < 0)
        return -errno;
    if (pipe2(s1_done, O_CLOEXEC) < 0) {
        err = errno;
        goto fail;
    }
    s1_epfd = epoll_create1(EPOLL_CLOEXEC);
    if (s1_epfd < 0) {
        err = errno;
        goto fail;
    }
    for (i = 0; i < 2; i++) {
        s1_go[i] = s1_move_fd(s1_go[i], 3);
        s1_done[i] = s1_move_fd(s1_done[i], 3);
    }
    s1_epfd = s1_move_fd(s1_epfd, 3);
    if (s1_cancel_hold(&cancel) < 0) {
        err = EAGAIN;       /* no spawner: reaping walks every child, as without one */
        goto fail;
    }
    memset(&all, 0xff, sizeof all);
    s1_mask(&all, &old);
    err = s1_thread(s1_spawner_main, NULL);
    s1_mask(&old, NULL);
    if (!err)
        s1_byte(s1_done[0], 0);
    s1_cancel_release(&cancel);
    if (!err) {
        pthread_atfork(NULL, NULL, s1_after_fork);
        s1_running = 1;
        return 0;
    }
fail:
    s1_close_handover();
    return -err;
}

void s1_spawn_each(const struct s1_spawn *const *reqs, int n, struct s1_spawned *out)
{
    if (!s1_running) {
        s1_spawn_batch(reqs, n, out);
        return;
    }
    s1_job.reqs = reqs;
    s1_job.n = n;
    s1_job.out = out;
    s1_byte(s1_go[1], 1);       /* the pipe orders the job's memory too */
    s1_byte(s1_done[0], 0);
}

static int s1_wait_status(const siginfo_t *si)
{
    switch (si->si_code) {
    case CLD_EXITED:
        return (si->si_status & 0xff) << 8;
    case CLD_KILLED:
        return si->si_status & 0x7f;
    case CLD_DUMPED:
        return (si->si_status & 0x7f) | 0x80;
    }
    return 0;
}

/* The spawner's children that have ended (at most max), reaped through
 * their pidfds, each pidfd closed (which takes it out of the epoll).  A
 * pidfd whose child was reaped some other way (a walk) answers ECHILD and
 * is closed too. */
int s1_reap_tracked(struct s1_exit *out, int max)
{
    struct epoll_event ev[64];
    struct rusage ru;
    siginfo_t si;
    int n = 0, want, got, i, fd, progress;
    long rc;

    if (s1_epfd < 0)
        return 0;
    while (n < max) {
        want = max - n < 64 ? max - n : 64;
        got = epoll_wait(s1_epfd, ev, want, 0);
        if (got < 0) {
            if (errno == EINTR)
                continue;
            return n ? n : -errno;
        }
        progress = 0;
        for (i = 0; i < got; i++) {
            fd = (int)(ev[i].data.u64 >> 32);
            si.si_pid = 0;
            rc = syscall(SYS_waitid, P_PIDFD, fd, &si, WEXITED | WNOHANG, &ru);
            if (rc < 0 ? errno != ECHILD : si.si_pid == 0)
                continue;           /* left ready (or not ended after all): tried again */
            close(fd);              /* reaped, here or (ECHILD) by a walk */
            s1_open_pidfds--;
            progress = 1;
            if (rc < 0)
                continue;
            out[n].pid = si.si_pid;
            out[n].status = s1_wait_status(&si);
            out[n].utime = ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6;
            out[n].stime = ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
            out[n].maxrss_kb = ru.ru_maxrss;
            n++;
        }
        if (got < want || !progress)
            break;
    }
    return n;
}
