"""The control socket: POD/stage1.sock, one JSON request per line, one JSON
answer per line.

Only root and the owner of the pod directory may talk to it: the peer's
credentials come from SO_PEERCRED, never from the request.  A malformed or
unknown request gets {"ok": false, "error": ...} and changes nothing.
Answers to requests that take time (start, stop, restart, rm) are sent
when the transition is done, through Supervisor.when(); `subscribe`
turns the connection into a stream of event lines.

Requests: {"op": "status"}, {"op": "start"|"stop"|"restart"|"rm", "app": N},
{"op": "add", "app": N} (from POD/pod) or {"op": "add", "app": N,
"runtimeApp": {...}}, {"op": "subscribe"}.
"""
import errno
import json
import os
import socket
import struct
import time

from stage1.engine.supervisor import BACKOFF, ENDED, EXITED, RUNNING, WAITING
from stage1.engine.status import app_record

MAX_REQUEST = 256 << 10        # an unfinished request line longer than this is refused
MAX_UNREAD = 16 << 20          # answers and events a client has not read yet
MAX_CLIENTS = 64               # connections served at once; more are refused
_encode = json.JSONEncoder(sort_keys=True).encode     # json.dumps(sort_keys=True), made once


class Client:
    """One connection: whole request lines in, answer lines out.

    Input is a bytearray holding the unfinished line; each read looks for a
    newline only in what it brought.  Output that the
    socket does not take at once waits in `out` and goes when the socket
    is writable, so an answer of any size arrives whole; a client that
    leaves more than MAX_UNREAD unread is dropped rather than allowed to
    hold the init's memory.  A client that half-closes (shuts down its
    writing side) still gets the answers it is owed, then is closed."""

    def __init__(self, server, sock):
        self.server, self.sock = server, sock
        self.fd = sock.fileno()
        self.buf = bytearray()         # the unfinished line
        self.out = bytearray()
        self.owed = 0                  # answers deferred until a transition is done
        self.subscribed = False
        self.read_closed = False
        self.closed = False

    def send(self, obj):
        self.send_line(_encode(obj).encode() + b"\n")

    def answer_later(self):
        """A deferred answer: call the returned function with it."""
        self.owed += 1

        def deliver(obj):
            self.owed -= 1
            self.send(obj)
            self._close_if_done()
        return deliver

    def send_line(self, line):
        if self.closed:
            return
        if self.out:
            self.out += line
        else:
            try:
                sent = self.sock.send(line)
            except BlockingIOError:
                sent = 0
            except OSError:
                self.close()
                return
            if sent < len(line):
                self.out += line[sent:]
                self.server.loop.set_writer(self.fd, self.writable)
        if len(self.out) > MAX_UNREAD:
            self.server.log.warn("control: dropped a client that left %d bytes unread"
                                 % len(self.out))
            self.close()

    def writable(self):
        try:
            sent = self.sock.send(self.out)
        except BlockingIOError:
            return
        except OSError:
            self.close()
            return
        del self.out[:sent]
        if not self.out:
            self.server.loop.set_writer(self.fd, None)
            self._close_if_done()

    def readable(self):
        try:
            data = self.sock.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            self.close()
            return
        if not data:
            self.read_closed = True
            self.server.loop.remove_reader(self.fd)
            self._close_if_done()
            return
        seen = len(self.buf)
        self.buf += data
        end = self.buf.rfind(b"\n", seen)
        if end >= 0:
            # Whole lines, split and stripped in C: a request of many lines
            # (8 MB of blank ones, say) costs what its bytes cost.
            chunk = bytes(self.buf[:end])
            del self.buf[:end + 1]
            for line in filter(bytes.strip, chunk.split(b"\n")):
                if self.closed:
                    return
                self.server.handle(self, line)
        if len(self.buf) > MAX_REQUEST and not self.closed:
            self.send({"ok": False, "error": "request longer than %d bytes" % MAX_REQUEST})
            self.read_closed = True
            self.server.loop.remove_reader(self.fd)
            self.buf = bytearray()
            self._close_if_done()

    def _close_if_done(self):
        if self.read_closed and not self.owed and not self.out and not self.subscribed:
            self.close()

    def close(self):
        if not self.closed:
            self.closed = True
            self.server.forget(self)
            self.sock.close()


class ControlServer:
    def __init__(self, path, loop, sup, log, allowed_uids, add_app, owner=None):
        self.path, self.loop, self.sup, self.log = path, loop, sup, log
        self.allowed_uids = set(allowed_uids)
        self.add_app = add_app            # (name, runtime app JSON or None) -> App, or raises
        self.clients = {}
        self.events = None
        # Bound and listening under a name of its own, then renamed into
        # place: a client that sees stage1.sock can connect at once (a
        # socket bound but not yet listening refuses, ECONNREFUSED).
        directory, name = os.path.split(path)
        fresh = os.path.join(directory, ".%s.%d" % (name, os.getpid()))
        sock = listening_socket(fresh, socket.SOCK_STREAM, 0o600)
        try:
            if owner is not None and owner != os.geteuid():
                # 0600 for the owner of the pod directory, who may talk too.
                os.chown(fresh, owner, -1)
            sock.listen(64)
            os.rename(fresh, path)
        except BaseException:
            sock.close()
            try:
                os.unlink(fresh)
            except OSError:
                pass
            raise
        self.sock = sock
        self.reserve = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        self.fd_warned = False
        loop.add_reader(sock.fileno(), self._accept)

    def _accept(self):
        for _ in range(MAX_CLIENTS):     # then let the rest of the pod have its turn
            try:
                conn, _ = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as err:
                if err.errno in (errno.EMFILE, errno.ENFILE):
                    self._refuse_without_fds()
                    return
                continue                 # ECONNABORTED and the like: that one is gone
            self._serve(conn)

    def _serve(self, conn):
        conn.setblocking(False)
        pid, uid, gid = struct.unpack("3i", conn.getsockopt(
            socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")))
        if uid not in self.allowed_uids:
            self.log.warn("control: refused pid %d (uid %d)" % (pid, uid))
            self._refuse(conn, "permission denied")
            return
        if len(self.clients) >= MAX_CLIENTS:
            self._refuse(conn, "too many connections (at most %d)" % MAX_CLIENTS)
            return
        client = Client(self, conn)
        self.clients[client.fd] = client
        self.loop.add_reader(client.fd, client.readable)

    def _refuse(self, conn, error):
        try:
            conn.send(json.dumps({"error": error, "ok": False}, sort_keys=True).encode() + b"\n")
        except OSError:
            pass
        conn.close()

    def _refuse_without_fds(self):
        """Out of fds (EMFILE): the waiting connection would keep the socket
        readable for ever.  The reserve fd, kept for this, makes room for
        one accept, which is refused, then is taken again (nginx's way)."""
        if self.reserve is None:
            return
        os.close(self.reserve)
        self.reserve = None
        try:
            conn, _ = self.sock.accept()
            self._refuse(conn, "the init is out of file descriptors")
        except OSError:
            pass
        try:
            self.reserve = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            pass
        if not self.fd_warned:
            self.fd_warned = True
            self.log.warn("control: out of file descriptors: connections are refused")

    def forget(self, client):
        fd = client.fd
        if self.clients.pop(fd, None) is not None:
            self.loop.remove_reader(fd)
            self.loop.set_writer(fd, None)
        if self.events is not None and client.send_line in self.events.subscribers:
            self.events.subscribers.remove(client.send_line)

    def handle(self, client, line):
        try:
            req = json.loads(line)
            if not isinstance(req, dict):
                raise ValueError("a request is a JSON object")
        except RecursionError:
            # json's decoder recurses once per nesting level: 100000 ['s
            # would otherwise take the init down.
            client.send({"ok": False, "error": "malformed request: nested too deeply"})
            return
        except ValueError as err:
            client.send({"ok": False, "error": "malformed request: %s" % err})
            return
        op = req.get("op")
        handler = getattr(self, "op_%s" % op, None) if isinstance(op, str) else None
        if handler is None:
            client.send({"ok": False, "error": "unknown op %r" % (op,)})
            return
        try:
            handler(client, req)
        except RequestError as err:
            client.send({"ok": False, "error": str(err)})
        except Exception as err:      # a bug of ours must not end the pod
            self.log.warn("control: %s request failed: %s: %s"
                          % (op, type(err).__name__, err))
            client.send({"ok": False, "error": "internal error: %s" % err})

    def _app(self, req):
        name = req.get("app")
        if not isinstance(name, str):
            raise RequestError("\"app\" must name an app")
        app = self.sup.apps.get(name)
        if app is None:
            raise RequestError("no app %r in this pod" % name)
        return app

    def _refuse_when_stopping(self):
        if self.sup.stopping:
            raise RequestError("the pod is stopping")

    # -- the requests ---------------------------------------------------------

    def op_status(self, client, req):
        client.send({"ok": True, "stopping": self.sup.stopping, "ready": self.sup.pod_ready,
                     "apps": [app_record(a) for a in self.sup.apps.values()]})

    def op_subscribe(self, client, req):
        # The offset tells the client where in events.jsonl the stream
        # begins, so it shows the file up to there and no line twice.
        client.send({"ok": True, "subscribed": True, "offset": self.events.size()})
        client.subscribed = True
        self.events.subscribers.append(client.send_line)

    def op_start(self, client, req):
        app = self._app(req)
        self._refuse_when_stopping()
        if app.state in (WAITING, EXITED):
            self.sup.event(app, "start")
        self._answer_when(client, app, lambda: app.state in (RUNNING, BACKOFF) or
                          app.state in ENDED)

    def op_stop(self, client, req):
        app = self._app(req)
        app.restart_pending = False        # a stop overrides a restart under way
        self.sup.event(app, "stop")
        self._answer_when(client, app, lambda: app.ended)

    def op_restart(self, client, req):
        app = self._app(req)
        self._refuse_when_stopping()
        self.sup.restart(app)
        # Done once the new run has begun or failed to (or a stop, an rm or
        # the pod's stop came first: then the app as it ended).
        self._answer_when(client, app, lambda: (
            not app.restart_pending and (app.state in (RUNNING, BACKOFF) or app.ended))
            or (self.sup.stopping and app.ended))

    def op_rm(self, client, req):
        app = self._app(req)
        app.remove_when_ended = True
        app.restart_pending = False
        if app.ended:
            self.sup._remove(app)
        else:
            self.sup.event(app, "stop")
        deliver = client.answer_later()
        self.sup.when(lambda: app.name not in self.sup.apps,
                      lambda: deliver({"ok": True, "app": app.name, "removed": True}), app)

    def op_add(self, client, req):
        self._refuse_when_stopping()
        name = req.get("app")
        if not isinstance(name, str):
            raise RequestError("\"app\" must name an app")
        if name in self.sup.apps:
            raise RequestError("app %r is already in the pod" % name)
        runtime_app = req.get("runtimeApp")
        try:
            app = self.add_app(name, runtime_app)
        except ValueError as err:      # ManifestError, PodError text
            raise RequestError(str(err))
        self.sup.add_app(app)
        client.send({"ok": True, "app": name, "state": app.state})

    def _answer_when(self, client, app, done):
        deliver = client.answer_later()
        self.sup.when(done, lambda: deliver(dict(ok=True, **_brief(app))), app)

    def close(self):
        """The pod has ended: what clients are owed still goes (the last
        event lines, a status being written), for at most a second in all."""
        deadline = time.monotonic() + 1.0
        for client in list(self.clients.values()):
            left = deadline - time.monotonic()
            if client.out and left > 0:
                try:
                    client.sock.settimeout(left)
                    client.sock.sendall(client.out)
                except OSError:
                    pass
            client.close()
        self.loop.remove_reader(self.sock.fileno())
        self.sock.close()
        if self.reserve is not None:
            os.close(self.reserve)
            self.reserve = None
        try:
            os.unlink(self.path)
        except OSError:
            pass


def _brief(app):
    return {"app": app.name, "state": app.state, "pid": app.pid, "exitCode": app.exit_code,
            "reason": app.reason, "ready": app.ready}


class RequestError(Exception):
    pass


MAX_UNIX_PATH = 107


def listening_socket(path, kind, mode):
    """A non-blocking, close-on-exec unix socket bound at path (a stale one
    is replaced), created with mode: no window with a wider one."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    sock = socket.socket(socket.AF_UNIX, kind | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK)
    old = os.umask(0o777 & ~mode)
    try:
        unix_path(sock.bind, path)
    finally:
        os.umask(old)
    return sock


def unix_path(call, path):
    """sock.bind or sock.connect on path, also when path is longer than
    sockaddr_un allows (107 bytes, and pod directories can be deep): then
    through /proc/self/fd/N of the directory, which the kernel resolves."""
    if len(os.fsencode(path)) <= MAX_UNIX_PATH:
        return call(path)
    directory, name = os.path.split(path)
    dfd = os.open(directory, os.O_PATH | os.O_CLOEXEC)
    try:
        return call("/proc/self/fd/%d/%s" % (dfd, name))
    finally:
        os.close(dfd)


def request(path, obj, follow=None, timeout=None, answered=None):
    """Client side: send one request, return the answer (dict).  With
    follow, call answered(answer) and then follow(line) for each further
    line until the pod closes."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    sock.settimeout(timeout)
    unix_path(sock.connect, path)
    with sock:
        sock.sendall(json.dumps(obj).encode() + b"\n")
        f = sock.makefile("rb")
        line = f.readline()
        if not line:
            raise ConnectionError("the pod closed the connection without an answer")
        answer = json.loads(line)
        if follow is not None and answer.get("ok"):
            if answered is not None:
                answered(answer)
            for line in f:
                follow(line)
        return answer
