"""Pod commands: run, status, stop, ps, enter, gc.  Options and output only;
the work is in runner/ (the init), pod/ (the directory) and isolation/
(enter, gc).  What only one command needs is imported in it, for start-up
time."""
import os
import sys
import time

from stage1.commands import UsageError, parse, seconds
from stage1.commands.live import wait_ready
from stage1.pod import directory
from stage1.pod.errors import PodError
from stage1.rkt import interface

EXIT_FAILURE = 254

RUN_OPTIONS = {
    "--grace": ("grace", True), "-v": ("verbose", False), "--verbose": ("verbose", False),
    "--debug": ("verbose", False), "--interactive": ("interactive", False),
    "--mutable": ("mutable", False),
    "--isolate": ("isolate", False), "--no-isolate": ("no_isolate", False),
    "--print-manifest": ("print_manifest", False), "--pod-dir": ("pod_dir", True),
}


def cmd_run(args):
    from stage1.pod.plan import Options
    from stage1.runner import pod as runner
    args, flags = interface.split_run_flags(args)
    opts, positionals = parse(args, RUN_OPTIONS)
    if len(positionals) > 1:
        raise UsageError("run takes one pod directory or UUID, not %d" % len(positionals), "run")
    if opts.get("isolate") and opts.get("no_isolate"):
        raise UsageError("--isolate and --no-isolate exclude each other", "run")
    grace = seconds(opts["grace"], "--grace") if "grace" in opts else None
    isolate = True if opts.get("isolate") else False if opts.get("no_isolate") else None
    options = Options(grace=grace, verbose=bool(opts.get("verbose")),
                              interactive=bool(opts.get("interactive")),
                              mutable=bool(opts.get("mutable")), flags=flags, isolate=isolate)
    target = positionals[0] if positionals else None
    if target is None and not os.path.exists("pod"):
        target = directory.default_file(os.getcwd())    # stage1.toml or Procfile here
    if target is not None and os.path.isfile(target):
        return _run_file(target, options, opts)
    if opts.get("pod_dir"):
        raise UsageError("--pod-dir goes with a pod file (TOML or Procfile)", "run")
    poddir = directory.find(target)
    if opts.get("print_manifest"):
        sys.stdout.buffer.write(poddir.read_manifest())
        return 0
    return runner.run(poddir, options)


def _run_file(path, options, opts):
    """A pod file: compiled, printed (--print-manifest) or run in a pod
    directory of its own (--pod-dir, else the runtime directory's)."""
    import json
    from stage1.pod import podfile
    from stage1.runner import podfile as file_runner
    compiled = podfile.compile_file(path)
    if opts.get("print_manifest"):
        sys.stdout.write(json.dumps(compiled.manifest, indent=2) + "\n")
        return 0
    return file_runner.run(compiled, options, opts.get("pod_dir"))


def _pod_arg(positionals, command):
    if len(positionals) > 1:
        raise UsageError("%s takes one pod directory or UUID" % command, command)
    return directory.find(positionals[0] if positionals else None)


STOP_OPTIONS = {"--force": ("force", False), "-f": ("force", False)}
STATUS_OPTIONS = {"--json": ("json", False), "--wait-ready": ("wait_ready", False),
                  "--timeout": ("timeout", True)}
PS_OPTIONS = {}
GC_OPTIONS = {"--debug": ("verbose", False), "-v": ("verbose", False),
              "--local-config": ("local_config", True)}


def cmd_stop(args):
    opts, positionals = parse(args, STOP_OPTIONS)
    poddir = _pod_arg(positionals, "stop")
    try:
        pid = poddir.find_init()
        if opts.get("force"):
            _kill_pod(pid)
        else:
            os.kill(pid, 15)
    except PodError as err:
        sys.stderr.write("stage1: %s\n" % err)
        return EXIT_FAILURE
    except ProcessLookupError:
        sys.stderr.write("stage1: the pod's init (pid %d) is not running\n" % pid)
        return EXIT_FAILURE
    return 0


def _kill_pod(init_pid):
    """--force: SIGKILL the init and every process below it.  The init is
    stopped first, so that it restarts nothing and the orphans of what we
    kill stay below it (a dead subreaper's orphans go to the host's init)."""
    import psutil
    os.kill(init_pid, 19)                  # SIGSTOP
    for _ in range(1000):
        try:
            alive = [p for p in psutil.Process(init_pid).children(recursive=True)
                     if p.status() != psutil.STATUS_ZOMBIE]
        except psutil.NoSuchProcess:
            break                           # a namespace init takes its pod along
        except psutil.Error:
            continue                        # one of them ended while we looked
        if not alive:
            break
        for p in alive:
            try:
                os.kill(p.pid, 9)
            except ProcessLookupError:
                pass
    os.kill(init_pid, 9)


def _exit_text(app):
    if app.get("signal"):
        return app["signal"]
    code = app.get("exitCode")
    return "" if code is None else str(code)


def _time_text(text):
    return (text or "")[:19].replace("T", " ")


def cmd_status(args):
    opts, positionals = parse(args, STATUS_OPTIONS)
    poddir = _pod_arg(positionals, "status")
    if opts.get("wait_ready"):
        timeout = seconds(opts["timeout"], "--timeout") if "timeout" in opts else None
        code = wait_ready(poddir, timeout)
        if code:
            return code
    pod_doc, apps = poddir.read_status()
    if not pod_doc and not apps:
        sys.stderr.write("stage1: no status in %s: the pod has not run\n" % poddir.path)
        return EXIT_FAILURE
    gone = pod_doc.get("state") in ("running", "stopping") and not _init_alive(poddir)
    if pod_doc.get("state") in ("running", "stopping"):
        pod_doc["initRunning"] = not gone
    now = time.time()
    for app in apps:
        since = _parse_time(app.get("startedAt"))
        if app.get("state") in ("running", "stopping") and not gone and since is not None:
            app["uptimeSeconds"] = round(max(0.0, now - since), 3)
    if opts.get("json"):
        import json
        sys.stdout.write(json.dumps({"pod": pod_doc, "apps": apps}, indent=2) + "\n")
        return 0
    code = pod_doc.get("exitCode")
    since = _parse_time(pod_doc.get("startedAt"))
    up = " for %s" % _duration(now - since) if since and not gone and \
        pod_doc.get("state") == "running" else ""
    out = ["pod %s: %s%s%s%s" % (poddir.path, pod_doc.get("state", "unknown"), up,
                                 "" if code is None else " (exit code %d)" % code,
                               ", but its init is gone (killed?): what follows is its last word"
                               if gone else "")]
    # An isolated pod's apps have pids of the pod's own PID namespace.
    pid_label = "POD-PID" if pod_doc.get("isolated") else "PID"
    rows = [("APP", "STATE", "HEALTH", pid_label, "UPTIME", "EXIT", "RESTARTS", "STARTED",
             "FINISHED", "REASON")]
    for app in apps:
        rows.append((app.get("name", "?"), app.get("state", "?"),
                     (app.get("health") or "") if "uptimeSeconds" in app else "",
                     str(app.get("pid") or ""),
                     _duration(app["uptimeSeconds"]) if "uptimeSeconds" in app else "",
                     _exit_text(app),
                     str(app.get("restartCount") or 0), _time_text(app.get("startedAt")),
                     _time_text(app.get("finishedAt")), app.get("reason") or ""))
    out.extend(_table(rows))
    sys.stdout.write("\n".join(out) + "\n")
    return 0


def _parse_time(text):
    """Seconds since the epoch of an RFC 3339 UTC time (status.rfc3339), or None."""
    import calendar
    try:
        return calendar.timegm(time.strptime(text[:19], "%Y-%m-%dT%H:%M:%S")) + \
            float("0" + text[19:].rstrip("Z"))
    except (TypeError, ValueError):
        return None


def _duration(seconds):
    """3s, 4m5s, 2h3m, 3d4h: one word, so that the table splits on blanks."""
    seconds = int(max(0, seconds))
    parts = [(seconds // 86400, "d"), (seconds // 3600 % 24, "h"),
             (seconds // 60 % 60, "m"), (seconds % 60, "s")]
    while len(parts) > 1 and parts[0][0] == 0:
        parts.pop(0)
    return "".join("%d%s" % p for p in parts[:2])


def _init_alive(poddir):
    try:
        poddir.find_init()
        return True
    except PodError:
        return False


def _table(rows):
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]


def cmd_ps(args):
    from stage1.engine import procs
    _, positionals = parse(args, PS_OPTIONS)
    poddir = _pod_arg(positionals, "ps")
    try:
        init_pid = poddir.find_init()
    except PodError as err:
        sys.stderr.write("stage1: %s\n" % err)
        return EXIT_FAILURE
    _, apps = poddir.read_status()
    groups = procs.pod_tree(init_pid, apps)
    if groups is None:
        sys.stderr.write("stage1: the pod's init (pid %d) is not running\n" % init_pid)
        return EXIT_FAILURE
    # PID as the host sees it; POD-PID as the pod's own PID namespace does
    # (what `stage1 status` shows for an isolated pod).
    rows = [("APP", "PID", "POD-PID", "STATE", "CPU%", "RSS", "COMMAND")]
    for name, processes in groups:
        for p in processes:
            rows.append((name, str(p["pid"]), str(p["nspid"]), p["status"], "%.1f" % p["cpu"],
                         _size(p["rss"]), p["cmd"]))
    sys.stdout.write("\n".join(_table(rows)) + "\n")
    return 0


def _size(n):
    for unit in ("B", "K", "M", "G"):
        if n < 1024 or unit == "G":
            return "%d%s" % (n, unit) if unit == "B" else "%.1f%s" % (n, unit)
        n /= 1024.0


ENTER_OPTIONS = {"--pid": ("pid", True), "--appname": ("app", True), "--app": ("app", True),
                 "--debug": ("verbose", False), "-v": ("verbose", False)}


def cmd_enter(args):
    """rkt's `enter --pid=PID --appname=NAME -- CMD`, cwd in the pod; or
    `enter POD --app NAME -- CMD`."""
    from stage1.isolation import enter
    cut = args.index("--") if "--" in args else len(args)
    opts, positionals = parse(args[:cut], ENTER_OPTIONS)
    command = args[cut + 1:] or ["/bin/sh"]
    if "app" not in opts:
        raise UsageError("enter needs --appname NAME (or --app NAME)", "enter")
    pid = None
    if "pid" in opts:
        if not (opts["pid"].isascii() and opts["pid"].isdigit()) or int(opts["pid"]) < 1:
            raise UsageError("--pid must be a process id, not %r" % opts["pid"], "enter")
        pid = int(opts["pid"])
    poddir = _pod_arg(positionals, "enter")
    return enter.run(poddir, opts["app"], command, pid=pid, verbose=bool(opts.get("verbose")))


def cmd_gc(args):
    """rkt's `gc [--debug] [--local-config DIR] UUID`, cwd in the pod."""
    from stage1.isolation import gc
    opts, positionals = parse(args, GC_OPTIONS)
    return gc.run(_pod_arg(positionals, "gc"), verbose=bool(opts.get("verbose")),
                  local_config=opts.get("local_config"))


# Every command's options, for tests/test_help.py (each is in its help).
OPTIONS = {"run": RUN_OPTIONS, "stop": STOP_OPTIONS, "status": STATUS_OPTIONS,
           "ps": PS_OPTIONS, "enter": ENTER_OPTIONS, "gc": GC_OPTIONS}
COMMANDS = {"run": cmd_run, "stop": cmd_stop, "status": cmd_status, "ps": cmd_ps,
            "enter": cmd_enter, "gc": cmd_gc}
