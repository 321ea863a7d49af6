"""Commands for a live pod: app start|stop|restart|rm|add, events, logs,
and `status --wait-ready`.  They talk to the init through POD/stage1.sock
(control.py) or read the pod directory; options and output only.

Exit codes: 0 done; 1 the pod refused the request (the answer's error is
printed); 2 usage; 254 no pod to talk to.
"""
import json
import os
import sys
import time

from stage1.cli import UsageError, parse, seconds

EXIT_REFUSED = 1
EXIT_FAILURE = 254
APP_OPS = ("start", "stop", "restart", "rm", "add")

# rkt's crossing entrypoints pass these; stage1 takes them and does not act on them.
RKT_APP_FLAGS = ("--uuid", "--disable-capabilities-restriction", "--disable-paths",
                 "--disable-seccomp", "--private-users")


def _poddir(positionals, command):
    from stage1 import pod
    if len(positionals) > 1:
        raise UsageError("%s takes one pod directory or UUID" % command, command)
    return pod.find(positionals[0] if positionals else None)


def _socket(poddir):
    return os.path.join(poddir.path, "stage1.sock")


def _talk(poddir, request, follow=None, timeout=None):
    from stage1 import control
    try:
        return control.request(_socket(poddir), request, follow=follow, timeout=timeout)
    except (OSError, ValueError) as err:
        sys.stderr.write("stage1: unable to reach the pod's init at %s: %s\n"
                         % (_socket(poddir), getattr(err, "strerror", None) or err))
        return None


def cmd_app(args):
    if not args or args[0] not in APP_OPS:
        raise UsageError("app needs one of %s" % ", ".join(APP_OPS), "app")
    op = args[0]
    rest = [a for a in args[1:] if a.partition("=")[0] not in RKT_APP_FLAGS]
    opts, positionals = parse(rest, {"--app": ("app", True), "--manifest": ("manifest", True),
                                     "--debug": ("debug", False), "-v": ("debug", False)})
    if not opts.get("app"):
        raise UsageError("app %s needs --app NAME" % op, "app")
    poddir = _poddir(positionals, "app")
    request = {"op": op, "app": opts["app"]}
    if "manifest" in opts:
        if op != "add":
            raise UsageError("--manifest goes with app add", "app")
        try:
            with open(opts["manifest"], "rb") as f:
                request["runtimeApp"] = json.load(f)
        except (OSError, ValueError) as err:
            sys.stderr.write("stage1: %s: %s\n" % (opts["manifest"],
                                                   getattr(err, "strerror", None) or err))
            return EXIT_REFUSED
    answer = _talk(poddir, request)
    if answer is None:
        return EXIT_FAILURE
    if not answer.get("ok"):
        sys.stderr.write("stage1: app %s %s: %s\n" % (op, opts["app"], answer.get("error")))
        return EXIT_REFUSED
    sys.stdout.write(_answer_text(op, answer) + "\n")
    return 0


def _answer_text(op, a):
    if op == "rm":
        return "%s: removed" % a["app"]
    text = "%s: %s" % (a["app"], a.get("state"))
    if a.get("pid"):
        text += " (pid %d)" % a["pid"]
    if a.get("exitCode") is not None and a.get("state") != "running":
        text += " exit code %d" % a["exitCode"]
    return text


def cmd_events(args):
    opts, positionals = parse(args, {"--follow": ("follow", False), "-f": ("follow", False)})
    poddir = _poddir(positionals, "events")
    path = os.path.join(poddir.path, "events.jsonl")
    out = sys.stdout.buffer
    try:
        with open(path, "rb") as f:
            out.write(f.read())
    except FileNotFoundError:
        if not opts.get("follow"):
            sys.stderr.write("stage1: no events in %s: the pod has not run\n" % poddir.path)
            return EXIT_FAILURE
    out.flush()
    if opts.get("follow"):
        # New lines come from the init itself, so nothing is polled and
        # following ends when the pod does.
        def show(line):
            out.write(line)
            out.flush()
        answer = _talk(poddir, {"op": "subscribe"}, follow=show)
        if answer is None:
            return EXIT_FAILURE
    return 0


def cmd_logs(args):
    opts, positionals = parse(args, {"--app": ("app", True), "--follow": ("follow", False),
                                     "-f": ("follow", False)})
    poddir = _poddir(positionals, "logs")
    logdir = os.path.join(poddir.path, "logs")
    try:
        names = sorted(n[:-4] for n in os.listdir(logdir) if n.endswith(".log"))
    except FileNotFoundError:
        names = []
    if opts.get("app"):
        names = [opts["app"]]
    tag = len(names) > 1
    files = {n: os.path.join(logdir, n + ".log") for n in names}
    offsets = {n: _show_file(path, n if tag else None, 0) for n, path in files.items()}
    if any(o is None for o in offsets.values()) and not opts.get("follow"):
        missing = [n for n, o in offsets.items() if o is None]
        sys.stderr.write("stage1: no log for %s in %s (apps log there with stage1/log: file)\n"
                         % (", ".join(missing), logdir))
        return EXIT_FAILURE
    while opts.get("follow"):
        # A log reader is a client, not the init: it may look again.
        time.sleep(0.2)
        for n, path in files.items():
            offsets[n] = _show_file(path, n if tag else None, offsets[n] or 0)
    return 0


def _show_file(path, tag, offset):
    """Print path from offset (again from 0 when it was rotated); new offset or None."""
    try:
        with open(path, "rb") as f:
            if os.fstat(f.fileno()).st_size < offset:
                offset = 0
            f.seek(offset)
            data = f.read()
    except FileNotFoundError:
        return None
    if tag:
        # Only whole lines, so a tag never lands in the middle of one.
        data = data[:data.rfind(b"\n") + 1]
    if data:
        shown = data
        if tag:
            shown = b"".join(tag.encode() + b"| " + line + b"\n"
                             for line in data.split(b"\n")[:-1])
        sys.stdout.buffer.write(shown)
        sys.stdout.flush()
    return offset + len(data)


def wait_ready(poddir, timeout):
    """Wait for rkt's supervisor-status symlink; exit 0 when ready."""
    path = os.path.join(poddir.stage1_root, "rkt", "supervisor-status")
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        try:
            if os.readlink(path) == "ready":
                return 0
        except OSError:
            pass
        if deadline is not None and time.monotonic() >= deadline:
            sys.stderr.write("stage1: %s: not ready after %gs\n" % (poddir.path, timeout))
            return EXIT_REFUSED
        time.sleep(0.05)


COMMANDS = {"app": cmd_app, "events": cmd_events, "logs": cmd_logs}
