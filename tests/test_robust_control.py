"""Nothing a client does through the pod's sockets can take the pod down.

Answers of any size arrive whole; a client that does not read is dropped,
not allowed to hold the init's memory; unfinished requests and the number
of connections are bounded; many request lines cost what their bytes cost;
a half-closed client still gets the answer it is owed; running out of fds
refuses connections instead of killing the init; a notify flood from
another user cannot keep the init from answering.
"""
import json
import os
import signal
import socket
import subprocess
import sys
import time

from livehelpers import live, liveroot  # noqa: F401 (fixtures)
from livehelpers import NOBODY, STAGE1, Conn, Pod, app, notify_code, py, wait_for
from conftest import DEADLINE, status_field


def _connect(path):
    """A connection, waiting while the listen backlog is full (EAGAIN)."""
    return wait_for(lambda: _try_connect(path), what="a connection")


def _try_connect(path):
    try:
        return Conn(path)
    except BlockingIOError:
        return None


def _rss_kib(pid):
    return int(status_field(pid, "VmRSS").split()[0])


def _answer(sock_path, request):
    """Send one request, read the whole answer line, however long."""
    with Conn(sock_path) as c:
        c.send_obj(request)
        line = c.line()
    return line


def test_a_status_answer_bigger_than_the_socket_buffer_arrives_whole(live):
    # 1000 apps: about 330 KB of status, more than a unix socket buffers.
    pod = live([app("a%d" % i, ["sleep", "100"]) for i in range(1000)])
    wait_for(lambda: all(s == "running" for s, _, _, _ in pod.apps().values()),
             timeout=60, what="1000 apps running")
    with Conn(pod.sock) as c:
        # Five at once, 1.6 MB of answers, far more than the socket holds;
        # this client reads none until another client has been answered
        # twice (by then the init has written what it could of the five).
        c.send(b'{"op": "status"}\n' * 5)
        for _ in range(2):
            assert pod.request({"op": "status"})["ok"]
        for _ in range(5):
            line = c.line()
            assert len(line) > 300000 and line.endswith(b"\n")
            answer = json.loads(line)
            assert answer["ok"] and len(answer["apps"]) == 1000


def test_a_client_that_never_reads_is_dropped_and_the_pod_goes_on(live):
    pod = live([app("a%d" % i, ["sleep", "100"]) for i in range(300)])
    wait_for(lambda: len(pod.apps()) == 300 and
             all(s == "running" for s, _, _, _ in pod.apps().values()),
             timeout=30, what="300 apps running")
    rss = _rss_kib(pod.run.init_pid)
    with Conn(pod.sock) as c:
        # about 100 KB an answer: 200 answers are more than the init keeps unread
        for _ in range(200):
            try:
                c.send_obj({"op": "status"})
            except OSError:
                break            # dropped already
        wait_for(lambda: "dropped a client that left" in pod.run.stderr(),
                 what="the init dropping the reader")
    assert pod.request({"op": "status"})["ok"]
    assert _rss_kib(pod.run.init_pid) < rss + 64 * 1024


def test_unfinished_requests_and_connections_are_bounded(live):
    pod = live([app("a", ["sleep", "100"])])
    pod.wait_state("a", "running")
    rss = _rss_kib(pod.run.init_pid)
    conns, refused = [], 0
    try:
        for _ in range(100):
            c = _connect(pod.sock)
            conns.append(c)
            try:
                c.send(b"x" * (250 << 10))       # just under the request limit, no newline
            except OSError:
                refused += 1
        # The one over the limit on connections is answered and closed.
        answers = [c for c in conns if _has_line(c)]
        assert refused or answers, "no connection was refused"
        for c in answers:
            assert b"too many connections" in c.line(1)
        assert _rss_kib(pod.run.init_pid) < rss + 48 * 1024
    finally:
        for c in conns:
            c.close()
    assert pod.request({"op": "status"})["ok"]


def _has_line(c):
    c.sock.settimeout(0.05)
    try:
        data = c.sock.recv(65536, socket.MSG_PEEK)
    except (socket.timeout, OSError):
        return False
    return b"\n" in data


def test_a_request_longer_than_the_limit_is_refused(live):
    pod = live([app("a", ["sleep", "100"])])
    with Conn(pod.sock) as c:
        c.send(b"y" * (300 << 10))
        answer = c.obj()
    assert answer == {"ok": False, "error": "request longer than 262144 bytes"}
    assert pod.request({"op": "status"})["ok"]


def test_many_blank_lines_cost_what_their_bytes_cost(live):
    """8 MB of blank lines used to take the init 13 s of CPU (the request
    buffer was split once per line); the answer after them comes within
    the deadline, and the init's CPU stays a fraction of it."""
    pod = live([app("a", ["sleep", "100"])])
    pod.wait_state("a", "running")
    before = _cpu(pod.run.init_pid)
    with Conn(pod.sock) as c:
        for _ in range(128):
            c.send(b"\n" * 65536)
        c.send_obj({"op": "status"})
        assert c.obj()["ok"]
    assert _cpu(pod.run.init_pid) - before < 5.0


def _cpu(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_a_half_closed_client_gets_its_answer(live):
    pod = live([app("a", ["sleep", "100"]), app("b", ["sleep", "100"])])
    pod.wait_state("a", "running")
    for op in ("restart", "stop", "start"):
        with Conn(pod.sock) as c:
            c.send_obj({"op": op, "app": "a"})
            c.sock.shutdown(socket.SHUT_WR)
            answer = c.obj()
            assert answer["ok"] and answer["app"] == "a", answer
            assert c.line() == b""           # and then the init closes it
    assert pod.apps()["a"][0] == "running"


def test_running_out_of_fds_refuses_connections_and_the_pod_goes_on(liveroot):
    pod = Pod(os.path.join(liveroot, "pod"), [app("a", ["sleep", "100"])])
    proc = subprocess.Popen(["prlimit", "--nofile=64:64", STAGE1, "run", pod.path],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    conns = []
    try:
        sock = pod.file("stage1.sock")
        wait_for(lambda: os.path.exists(sock), what="the control socket")
        pod.wait_state("a", "running")
        for _ in range(80):
            conns.append(_connect(sock))
        # the ones past the fd limit are refused, one line each
        refused = [c for c in conns if _has_line(c)]
        assert refused
        assert all(json.loads(c.line(1))["error"] in (
            "the init is out of file descriptors", "too many connections (at most 64)")
            for c in refused)
        assert proc.poll() is None
        for c in conns:
            c.close()
        conns = []
        answer = json.loads(_answer(sock, {"op": "status"}))
        assert answer["ok"] and answer["apps"][0]["state"] == "running"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(DEADLINE) == 0
    finally:
        for c in conns:
            c.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()


def test_an_internal_error_out_of_fds_still_kills_and_reaps_the_pod(liveroot):
    """The last-resort handler needs nothing it might fail to get: here the
    failure is running out of fds, and its traceback module is not loaded."""
    pod = Pod(os.path.join(liveroot, "pod"), [app("a", ["sleep", "100"]),
                                              app("b", ["sleep", "100"])])
    inject = (
        "import os, sys\n"
        "from stage1.commands import main as cli\n"
        "from stage1.engine import supervisor\n"
        "def broken(self, signo, forwarded=False):\n"
        "    fds = []\n"
        "    while True:\n"
        "        fds.append(os.open('/dev/null', os.O_RDONLY))\n"
        "supervisor.Supervisor.on_signal = broken\n"
        "sys.exit(cli.main(sys.argv[1:]))\n")
    proc = subprocess.Popen([sys.executable, "-c", inject, "run", pod.path],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    try:
        pod.wait_state("a", "running")
        pod.wait_state("b", "running")
        pids = [pod.status(n)["pid"] for n in ("a", "b")]
        os.kill(proc.pid, signal.SIGUSR1)
        assert proc.wait(DEADLINE) == 254
        err = proc.stderr.read().decode()
        assert "internal error, every process of the pod was killed" in err, err
        assert "Too many open files" in err
        for pid in pids:
            assert not os.path.exists("/proc/%d" % pid) or \
                open("/proc/%d/stat" % pid).read().split(") ")[1][0] == "Z"
        assert pod.pod_status()["state"] == "exited"
        assert pod.pod_status()["exitCode"] == 254
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()


def _flood(path, seconds):
    """sd_notify datagrams as fast as they go, for `seconds`."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.setblocking(False)
    sent, end = 0, time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            s.sendto(b"READY=1\nSTATUS=flood", path)
            sent += 1
        except (BlockingIOError, ConnectionRefusedError):
            pass
        except OSError:
            break
    return sent


def test_a_notify_flood_from_another_user_does_not_starve_the_init(live):
    ready_flag = "/tmp/stage1-test-notify-%d" % os.getpid()
    code = notify_code(("wait", ready_flag), "READY=1")
    pod = live([app("a", ["sleep", "100"]),
                app("n", py(code), annotations={"stage1/notify": "systemd"})])
    pod.wait_state("n", "running")
    os.chmod(pod.path, 0o755)
    notify = pod.pod.file("notify.sock")
    floods = []
    for _ in range(4):
        pid = os.fork()
        if pid == 0:
            try:
                os.setgid(NOBODY)
                os.setuid(NOBODY)
                _flood(notify, 3.0)
            finally:
                os._exit(0)
        floods.append(pid)
    try:
        answered = 0
        end = time.monotonic() + 2.0
        while time.monotonic() < end:
            assert pod.request({"op": "status"}, timeout=DEADLINE)["ok"]
            answered += 1
        assert answered > 5
        # a real app's readiness still counts during the flood
        open(ready_flag, "w").close()
        wait_for(lambda: pod.apps()["n"][2], what="n ready during the flood")
        assert pod.status("n")["statusText"] is None    # the flood's STATUS= is nobody's
    finally:
        for pid in floods:
            os.waitpid(pid, 0)
        os.unlink(ready_flag)
