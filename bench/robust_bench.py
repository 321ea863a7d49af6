"""What a hostile or careless client costs a live pod (`--only robust`).

- notify: the init's own CPU time per 1000 sd_notify datagrams, from a
  sender that is no app (a flood from anyone: the socket is open to every
  uid) and from an app's own process (READY/STATUS lines);
- control input: the init's CPU per MB of blank request lines (parsing
  alone) and per MB of small requests it must answer (parse, JSON, answer);
- status latency: round trips of `{"op": "status"}` on the control socket,
  idle and while 8 processes running as uid 65534 flood notify.sock;
  target: p50 under the flood within 2x of idle.

CPU is the init's schedstat runtime (harness.cpu_ns), read once the init
has stopped using CPU after the load.
"""
import os
import socket
import sys
import time

import harness
from live_bench import Stage1Pod, runtime_app

NOBODY = 65534
PY = sys.executable


def _settled_cpu(pid):
    """The init's CPU time (ns) once it has been idle for 50 ms."""
    return harness.settled_cpu_ns(pid, quiet=0.05, poll=0.01)




def _send_datagrams(path, n, message=b"READY=1\nSTATUS=x"):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        for _ in range(n):
            s.sendto(message, path)      # blocking: none is dropped
    finally:
        s.close()


APP_SENDER = ("import os, socket, sys\n"
              "s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)\n"
              "s.connect(os.environ['NOTIFY_SOCKET'])\n"
              "s.send(b'READY=1')\n"
              "go = sys.argv[1]\n"
              "while not os.path.exists(go):\n"
              "    pass\n"
              "for i in range(int(sys.argv[2])):\n"
              "    s.send(b'STATUS=working %d' % i)\n"
              "open(go + '.done', 'w').close()\n"
              "import time; time.sleep(3600)\n")


def notify_cost(workdir, settings, log):
    n = settings["datagrams"]
    go = os.path.join(workdir, "go")
    apps = [runtime_app("idle", ["sleep", "3600"]),
            runtime_app("talker", [PY, "-c", APP_SENDER, go, str(n)],
                        **{"stage1/notify": "systemd"})]
    with Stage1Pod(workdir, "notify", apps) as pod:
        path = os.path.join(pod.path, "notify.sock")
        before = _settled_cpu(pod.pid)
        _send_datagrams(path, n)
        stranger = (_settled_cpu(pod.pid) - before) / n * 1000
        before = _settled_cpu(pod.pid)
        open(go, "w").close()
        harness.wait_until("the app's datagrams", lambda: os.path.exists(go + ".done"), 60)
        app = (_settled_cpu(pod.pid) - before) / n * 1000
    log("robust: notify %.2f ms (stranger) / %.2f ms (app) per 1000" % (stranger / 1e6, app / 1e6))
    return stranger, app


def control_cost(workdir, settings, log):
    mb = settings["control_mb"]
    with Stage1Pod(workdir, "control", [runtime_app("idle", ["sleep", "3600"])]) as pod:
        out = {}
        for label, line in (("blank", b"\n"), ("requests", b'{"op": "bogus"}\n')):
            data = line * ((mb << 20) // len(line))
            before = _settled_cpu(pod.pid)
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(pod.sock)
            reader = _Drain(s)
            s.sendall(data)
            s.sendall(b'{"op": "status"}\n')
            reader.until_status()
            s.close()
            out[label] = (_settled_cpu(pod.pid) - before) / (len(data) / 1e6)
            log("robust: control %s: %.1f ms per MB" % (label, out[label] / 1e6))
    return out


class _Drain:
    """Reads answers on a second thread, so sendall never blocks on them."""

    def __init__(self, sock):
        import threading
        self.sock, self.done = sock, threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        buf = b""
        while not self.done.is_set():
            data = self.sock.recv(1 << 16)
            if not data:
                return
            buf = buf[-4096:] + data
            if b'"apps"' in buf:
                self.done.set()

    def until_status(self):
        if not self.done.wait(120):
            raise harness.BenchError("no status answer after the control input")


def _round_trips(pod, n):
    times = []
    for _ in range(n):
        start = time.perf_counter()
        pod.request({"op": "status"})
        times.append(time.perf_counter() - start)
    return times


def _flooder(path, seconds):
    pid = os.fork()
    if pid:
        return pid
    try:
        os.setgid(NOBODY)
        os.setuid(NOBODY)
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            try:
                s.sendto(b"READY=1\nSTATUS=flood", path)
            except OSError:
                pass
    finally:
        os._exit(0)


def status_latency(workdir, settings, log):
    apps = [runtime_app("a%d" % i, ["sleep", "3600"]) for i in range(10)]
    with Stage1Pod(workdir, "latency", apps) as pod:
        os.chmod(workdir, 0o755)
        os.chmod(pod.path, 0o755)
        path = os.path.join(pod.path, "notify.sock")
        _round_trips(pod, 20)          # warm
        idle = _round_trips(pod, settings["round_trips"])
        floods = [_flooder(path, settings["flood_s"]) for _ in range(8)]
        try:
            time.sleep(0.2)            # the flood under way
            flooded = _round_trips(pod, settings["round_trips"])
        finally:
            for pid in floods:
                os.waitpid(pid, 0)
        pod.check_alive("stage1 run under the flood")
    log("robust: status p50 idle %.3f ms, flooded %.3f ms"
        % (harness.median(idle) * 1e3, harness.median(flooded) * 1e3))
    return idle, flooded


def run(quick=False, log=print):
    settings = {"datagrams": 5000 if quick else 50000, "control_mb": 2 if quick else 8,
                "round_trips": 50 if quick else 300, "flood_s": 2.0 if quick else 4.0}
    with harness.workdir() as d:
        stranger, app = notify_cost(os.path.join(d, "n"), settings, log)
        control = control_cost(os.path.join(d, "c"), settings, log)
        idle, flooded = status_latency(os.path.join(d, "l"), settings, log)
    return report(settings, stranger, app, control, idle, flooded)


def report(settings, stranger, app, control, idle, flooded):
    p50_idle, p50_flood = harness.median(idle), harness.median(flooded)
    rows = [
        ["notify, 1000 datagrams from no app (a flood)", "%.2f ms" % (stranger / 1e6)],
        ["notify, 1000 datagrams from an app (STATUS=)", "%.2f ms" % (app / 1e6)],
        ["control, 1 MB of blank lines", "%.2f ms" % (control["blank"] / 1e6)],
        ["control, 1 MB of small requests, each answered", "%.1f ms" % (control["requests"] / 1e6)],
        ["status round trip p50, idle", "%.3f ms" % (p50_idle * 1e3)],
        ["status round trip p50, 8 uid-65534 notify flooders", "%.3f ms" % (p50_flood * 1e3)],
        ["status round trip p90, idle / flooded", "%.3f / %.3f ms" % (
            harness.percentile(idle, 90) * 1e3, harness.percentile(flooded, 90) * 1e3)],
    ]
    ratio = p50_flood / p50_idle
    lines = [harness.markdown_table(["what", "init CPU or latency"], rows), "",
             "- %d datagrams per sender kind; %d MB of control input per kind; %d status round "
             "trips per row, the flood %.0f s of 8 processes as uid 65534 sending as fast as "
             "they can." % (settings["datagrams"], settings["control_mb"],
                            settings["round_trips"], settings["flood_s"]),
             "- CPU: the init's own schedstat runtime, read once it is idle again.", "",
             "```",
             "status p50 under a notify flood: %.3f ms vs idle %.3f ms = %.2fx   target <= 2x   %s"
             % (p50_flood * 1e3, p50_idle * 1e3, ratio, "PASS" if ratio <= 2 else "FAIL"),
             "```", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    print(run("--quick" in sys.argv))
