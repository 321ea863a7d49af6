"""Helpers of the health-check tests: a real local server that can stop
answering, and apps with health-check annotations.

`Server` is an HTTP server on 127.0.0.1 (a free port the kernel picks), run
in a thread of the test process, so that the test decides what it answers:
`ok` (200), `error` (503), `hang` (the connection is accepted and never
answered), or `down` (the listening socket is closed: connections are
refused).  It counts the requests it has had, so a test waits for "one
more probe" rather than for a time.
"""
import http.server
import socket
import threading

from livehelpers import app


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        server = self.server.owner
        with server.lock:
            server.requests += 1
            server.paths.append(self.path)
            server.hosts.append(self.headers.get("Host"))
            mode = server.mode
        if mode == "hang":
            server.release.wait(30)
            return
        self.send_response(200 if mode == "ok" else 503)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


class Server:
    def __init__(self, mode="ok"):
        self.mode = mode
        self.lock = threading.Lock()
        self.requests = 0
        self.paths, self.hosts = [], []
        self.release = threading.Event()
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.daemon_threads = True
        self.httpd.owner = self
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self):
        return "http://127.0.0.1:%d/health" % self.port

    def count(self):
        with self.lock:
            return self.requests

    def set(self, mode):
        with self.lock:
            self.mode = mode

    def down(self):
        """Stop listening: every connection from now on is refused."""
        if self.httpd is not None:
            self.httpd.shutdown()
            self.httpd.server_close()
            self.httpd = None
        self.release.set()

    def close(self):
        self.release.set()
        self.down()


def free_port():
    """A port nothing listens on (bound, then closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def checked(name, exec_, kind, target, **knobs):
    """An app with a health check: kind exec/tcp/http, knobs such as
    interval="0.05" (stage1/health-interval), and other annotations."""
    annotations = {"stage1/health-" + kind: target}
    annotations.update({"stage1/health-" + k.replace("_", "-") if k in (
        "interval", "timeout", "retries", "start_period", "start_interval") else k: v
        for k, v in knobs.items()})
    return app(name, exec_, annotations=annotations)


FAST = {"interval": "0.05", "start_interval": "0.05", "timeout": "1", "retries": "2"}
