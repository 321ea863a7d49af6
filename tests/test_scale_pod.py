"""A pod of 2000 apps, the real init as PID 1 of its own PID namespace
(issue 14): its status answer, about 650 KB, arrives whole and names
every app, running, with its pid; a SIGTERM stops them all, the init
exits 0 and every app's final status files are on disk when it has.

The counts of what each event costs are tests/test_scale_units.py; here
the real socket, the real reaping and the real files at that size.
"""
import json
import os
import signal

from livehelpers import app, wait_for
from livehelpers import live, liveroot  # noqa: F401  (fixtures)

N = 2000
SLEEP = ["/bin/sleep", "1000"]


def test_a_2000_app_pod_answers_status_whole_and_stops_with_every_status_written(live):
    pod = live([app("app%04d" % i, SLEEP) for i in range(N)], pid1=True)
    ready = os.path.join(pod.path, "rkt", "supervisor-status")
    wait_for(lambda: os.path.islink(ready) or not pod.run.alive(), timeout=120,
             what="2000 apps running")
    assert pod.run.alive(), pod.run.stderr()[-2000:]
    with pod.conn() as c:
        c.send_obj({"op": "status"})
        line = c.line(60)
    assert line.endswith(b"\n") and len(line) > 500000
    answer = json.loads(line)
    assert answer["ok"] and answer["ready"] and not answer["stopping"]
    assert [a["name"] for a in answer["apps"]] == ["app%04d" % i for i in range(N)]
    assert all(a["state"] == "running" and a["pid"] for a in answer["apps"])
    assert len({a["pid"] for a in answer["apps"]}) == N

    pod.run.signal(signal.SIGTERM)
    assert pod.run.wait(timeout=120) == 0
    status_dir = pod.pod.status_dir
    for i in range(N):
        name = "app%04d" % i
        with open(os.path.join(status_dir, name)) as f:
            assert f.read() == "143\n", name
        with open(os.path.join(status_dir, name + ".json")) as f:
            doc = json.load(f)
        assert (doc["state"], doc["reason"], doc["exitCode"]) == ("exited", "Stopped", 143), doc
    assert pod.pod.pod_status()["state"] == "exited"
