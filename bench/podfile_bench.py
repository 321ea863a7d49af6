"""The pod file suite: the same three programs under `stage1 run stage1.toml`
and under supervisord, and what a health check costs (issue 13).
`./build.sh bench --only podfile`, or `python bench/podfile_bench.py [--quick]`.

The three programs: `db` and `web`, each `python3 -m http.server` on a
port of 127.0.0.1, and `worker`, a shell loop.  The pod file gives db a tcp
check, web an http check and `depends_on = { db = "healthy" }`, and
restart policies; the supervisord.conf is what the same programs take there
(a foreground supervisord, output on its stdout, supervisorctl working, the
same restart policies, db's priority before web's; it has no health checks
and no start order that waits).

  lines of config   non-blank lines that are not comments, of the file as
                    written here (both are in the report);
  all answering     from spawning `unshare --pid --fork --mount-proc INIT`
                    until db accepts a connection, web answers GET / with 200
                    and the worker runs, polled every 2 ms: the same event
                    for both inits;
  ready             each init's own word that all is up: stage1's
                    `rkt/supervisor-status` symlink (db and web healthy, the
                    worker started), supervisord's getAllProcessInfo all
                    RUNNING (its default startsecs=1: a program is RUNNING
                    once it has lived a second);
  init RSS          VmRSS of the init 0.5 s after both.

CPU per check: a pod of one `sleep` whose check (tcp, http or exec) runs
every 20 ms for a few seconds; the init's own CPU time (schedstat, so not
the exec check's child) over the window, divided by the checks the server
counted (or the exec check's lines in a file).  The row without a check is
the same pod's idle CPU over the window.  Beside each, the "Python floor":
the project's interpreter doing that probe and nothing else (an epoll wait
for the interval, a non-blocking connect, the GET, or a posix_spawn and
wait), PID 1 of a namespace the same way: what the probe itself costs on
this machine, which no init in Python goes below.
"""
import os
import select
import signal
import socket
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import harness                                    # noqa: E402
from harness import BenchError                    # noqa: E402

VENV = os.environ.get("STAGE1_VENV") or os.path.join(harness.ROOT, ".venv")
STAGE1 = os.path.join(VENV, "bin", "stage1")
SUPERVISORD = "/usr/bin/supervisord"
PY = "/usr/bin/python3"

FULL = {"rounds": 6, "settle": 0.5, "window": 4.0}
QUICK = {"rounds": 2, "settle": 0.3, "window": 1.5}
CHECK_INTERVAL = 0.02

POD_FILE = """\
# db, web once db is healthy, and a worker
[db]
command = "{py} -m http.server {db} --bind 127.0.0.1"
restart = "always"
healthcheck = {{ tcp = "127.0.0.1:{db}", start_interval = "0.05s" }}

[web]
command = "{py} -m http.server {web} --bind 127.0.0.1"
restart = "on-failure"
depends_on = {{ db = {{ condition = "healthy" }} }}
healthcheck = {{ http = "http://127.0.0.1:{web}/", start_interval = "0.05s" }}

[worker]
command = ["sh", "-c", "while :; do echo tick; sleep 1; done"]
restart = "always"
"""

SUPERVISORD_CONF = """\
; db, web and a worker, in the foreground, their output on stdout
[supervisord]
nodaemon=true
user=root
logfile={dir}/supervisord.log
pidfile={dir}/supervisord.pid

[unix_http_server]
file={dir}/supervisor.sock

[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

[supervisorctl]
serverurl=unix://{dir}/supervisor.sock

[program:db]
command={py} -m http.server {db} --bind 127.0.0.1
priority=1
autorestart=true
stdout_logfile=/dev/stdout
stdout_logfile_maxbytes=0
redirect_stderr=true

[program:web]
command={py} -m http.server {web} --bind 127.0.0.1
priority=2
autorestart=unexpected
stdout_logfile=/dev/stdout
stdout_logfile_maxbytes=0
redirect_stderr=true

[program:worker]
command=sh -c "while :; do echo tick; sleep 1; done"
autorestart=true
stdout_logfile=/dev/stdout
stdout_logfile_maxbytes=0
redirect_stderr=true
"""


def run(quick=False, log=print):
    settings = QUICK if quick else FULL
    for path in (STAGE1, SUPERVISORD):
        if not os.access(path, os.X_OK):
            raise BenchError("%s is missing (./build.sh bench installs it)" % path)
    with harness.workdir() as tmp:
        os.environ["STAGE1_RUNTIME_DIR"] = os.path.join(tmp, "runtime")
        inits = [("stage1 run stage1.toml", _stage1), ("supervisord", _supervisord)]
        results = {label: [] for label, _ in inits}
        configs = {}
        for r in range(settings["rounds"]):
            for label, make in (inits if r % 2 == 0 else inits[::-1]):
                log("podfile: round %d/%d: %s" % (r + 1, settings["rounds"], label))
                argv, ready, config = make(tmp, r)
                configs[label] = config
                results[label].append(_one_run(label, argv, ready, tmp, settings))
        costs = check_costs(tmp, settings, log)
    return report(results, configs, costs, settings)


# -- the three programs ------------------------------------------------------------------

def _ports():
    out = []
    socks = [socket.socket() for _ in range(2)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
        out.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return out


def _stage1(tmp, r):
    db, web = _ports()
    d = os.path.join(tmp, "stage1-%d" % r)
    os.makedirs(d)
    path = os.path.join(d, "stage1.toml")
    text = POD_FILE.format(py=PY, db=db, web=web)
    with open(path, "w") as f:
        f.write(text)
    status = os.path.join(os.environ["STAGE1_RUNTIME_DIR"], "stage1-%d" % r, "rkt",
                          "supervisor-status")

    def ready(init):
        try:
            return os.readlink(status) == "ready"
        except OSError:
            return False
    return {"argv": [STAGE1, "run", path], "ports": (db, web)}, ready, text


def _supervisord(tmp, r):
    import xmlrpc.client
    from live_bench import _UnixTransport
    db, web = _ports()
    d = os.path.join(tmp, "supervisord-%d" % r)
    os.makedirs(d)
    conf = os.path.join(d, "supervisord.conf")
    text = SUPERVISORD_CONF.format(py=PY, db=db, web=web, dir=d)
    with open(conf, "w") as f:
        f.write(text)
    rpc = xmlrpc.client.ServerProxy("http://localhost",
                                    transport=_UnixTransport(os.path.join(d, "supervisor.sock")))

    def ready(init):
        try:
            infos = rpc.supervisor.getAllProcessInfo()
        except Exception:
            return False
        return len(infos) == 3 and all(i["statename"] == "RUNNING" for i in infos)
    return {"argv": [SUPERVISORD, "-n", "-c", conf], "ports": (db, web)}, ready, \
        text.replace(d, "/run/supervisor")


def _answering(init, ports):
    db, web = ports
    try:
        with socket.create_connection(("127.0.0.1", db), timeout=0.5):
            pass
        with socket.create_connection(("127.0.0.1", web), timeout=0.5) as s:
            s.sendall(b"GET / HTTP/1.0\r\n\r\n")
            if not s.recv(64).startswith(b"HTTP/1.0 200"):
                return False
    except OSError:
        return False
    return any(b"while :" in _cmdline(p) for p in harness.descendants(init))


def _cmdline(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return f.read()
    except OSError:
        return b""


def _one_run(label, spec, ready, tmp, settings):
    stderr_path = os.path.join(tmp, "%s.stderr" % label.split()[0])
    t0 = time.perf_counter()
    unshare = harness.spawn(harness.UNSHARE + spec["argv"], stderr_path=stderr_path)
    init = None
    try:
        init = harness.wait_until("the init of %s" % label,
                                  lambda: next(iter(harness.children(unshare)), None))
        answering = ready_at = None
        deadline = time.monotonic() + 20
        while answering is None or ready_at is None:
            now = time.perf_counter() - t0
            if answering is None and _answering(init, spec["ports"]):
                answering = now
            if ready_at is None and ready(init):
                ready_at = now
            if time.monotonic() > deadline:
                raise BenchError("%s: not all up after 20 s (stderr: %s)" % (
                    label, harness._tail(stderr_path)))
            time.sleep(0.002)
        time.sleep(settings["settle"])
        rss = harness.rss_kib(init)
        os.kill(init, signal.SIGTERM)
        deadline = time.monotonic() + 20
        while not os.waitpid(unshare, os.WNOHANG)[0]:
            if time.monotonic() > deadline:
                raise BenchError("%s did not stop" % label)
            time.sleep(0.005)
        unshare = None
    finally:
        if unshare is not None:
            harness.end_namespace(unshare, init)
    return {"answering": answering, "ready": ready_at, "rss_kib": rss}


# -- CPU per check ---------------------------------------------------------------------

class _CountingServer:
    """Accepts on 127.0.0.1, answers an HTTP request with 200, counts connections."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.port = self.sock.getsockname()[1]
        self.count = 0
        self.done = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while not self.done:
            if not select.select([self.sock], [], [], 0.2)[0]:
                continue
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.count += 1
            conn.settimeout(0.5)
            try:
                if conn.recv(4096):
                    conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n")
            except OSError:
                pass
            conn.close()

    def close(self):
        self.done = True
        self.thread.join()
        self.sock.close()


FLOOR = r"""
import os, select, socket, sys, time
kind, port, interval, counter = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
ep = select.epoll()
argv = ["/bin/sh", "-c", "echo >> " + counter]
while True:
    ep.poll(interval)
    if kind == "exec":
        os.waitpid(os.posix_spawn(argv[0], argv, {}), 0)
        continue
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM | socket.SOCK_NONBLOCK)
    s.connect_ex(("127.0.0.1", port))
    ep.register(s.fileno(), select.EPOLLOUT)
    ep.poll(5)
    s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    if kind == "http":
        ep.modify(s.fileno(), select.EPOLLIN)
        s.send(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")
        ep.poll(5)
        s.recv(4096)
    ep.unregister(s.fileno())
    s.close()
"""


def check_costs(tmp, settings, log):
    """{kind: (checks, init CPU µs per check, the floor's µs per check)}; kind
    None: the idle pod's µs per s."""
    server = _CountingServer()
    out = {}
    try:
        for kind in (None, "tcp", "http", "exec"):
            log("podfile: CPU per check: %s" % (kind or "no check"))
            n, us = _check_cost(tmp, kind, server, settings)
            floor = None if kind is None else _check_cost(tmp, kind, server, settings,
                                                          floor=True)[1]
            out[kind] = (n, us, floor)
    finally:
        server.close()
    return out


def _check_cost(tmp, kind, server, settings, floor=False):
    d = os.path.join(tmp, "check-%s%s" % (kind, "-floor" if floor else ""))
    os.makedirs(d)
    counter = os.path.join(d, "checks")
    lines = ['[a]', 'command = "sleep 3600"', 'log = "inherit"']
    if kind is not None:
        target = {"tcp": '"127.0.0.1:%d"' % server.port,
                  "http": '"http://127.0.0.1:%d/"' % server.port,
                  "exec": '["sh", "-c", "echo >> %s"]' % counter}[kind]
        lines.append('healthcheck = { %s = %s, interval = %s, start_interval = %s }'
                     % (kind, target, CHECK_INTERVAL, CHECK_INTERVAL))
    path = os.path.join(d, "stage1.toml")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    argv = [STAGE1, "run", path]
    if floor:
        argv = [os.path.join(VENV, "bin", "python"), "-c", FLOOR, kind, str(server.port),
                str(CHECK_INTERVAL), counter]
    unshare = harness.spawn(harness.UNSHARE + argv, stderr_path=os.path.join(d, "stderr"))
    init = None
    try:
        init = harness.wait_until("the init", lambda: next(iter(harness.children(unshare)),
                                                           None))
        if not floor:
            harness.wait_until("the app", lambda: harness.children(init))
        time.sleep(0.5)                      # past start-up
        count0, cpu0, t0 = _checks(kind, server, counter), harness.cpu_ns(init), time.monotonic()
        time.sleep(settings["window"])
        count1, cpu1, t1 = _checks(kind, server, counter), harness.cpu_ns(init), time.monotonic()
    finally:
        harness.end_namespace(unshare, init)
    if kind is None:
        return (0, (cpu1 - cpu0) / 1e3 / (t1 - t0))
    if count1 <= count0:
        raise BenchError("no %s check ran (stderr: %s)" % (kind, harness._tail(
            os.path.join(d, "stderr"))))
    return (count1 - count0, (cpu1 - cpu0) / 1e3 / (count1 - count0))


def _checks(kind, server, counter):
    if kind == "exec":
        try:
            with open(counter, "rb") as f:
                return f.read().count(b"\n")
        except FileNotFoundError:
            return 0
    return server.count


# -- the report ---------------------------------------------------------------------

def _config_lines(text):
    return sum(1 for line in text.splitlines()
               if line.strip() and not line.strip().startswith(("#", ";")))


def report(results, configs, costs, settings):
    header = ["init", "lines of config", "all answering", "ready (its own word)", "init RSS"]
    rows, med = [], {}
    for label, runs in results.items():
        m = {k: harness.median([r[k] for r in runs]) for k in runs[0]}
        med[label] = m
        rows.append([label, str(_config_lines(configs[label])), _ms(m["answering"]),
                     _ms(m["ready"]), "%.1f MiB" % (m["rss_kib"] / 1024.0)])
    s, peer = med["stage1 run stage1.toml"], med["supervisord"]
    cost_rows = [["no check (idle)", "-", "%.1f µs per s" % costs[None][1], "-", "-"]]
    for kind in ("tcp", "http", "exec"):
        n, us, floor = costs[kind]
        cost_rows.append([kind, str(n), "%.1f µs" % us, "%.1f µs" % floor, _ratio(us, floor)])
    notes = [
        "",
        "- the same three programs (db and web: `python3 -m http.server`; worker: a shell "
        "loop), each init PID 1 of its own PID namespace; medians of %d rounds, alternating "
        "which goes first." % settings["rounds"],
        "- all answering: from spawning unshare until db accepts, web answers 200 and the "
        "worker runs (polled every 2 ms); stage1 starts web only once db's tcp check has "
        "passed, supervisord starts both at once (priority orders, it does not wait).",
        "- ready: stage1's supervisor-status symlink (both checks passed); supervisord's "
        "getAllProcessInfo all RUNNING, which takes its default startsecs=1.",
        "- init RSS: VmRSS of the init %.1f s after both." % settings["settle"],
        "- stage1 vs supervisord: lines %d vs %d, all answering %s, ready %s, RSS %s." % (
            _config_lines(configs["stage1 run stage1.toml"]),
            _config_lines(configs["supervisord"]), _ratio(s["answering"], peer["answering"]),
            _ratio(s["ready"], peer["ready"]), _ratio(s["rss_kib"], peer["rss_kib"])),
        "",
        "#### What a health check costs the init",
        "",
        harness.markdown_table(["check, every %d ms" % (CHECK_INTERVAL * 1000), "checks",
                                "init CPU per check", "Python floor", "vs floor"], cost_rows),
        "",
        "- a pod of one `sleep`, the check every %d ms for %.1f s; the init's own CPU "
        "(schedstat, not the exec check's child) over the checks counted by the server "
        "(tcp, http) or in the exec check's file.  Python floor: the interpreter doing the "
        "probe alone at the same interval, PID 1 the same way; most of a probe is the "
        "kernel's (a loopback connect runs the whole handshake in the caller's syscall)."
        % (CHECK_INTERVAL * 1000, settings["window"]),
        "",
        "The pod file:",
        "",
        "```toml",
        configs["stage1 run stage1.toml"].rstrip(),
        "```",
        "",
        "The supervisord.conf:",
        "",
        "```ini",
        configs["supervisord"].rstrip(),
        "```",
    ]
    return "\n".join([harness.markdown_table(header, rows)] + notes)


def _ms(seconds):
    return "%.0f ms" % (seconds * 1000)


def _ratio(a, b):
    return "%.2fx" % (a / b) if b else "-"


if __name__ == "__main__":
    if os.geteuid() != 0:
        sys.exit("podfile bench: unshare --pid needs root")
    print(run(quick="--quick" in sys.argv[1:], log=lambda m: print(m, file=sys.stderr)))
