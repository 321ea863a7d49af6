/*
 * The app that the benchmarked inits run, compiled by the bench into a
 * temporary directory.  It is C so that its own start-up and reaction time
 * stay out of the init's figures.
 *
 *   app wait FD       write 'r' on FD, then for each SIGUSR1 write 'x' on FD;
 *                     exit 0 on SIGTERM or SIGINT
 *   app storm FD N    write 'r' on FD; on SIGUSR1 make N orphans that exit
 *                     at once (each the child of a child that has already
 *                     exited, so the init reaps it), write 'd' on FD; exit 0
 *                     on SIGTERM or SIGINT
 *
 * FD is a pipe inherited from the bench.  The signals are blocked from the
 * start and taken with sigwaitinfo, so none is lost between two waits and
 * the app never runs a handler.  Any failure writes 'E' and exits 1.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static int out_fd = -1;

static void die(const char *what)
{
    fprintf(stderr, "app: %s: %s\n", what, strerror(errno));
    if (out_fd >= 0)
        (void)write(out_fd, "E", 1);
    exit(1);
}

static void say(char c)
{
    if (write(out_fd, &c, 1) != 1)
        die("write");
}

static int next_signal(const sigset_t *set)
{
    int sig;

    do
        sig = sigwaitinfo(set, NULL);
    while (sig < 0 && errno == EINTR);
    if (sig < 0)
        die("sigwaitinfo");
    return sig;
}

/* The middle child exits right after its fork, so the grandchild is
 * reparented to the init (PID 1 of the namespace) whether it has exited
 * already or not: a zombie that changes parent is reported to the new one. */
static void make_orphans(long n)
{
    long i;
    pid_t pid;

    for (i = 0; i < n; i++) {
        pid = fork();
        if (pid < 0)
            die("fork");
        if (pid == 0) {
            (void)fork();
            _exit(0);
        }
        while (waitpid(pid, NULL, 0) < 0)
            if (errno != EINTR)
                die("waitpid");
    }
}

int main(int argc, char **argv)
{
    sigset_t set;
    long orphans = -1;
    int sig;

    if (argc == 3 && strcmp(argv[1], "wait") == 0)
        orphans = -1;
    else if (argc == 4 && strcmp(argv[1], "storm") == 0)
        orphans = atol(argv[3]);
    else {
        fprintf(stderr, "usage: app wait FD | app storm FD N\n");
        return 2;
    }
    out_fd = atoi(argv[2]);
    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    if (sigprocmask(SIG_BLOCK, &set, NULL) < 0)
        die("sigprocmask");
    say('r');
    for (;;) {
        sig = next_signal(&set);
        if (sig != SIGUSR1)
            return 0;
        if (orphans >= 0) {
            make_orphans(orphans);
            orphans = -1;
            say('d');
        } else {
            say('x');
        }
    }
}
