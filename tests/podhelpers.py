"""Helpers of the pod tests: pod directories, the real `stage1 run`, polling.

A test builds a pod directory with `Pod`, describes its apps with `app()`
(tiny `sh -c` or `python3 -c` children), and runs it with `Run`, a context
manager that starts `stage1 run` (as PID 1 of a fresh PID namespace with
pid1=True) and, whatever the test does, kills and reaps everything it
started.  Nothing sleeps for a fixed time: `wait_for` polls a condition
until a deadline.
"""
import json
import os
import re
import signal
import subprocess
import time

from conftest import children, descendants  # noqa: F401 (children is re-exported)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STAGE1 = os.environ.get("STAGE1_BIN", os.path.join(ROOT, ".venv", "bin", "stage1"))
UNSHARE = ["unshare", "--pid", "--fork", "--mount-proc"]
PY = "/usr/bin/python3"
RFC3339_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")
DEADLINE = 10.0
RKT_VERSION = "1.30.0+git171c416f"       # what a real rkt writes as the pod's acVersion
RKT_MUTABLE = "coreos.com/rkt/stage1/mutable"
IMAGE = {"name": "example.com/busybox", "id": "sha512-" + "5" * 64,
         "labels": [{"name": "version", "value": "1.35.0"}, {"name": "arch", "value": "amd64"},
                    {"name": "os", "value": "linux"}]}


class Timeout(AssertionError):
    pass


def wait_for(condition, timeout=DEADLINE, what="the condition"):
    """condition()'s first truthy value, polled until the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise Timeout("%s did not happen within %.1f s" % (what, timeout))
        time.sleep(0.005)


def sh(script):
    return ["/bin/sh", "-c", script]


def py(code):
    return [PY, "-c", code]


def app(name, exec_, *, annotations=None, **fields):
    """A RuntimeApp as rkt writes it (image name, id and labels; an app
    section); fields are the app section's."""
    body = {"exec": exec_, "user": "0", "group": "0"}
    body.update(fields)
    runtime = {"name": name, "image": json.loads(json.dumps(IMAGE)), "app": body}
    if annotations:
        runtime["annotations"] = named(annotations)
    return runtime


def named(mapping):
    return [{"name": k, "value": v} for k, v in mapping.items()]


class Pod:
    """A pod directory in rkt's layout, with readers for what the init writes."""

    def __init__(self, path, apps=(), annotations=None, stage1_rootfs=False, **extra):
        self.path = str(path)
        os.makedirs(self.path, exist_ok=True)
        self.root = self.path
        if stage1_rootfs:
            self.root = os.path.join(self.path, "stage1", "rootfs")
            os.makedirs(self.root)
        # What rkt 1.30 writes (stage0/run.go): its own version as acVersion,
        # null volumes and isolators, the mutable annotation, empty ports.
        self.manifest = {"acVersion": RKT_VERSION, "acKind": "PodManifest", "apps": list(apps),
                         "volumes": None, "isolators": None,
                         "annotations": named(dict({RKT_MUTABLE: "false"}, **(annotations or {}))),
                         "ports": []}
        self.manifest.update(extra)
        self.write()

    @classmethod
    def existing(cls, path):
        """A pod directory made by someone else (`stage1 run FILE`), to read."""
        pod = cls.__new__(cls)
        pod.path = pod.root = str(path)
        return pod

    def write(self, raw=None):
        """Compact, with no trailing newline, as rkt writes it."""
        with open(self.file("pod"), "w") as f:
            f.write(json.dumps(self.manifest, separators=(",", ":")) if raw is None else raw)

    def file(self, *parts):
        return os.path.join(self.path, *parts)

    def app_dir(self, name):
        return os.path.join(self.root, "opt", "stage2", name)

    @property
    def status_dir(self):
        return os.path.join(self.root, "rkt", "status")

    def code(self, name):
        """The app's rkt status file as an int, or None before it ended."""
        try:
            with open(os.path.join(self.status_dir, name)) as f:
                return int(f.read())
        except FileNotFoundError:
            return None

    def raw_code(self, name):
        with open(os.path.join(self.status_dir, name)) as f:
            return f.read()

    def status(self, name):
        return _json_or_none(os.path.join(self.status_dir, name + ".json"))

    def pod_status(self):
        return _json_or_none(self.file("pod-status.json"))

    def state(self, name):
        return (self.status(name) or {}).get("state")

    def wait_state(self, name, *states, timeout=DEADLINE):
        return wait_for(lambda: self.state(name) in states and self.status(name),
                        timeout, "app %s reaching %s" % (name, "/".join(states)))

    def read(self, name, default=""):
        try:
            with open(self.file(name)) as f:
                return f.read()
        except FileNotFoundError:
            return default

    def wait_file(self, name, timeout=DEADLINE):
        """Wait until the file exists; its contents."""
        wait_for(lambda: os.path.exists(self.file(name)), timeout, "file %s" % name)
        return self.read(name)


def _json_or_none(path):
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        return None


def stage1(*args, cwd=None, timeout=DEADLINE, env=None):
    """Run a short stage1 command (status, stop, ps) to completion."""
    return subprocess.run([STAGE1] + [str(a) for a in args], cwd=cwd, timeout=timeout,
                          env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True)


def run(pod, *args, pid1=False, timeout=DEADLINE, **kw):
    """`stage1 run` to its end: (exit code, stdout, stderr)."""
    with Run(pod, *args, pid1=pid1, **kw) as r:
        code = r.wait(timeout)
        return code, r.stdout(), r.stderr()


class Run:
    """`stage1 run ARGS POD` in the background; stdout and stderr go to files.

    With pid1, it runs as `unshare --pid --fork --mount-proc stage1 run ...`
    and `init_pid` is the init's pid as the host sees it.  On exit, whatever
    is left of the pod is SIGKILLed and every process started is reaped."""

    def __init__(self, pod, *args, pid1=False, cwd=None, env=None, pod_arg=True,
                 stdin=subprocess.DEVNULL, pass_fds=()):
        self.pod = pod
        argv = [STAGE1, "run"] + [str(a) for a in args] + ([pod.path] if pod_arg else [])
        if pid1:
            argv = UNSHARE + argv
        self._out_path = pod.file(".test-stdout")
        self._err_path = pod.file(".test-stderr")
        with open(self._out_path, "wb") as out, open(self._err_path, "wb") as err:
            self.proc = subprocess.Popen(argv, stdin=stdin, stdout=out, stderr=err, cwd=cwd,
                                         env=env, pass_fds=pass_fds)
        self.pid1 = pid1
        self.init_pid = self.proc.pid
        if pid1:
            self.init_pid = wait_for(lambda: children(self.proc.pid) or
                                     self.proc.poll() is not None and [None],
                                     what="the init under unshare")[0]
        self.code = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.kill()

    def kill(self):
        if self.proc.poll() is None and self.init_pid:
            kill_tree(self.init_pid)
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(DEADLINE)

    def wait(self, timeout=DEADLINE):
        try:
            self.code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise Timeout("the pod did not end within %.1f s; stderr: %s"
                          % (timeout, self.stderr()))
        return self.code

    def signal(self, sig):
        os.kill(self.init_pid, sig)

    def alive(self):
        return self.proc.poll() is None

    def stdout(self):
        with open(self._out_path, errors="replace") as f:
            return f.read()

    def stderr(self):
        with open(self._err_path, errors="replace") as f:
            return f.read()

    def host_pid(self, ns_pid):
        """The host pid of a pid the status files give (the init's namespace)."""
        if not self.pid1:
            return ns_pid
        for pid in descendants(self.init_pid):
            if nspid(pid) == ns_pid:
                return pid
        return None


def kill_tree(pid):
    """SIGKILL pid and everything below it; stop it first so that nothing
    below it is restarted or escapes to the host's init meanwhile."""
    try:
        os.kill(pid, signal.SIGSTOP)
    except ProcessLookupError:
        return
    for _ in range(100):
        below = [p for p in descendants(pid) if proc_state(p) not in (None, "Z")]
        if not below:
            break
        for p in below:
            _kill(p)
    _kill(pid)


def _kill(pid):
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def proc_state(pid):
    """The one-letter state of pid in /proc (None: no such process)."""
    try:
        with open("/proc/%d/stat" % pid, "rb") as f:
            stat = f.read()
    except OSError:
        return None
    return stat[stat.rindex(b")") + 2:].split()[0].decode()


def alive(pid):
    return proc_state(pid) not in (None, "Z")


def status_field(pid, field):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            key, _, value = line.partition(":")
            if key == field:
                return value.strip()
    return None


def nspid(pid):
    """pid's pid in its innermost PID namespace."""
    try:
        return int(status_field(pid, "NSpid").split()[-1])
    except (OSError, AttributeError):
        return None


def cmdline(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return f.read().split(b"\0")
    except OSError:
        return []


def app_host_pid(r, pod, name):
    """Host pid of a running app, from its status file."""
    st = pod.wait_state(name, "running")
    return wait_for(lambda: r.host_pid(st["pid"]), what="host pid of %s" % name)


def error_lines(stderr):
    return [l for l in stderr.splitlines() if l.strip()]
