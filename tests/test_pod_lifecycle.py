"""The pod's life: every app starts at once, non-stop signals go to every
running app, and the exit policy (pod annotation stage1/exit-policy)
decides when the pod ends and with which code."""
import os
import signal

import pytest

from podhelpers import PY, Pod, Run, app, run, sh, wait_for

SIGNAL_APP = r"""
import os, signal, sys
out, name = sys.argv[1], os.environ["AC_APP_NAME"]
def on(sig, _):
    fd = os.open(out, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    os.write(fd, ("%s %s\n" % (name, signal.Signals(sig).name)).encode())
    os.close(fd)
    if sig == signal.SIGTERM:
        sys.exit(0)
for s in (signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2, signal.SIGWINCH, signal.SIGTERM,
          signal.SIGQUIT):
    signal.signal(s, on)
open("%s.%s.up" % (out, name), "w").close()
while True:
    signal.pause()
"""


def signal_app(name, tmp_path, **kw):
    with open(str(tmp_path / "sigapp.py"), "w") as f:
        f.write(SIGNAL_APP)
    return app(name, [PY, str(tmp_path / "sigapp.py"), str(tmp_path / "got")], **kw)


def test_every_app_starts_at_once(tmp_path):
    # each app waits until all three are up: apps started one after the
    # other's end would never see each other
    barrier = ("touch {d}/$AC_APP_NAME.up; i=0; "
               "while [ ! -e {d}/a.up ] || [ ! -e {d}/b.up ] || [ ! -e {d}/c.up ]; do "
               "i=$((i+1)); [ $i -gt 500 ] && exit 1; sleep 0.01; done").format(d=tmp_path)
    pod = Pod(tmp_path, [app(n, sh(barrier)) for n in "abc"])
    code, _, err = run(pod)
    assert code == 0, err
    assert [pod.status(n)["reason"] for n in "abc"] == ["Completed"] * 3


@pytest.mark.parametrize("pid1", [False, True])
def test_non_stop_signals_go_to_every_running_app(tmp_path, pid1):
    pod = Pod(tmp_path, [signal_app("one", tmp_path), signal_app("two", tmp_path),
                         app("done", ["true"])],
              annotations={"stage1/exit-policy": "untilAll"})
    with Run(pod, pid1=pid1) as r:
        for name in ("one", "two"):
            pod.wait_file("got.%s.up" % name)
        pod.wait_state("done", "exited")
        expected = []
        for sig in ("SIGHUP", "SIGUSR1", "SIGUSR2", "SIGWINCH", "SIGQUIT"):
            r.signal(getattr(signal, sig))
            expected += ["one " + sig, "two " + sig]
            wait_for(lambda: sorted(pod.read("got").splitlines()) == sorted(expected),
                     what="%s at both apps" % sig)
        assert pod.state("one") == pod.state("two") == "running"
        r.signal(signal.SIGTERM)
        assert r.wait() == 0
    assert sorted(pod.read("got").splitlines()) == sorted(expected + ["one SIGTERM",
                                                                      "two SIGTERM"])
    assert pod.status("one")["reason"] == pod.status("two")["reason"] == "Stopped"


# -- exit policies -----------------------------------------------------------

def _apps(tmp_path, *specs):
    """(name, script) pairs; each app touches NAME.up first."""
    return [app(name, sh("touch %s/%s.up; %s" % (tmp_path, name, script)))
            for name, script in specs]


def _outcome(pod, names):
    return {n: (pod.status(n)["reason"], pod.status(n)["exitCode"]) for n in names}


def test_on_any_failure_is_the_default_and_takes_the_first_failure(tmp_path):
    pod = Pod(tmp_path, _apps(tmp_path, ("ok", "exit 0"), ("bad", "sleep 0.2; exit 5"),
                              ("later", "sleep 0.4; exit 6"), ("long", "exec sleep 100")))
    assert run(pod)[0] == 5
    assert _outcome(pod, ["ok", "bad", "later", "long"]) == {
        "ok": ("Completed", 0), "bad": ("Error", 5), "later": ("Stopped", 143),
        "long": ("Stopped", 143)}


def test_on_any_failure_a_signal_counts_as_128_plus_n(tmp_path):
    pod = Pod(tmp_path, _apps(tmp_path, ("bad", "kill -USR1 $$"), ("long", "exec sleep 100")),
              annotations={"stage1/exit-policy": "onAnyFailure"})
    assert run(pod)[0] == 128 + 10
    st = pod.status("bad")
    assert (st["reason"], st["signal"], st["exitCode"]) == ("Signaled", "SIGUSR1", 138)


def test_on_any_failure_without_failures_waits_for_every_app(tmp_path):
    pod = Pod(tmp_path, _apps(tmp_path, ("quick", "exit 0"), ("slow", "sleep 0.3; exit 0")))
    assert run(pod)[0] == 0
    assert _outcome(pod, ["quick", "slow"]) == {"quick": ("Completed", 0),
                                                "slow": ("Completed", 0)}


@pytest.mark.parametrize("code", [0, 7])
def test_on_any_ends_with_the_first_app_to_end(tmp_path, code):
    pod = Pod(tmp_path, _apps(tmp_path, ("first", "sleep 0.1; exit %d" % code),
                              ("long", "exec sleep 100"), ("long2", "exec sleep 100")),
              annotations={"stage1/exit-policy": "onAny"})
    assert run(pod)[0] == code
    assert _outcome(pod, ["first", "long", "long2"]) == {
        "first": ("Completed" if code == 0 else "Error", code), "long": ("Stopped", 143),
        "long2": ("Stopped", 143)}


def test_until_all_runs_every_app_to_its_end_and_takes_the_first_failure(tmp_path):
    pod = Pod(tmp_path, _apps(tmp_path, ("ok", "exit 0"), ("four", "sleep 0.1; exit 4"),
                              ("six", "sleep 0.4; exit 6"), ("late", "sleep 0.5; exit 0")),
              annotations={"stage1/exit-policy": "untilAll"})
    assert run(pod)[0] == 4
    assert _outcome(pod, ["ok", "four", "six", "late"]) == {
        "ok": ("Completed", 0), "four": ("Error", 4), "six": ("Error", 6),
        "late": ("Completed", 0)}


def test_until_all_without_failures_is_0(tmp_path):
    pod = Pod(tmp_path, _apps(tmp_path, ("a", "exit 0"), ("b", "sleep 0.1")),
              annotations={"stage1/exit-policy": "untilAll"})
    assert run(pod)[0] == 0


def test_until_all_counts_an_exec_failure(tmp_path):
    pod = Pod(tmp_path, [app("missing", ["no-such-program"]),
                         app("b", sh("sleep 0.1; touch %s/b-done" % tmp_path))],
              annotations={"stage1/exit-policy": "untilAll"})
    assert run(pod)[0] == 127
    assert os.path.exists(pod.file("b-done"))
    assert pod.status("b")["reason"] == "Completed"


def test_until_all_counts_an_exec_failure_of_the_last_app(tmp_path):
    pod = Pod(tmp_path, [app("b", sh("sleep 0.1; touch %s/b-done" % tmp_path)),
                         app("missing", ["no-such-program"])],
              annotations={"stage1/exit-policy": "untilAll"})
    assert run(pod)[0] == 127
    assert os.path.exists(pod.file("b-done"))
    assert pod.status("b")["reason"] == "Completed"


@pytest.mark.parametrize("pid1", [False, True])
def test_the_pod_ends_when_its_apps_end(tmp_path, pid1):
    pod = Pod(tmp_path, [app("a", sh("exit 3"))])
    assert run(pod, pid1=pid1)[0] == 3
    st = pod.pod_status()
    assert (st["state"], st["exitCode"]) == ("exited", 3)
