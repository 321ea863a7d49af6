/*
 * Signals: the init blocks every catchable signal and reads them from a
 * signalfd, so one epoll wait covers signals, timers and sockets and no
 * handler ever runs inside the interpreter.
 *
 * Fault signals (SEGV, BUS, FPE, ILL, TRAP, SYS) are blocked too: sent with
 * kill(2) they are forwarded like any other.  A real fault of the init is a
 * synchronous signal, which the kernel delivers whatever the mask says.
 *
 * Signals 32 and 33 are glibc's own (thread cancellation, setxid): its
 * sigfillset leaves them out and its sigprocmask refuses to block them, so
 * a `kill -32` would end the init with their default action.  The mask is
 * set with the raw system call instead; the init has one thread and never
 * cancels or runs setxid across threads, and the spawn path's glibc
 * sigprocmask unblocks them again for apps.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <time.h>

#include "stage1.h"

/* Record what the init inherited (mask, ignored dispositions) so that the
 * spawn path can give it back to apps, then block everything and return a
 * close-on-exec, non-blocking signalfd. */
int s1_signals_take(uint64_t *mask_out, uint64_t *ign_out)
{
    sigset_t all, old;
    struct sigaction sa;
    int sig, fd;

    *mask_out = 0;
    *ign_out = 0;
    /* Every signal, 32 and 33 included (see above); the kernel ignores the
     * bits of SIGKILL and SIGSTOP. */
    memset(&all, 0xff, sizeof all);
    sigemptyset(&old);
    if (syscall(SYS_rt_sigprocmask, SIG_SETMASK, &all, &old, _NSIG / 8) < 0)
        return -errno;
    for (sig = 1; sig <= 64; sig++) {
        if (sigismember(&old, sig) == 1)
            *mask_out |= 1ULL << (sig - 1);
        if (sigaction(sig, NULL, &sa) == 0 && sa.sa_handler == SIG_IGN)
            *ign_out |= 1ULL << (sig - 1);
    }
    /* An ignored SIGCHLD makes the kernel reap children behind our back
     * and wait4 would never report their status. */
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = SIG_DFL;
    if (sigaction(SIGCHLD, &sa, NULL) < 0)
        return -errno;
    fd = signalfd(-1, &all, SFD_CLOEXEC | SFD_NONBLOCK);
    if (fd < 0)
        return -errno;
    return fd;
}

/* A SIGPIPE or SIGXFSZ that the init's own write raised (a reader gone, a
 * file size limit): the kernel sends it to the writer as SI_USER from the
 * writer itself.  Blocked, it is queued like any signal, so it would be
 * read back and passed on to every app (and, with -v, the line logging it
 * fails again and raises another).  The write's error (EPIPE, EFBIG) is
 * what the init handles; the signal is dropped here.  The same signal sent
 * by any other process is passed on as usual. */
static int s1_own_signal(int sig, int code, int pid)
{
    return (sig == SIGPIPE || sig == SIGXFSZ) && code == SI_USER && pid == getpid();
}

/* Read up to max pending signals, in the order the kernel queued them.
 * Returns the count; 0 when nothing is pending (or only the init's own
 * SIGPIPE/SIGXFSZ, which are dropped). */
int s1_signalfd_read(int fd, struct s1_siginfo *out, int max)
{
    struct signalfd_siginfo buf[64];
    ssize_t got;
    int i, n, kept = 0;

    if (max > 64)
        max = 64;
    got = read(fd, buf, sizeof buf[0] * (size_t)max);
    if (got < 0)
        return errno == EAGAIN ? 0 : -errno;
    n = (int)(got / (ssize_t)sizeof buf[0]);
    for (i = 0; i < n; i++) {
        if (s1_own_signal((int)buf[i].ssi_signo, buf[i].ssi_code, (int)buf[i].ssi_pid))
            continue;
        out[kept].signo = (int)buf[i].ssi_signo;
        out[kept].code = buf[i].ssi_code;
        out[kept].pid = (int)buf[i].ssi_pid;
        out[kept].uid = (int)buf[i].ssi_uid;
        out[kept].forwarded = 0;
        kept++;
    }
    return kept;
}

static int64_t s1_now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int s1_watched(const struct s1_exit *exits, int n, const int *watch, int nwatch)
{
    int i, j;

    for (i = 0; i < n; i++)
        for (j = 0; j < nwatch; j++)
            if (exits[i].pid == watch[j])
                return 1;
    return 0;
}

/* Wait for a signal, tini's way, when the init has nothing but signals to
 * wait for (exec mode): one rt_sigtimedwait per signal (the raw system
 * call: glibc's leaves 32 and 33 out of the set, see above).  A SIGCHLD is
 * reaped in the same call, into exits.  With a watch list, children that
 * are none of the watched pids (orphans, whose end decides nothing) are
 * reaped here and the wait goes on, so an orphan storm never wakes the
 * interpreter.  With forward_to (a pid, or a negative group), any other
 * signal is passed on to it right here, before the interpreter runs, so a
 * forwarded signal costs what it costs tini.  timeout_ns < 0 waits for
 * ever.  Returns the number of exits; out->signo is 0 on timeout. */
int s1_sigwait(int64_t timeout_ns, const int *watch, int nwatch, int forward_to,
               struct s1_siginfo *out, struct s1_exit *exits, int max)
{
    int64_t deadline = timeout_ns < 0 ? -1 : s1_now_ns() + timeout_ns, left;
    struct timespec ts;
    sigset_t all;
    siginfo_t si;
    int sig, n;

    memset(&all, 0xff, sizeof all);
    for (;;) {
        out->signo = 0;
        left = deadline < 0 ? -1 : deadline - s1_now_ns();
        if (deadline >= 0 && left < 0)
            left = 0;
        ts.tv_sec = left / 1000000000;
        ts.tv_nsec = left % 1000000000;
        sig = (int)syscall(SYS_rt_sigtimedwait, &all, &si, left < 0 ? NULL : &ts, _NSIG / 8);
        if (sig < 0)
            return errno == EAGAIN || errno == EINTR ? 0 : -errno;
        if (s1_own_signal(sig, si.si_code, si.si_pid))
            continue;
        out->signo = sig;
        out->code = si.si_code;
        out->pid = si.si_pid;
        out->uid = (int)si.si_uid;
        out->forwarded = 0;
        if (sig != SIGCHLD) {
            /* ESRCH: the app has just ended; its SIGCHLD tells the rest. */
            if (forward_to != 0 && kill(forward_to, sig) == 0)
                out->forwarded = 1;
            return 0;
        }
        n = s1_reap(exits, max, 0);
        if (!watch || n < 0 || n == max || s1_watched(exits, n, watch, nwatch))
            return n;
    }
}

/* Send sig to each pid (negative: a process group).  Returns how many were
 * delivered; ESRCH is expected (the target exited first) and not an error. */
int s1_kill_many(const int *pids, int n, int sig)
{
    int i, sent = 0, err = 0;

    for (i = 0; i < n; i++) {
        if (kill(pids[i], sig) == 0)
            sent++;
        else if (errno != ESRCH)
            err = errno;
    }
    return sent == 0 && err ? -err : sent;
}

const char *s1_signal_name(int sig)
{
    const char *name = sigabbrev_np(sig);
    return name ? name : "";
}

int s1_signal_number(const char *name)
{
    int sig;

    for (sig = 1; sig < SIGRTMIN; sig++) {
        const char *abbrev = sigabbrev_np(sig);
        if (abbrev && strcmp(abbrev, name) == 0)
            return sig;
    }
    return -EINVAL;
}
