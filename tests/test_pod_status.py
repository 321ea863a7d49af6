"""Status files: <status dir>/<app> ("<code>\\n", rkt's) once the app
ended, <status dir>/<app>.json always, POD/pod-status.json; their contents
after every kind of ending, while running, and when they cannot be written."""
import os
import signal
from datetime import datetime

import pytest

from podhelpers import RFC3339_UTC, Pod, Run, app, children, run, sh, wait_for

APP_FIELDS = {"name", "state", "pid", "exitCode", "signal", "reason", "message", "startedAt",
              "finishedAt", "restartCount", "cpuUserSeconds", "cpuSystemSeconds", "maxRssKiB"}


def _time(text):
    assert RFC3339_UTC.match(text), text
    return datetime.strptime(text.rstrip("Z")[:26], "%Y-%m-%dT%H:%M:%S.%f")


def _check_times(st):
    assert _time(st["startedAt"]) <= _time(st["finishedAt"])


ENDINGS = [
    # name, exec, annotations/fields, expected (exitCode, signal, reason, message), ran
    ("completed", sh("exit 0"), {}, (0, None, "Completed", None), True),
    ("error", sh("exit 42"), {}, (42, None, "Error", None), True),
    ("signaled", sh("kill -SEGV $$"), {}, (139, "SIGSEGV", "Signaled", None), True),
    ("exec-failed", ["/no/such/program"], {},
     (127, None, "ExecFailed", "unable to exec /no/such/program: No such file or directory"),
     False),
    pytest.param(
        "pre-start-failed", ["true"],
        {"eventHandlers": [{"name": "pre-start", "exec": ["sh", "-c", "exit 9"]}]},
        (9, None, "PreStartFailed", "pre-start handler exited with 9"), False,
        id="pre-start-failed"),
]


@pytest.mark.parametrize("name, exec_, fields, expected, ran", ENDINGS,
                         ids=[e[0] if isinstance(e, tuple) else e.id for e in ENDINGS])
def test_status_after_an_ending(tmp_path, name, exec_, fields, expected, ran):
    pod = Pod(tmp_path, [app(name, exec_, **fields)])
    assert run(pod)[0] == expected[0]
    st = pod.status(name)
    assert APP_FIELDS <= set(st)
    assert st["name"] == name and st["state"] == "exited" and st["restartCount"] == 0
    assert (st["exitCode"], st["signal"], st["reason"], st["message"]) == expected
    assert pod.raw_code(name) == "%d\n" % expected[0]
    _check_times(st)
    if ran:
        assert isinstance(st["pid"], int) and st["pid"] > 0
        assert isinstance(st["cpuUserSeconds"], float)
        assert isinstance(st["cpuSystemSeconds"], float)
        assert isinstance(st["maxRssKiB"], int) and st["maxRssKiB"] > 0
    else:
        assert st["pid"] is None


@pytest.mark.parametrize("trap, expected", [
    ("", (143, "SIGTERM", "Stopped")),
    ("trap 'exit 0' TERM;", (0, None, "Stopped")),
    ("trap 'exit 3' TERM;", (3, None, "Error")),
    ("trap '' TERM;", (137, "SIGKILL", "Killed")),
])
def test_status_after_a_stop(tmp_path, trap, expected):
    script = "%s touch %s/up; while :; do sleep 0.01; done" % (trap, tmp_path)
    pod = Pod(tmp_path, [app("a", sh(script))], annotations={"stage1/stop-timeout": "0.3"})
    with Run(pod) as r:
        pod.wait_file("up")
        r.signal(signal.SIGTERM)
        r.wait()
    st = pod.status("a")
    assert (st["exitCode"], st["signal"], st["reason"]) == expected
    assert st["state"] == "exited"
    assert pod.raw_code("a") == "%d\n" % expected[0]
    _check_times(st)


def test_status_while_running_and_after(tmp_path):
    pod = Pod(tmp_path, [app("a", sh("touch %s/up; read line < %s/fifo; exit 4"
                                     % (tmp_path, tmp_path)))])
    os.mkfifo(pod.file("fifo"))
    with Run(pod) as r:
        pod.wait_file("up")
        st = pod.wait_state("a", "running")
        assert st["pid"] == [p for p in children(r.init_pid)][0]
        assert (st["exitCode"], st["signal"], st["reason"], st["finishedAt"]) == \
            (None, None, None, None)
        assert RFC3339_UTC.match(st["startedAt"])
        assert pod.code("a") is None      # rkt's file appears only once the app ended
        ps = pod.pod_status()
        assert (ps["state"], ps["exitCode"], ps["finishedAt"]) == ("running", None, None)
        assert RFC3339_UTC.match(ps["startedAt"])
        with open(pod.file("fifo"), "w") as f:
            f.write("go\n")
        assert r.wait() == 4
    ps = pod.pod_status()
    assert (ps["state"], ps["exitCode"]) == ("exited", 4)
    _check_times(ps)
    assert _time(ps["finishedAt"]) >= _time(pod.status("a")["finishedAt"])
    # every file was renamed into place: no temporary left behind
    assert sorted(os.listdir(pod.status_dir)) == ["a", "a.json"]
    assert not [n for n in os.listdir(pod.path) if ".tmp" in n]


def test_pod_status_goes_through_stopping(tmp_path):
    pod = Pod(tmp_path, [app("a", sh("trap '' TERM; touch %s/up; sleep 100" % tmp_path))],
              annotations={"stage1/stop-timeout": "0.5"})
    with Run(pod) as r:
        pod.wait_file("up")
        r.signal(signal.SIGTERM)
        ps = wait_for(lambda: (pod.pod_status() or {}).get("state") == "stopping"
                      and pod.pod_status(), what="pod stopping")
        assert ps["exitCode"] is None
        assert r.wait() == 0
    assert pod.pod_status()["state"] == "exited"


def test_restart_count_and_last_run_in_the_status(tmp_path):
    count = tmp_path / "count"
    script = "n=$(cat {c} 2>/dev/null || echo 0); n=$((n+1)); echo $n > {c}; exit $((n-1))" \
        .format(c=count)
    pod = Pod(tmp_path, [app("a", sh(script), annotations={"stage1/restart-policy": "always"})],
              annotations={"stage1/restart-backoff": "0.02", "stage1/exit-policy": "onAny"})
    with Run(pod) as r:
        def settled():
            # The status, the app's count and rkt's code file of one backoff:
            # the next run may begin (and bump the count) between two reads.
            before = pod.status("a") or {}
            if before.get("restartCount", 0) < 2 or before.get("state") != "backoff":
                return None
            runs = pod.read("count").strip()
            if not runs.isdigit():          # the next run is writing it
                return None
            seen = (before, int(runs), pod.code("a"))
            return seen if pod.status("a") == before else None
        st, runs, code = wait_for(settled, what="two restarts, seen in one backoff")
        assert st["exitCode"] == runs - 1 == code
        r.signal(signal.SIGTERM)
        r.wait()


def test_an_unwritable_status_dir_is_reported_and_the_pod_runs(tmp_path):
    pod = Pod(tmp_path, [app("a", sh("echo ran; exit 3")), app("b", sh("sleep 0.1"))])
    with open(pod.file("rkt"), "w") as f:
        f.write("not a directory")
    code, out, err = run(pod)
    assert (code, out) == (3, "ran\n")
    said = ("a exited with 3 (restart=never)",
            "stopping the pod: a exited with 3 (exit policy onAnyFailure)")
    lines = [l for l in err.splitlines() if not l.endswith(said)]
    assert len(err.splitlines()) == len(lines) + 2      # what happened, said once each
    assert lines and all("unable to " in l for l in lines)
    assert "unable to write status %s/rkt/status: Not a directory" % tmp_path in lines[0]
    # each file is reported once, however often it is written
    assert len(set(lines)) == len(lines)
    assert pod.pod_status()["exitCode"] == 3


def test_an_unwritable_pod_status_is_reported_once_and_the_pod_runs(tmp_path):
    pod = Pod(tmp_path, [app("a", sh("sleep 0.1; echo ran"))])
    os.mkdir(pod.file("pod-status.json"))
    code, out, err = run(pod)
    assert (code, out) == (0, "ran\n")
    assert len(err.splitlines()) == 1 and "pod-status.json" in err
    assert pod.raw_code("a") == "0\n"


def test_a_second_run_replaces_the_status(tmp_path):
    pod = Pod(tmp_path, [app("a", sh("exit 1"))])
    assert run(pod)[0] == 1
    pod.manifest["apps"][0]["app"]["exec"] = ["true"]
    pod.write()
    assert run(pod)[0] == 0
    assert pod.raw_code("a") == "0\n"
    assert pod.status("a")["reason"] == "Completed"
    assert pod.pod_status()["exitCode"] == 0
