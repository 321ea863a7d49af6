"""Commands for a live pod: app start|stop|restart|rm|add, events, logs,
and `status --wait-ready`.  They talk to the init through POD/stage1.sock
(live/control.py) or read the pod directory; options and output only.

Exit codes: 0 done; 1 the pod refused the request (the answer's error is
printed); 2 usage; 254 no pod to talk to.
"""
import json
import os
import sys
import time

from stage1.commands import UsageError, parse
from stage1.engine import status
from stage1.live import control
from stage1.pod import directory
from stage1.rkt import interface

EXIT_REFUSED = 1
EXIT_FAILURE = 254
APP_OPS = ("start", "stop", "restart", "rm", "add")
APP_OPTIONS = {"--app": ("app", True), "--manifest": ("manifest", True),
               "--debug": ("debug", False), "-v": ("debug", False)}
EVENTS_OPTIONS = {"--follow": ("follow", False), "-f": ("follow", False)}
LOGS_OPTIONS = {"--app": ("app", True), "--follow": ("follow", False), "-f": ("follow", False)}

def _poddir(positionals, command):
    if len(positionals) > 1:
        raise UsageError("%s takes one pod directory or UUID" % command, command)
    return directory.find(positionals[0] if positionals else None)


def _socket(poddir):
    return os.path.join(poddir.path, "stage1.sock")


def _talk(poddir, request, follow=None, timeout=None):
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
    rest = interface.app_args(args[1:])
    opts, positionals = parse(rest, APP_OPTIONS)
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
    opts, positionals = parse(args, EVENTS_OPTIONS)
    poddir = _poddir(positionals, "events")
    path = os.path.join(poddir.path, "events.jsonl")
    if opts.get("follow"):
        return _follow_events(poddir, path)
    data = _read(path)
    if data is None:
        sys.stderr.write("stage1: no events in %s: the pod has not run\n" % poddir.path)
        return EXIT_FAILURE
    _show(data)
    return 0


def _follow_events(poddir, path):
    """Subscribe first, then show the file up to where the stream begins
    (the answer's offset): no line is lost in between, none shown twice.
    New lines come from the init itself, so nothing is polled, and
    following ends when the pod does."""
    shown = {"last": b"", "streaming": False}

    def show(data):
        if data:
            shown["last"] = data
            _show(data)

    def answered(answer):
        shown["streaming"] = True
        data = _read(path) or b""
        offset = answer.get("offset")
        show(data if offset is None else data[:offset])
    try:
        answer = control.request(_socket(poddir), {"op": "subscribe"}, follow=show,
                                 answered=answered)
    except (OSError, ValueError) as err:
        if not shown["streaming"]:
            data = _read(path)
            if data is not None and _ended(data):
                _show(data)          # the pod has ended: every event is in the file
                return 0
            sys.stderr.write("stage1: unable to reach the pod's init at %s: %s\n"
                             % (_socket(poddir), getattr(err, "strerror", None) or err))
            return EXIT_FAILURE
    else:
        if not answer.get("ok"):
            sys.stderr.write("stage1: events: %s\n" % answer.get("error"))
            return EXIT_REFUSED
    if not _ended(shown["last"]):
        # The init drops a reader that does not keep up rather than block.
        sys.stderr.write("stage1: events: the stream ended before the pod did (the init "
                         "ended abruptly, or dropped this reader for reading too slowly)\n")
        return EXIT_REFUSED
    return 0


def _read(path):
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        return None


def _show(data):
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()


def _ended(events):
    """Does the event log end with the pod's end?"""
    lines = events.rstrip(b"\n").rsplit(b"\n", 1)
    return b'"event": "pod-exited"' in lines[-1]


def cmd_logs(args):
    """The logs the pod keeps (stage1/log: file, and prefix with
    stage1/log-copy, a pod file's default), tagged by app when there are
    several; for an app whose output is not kept, where it went."""
    opts, positionals = parse(args, LOGS_OPTIONS)
    poddir = _poddir(positionals, "logs")
    logdir = os.path.join(poddir.path, "logs")
    try:
        on_disk = sorted(n[:-4] for n in os.listdir(logdir) if n.endswith(".log"))
    except FileNotFoundError:
        on_disk = []
    modes = _log_modes(poddir)
    names = [opts["app"]] if opts.get("app") else list(modes) + [
        n for n in on_disk if n not in modes]
    kept = [n for n in names if n in on_disk or modes.get(n) in ("file", "prefix+copy")]
    for name in names:
        if name not in kept and name in modes:
            sys.stderr.write("stage1: %s: %s\n" % (name, NOT_KEPT[modes[name]]))
    tag = len(kept) > 1
    files = [_LogFile(os.path.join(logdir, n + ".log"), n if tag else None) for n in kept]
    shown = [f for f in files if f.show()]
    missing = [f.name for f in files if f not in shown] + [
        n for n in names if n not in modes and n not in kept]
    if missing and not opts.get("follow"):
        sys.stderr.write("stage1: no log for %s in %s%s\n" % (
            ", ".join(missing), logdir, "" if modes else
            " (apps log there with stage1/log: file)"))
    if not opts.get("follow"):
        return 0 if shown else EXIT_FAILURE
    while True:
        # A log reader is a client, not the init: it may look again.  The
        # pod's state is read before the files, so the last look after the
        # pod ended shows everything.
        ended = _pod_ended(poddir)
        for f in files:
            f.show()
        if ended:
            break
        time.sleep(0.1)
    return 0


NOT_KEPT = {
    "inherit": "its output went straight to the stdout and stderr of `stage1 run` (the "
               "terminal it ran in), as stage1/log: inherit says; stage1 keeps none of it",
    "prefix": "its output went to the stdout and stderr of `stage1 run`, tagged "
              "(stage1/log: prefix), and no copy was kept (stage1/log-copy: true keeps one)",
    "null": "its output is discarded (stage1/log: null)",
}


def _log_modes(poddir):
    """{app: log mode} in manifest order ("prefix+copy" for a prefix app
    whose copy is kept); {} when the manifest cannot be read.  The pod's
    own annotations only, read from the JSON as it is: quick, so that a
    follower's first look comes before the first rotation."""
    try:
        doc = json.loads(poddir.read_manifest())
        modes = {}
        for item in doc["apps"]:
            a = {x["name"]: x.get("value") for x in item.get("annotations") or ()}
            mode = a.get("stage1/log") or {"null": "null", "log": "file", "stream": "prefix"}.get(
                a.get("coreos.com/rkt/stage2/stdout"), "inherit")
            copy = mode == "prefix" and a.get("stage1/log-copy") == "true"
            modes[item["name"]] = mode + ("+copy" if copy else "")
        return modes
    except (ValueError, KeyError, TypeError, AttributeError):
        return {}


def _pod_ended(poddir):
    try:
        return status.read_json(poddir.status_path).get("state") == "exited"
    except (OSError, ValueError, AttributeError):
        return False


class _LogFile:
    """One app's log as a reader sees it, followed across rotations."""

    def __init__(self, path, tag):
        self.path, self.tag = path, tag
        self.name = os.path.basename(path)[:-4]
        self.ino = None
        self.offset = 0

    def show(self):
        """Print what was added since the last look; False if there is no log."""
        try:
            ino = os.stat(self.path).st_ino
        except FileNotFoundError:
            return False
        if self.ino is not None and ino != self.ino:
            # Rotated since the last look: the rest of what we were reading
            # is now the .1 file.
            self._show_from(self.path + ".1", self.ino)
            self.offset = 0
        self.ino = ino
        self._show_from(self.path, ino)
        return True

    def _show_from(self, path, ino):
        try:
            with open(path, "rb") as f:
                if os.fstat(f.fileno()).st_ino != ino:
                    return      # rotated again meanwhile: the next look reads it
                f.seek(self.offset)
                data = f.read()
        except FileNotFoundError:
            return
        if self.tag:
            # Only whole lines, so a tag never lands in the middle of one.
            data = data[:data.rfind(b"\n") + 1]
        self.offset += len(data)
        if self.tag:
            data = b"".join(self.tag.encode() + b"| " + line + b"\n"
                            for line in data.split(b"\n")[:-1])
        if data:
            _show(data)


def wait_ready(poddir, timeout):
    """Wait for rkt's supervisor-status symlink; exit 0 when ready."""
    path = os.path.join(poddir.stage1_root, "rkt", "supervisor-status")
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        ended = _pod_ended(poddir)
        try:
            if os.readlink(path) == "ready":
                return 0
        except OSError:
            pass
        if ended:
            sys.stderr.write("stage1: %s: the pod ended before it was ready\n" % poddir.path)
            return EXIT_REFUSED
        if deadline is not None and time.monotonic() >= deadline:
            sys.stderr.write("stage1: %s: not ready after %gs\n" % (poddir.path, timeout))
            return EXIT_REFUSED
        time.sleep(0.05)


OPTIONS = {"app": APP_OPTIONS, "events": EVENTS_OPTIONS, "logs": LOGS_OPTIONS}
COMMANDS = {"app": cmd_app, "events": cmd_events, "logs": cmd_logs}
