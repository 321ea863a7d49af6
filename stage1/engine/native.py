"""The only importer of the compiled module `stage1.engine._native`.

The C layer does syscall sequences and returns -errno; this module turns
that into OSError (or SpawnError, which names the child step that failed),
holds the names of steps and signals, and refuses a build whose version
does not match the header it was built from.
"""
import os
import sys

from stage1.engine._native import ffi, lib

NATIVE_VERSION = 15
if lib.S1_NATIVE_VERSION != NATIVE_VERSION:
    raise ImportError("stage1.engine._native is version %d, this stage1 needs %d: "
                      "rebuild with ./build.sh" % (lib.S1_NATIVE_VERSION, NATIVE_VERSION))

STEP_NAMES = {
    lib.S1_STEP_NONE: "spawn", lib.S1_STEP_FDS: "set up fds",
    lib.S1_STEP_SETSID: "setsid", lib.S1_STEP_SETPGID: "setpgid",
    lib.S1_STEP_TCSETPGRP: "take the terminal", lib.S1_STEP_CGROUP: "join cgroup",
    lib.S1_STEP_OOM: "set oom_score_adj", lib.S1_STEP_RLIMIT: "set rlimits",
    lib.S1_STEP_CHROOT: "chroot", lib.S1_STEP_PIVOT_ROOT: "pivot_root",
    lib.S1_STEP_CHDIR: "chdir",
    lib.S1_STEP_UMASK: "umask", lib.S1_STEP_CAPBSET: "drop bounding capabilities",
    lib.S1_STEP_KEEPCAPS: "keep capabilities", lib.S1_STEP_SETGROUPS: "setgroups",
    lib.S1_STEP_SETGID: "setgid", lib.S1_STEP_SETUID: "setuid",
    lib.S1_STEP_CAPSET: "set capabilities", lib.S1_STEP_AMBIENT: "set ambient capabilities",
    lib.S1_STEP_NO_NEW_PRIVS: "set no_new_privs", lib.S1_STEP_SIGNALS: "restore signals",
    lib.S1_STEP_CLOSE_FDS: "close fds", lib.S1_STEP_SECCOMP: "install the seccomp filter",
    lib.S1_STEP_USERNS: "join the pod's user namespace",
    lib.S1_STEP_EXEC: "exec",
}
STEP_EXEC = lib.S1_STEP_EXEC
PGID_KEEP, PGID_NEW_GROUP, PGID_NEW_SESSION = (
    lib.S1_PGID_KEEP, lib.S1_PGID_NEW_GROUP, lib.S1_PGID_NEW_SESSION)


class SpawnError(OSError):
    """The child failed at `step` with `errno` before or at exec."""

    def __init__(self, step, err, program, paths=None):
        super().__init__(err, os.strerror(err) if err else "failed")
        self.step = step
        self.program = program
        self.paths = paths or {}    # step -> the path it worked on (chdir, chroot)

    @property
    def step_name(self):
        return STEP_NAMES.get(self.step, "step %d" % self.step)

    def __str__(self):
        if self.step == STEP_EXEC:
            return "unable to exec %s: %s" % (self.program, self.strerror)
        path = self.paths.get(self.step)
        what = "%s to %s" % (self.step_name, path) if path else self.step_name
        return "unable to %s for %s: %s" % (what, self.program, self.strerror)


def _check(rc):
    if rc < 0:
        raise OSError(-rc, os.strerror(-rc))
    return rc


def take_signals():
    """Block every signal; return (signalfd, inherited mask, inherited ignored)."""
    mask = ffi.new("uint64_t *")
    ign = ffi.new("uint64_t *")
    fd = _check(lib.s1_signals_take(mask, ign))
    return fd, mask[0], ign[0]


_siginfo = ffi.new("struct s1_siginfo[64]")


def read_signals(fd):
    """Pending signals in arrival order, as (signo, code, sender pid, False)."""
    n = _check(lib.s1_signalfd_read(fd, _siginfo, 64))
    out = []
    for i in range(n):
        info = _siginfo[i]
        out.append((info.signo, info.code, info.pid, False))
    return out


_watch = ffi.new("int[256]")


def wait_signal(timeout, watch=None, forward_to=0):
    """Block until a signal comes (timeout in seconds, -1 for ever).
    ([(signo, code, sender pid, forwarded)] or [] on timeout, exits) where
    exits are the children reaped with a SIGCHLD, as reap() gives them,
    else None.  With watch (a list of pids), a SIGCHLD that reaps none of
    them is handled in C and the wait goes on; with forward_to (pid, or
    -pgid), other signals are passed on to it at once."""
    ns = -1 if timeout < 0 else int(timeout * 1e9)
    if watch is None or len(watch) > 256:
        n = lib.s1_sigwait(ns, ffi.NULL, 0, forward_to, _siginfo, _exits, 256)
    else:
        _watch[0:len(watch)] = watch
        n = lib.s1_sigwait(ns, _watch, len(watch), forward_to, _siginfo, _exits, 256)
    info = _siginfo[0]
    if n < 0:
        _check(n)
    if info.signo == 0:
        return [], None
    if info.signo != 17:
        return [(info.signo, info.code, info.pid, bool(info.forwarded))], None
    exits = _exit_tuples(n)
    if n == 256:
        exits.extend(reap())
    return [(17, info.code, info.pid, False)], exits


def _exit_tuples(n):
    out = []
    for i in range(n):
        e = _exits[i]
        out.append((e.pid, e.status, e.utime, e.stime, e.maxrss_kb))
    return out


_exits = ffi.new("struct s1_exit[256]")


def reap(limit=None):
    """Every child that has ended since the last call (at most `limit`):
    (pid, status, utime, stime, maxrss_kb).  Tracking (track_children),
    the spawner's children through their pidfds, then the init's own
    (orphans) with a walk of them alone, or of every child while one of
    the spawner's has no pidfd."""
    out = []
    if _tracking:
        _drain(lib.s1_reap_tracked, out, limit)
        if limit is not None and len(out) >= limit:
            return out
        own = not _untracked
        got = len(out)
        _drain(lambda exits, want: lib.s1_reap(exits, want, own), out, limit)
        if not own:
            for e in out[got:]:
                _untracked.discard(e[0])
        return out
    _drain(lambda exits, want: lib.s1_reap(exits, want, 0), out, limit)
    return out


def _drain(call, out, limit):
    while True:
        want = 256 if limit is None else min(256, limit - len(out))
        n = _check(call(_exits, want))
        out.extend(_exit_tuples(n))
        if n < want or (limit is not None and len(out) >= limit):
            return


def reap_pid(pid):
    """Child pid's end if it has ended, else None (running, or not ours).
    Linux finds one pid without walking every child, as wait4(-1) does."""
    try:
        got, status, ru = os.wait4(pid, os.WNOHANG)
    except ChildProcessError:
        return None
    return (got, status, ru.ru_utime, ru.ru_stime, ru.ru_maxrss) if got else None


def kill_many(pids, sig):
    """Send sig to each pid (negative: group); the count delivered."""
    n = len(pids)
    if n == 1:           # the hot path of signal forwarding: no allocation
        try:
            os.kill(pids[0], sig)
            return 1
        except ProcessLookupError:
            return 0
    if n == 0:
        return 0
    arr = _pids if n <= 64 else ffi.new("int[]", n)
    arr[0:n] = pids
    return _check(lib.s1_kill_many(arr, n, sig))


_pids = ffi.new("int[64]")


def tty_foreground(fd, pgid):
    _check(lib.s1_tty_foreground(fd, pgid))


# glibc keeps 32 and 33 for itself, so SIGRTMIN is 34 for every process here.
RTMIN, RTMAX = 34, 64


def signal_name(sig):
    """SIGTERM for 15, SIGRTMIN+3 for 37."""
    if RTMIN <= sig <= RTMAX:
        return "SIGRTMIN+%d" % (sig - RTMIN)
    name = ffi.string(lib.s1_signal_name(sig)).decode()
    return "SIG" + name if name else "SIG%d" % sig


def signal_number(name):
    """The number for TERM, SIGTERM, 15, RTMIN+3 or SIGRTMAX-1; ValueError otherwise."""
    text = str(name).upper()
    if not text.isascii():
        raise ValueError("no such signal: %s" % name)
    text = text[3:] if text.startswith("SIG") else text
    if text.isdigit() and 1 <= int(text) <= RTMAX and int(text) not in (32, 33):
        return int(text)
    for base, first, sign in (("RTMIN", RTMIN, "+"), ("RTMAX", RTMAX, "-")):
        if text.startswith(base):
            off = text[len(base):]
            if off and (off[0] != sign or not off[1:].isdigit()):
                break
            sig = first + (int(off[1:]) if off else 0) * (1 if sign == "+" else -1)
            if RTMIN <= sig <= RTMAX:
                return sig
            break
    else:
        if text and not text.isdigit():
            sig = lib.s1_signal_number(text.encode())
            if sig > 0:
                return sig
    raise ValueError("no such signal: %s" % name)


_FS_ENCODING = sys.getfilesystemencoding()     # os.fsencode's, without its checks


def _cstrings(items, keep):
    """A NULL-terminated char*[] whose strings stay alive in `keep`: all
    of them in one buffer, two allocations whatever their number (argv,
    environment and PATH candidates are built for every spawn)."""
    enc = _FS_ENCODING
    data = [s if type(s) is bytes else s.encode(enc, "surrogateescape") for s in items]
    blob = ffi.new("char[]", b"\0".join(data))      # cffi adds the last NUL
    offset, ptrs = 0, []
    for item in data:
        ptrs.append(blob + offset)
        offset += len(item) + 1
    ptrs.append(ffi.NULL)
    arr = ffi.new("char *[]", ptrs)
    keep.append(blob)
    keep.append(arr)
    return arr


# The C arrays of shared lists (spawn.Launch.candidates: one list for every
# app with the same PATH and program), built once: id -> (list, array, keep).
_shared_arrays = {}


def _shared_cstrings(items, keep):
    found = _shared_arrays.get(id(items))
    if found is None or found[0] is not items:
        if len(_shared_arrays) >= 256:
            _shared_arrays.clear()
        held = []
        found = _shared_arrays[id(items)] = (items, _cstrings(items, held), held)
    keep.append(found)
    return found[1]


# C objects built once per value: an argv, an fd map, limits, a directory
# are often the same for a thousand apps.  key -> (object, what keeps it).
_by_value = {}


def _valued(key, build, keep):
    """The C object for key, built by build(held) the first time; every
    request that uses it keeps it alive (the cache may be cleared while a
    request still waits in a batch)."""
    found = _by_value.get(key)
    if found is None:
        if len(_by_value) >= 1024:
            _by_value.clear()
        held = []
        found = _by_value[key] = (build(held), held)
    keep.append(found)
    return found[0]


# Every field at "keep" (-1 for the ints where 0 would mean something): a
# request starts as a copy and only what a spawn asks for is set.
_BLANK = ffi.new("struct s1_spawn *")
_BLANK.tty_fd = _BLANK.mnt_template_fd = _BLANK.userns_fd = -1
_BLANK.umask = _BLANK.ngroups = _BLANK.gid = _BLANK.uid = -1
_BLANK.pgid_mode = lib.S1_PGID_KEEP


def spawn(candidates, argv, env, **options):
    """Fork and exec; return the pid once exec has succeeded (request()
    says what the arguments are).  Raises SpawnError naming the step that
    failed."""
    req, keep, where = request(candidates, argv, env, **options)
    if _tracking:
        pid, outcome = spawn_each([(req, keep, where)])[0]
        if pid is None:
            raise outcome
        return pid
    step = ffi.new("int[2]")
    pid = lib.s1_spawn(req, step, step + 1)
    if pid < 0:
        raise SpawnError(step[0], step[1], *where)
    return pid


def spawn_each(requests):
    """Spawn each of requests (request()'s answers), in one call; for each,
    in the order of requests, (pid, time.time() of its exec) or (None, its
    SpawnError, whose `when` is the time it failed).  A batch the spawner
    shares with its helpers (children.c) is not spawned in that order:
    the times say which came first."""
    n = len(requests)
    out = ffi.new("struct s1_spawned[]", n)
    lib.s1_spawn_each(ffi.new("struct s1_spawn *[]", [r[0] for r in requests]), n, out)
    results = []
    for i, (_req, _keep, where) in enumerate(requests):
        r = out[i]
        if r.pid > 0:
            if _tracking and not r.tracked:
                _untracked.add(r.pid)
            results.append((r.pid, r.when_ns / 1e9))
        else:
            err = SpawnError(r.step, r.err, *where)
            err.when = r.when_ns / 1e9
            results.append((None, err))
    return results


# -- the spawner thread (children.c) ------------------------------------------

_tracking = False       # spawns go through the spawner thread, with pidfds
_untracked = set()      # its children that have no pidfd (out of fds), alive


def track_children():
    """From now on every spawn is made by the spawner thread and every end
    of its children is found by its pidfd, so that reaping costs what has
    ended, not a walk of every child (children.c).  Called once the init
    has its namespaces (the thread takes them as they are).  False if the
    thread could not be made: spawns and reaps go on as before."""
    global _tracking
    if not _tracking:
        _tracking = lib.s1_spawner_start() == 0
        if _tracking:
            os.register_at_fork(after_in_child=_forked)
    return _tracking


def _forked():
    """A fork of the init has no spawner thread (children.c closes its
    side): it spawns by itself, and every end is found by a walk."""
    global _tracking
    _tracking = False
    _untracked.clear()


def tracking():
    return _tracking


def request(candidates, argv, env, *, fd_map=None, close_fds=False,
          pgid_mode=PGID_KEEP, tty_fd=-1, cgroup_procs=(), oom_score_adj=None,
          rlimits=(), root=None, pivot=False, mnt_template=-1, userns=-1, cwd=None, umask=-1,
          groups=None, gid=-1,
          uid=-1, caps=None, caps_until_exec=0, ambient=0, no_new_privs=False,
          seccomp=None, sigmask=0, sigign=0, shared_candidates=False):
    """The native request of a spawn: (struct s1_spawn *, what keeps its
    strings alive, what a SpawnError says of it).

    `candidates` are the paths to try in turn (the parent does the PATH
    search; with `shared_candidates` the list is one many spawns share and
    never change, and its C array is built once); `env` is a list of
    b"K=V" or str.  With `pivot`, `mnt_template`
    is the fd of a mount namespace the app's is copied from (spawn.c).
    `caps` is None to leave
    capabilities alone, else (bounding set, effective set) as bit masks;
    with them, `caps_until_exec` stays effective until exec (what a filter
    needs without no_new_privs, spawn.c) and `ambient` is the ambient set
    (cleared otherwise).  `seccomp` is a SeccompProgram, installed last."""
    keep = []
    req = ffi.new("struct s1_spawn *", _BLANK[0])
    req.candidates = (_shared_cstrings if shared_candidates else _cstrings)(candidates, keep)
    req.argv = _valued(("argv",) + tuple(argv), lambda held: _cstrings(argv, held), keep)
    req.envp = _cstrings(env, keep)
    if fd_map:
        req.nfds = len(fd_map)
        req.fd_map = _valued(("fds",) + tuple(fd_map), lambda held: ffi.new("int[]", fd_map),
                             keep)
    if close_fds:
        req.close_fds = 1
    if pgid_mode != PGID_KEEP:
        req.pgid_mode = pgid_mode
    if tty_fd != -1:
        req.tty_fd = tty_fd
    if cgroup_procs:
        req.cgroup_procs = _cstrings(cgroup_procs, keep)
    if oom_score_adj is not None:
        req.oom_score_adj = keep_ptr(keep, "char[]", str(oom_score_adj).encode())
    if rlimits:
        req.nrlimits = len(rlimits)
        req.rlimits = _valued(("rlimits",) + tuple(map(tuple, rlimits)), lambda held: ffi.new(
            "struct s1_rlimit[]", [list(r) for r in rlimits]), keep)
    if root:
        req.root = _valued(("path", root), lambda held: ffi.new("char[]", os.fsencode(root)),
                           keep)
    if pivot:
        req.pivot = 1
    if mnt_template != -1:
        req.mnt_template_fd = mnt_template
    if userns != -1:
        req.userns_fd = userns
    if cwd:
        req.cwd = _valued(("path", cwd), lambda held: ffi.new("char[]", os.fsencode(cwd)), keep)
    if umask != -1:
        req.umask = umask
    if groups is not None:
        req.ngroups = len(groups)
        if groups:
            req.groups = keep_ptr(keep, "unsigned int[]", list(groups))
    # The request's ints carry -1 for "keep"; ids above 2**31 go as the
    # same 32 bits, which setresuid/setresgid read as uid_t again.
    if gid != -1:
        req.gid = gid - 2 ** 32 if gid >= 2 ** 31 else gid
    if uid != -1:
        req.uid = uid - 2 ** 32 if uid >= 2 ** 31 else uid
    if caps is not None:
        req.set_caps = 1
        req.cap_bounding, req.cap_effective = caps
        req.cap_until_exec, req.cap_ambient = caps_until_exec, ambient
    if no_new_privs:
        req.no_new_privs = 1
    if seccomp is not None:
        req.seccomp_prog, req.seccomp_len = seccomp.data, seccomp.length
        keep.append(seccomp)
    if sigmask:
        req.sigmask = sigmask
    if sigign:
        req.sigign = sigign
    return req, keep, (os.fsdecode(argv[0]) if argv else "?",
                       {lib.S1_STEP_CHDIR: cwd, lib.S1_STEP_CHROOT: root,
                        lib.S1_STEP_PIVOT_ROOT: root})


# -- seccomp (seccomp.c) ----------------------------------------------------------

SECCOMP_ALLOW, SECCOMP_KILL = lib.S1_SECCOMP_ALLOW, lib.S1_SECCOMP_KILL


class SeccompProgram:
    """A compiled filter: BPF instructions in memory that lives as long as
    this object, read by the child of every spawn that uses it."""
    __slots__ = ("data", "length")

    def __init__(self, data, length):
        self.data, self.length = data, length

    def instructions(self):
        return bytes(ffi.buffer(self.data, self.length * lib.S1_SECCOMP_INSN_SIZE))


def seccomp_known(name):
    """Whether libseccomp knows the syscall name (on any architecture)."""
    return bool(lib.s1_seccomp_known(os.fsencode(name)))


def seccomp_compile(default_action, rules):
    """[(syscall name, action)] and the default action (SECCOMP_ALLOW,
    SECCOMP_KILL or an errno) -> SeccompProgram.  ValueError names a
    syscall libseccomp does not know; OSError for anything else."""
    keep = []
    names = _cstrings([name for name, _ in rules], keep)
    actions = ffi.new("int[]", [action for _, action in rules] or [0])
    bad = ffi.new("int *")
    out = ffi.new("char[]", lib.S1_SECCOMP_MAX_INSNS * lib.S1_SECCOMP_INSN_SIZE)
    n = lib.s1_seccomp_build(default_action, names, actions, len(rules), bad, out,
                             lib.S1_SECCOMP_MAX_INSNS)
    if n < 0 and bad[0] >= 0 and not seccomp_known(rules[bad[0]][0]):
        raise ValueError("unknown syscall %r" % rules[bad[0]][0])
    _check_what(n, "unable to build a seccomp filter")
    data = ffi.new("char[]", n * lib.S1_SECCOMP_INSN_SIZE)
    ffi.memmove(data, out, n * lib.S1_SECCOMP_INSN_SIZE)
    return SeccompProgram(data, n)


def keep_ptr(keep, ctype, init):
    p = ffi.new(ctype, init)
    keep.append(p)
    return p


def has_children():
    """True while any child of the init is left, running or unreaped."""
    return bool(_check(lib.s1_has_children()))


# -- namespaces and mounts (ns.c) ---------------------------------------------

CLONE_NEWUSER = lib.S1_CLONE_NEWUSER
CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC, CLONE_NEWPID, CLONE_NEWNET, CLONE_NEWCGROUP = (
    lib.S1_CLONE_NEWNS, lib.S1_CLONE_NEWUTS, lib.S1_CLONE_NEWIPC, lib.S1_CLONE_NEWPID,
    lib.S1_CLONE_NEWNET, lib.S1_CLONE_NEWCGROUP)
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT = (
    lib.S1_MS_RDONLY, lib.S1_MS_NOSUID, lib.S1_MS_NODEV, lib.S1_MS_NOEXEC, lib.S1_MS_REMOUNT)
MS_BIND, MS_REC, MS_PRIVATE, MS_SLAVE, MS_SHARED = (
    lib.S1_MS_BIND, lib.S1_MS_REC, lib.S1_MS_PRIVATE, lib.S1_MS_SLAVE, lib.S1_MS_SHARED)
MNT_DETACH = lib.S1_MNT_DETACH
MOUNT_ATTR_RDONLY = lib.S1_MOUNT_ATTR_RDONLY


def _check_what(rc, what):
    if rc < 0:
        raise OSError(-rc, "%s: %s" % (what, os.strerror(-rc)))
    return rc


def _cstr(text):
    return ffi.NULL if text is None else os.fsencode(text)


def unshare(flags):
    _check_what(lib.s1_unshare(flags), "unable to unshare namespaces 0x%x" % flags)


def setns(fd, nstype=0, what="namespace"):
    _check_what(lib.s1_setns(fd, nstype), "unable to join %s" % what)


def mount(source, target, fstype=None, flags=0, data=None):
    """mount(2); the OSError names the target and the filesystem or source."""
    rc = lib.s1_mount(_cstr(source), _cstr(target), _cstr(fstype), flags, _cstr(data))
    what = fstype or source or "it"
    _check_what(rc, "unable to mount %s on %s" % (what, target))


def umount(target, flags=0):
    _check_what(lib.s1_umount(_cstr(target), flags), "unable to unmount %s" % target)


def mount_setattr(path, recursive=False, attr_set=0, attr_clr=0):
    rc = lib.s1_mount_setattr(_cstr(path), int(recursive), attr_set, attr_clr)
    _check_what(rc, "unable to change the mount attributes of %s" % path)


def idmap_bind(path, userns_fd):
    """path's tree mounted over itself, idmapped through userns_fd's mapping."""
    _check_what(lib.s1_idmap_bind(os.fsencode(path), userns_fd),
                "unable to make an idmapped mount of %s" % path)


def open_nofollow(path):
    """An O_PATH fd of path, no symlink followed at any level (OSError ELOOP)."""
    rc = lib.s1_open_nofollow(os.fsencode(path))
    if rc < 0:
        raise OSError(-rc, os.strerror(-rc), path)
    return rc


def sethostname(name):
    _check_what(lib.s1_sethostname(name.encode()), "unable to set the hostname to %r" % name)


def loopback_up():
    _check_what(lib.s1_loopback_up(), "unable to bring up lo")
