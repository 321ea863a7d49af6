"""A live pod: what surrounds the Supervisor while the pod runs.

The control socket, the sd_notify socket, notification fds, log pipes,
health checks and the event log are wired here to the Supervisor's hooks
(prepare before a spawn, spawned after it, on_event, on_ready), so the
state machine itself knows nothing of sockets and pipes.
"""
import os

from stage1.live import control, health, logs, notify
from stage1.live.events import EventLog


class LivePod:
    def __init__(self, poddir, loop, sup, log, add_app):
        self.poddir, self.loop, self.sup, self.log = poddir, loop, sup, log
        self.pending = {}     # app name -> (fds to close in the init, what to build after spawn)
        self.relays = {}      # app name -> [LineRelay]
        self.notify_fds = {}
        self.checkers = {}    # app name -> health.Checker
        self.events = EventLog(os.path.join(poddir.path, "events.jsonl"), log.warn)
        self.ready_path = os.path.join(poddir.stage1_root, "rkt", "supervisor-status")
        try:
            os.unlink(self.ready_path)      # a pod directory run again is not ready yet
        except FileNotFoundError:
            pass
        except OSError as err:
            log.warn("unable to remove %s: %s" % (self.ready_path, err.strerror))
        sup.on_event = self.on_event
        sup.on_ready = self.pod_ready
        sup.prepare = self.prepare
        sup.spawned = self.spawned
        self.notify = self._open(notify.NotifySocket, os.path.join(poddir.path, "notify.sock"),
                                 loop, sup, log)
        owner = os.stat(poddir.path).st_uid
        self.control = self._open(control.ControlServer, os.path.join(poddir.path, "stage1.sock"),
                                  loop, sup, log, {0, owner}, add_app, owner)
        if self.control is not None:
            self.control.events = self.events

    def _open(self, cls, path, *args):
        try:
            return cls(path, *args)
        except OSError as err:
            self.log.warn("unable to listen on %s: %s" % (path, err.strerror or err))
            return None

    # -- around each spawn ---------------------------------------------------

    def prepare(self, app):
        """Pipes for the app's output and readiness; the extra spawn options."""
        fd_map = list(app.launch.options.get("fd_map") or [0, 1, 2])
        close_after, build = [], []
        mode = getattr(app, "log_mode", "inherit")
        if mode == "null":
            fd_map[1] = fd_map[2] = self._devnull()
        elif mode in ("prefix", "file"):
            sinks = self._sinks(app, mode)
            for stream, sink in ((1, sinks[0]), (2, sinks[1])):
                r, w = os.pipe2(os.O_CLOEXEC)
                fd_map[stream] = w
                close_after.append(w)
                build.append(("log", r, sink))
        if isinstance(app.notify, int):
            r, w = os.pipe2(os.O_CLOEXEC)
            fd_map.extend([-1] * (app.notify + 1 - len(fd_map)))
            fd_map[app.notify] = w
            close_after.append(w)
            build.append(("notify", r, None))
        self.pending[app.name] = (close_after, build)
        return {"fd_map": fd_map}

    def spawned(self, app, ok):
        close_after, build = self.pending.pop(app.name, ((), ()))
        for fd in close_after:
            os.close(fd)
        for kind, r, sink in build:
            if not ok:
                os.close(r)
            elif kind == "log":
                relay = logs.LineRelay(r, sink, self.loop, self.log.warn)
                live = [x for x in self.relays.get(app.name, ()) if x.fd is not None]
                self.relays[app.name] = live + [relay]     # a restart loop must not pile up
            else:
                self.notify_fds[app.name] = notify.NotifyFd(r, app, self.loop, self.sup)

    def _sinks(self, app, mode):
        if mode == "prefix":
            sinks = logs.PrefixSink(app.name, 1), logs.PrefixSink(app.name, 2)
            if not getattr(app, "log_copy", False):
                return sinks
            copy = self._file_sink(app)      # stage1/log-copy: what `stage1 logs` shows
            return tuple(logs.TeeSink(s, copy, self.log.warn) for s in sinks)
        sink = self._file_sink(app)
        return sink, sink

    def _file_sink(self, app):
        """The app's one log file, kept across its restarts."""
        sink = getattr(app, "file_sink", None)
        if sink is None:
            max_bytes, keep = app.log_limits
            path = os.path.join(self.poddir.path, "logs", app.name + ".log")
            sink = app.file_sink = logs.FileSink(path, max_bytes, keep)
        return sink

    def _devnull(self):
        if not hasattr(self, "devnull"):
            self.devnull = os.open(os.devnull, os.O_WRONLY | os.O_CLOEXEC)
        return self.devnull

    # -- health checks ---------------------------------------------------------

    def on_event(self, kind, app=None, fields=None, when=None):
        """Every event to the log (when: the time it happened, if not now);
        an app's checks run from its start to its stop."""
        self.events.emit(kind, app, fields, when)
        if app is None or app.health_check is None:
            return
        checker = self.checkers.get(app.name)
        if kind == "started":
            if checker is None or checker.app is not app:    # an app removed, added again
                checker = self.checkers[app.name] = health.Checker(app, self.loop, self.sup)
            checker.start()
        elif kind in ("stopping", "exited", "removed") and checker is not None:
            checker.stop()

    # -- pod-wide ------------------------------------------------------------

    def pod_ready(self):
        """rkt's `rkt status --wait-ready` looks for this symlink."""
        path = self.ready_path
        tmp = path + ".tmp"
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            if os.path.lexists(tmp):
                os.unlink(tmp)
            os.symlink("ready", tmp)
            os.rename(tmp, path)
        except OSError as err:
            self.log.warn("unable to write %s: %s" % (path, err.strerror))
        self.events.emit("pod-ready")

    def close(self):
        """The pod is ending: drain every log pipe, close the sockets."""
        for checker in self.checkers.values():
            checker.stop()
        for relays in self.relays.values():
            for relay in relays:
                relay.drain()
                relay.close()
        for app in self.sup.apps.values():
            sink = getattr(app, "file_sink", None)
            if sink is not None:
                sink.close()
        self.events.emit("pod-exited", None, {"exitCode": self.sup.exit_code})
        for server in (self.control, self.notify):
            if server is not None:
                server.close()
