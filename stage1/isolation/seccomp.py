"""Each app's seccomp filter: the syscall lists, the appc isolators' sets
and wildcards, and one compiled program per distinct rule set.

What an app gets (rkt's stage1 gave the same, through systemd's
SystemCallFilter=; rkt's stage1/init/common/seccomp.go):

  no seccomp isolator      rkt's default whitelist (`@rkt/default-whitelist`,
                           Docker's default list); everything else fails with
                           EPERM.  rkt killed the app with SIGSYS instead, and
                           that was its most reported seccomp complaint (an
                           app that probes for a syscall dies of it): EPERM is
                           what Docker, Kubernetes and runc answer.
  os/linux/seccomp-retain-set   only the set (and execve, exit, exit_group:
                           the "minimum set of syscalls required for app
                           life-cycle" ace.md lets an implementation add);
                           `@appc.io/all` in it: no filter at all.
  os/linux/seccomp-remove-set   everything but the set; `@appc.io/empty` in it:
                           the default whitelist.
  either, with `errno`     blocked syscalls fail with that errno; without it
                           they kill the app with SIGSYS, as the spec says and
                           rkt did (the whole process: SCMP_ACT_KILL_PROCESS).
  --disable-seccomp        no filter for any app.

A whitelist (the default filter, or any retain-set) answers ENOSYS, rather
than its errno or SIGSYS, for the syscalls the kernel gained after the lists
were written (NEWER) and the set does not name: what the kernel the lists
were written for said.  libc then falls back to the older call the list
does allow (glibc's clone3 for threads and posix_spawn, faccessat2,
close_range, statx, ...) or goes without (rseq, which glibc registers at
the start of every program: under SIGSYS no glibc program since 2.35 would
start at all), where EPERM would be taken as a real refusal.  runc does the
same.  The set of syscalls allowed is the list's, exactly.

Names are checked against libseccomp's table (an unknown one is bad input
naming its place in the manifest); a name that exists only on another
architecture (chown32 on x86_64) is known and simply matches nothing here.

The lists are data, written out below from rkt's seccomp_wildcards.go
(Docker's default profile of 2016, which rkt kept as its own).
"""
import errno
import os

from stage1.engine import native
from stage1.pod.errors import ManifestError

ALL, EMPTY = "@appc.io/all", "@appc.io/empty"
RETAIN, REMOVE = "retain", "remove"
DEFAULT_ERRNO = errno.EPERM
LIFECYCLE = ("execve", "exit", "exit_group")

DOCKER_DEFAULT_WHITELIST = (
    "accept", "accept4", "access", "alarm", "bind", "brk", "capget", "capset", "chdir",
    "chmod", "chown", "chown32", "clock_getres", "clock_gettime", "clock_nanosleep", "close",
    "connect", "copy_file_range", "creat", "dup", "dup2", "dup3", "epoll_create",
    "epoll_create1", "epoll_ctl", "epoll_ctl_old", "epoll_pwait", "epoll_wait",
    "epoll_wait_old", "eventfd", "eventfd2", "execve", "execveat", "exit", "exit_group",
    "faccessat", "fadvise64", "fadvise64_64", "fallocate", "fanotify_mark", "fchdir",
    "fchmod", "fchmodat", "fchown", "fchown32", "fchownat", "fcntl", "fcntl64", "fdatasync",
    "fgetxattr", "flistxattr", "flock", "fork", "fremovexattr", "fsetxattr", "fstat",
    "fstat64", "fstatat64", "fstatfs", "fstatfs64", "fsync", "ftruncate", "ftruncate64",
    "futex", "futimesat", "getcpu", "getcwd", "getdents", "getdents64", "getegid",
    "getegid32", "geteuid", "geteuid32", "getgid", "getgid32", "getgroups", "getgroups32",
    "getitimer", "getpeername", "getpgid", "getpgrp", "getpid", "getppid", "getpriority",
    "getrandom", "getresgid", "getresgid32", "getresuid", "getresuid32", "getrlimit",
    "get_robust_list", "getrusage", "getsid", "getsockname", "getsockopt", "get_thread_area",
    "gettid", "gettimeofday", "getuid", "getuid32", "getxattr", "inotify_add_watch",
    "inotify_init", "inotify_init1", "inotify_rm_watch", "io_cancel", "ioctl", "io_destroy",
    "io_getevents", "ioprio_get", "ioprio_set", "io_setup", "io_submit", "ipc", "kill",
    "lchown", "lchown32", "lgetxattr", "link", "linkat", "listen", "listxattr", "llistxattr",
    "_llseek", "lremovexattr", "lseek", "lsetxattr", "lstat", "lstat64", "madvise",
    "memfd_create", "mincore", "mkdir", "mkdirat", "mknod", "mknodat", "mlock", "mlock2",
    "mlockall", "mmap", "mmap2", "mprotect", "mq_getsetattr", "mq_notify", "mq_open",
    "mq_timedreceive", "mq_timedsend", "mq_unlink", "mremap", "msgctl", "msgget", "msgrcv",
    "msgsnd", "msync", "munlock", "munlockall", "munmap", "nanosleep", "newfstatat",
    "_newselect", "open", "openat", "pause", "personality", "pipe", "pipe2", "poll", "ppoll",
    "prctl", "pread64", "preadv", "prlimit64", "pselect6", "pwrite64", "pwritev", "read",
    "readahead", "readlink", "readlinkat", "readv", "recv", "recvfrom", "recvmmsg",
    "recvmsg", "remap_file_pages", "removexattr", "rename", "renameat", "renameat2",
    "restart_syscall", "rmdir", "rt_sigaction", "rt_sigpending", "rt_sigprocmask",
    "rt_sigqueueinfo", "rt_sigreturn", "rt_sigsuspend", "rt_sigtimedwait",
    "rt_tgsigqueueinfo", "sched_getaffinity", "sched_getattr", "sched_getparam",
    "sched_get_priority_max", "sched_get_priority_min", "sched_getscheduler",
    "sched_rr_get_interval", "sched_setaffinity", "sched_setattr", "sched_setparam",
    "sched_setscheduler", "sched_yield", "seccomp", "select", "semctl", "semget", "semop",
    "semtimedop", "send", "sendfile", "sendfile64", "sendmmsg", "sendmsg", "sendto",
    "setfsgid", "setfsgid32", "setfsuid", "setfsuid32", "setgid", "setgid32", "setgroups",
    "setgroups32", "setitimer", "setpgid", "setpriority", "setregid", "setregid32",
    "setresgid", "setresgid32", "setresuid", "setresuid32", "setreuid", "setreuid32",
    "setrlimit", "set_robust_list", "setsid", "setsockopt", "set_thread_area",
    "set_tid_address", "setuid", "setuid32", "setxattr", "shmat", "shmctl", "shmdt", "shmget",
    "shutdown", "sigaltstack", "signalfd", "signalfd4", "sigreturn", "socket", "socketcall",
    "socketpair", "splice", "stat", "stat64", "statfs", "statfs64", "symlink", "symlinkat",
    "sync", "sync_file_range", "syncfs", "sysinfo", "syslog", "tee", "tgkill", "time",
    "timer_create", "timer_delete", "timerfd_create", "timerfd_gettime", "timerfd_settime",
    "timer_getoverrun", "timer_gettime", "timer_settime", "times", "tkill", "truncate",
    "truncate64", "ugetrlimit", "umask", "uname", "unlink", "unlinkat", "utime", "utimensat",
    "utimes", "vfork", "vmsplice", "wait4", "waitid", "waitpid", "write", "writev",
    "arch_prctl", "modify_ldt", "chroot", "clone")

DOCKER_DEFAULT_BLACKLIST = (
    "acct", "add_key", "adjtimex", "bpf", "clock_adjtime", "clock_settime", "create_module",
    "delete_module", "finit_module", "get_kernel_syms", "get_mempolicy", "init_module",
    "ioperm", "iopl", "kcmp", "kexec_file_load", "kexec_load", "keyctl", "lookup_dcookie",
    "mbind", "mount", "move_pages", "name_to_handle_at", "nfsservctl", "open_by_handle_at",
    "perf_event_open", "pivot_root", "process_vm_readv", "process_vm_writev", "ptrace",
    "query_module", "quotactl", "reboot", "request_key", "set_mempolicy", "setns",
    "settimeofday", "stime", "swapon", "swapoff", "sysfs", "_sysctl", "umount", "umount2",
    "unshare", "uselib", "userfaultfd", "ustat", "vm86", "vm86old")

# What rkt adds to its whitelist on arm and arm64.
RKT_ARM_WHITELIST = ("arm_fadvise64_64", "arm_sync_file_range", "breakpoint", "cacheflush",
                     "set_tls", "sync_file_range2")

_ARM = os.uname().machine.startswith(("arm", "aarch64"))   # platform.machine()
RKT_DEFAULT_WHITELIST = DOCKER_DEFAULT_WHITELIST + (RKT_ARM_WHITELIST if _ARM else ())
RKT_DEFAULT_BLACKLIST = DOCKER_DEFAULT_BLACKLIST

WILDCARDS = {
    "@rkt/default-whitelist": RKT_DEFAULT_WHITELIST,
    "@rkt/default-blacklist": RKT_DEFAULT_BLACKLIST,
    "@docker/default-whitelist": DOCKER_DEFAULT_WHITELIST,
    "@docker/default-blacklist": DOCKER_DEFAULT_BLACKLIST,
}

# Syscalls Linux gained after the lists (4.3 to 6.x) that neither list
# names, as far as libseccomp knows them; in an errno whitelist they answer
# ENOSYS (see the module docstring).
NEWER = (
    "membarrier", "preadv2", "pwritev2", "pkey_mprotect", "pkey_alloc", "pkey_free", "statx",
    "io_pgetevents", "rseq", "pidfd_send_signal", "io_uring_setup", "io_uring_enter",
    "io_uring_register", "open_tree", "move_mount", "fsopen", "fsconfig", "fsmount", "fspick",
    "pidfd_open", "clone3", "close_range", "openat2", "pidfd_getfd", "faccessat2",
    "process_madvise", "epoll_pwait2", "mount_setattr", "quotactl_fd",
    "landlock_create_ruleset", "landlock_add_rule", "landlock_restrict_self", "memfd_secret",
    "process_mrelease", "futex_waitv", "set_mempolicy_home_node", "cachestat", "fchmodat2")


class Filter:
    """One rule set: the default action and the exceptions to it.  Equal
    rule sets compile to one program, shared by every app that has it."""
    __slots__ = ("default", "rules", "_key")

    def __init__(self, default, rules):
        self.default = default                      # native.SECCOMP_* or an errno
        self.rules = tuple(sorted(rules.items()))   # (name, action)
        self._key = (default, self.rules)

    def allowed(self, name):
        return dict(self.rules).get(name, self.default) == native.SECCOMP_ALLOW

    @property
    def program(self):
        found = _compiled.get(self._key)
        if found is None:
            found = _compiled[self._key] = native.seccomp_compile(self.default, list(self.rules))
        return found


_compiled = {}


_filters = {}


def whitelist(names, action):
    """Allow `names`; everything else gets `action` (NEWER: ENOSYS).  The
    same list and action give the same Filter: a pod of 200 apps builds
    the default one once."""
    key = (RETAIN, tuple(names), action)
    found = _filters.get(key)
    if found is None:
        rules = {}
        if action != errno.ENOSYS:
            rules.update((name, errno.ENOSYS) for name in NEWER)
        rules.update((name, native.SECCOMP_ALLOW) for name in names)
        found = _filters[key] = Filter(action, rules)
    return found


def blacklist(names, action):
    key = (REMOVE, tuple(names), action)
    found = _filters.get(key)
    if found is None:
        found = _filters[key] = Filter(native.SECCOMP_ALLOW, {name: action for name in names})
    return found


def default_filter():
    return whitelist(RKT_DEFAULT_WHITELIST, DEFAULT_ERRNO)


def for_app(limits):
    """The Filter of an app, from its Limits.seccomp (isolators.SeccompSet),
    or None for none.  ManifestError names an unknown syscall or wildcard."""
    spec = limits.seccomp
    if spec is None:
        return default_filter()
    action = native.SECCOMP_KILL if spec.errno is None else spec.errno
    given = [item for item, _ in spec.entries]
    names = _expand(spec)
    if spec.mode == RETAIN and ALL in given:
        return None                  # appc: masks the rest, opts out of filtering
    if spec.mode == REMOVE and EMPTY in given:
        return whitelist(RKT_DEFAULT_WHITELIST, action)  # appc: opts in to ours
    if spec.mode == RETAIN:
        return whitelist(names + list(LIFECYCLE), action)
    return blacklist(names, action)


def _expand(spec):
    names = []
    for item, where in spec.entries:
        if item in (EMPTY, ALL) and not (item == ALL and spec.mode == REMOVE):
            continue
        if item == ALL:
            raise ManifestError(spec.source, where, "%s cannot be removed: the app could not "
                                "even exec (a retain-set with it turns filtering off)" % ALL)
        if item.startswith("@"):
            if item not in WILDCARDS:
                raise ManifestError(spec.source, where, "unknown seccomp wildcard %r: stage1 "
                                    "knows %s" % (item, ", ".join(sorted(WILDCARDS) +
                                                                  [ALL, EMPTY])))
            names.extend(WILDCARDS[item])
        elif not native.seccomp_known(item):
            raise ManifestError(spec.source, where, "unknown syscall %r" % item)
        else:
            names.append(item)
    return names
