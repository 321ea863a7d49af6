"""Who may have the init pass a signal on to the apps.

A pod's init passes the signals it is sent on to every app (stop signals
stop the pod).  It signals apps of any user, so a signal an app sends the
init is not passed on: else an app could have another user's app signalled,
which it may not do itself.  A signal from outside the pod (the host, a
process that is not below the init, or not in the namespace of which the
init is PID 1) is passed on as before.  Here as PID 1 of a fresh namespace
and as a subreaper on the host; the isolated pod's case is in the escape
suite.
"""
import os
import signal

import pytest

from conftest import sigset
from livehelpers import app, sh, wait_for
from livehelpers import live, liveroot  # noqa: F401  (fixtures)


def _read(path):
    try:
        with open(path) as f:
            return f.read()
    except FileNotFoundError:
        return ""


def _victim(marker):
    # Writes a line for each SIGUSR1 it gets.
    return sh("trap 'echo usr1 >> %s' USR1; touch %s.up; "
              "while :; do sleep 0.02; done" % (marker, marker))


@pytest.mark.parametrize("pid1", [True, False], ids=["pid1", "subreaper"])
def test_a_signal_an_app_sends_the_init_is_not_passed_on(live, tmp_path, pid1):
    marker = str(tmp_path / "victim")
    sent = str(tmp_path / "sent")
    # The attacker signals its parent, the init (1 as PID 1), then says so
    # (it ignores SIGUSR1 itself: the host's below reaches it too).
    attacker = sh("trap '' USR1; while [ ! -e %s.up ]; do sleep 0.01; done; "
                  "kill -USR1 $PPID; kill -USR1 $PPID; touch %s; exec sleep 1000" % (marker, sent))
    pod = live([app("victim", _victim(marker)), app("attacker", attacker)], pid1=pid1)
    wait_for(lambda: os.path.exists(sent), what="the attacker's signals")
    wait_for(lambda: "SIGUSR1 from pid" in pod.run.stderr(), what="the refusal said")
    assert pod.run.stderr().count("is not passed on") == 1, pod.run.stderr()
    # The same signal from here, outside the pod, is passed on (and the
    # attacker's two are not: the victim writes one line for this one).  A
    # signal still pending would merge with ours: none is, first.
    wait_for(lambda: signal.SIGUSR1 not in sigset(pod.run.init_pid, "ShdPnd"),
             what="the attacker's signals read")
    os.kill(pod.run.init_pid, signal.SIGUSR1)
    # echo >> makes the file before it writes the line.
    wait_for(lambda: _read(marker).endswith("\n"), what="the host's signal passed on")
    apps = pod.apps()
    assert apps["victim"][0] == "running" and apps["attacker"][0] == "running"
    assert _read(marker) == "usr1\n"


def test_a_stop_signal_from_an_app_still_stops_the_pod(live, tmp_path):
    """As with s6-svscan, supervisord or tini: `kill 1` inside ends the pod."""
    pod = live([app("a", ["/bin/sleep", "1000"]),
                app("b", sh("sleep 0.2; kill -TERM 1; exec sleep 1000"))], pid1=True)
    assert pod.run.wait(30) == 0
    assert "received SIGTERM" in pod.run.stderr()


@pytest.mark.parametrize("pid1", [True, False], ids=["pid1", "subreaper"])
def test_a_signal_from_an_app_that_ends_at_once_is_not_passed_on_either(live, tmp_path, pid1):
    """SIGWINCH (28) and the app's SIGCHLD (17) come in one read, lowest
    number first: who sent the signal is told before the reap makes the
    sender gone."""
    marker = str(tmp_path / "victim")
    victim = sh("trap 'echo winch >> %s' WINCH; touch %s.up; "
                "while :; do sleep 0.02; done" % (marker, marker))
    attacker = sh("while [ ! -e %s.up ]; do sleep 0.01; done; kill -WINCH $PPID; exit 0"
                  % marker)
    pod = live([app("victim", victim), app("attacker", attacker)], pid1=pid1)
    wait_for(lambda: pod.apps()["attacker"][0] == "exited", what="the attacker's end")
    wait_for(lambda: "SIGWINCH from pid" in pod.run.stderr(), what="the refusal said")
    assert not os.path.exists(marker)
    assert pod.apps()["victim"][0] == "running"
