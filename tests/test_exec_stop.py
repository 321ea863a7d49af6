"""Graceful stop and leftovers.

A stop signal (TERM, INT, QUIT) passed on to the app arms the kill timer:
an app still alive when --grace ends is SIGKILLed (exit 137, reason
Killed); --grace 0 never escalates.  When the app exits, whatever is left
below the init gets SIGTERM, then SIGKILL when the grace ends, and the init
exits with the app's status."""
import signal
import subprocess

import pytest

from conftest import (DEADLINE, PY, alive, descendants, gone, holds_for, py, read_json,
                      wait_until)

PIDS = pytest.mark.parametrize("pid1", [False, True], ids=["subreaper", "pid1"])

# Writes "ready" to OUT, then records each SIG it is sent with "got" and
# carries on; any other signal has its default action.
STUBBORN = r"""
import os, signal, sys, time
out, sig = sys.argv[1], int(sys.argv[2])
fd = os.open(out, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
signal.signal(sig, lambda *_: os.write(fd, b"got\n"))
os.write(fd, b"ready\n")
while True:
    time.sleep(1)
"""


def lines(path):
    try:
        with open(path) as f:
            return f.read().split()
    except FileNotFoundError:
        return []


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGQUIT])
def test_app_alive_when_grace_ends_is_killed(procs, tmp_path, sig):
    out = tmp_path / "out"
    init = procs.init(py(STUBBORN, out, sig), "--grace", "0.5",
                      "--status-dir", tmp_path / "st", "--name", "app")
    wait_until(lambda: "ready" in lines(out))
    init.kill(sig)
    wait_until(lambda: "got" in lines(out), what="the stop signal at the app")
    assert init.wait() == 137
    st = read_json(tmp_path / "st" / "app.json")
    assert (st["exitCode"], st["signal"], st["reason"]) == (137, "SIGKILL", "Killed")


def test_app_alive_when_grace_ends_is_killed_as_pid1(procs, tmp_path):
    out = tmp_path / "out"
    init = procs.init(py(STUBBORN, out, signal.SIGTERM), "--grace", "0.5", pid1=True)
    wait_until(lambda: "ready" in lines(out))
    init.kill(signal.SIGTERM)
    assert init.wait() == 137


def test_grace_zero_never_escalates(procs, tmp_path):
    out = tmp_path / "out"
    init = procs.init(py(STUBBORN, out, signal.SIGTERM), "--grace", "0")
    wait_until(lambda: "ready" in lines(out))
    init.kill(signal.SIGTERM)
    wait_until(lambda: "got" in lines(out), what="the stop signal at the app")
    # Nothing to wait for but time: twice the grace the test above uses.
    holds_for(init.running, 1.0, "the init (and its app) running")
    init.kill(signal.SIGUSR1)            # the app's default action: it dies of USR1
    assert init.wait() == 128 + signal.SIGUSR1


def test_other_signals_do_not_arm_the_kill_timer(procs, tmp_path):
    out = tmp_path / "out"
    init = procs.init(py(STUBBORN, out, signal.SIGHUP), "--grace", "0.3")
    wait_until(lambda: "ready" in lines(out))
    init.kill(signal.SIGHUP)             # "reload", not "stop"
    wait_until(lambda: "got" in lines(out), what="SIGHUP at the app")
    holds_for(init.running, 1.0, "the init (and its app) running")
    init.kill(signal.SIGTERM)
    assert init.wait() == 128 + signal.SIGTERM


def test_app_that_stops_on_term_ends_the_init_before_grace(procs, tmp_path):
    init = procs.init(["sleep", "60"], "--grace", "60",
                      "--status-dir", tmp_path, "--name", "app")
    init.app()
    init.kill(signal.SIGTERM)
    assert init.wait() == 128 + signal.SIGTERM      # well before the 60 s grace
    st = read_json(tmp_path / "app.json")
    assert (st["exitCode"], st["signal"]) == (143, "SIGTERM")
    assert st["reason"] != "Killed"


# The app starts a child that outlives it, waits until the child has its
# SIGTERM handler in place, and exits with CODE.  The child writes "pid N"
# to MARKER, and "term" when it gets SIGTERM; in mode "exit" it then exits,
# in mode "ignore" it carries on.
LEFTOVER = r"""
import os, signal, sys, time
mode, marker, code = sys.argv[1], sys.argv[2], int(sys.argv[3])
r, w = os.pipe()
if os.fork() == 0:
    fd = os.open(marker, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    def on_term(*_):
        os.write(fd, b"term\n")
        if mode == "exit":
            os._exit(0)
    signal.signal(signal.SIGTERM, on_term)
    os.write(fd, b"pid %d\n" % os.getpid())
    os.close(r)
    os.close(w)
    while True:
        time.sleep(1)
os.close(w)
os.read(r, 1)
sys.exit(code)
"""

LEFTOVER_MODES = pytest.mark.parametrize(
    "pid1,mount_proc", [(False, True), (True, True), (True, False)],
    ids=["subreaper", "pid1", "pid1-without-proc"])


@LEFTOVER_MODES
def test_leftover_is_sent_sigterm_when_the_app_exits(procs, tmp_path, pid1, mount_proc):
    marker = tmp_path / "marker"
    init = procs.init(py(LEFTOVER, "exit", marker, 3), "--grace", "60",
                      pid1=pid1, mount_proc=mount_proc)
    # The leftover exits on SIGTERM: the init is done long before 60 s.
    assert init.wait() == 3
    assert lines(marker)[-1] == "term"


@LEFTOVER_MODES
def test_leftover_that_ignores_sigterm_is_killed_when_grace_ends(procs, tmp_path, pid1,
                                                                 mount_proc):
    marker = tmp_path / "marker"
    init = procs.init(py(LEFTOVER, "ignore", marker, 5), "--grace", "2",
                      pid1=pid1, mount_proc=mount_proc)
    wait_until(lambda: "term" in lines(marker), what="SIGTERM at the leftover")
    leftover = init.host_pid(int(lines(marker)[1]))
    # The init waits for the grace to end: the leftover outlived its SIGTERM.
    assert init.running() and alive(leftover)
    assert init.wait() == 5
    wait_until(lambda: gone(leftover), what="the leftover to be gone")


def test_killing_the_app_at_grace_end_kills_its_leftovers_too(procs, tmp_path):
    # The app and its child both refuse SIGTERM: at the end of the grace both
    # are SIGKILLed, and the init does not wait another grace for the child.
    marker = tmp_path / "marker"
    app = r"""
import os, signal, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
if os.fork() == 0:
    os.setsid()                       # out of the app's process group
    with open(sys.argv[1], "w") as f:
        f.write("pid %d\n" % os.getpid())
while True:
    time.sleep(1)
"""
    init = procs.init(py(app, marker), "--grace", "0.5", "--status-dir", tmp_path / "st",
                      "--name", "app")
    wait_until(lambda: len(lines(marker)) == 2)
    child = int(lines(marker)[1])
    init.kill(signal.SIGTERM)
    assert init.wait(timeout=10) == 137
    wait_until(lambda: gone(child), what="the app's child to be gone")
    assert read_json(tmp_path / "st" / "app.json")["reason"] == "Killed"


# A bug in stage1's own code, made on purpose: the supervisor's handler of a
# passed-on signal raises.  The init must not leave its app (and the app's
# children) behind without an init: it kills and reaps them, then exits 254.
FAULTY_INIT = r"""
import sys
from stage1.commands import main as cli
from stage1.engine import supervisor

def broken(self, signo, forwarded=False):
    raise RuntimeError("injected fault")

supervisor.Supervisor.on_signal = broken
sys.exit(cli.main(sys.argv[1:]))
"""


def test_an_internal_error_kills_and_reaps_the_pod_and_exits_254(procs, tmp_path):
    marker = tmp_path / "up"
    app = "sleep 100 & touch %s; wait" % marker
    init = procs.start([PY, "-c", FAULTY_INIT, "exec", "--", "sh", "-c", app],
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wait_until(marker.exists, what="the app and its child")
    # touch has made the marker but may not have ended (or been reaped by
    # sh) yet: the pod is the shell and its sleep once touch is gone.
    below = wait_until(lambda: (lambda d: d if len(d) == 2 else None)(descendants(init.pid)),
                       what="the app and its child, touch gone")
    init.send_signal(signal.SIGUSR1)
    init.wait(DEADLINE)
    assert init.returncode == 254
    err = init.stderr.read().decode()
    assert "internal error" in err and "injected fault" in err
    for pid in below:
        assert gone(pid), "process %d was left behind" % pid
