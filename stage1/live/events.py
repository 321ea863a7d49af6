"""Pod events: every transition as one JSON line with a timestamp.

The same line goes to POD/events.jsonl (append-only, one write per line so
readers never see half a line) and to every `stage1 events --follow`
subscriber of the control socket.
"""
import json
import os
import time

from stage1.engine.status import rfc3339

_encode = json.JSONEncoder(sort_keys=True).encode     # json.dumps(sort_keys=True), made once


class EventLog:
    def __init__(self, path, warn):
        self.path = path
        self.warn = warn
        self.subscribers = []       # callables taking one encoded line
        self.failed = False
        self.end = 0                # the file's size: where the next line goes
        try:
            self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
            self.end = os.fstat(self.fd).st_size
        except OSError as err:
            self.fd = None
            warn("unable to open %s: %s" % (path, err.strerror))

    def size(self):
        """Bytes in the file so far (None when it could not be opened)."""
        return None if self.fd is None else self.end

    def emit(self, kind, app=None, fields=None, when=None):
        """when: the time it happened, if not now (time.time())."""
        record = {"time": rfc3339(time.time() if when is None else when), "event": kind}
        if app is not None:
            record["app"] = app.name
        record.update(fields or {})
        line = (_encode(record) + "\n").encode()
        if self.fd is not None:
            self._append(line)
        for subscriber in list(self.subscribers):
            subscriber(line)

    def _append(self, line):
        """The whole line or none of it: a short write (a full disk, a file
        size limit) is cut back off, so the file never ends in half a line.
        The next event tries again."""
        try:
            n = os.write(self.fd, line)
        except OSError as err:
            n, why = 0, err.strerror
        else:
            why = "only %d of %d bytes could be written" % (n, len(line))
        if n == len(line):
            self.end += n
            self.failed = False
            return
        if n:
            try:
                os.ftruncate(self.fd, self.end)
            except OSError:
                pass
        if not self.failed:
            self.failed = True
            self.warn("unable to append to %s: %s; events are lost until it works again"
                      % (self.path, why))
