"""Readiness: sd_notify datagrams and s6-style notification fds.

sd_notify: one datagram socket for the pod, bound in the pod directory
(and reachable inside isolated app roots through a bind mount).  Apps get
NOTIFY_SOCKET; a message is trusted for the app whose process sent it, as
the kernel tells through SCM_CREDENTIALS (SO_PASSCRED), never for the app
the message claims (MAINPID= is ignored): the main process or any of its
descendants may speak for the app, as systemd's NotifyAccess=all allows.

fd:N (s6's notification-fd): the app's fd N is the write end of a pipe;
a newline written on it marks the app ready.
"""
import os
import socket
import struct
from time import monotonic

from stage1.engine import init
from stage1.live.control import listening_socket

UCRED = struct.Struct("iII")
BATCH = 64                 # datagrams read per wake-up


class NotifySocket:
    def __init__(self, path, loop, sup, log):
        self.path, self.sup, self.log = path, sup, log
        # Apps may run as any user; what a sender may do is decided by its
        # credentials below, not by the socket's mode.  (An app's sd_notify
        # needs the path to fit in 107 bytes; the init binds any length.)
        sock = listening_socket(path, socket.SOCK_DGRAM, 0o666)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.sock = sock
        self.cache, self.cache_time = {}, 0.0     # sender pid -> its app or None
        loop.add_reader(sock.fileno(), self._readable)

    def _readable(self):
        """At most BATCH datagrams a wake-up, so a flood from anyone (the
        socket is open to every uid) cannot keep the init from its other
        work; the loop comes back while more are queued."""
        for _ in range(BATCH):
            try:
                data, anc, _, _ = self.sock.recvmsg(4096, socket.CMSG_SPACE(UCRED.size))
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            pid = None
            for level, kind, payload in anc:
                if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                    pid = UCRED.unpack(payload[:UCRED.size])[0]
            app = self.app_for(pid)
            if app is None:
                continue
            self.handle(app, data.decode("utf-8", "replace"))

    def app_for(self, pid):
        """The app whose main process is pid or an ancestor of pid.

        A sender's answer is kept for a second, so a sender that floods
        costs one dict look-up a message after its first, not a walk up
        /proc: counted per sender pid, the way an attacker cannot make it
        dear."""
        app = self.sup.by_pid.get(pid)
        if app is not None:
            return app
        now = monotonic()
        if now - self.cache_time > 1.0:
            self.cache, self.cache_time = {}, now
        if pid in self.cache:
            app, main = self.cache[pid]
            # Still that run of the app: a restart makes its old children orphans.
            return app if app is not None and app.pid == main else None
        app = self._walk(pid)
        if len(self.cache) < 4096:
            self.cache[pid] = (app, app.pid if app is not None else None)
        return app

    def _walk(self, pid):
        seen = 0
        while pid and pid > 1 and seen < 64:
            app = self.sup.by_pid.get(pid)
            if app is not None:
                return app
            pid = init.parent_pid(pid)
            seen += 1
        return None

    def handle(self, app, text):
        for line in text.split("\n"):
            key, _, value = line.partition("=")
            if key == "READY" and value == "1":
                self.sup.mark_ready(app)
            elif key == "STATUS":
                app.status_text = value
                self.sup.status_changed(app)
            elif key == "STOPPING" and value == "1":
                app.notify_stopping = True
                self.sup.status_changed(app)

    def close(self):
        self.sock.close()
        try:
            os.unlink(self.path)
        except OSError:
            pass


class NotifyFd:
    """The read end of an app's fd:N pipe; a newline means ready."""

    def __init__(self, fd, app, loop, sup):
        self.fd, self.app, self.loop, self.sup = fd, app, loop, sup
        loop.add_reader(fd, self._readable)

    def _readable(self):
        try:
            data = os.read(self.fd, 512)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if b"\n" in data:
            self.sup.mark_ready(self.app)
        if not data or b"\n" in data:
            self.close()

    def close(self):
        if self.fd is not None:
            self.loop.remove_reader(self.fd)
            os.close(self.fd)
            self.fd = None
