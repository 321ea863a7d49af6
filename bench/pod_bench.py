"""The pod suite: `stage1 run` with a pod of 200 apps beside supervisord
running the same 200 programs (issue 3).

Both inits run as PID 1 of a fresh PID namespace (`unshare --pid --fork
--mount-proc`), in the same run, rounds alternating which goes first.  The
apps are `sleep 1000`: a process that honours SIGTERM at once and costs
nothing while it runs, so every figure is the init's own.

  all running   from spawning unshare until the last app has exec'd: the
                time the kernel stamped on that exec, from its process
                events (harness.ExecWatch), counting the init's children
                that exec'd `sleep`.  This
                is the same event for both inits, whatever they call
                "running" (supervisord's RUNNING needs `startsecs`, set to
                0 here so that it is not the one held back).
  init RSS      VmRSS of the init with every app running, after a settling
                pause, so that start-up buffers it has freed are not counted.
  all stopped   from SIGTERM to the init until no app process is left alive
                (exited, zombie or not); `init exit` until unshare is reaped,
                i.e. the init has reaped everything and exited.

Beside them, not a peer, the "Python floor": the project's interpreter
posix_spawning the 200 apps in a loop, then on SIGTERM passing it on and
reaping them, with nothing else.  It shows what spawning 200 processes one
after the other costs on this machine, which no init doing it from one
thread goes below.

Another process reading /proc every millisecond takes some CPU from the
init; it does so for both rows alike.
"""
import os
import signal
import sys
import time

import harness
from harness import BenchError

VENV = os.environ.get("STAGE1_VENV") or os.path.join(harness.ROOT, ".venv")
STAGE1 = os.path.join(VENV, "bin", "stage1")
SUPERVISORD = "/usr/bin/supervisord"

APPS = 200
# The path every init execs, the floor too: found once here, as an image
# manifest names its program, so that no init does a PATH search per app
# the floor does not do.
APP_ARGV = [harness.which("sleep"), "1000"]
APP_COMM = b"sleep"
FULL = {"rounds": 6, "settle": 0.5}
QUICK = {"rounds": 3, "settle": 0.3}

TARGET_RUNNING = 0.5        # s
TARGET_RSS_KIB = 16 * 1024
TARGET_STOPPED = 0.5        # s


FLOOR = "Python floor"


def run(quick=False, log=print):
    """Measure both inits; the markdown report (table, notes, target lines)."""
    settings = QUICK if quick else FULL
    _check_tools()
    inits = [("stage1 run", _stage1_argv), ("supervisord", _supervisord_argv),
             (FLOOR, _floor_argv)]
    results = {label: [] for label, _ in inits}
    with harness.workdir() as tmp:
        for r in range(settings["rounds"]):
            order = inits[r % len(inits):] + inits[:r % len(inits)]
            for label, make_argv in order:
                log("pod: round %d/%d: %s" % (r + 1, settings["rounds"], label))
                results[label].append(one_run(label, make_argv(tmp), tmp, settings))
    return report(results, settings)


def _check_tools():
    for path in (STAGE1, SUPERVISORD):
        if not os.access(path, os.X_OK):
            raise BenchError("%s is missing (./build.sh bench installs it)" % path)


# -- the two inits --------------------------------------------------------------

def _stage1_argv(tmp):
    import json
    pod = os.path.join(tmp, "pod")
    os.makedirs(pod, exist_ok=True)
    apps = [{"name": "app%03d" % i, "image": {"id": "sha512-" + "0" * 128},
             "app": {"exec": APP_ARGV, "user": "0", "group": "0"}} for i in range(APPS)]
    with open(os.path.join(pod, "pod"), "w") as f:
        json.dump({"acKind": "PodManifest", "acVersion": "0.8.11", "apps": apps}, f)
    return [STAGE1, "run", pod]


def _floor_argv(tmp):
    return harness.floor_argv(os.path.join(VENV, "bin", "python"), APPS, APP_ARGV)


def _supervisord_argv(tmp):
    conf = os.path.join(tmp, "supervisord.conf")
    lines = ["[supervisord]", "nodaemon=true", "user=root",
             "logfile=%s/supervisord.log" % tmp, "pidfile=%s/supervisord.pid" % tmp,
             "childlogdir=%s" % tmp, ""]
    for i in range(APPS):
        lines += ["[program:app%03d]" % i, "command=%s" % " ".join(APP_ARGV),
                  "autostart=true", "autorestart=false", "startsecs=0", "startretries=0",
                  "stopsignal=TERM", "stopwaitsecs=10",
                  "stdout_logfile=NONE", "stderr_logfile=NONE", ""]
    with open(conf, "w") as f:
        f.write("\n".join(lines))
    return [SUPERVISORD, "-n", "-c", conf]


# -- one run --------------------------------------------------------------------

def one_run(label, init_argv, tmp, settings):
    """{running, rss_kib, stopped, exited} of one start, settle, stop."""
    stderr_path = os.path.join(tmp, "%s.stderr" % label.replace(" ", "_"))
    watch = harness.ExecWatch()
    t0 = time.monotonic_ns()
    unshare = harness.spawn(harness.UNSHARE + init_argv, stderr_path=stderr_path)
    init = None
    try:
        init = harness.wait_until("the init of %s" % label,
                                  lambda: next(iter(harness.children(unshare)), None))
        try:
            execs = watch.wait_execs(init, APP_COMM, APPS, 30.0, "%d apps of %s" % (APPS, label))
        except BenchError as err:
            raise BenchError("%s (stderr: %s)" % (err, _tail(stderr_path)))
        finally:
            watch.close()
        running = (execs[-1][0] - t0) / 1e9
        apps = [pid for _, pid in execs]
        time.sleep(settings["settle"])
        if len(_running_apps(init, {})) != APPS:
            raise BenchError("%s: apps ended while the pod should run (stderr: %s)"
                             % (label, _tail(stderr_path)))
        rss = harness.rss_kib(init)
        t1 = time.perf_counter()
        os.kill(init, signal.SIGTERM)
        _wait_gone(label, apps)
        stopped = time.perf_counter() - t1
        status = harness.wait_exit(label, unshare)
        exited = time.perf_counter() - t1
        unshare = None
    finally:
        if unshare is not None:
            harness.end_namespace(unshare, init)
    if status != 0:
        raise BenchError("%s exited %d after SIGTERM (stderr: %s)"
                         % (label, status, _tail(stderr_path)))
    return {"running": running, "rss_kib": rss, "stopped": stopped, "exited": exited}


def _running_apps(init, seen):
    """Pids of the init's children that have exec'd the app; `seen` caches them."""
    out = []
    for pid in harness.children(init):
        if pid not in seen and harness.comm_of(pid) == APP_COMM:
            seen[pid] = True
        if pid in seen:
            out.append(pid)
    return out


def _alive(pid):
    try:
        with open("/proc/%d/stat" % pid, "rb") as f:
            stat = f.read()
    except OSError:
        return False
    return stat[stat.rindex(b")") + 2:stat.rindex(b")") + 3] != b"Z"


def _wait_gone(label, pids):
    left = list(pids)

    def gone():
        left[:] = [p for p in left if _alive(p)]
        return not left
    harness.wait_until("every app of %s to stop" % label, gone, timeout=30.0)


def _tail(path):
    try:
        with open(path, errors="replace") as f:
            return f.read()[-300:].strip() or "(no stderr)"
    except OSError:
        return "(no stderr)"


# -- the report -----------------------------------------------------------------

def report(results, settings):
    header = ["init", "all %d running" % APPS, "init RSS", "all stopped", "init exit"]
    rows = []
    med = {}
    for label, runs in results.items():
        m = {k: harness.median([r[k] for r in runs]) for k in runs[0]}
        med[label] = m
        rows.append([label, _ms(m["running"]), _mib(m["rss_kib"]), _ms(m["stopped"]),
                     _ms(m["exited"])])
    s, peer = med["stage1 run"], med["supervisord"]
    notes = [
        "",
        "- %d apps `%s`, each init PID 1 of its own PID namespace; medians of %d rounds, "
        "rotating which init goes first." % (APPS, " ".join(APP_ARGV), settings["rounds"]),
        "- %s: the project's interpreter posix_spawning the %d apps in a loop, then passing "
        "SIGTERM on and reaping them; what spawning them one by one costs on this machine, "
        "not a peer." % (FLOOR, APPS),
        "- all running: from spawning `unshare` to the kernel's time stamp on the last app's "
        "exec (its process events, the proc connector); supervisord with `startsecs=0`.",
        "- init RSS: VmRSS of the init %.1f s after all apps run." % settings["settle"],
        "- all stopped: from SIGTERM to the init until no app is alive; init exit: until the "
        "init has reaped everything and exited.",
        "- stage1 vs supervisord: all running %s, RSS %s, all stopped %s; stage1's all "
        "running vs the floor: %s." % (
            _ratio(s["running"], peer["running"]), _ratio(s["rss_kib"], peer["rss_kib"]),
            _ratio(s["stopped"], peer["stopped"]), _ratio(s["running"], med[FLOOR]["running"])),
        "",
        "```",
        _target("all %d running" % APPS, _ms(s["running"]), "<= %d ms" % (TARGET_RUNNING * 1000),
                s["running"] <= TARGET_RUNNING),
        _target("init RSS", _mib(s["rss_kib"]), "<= %d MiB" % (TARGET_RSS_KIB // 1024),
                s["rss_kib"] <= TARGET_RSS_KIB),
        _target("all stopped", _ms(s["stopped"]), "<= %d ms" % (TARGET_STOPPED * 1000),
                s["stopped"] <= TARGET_STOPPED),
        "```",
    ]
    return "\n".join([harness.markdown_table(header, rows)] + notes)


def _target(what, figure, goal, ok):
    return "%-18s %-12s target %-12s %s" % (what + ":", figure, goal, "PASS" if ok else "MISS")


def _ratio(a, b):
    return "%.2fx" % (a / b) if b else "-"


def _ms(seconds):
    return "%.1f ms" % (seconds * 1000)


def _mib(kib):
    return "%.1f MiB" % (kib / 1024.0)


if __name__ == "__main__":
    # Standalone: `python bench/pod_bench.py [--quick]`; bench/run.py is the usual way.
    if os.geteuid() != 0:
        sys.exit("pod bench: unshare --pid needs root")
    text = run(quick="--quick" in sys.argv[1:], log=lambda m: print(m, file=sys.stderr))
    print(text)
