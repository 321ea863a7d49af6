"""Pod events: every transition as one JSON line with a timestamp.

The same line goes to POD/events.jsonl (append-only, one write per line so
readers never see half a line) and to every `stage1 events --follow`
subscriber of the control socket.
"""
import json
import os
import time

from stage1.engine.status import rfc3339


class EventLog:
    def __init__(self, path, warn):
        self.path = path
        self.warn = warn
        self.subscribers = []       # callables taking one encoded line
        try:
            self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as err:
            self.fd = None
            warn("unable to open %s: %s" % (path, err.strerror))

    def size(self):
        """Bytes in the file so far (None when it could not be opened)."""
        if self.fd is None:
            return None
        try:
            return os.fstat(self.fd).st_size
        except OSError:
            return None

    def emit(self, kind, app=None, fields=None):
        record = {"time": rfc3339(time.time()), "event": kind}
        if app is not None:
            record["app"] = app.name
        record.update(fields or {})
        line = (json.dumps(record, sort_keys=True) + "\n").encode()
        if self.fd is not None:
            try:
                os.write(self.fd, line)
            except OSError as err:
                self.warn("unable to append to %s: %s" % (self.path, err.strerror))
                self.fd = None
        for subscriber in list(self.subscribers):
            subscriber(line)
