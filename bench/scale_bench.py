"""The scale suite: pods of N apps, N = 100, 400, 1600 (issue 14).

Does every event cost the init the same whatever the pod's size?  For each
N, `stage1 run` with N apps of `sleep 1000`, supervisord with the same N
programs and the Python floor (below) run as PID 1 of a fresh PID
namespace (`unshare --pid --fork --mount-proc`), in the same run, rounds
rotating which goes first; medians of the rounds.

  all running      from spawning unshare until the last app has exec'd:
                   the time the kernel stamped on that exec, from its process
                   events (harness.ExecWatch: the proc connector), counting
                   the init's children that exec'd `sleep`; supervisord with
                   startsecs=0.
  init CPU, start  the init's own CPU time (schedstat) once the bench has
                   seen that last exec.
  init RSS         VmRSS of the init once the apps run and it has settled.
  status answer    one `{"op": "status"}` on POD/stage1.sock, read to its
                   newline: its size, the time until it has all arrived,
                   whether it is whole (valid JSON naming all N apps, each
                   running with its pid); supervisord: getAllProcessInfo
                   over XML-RPC.
  restart CPU      the init's own CPU per restart of one app (request ->
                   new pid running; stage1 over its socket, supervisord
                   stopProcess + startProcess over XML-RPC), read once the
                   init has been idle again for 30 ms, so the work it does
                   after answering counts too; median of the restarts.
                   stage1's are taken in a phase of their own with a pod of
                   each size running at once, the restarts going round
                   them (the target is a ratio between sizes).
  all stopped      from SIGTERM to the init until every app has exited
                   (zombies count as stopped); all reaped: until every app
                   has been reaped; init exit: until the init has exited.
                   Each app is watched through a pidfd (readable when the
                   process exits, hung up when it is reaped), so the bench
                   sleeps in epoll_wait instead of polling /proc.

The "Python floor" is the project's interpreter posix_spawning the N apps
in a loop, then on SIGTERM passing it on to each and reaping them, with
nothing else: what spawning and stopping N processes one after the other
costs on this machine, not a peer.  Its "stop+reap" is its all reaped.
"""
import json
import os
import select
import signal
import socket
import sys
import time

import harness
from harness import BenchError

VENV = os.environ.get("STAGE1_VENV") or os.path.join(harness.ROOT, ".venv")
STAGE1 = os.path.join(VENV, "bin", "stage1")
PYTHON = os.path.join(VENV, "bin", "python")
SUPERVISORD = "/usr/bin/supervisord"

# The path every init execs, the floor too: found once here, as an image
# manifest names its program, so that no init does a PATH search per app
# the floor does not do.
APP_ARGV = [harness.which("sleep"), "1000"]
APP_COMM = b"sleep"
FULL = {"sizes": (100, 400, 1600), "rounds": 5, "restarts": 40, "settle": 0.5}
QUICK = {"sizes": (25, 100, 400), "rounds": 1, "restarts": 10, "settle": 0.3}
START_TIMEOUT = 120.0       # s: supervisord at 1600 takes about 13 s here
STOP_TIMEOUT = 60.0

STAGE1_ROW, SUPERVISORD_ROW, FLOOR = "stage1 run", "supervisord", "Python floor"

TARGET_RUNNING = 1.2        # x the floor's all running, at the largest N
TARGET_STOPPED = 1.5        # x the floor's stop+reap
TARGET_EXIT_AFTER_REAP = 0.100   # s
TARGET_RESTART = 1.3        # x the restart CPU at the smallest N
TARGET_RSS_KIB = 24 * 1024



def run(quick=False, log=print, settings=None):
    settings = settings or (QUICK if quick else FULL)
    _check_tools()
    inits = [(STAGE1_ROW, Stage1Row), (SUPERVISORD_ROW, SupervisordRow), (FLOOR, FloorRow)]
    inits = [i for i in inits if i[0] in settings.get("rows", (i[0],))]
    results = {(n, label): [] for n in settings["sizes"] for label, _ in inits}
    with harness.workdir() as tmp:
        for r in range(settings["rounds"]):
            for n in settings["sizes"]:
                order = inits[r % len(inits):] + inits[:r % len(inits)]
                for label, cls in order:
                    log("scale: round %d/%d: %d apps: %s" % (r + 1, settings["rounds"], n, label))
                    d = os.path.join(tmp, "%s-%d-%d" % (label.replace(" ", "-"), n, r))
                    os.makedirs(d)
                    results[(n, label)].append(cls(d, n).measure(settings))
        restart = restart_phase(tmp, settings, log)
    for n in settings["sizes"]:
        for r in results[(n, STAGE1_ROW)]:
            r["restart_cpu"] = restart[n]
    return report(results, settings)


def _check_tools():
    for path in (STAGE1, SUPERVISORD):
        if not os.access(path, os.X_OK):
            raise BenchError("%s is missing (./build.sh bench installs it)" % path)


# -- one init with N apps ---------------------------------------------------------

class Row:
    """One run of one init with n apps: start, settle, ask, restart, stop."""
    label = None

    def __init__(self, workdir, n):
        self.dir, self.n = workdir, n
        self.stderr_path = os.path.join(workdir, "stderr")

    def argv(self):
        raise NotImplementedError

    def measure(self, settings):
        argv = harness.UNSHARE + self.argv()
        watch = harness.ExecWatch()
        try:
            t0 = time.monotonic_ns()
            unshare = harness.spawn(argv, stderr_path=self.stderr_path)
            self.init = None
            self.init = harness.wait_until("the init of %s" % self.label,
                                           lambda: next(iter(harness.children(unshare)), None))
            try:
                execs = watch.wait_execs(self.init, APP_COMM, self.n, START_TIMEOUT,
                                         "%d apps of %s" % (self.n, self.label))
            except BenchError as err:
                raise BenchError("%s (stderr: %s)" % (err, self.tail()))
            out = {"running": (execs[-1][0] - t0) / 1e9,
                   "start_cpu": harness.cpu_ns(self.init) / 1e9}
        except BaseException:
            if "unshare" in locals():
                harness.end_namespace(unshare, self.init)
            raise
        finally:
            watch.close()
        try:
            time.sleep(settings["settle"])
            self.ready()
            out["rss_kib"] = harness.rss_kib(self.init)
            out["status"] = self.status()
            out["restart_cpu"] = None if self.label == STAGE1_ROW else \
                self.restarts(settings["restarts"])
            apps = self._apps()
            if len(apps) != self.n:
                raise BenchError("%s: %d of %d apps running before the stop (stderr: %s)"
                                 % (self.label, len(apps), self.n, self.tail()))
            out.update(self._stop(apps))
            code = harness.wait_exit(self.label, unshare)
            unshare = None
        finally:
            if unshare is not None:
                harness.end_namespace(unshare, self.init)
        if code != 0:
            raise BenchError("%s exited %d after SIGTERM (stderr: %s)" % (self.label, code, self.tail()))
        return out

    def ready(self):
        """Anything to wait for once the apps run (a control socket)."""

    def status(self):
        return None

    def restarts(self, count):
        return None

    def tail(self):
        try:
            with open(self.stderr_path, errors="replace") as f:
                return f.read()[-300:].strip() or "(no stderr)"
        except OSError:
            return "(no stderr)"

    # -- /proc and pidfds --------------------------------------------------------

    def _apps(self, seen=None):
        seen = {} if seen is None else seen
        out = []
        for pid in harness.children(self.init):
            if pid not in seen and harness.comm_of(pid) == APP_COMM:
                seen[pid] = True
            if pid in seen:
                out.append(pid)
        return out

    def _wait_all_running(self):
        seen = {}
        try:
            harness.wait_until("%d apps of %s" % (self.n, self.label),
                               lambda: len(self._apps(seen)) >= self.n, timeout=START_TIMEOUT)
        except BenchError:
            raise BenchError("%s: %d of %d apps running after %d s (stderr: %s)"
                             % (self.label, len(self._apps(seen)), self.n, START_TIMEOUT,
                                self.tail()))

    def _stop(self, apps):
        """SIGTERM to the init; when the last app exited, was reaped, the init exited."""
        ep = select.epoll()
        fds = {}
        try:
            for pid in apps:
                fd = os.pidfd_open(pid)
                fds[fd] = pid
                ep.register(fd, select.EPOLLIN)
            init_fd = os.pidfd_open(self.init)
            fds[init_fd] = self.init
            ep.register(init_fd, select.EPOLLIN)
            running, unreaped = set(fds) - {init_fd}, set(fds) - {init_fd}
            last_exit = last_reap = init_exit = None
            t1 = time.perf_counter()
            os.kill(self.init, signal.SIGTERM)
            deadline = t1 + STOP_TIMEOUT
            while init_exit is None or unreaped:
                left = deadline - time.perf_counter()
                if left <= 0:
                    raise BenchError("%s: %d apps still running, %d unreaped %d s after SIGTERM "
                                     "(stderr: %s)" % (self.label, len(running), len(unreaped),
                                                       STOP_TIMEOUT, self.tail()))
                events = ep.poll(left)
                now = time.perf_counter()
                for fd, mask in events:
                    if fd == init_fd:
                        init_exit = now
                        ep.unregister(fd)
                        continue
                    if fd in running:
                        running.discard(fd)
                        last_exit = now
                        ep.modify(fd, 0)     # from now on: only the hang-up of the reap
                    if mask & select.EPOLLHUP and fd in unreaped:
                        unreaped.discard(fd)
                        last_reap = now
                        ep.unregister(fd)
        finally:
            ep.close()
            for fd in fds:
                os.close(fd)
        return {"stopped": last_exit - t1, "reaped": last_reap - t1, "exited": init_exit - t1,
                "gap": init_exit - last_reap}


def _settled_cpu(pid):
    """pid's CPU time (s) once it has been idle for 30 ms."""
    return harness.settled_cpu_ns(pid, quiet=0.03, poll=0.005) / 1e9


# -- stage1 ---------------------------------------------------------------------------

class Stage1Row(Row):
    label = STAGE1_ROW

    def argv(self):
        self.pod = os.path.join(self.dir, "pod")
        os.makedirs(self.pod)
        apps = [{"name": _name(i), "image": {"id": "sha512-" + "0" * 128},
                 "app": {"exec": APP_ARGV, "user": "0", "group": "0"}} for i in range(self.n)]
        with open(os.path.join(self.pod, "pod"), "w") as f:
            json.dump({"acKind": "PodManifest", "acVersion": "0.8.11", "apps": apps}, f)
        self.sock = os.path.join(self.pod, "stage1.sock")
        return [STAGE1, "run", self.pod]

    def ready(self):
        harness.wait_until("stage1's control socket", lambda: os.path.exists(self.sock))

    def request(self, obj):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.settimeout(30)
            s.connect(self.sock)
            s.sendall(json.dumps(obj).encode() + b"\n")
            chunks = []
            while not chunks or not chunks[-1].endswith(b"\n"):
                chunk = s.recv(1 << 20)
                if not chunk:
                    break         # cut off: the caller judges what came
                chunks.append(chunk)
        finally:
            s.close()
        return b"".join(chunks)

    def status(self):
        cpu0 = _settled_cpu(self.init)
        t0 = time.perf_counter()
        data = self.request({"op": "status"})
        elapsed = time.perf_counter() - t0
        cpu = _settled_cpu(self.init) - cpu0
        try:
            answer = json.loads(data)
            apps = answer["apps"]
            whole = (answer.get("ok") is True and len(apps) == self.n and
                     all(a["state"] == "running" and a["pid"] for a in apps))
        except (ValueError, KeyError, TypeError):
            whole = False
        return {"bytes": len(data), "seconds": elapsed, "cpu": cpu, "whole": whole}

    def restart(self, i, count):
        """The init's CPU for one restart (of the i-th of count apps spread over the pod)."""
        name = _name(i * self.n // count)
        cpu0 = _settled_cpu(self.init)
        answer = json.loads(self.request({"op": "restart", "app": name}))
        if not answer.get("ok") or answer.get("state") != "running":
            raise BenchError("stage1: restart of %s: %r" % (name, answer))
        return _settled_cpu(self.init) - cpu0


def restart_phase(tmp, settings, log):
    """{N: the median init CPU of a restart}: a stage1 pod of each size
    runs at once and the restarts go round them, so that the machine's
    noise moves every size alike (one pod after the other, the ratio of
    two medians taken minutes apart is mostly noise)."""
    pods, count = {}, settings["restarts"]
    try:
        for n in settings["sizes"]:
            row = pods[n] = Stage1Row(os.path.join(tmp, "restart-%d" % n), n)
            os.makedirs(row.dir)
            row.unshare = harness.spawn(harness.UNSHARE + row.argv(), stderr_path=row.stderr_path)
            row.init = harness.wait_until("the init of %s" % row.label,
                                          lambda: next(iter(harness.children(row.unshare)), None))
            row._wait_all_running()
            row.ready()
        log("scale: %d restarts of each pod, interleaved" % count)
        samples = {n: [] for n in pods}
        sizes = list(pods)
        for i in range(count):
            for n in sizes[i % len(sizes):] + sizes[:i % len(sizes)]:
                samples[n].append(pods[n].restart(i, count))
        return {n: harness.median(v) for n, v in samples.items()}
    finally:
        for row in pods.values():
            if getattr(row, "unshare", None) is not None:
                harness.end_namespace(row.unshare, row.init)


def _name(i):
    return "app%04d" % i


# -- supervisord ----------------------------------------------------------------------

class SupervisordRow(Row):
    label = SUPERVISORD_ROW

    def argv(self):
        conf = os.path.join(self.dir, "supervisord.conf")
        self.sock = os.path.join(self.dir, "supervisor.sock")
        lines = ["[unix_http_server]", "file=%s" % self.sock, "chmod=0700", "",
                 "[rpcinterface:supervisor]",
                 "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface",
                 "",
                 # Three pipes per program: the default 1024 fds would not do.
                 "[supervisord]", "nodaemon=true", "user=root",
                 "minfds=%d" % (4 * self.n + 256), "minprocs=%d" % (self.n + 200),
                 "logfile=%s/supervisord.log" % self.dir,
                 "pidfile=%s/supervisord.pid" % self.dir, "childlogdir=%s" % self.dir, ""]
        for i in range(self.n):
            lines += ["[program:%s]" % _name(i), "command=%s" % " ".join(APP_ARGV),
                      "autostart=true", "autorestart=false", "startsecs=0", "startretries=0",
                      "stopsignal=TERM", "stopwaitsecs=10",
                      "stdout_logfile=NONE", "stderr_logfile=NONE", ""]
        with open(conf, "w") as f:
            f.write("\n".join(lines))
        return [SUPERVISORD, "-n", "-c", conf]

    def ready(self):
        from live_bench import _UnixTransport
        import xmlrpc.client
        self.rpc = xmlrpc.client.ServerProxy("http://localhost",
                                             transport=_UnixTransport(self.sock))
        harness.wait_until("supervisord's socket", lambda: os.path.exists(self.sock))

    def status(self):
        cpu0 = _settled_cpu(self.init)
        t0 = time.perf_counter()
        infos = self.rpc.supervisor.getAllProcessInfo()
        elapsed = time.perf_counter() - t0
        cpu = _settled_cpu(self.init) - cpu0
        whole = len(infos) == self.n and all(i["statename"] == "RUNNING" for i in infos)
        return {"bytes": None, "seconds": elapsed, "cpu": cpu, "whole": whole}

    def restarts(self, count):
        samples = []
        for i in range(count):
            name = _name(i * self.n // count)
            cpu0 = _settled_cpu(self.init)
            self.rpc.supervisor.stopProcess(name, True)
            self.rpc.supervisor.startProcess(name, True)
            samples.append(_settled_cpu(self.init) - cpu0)
        return harness.median(samples)


# -- the floor ------------------------------------------------------------------------

class FloorRow(Row):
    label = FLOOR

    def argv(self):
        return harness.floor_argv(PYTHON, self.n, APP_ARGV)


# -- the report -----------------------------------------------------------------------

def report(results, settings):
    sizes = settings["sizes"]
    med = {key: _medians(runs) for key, runs in results.items()}
    header = ["N", "init", "all running", "init CPU, start", "init RSS", "all stopped",
              "all reaped", "init exit", "exit - last reap", "restart: init CPU",
              "status answer"]
    rows = []
    for n in sizes:
        for label in (STAGE1_ROW, SUPERVISORD_ROW, FLOOR):
            if (n, label) not in med:
                continue
            m = med[(n, label)]
            rows.append([n, label, _ms(m["running"]), _ms(m["start_cpu"]), _mib(m["rss_kib"]),
                         _ms(m["stopped"]), _ms(m["reaped"]), _ms(m["exited"]),
                         _ms(m["gap"]),
                         "-" if m["restart_cpu"] is None else _ms(m["restart_cpu"], 2),
                         _status_cell(m["status"])])
    small, big = sizes[0], sizes[-1]
    s, f, sv = med[(big, STAGE1_ROW)], med[(big, FLOOR)], med.get((big, SUPERVISORD_ROW))
    s_small = med[(small, STAGE1_ROW)]
    notes = [
        "",
        "- %s apps `%s`, each init PID 1 of its own PID namespace; medians of %d rounds, "
        "rotating which init goes first." % (", ".join(map(str, sizes)), " ".join(APP_ARGV),
                                             settings["rounds"]),
        "- %s: the project's interpreter posix_spawning the N apps in a loop, then passing "
        "SIGTERM on and reaping them; what spawning and stopping them one by one costs on this "
        "machine, not a peer. Its stop+reap is its all reaped." % FLOOR,
        "- all stopped / all reaped / init exit: from SIGTERM to the init until every app has "
        "exited / has been reaped / the init has exited (pidfds); exit - last reap: the init's "
        "own work after its last app is gone.",
        "- restart: %d restarts of one app per row (stage1: its socket, a pod of each size "
        "running at once, the restarts interleaved; supervisord: stopProcess + startProcess over "
        "XML-RPC), the init's CPU (schedstat) until it is idle again, median. status: one status request, whole if it names all N apps, running, "
        "with their pids." % settings["restarts"],
        "- scaling of stage1 from %d to %d apps (%.0fx the apps): all running %s, all stopped "
        "%s, init exit %s, restart CPU %s, status answer %s." % (
            small, big, big / small, _ratio(s["running"], s_small["running"]),
            _ratio(s["stopped"], s_small["stopped"]), _ratio(s["exited"], s_small["exited"]),
            _ratio(s["restart_cpu"], s_small["restart_cpu"]),
            _ratio(s["status"]["seconds"], s_small["status"]["seconds"])),
        "- stage1 vs supervisord at %d: all running %s, all stopped %s, init exit %s, RSS %s, "
        "restart CPU %s, status answer %s." % (
            big, _ratio(s["running"], sv["running"]), _ratio(s["stopped"], sv["stopped"]),
            _ratio(s["exited"], sv["exited"]), _ratio(s["rss_kib"], sv["rss_kib"]),
            _ratio(s["restart_cpu"], sv["restart_cpu"]),
            _ratio(s["status"]["seconds"], sv["status"]["seconds"])) if sv else
        "- supervisord left out (--no-supervisord).",
        "",
        "```",
        _target("all %d running" % big, "%s vs the floor %s = %s" % (
            _ms(s["running"]), _ms(f["running"]), _ratio(s["running"], f["running"])),
            "<= %.1fx" % TARGET_RUNNING, s["running"] <= TARGET_RUNNING * f["running"]),
        _target("all %d stopped" % big, "%s vs the floor's stop+reap %s = %s" % (
            _ms(s["stopped"]), _ms(f["reaped"]), _ratio(s["stopped"], f["reaped"])),
            "<= %.1fx" % TARGET_STOPPED, s["stopped"] <= TARGET_STOPPED * f["reaped"]),
        _target("init exit after the last reap", _ms(s["gap"]),
                "<= %d ms" % (TARGET_EXIT_AFTER_REAP * 1000), s["gap"] <= TARGET_EXIT_AFTER_REAP),
        _target("restart init CPU %d vs %d" % (big, small), "%s vs %s = %s" % (
            _ms(s["restart_cpu"], 2), _ms(s_small["restart_cpu"], 2),
            _ratio(s["restart_cpu"], s_small["restart_cpu"])),
            "<= %.1fx" % TARGET_RESTART, s["restart_cpu"] <= TARGET_RESTART * s_small["restart_cpu"]),
        _target("status answer, %d apps" % big, _status_cell(s["status"]), "whole",
                s["status"]["whole"]),
        _target("init RSS, %d apps" % big, _mib(s["rss_kib"]),
                "<= %d MiB" % (TARGET_RSS_KIB // 1024), s["rss_kib"] <= TARGET_RSS_KIB),
        "```",
    ]
    return "\n".join([harness.markdown_table(header, rows)] + notes)


def _medians(runs):
    out = {}
    for key in runs[0]:
        values = [r[key] for r in runs]
        if key == "status":
            out[key] = None if values[0] is None else {
                "bytes": values[0]["bytes"],
                "seconds": harness.median([v["seconds"] for v in values]),
                "cpu": harness.median([v["cpu"] for v in values]),
                "whole": all(v["whole"] for v in values)}
        elif values[0] is None:
            out[key] = None
        else:
            out[key] = harness.median(values)
    return out


def _status_cell(st):
    if st is None:
        return "-"
    size = "" if st["bytes"] is None else "%d KB, " % (st["bytes"] // 1000)
    return "%s (%s%s, CPU %s)" % ("whole" if st["whole"] else "CUT OFF", size,
                                  _ms(st["seconds"]), _ms(st["cpu"]))


def _target(what, figure, goal, ok):
    return "%-32s %-52s target %-10s %s" % (what + ":", figure, goal, "PASS" if ok else "FAIL")


def _ratio(a, b):
    return "%.2fx" % (a / b) if a is not None and b else "-"


def _ms(seconds, digits=1):
    return "%.*f ms" % (digits, seconds * 1000)


def _mib(kib):
    return "%.1f MiB" % (kib / 1024.0)


def main(argv):
    """Standalone: `python bench/scale_bench.py [--quick] [--sizes 100,1600] [--rounds R]
    [--no-supervisord]`;
    `./build.sh bench --only scale` is the usual way."""
    import argparse
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--sizes", help="comma-separated pod sizes, smallest first")
    p.add_argument("--rounds", type=int)
    p.add_argument("--no-supervisord", action="store_true",
                   help="leave supervisord out (a quicker look; the report needs it)")
    args = p.parse_args(argv)
    if os.geteuid() != 0:
        sys.exit("scale bench: unshare --pid needs root")
    settings = dict(QUICK if args.quick else FULL)
    if args.sizes:
        settings["sizes"] = tuple(int(n) for n in args.sizes.split(","))
    if args.rounds:
        settings["rounds"] = args.rounds
    if args.no_supervisord:
        settings["rows"] = (STAGE1_ROW, FLOOR)
    print(run(settings=settings, log=lambda m: print(m, file=sys.stderr, flush=True)))


if __name__ == "__main__":
    main(sys.argv[1:])
