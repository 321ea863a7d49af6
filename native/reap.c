/*
 * Reaping: drain every child that has changed state, in one call, with the
 * rusage of each.  The init calls it once per SIGCHLD wake-up; SIGCHLD is
 * not queued per child, so the loop must run until nothing is left.  With
 * own_only, only the calling thread's children (__WNOTHREAD): a pod's init
 * reaps its spawner thread's children through their pidfds (children.c).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <sys/resource.h>
#include <sys/wait.h>

#include "stage1.h"

int s1_reap(struct s1_exit *out, int max, int own_only)
{
    struct rusage ru;
    int n = 0, status;
    pid_t pid;

    while (n < max) {
        pid = wait4(-1, &status, WNOHANG | (own_only ? __WNOTHREAD : 0), &ru);
        if (pid == 0)
            break;
        if (pid < 0) {
            if (errno == EINTR)
                continue;
            /* ECHILD: no children at all, the normal end of a drain. */
            if (errno == ECHILD)
                break;
            return n ? n : -errno;
        }
        out[n].pid = pid;
        out[n].status = status;
        out[n].utime = ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6;
        out[n].stime = ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
        out[n].maxrss_kb = ru.ru_maxrss;
        n++;
    }
    return n;
}

/* 1 while the init still has a child (running or not yet reaped), else 0.
 * WNOWAIT leaves any zombie for s1_reap to collect with its rusage. */
int s1_has_children(void)
{
    siginfo_t si;

    si.si_pid = 0;
    if (waitid(P_ALL, 0, &si, WEXITED | WNOHANG | WNOWAIT) < 0)
        return errno == ECHILD ? 0 : -errno;
    return 1;
}
