"""Shared helpers of the `stage1 exec` tests (tests/test_exec_*.py).

Every test runs the real init (.venv/bin/stage1) on real processes, often as
PID 1 of a fresh PID namespace (`unshare --pid --fork --mount-proc`), with
tiny `python -c` or `sh -c` apps.  Nothing sleeps for a fixed time where a
condition can be awaited: `wait_until` polls with a deadline, and deadlines
are generous because they only bound a hang, they never measure speed.

Everything a test starts goes through the `procs` fixture.  For the test's
duration it makes the test process a child subreaper, so that whatever
escapes an init comes back to us instead of to the host's init; on teardown
it stops and SIGKILLs every process it started and everything below them,
and reaps them all.
"""
import ctypes
import json
import os
import signal
import subprocess
import sys
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STAGE1 = os.environ.get("STAGE1_BIN", os.path.join(ROOT, ".venv", "bin", "stage1"))
PY = sys.executable            # the venv's interpreter: stage1 is importable
UNSHARE = ["unshare", "--pid", "--fork", "--mount-proc"]
DEADLINE = 15.0

_libc = ctypes.CDLL(None, use_errno=True)
PR_SET_CHILD_SUBREAPER = 36


# -- polling -------------------------------------------------------------------

def wait_until(predicate, timeout=DEADLINE, what=None):
    """predicate()'s first truthy value, polled until the deadline."""
    deadline = time.monotonic() + timeout
    interval = 0.001
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %.1f s waiting for %s"
                                 % (timeout, what or getattr(predicate, "__name__", "?")))
        time.sleep(interval)
        interval = min(interval * 2, 0.02)


def holds_for(predicate, duration, what=None):
    """Assert that predicate() stays true for `duration` seconds: only for
    proving that something does NOT happen, where no event can be awaited."""
    end = time.monotonic() + duration
    while time.monotonic() < end:
        assert predicate(), "%s stopped holding" % (what or "the condition")
        time.sleep(0.01)


# -- commands ------------------------------------------------------------------

def py(code, *args):
    """A tiny Python app: isolated, no site, stdlib only."""
    return [PY, "-I", "-S", "-c", code] + [str(a) for a in args]


def sh(script, *args):
    return ["/bin/sh", "-c", script, "sh"] + [str(a) for a in args]


def exec_argv(cmd, *options, pid1=False, mount_proc=True):
    argv = [STAGE1, "exec"] + [str(o) for o in options] + ["--"] + [str(c) for c in cmd]
    if pid1:
        argv = (UNSHARE if mount_proc else UNSHARE[:-1]) + argv
    return argv


# -- /proc ---------------------------------------------------------------------

def proc_stat(pid):
    """(state, ppid) of pid, or (None, None) when it is gone."""
    try:
        with open("/proc/%d/stat" % pid, "rb") as f:
            stat = f.read()
    except OSError:
        return None, None
    fields = stat[stat.rindex(b")") + 2:].split()
    return fields[0].decode(), int(fields[1])


def alive(pid):
    return proc_stat(pid)[0] not in (None, "Z")


def gone(pid):
    return proc_stat(pid)[0] is None


def status_field(pid, field):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                key, _, value = line.partition(":")
                if key == field:
                    return value.strip()
    except OSError:
        pass
    return None


def sigset(pid, field):
    """SigBlk, SigIgn, SigPnd, ShdPnd or SigCgt of pid, as a set of signal numbers."""
    return mask_to_set(int(status_field(pid, field), 16))


def mask_to_set(mask):
    return {n for n in range(1, 65) if mask >> (n - 1) & 1}


def children(pid):
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


def descendants(pid):
    out, todo = [], [pid]
    while todo:
        for child in children(todo.pop()):
            out.append(child)
            todo.append(child)
    return out


def zombies_of(pid):
    """Children of pid that have ended and are not reaped."""
    return [c for c in children(pid) if proc_stat(c)[0] == "Z"]


def nspid(pid):
    """pid's number in its innermost PID namespace."""
    value = status_field(pid, "NSpid")
    return int(value.split()[-1]) if value else None


def cmdline(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return f.read()
    except OSError:
        return b""


def fd_targets(pid):
    """{fd: readlink target} of every fd pid has open."""
    out = {}
    for name in os.listdir("/proc/%d/fd" % pid):
        try:
            out[int(name)] = os.readlink("/proc/%d/fd/%s" % (pid, name))
        except OSError:
            pass
    return out


# -- the init ------------------------------------------------------------------

class Init:
    """One `stage1 exec` started in the background by `Procs.init`."""

    def __init__(self, popen, pid1):
        self.popen = popen
        self.pid1 = pid1
        self._pid = None if pid1 else popen.pid

    @property
    def pid(self):
        """The init's pid as this (the host's) namespace sees it."""
        if self._pid is None:
            self._pid = wait_until(self._find_init, what="the init under unshare")
        return self._pid

    def _find_init(self):
        # unshare forks, then its child execs the init: wait for the exec.
        for child in children(self.popen.pid):
            if cmdline(child).split(b"\0")[0] != b"unshare":
                return child
        if self.popen.poll() is not None:
            raise AssertionError("unshare ended with %s before the init ran"
                                 % self.popen.returncode)
        return None

    def kill(self, sig):
        os.kill(self.pid, sig)

    def running(self):
        return self.popen.poll() is None

    def wait(self, timeout=DEADLINE):
        """The init's exit status (a negative number: killed by that signal)."""
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError("the init did not end within %.1f s" % timeout)

    def stderr(self):
        """Everything the init wrote to a stderr=PIPE, once it has ended."""
        self.wait()
        return self.popen.stderr.read().decode(errors="replace")

    def host_pid(self, pid):
        """The host's pid of a process the init's namespace calls `pid`."""
        if not self.pid1:
            return pid
        return wait_until(lambda: next((p for p in descendants(self.pid) if nspid(p) == pid),
                                       None), what="host pid of namespace pid %d" % pid)

    def app(self):
        """The app's pid: the init's first child (a process group leader),
        once it has exec'd: before, the child shares the init's memory (its
        cmdline is the init's) and still holds the init's fds."""
        def find():
            mine = cmdline(self.pid)
            for child in children(self.pid):
                try:
                    if os.getpgid(child) == child and alive(child) and \
                            cmdline(child) not in (b"", mine):
                        return child
                except ProcessLookupError:
                    pass
            return None
        return wait_until(find, what="the app of the init")


class Procs:
    """Starts processes for one test; `cleanup` kills and reaps them all."""

    def __init__(self):
        self.popens = []
        self.before = set(children(os.getpid()))

    def start(self, argv, **kw):
        kw.setdefault("stdin", subprocess.DEVNULL)
        popen = subprocess.Popen(argv, **kw)
        self.popens.append(popen)
        return popen

    def init(self, cmd, *options, pid1=False, mount_proc=True, **kw):
        """`stage1 exec OPTIONS -- CMD` in the background; stdout goes to
        /dev/null and stderr to a pipe unless told otherwise."""
        kw.setdefault("stdout", subprocess.DEVNULL)
        kw.setdefault("stderr", subprocess.PIPE)
        return Init(self.start(exec_argv(cmd, *options, pid1=pid1, mount_proc=mount_proc),
                               **kw), pid1)

    def run(self, cmd, *options, pid1=False, timeout=DEADLINE, input=None, **kw):
        """`stage1 exec` to its end: CompletedProcess with text output."""
        kw.setdefault("stdout", subprocess.PIPE)
        kw.setdefault("stderr", subprocess.PIPE)
        if input is not None:
            kw["stdin"] = subprocess.PIPE
        popen = self.start(exec_argv(cmd, *options, pid1=pid1), **kw)
        try:
            out, err = popen.communicate(input, timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError("stage1 exec %s did not end within %.1f s" % (cmd, timeout))
        return subprocess.CompletedProcess(
            popen.args, popen.returncode,
            out.decode(errors="replace") if out is not None else None,
            err.decode(errors="replace") if err is not None else None)

    def cleanup(self):
        pids = []
        for popen in self.popens:
            if popen.poll() is None:
                pids.extend(kill_tree(popen.pid))
        # Whatever escaped an init came to us (we are a subreaper).
        for child in set(children(os.getpid())) - self.before:
            if child not in {p.pid for p in self.popens}:
                pids.append(child)           # reaped below, with what was under it
                pids.extend(kill_tree(child))
        for popen in self.popens:
            popen.wait(DEADLINE)
            for stream in (popen.stdin, popen.stdout, popen.stderr):
                if stream:
                    stream.close()
        reap(pids)


def kill_tree(pid):
    """SIGKILL pid and everything below it; stop it first so that nothing
    below it forks again or escapes meanwhile.  Returns the pids killed."""
    try:
        os.kill(pid, signal.SIGSTOP)
    except ProcessLookupError:
        return []
    killed = []
    for _ in range(100):
        below = [p for p in descendants(pid) if alive(p) and p not in killed]
        if not below:
            break
        for p in below:
            os.kill(p, signal.SIGSTOP)
            killed.append(p)
    for p in [pid] + killed:
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return killed


def reap(pids, timeout=DEADLINE):
    """Wait until each pid is gone, reaping those that are (now) our children."""
    pending = set(pids)
    deadline = time.monotonic() + timeout
    while pending and time.monotonic() < deadline:
        for pid in list(pending):
            try:
                if os.waitpid(pid, os.WNOHANG)[0]:
                    pending.discard(pid)
            except ChildProcessError:
                if gone(pid):
                    pending.discard(pid)
        time.sleep(0.005)


def set_subreaper(on):
    if _libc.prctl(PR_SET_CHILD_SUBREAPER, int(on), 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")


@pytest.fixture
def procs():
    set_subreaper(True)
    p = Procs()
    try:
        yield p
    finally:
        try:
            p.cleanup()
        finally:
            set_subreaper(False)


# -- a signal recorder app -----------------------------------------------------

# Blocks every signal it can, says "ready PID", then writes the number of each
# signal it is sent, one a line, as sigwaitinfo hands them over; after COUNT
# signals (never when negative), or once it has written signal LAST, it exits
# with CODE.
RECORDER = r"""
import os, signal, sys
out, count, code, last = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
sigs = signal.valid_signals() - {signal.SIGKILL, signal.SIGSTOP}
signal.pthread_sigmask(signal.SIG_BLOCK, sigs)
fd = os.open(out, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
os.write(fd, b"ready %d\n" % os.getpid())
while count:
    sig = signal.sigwaitinfo(sigs).si_signo
    os.write(fd, b"%d\n" % sig)
    count -= 1
    if sig == last:
        break
sys.exit(code)
"""


class Recorder:
    """The file a RECORDER app writes, and its command line."""

    def __init__(self, path, count=-1, code=0, last=0):
        self.path = str(path)
        self.argv = py(RECORDER, self.path, count, code, int(last))

    def _lines(self):
        try:
            with open(self.path) as f:
                return [l for l in f.read().split("\n") if l]
        except FileNotFoundError:
            return []

    def pid(self):
        """The recorder's pid (in its own namespace), once it is ready."""
        lines = wait_until(self._lines, what="the recorder to be ready")
        return int(lines[0].split()[1])

    def signals(self):
        return [int(l) for l in self._lines()[1:]]

    def wait_signals(self, n, what=None):
        """The signals recorded, once there are at least n."""
        return wait_until(lambda: len(self.signals()) >= n and self.signals(),
                          what=what or "%d signals at the recorder" % n)


def read_json(path):
    with open(path) as f:
        return json.load(f)


# -- the self-contained stage1 image -------------------------------------------

@pytest.fixture(scope="session")
def stage1_aci(tmp_path_factory):
    """stage1.aci as `./build.sh aci` writes it (self-contained), built once
    a session: the image tests, the rkt-interface tests and the real-rkt
    tests share it."""
    path = str(tmp_path_factory.mktemp("aci") / "stage1.aci")
    done = subprocess.run([os.path.join(ROOT, "build.sh"), "aci", "-o", path],
                          capture_output=True, text=True, timeout=600, env=aci_env())
    assert done.returncode == 0, done.stdout + done.stderr
    return path


_EPOCH = str(int(time.time()))


def aci_env():
    """The build's environment: one SOURCE_DATE_EPOCH for the whole session
    (build.sh would take the last commit's, which a commit during the run
    changes)."""
    return dict(os.environ, SOURCE_DATE_EPOCH=_EPOCH)


# -- nothing left behind ---------------------------------------------------------

@pytest.fixture(autouse=True)
def no_process_left():
    """Every process a test starts is gone, reaped, when it ends: a child of
    the test process that was not there before the test (running or a
    zombie) fails it, and is killed and reaped so that the next test does
    not inherit it.  Children of higher-scoped fixtures were there before."""
    import psutil
    me = psutil.Process()
    before = {p.pid for p in me.children()}
    yield
    left = [p for p in me.children() if p.pid not in before]
    if not left:
        return
    names = []
    for p in left:
        try:
            names.append("%d (%s, %s)" % (p.pid, p.name(), p.status()))
            p.kill()
        except psutil.Error:
            pass
    for p in left:
        try:
            os.waitpid(p.pid, 0)
        except ChildProcessError:
            pass
    pytest.fail("the test left %d process(es) behind: %s" % (len(left), ", ".join(names[:5])),
                pytrace=False)
