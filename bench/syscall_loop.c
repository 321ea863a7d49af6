/*
 * The seccomp suite's app, compiled static by the bench into an app root:
 * a syscall-heavy loop that times itself, so the pod around it stays out
 * of the figure.
 *
 *   syscall_loop N     N getppid() calls, then N 1-byte reads of /dev/zero;
 *                      prints "getppid NS" and "read NS", nanoseconds per call
 *
 * getppid is about the cheapest system call there is, so any cost of the
 * filter shows in full; the read goes through the VFS as real programs do.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static double now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e9 + ts.tv_nsec;
}

int main(int argc, char **argv)
{
    long n = argc > 1 ? atol(argv[1]) : 1000000, i;
    char byte;
    double t0;
    int fd;

    t0 = now_ns();
    for (i = 0; i < n; i++)
        syscall(SYS_getppid);      /* not glibc's getppid(): never cached */
    printf("getppid %.1f\n", (now_ns() - t0) / n);
    fd = open("/dev/zero", O_RDONLY);
    if (fd < 0) {
        perror("syscall_loop: /dev/zero");
        return 1;
    }
    t0 = now_ns();
    for (i = 0; i < n; i++)
        if (read(fd, &byte, 1) != 1) {
            perror("syscall_loop: read");
            return 1;
        }
    printf("read %.1f\n", (now_ns() - t0) / n);
    return 0;
}
