"""Health checks: exec, tcp and http probes of a running app, from the one loop.

A check is a timer on the loop's deadline heap, then a probe, then its
result handed to the Supervisor (`Supervisor.health_result`), which counts
failures in a row against `retries`, applies the start period and decides
what follows (ready, unhealthy, a restart).  No thread and no sleep, as
everything else in the init:

  tcp   a non-blocking connect(2); epoll says when it is done (EPOLLOUT)
        and SO_ERROR says how;
  http  the same connection, then one `GET PATH HTTP/1.0` written and the
        status line read: 2xx and 3xx pass (Kubernetes' rule), anything
        else, a closed connection or no status line fails;
  exec  a child spawned with the app's own launch (its root, credentials,
        environment and cwd, as its hooks are), reaped by the Supervisor,
        its output read from a pipe for the message; exit 0 passes.

Each probe has the check's timeout on the deadline heap; a probe that
times out is closed, or its process group gets SIGKILL.  Until the first
success of a run, the next probe comes `start_interval` after the last
one ended; after it, `interval`.  Probes of one app never overlap: the
next is scheduled when the last has ended.  A stopping or ended app is not
probed; its probe in flight is dropped.

Alternatives weighed: a thread per check (supervisord's eventlisteners
and most hand-written checkers) would need locks around the state table;
blocking probes with short timeouts would stall signals and other apps.
Names are never resolved (getaddrinfo blocks): the manifest takes IP
addresses and `localhost` only.
"""
import errno
import os
import socket

from stage1.engine import native, spawn
from stage1.engine.supervisor import RUNNING

MAX_OUTPUT = 4096          # what is kept of an exec probe's output, and of an http answer


class Checker:
    """One app's checks, from its start to its stop."""

    def __init__(self, app, loop, sup):
        self.app, self.loop, self.sup = app, loop, sup
        self.spec = app.health_check
        self.timer = None          # the next probe
        self.deadline = None       # the probe in flight's timeout
        self.probe = None

    def start(self):
        """The app has started (again): the first probe comes after start_interval."""
        self.stop()
        self.timer = self.loop.call_later(self.spec.start_interval, self._probe)

    def stop(self):
        for timer in (self.timer, self.deadline):
            if timer is not None:
                timer.cancel()
        self.timer = self.deadline = None
        if self.probe is not None:
            self.probe.close()
            self.probe = None

    def _probe(self):
        self.timer = None
        if self.app.state != RUNNING:
            return
        self.deadline = self.loop.call_later(self.spec.timeout, self._timed_out)
        try:
            self.probe = PROBES[self.spec.kind](self)
        except (OSError, native.SpawnError) as err:
            self._done(False, "%s: %s" % (self.spec.text, getattr(err, "strerror", None) or err))

    def _timed_out(self):
        self.deadline = None
        if self.probe is not None:
            self.probe.close()
            self.probe = None
        self._done(False, "%s: no answer within %s s" % (self.spec.text,
                                                         _seconds(self.spec.timeout)))

    def _done(self, ok, message=None):
        """The probe's result (it has closed itself); the next probe."""
        self.probe = None
        if self.deadline is not None:
            self.deadline.cancel()
            self.deadline = None
        self.sup.health_result(self.app, ok, message)
        if self.app.state == RUNNING and self.timer is None:
            delay = (self.spec.start_interval if self.app.health == "starting"
                     else self.spec.interval)
            self.timer = self.loop.call_later(delay, self._probe)


class TcpProbe:
    """connect(2) to the check's address: passes once connected."""

    def __init__(self, checker):
        self.checker, self.loop = checker, checker.loop
        family, host, port = checker.spec.address
        self.sock = socket.socket(family, socket.SOCK_STREAM | socket.SOCK_NONBLOCK |
                                  socket.SOCK_CLOEXEC)
        self.fd = self.sock.fileno()
        err = self.sock.connect_ex((host, port))
        if err not in (0, errno.EINPROGRESS):
            self.sock.close()
            raise OSError(err, os.strerror(err))
        # Connected or not yet, epoll says so the same way: writable.
        self.loop.set_writer(self.fd, self._connect_done)

    def _connect_done(self):
        self.loop.set_writer(self.fd, None)
        err = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            self._finish(False, os.strerror(err))
        else:
            self.connected()

    def connected(self):
        self._finish(True)

    def _finish(self, ok, why=None):
        self.close()
        self.checker._done(ok, None if ok else "%s: %s" % (self.checker.spec.text, why))

    def close(self):
        if self.sock is not None:
            self.loop.set_writer(self.fd, None)
            self.loop.remove_reader(self.fd)
            self.sock.close()
            self.sock = None


class HttpProbe(TcpProbe):
    """GET the check's path: passes on a 2xx or 3xx status line."""

    def connected(self):
        spec = self.checker.spec
        self.request = memoryview((
            "GET %s HTTP/1.0\r\nHost: %s\r\nUser-Agent: stage1-health-check\r\n"
            "Accept: */*\r\nConnection: close\r\n\r\n" % (spec.path, spec.host_header)
        ).encode("utf-8", "replace"))
        self.answer = b""
        self._send()

    def _send(self):
        try:
            sent = self.sock.send(self.request)
        except BlockingIOError:
            sent = 0
        except OSError as err:
            self._finish(False, err.strerror)
            return
        self.request = self.request[sent:]
        if self.request:
            self.loop.set_writer(self.fd, self._send)
            return
        self.loop.set_writer(self.fd, None)
        self.loop.add_reader(self.fd, self._readable)

    def _readable(self):
        try:
            data = self.sock.recv(MAX_OUTPUT)
        except BlockingIOError:
            return
        except OSError as err:
            self._finish(False, err.strerror)
            return
        self.answer += data
        line, found, _ = self.answer.partition(b"\n")
        if not found and data and len(self.answer) < MAX_OUTPUT:
            return           # the status line is not all there yet
        if not found and not data:
            self._finish(False, "the connection was closed before a status line"
                         if not self.answer else "no HTTP status line")
            return
        self._judge(line.rstrip(b"\r").decode("latin-1"))

    def _judge(self, line):
        version, _, rest = line.partition(" ")
        code = rest[:3]
        if not version.startswith("HTTP/") or not (code.isascii() and code.isdigit()):
            self._finish(False, "no HTTP status line (%r)" % line[:80])
        elif 200 <= int(code) < 400:
            self._finish(True)
        else:
            self._finish(False, "HTTP %s" % rest.strip())


class ExecProbe:
    """The check's command, run as the app's hooks are: passes on exit 0."""

    def __init__(self, checker):
        self.checker, self.loop = checker, checker.loop
        app = checker.app
        launch = app.make_launch(checker.spec.argv)
        stdin = (launch.options.get("fd_map") or [0])[0]
        r, w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        try:
            self.pid = checker.sup.spawn_child(launch, self._exited, fd_map=[stdin, w, w])
        except BaseException:
            os.close(r)
            raise
        finally:
            os.close(w)
        self.fd = r
        self.output = b""
        self.closed = False
        self.loop.add_reader(r, self._read)

    def _read(self):
        """What is in the pipe now; the last MAX_OUTPUT bytes are kept."""
        while self.fd is not None:
            try:
                data = os.read(self.fd, 65536)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:
                self._close_pipe()     # EOF: the exit is what is waited for
                return
            self.output = (self.output + data)[-MAX_OUTPUT:]

    def _close_pipe(self):
        if self.fd is not None:
            self.loop.remove_reader(self.fd)
            os.close(self.fd)
            self.fd = None

    def _exited(self, status):
        self._read()
        self._close_pipe()
        if self.closed:
            return           # timed out or dropped: its end says nothing now
        self.closed = True
        code = spawn.exit_code(status)
        if code == 0:
            self.checker._done(True)
            return
        lines = [l for l in self.output.decode("utf-8", "replace").splitlines() if l.strip()]
        self.checker._done(False, "%s: exit %d%s" % (self.checker.spec.text, code,
                                                     ": " + lines[-1].strip() if lines else ""))

    def close(self):
        """Dropped (a timeout, the app stops): the command's group is killed;
        its reaping closes the pipe."""
        if not self.closed:
            self.closed = True
            native.kill_many([-self.pid, self.pid], 9)


PROBES = {"tcp": TcpProbe, "http": HttpProbe, "exec": ExecProbe}


def _seconds(value):
    text = "%.3f" % value
    return text.rstrip("0").rstrip(".")
