/*
 * stage1 native layer: the one header.
 *
 * Everything between the CDEF markers is also the cffi cdef (out-of-line API
 * mode), so it holds only declarations that both a C compiler and cffi's
 * parser accept: enums for constants, plain structs, prototypes.  Functions
 * return >= 0 on success and -errno on failure; they hold no policy.
 */
#ifndef STAGE1_NATIVE_H
#define STAGE1_NATIVE_H

#include <stdint.h>
#include <sys/types.h>

/* CDEF-BEGIN */
enum { S1_NATIVE_VERSION = 15 };

/* Steps of the child path between fork and exec, in the order they run.
 * A failure is reported to the parent as (step, errno). */
enum {
    S1_STEP_NONE = 0,
    S1_STEP_FDS = 1,          /* dup2 of the standard fds */
    S1_STEP_SETSID = 2,
    S1_STEP_SETPGID = 3,
    S1_STEP_TCSETPGRP = 4,
    S1_STEP_CGROUP = 5,
    S1_STEP_OOM = 6,
    S1_STEP_RLIMIT = 7,
    S1_STEP_CHROOT = 8,
    S1_STEP_CHDIR = 9,
    S1_STEP_UMASK = 10,
    S1_STEP_CAPBSET = 11,
    S1_STEP_KEEPCAPS = 12,
    S1_STEP_SETGROUPS = 13,
    S1_STEP_SETGID = 14,
    S1_STEP_SETUID = 15,
    S1_STEP_CAPSET = 16,
    S1_STEP_AMBIENT = 17,     /* clear the ambient set (and raise what is asked) */
    S1_STEP_NO_NEW_PRIVS = 18,
    S1_STEP_SIGNALS = 19,
    S1_STEP_CLOSE_FDS = 20,
    S1_STEP_EXEC = 21,
    S1_STEP_PIVOT_ROOT = 22,  /* in place of CHROOT when pivot is set */
    S1_STEP_SECCOMP = 23,     /* install the filter: the last step before exec */
    S1_STEP_USERNS = 24       /* join the pod's user namespace, once in the app's root */
};

enum { S1_PGID_KEEP = 0, S1_PGID_NEW_GROUP = 1, S1_PGID_NEW_SESSION = 2 };

struct s1_rlimit {
    int resource;
    uint64_t soft;
    uint64_t hard;
};

/* One spawn request.  Every pointer is built by the parent before fork;
 * the child only reads it.  Optional parts are off at -1 / NULL / 0. */
struct s1_spawn {
    char *const *candidates;   /* NULL-terminated paths to try in turn */
    char *const *argv;
    char *const *envp;
    int nfds;                  /* child fd i becomes fd_map[i] (-1: close) */
    const int *fd_map;
    int close_fds;             /* mark every fd >= nfds close-on-exec */
    int pgid_mode;             /* S1_PGID_* */
    int tty_fd;                /* >= 0: make the new group the foreground */
    const char *const *cgroup_procs;  /* NULL-terminated files to write "0" */
    const char *oom_score_adj; /* text for /proc/self/oom_score_adj */
    int nrlimits;
    const struct s1_rlimit *rlimits;
    const char *root;          /* chroot into it */
    int pivot;                 /* enter root with a mount namespace of its own and
                                  pivot_root instead of chroot (see spawn.c) */
    int userns_fd;             /* >= 0: join this user namespace after the root */
    int mnt_template_fd;       /* with pivot, >= 0: that namespace is a copy of this
                                  one with root's tree moved in (see spawn.c) */
    const char *cwd;
    int umask;                 /* -1: keep */
    int ngroups;               /* -1: keep */
    const unsigned int *groups; /* gid_t */
    int gid;                   /* -1: keep; else the 32 bits of a gid_t */
    int uid;                   /* -1: keep; else the 32 bits of a uid_t */
    int set_caps;              /* apply the capability fields below */
    uint64_t cap_bounding;     /* capabilities to keep in the bounding set */
    uint64_t cap_effective;    /* effective = permitted = inheritable */
    uint64_t cap_until_exec;   /* also effective and permitted, not inheritable, for
                                  the steps after capset (see spawn.c); exec drops them */
    uint64_t cap_ambient;      /* raised as ambient; the rest of the set is cleared */
    int no_new_privs;
    const void *seccomp_prog;  /* a BPF program (struct sock_filter[]), or NULL */
    int seccomp_len;           /* its number of instructions */
    uint64_t sigmask;          /* bit (n-1): signal n blocked in the app */
    uint64_t sigign;           /* bit (n-1): signal n ignored in the app */
};

struct s1_exit {
    int pid;
    int status;
    double utime;
    double stime;
    long maxrss_kb;
};

struct s1_siginfo {
    int signo;
    int code;
    int pid;
    int uid;
    int forwarded;             /* s1_sigwait passed it on already */
};

/* signals.c */
int s1_signals_take(uint64_t *mask_out, uint64_t *ign_out);
int s1_signalfd_read(int fd, struct s1_siginfo *out, int max);
int s1_sigwait(int64_t timeout_ns, const int *watch, int nwatch, int forward_to,
               struct s1_siginfo *out, struct s1_exit *exits, int max);
int s1_kill_many(const int *pids, int n, int sig);
int s1_signal_number(const char *name);
const char *s1_signal_name(int sig);

/* reap.c: own_only walks the children of the calling thread alone
 * (__WNOTHREAD), not those of the spawner thread (children.c). */
int s1_reap(struct s1_exit *out, int max, int own_only);
int s1_has_children(void);

/* spawn.c */
int s1_spawn(const struct s1_spawn *req, int *step_out, int *errno_out);

/* s1_spawn for each of n requests in turn, with nothing in between: a
 * start pass of many apps hands them over at once (see spawn.c). */
struct s1_spawned {
    int pid;                   /* > 0: exec'd; -1: step and err say why not */
    int step;
    int err;
    int64_t when_ns;           /* CLOCK_REALTIME once s1_spawn returned */
    int tracked;               /* a child of the spawner thread with a pidfd (children.c) */
};
void s1_spawn_each(const struct s1_spawn *const *reqs, int n, struct s1_spawned *out);

/* children.c: the spawner thread, and the ends of its children found by
 * their pidfds, none walked. */
int s1_spawner_start(void);
int s1_reap_tracked(struct s1_exit *out, int max);
int s1_tty_foreground(int fd, int pgid);

/* seccomp.c ---------------------------------------------------------------
 * A filter built with libseccomp, exported as a BPF program for the child
 * to install.  An action is S1_SECCOMP_ALLOW, S1_SECCOMP_KILL (the whole
 * process, with SIGSYS) or an errno >= 0. */
enum { S1_SECCOMP_ALLOW = -1, S1_SECCOMP_KILL = -2 };
enum { S1_SECCOMP_INSN_SIZE = 8, S1_SECCOMP_MAX_INSNS = 4096 };

int s1_seccomp_known(const char *name);
int s1_seccomp_build(int default_action, const char *const *names, const int *actions,
                     int n, int *bad_out, void *out, int max_insns);

/* ns.c ------------------------------------------------------------------
 * Namespaces and mounts.  The kernel's numbers, as literals for cffi;
 * ns.c checks each against the system headers at build time. */
enum {
    S1_CLONE_NEWNS = 0x00020000,
    S1_CLONE_NEWCGROUP = 0x02000000,
    S1_CLONE_NEWUSER = 0x10000000,
    S1_CLONE_NEWUTS = 0x04000000,
    S1_CLONE_NEWIPC = 0x08000000,
    S1_CLONE_NEWPID = 0x20000000,
    S1_CLONE_NEWNET = 0x40000000
};
enum {
    S1_MS_RDONLY = 1,
    S1_MS_NOSUID = 2,
    S1_MS_NODEV = 4,
    S1_MS_NOEXEC = 8,
    S1_MS_REMOUNT = 32,
    S1_MS_BIND = 4096,
    S1_MS_REC = 16384,
    S1_MS_PRIVATE = 262144,
    S1_MS_SLAVE = 524288,
    S1_MS_SHARED = 1048576
};
enum { S1_MNT_DETACH = 2, S1_MOUNT_ATTR_RDONLY = 1 };

int s1_unshare(int flags);
int s1_setns(int fd, int nstype);
int s1_mount(const char *source, const char *target, const char *fstype,
             unsigned long flags, const char *data);
int s1_umount(const char *target, int flags);
int s1_mount_setattr(const char *path, int recursive, uint64_t attr_set, uint64_t attr_clr);
int s1_open_nofollow(const char *path);
int s1_idmap_bind(const char *path, int userns_fd);
int s1_sethostname(const char *name);
int s1_loopback_up(void);
/* CDEF-END */

/* Inside the native layer only (spawn.c, for children.c). */
void s1_read_dispositions(void);
void s1_spawn_claimed(const struct s1_spawn *const *reqs, int n, struct s1_spawned *out,
                      int *next);
void s1_spawn_batch(const struct s1_spawn *const *reqs, int n, struct s1_spawned *out);

#endif
