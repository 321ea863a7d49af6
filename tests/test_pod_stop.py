"""Stopping the pod: SIGTERM or SIGINT to the init, `stage1 stop` (by pod
directory, rkt's UUID form, --force).  Every running app gets its stop
signal (app annotation stage1/stop-signal); after the grace (pod annotation
stage1/stop-timeout or --grace) everything left, orphans included, gets
SIGKILL; then post-stop, the final statuses, and the init's exit."""
import os
import signal
import subprocess

import pytest

from podhelpers import Pod, Run, alive, app, sh, stage1, wait_for, descendants

UUID = "0c2a6f3e-8d1b-4b6a-9f27-5e1d3c4b2a10"


def sleeper(tmp_path, name, trap=""):
    return app(name, sh("%s touch %s/%s.up; sleep 100 & wait" % (trap, tmp_path, name)))


def _up(pod, *names):
    for name in names:
        pod.wait_file("%s.up" % name)
        pod.wait_state(name, "running")


@pytest.mark.parametrize("pid1", [False, True])
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_stop_signal_to_the_init_stops_every_app(tmp_path, pid1, sig):
    pod = Pod(tmp_path, [app("a", ["sleep", "100"]), app("b", ["sleep", "100"]),
                         app("done", ["true"])],
              annotations={"stage1/exit-policy": "untilAll"})
    with Run(pod, pid1=pid1) as r:
        pod.wait_state("a", "running")
        pod.wait_state("b", "running")
        pod.wait_state("done", "exited")
        r.signal(sig)
        assert r.wait() == 0
    for name in ("a", "b"):
        st = pod.status(name)
        assert (st["state"], st["reason"], st["signal"], st["exitCode"]) == \
            ("exited", "Stopped", "SIGTERM", 143)
        assert pod.raw_code(name) == "143\n"
    assert pod.status("done")["reason"] == "Completed"
    assert pod.pod_status()["state"] == "exited"


@pytest.mark.parametrize("spelling", ["SIGUSR1", "USR1", "10", "usr1"])
def test_stop_signal_annotation(tmp_path, spelling):
    # the app ignores SIGTERM: only its own stop signal ends it, well within
    # the 10 s default grace
    script = "sleep 100 & trap '' TERM; trap 'kill $!; exit 0' USR1; touch %s/a.up; wait" \
        % tmp_path
    pod = Pod(tmp_path, [app("a", sh(script), annotations={"stage1/stop-signal": spelling}),
                         app("b", ["sleep", "100"])])
    with Run(pod) as r:
        _up(pod, "a")
        pod.wait_state("b", "running")
        r.signal(signal.SIGTERM)
        assert r.wait(5) == 0
    st = pod.status("a")
    assert (st["reason"], st["exitCode"], st["signal"]) == ("Stopped", 0, None)
    assert pod.status("b")["signal"] == "SIGTERM"


def test_an_app_that_ignores_its_stop_signal_is_killed_after_the_grace(tmp_path):
    pod = Pod(tmp_path, [sleeper(tmp_path, "stubborn", trap="trap '' TERM;"),
                         app("polite", ["sleep", "100"])],
              annotations={"stage1/stop-timeout": "2"})
    with Run(pod) as r:
        _up(pod, "stubborn")
        pod.wait_state("polite", "running")
        stubborn = r.host_pid(pod.status("stubborn")["pid"])
        r.signal(signal.SIGTERM)
        # One turn writes the ended app's file first, the pod's last: the
        # three are seen together once that turn is done (within the grace).
        wait_for(lambda: (pod.state("polite"), pod.state("stubborn"),
                          pod.pod_status()["state"]) == ("exited", "stopping", "stopping"),
                 what="polite stopped, stubborn and the pod stopping")
        assert r.wait() == 0
        assert not alive(stubborn)
    st = pod.status("stubborn")
    assert (st["reason"], st["signal"], st["exitCode"]) == ("Killed", "SIGKILL", 137)
    assert pod.status("polite")["reason"] == "Stopped"


@pytest.mark.parametrize("pid1", [False, True])
def test_orphans_get_sigterm_then_sigkill_after_the_grace(tmp_path, pid1):
    # the app leaves a daemon behind that ignores SIGTERM, and ends
    daemon = "sh -c 'trap \"\" TERM; echo $$ > %s/daemon.pid; exec sleep 100' &" % tmp_path
    polite = "sh -c 'echo $$ > %s/polite.pid; exec sleep 100' &" % tmp_path
    pod = Pod(tmp_path, [app("a", sh("%s %s wait_for() { [ -s %s/$1.pid ]; }; "
                                     "until wait_for daemon && wait_for polite; do :; done"
                                     % (daemon, polite, tmp_path)))],
              annotations={"stage1/stop-timeout": "0.3"})
    pids = []
    try:
        with Run(pod, pid1=pid1) as r:
            pod.wait_state("a", "exited")
            for name in ("daemon", "polite"):
                ns_pid = int(pod.wait_file(name + ".pid"))
                pids.append(r.host_pid(ns_pid) or -1)
            # the app ended well; the pod waits for its leftovers
            assert r.wait() == 0
            assert pod.pod_status()["exitCode"] == 0
        assert not any(alive(p) for p in pids)
    finally:
        for p in pids:
            if p > 0 and alive(p):
                os.kill(p, signal.SIGKILL)


@pytest.mark.parametrize("pid1", [False, True])
def test_stage1_stop_by_pod_directory(tmp_path, pid1):
    pod = Pod(tmp_path, [app("a", ["sleep", "100"])])
    with Run(pod, pid1=pid1) as r:
        pod.wait_state("a", "running")
        p = stage1("stop", pod.path)
        assert (p.returncode, p.stdout, p.stderr) == (0, "", "")
        assert r.wait() == 0
    assert pod.status("a")["reason"] == "Stopped"


def test_stage1_stop_by_uuid_in_the_pod_directory(tmp_path):
    pod = Pod(tmp_path / UUID, [app("a", ["sleep", "100"])])
    with Run(pod) as r:
        pod.wait_state("a", "running")
        p = stage1("stop", UUID, cwd=pod.path)
        assert p.returncode == 0, p.stderr
        assert r.wait() == 0
    assert pod.status("a")["reason"] == "Stopped"


@pytest.mark.parametrize("pid1", [False, True])
@pytest.mark.parametrize("flag", ["--force", "-f"])
def test_stage1_stop_force_kills_the_whole_pod_at_once(tmp_path, pid1, flag):
    stubborn = "trap '' TERM; sh -c 'trap \"\" TERM; exec sleep 100' & touch %s/up; wait" \
        % tmp_path
    pod = Pod(tmp_path, [app("a", sh(stubborn), annotations={
        "stage1/restart-policy": "always"})], annotations={"stage1/stop-timeout": "100"})
    with Run(pod, pid1=pid1) as r:
        pod.wait_file("up")
        everyone = [r.init_pid] + descendants(r.init_pid)
        assert len(everyone) >= 3
        p = stage1("stop", flag, pod.path)
        assert p.returncode == 0, p.stderr
        code = r.wait(5)
        assert code == -9 or pid1 and code != 0
        wait_for(lambda: not any(alive(pid) for pid in everyone), 5, "every pod process dead")


def test_stop_of_a_pod_that_ended(tmp_path):
    pod = Pod(tmp_path, [app("a", ["true"])])
    with Run(pod) as r:
        r.wait()
    p = stage1("stop", pod.path)
    assert p.returncode == 254
    assert p.stderr.startswith("stage1: ") and "is not running" in p.stderr


def test_stop_of_a_pod_that_never_ran(tmp_path):
    pod = Pod(tmp_path, [app("a", ["true"])])
    p = stage1("stop", pod.path)
    assert p.returncode == 254
    assert "no running init recorded in %s/pid" % tmp_path in p.stderr


def test_stop_never_signals_a_process_that_is_not_the_pods_init(tmp_path):
    # a stale pid file naming another process: a PID-1 pod writes 1, which
    # from the host is the host's init
    pod = Pod(tmp_path, [app("a", ["true"])])
    other = subprocess.Popen(["sleep", "100"])
    try:
        with open(pod.file("pid"), "w") as f:
            f.write("%d\n" % other.pid)
        for args in (["stop"], ["stop", "--force"], ["ps"]):
            p = stage1(*(args + [pod.path]))
            assert p.returncode == 254 and "is not running" in p.stderr
        assert other.poll() is None and alive(other.pid)
    finally:
        other.kill()
        other.wait()


def test_a_second_stop_signal_changes_nothing(tmp_path):
    pod = Pod(tmp_path, [sleeper(tmp_path, "a", trap="trap '' TERM;")],
              annotations={"stage1/stop-timeout": "0.3"})
    with Run(pod) as r:
        _up(pod, "a")
        r.signal(signal.SIGTERM)
        pod.wait_state("a", "stopping")
        r.signal(signal.SIGTERM)
        r.signal(signal.SIGINT)
        assert r.wait() == 0
    assert pod.status("a")["reason"] == "Killed"


def test_stopping_the_pod_with_apps_in_every_state(tmp_path):
    pod = Pod(tmp_path, [
        app("running", ["sleep", "100"]),
        app("done", ["true"]),
        app("backing-off", sh("exit 1"), annotations={"stage1/restart-policy": "on-failure"}),
        app("starting", ["true"], eventHandlers=[
            {"name": "pre-start", "exec": ["sleep", "100"]}])],
        annotations={"stage1/exit-policy": "untilAll", "stage1/restart-backoff": "100"})
    with Run(pod) as r:
        pod.wait_state("running", "running")
        pod.wait_state("done", "exited")
        pod.wait_state("backing-off", "backoff")
        r.signal(signal.SIGTERM)
        assert r.wait(5) == 1
    states = {n: (pod.status(n)["state"], pod.status(n)["reason"])
              for n in ("running", "done", "backing-off", "starting")}
    assert states == {"running": ("exited", "Stopped"), "done": ("exited", "Completed"),
                      "backing-off": ("exited", "Error"), "starting": ("exited", "Stopped")}
