"""The init's own failed writes never become signals for the apps.

The init blocks every signal and reads them back, so a SIGPIPE or SIGXFSZ
its own write raised (a reader gone, a file size limit) would look like a
signal somebody sent and be passed on to every app (each would die with
141 or 153).  Each way of getting there, as a user would: a control client
that closes at once, Ctrl-C on `events --follow`, `stage1 run | head`, a
gone stderr with -v, `prlimit --fsize` with a file log, and exec mode with
-v whose stderr goes away.  A SIGPIPE that another process sends is still
passed on.
"""
import os
import signal
import socket
import subprocess
import sys

from livehelpers import live, liveroot  # noqa: F401 (fixtures)
from livehelpers import STAGE1, Pod, app, sh, wait_for
from conftest import DEADLINE, exec_argv, holds_for, kill_tree

LOOP = "trap 'exit 0' TERM; while :; do echo tick; sleep 0.01; done"
# Ignores the SIGUSR1s the tests send to make the init log, not a SIGPIPE.
QUIET = "trap 'exit 0' TERM; trap '' USR1; while :; do sleep 0.01; done"


def _still_running(pod, *names):
    for name in names:
        st = pod.status(name)
        assert st["state"] == "running" and st["restartCount"] == 0, st


def _stay_running(pod, *names):
    """A signal passed on would end them within moments: they must not."""
    holds_for(lambda: all((pod.status(n) or {}).get("state") == "running" for n in names),
              0.5, "the apps running")
    _still_running(pod, *names)


def test_a_client_that_closes_at_once(live):
    pod = live([app("a", ["sleep", "100"]), app("b", ["sleep", "100"])])
    pod.wait_state("a", "running")
    pod.wait_state("b", "running")
    for _ in range(50):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(pod.sock)
        s.sendall(b'{"op": "status"}\n')
        s.close()                 # before the answer: the init's write gets EPIPE
    assert pod.request({"op": "status"})["ok"]
    _stay_running(pod.pod, "a", "b")
    assert pod.run.alive()


def test_ctrl_c_on_events_follow(live):
    crash_loop = app("c", ["false"], annotations={"stage1/restart-policy": "always"})
    pod = live([app("a", ["sleep", "100"]), app("b", ["sleep", "100"]), crash_loop],
               {"stage1/restart-backoff": "0.002", "stage1/restart-backoff-max": "0.002"})
    pod.wait_state("a", "running")
    pod.wait_state("b", "running")
    for _ in range(5):
        follower = subprocess.Popen([STAGE1, "events", "--follow", pod.path],
                                    stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        follower.stdout.readline()
        follower.send_signal(signal.SIGINT)     # events keep coming meanwhile
        follower.wait(DEADLINE)
        follower.stdout.close()
    _stay_running(pod.pod, "a", "b")


def test_run_piped_into_head(tmp_path):
    pod = Pod(tmp_path, [app("a", sh(LOOP), annotations={"stage1/log": "prefix"}),
                         app("b", ["sleep", "100"])])
    proc = subprocess.Popen([STAGE1, "run", pod.path], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    try:
        assert proc.stdout.read(20).startswith(b"a| tick")
        proc.stdout.close()           # what `| head -c 20` does
        wait_for(lambda: "unable to write the output of an app" in _peek(proc),
                 what="the init's one warning about its lost output")
        _still_running(pod, "a", "b")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(DEADLINE) == 0
        assert pod.status("b")["reason"] == "Stopped"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()


_stderr_seen = {}


def _peek(proc):
    """What proc wrote on stderr so far (non-blocking)."""
    os.set_blocking(proc.stderr.fileno(), False)
    try:
        data = proc.stderr.read() or b""
    except BlockingIOError:
        data = b""
    _stderr_seen[proc.pid] = _stderr_seen.get(proc.pid, b"") + data
    return _stderr_seen[proc.pid].decode(errors="replace")


def test_verbose_run_whose_stderr_reader_is_gone(tmp_path):
    pod = Pod(tmp_path, [app("a", sh(QUIET)), app("b", sh(QUIET))])
    proc = subprocess.Popen([STAGE1, "run", "-v", pod.path], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    try:
        proc.stderr.readline()
        proc.stderr.close()
        pod.wait_state("a", "running")
        pod.wait_state("b", "running")
        # -v logs every signal and reaped child: each line fails now
        for _ in range(20):
            os.kill(proc.pid, signal.SIGUSR1)
        _stay_running(pod, "a", "b")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(DEADLINE) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_file_size_limit_with_a_file_log(tmp_path):
    writer = "trap 'exit 0' TERM; i=0; while :; do echo line-$i-xxxxxxxxxxxxxxxxxxxxxxxx; " \
             "i=$((i+1)); done"
    pod = Pod(tmp_path, [app("a", sh(writer), annotations={"stage1/log": "file"}),
                         app("b", ["sleep", "100"])])
    argv = ["prlimit", "--fsize=200000", STAGE1, "run", pod.path]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL)
    try:
        wait_for(lambda: "unable to write the output of an app" in _peek(proc),
                 what="the warning about the full log")
        assert os.path.getsize(pod.file("logs", "a.log")) <= 200000
        _still_running(pod, "a", "b")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(DEADLINE) == 0
        assert pod.status("a")["reason"] == "Stopped", pod.status("a")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()


def test_exec_verbose_into_a_closed_pipe_reaps_the_app():
    """`stage1 exec -v -- ... 2>&1 | head -c1`: it used to spin at 100% CPU
    on its own SIGPIPEs and never reap the app."""
    script = "trap : USR1; sleep 0.2; kill -USR1 $PPID; sleep 0.2; exit 3"
    init = subprocess.Popen(exec_argv(["sh", "-c", script], "-v"), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    try:
        init.stderr.read(1)
        init.stderr.close()
        assert init.wait(DEADLINE) == 3
    finally:
        if init.poll() is None:
            kill_tree(init.pid)
            init.wait()


def test_a_sigpipe_from_someone_else_is_still_passed_on():
    app_code = ("import signal, sys; signal.signal(signal.SIGPIPE, lambda *a: sys.exit(7)); "
                "print('up', flush=True); signal.pause()")
    init = subprocess.Popen(exec_argv([sys.executable, "-c", app_code]),
                            stdout=subprocess.PIPE)
    try:
        assert init.stdout.readline() == b"up\n"
        os.kill(init.pid, signal.SIGPIPE)
        assert init.wait(DEADLINE) == 7
    finally:
        if init.poll() is None:
            init.kill()
            init.wait()
        init.stdout.close()
