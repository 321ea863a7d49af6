/*
 * Spawning: everything between fork and exec happens in s1_child(), in C,
 * with async-signal-safe calls only (no malloc, no stdio, no Python), as
 * CPython's _posixsubprocess does.  The parent builds every string and array
 * before fork.  The child shares the parent's memory until it execs (vfork,
 * below): a failing step writes (step, errno) there and exits, and the
 * parent, which the kernel resumes only once the child has exec'd or
 * exited, reads it (as glibc's posix_spawn does; no pipe, no system call).
 *
 * The child works in a fixed order:
 *   standard fds -> session/process group -> terminal foreground ->
 *   cgroup -> oom_score_adj -> rlimits -> chroot (or pivot_root) -> chdir -> umask ->
 *   bounding set -> keepcaps -> setgroups -> gid -> uid (last of the ids: it
 *   takes away the right to change the rest) -> capability sets -> ambient ->
 *   no_new_privs -> signal dispositions and mask -> close-on-exec sweep ->
 *   seccomp filter -> exec.
 * Signals stay blocked until just before exec, so nothing the init is sent
 * meanwhile runs a handler in the child, and SIGTTOU cannot stop the child
 * while it takes the terminal.
 *
 * The seccomp filter comes last so that it judges the app's syscalls and
 * none of ours: after it the child only calls execve (and, if that fails,
 * _exit).  The kernel installs a filter only for a
 * process that has no_new_privs set or CAP_SYS_ADMIN in its effective set.
 * An app without no_new_privs runs as root (the parent forces no_new_privs
 * on other users that get a filter); when its own set lacks CAP_SYS_ADMIN,
 * the parent passes it in cap_until_exec, which capset keeps effective and
 * permitted (never inheritable, never in the bounding set) until exec.  exec
 * then drops it: a root process's permitted set after exec is its bounding
 * set plus its inheritable set (capabilities(7), "Capabilities and
 * execution of programs by root"), and ambient needs inheritable.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <linux/capability.h>
#include <linux/close_range.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "stage1.h"

#define S1_MAX_FDS 64

/* Where a child tells its parent why it did not exec: in the parent's
 * memory, which the child shares (the parent reads it once resumed). */
struct s1_child_args {
    const struct s1_spawn *req;
    int failed, step, err;
};

static void s1_report(struct s1_child_args *args, int step, int err)
{
    args->step = step;
    args->err = err;
    args->failed = 1;
    _exit(127);
}

/* Move each source fd that lies inside [0, nfds) out of the way first, so a
 * dup2 onto a low number never destroys a source still to be used. */
static int s1_child_fds(const struct s1_spawn *req)
{
    int tmp[S1_MAX_FDS], i, src, flags;

    for (i = 0; i < req->nfds; i++) {
        src = req->fd_map[i];
        tmp[i] = src;
        if (src >= 0 && src < req->nfds && src != i) {
            tmp[i] = fcntl(src, F_DUPFD_CLOEXEC, req->nfds);
            if (tmp[i] < 0)
                return -1;
        }
    }
    for (i = 0; i < req->nfds; i++) {
        if (tmp[i] < 0) {
            close(i);
        } else if (tmp[i] == i) {
            flags = fcntl(i, F_GETFD);
            if (flags < 0 || fcntl(i, F_SETFD, flags & ~FD_CLOEXEC) < 0)
                return -1;
        } else if (dup2(tmp[i], i) < 0) {
            return -1;
        }
    }
    return 0;
}

static int s1_write_file(const char *path, const char *text)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    ssize_t rc;

    if (fd < 0)
        return -1;
    rc = write(fd, text, strlen(text));
    close(fd);
    return rc < 0 ? -1 : 0;
}

/* A chroot can be left by a process that keeps CAP_SYS_CHROOT (chroot into
 * a subdirectory, then walk up from the old cwd).  pivot_root cannot: the
 * app gets a mount namespace of its own, a copy of the pod's, whose root is
 * the app's root, and the pod's root is unmounted from it.  root must be a
 * mount point (rootfs.py binds it onto itself).  pivot_root(".", ".") stacks
 * the old root on top of the new one, so one detach removes it.
 *
 * A copy of the pod's namespace holds every app's root, each with its
 * /proc, /sys, /dev and protected paths: copying it for each app costs
 * O(apps x mounts).  With a template (the pod's namespace as it was before
 * any root was mounted, which the init keeps open), the child clones only
 * its root's tree (open_tree), copies the small template instead, and moves
 * the tree in at the same path. */
static int s1_child_new_ns(const char *root, int template_fd)
{
    int tree;

    if (template_fd < 0)
        return unshare(CLONE_NEWNS);
    tree = (int)syscall(SYS_open_tree, AT_FDCWD, root,
                        OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE);
    if (tree < 0)
        return -1;
    if (syscall(SYS_setns, template_fd, CLONE_NEWNS) < 0 || unshare(CLONE_NEWNS) < 0 ||
        mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0 ||
        syscall(SYS_move_mount, tree, "", AT_FDCWD, root, MOVE_MOUNT_F_EMPTY_PATH) < 0) {
        close(tree);
        return -1;
    }
    return close(tree);
}

static int s1_child_pivot(const char *root, int template_fd)
{
    if (s1_child_new_ns(root, template_fd) < 0)
        return -1;
    /* Nothing done in the app's namespace may propagate to the pod's. */
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
        return -1;
    if (chdir(root) < 0)
        return -1;
    if (syscall(SYS_pivot_root, ".", ".") < 0)
        return -1;
    if (umount2(".", MNT_DETACH) < 0)
        return -1;
    return chdir("/");
}

static int s1_child_rlimits(const struct s1_spawn *req)
{
    struct rlimit rl;
    int i;

    for (i = 0; i < req->nrlimits; i++) {
        rl.rlim_cur = req->rlimits[i].soft;
        rl.rlim_max = req->rlimits[i].hard;
        if (setrlimit(req->rlimits[i].resource, &rl) < 0)
            return -1;
    }
    return 0;
}

/* Drop from the bounding set every capability not kept.  EINVAL marks the
 * end of what this kernel knows. */
static int s1_child_capbset(uint64_t keep)
{
    int cap;

    for (cap = 0; cap < 64; cap++) {
        if (keep & (1ULL << cap))
            continue;
        if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0) {
            if (errno == EINVAL)
                break;
            return -1;
        }
    }
    return 0;
}

static int s1_child_capset(uint64_t caps, uint64_t until_exec)
{
    struct __user_cap_header_struct hdr = { _LINUX_CAPABILITY_VERSION_3, 0 };
    struct __user_cap_data_struct data[2];
    int i;

    for (i = 0; i < 2; i++) {
        data[i].effective = (uint32_t)((caps | until_exec) >> (32 * i));
        data[i].permitted = data[i].effective;
        data[i].inheritable = (uint32_t)(caps >> (32 * i));
    }
    return (int)syscall(SYS_capset, &hdr, data);
}

/* The ambient set carries capabilities across exec for a non-root uid; it
 * is cleared (whatever the init inherited) and only `caps` is raised. */
static int s1_child_ambient(uint64_t caps)
{
    int cap;

    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0)
        return errno == EINVAL && !caps ? 0 : -1;    /* EINVAL: before Linux 4.3 */
    for (cap = 0; cap < 64; cap++) {
        if ((caps & (1ULL << cap)) &&
            prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap, 0, 0) < 0)
            return -1;
    }
    return 0;
}

/* The parent's signal dispositions, read before it spawns (once a batch):
 * bit (n-1) of each mask for signal n.  The child shares the parent's
 * memory until exec, so it reads them here. */
static uint64_t s1_parent_ignored, s1_parent_caught;

void s1_read_dispositions(void)
{
    struct sigaction sa;
    int sig;

    s1_parent_ignored = s1_parent_caught = 0;
    for (sig = 1; sig <= 64; sig++) {
        if (sig == SIGKILL || sig == SIGSTOP || sigaction(sig, NULL, &sa) < 0)
            continue;       /* glibc answers EINVAL for its 32 and 33 */
        if (sa.sa_handler == SIG_IGN)
            s1_parent_ignored |= (uint64_t)1 << (sig - 1);
        else if (sa.sa_handler != SIG_DFL)
            s1_parent_caught |= (uint64_t)1 << (sig - 1);
    }
}

/* Give the app the dispositions and mask the init inherited: ignored stays
 * ignored, everything else default.  Only the signals whose disposition in
 * the parent differs from the app's are set (as glibc's posix_spawn does):
 * a handler of the parent's is reset too, so that it cannot run in the
 * child (which shares the parent's memory) once the mask is restored.
 * Most spawns change two or three, not sixty-two. */
static int s1_child_signals(const struct s1_spawn *req)
{
    struct sigaction sa;
    sigset_t mask;
    uint64_t bit;
    int sig, ignore;

    memset(&sa, 0, sizeof sa);
    sigemptyset(&mask);
    for (sig = 1; sig <= 64; sig++) {
        if (sig == SIGKILL || sig == SIGSTOP)
            continue;
        bit = (uint64_t)1 << (sig - 1);
        ignore = (req->sigign & bit) != 0;
        if (ignore ? !(s1_parent_ignored & bit) : ((s1_parent_ignored | s1_parent_caught) & bit)) {
            sa.sa_handler = ignore ? SIG_IGN : SIG_DFL;
            /* glibc reserves 32 and 33 and answers EINVAL: nothing to undo. */
            sigaction(sig, &sa, NULL);
        }
        if (req->sigmask & bit)
            sigaddset(&mask, sig);
    }
    return sigprocmask(SIG_SETMASK, &mask, NULL);
}

static int s1_child_close_fds(int lowfd)
{
    struct rlimit rl;
    int fd, flags;

    if (close_range((unsigned)lowfd, ~0U, CLOSE_RANGE_CLOEXEC) == 0)
        return 0;
    /* Kernels before 5.11: walk the table up to the limit. */
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
        return -1;
    for (fd = lowfd; (rlim_t)fd < rl.rlim_cur; fd++) {
        flags = fcntl(fd, F_GETFD);
        if (flags >= 0 && !(flags & FD_CLOEXEC))
            fcntl(fd, F_SETFD, flags | FD_CLOEXEC);
    }
    return 0;
}

/* The raw call: the program was built by the parent (seccomp.c) and lives
 * in its memory, which the child shares until exec. */
static int s1_child_seccomp(const struct s1_spawn *req)
{
    struct sock_fprog prog;

    prog.len = (unsigned short)req->seccomp_len;
    prog.filter = (struct sock_filter *)req->seccomp_prog;
    if (req->seccomp_len <= 0 || req->seccomp_len > BPF_MAXINSNS) {
        errno = EINVAL;
        return -1;
    }
    return (int)syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog);
}

/* Try each candidate as execvp does: EACCES is remembered while the search
 * goes on, not-found errors move on, anything else ends the search. */
static int s1_child_exec(const struct s1_spawn *req)
{
    int i, saved = 0;

    for (i = 0; req->candidates[i]; i++) {
        execve(req->candidates[i], req->argv, req->envp);
        if (errno == EACCES)
            saved = EACCES;
        else if (errno != ENOENT && errno != ENOTDIR && errno != ESTALE &&
                 errno != ENODEV && errno != ETIMEDOUT)
            return errno;
    }
    return saved ? saved : (errno ? errno : ENOENT);
}

#define S1_TRY(step, call) do { if ((call) < 0) s1_report(args, step, errno); } while (0)

static void s1_child(struct s1_child_args *args)
{
    const struct s1_spawn *req = args->req;
    int i;

    S1_TRY(S1_STEP_FDS, s1_child_fds(req));
    if (req->pgid_mode == S1_PGID_NEW_SESSION)
        S1_TRY(S1_STEP_SETSID, setsid());
    else if (req->pgid_mode == S1_PGID_NEW_GROUP)
        S1_TRY(S1_STEP_SETPGID, setpgid(0, 0));
    if (req->tty_fd >= 0)
        S1_TRY(S1_STEP_TCSETPGRP, tcsetpgrp(req->tty_fd, getpgrp()));
    for (i = 0; req->cgroup_procs && req->cgroup_procs[i]; i++)
        S1_TRY(S1_STEP_CGROUP, s1_write_file(req->cgroup_procs[i], "0"));
    if (req->oom_score_adj)
        S1_TRY(S1_STEP_OOM, s1_write_file("/proc/self/oom_score_adj", req->oom_score_adj));
    S1_TRY(S1_STEP_RLIMIT, s1_child_rlimits(req));
    if (req->root)
        S1_TRY(req->pivot ? S1_STEP_PIVOT_ROOT : S1_STEP_CHROOT,
               req->pivot ? s1_child_pivot(req->root, req->mnt_template_fd)
                          : chroot(req->root));
    /* The pod's user namespace (--private-users) comes after everything
     * that needs the init's own privileges on the host (cgroup files,
     * oom_score_adj, the template namespace, pivot_root) and before the ids
     * and capabilities, which are then the namespace's. */
    if (req->userns_fd >= 0)
        S1_TRY(S1_STEP_USERNS, (int)syscall(SYS_setns, req->userns_fd, CLONE_NEWUSER));
    if (req->cwd)
        S1_TRY(S1_STEP_CHDIR, chdir(req->cwd));
    if (req->umask >= 0)
        umask((mode_t)req->umask);
    if (req->set_caps) {
        S1_TRY(S1_STEP_CAPBSET, s1_child_capbset(req->cap_bounding));
        S1_TRY(S1_STEP_KEEPCAPS, prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0));
    }
    if (req->ngroups >= 0)
        S1_TRY(S1_STEP_SETGROUPS, (int)syscall(SYS_setgroups, (size_t)req->ngroups,
                                                (const gid_t *)req->groups));
    if (req->gid != -1)
        S1_TRY(S1_STEP_SETGID, (int)syscall(SYS_setresgid, req->gid, req->gid, req->gid));
    if (req->uid != -1)
        S1_TRY(S1_STEP_SETUID, (int)syscall(SYS_setresuid, req->uid, req->uid, req->uid));
    if (req->set_caps) {
        S1_TRY(S1_STEP_CAPSET, s1_child_capset(req->cap_effective, req->cap_until_exec));
        S1_TRY(S1_STEP_AMBIENT, s1_child_ambient(req->cap_ambient));
    }
    if (req->no_new_privs)
        S1_TRY(S1_STEP_NO_NEW_PRIVS, prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0));
    S1_TRY(S1_STEP_SIGNALS, s1_child_signals(req));
    if (req->close_fds)
        S1_TRY(S1_STEP_CLOSE_FDS, s1_child_close_fds(req->nfds));
    if (req->seccomp_prog)
        S1_TRY(S1_STEP_SECCOMP, s1_child_seccomp(req));
    errno = s1_child_exec(req);
    s1_report(args, S1_STEP_EXEC, errno);
}

static int s1_child_entry(void *arg)
{
    s1_child(arg);
    return 127;    /* not reached: s1_child execs or _exits */
}

/* clone(CLONE_VM | CLONE_VFORK), as glibc's posix_spawn and CPython do: no
 * copy of the interpreter's page tables (a fork of a 14 MiB init costs more
 * than the exec), and the parent resumes as soon as the child has exec'd.
 * The child runs on a stack of its own, one per thread that spawns (the
 * spawner and its helpers, children.c), reused by each of its spawns since
 * that thread is suspended while its child uses it.  It shares the
 * parent's memory until exec, so it only writes its own stack and args,
 * and it changes ids with raw system calls: glibc's setxid wrappers
 * coordinate threads through memory. */
static pid_t s1_vfork(struct s1_child_args *args)
{
    static __thread char *stack;
    const size_t size = 256 * 1024;

    if (!stack) {
        stack = mmap(NULL, size, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
        if (stack == MAP_FAILED) {
            stack = NULL;
            return -1;
        }
    }
    return clone(s1_child_entry, stack + size, CLONE_VM | CLONE_VFORK | SIGCHLD, args);
}

/* Returns the pid of a child that has exec'd, or -1 with (step, errno) of
 * the failure; a child that failed has been reaped already.  A child killed
 * before its exec reports nothing: it is returned as started, and its end
 * is reaped as any other. */
static int s1_spawn_one(const struct s1_spawn *req, int *step_out, int *errno_out)
{
    struct s1_child_args args = { req, 0, S1_STEP_NONE, 0 };
    volatile struct s1_child_args *seen = &args;
    int status;
    pid_t pid;

    *step_out = S1_STEP_NONE;
    *errno_out = 0;
    if (req->nfds < 0 || req->nfds > S1_MAX_FDS) {
        *errno_out = EINVAL;
        return -1;
    }
    pid = s1_vfork(&args);
    if (pid < 0) {
        *errno_out = errno;
        return -1;
    }
    if (!seen->failed)
        return pid;
    *step_out = seen->step;
    *errno_out = seen->err;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    return -1;
}

int s1_spawn(const struct s1_spawn *req, int *step_out, int *errno_out)
{
    s1_read_dispositions();
    return s1_spawn_one(req, step_out, errno_out);
}

/* The spawns of a batch not claimed yet, one after the other, each index
 * claimed from *next: the spawner and its helpers share a batch this way
 * (children.c), each child stamped with the time its spawn returned.  The
 * parent's dispositions were read for the batch (s1_read_dispositions). */
void s1_spawn_claimed(const struct s1_spawn *const *reqs, int n, struct s1_spawned *out,
                      int *next)
{
    struct timespec ts;
    int i;

    while ((i = __atomic_fetch_add(next, 1, __ATOMIC_RELAXED)) < n) {
        out[i].pid = s1_spawn_one(reqs[i], &out[i].step, &out[i].err);
        clock_gettime(CLOCK_REALTIME, &ts);
        out[i].when_ns = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
        out[i].tracked = 0;
    }
}

/* A start pass of a thousand apps: the interpreter builds every request
 * first, then this loop spawns them one after the other, so that between
 * one child's exec and the next fork there is no interpreter at all (its
 * work for an app, woken after each exec with cold caches, cost it more
 * than the spawn). */
void s1_spawn_batch(const struct s1_spawn *const *reqs, int n, struct s1_spawned *out)
{
    int next = 0;

    s1_read_dispositions();
    s1_spawn_claimed(reqs, n, out, &next);
}

/* Hand the terminal to a process group; the init keeps SIGTTOU blocked, so
 * this works from the background. */
int s1_tty_foreground(int fd, int pgid)
{
    return tcsetpgrp(fd, pgid) < 0 ? -errno : 0;
}
