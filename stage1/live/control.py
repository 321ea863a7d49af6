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
import json
import os
import socket
import struct

from stage1.engine.supervisor import BACKOFF, ENDED, EXITED, RUNNING, WAITING
from stage1.engine.status import app_record

MAX_REQUEST = 1 << 20


class Client:
    def __init__(self, server, sock):
        self.server, self.sock = server, sock
        self.buf = b""
        self.closed = False

    def send(self, obj):
        self.send_line(json.dumps(obj, sort_keys=True).encode() + b"\n")

    def send_line(self, line):
        if self.closed:
            return
        try:
            self.sock.sendall(line)
        except (BlockingIOError, OSError):
            # A peer that does not read its answers is dropped rather than
            # allowed to block the init.
            self.close()

    def readable(self):
        try:
            data = self.sock.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self.close()
            return
        self.buf += data
        if len(self.buf) > MAX_REQUEST:
            self.send({"ok": False, "error": "request longer than %d bytes" % MAX_REQUEST})
            self.close()
            return
        while b"\n" in self.buf and not self.closed:
            line, self.buf = self.buf.split(b"\n", 1)
            if line.strip():
                self.server.handle(self, line)

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
        sock = listening_socket(path, socket.SOCK_STREAM, 0o600)
        if owner is not None and owner != os.geteuid():
            # 0600 for the owner of the pod directory, who may talk too.
            os.chown(path, owner, -1)
        sock.listen(64)
        self.sock = sock
        loop.add_reader(sock.fileno(), self._accept)

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            conn.setblocking(False)
            pid, uid, gid = struct.unpack("3i", conn.getsockopt(
                socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")))
            if uid not in self.allowed_uids:
                self.log.warn("control: refused pid %d (uid %d)" % (pid, uid))
                try:
                    conn.send(b'{"error": "permission denied", "ok": false}\n')
                except OSError:
                    pass
                conn.close()
                continue
            client = Client(self, conn)
            self.clients[conn.fileno()] = client
            self.loop.add_reader(conn.fileno(), client.readable)

    def forget(self, client):
        fd = client.sock.fileno()
        if self.clients.pop(fd, None) is not None:
            self.loop.remove_reader(fd)
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
        self.sup.when(lambda: app.name not in self.sup.apps,
                      lambda: client.send({"ok": True, "app": app.name, "removed": True}))

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
        self.sup.when(done, lambda: client.send(dict(ok=True, **_brief(app))))

    def close(self):
        for client in list(self.clients.values()):
            client.close()
        self.loop.remove_reader(self.sock.fileno())
        self.sock.close()
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
