"""Status files: atomic writers for the init, readers for `stage1 status`.

rkt's format for an app is `<status dir>/<app>` holding `<exit code>\\n`;
beside it `<app>.json` holds the detail, and the pod directory holds
`pod-status.json`.  Every file is written to a temporary name in the same
directory and renamed over the old one, so a reader (or a kill -9 of the
init half-way) never leaves a partial file.  No fsync: the files must be
whole after the init dies, not after the machine does, and an fsync per
transition would cost milliseconds on the init's hot path.
"""
import os
import time


def rfc3339(t):
    """RFC 3339 UTC with microseconds, or None."""
    if t is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + ".%06dZ" % int(t % 1 * 1e6)


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
    import json
    write_atomic(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


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
    once per file and never stop the pod."""

    def __init__(self, directory, warn):
        self.directory = directory
        self.warn = warn
        self._failed = set()
        self._dirty = {}
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
        """Note that app changed; the files are written at the next flush."""
        self._dirty[app.name] = app

    def flush(self):
        """Write what changed since the last flush: once per loop turn, so an
        app that starts and becomes ready in one turn costs one write."""
        dirty, self._dirty = self._dirty, {}
        for app in dirty.values():
            self.write(app)

    def write(self, app):
        path = os.path.join(self.directory, app.name)
        try:
            if app.exit_code is not None:
                write_atomic(path, b"%d\n" % app.exit_code)
            write_json(path + ".json", app_record(app))
        except OSError as err:
            self._fail(path, err)

    def remove(self, name):
        for suffix in ("", ".json"):
            try:
                os.unlink(os.path.join(self.directory, name + suffix))
            except FileNotFoundError:
                pass
