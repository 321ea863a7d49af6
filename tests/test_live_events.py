"""Pod events: every transition as one JSON line with a timestamp, in
POD/events.jsonl and through `stage1 events [--follow]`."""
import json
import subprocess

from podhelpers import RFC3339_UTC
from livehelpers import STAGE1, app, notify_code, py, stage1
from livehelpers import live, liveroot  # noqa: F401  (fixtures)

SLEEP = ["/bin/sleep", "3600"]


def _follower(pod):
    return subprocess.Popen([STAGE1, "events", pod.path, "--follow"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)


def _reap(proc):
    if proc.poll() is None:
        proc.kill()
    proc.wait()


def test_every_kind_of_event_with_its_fields(live):
    pod = live([app("a", SLEEP),
                app("n", py(notify_code("READY=1")), annotations={"stage1/notify": "systemd"}),
                app("r", ["sh", "-c", "exit 4"], annotations={"stage1/restart-policy": "always"})],
               {"stage1/restart-backoff": "0.01", "stage1/exit-policy": "untilAll"})
    pod.wait_event("pod-ready")
    pod.wait_event("restarting", "r", count=2)
    assert pod.request({"op": "add", "app": "b", "runtimeApp": app("b", SLEEP)})["ok"]
    assert pod.request({"op": "rm", "app": "r"})["ok"]
    assert stage1("stop", pod.path).returncode == 0
    pod.wait_end()
    events = pod.events()
    for e in events:
        assert RFC3339_UTC.match(e["time"]), e
    times = [e["time"] for e in events]
    assert times == sorted(times)
    kinds = {e["event"] for e in events}
    assert kinds == {"started", "ready", "exited", "restarting", "stopping", "added", "removed",
                     "pod-ready", "pod-exited"}
    by = {}
    for e in events:
        by.setdefault((e["event"], e.get("app")), e)
    assert by[("started", "a")]["pid"] > 1
    assert by[("exited", "r")]["exitCode"] == 4 and by[("exited", "r")]["reason"] == "Error"
    assert by[("restarting", "r")]["restartCount"] == 1 and by[("restarting", "r")]["delay"] > 0
    assert by[("stopping", "a")]["signal"] == "SIGTERM"
    assert by[("exited", "a")]["signal"] == "SIGTERM" and by[("exited", "a")]["reason"] == "Stopped"
    assert events[-1] == {"event": "pod-exited", "exitCode": 0, "time": events[-1]["time"]}


def test_stage1_events_prints_the_log(live):
    pod = live([app("a", ["true"])])
    assert pod.wait_end() == 0
    r = stage1("events", pod.path)
    assert r.returncode == 0 and r.stdout == pod.pod.read("events.jsonl")
    assert [json.loads(l)["event"] for l in r.stdout.splitlines()] == [
        "started", "ready", "pod-ready", "exited", "pod-exited"]


def test_stage1_events_of_a_pod_that_never_ran(liveroot):
    r = stage1("events", liveroot)
    assert r.returncode == 254 and "no events in %s" % liveroot in r.stderr


def test_follow_gets_lines_live_and_ends_when_the_pod_ends(live):
    pod = live([app("a", SLEEP)])
    pod.wait_event("pod-ready")
    follower = _follower(pod)
    try:
        seen = [json.loads(follower.stdout.readline())["event"] for _ in range(3)]
        assert seen == ["started", "ready", "pod-ready"]
        assert pod.request({"op": "restart", "app": "a"})["ok"]
        seen = [json.loads(follower.stdout.readline())["event"] for _ in range(4)]
        assert seen == ["stopping", "exited", "started", "ready"]
        pod.run.signal(15)
        rest = follower.stdout.read()
        assert follower.wait(10) == 0
    finally:
        _reap(follower)
    assert json.loads(rest.splitlines()[-1])["event"] == "pod-exited"


def test_follow_misses_nothing_and_repeats_nothing_while_events_pour_in(live):
    # An app restarting as fast as it can: events are written while the
    # follower subscribes and reads the file.
    pod = live([app("r", ["true"], annotations={"stage1/restart-policy": "always"}),
                app("a", SLEEP)],
               {"stage1/restart-backoff": "0.001", "stage1/restart-backoff-max": "0.001"})
    pod.wait_event("restarting", "r", count=20)
    followers = [_follower(pod) for _ in range(5)]
    try:
        pod.wait_event("restarting", "r", count=200)
        pod.run.signal(15)
        outs = [f.communicate(timeout=10)[0] for f in followers]
        assert [f.returncode for f in followers] == [0] * 5
    finally:
        for f in followers:
            _reap(f)
    assert pod.wait_end() == 0
    log = pod.pod.read("events.jsonl").encode()
    assert outs == [log] * 5


def test_follow_of_an_ended_pod_prints_the_log_and_ends(live):
    pod = live([app("a", ["true"])])
    assert pod.wait_end() == 0
    r = stage1("events", pod.path, "--follow")
    assert r.returncode == 0 and r.stdout == pod.pod.read("events.jsonl")


def test_follow_of_a_pod_that_is_not_running_fails(liveroot):
    r = stage1("events", liveroot, "--follow")
    assert r.returncode == 254 and "unable to reach the pod's init" in r.stderr


def test_events_log_is_appended_by_each_run_of_a_pod(live):
    pod = live([app("a", ["true"])])
    assert pod.wait_end() == 0
    first = pod.pod.read("events.jsonl")
    again = live([app("a", ["true"])], name="pod")
    assert again.wait_end() == 0
    text = again.pod.read("events.jsonl")
    assert text.startswith(first) and text.count("pod-exited") == 2


def test_follow_says_so_when_the_stream_ends_before_the_pod(live):
    pod = live([app("a", SLEEP)])
    pod.wait_event("pod-ready")
    follower = _follower(pod)
    try:
        assert json.loads(follower.stdout.readline())["event"] == "started"
        pod.run.kill()          # SIGKILL: no pod-exited
        out, err = follower.communicate(timeout=10)
    finally:
        _reap(follower)
    assert follower.returncode == 1
    assert b"the stream ended before the pod did" in err
