"""Helpers of the live-pod tests (tests/test_live_*.py): a running pod to
talk to, raw control-socket connections, the event log, sd_notify senders,
and clients run as another user.

A test gets a `Live` from the `live` fixture: it writes the pod directory
(podhelpers.Pod) under a directory every user may traverse (so that a
client running as nobody reaches the socket and meets its mode and the
init's SO_PEERCRED check, not a 0700 parent), starts the real `stage1 run`
(podhelpers.Run) and, whatever the test does, kills and reaps everything.
Nothing sleeps for a fixed time: conditions are polled with a deadline,
and "did not happen" is proved by a later event the init handles in order
(a datagram after the forged one, an answer after the bad request).
"""
import json
import os
import shutil
import socket
import struct
import tempfile

import pytest

from podhelpers import (DEADLINE, PY, STAGE1, Pod, Run, Timeout, app, named, py, sh,
                        stage1, wait_for)
from podhelpers import kill_tree
from podhelpers import run as run_to_end

__all__ = ["DEADLINE", "PY", "STAGE1", "Pod", "Run", "Timeout", "app", "named", "py", "sh",
           "stage1", "wait_for", "Live", "Conn", "as_user", "notify_code", "write_atomic",
           "NOBODY", "live", "liveroot", "run_to_end", "send_notify",
           "kill_tree"]

NOBODY = 65534


@pytest.fixture
def liveroot():
    """A directory under /tmp that every user may traverse."""
    path = tempfile.mkdtemp(prefix="stage1-live-", dir="/tmp")
    os.chmod(path, 0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def live(liveroot):
    """live(apps, annotations=None, *run_args, pid1=False) -> a started Live."""
    started = []

    def start(apps=(), annotations=None, *args, pid1=False, name="pod", **kw):
        pod = Live(os.path.join(liveroot, name), apps, annotations, *args, pid1=pid1, **kw)
        started.append(pod)
        return pod
    try:
        yield start
    finally:
        for pod in started:
            pod.close()


class Live:
    """A pod whose init runs in the background, with its control socket."""

    def __init__(self, path, apps, annotations=None, *args, pid1=False, before_run=None, **kw):
        self.pod = Pod(path, apps, annotations)
        if before_run is not None:
            before_run(self.pod)
        self.path = self.pod.path
        self.sock = self.pod.file("stage1.sock")
        self.run = Run(self.pod, *args, pid1=pid1, **kw)
        wait_for(lambda: os.path.exists(self.sock) or not self.run.alive(),
                 what="the control socket")

    def close(self):
        self.run.kill()

    # -- the control socket --------------------------------------------------

    def conn(self):
        return Conn(self.sock)

    def request(self, obj, timeout=DEADLINE):
        """One request on a fresh connection; the answer as a dict."""
        with self.conn() as c:
            c.send_obj(obj)
            line = c.line(timeout)
        assert line, "the init closed the connection without an answer to %r" % (obj,)
        return json.loads(line)

    def raw(self, data, timeout=DEADLINE):
        """Bytes as they are; the first answer line as a dict."""
        with self.conn() as c:
            c.send(data)
            line = c.line(timeout)
        assert line, "no answer to %r" % data[:80]
        return json.loads(line)

    def apps(self):
        """{name: (state, pid, ready, restartCount)} as the init says."""
        answer = self.request({"op": "status"})
        assert answer["ok"], answer
        return {a["name"]: (a["state"], a["pid"], a["ready"], a["restartCount"])
                for a in answer["apps"]}

    def snapshot(self):
        """What a refused request must leave as it was."""
        return self.apps(), self.pod.read("events.jsonl"), self.pod.read("pod")

    def cli(self, *args, **kw):
        return stage1(*args, **kw)

    # -- what the init writes --------------------------------------------------

    def events(self):
        text = self.pod.read("events.jsonl")
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def kinds(self, app_name=None):
        """[(event, app)] in file order (only app_name's with app_name)."""
        return [(e["event"], e.get("app")) for e in self.events()
                if app_name is None or e.get("app") == app_name]

    def wait_event(self, kind, app_name=None, count=1, timeout=DEADLINE):
        def found():
            hits = [e for e in self.events()
                    if e["event"] == kind and (app_name is None or e.get("app") == app_name)]
            return hits[count - 1] if len(hits) >= count else None
        try:
            return wait_for(found, timeout, "event %s of %s (#%d)" % (kind, app_name, count))
        except Timeout as err:
            raise Timeout("%s; events: %s; the init %s; its stderr: %s" % (
                err, self.kinds(), "runs" if self.run.alive() else "ended",
                self.run.stderr()[-2000:])) from None

    def status(self, name):
        return self.pod.status(name)

    def wait_status(self, name, timeout=DEADLINE, **fields):
        """The app's status file once it shows fields (the init writes
        status files once per loop turn, after its answers and events)."""
        def match():
            st = self.pod.status(name)
            return st if st and all(st.get(k) == v for k, v in fields.items()) else None
        return wait_for(match, timeout, "status of %s showing %r" % (name, fields))

    def wait_state(self, name, *states, timeout=DEADLINE):
        return self.pod.wait_state(name, *states, timeout=timeout)

    def supervisor_status(self):
        try:
            return os.readlink(os.path.join(self.pod.root, "rkt", "supervisor-status"))
        except OSError:
            return None

    def wait_end(self, timeout=DEADLINE):
        return self.run.wait(timeout)


class Conn:
    """One raw connection to a control socket."""

    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(DEADLINE)
        self.sock.connect(path)
        self.buf = b""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def send(self, data):
        self.sock.sendall(data)

    def send_obj(self, obj):
        self.send(json.dumps(obj).encode() + b"\n")

    def line(self, timeout=DEADLINE):
        """The next line (bytes, with its newline), or b"" at EOF."""
        self.sock.settimeout(timeout)
        while b"\n" not in self.buf:
            try:
                data = self.sock.recv(65536)
            except ConnectionResetError:
                data = b""
            if not data:
                rest, self.buf = self.buf, b""
                return rest
            self.buf += data
        line, self.buf = self.buf.split(b"\n", 1)
        return line + b"\n"

    def obj(self, timeout=DEADLINE):
        line = self.line(timeout)
        assert line, "the connection ended"
        return json.loads(line)

    def close(self):
        self.sock.close()


def as_user(uid, func, *args):
    """func(*args) in a forked child running as uid (and gid uid, no
    groups); its return value (JSON-able) or ("raised", errno name)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
            try:
                result = func(*args)
            except OSError as err:
                import errno
                result = ["raised", errno.errorcode.get(err.errno, str(err.errno))]
            os.write(w, json.dumps(result).encode())
        finally:
            os._exit(0)
    os.close(w)
    try:
        with os.fdopen(r, "rb") as f:
            data = f.read()
    finally:
        os.waitpid(pid, 0)
    return json.loads(data)


def notify_code(*steps, sleep=True):
    """A python -c app that goes through steps: a string is one sd_notify
    datagram to send, ("wait", PATH) waits until PATH exists; then it
    sleeps until stopped (unless sleep=False)."""
    return (
        "import os, socket, time\n"
        "for step in %r:\n"
        "    if isinstance(step, tuple):\n"
        "        while not os.path.exists(step[1]):\n"
        "            time.sleep(0.005)\n"
        "        continue\n"
        "    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)\n"
        "    s.connect(os.environ['NOTIFY_SOCKET'])\n"
        "    s.send(step.encode())\n"
        "    s.close()\n"
        "%s\n" % (list(steps), "time.sleep(3600)" if sleep else "")
    )


def write_atomic(path, text):
    """How whoever adds an app rewrites POD/pod: a temporary file, a rename."""
    tmp = path + ".new"
    with open(tmp, "w") as f:
        f.write(text)
    os.rename(tmp, path)


def send_notify(path, message, creds=None):
    """One sd_notify datagram from this process; creds=(pid, uid, gid) sends
    explicit SCM_CREDENTIALS (the kernel checks them)."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        anc = []
        if creds is not None:
            anc = [(socket.SOL_SOCKET, socket.SCM_CREDENTIALS, struct.pack("iII", *creds))]
        s.sendmsg([message.encode()], anc, 0, path)
    finally:
        s.close()
