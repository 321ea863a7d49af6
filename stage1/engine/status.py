"""Status files: atomic writers for the init, readers for `stage1 status`.

rkt's format for an app is `<status dir>/<app>` holding `<exit code>\\n`;
beside it `<app>.json` holds the detail, and the pod directory holds
`pod-status.json`.  Every file is written to a temporary name in the same
directory and renamed over the old one, so a reader (or a kill -9 of the
init half-way) never leaves a partial file.  No fsync: the files must be
whole after the init dies, not after the machine does, and an fsync per
transition would cost milliseconds on the init's hot path.
"""
import itertools
import os
import time

BATCH = 64         # apps whose files are written in one loop turn


def rfc3339(t):
    """RFC 3339 UTC with microseconds, or None."""
    global _second
    if t is None:
        return None
    whole = int(t // 1)
    if whole != _second[0]:     # the same second as the last call: most calls
        _second = (whole, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)))
    return _second[1] + ".%06dZ" % int(t % 1 * 1e6)


_second = (None, "")


def write_atomic(path, data):
    """Write bytes to path through a temporary file and a rename."""
    tmp = "%s.%d.tmp" % (path, os.getpid())
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    except BaseException:
        os.close(fd)
        os.unlink(tmp)
        raise
    os.close(fd)
    os.rename(tmp, path)


def remove_stale(directory, keep_pid=None):
    """The temporary files of writers killed half-way (`NAME.PID.tmp`), as a
    run starts and at gc; the names of what was removed."""
    try:
        names = os.listdir(directory)
    except OSError:
        return []
    removed = []
    for name in names:
        stem, _, pid = name[:-4].rpartition(".") if name.endswith(".tmp") else ("", "", "")
        if stem and pid.isascii() and pid.isdigit() and int(pid) != keep_pid:
            try:
                os.unlink(os.path.join(directory, name))
                removed.append(name)
            except OSError:
                pass
    return removed


def write_json(path, obj):
    write_atomic(path, json_text(obj).encode())


def json_text(obj):
    """json.dumps(obj, indent=2, sort_keys=True) + newline, the same text.

    json's indenting encoder is pure Python, five times slower than its C
    one; a flat object (an app's record: no value a list or an object) is
    the C encoder's output with the indent put in by the separators, which
    is the same text, since a newline inside a string is escaped."""
    global _flat
    import json
    if obj and isinstance(obj, dict) and not any(
            isinstance(v, (dict, list, tuple)) for v in obj.values()):
        if _flat is None:
            _flat = json.JSONEncoder(sort_keys=True, separators=(",\n  ", ": ")).encode
        return "{\n  " + _flat(obj)[1:-1] + "\n}\n"
    return json.dumps(obj, indent=2, sort_keys=True) + "\n"


_flat = None


def read_json(path):
    import json
    with open(path, "rb") as f:
        return json.load(f)


def app_record(app):
    """The JSON detail of one app, the same in exec and pod mode."""
    return {
        "name": app.name,
        "state": app.state,
        "ready": app.ready,
        "statusText": app.status_text,
        "stopping": app.notify_stopping,
        "pid": app.pid,
        "exitCode": app.exit_code,
        "signal": app.signal_name,
        "reason": app.reason,
        "message": app.message,
        "startedAt": rfc3339(app.started_at),
        "finishedAt": rfc3339(app.finished_at),
        "restartCount": app.restart_count,
        "health": app.health,
        "healthFailures": app.health_failures,
        "healthMessage": app.health_message,
        "cpuUserSeconds": app.rusage[0],
        "cpuSystemSeconds": app.rusage[1],
        "maxRssKiB": app.rusage[2],
    }


class StatusWriter:
    """Writes app status files into one directory; failures are reported
    once per file and never stop the pod.

    Only what changed is written: an app's files at the end of the loop
    turn in which it changed (so an app that starts and becomes ready in
    one turn costs one write), at most BATCH apps a turn, and `<app>` only
    when its exit code is not the one already there.  Apps that exited go
    first: when a thousand apps are stopped at once, each turn writes the
    final status of the apps reaped in it (the Supervisor reaps as many a
    turn), not the `stopping` of apps that are gone by then; what is left
    to write when the last app is reaped is one slice."""

    def __init__(self, directory, warn):
        self.directory = directory
        self.warn = warn
        self._failed = set()
        self._dirty = {}          # name -> app, changed since written
        self._exited = {}         # the same, for apps that have exited: written first
        self._codes = {}          # app name -> the exit code in its `<app>` file
        self.written = 0          # files written (what the tests count)
        try:
            os.makedirs(directory, exist_ok=True)
        except OSError as err:
            self._fail(directory, err)
        remove_stale(directory, os.getpid())

    def _fail(self, what, err):
        if what not in self._failed:
            self._failed.add(what)
            self.warn("unable to write status %s: %s" % (what, err.strerror or err))

    def app(self, app):
        """Note that app changed; the files are written at a flush."""
        name = app.name
        if app.state == "exited":
            self._dirty.pop(name, None)
            self._exited[name] = app
        else:
            self._exited.pop(name, None)
            self._dirty[name] = app

    def flush(self, app=None, final=False):
        """Write what changed since the last flush, at most BATCH apps (true
        when more are left: the loop comes back at once); final: all of it;
        app: only that app's files, now (before a handler that may read
        them).  An app that changes again before its turn (stopping, then
        exited) is written once, as it is by then."""
        if app is not None:
            if (self._exited.pop(app.name, None) or self._dirty.pop(app.name, None)) is not None:
                self.write(app)
            return False
        budget = None if final else BATCH
        for queue in (self._exited, self._dirty):
            names = list(queue) if budget is None else list(itertools.islice(queue, budget))
            for name in names:
                self.write(queue.pop(name))
            if budget is not None:
                budget -= len(names)
        return bool(self._exited or self._dirty)

    def write(self, app):
        path = os.path.join(self.directory, app.name)
        try:
            code = app.exit_code
            if code is not None and self._codes.get(app.name) != code:
                write_atomic(path, b"%d\n" % code)
                self._codes[app.name] = code
                self.written += 1
            write_json(path + ".json", app_record(app))
            self.written += 1
        except OSError as err:
            self._fail(path, err)

    def remove(self, name):
        self._codes.pop(name, None)
        for suffix in ("", ".json"):
            try:
                os.unlink(os.path.join(self.directory, name + suffix))
            except FileNotFoundError:
                pass
