"""The live suite: a live pod's control socket and log relay beside
supervisord (issue 5).  `python bench/live_bench.py [--quick]` alone, or
`./build.sh bench --only live` when bench/run.py lists it.

Both supervisors run as children of the bench on the host (not in a PID
namespace: supervisord is not a PID 1), each with the same programs, and
every figure is taken for all rows in the same run, interleaved where it
is a latency, so that a noisy machine moves all rows together; what
matters is the ratio between rows.

  restart       request -> new pid running, for one app that dies on
                SIGTERM (`sleep`).  stage1: one JSON line on POD/stage1.sock
                until the answer, which comes once the new process has
                exec'd; and `stage1 app restart` run to its end.
                supervisord (startsecs=0, so RUNNING means spawned): XML-RPC
                stopProcess + startProcess on its unix socket; and
                `supervisorctl restart` run to its end.  The CLI rows include
                each tool's interpreter start-up.
  log relay     4 apps each write N MB of 100-byte lines as fast as they can
                (1 MB writes into their pipe), released together; MB/s is
                the payload over the time until every byte has reached its
                file; CPU/MB is the supervisor's own utime+stime
                (/proc/PID/stat) over that time, per MB.  stage1 `prefix`
                tags each line and writes the init's stdout (a file);
                stage1 `file` writes POD/logs/<app>.log; supervisord writes
                each program's stdout_logfile, or all of them to its own
                stdout with stdout_logfile=/dev/stdout (whose lines from
                different programs may cut into each other).  The `inherit`
                row has the apps write the file themselves: the init is not
                in the path, so it is the ceiling of the writers and the disk.
"""
import json
import os
import signal
import socket
import subprocess
import sys
import time
import xmlrpc.client
import http.client

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import harness                                    # noqa: E402
from harness import BenchError                    # noqa: E402

VENV = os.environ.get("STAGE1_VENV") or os.path.join(harness.ROOT, ".venv")
STAGE1 = os.path.join(VENV, "bin", "stage1")
WRITER_PY = "/usr/bin/python3"

FULL = {"restarts": 50, "writers": 4, "mb_per_writer": 50, "log_rounds": 3}
QUICK = {"restarts": 10, "writers": 4, "mb_per_writer": 10, "log_rounds": 1}
LINE = 100                    # bytes per line, newline included
MB = 1000 * 1000
CLK_TCK = os.sysconf("SC_CLK_TCK")

# Waits for GO to exist, then writes N MB of numbered 100-byte lines.
WRITER = r"""
import os, sys, time
go, name, mb = sys.argv[1], sys.argv[2], int(sys.argv[3])
per = 1000000 // 100
block = b"".join(b"%s-%08d-" % (name.encode(), i) + b"x" * (100 - 11 - len(name)) + b"\n"
                 for i in range(per))
assert len(block) == 1000000
while not os.path.exists(go):
    time.sleep(0.0005)
for _ in range(mb):
    view = memoryview(block)
    while view:
        view = view[os.write(1, view):]
"""


# -- processes ------------------------------------------------------------------

def kill_tree(pid):
    """SIGSTOP pid so it restarts nothing, SIGKILL everything below it, then it."""
    try:
        os.kill(pid, signal.SIGSTOP)
    except ProcessLookupError:
        return
    for _ in range(100):
        below = harness.descendants(pid)
        if not below:
            break
        for p in below:
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.001)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def cpu_seconds(pid):
    """utime + stime of pid itself, from /proc/PID/stat (clock ticks)."""
    with open("/proc/%d/stat" % pid, "rb") as f:
        fields = f.read().rpartition(b")")[2].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


class Supervised:
    """A supervisor running in the background: stop() ends it and reaps it,
    killing whatever is left if it does not end."""

    def __init__(self, argv, stdout_path, stderr_path):
        with open(stdout_path, "wb") as out, open(stderr_path, "wb") as err:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                         start_new_session=True)
        self.stderr_path = stderr_path

    @property
    def pid(self):
        return self.proc.pid

    def stop(self, timeout=15.0):
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                kill_tree(self.proc.pid)
                self.proc.wait()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if exc[0] is not None and self.proc.poll() is None:
            kill_tree(self.proc.pid)
        self.stop()

    def check_alive(self, what):
        if self.proc.poll() is not None:
            with open(self.stderr_path, errors="replace") as f:
                tail = f.read()[-500:]
            raise BenchError("%s ended (%s): %s" % (what, self.proc.returncode, tail))


# -- stage1 ---------------------------------------------------------------------

def runtime_app(name, argv, **annotations):
    app = {"name": name, "image": {"id": "sha512-" + "0" * 64},
           "app": {"exec": argv, "user": "0", "group": "0"}}
    if annotations:
        app["annotations"] = [{"name": k, "value": v} for k, v in annotations.items()]
    return app


class Stage1Pod(Supervised):
    def __init__(self, workdir, name, apps):
        self.path = os.path.join(workdir, name)
        os.makedirs(self.path)
        with open(os.path.join(self.path, "pod"), "w") as f:
            json.dump({"acKind": "PodManifest", "acVersion": "0.8.11", "apps": apps,
                       "annotations": [{"name": "stage1/exit-policy", "value": "untilAll"}]}, f)
        self.stdout_path = os.path.join(workdir, name + ".stdout")
        super().__init__([STAGE1, "run", self.path], self.stdout_path,
                         os.path.join(workdir, name + ".stderr"))
        self.sock = os.path.join(self.path, "stage1.sock")
        harness.wait_until("stage1's control socket", self._ready, timeout=10)

    def _ready(self):
        self.check_alive("stage1 run")
        return os.path.islink(os.path.join(self.path, "rkt", "supervisor-status"))

    def request(self, obj):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.settimeout(10)
            s.connect(self.sock)
            s.sendall(json.dumps(obj).encode() + b"\n")
            data = b""
            while not data.endswith(b"\n"):
                chunk = s.recv(4096)
                if not chunk:
                    raise BenchError("stage1 closed the control connection")
                data += chunk
        finally:
            s.close()
        answer = json.loads(data)
        if not answer.get("ok"):
            raise BenchError("stage1 refused %r: %s" % (obj, answer.get("error")))
        return answer


# -- supervisord ------------------------------------------------------------------

SUPERVISORD_CONF = """\
[unix_http_server]
file={dir}/supervisor.sock
chmod=0700

[supervisord]
logfile={dir}/supervisord.log
pidfile={dir}/supervisord.pid
childlogdir={dir}
nodaemon=true
silent=true
user=root

[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

[supervisorctl]
serverurl=unix://{dir}/supervisor.sock
"""

PROGRAM = """
[program:{name}]
command={command}
startsecs=0
autorestart=false
stopsignal=TERM
stopwaitsecs=10
stdout_logfile={stdout}
stdout_logfile_maxbytes=0
stdout_logfile_backups=0
stderr_logfile={dir}/{name}.err
stderr_logfile_maxbytes=0
"""


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path):
        super().__init__("localhost", timeout=10)
        self.path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(10)
        self.sock.connect(self.path)


class _UnixTransport(xmlrpc.client.Transport):
    def __init__(self, path):
        super().__init__()
        self.path = path

    def make_connection(self, host):
        return _UnixHTTPConnection(self.path)


class Supervisord(Supervised):
    def __init__(self, workdir, name, programs):
        """programs: [(name, argv, stdout_logfile)]."""
        self.dir = os.path.join(workdir, name)
        os.makedirs(self.dir)
        self.conf = os.path.join(self.dir, "supervisord.conf")
        text = SUPERVISORD_CONF.format(dir=self.dir)
        for prog, argv, stdout in programs:
            command = " ".join(_quote(a) for a in argv)
            text += PROGRAM.format(name=prog, command=command.replace("%", "%%"),
                                   stdout=stdout, dir=self.dir)
        with open(self.conf, "w") as f:
            f.write(text)
        self.stdout_path = os.path.join(self.dir, "stdout")
        super().__init__(["supervisord", "-c", self.conf], self.stdout_path,
                         os.path.join(self.dir, "stderr"))
        self.rpc = xmlrpc.client.ServerProxy(
            "http://localhost", transport=_UnixTransport(os.path.join(self.dir, "supervisor.sock")))
        harness.wait_until("supervisord's programs", lambda: self._running(len(programs)), 10)

    def _running(self, n):
        self.check_alive("supervisord")
        try:
            infos = self.rpc.supervisor.getAllProcessInfo()
        except (OSError, xmlrpc.client.Error, http.client.HTTPException):
            return False
        return len(infos) == n and all(i["statename"] == "RUNNING" for i in infos)

    def pid_of(self, name):
        return self.rpc.supervisor.getProcessInfo(name)["pid"]


def _quote(arg):
    """supervisord splits command= with shlex."""
    import shlex
    return shlex.quote(arg)


# -- restart latency ------------------------------------------------------------------

def restart_latency(workdir, settings, log):
    sleep = ["/bin/sleep", "3600"]
    samples = {"stage1 (socket)": [], "stage1 app restart (CLI)": [],
               "supervisord (XML-RPC)": [], "supervisorctl restart (CLI)": []}
    with Stage1Pod(workdir, "restart-pod", [runtime_app("a", sleep)]) as pod, \
            Supervisord(workdir, "restart-supervisord",
                        [("a", sleep, os.path.join(workdir, "a.out"))]) as sup:
        def stage1_socket():
            before = pod.request({"op": "status"})["apps"][0]["pid"]
            t0 = time.perf_counter()
            answer = pod.request({"op": "restart", "app": "a"})
            elapsed = time.perf_counter() - t0
            _new_pid("stage1", before, answer["pid"], answer["state"] == "running")
            return elapsed

        def stage1_cli():
            before = pod.request({"op": "status"})["apps"][0]["pid"]
            elapsed = _timed([STAGE1, "app", "restart", pod.path, "--app", "a"])
            _new_pid("stage1", before, pod.request({"op": "status"})["apps"][0]["pid"], True)
            return elapsed

        def supervisord_rpc():
            before = sup.pid_of("a")
            t0 = time.perf_counter()
            sup.rpc.supervisor.stopProcess("a", True)
            sup.rpc.supervisor.startProcess("a", True)
            elapsed = time.perf_counter() - t0
            _new_pid("supervisord", before, sup.pid_of("a"), True)
            return elapsed

        def supervisorctl():
            before = sup.pid_of("a")
            elapsed = _timed(["supervisorctl", "-c", sup.conf, "restart", "a"])
            _new_pid("supervisord", before, sup.pid_of("a"), True)
            return elapsed

        ways = list(zip(samples, (stage1_socket, stage1_cli, supervisord_rpc, supervisorctl)))
        for way in ways:
            way[1]()        # warm-up: imports, caches
        for i in range(settings["restarts"]):
            for label, measure in ways[i % 4:] + ways[:i % 4]:   # rotate the order
                samples[label].append(measure())
        log("live: %d restarts per row" % settings["restarts"])
        rss = {"stage1 init": harness.rss_kib(pod.pid),
               "supervisord": harness.rss_kib(sup.pid)}
    return samples, rss


def _timed(argv):
    t0 = time.perf_counter()
    done = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True)
    elapsed = time.perf_counter() - t0
    if done.returncode != 0:
        raise BenchError("%s exited %d: %s" % (" ".join(argv), done.returncode, done.stderr))
    return elapsed


def _new_pid(who, before, after, running):
    if not running or not after or after == before:
        raise BenchError("%s: the restart did not give a new running pid (%s -> %s)"
                         % (who, before, after))


# -- log throughput -----------------------------------------------------------------

def _writers(go, settings):
    """The writer script beside go (supervisord takes one-line commands)."""
    script = os.path.join(os.path.dirname(go), "writer.py")
    with open(script, "w") as f:
        f.write(WRITER)
    names = ["w%d" % i for i in range(settings["writers"])]
    return names, {n: [WRITER_PY, "-I", "-S", script, go, n, str(settings["mb_per_writer"])]
                   for n in names}


def _measure(label, supervisor, go, files, expected):
    """Release the writers; (MB/s, supervisor CPU s per MB) once files hold expected bytes."""
    cpu0 = cpu_seconds(supervisor.pid)
    t0 = time.perf_counter()
    open(go, "w").close()

    def done():
        supervisor.check_alive(label)
        return sum(_size(f) for f in files) >= expected
    harness.wait_until("%s to relay %d bytes" % (label, expected), done, timeout=300)
    elapsed = time.perf_counter() - t0
    cpu = cpu_seconds(supervisor.pid) - cpu0
    got = sum(_size(f) for f in files)
    if got != expected:
        raise BenchError("%s: %d bytes relayed, expected %d" % (label, got, expected))
    return elapsed, cpu


def _size(path):
    try:
        return os.path.getsize(path)
    except FileNotFoundError:
        return 0


LOG_ROWS = ("stage1 prefix", "stage1 file", "stage1 inherit", "supervisord stdout_logfile",
            "supervisord stdout_logfile=/dev/stdout")


def log_throughput(workdir, settings, log):
    """(payload bytes, [(row, seconds, CPU seconds)]): per row, the round
    with the median time, rounds rotating the order of the rows."""
    runs = {label: [] for label in LOG_ROWS}
    for r in range(settings["log_rounds"]):
        order = LOG_ROWS[r % len(LOG_ROWS):] + LOG_ROWS[:r % len(LOG_ROWS)]
        for label in order:
            d = os.path.join(workdir, "log-%d-%s" % (r, label.replace(" ", "-").replace("/", "")))
            os.makedirs(d)
            runs[label].append(_log_run(d, label, settings))
            log("live: %s: %.2fs" % (label, runs[label][-1][0]))
    rows = []
    for label in LOG_ROWS:
        elapsed, cpu = sorted(runs[label])[len(runs[label]) // 2]
        rows.append((label, elapsed, cpu))
    return settings["writers"] * settings["mb_per_writer"] * MB, rows


def _log_run(d, label, settings):
    """One row once: (seconds, supervisor CPU seconds)."""
    payload = settings["writers"] * settings["mb_per_writer"] * MB
    lines_per_writer = settings["mb_per_writer"] * MB // LINE
    keep = ["/bin/sleep", "3600"]       # keeps the supervisor alive after the writers end
    go = os.path.join(d, "go")
    names, argv = _writers(go, settings)
    if label.startswith("stage1"):
        mode = label.split()[1]
        apps = [runtime_app(n, argv[n], **{"stage1/log": mode,
                                           "stage1/log-max-bytes": str(1 << 40)}) for n in names]
        with Stage1Pod(d, "pod", apps + [runtime_app("keep", keep)]) as pod:
            if mode == "file":
                files = [os.path.join(pod.path, "logs", n + ".log") for n in names]
                expected = payload
            else:
                files = [pod.stdout_path]
                expected = payload + (sum(len(n) + 2 for n in names) * lines_per_writer
                                      if mode == "prefix" else 0)
            return _measure(label, pod, go, files, expected)
    to_files = label == "supervisord stdout_logfile"
    outs = {n: os.path.join(d, n + ".log") if to_files else "/dev/stdout" for n in names}
    programs = [(n, argv[n], outs[n]) for n in names] + [("keep", keep, os.path.join(d, "k.log"))]
    with Supervisord(d, "sup", programs) as sup:
        files = list(outs.values()) if to_files else [sup.stdout_path]
        return _measure(label, sup, go, files, payload)


# -- the report -----------------------------------------------------------------------

def _ms(seconds):
    return "%.1f ms" % (seconds * 1000)


def _check_tools():
    if not os.access(STAGE1, os.X_OK):
        raise BenchError("%s is missing: run ./build.sh first" % STAGE1)
    for tool in ("supervisord", "supervisorctl"):
        if not any(os.access(os.path.join(d, tool), os.X_OK)
                   for d in os.environ.get("PATH", "/usr/bin").split(":")):
            raise BenchError("%s is missing: apt-get install supervisor" % tool)


def run(quick=False, log=print):
    """Measure everything; the markdown report."""
    settings = QUICK if quick else FULL
    _check_tools()
    with harness.workdir() as tmp:
        samples, rss = restart_latency(tmp, settings, log)
        payload, log_rows = log_throughput(tmp, settings, log)
    return report(settings, samples, rss, payload, log_rows)


def report(settings, samples, rss, payload, log_rows):
    med = {k: harness.median(v) for k, v in samples.items()}
    rows = [(label, _ms(med[label]), _ms(harness.percentile(v, 90)), _ms(min(v)))
            for label, v in samples.items()]
    out = ["## Restart latency: request -> new pid running", "",
           harness.markdown_table(("way", "p50", "p90", "min"), rows), ""]
    mb = payload / MB
    table = []
    for label, elapsed, cpu in log_rows:
        table.append((label, "%.0f MB/s" % (mb / elapsed), "%.1f ms" % (cpu / mb * 1000),
                      "%.2f s" % cpu))
    out += ["## Log relay: %d apps x %d MB of 100-byte lines, median of %d rounds"
            % (settings["writers"], settings["mb_per_writer"], settings["log_rounds"]), "",
            harness.markdown_table(("supervisor, output", "throughput", "CPU per MB",
                                    "CPU total"), table), ""]
    out += ["- restart: %d restarts of `sleep 3600` per row, rows interleaved; the CLI rows "
            "include the interpreter start-up of `stage1` / `supervisorctl`."
            % settings["restarts"],
            "- log relay: payload MB (10^6 bytes) over the time from releasing the writers to "
            "the last byte in its file; CPU is the supervisor's own utime+stime from "
            "/proc/PID/stat (10 ms ticks), not the writers'.",
            "- RSS while idle with one app: stage1 init %d KiB, supervisord %d KiB."
            % (rss["stage1 init"], rss["supervisord"]), ""]
    by = {label: (elapsed, cpu) for label, elapsed, cpu in log_rows}
    lines = [
        ("restart via the socket", med["stage1 (socket)"], med["supervisord (XML-RPC)"],
         "supervisord XML-RPC", "ms"),
        ("restart via the CLI", med["stage1 app restart (CLI)"],
         med["supervisorctl restart (CLI)"], "supervisorctl", "ms"),
        ("prefix throughput", mb / by["stage1 prefix"][0],
         mb / by["supervisord stdout_logfile=/dev/stdout"][0], "supervisord /dev/stdout", "MB/s"),
        ("file throughput", mb / by["stage1 file"][0], mb / by["supervisord stdout_logfile"][0],
         "supervisord files", "MB/s"),
        ("prefix CPU per MB", by["stage1 prefix"][1] / mb,
         by["supervisord stdout_logfile=/dev/stdout"][1] / mb, "supervisord /dev/stdout", "ms"),
        ("file CPU per MB", by["stage1 file"][1] / mb, by["supervisord stdout_logfile"][1] / mb,
         "supervisord files", "ms"),
    ]
    out.append("```")
    for what, ours, theirs, peer, unit in lines:
        scale = 1000 if unit == "ms" else 1
        ratio = ours / theirs if theirs else float("inf")
        out.append("%-24s %8.1f %s vs %s %.1f %s = %.2fx"
                   % (what + ":", ours * scale, unit, peer, theirs * scale, unit, ratio))
    out.append("```")
    return "\n".join(out)


def main(argv=None):
    import argparse
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="fewer samples: a smoke run")
    args = p.parse_args(argv)
    if os.geteuid() != 0:
        print("live bench: run as root (pods of root apps)", file=sys.stderr)
        return 1
    log = lambda msg: print(msg, file=sys.stderr, flush=True)
    try:
        body = run(quick=args.quick, log=log)
    except BenchError as err:
        log("live bench: %s" % err)
        return 1
    try:
        import run as dispatcher   # bench/run.py: the same header as the other suites
        head = dispatcher.header("live", args.quick)
    except (ImportError, AttributeError):
        head = ["# Benchmark: live", "", "- date: %s" % time.strftime("%Y-%m-%d %H:%M %Z"),
                "- command: `python bench/live_bench.py%s`" % (" --quick" if args.quick else ""),
                ""]
    text = "\n".join(head + [body, ""])
    print(text)
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    with open(os.path.join(HERE, "results", "live.md"), "w") as f:
        f.write(text)
    log("live bench: wrote bench/results/live.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
