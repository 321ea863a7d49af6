"""What every bench suite shares: inits in fresh PID namespaces, /proc, figures.

An init under test runs as `unshare --pid --fork --mount-proc INIT -- APP`,
so it is PID 1 of its own namespace, as in a container.  `Namespace` owns
one such run: it finds the init (the one child of unshare) and the app (the
init's child), reads their /proc files through the host's /proc (pids are
the host's), and on any exit kills the namespace through its init and reaps
unshare, so no process outlives the bench whatever fails.

The app talks to the bench through a pipe whose write end it inherits (its
number is in the app's argv): 'r' when it is ready, one byte per event
after that.  Every read has a deadline, because the init holds a copy of the
write end too and the pipe never reaches EOF while the init lives.

CPU time comes from /proc/PID/task/*/schedstat (nanoseconds of the task
alone) rather than utime+stime from /proc/PID/stat, which count in 10 ms
ticks; neither includes reaped children, which go to cutime and cstime.
"""
import os
import select
import signal
import socket
import struct
import subprocess
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
UNSHARE = ["unshare", "--pid", "--fork", "--mount-proc"]


class BenchError(Exception):
    """Something the bench needs did not happen: what, and to which init."""


# -- /proc ------------------------------------------------------------------

def children(pid):
    """Pids of pid's children (all threads), from the host's /proc."""
    out = []
    try:
        tids = os.listdir("/proc/%d/task" % pid)
    except OSError:
        return out
    for tid in tids:
        try:
            with open("/proc/%d/task/%s/children" % (pid, tid)) as f:
                out.extend(int(p) for p in f.read().split())
        except OSError:
            pass
    return out


def status_fields(pid):
    """/proc/PID/status as {name: first word of the value}."""
    with open("/proc/%d/status" % pid) as f:
        return {k: v.split()[0] if v.split() else "" for k, _, v in
                (line.partition(":") for line in f)}


def rss_kib(pid):
    return int(status_fields(pid)["VmRSS"])


def _task_sum(pid, read_one):
    total = 0
    for tid in os.listdir("/proc/%d/task" % pid):
        try:
            total += read_one("/proc/%d/task/%s/" % (pid, tid))
        except OSError:
            pass     # a thread that ended between listdir and open
    return total


def _switches(task_dir):
    with open(task_dir + "status") as f:
        return sum(int(line.split()[1]) for line in f
                   if line.startswith(("voluntary_ctxt_switches:", "nonvoluntary_ctxt_switches:")))


def context_switches(pid):
    """Voluntary + involuntary context switches of all of pid's threads."""
    return _task_sum(pid, _switches)


def _runtime_ns(task_dir):
    with open(task_dir + "schedstat") as f:
        return int(f.read().split()[0])


def cpu_ns(pid):
    """CPU time pid's threads have run, in ns; not its children's."""
    return _task_sum(pid, _runtime_ns)


# -- figures ----------------------------------------------------------------

def percentile(values, p):
    """Nearest-rank percentile, p in 0..100."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(1, -(-len(ordered) * p // 100))
    return ordered[int(rank) - 1]


def median(values):
    ordered = sorted(values)
    n = len(ordered)
    if not n:
        return float("nan")
    return ordered[n // 2] if n % 2 else (ordered[n // 2 - 1] + ordered[n // 2]) / 2


def markdown_table(header, rows):
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
    line = lambda r: "| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths)) + " |"
    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(header), sep] + [line(r) for r in rows])


# -- building helpers -------------------------------------------------------

def compile_c(source, workdir, name):
    """cc -O2 source -> workdir/name; the path of the binary."""
    out = os.path.join(workdir, name)
    cmd = ["cc", "-O2", "-Wall", "-o", out, source]
    done = subprocess.run(cmd, stderr=subprocess.PIPE, text=True)
    if done.returncode != 0:
        raise BenchError("unable to compile %s: %s" % (source, done.stderr.strip()))
    return out


def compile_static(source, workdir, name):
    """cc -O2 -static: a binary that runs in any root, even an empty one."""
    out = os.path.join(workdir, name)
    cmd = ["cc", "-O2", "-Wall", "-static", "-o", out, source]
    done = subprocess.run(cmd, stderr=subprocess.PIPE, text=True)
    if done.returncode != 0:
        raise BenchError("unable to compile %s: %s" % (source, done.stderr.strip()))
    return out


# -- processes --------------------------------------------------------------

def spawn(argv, *, pass_fd=None, stderr_path=None):
    """posix_spawn argv in a new session with stdin and stdout on /dev/null.

    A new session keeps the terminal's signals (^C) and foreground away from
    the inits: each is stopped by the bench alone.  `pass_fd` is made
    inheritable for this one spawn and closed in the bench afterwards."""
    actions = [(os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
               (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0)]
    if stderr_path:
        actions.append((os.POSIX_SPAWN_OPEN, 2, stderr_path,
                        os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644))
    if pass_fd is not None:
        os.set_inheritable(pass_fd, True)
    try:
        return os.posix_spawnp(argv[0], argv, os.environ, file_actions=actions, setsid=True)
    finally:
        if pass_fd is not None:
            os.close(pass_fd)


def time_run(argv, stderr_path):
    """Wall time in seconds of one run of argv to its exit; raises on failure."""
    t0 = time.perf_counter()
    pid = spawn(argv, stderr_path=stderr_path)
    try:
        _, status = os.waitpid(pid, 0)
    except BaseException:
        end_namespace(pid)
        raise
    elapsed = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        raise BenchError("%s exited %d: %s" % (" ".join(argv), os.waitstatus_to_exitcode(status),
                                               _tail(stderr_path)))
    return elapsed


def _tail(path):
    try:
        with open(path, errors="replace") as f:
            return f.read()[-500:].strip() or "(no stderr)"
    except OSError:
        return "(no stderr)"


def wait_until(what, predicate, timeout=5.0):
    """Poll predicate every ms until it returns a true value; that value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise BenchError("timed out waiting for %s" % what)
        time.sleep(0.001)


class Namespace:
    """One `unshare --pid --fork --mount-proc INIT APP...` run.

    `app` is a list whose item "{fd}" is replaced by the number of the
    inherited write end of the pipe.  Use as a context manager: leaving it
    kills whatever is left and reaps unshare."""

    def __init__(self, label, init_argv, app, workdir):
        self.label = label
        self.argv = UNSHARE + list(init_argv) + list(app)
        self.stderr_path = os.path.join(workdir, "%s.%d.stderr" % (label.replace(" ", "_"), id(self)))
        self.unshare_pid = self.init_pid = self.app_pid = None
        self.rfd = None
        self.status = None

    def __enter__(self):
        rfd, wfd = os.pipe()
        self.rfd = rfd
        self.argv = [str(wfd) if a == "{fd}" else a for a in self.argv]
        try:
            self.unshare_pid = spawn(self.argv, pass_fd=wfd, stderr_path=self.stderr_path)
            self.expect(b"r", timeout=10.0)
            self.init_pid = self._only_child(self.unshare_pid, "the init")
            self.app_pid = self._only_child(self.init_pid, "the app")
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc):
        self.close()

    def _only_child(self, pid, what):
        kids = wait_until("%s of %s" % (what, self.label), lambda: children(pid))
        if len(kids) != 1:
            raise BenchError("%s: expected one child of pid %d, found %s" % (self.label, pid, kids))
        return kids[0]

    def read(self, n=1, timeout=5.0):
        """n bytes from the app, or BenchError when they do not come in time."""
        data = b""
        deadline = time.monotonic() + timeout
        while len(data) < n:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.rfd], [], [], left)[0]:
                raise BenchError("%s: the app did not answer in %gs (stderr: %s)"
                                 % (self.label, timeout, _tail(self.stderr_path)))
            chunk = os.read(self.rfd, n - len(data))
            if not chunk:
                raise BenchError("%s: the app's pipe closed (stderr: %s)"
                                 % (self.label, _tail(self.stderr_path)))
            data += chunk
        return data

    def expect(self, byte, timeout=5.0):
        got = self.read(1, timeout)
        if got != byte:
            raise BenchError("%s: the app said %r, expected %r (stderr: %s)"
                             % (self.label, got, byte, _tail(self.stderr_path)))

    def stop(self, timeout=5.0):
        """SIGTERM to the init, which passes it on; wait for the namespace to end."""
        os.kill(self.init_pid, signal.SIGTERM)
        return self._wait(timeout)

    def _wait(self, timeout):
        deadline = time.monotonic() + timeout
        while self.status is None:
            pid, status = os.waitpid(self.unshare_pid, os.WNOHANG)
            if pid:
                self.status = status
                break
            if time.monotonic() > deadline:
                raise BenchError("%s: did not exit within %gs of SIGTERM" % (self.label, timeout))
            time.sleep(0.002)
        return os.waitstatus_to_exitcode(self.status)

    def close(self):
        """Kill what is left and reap unshare."""
        if self.unshare_pid is not None and self.status is None:
            self.status = end_namespace(self.unshare_pid, self.init_pid)
        if self.rfd is not None:
            os.close(self.rfd)
            self.rfd = None


def end_namespace(unshare_pid, init_pid=None):
    """SIGKILL a namespace's init, reap unshare; its wait status.

    The init goes first: its death empties the namespace and unshare, which
    waits for it, exits by itself.  Killed first, unshare would leave the
    init to the host's PID 1.  Only an unshare that has no init yet, or does
    not exit, is killed, with its process group (spawn's new session), which
    also reaches a child it is forking at that moment."""
    init = init_pid or next(iter(children(unshare_pid)), None)
    if init is not None:
        _kill(os.kill, init)
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            pid, status = os.waitpid(unshare_pid, os.WNOHANG)
            if pid:
                return status
            time.sleep(0.001)
    _kill(os.killpg, unshare_pid)
    return os.waitpid(unshare_pid, 0)[1]


def _kill(how, pid):
    try:
        how(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


# Where the pods of a run live: a tmpfs.  The disk of these VMs is ext4
# without a journal, where creating a file skips every inode freed in the
# last few seconds, reading each one's deletion time: after a run that
# wrote and replaced a few thousand status files, a file costs 200-600 us
# to create instead of 17 us, and the next run would measure the last
# one's leftovers.  A tmpfs costs what a journaled ext4 does (about 20 us),
# run after run.
WORKDIR_BASE = "/dev/shm"


# The Python floor of the pod suites: the interpreter posix_spawning n apps
# in a loop, then passing SIGTERM on and reaping them, and nothing else.
FLOOR_CODE = """
import os, signal, sys
argv = sys.argv[2:]
pids = [os.posix_spawn(argv[0], argv, {}) for _ in range(int(sys.argv[1]))]
# PID 1 of a namespace ignores a SIGTERM it has no handler for: blocked
# after the spawns (which would hand the mask on), it waits in the queue.
signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGTERM])
signal.sigwait([signal.SIGTERM])
for pid in pids:
    os.kill(pid, signal.SIGTERM)
for pid in pids:
    os.waitpid(pid, 0)
"""


def which(program):
    """The absolute path of program (PATH), or BenchError."""
    import shutil
    found = shutil.which(program)
    if not found:
        raise BenchError("%s is not on PATH" % program)
    return os.path.realpath(found)


def floor_argv(python, n, app_argv):
    """The floor's command line: `python` running n apps `app_argv`."""
    return [python, "-c", FLOOR_CODE, str(n), which(app_argv[0])] + list(app_argv[1:])


def settled_cpu_ns(pid, quiet, poll, timeout=30.0):
    """pid's CPU time (ns) once it has been idle for `quiet` seconds,
    looked at every `poll` seconds."""
    last, since = cpu_ns(pid), time.monotonic()
    deadline = since + timeout
    while time.monotonic() < deadline:
        time.sleep(poll)
        now = cpu_ns(pid)
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return now
    raise BenchError("pid %d kept using CPU for %.0f s" % (pid, timeout))


def wait_exit(label, pid, timeout=30.0):
    """The exit code of child pid (an unshare), once it has exited."""
    def reaped():
        got, status = os.waitpid(pid, os.WNOHANG)
        return (os.waitstatus_to_exitcode(status),) if got else None
    return wait_until("%s to exit" % label, reaped, timeout=timeout)[0]


def descendants(pid):
    """Every process below pid, from /proc."""
    out, todo = [], [pid]
    while todo:
        for child in children(todo.pop()):
            out.append(child)
            todo.append(child)
    return out


class ExecWatch:
    """Every exec on the machine, with the time the kernel stamped it
    (CLOCK_MONOTONIC, time.monotonic_ns's clock), from the proc connector
    (netlink, what forkstat and audit daemons read; root).  A bench learns
    when N apps have exec'd without scanning /proc in a loop, which took a
    core of its own at 1600 children and saw the last exec only once it got
    that core back from a busy init."""
    NETLINK_CONNECTOR, CN_IDX_PROC, CN_VAL_PROC = 11, 1, 1
    PROC_CN_MCAST_LISTEN, PROC_EVENT_FORK, PROC_EVENT_EXEC = 1, 1, 2
    NLMSG_DONE, SO_RCVBUFFORCE = 3, 33
    _HEAD = 16 + 20              # struct nlmsghdr, struct cn_msg

    def __init__(self):
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, self.NETLINK_CONNECTOR)
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, self.SO_RCVBUFFORCE, 32 << 20)
            self.sock.bind((0, self.CN_IDX_PROC))
            op = struct.pack("=I", self.PROC_CN_MCAST_LISTEN)
            cn = struct.pack("=IIIIHH", self.CN_IDX_PROC, self.CN_VAL_PROC, 0, 0, len(op), 0)
            self.sock.send(struct.pack("=IHHII", 16 + len(cn) + len(op), self.NLMSG_DONE, 0, 0,
                                       0) + cn + op)
        except OSError as err:
            self.sock.close()
            raise BenchError("the proc connector (netlink process events) is not available: "
                             "%s" % err)

    def close(self):
        self.sock.close()

    def wait_execs(self, parent, comm, n, timeout, what):
        """[(time_ns, pid)] of the first n distinct children of `parent`
        whose exec made them `comm`, once they all have; BenchError after
        timeout seconds.  The children are told by the kernel's fork events
        (no /proc read per event: at 1600 apps those reads slowed the very
        spawns being timed); each one counted is checked once to be `comm`
        when n have exec'd."""
        children, execs, checked = set(), {}, {}
        deadline = time.monotonic() + timeout
        while len(checked) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BenchError("%s: %d of %d execs after %d s" % (what, len(checked), n, timeout))
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(1 << 16)
            except socket.timeout:
                continue
            except OSError as err:
                raise BenchError("%s: process events lost (%s)" % (what, err))
            offset = 0
            while offset + self._HEAD + 24 <= len(data):
                length = struct.unpack_from("=I", data, offset)[0]
                at = offset + self._HEAD
                event, _cpu, stamp = struct.unpack_from("=IIQ", data, at)
                if event == self.PROC_EVENT_FORK:
                    _ppid, ptgid, child, _ctgid = struct.unpack_from("=iiii", data, at + 16)
                    if ptgid == parent:
                        children.add(child)
                elif event == self.PROC_EVENT_EXEC:
                    pid = struct.unpack_from("=i", data, at + 16)[0]
                    if pid in children and pid not in execs:
                        execs[pid] = stamp
                offset += (length + 3) & ~3
                if length == 0:
                    break
            if len(execs) >= n:
                for pid, stamp in execs.items():
                    if pid not in checked and comm_of(pid) == comm:
                        checked[pid] = stamp
                if len(checked) < n:      # some exec'd something else: wait on
                    execs = {pid: execs[pid] for pid in checked}
        return sorted((stamp, pid) for pid, stamp in checked.items())


def comm_of(pid):
    """A process's comm (bytes), None once it is gone."""
    try:
        with open("/proc/%d/comm" % pid, "rb") as f:
            return f.read().strip()
    except OSError:
        return None


def workdir():
    base = WORKDIR_BASE if os.path.isdir(WORKDIR_BASE) else None
    return tempfile.TemporaryDirectory(prefix="stage1-bench-", dir=base)
