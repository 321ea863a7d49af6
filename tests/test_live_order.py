"""Start and stop order: `stage1/after` chains, init apps, bad order
annotations, reverse stop order with each app's own grace."""
import os

from livehelpers import Pod, app, notify_code, py, run_to_end, sh, stage1, wait_for
from livehelpers import live, liveroot  # noqa: F401  (fixtures)

SLEEP = ["/bin/sleep", "3600"]


def _ready_later(name, after=None, **annotations):
    """A notify app that takes a moment before READY=1."""
    annotations["stage1/notify"] = "systemd"
    if after:
        annotations["stage1/after"] = after
    code = "import time; time.sleep(0.05)\n" + notify_code("READY=1")
    return app(name, py(code), annotations=annotations)


def _index(events, kind, name):
    for i, e in enumerate(events):
        if e["event"] == kind and e.get("app") == name:
            return i
    raise AssertionError("no %s event of %s in %r" % (kind, name, events))


def _before(events, first, then):
    """first=(kind, app) is in the log before then=(kind, app), and not later in time."""
    i, j = _index(events, *first), _index(events, *then)
    assert i < j and events[i]["time"] <= events[j]["time"], (first, then)


# -- stage1/after ------------------------------------------------------------------

def test_a_chain_starts_each_app_once_the_one_before_is_ready(live):
    # Listed backwards, so manifest order cannot be what orders them.
    pod = live([_ready_later("c", after="b"), _ready_later("b", after="a"), _ready_later("a")])
    pod.wait_event("pod-ready")
    ev = pod.events()
    _before(ev, ("ready", "a"), ("started", "b"))
    _before(ev, ("ready", "b"), ("started", "c"))
    _before(ev, ("ready", "c"), ("pod-ready", None))
    assert [k for k in pod.kinds() if k[0] == "started"] == [
        ("started", "a"), ("started", "b"), ("started", "c")]


def test_apps_without_notification_are_ready_once_started(live):
    pod = live([app("b", SLEEP, annotations={"stage1/after": "a"}), app("a", SLEEP)])
    pod.wait_event("pod-ready")
    assert pod.kinds() == [("started", "a"), ("ready", "a"), ("started", "b"), ("ready", "b"),
                           ("pod-ready", None)]


def test_an_app_after_two_waits_for_both(live, liveroot):
    go = os.path.join(liveroot, "go")
    slow = app("slow", py(notify_code(("wait", go), "READY=1")),
               annotations={"stage1/notify": "systemd"})
    pod = live([app("d", SLEEP, annotations={"stage1/after": "fast, slow"}),
                _ready_later("fast"), slow])
    pod.wait_event("ready", "fast")
    assert pod.apps()["d"][0] == "waiting"
    open(go, "w").close()
    pod.wait_event("pod-ready")
    _before(pod.events(), ("ready", "slow"), ("started", "d"))


def test_unrelated_apps_start_together(live):
    pod = live([_ready_later("x"), _ready_later("y")])
    pod.wait_event("pod-ready")
    ev = pod.events()
    assert _index(ev, "started", "y") < _index(ev, "ready", "x")


def test_an_app_whose_dependency_ends_unready_never_starts(live):
    pod = live([app("a", ["true"], annotations={"stage1/notify": "systemd"}),
                app("b", SLEEP, annotations={"stage1/after": "a"})])
    assert pod.wait_end() == 0
    assert ("started", "b") not in pod.kinds()
    assert pod.status("b")["state"] == "waiting"


def test_unknown_name_in_after_is_refused_before_anything_starts(liveroot):
    marker = os.path.join(liveroot, "ran")
    pod = Pod(os.path.join(liveroot, "pod"), [
        app("a", sh("touch %s" % marker)),
        app("b", SLEEP, annotations={"stage1/after": "a,zz"})])
    code, out, err = run_to_end(pod)
    assert code == 254
    assert err.strip().endswith(
        """pod: apps[1].annotations["stage1/after"]: no app named 'zz'"""), err
    assert not os.path.exists(marker) and not os.path.exists(pod.file("events.jsonl"))


def test_a_cycle_in_after_is_refused_before_anything_starts(liveroot):
    marker = os.path.join(liveroot, "ran")
    pod = Pod(os.path.join(liveroot, "pod"), [
        app("x", sh("touch %s" % marker)),
        app("a", SLEEP, annotations={"stage1/after": "c"}),
        app("b", SLEEP, annotations={"stage1/after": "a"}),
        app("c", SLEEP, annotations={"stage1/after": "b"})])
    code, out, err = run_to_end(pod)
    assert code == 254 and "stage1/after makes a cycle: a -> c -> b -> a" in err, err
    assert not os.path.exists(marker) and not os.path.exists(pod.file("events.jsonl"))


def test_an_app_after_itself_is_a_cycle(liveroot):
    pod = Pod(os.path.join(liveroot, "pod"), [app("a", SLEEP, annotations={"stage1/after": "a"})])
    code, out, err = run_to_end(pod)
    assert code == 254 and "stage1/after makes a cycle: a -> a" in err, err


# -- init apps -----------------------------------------------------------------------

def test_init_apps_run_one_by_one_in_manifest_order_before_the_others(live, liveroot):
    log = os.path.join(liveroot, "log")

    def step(name):
        return sh("echo %s start >> %s; sleep 0.05; echo %s end >> %s" % (name, log, name, log))
    init = {"stage1/init": "true"}
    pod = live([app("m", sh("echo m >> %s; exec sleep 3600" % log)),
                app("i1", step("i1"), annotations=init),
                app("n", sh("echo n >> %s; exec sleep 3600" % log)),
                app("i2", step("i2"), annotations=init)])
    pod.wait_event("pod-ready")
    wait_for(lambda: open(log).read().count("\n") == 6, what="m and n")   # ready once started
    with open(log) as f:
        lines = f.read().split("\n")
    assert lines[:4] == ["i1 start", "i1 end", "i2 start", "i2 end"]
    assert sorted(lines[4:6]) == ["m", "n"]
    ev = pod.events()
    _before(ev, ("exited", "i1"), ("started", "i2"))
    _before(ev, ("exited", "i2"), ("started", "m"))
    _before(ev, ("exited", "i2"), ("started", "n"))
    assert pod.wait_status("i1", state="exited")["exitCode"] == 0


def test_a_failed_init_app_fails_the_pod_and_nothing_else_starts(live):
    init = {"stage1/init": "true"}
    pod = live([app("m", SLEEP), app("i1", ["true"], annotations=init),
                app("i2", sh("exit 7"), annotations=init),
                app("i3", ["true"], annotations=init)])
    assert pod.wait_end() == 7
    kinds = pod.kinds()
    assert [k for k in kinds if k[0] == "started"] == [("started", "i1"), ("started", "i2")]
    assert (pod.status("i2")["exitCode"], pod.pod.code("i2")) == (7, 7)
    assert pod.status("m")["state"] == pod.status("i3")["state"] == "waiting"
    assert kinds[-1] == ("pod-exited", None) and pod.events()[-1]["exitCode"] == 7
    assert ("pod-ready", None) not in kinds


def test_an_init_app_that_cannot_exec_fails_the_pod(live):
    pod = live([app("m", SLEEP),
                app("i", ["/nonexistent/setup"], annotations={"stage1/init": "true"})])
    assert pod.wait_end() == 127
    assert ("started", "m") not in pod.kinds()


# -- stop order ------------------------------------------------------------------------

def _recorder(name, log, ignore=False, **annotations):
    """An app that writes `<name> TERM` to log on SIGTERM, then exits (or
    goes on, with ignore)."""
    on_term = "echo %s TERM >> %s" % (name, log) + ("" if ignore else "; exit 0")
    script = ("trap '%s' TERM; echo %s up >> %s; while :; do sleep 3600 & wait; done"
              % (on_term, name, log))
    return app(name, sh(script), annotations=annotations)


def _all_up(log, names):
    """Wait until every recorder has set its trap; then its TERM lines, later."""
    def up():
        try:
            with open(log) as f:
                text = f.read()
        except FileNotFoundError:
            return False
        return all("%s up\n" % n in text for n in names)
    wait_for(up, what="the apps' traps")


def _terms(log):
    with open(log) as f:
        return [l for l in f.read().split("\n") if l.endswith(" TERM")]


def test_stop_goes_in_reverse_start_order(live, liveroot):
    log = os.path.join(liveroot, "log")
    pod = live([_recorder("c", log, **{"stage1/after": "b"}),
                _recorder("a", log),
                _recorder("b", log, **{"stage1/after": "a"})])
    _all_up(log, "abc")
    assert stage1("stop", pod.path).returncode == 0
    assert pod.wait_end() == 0
    assert _terms(log) == ["c TERM", "b TERM", "a TERM"]
    ev = pod.events()
    _before(ev, ("exited", "c"), ("stopping", "b"))
    _before(ev, ("exited", "b"), ("stopping", "a"))
    for name in "abc":
        assert pod.status(name)["reason"] == "Stopped"


def test_unrelated_apps_stop_together(live):
    pod = live([app("x", SLEEP), app("y", SLEEP)])
    pod.wait_event("pod-ready")
    pod.run.signal(15)
    assert pod.wait_end() == 0
    ev = pod.events()
    assert _index(ev, "stopping", "y") < _index(ev, "exited", "x")
    assert _index(ev, "stopping", "x") < _index(ev, "exited", "y")


def test_each_app_stops_with_its_own_grace(live, liveroot):
    # The pod's grace is long; c's own is short: the pod stops within the
    # test's deadline only if c is killed after its own grace.
    log = os.path.join(liveroot, "log")
    pod = live([_recorder("a", log),
                _recorder("c", log, ignore=True, **{"stage1/after": "a",
                                                    "stage1/stop-timeout": "0.2"})],
               None, "--grace", "60")
    _all_up(log, "ac")
    pod.run.signal(15)
    assert pod.wait_end(timeout=10) == 0
    assert pod.status("c")["reason"] == "Killed"
    assert pod.status("a")["reason"] == "Stopped"
    assert _terms(log) == ["c TERM", "a TERM"]
    _before(pod.events(), ("exited", "c"), ("stopping", "a"))


def test_a_long_chain_gets_every_grace_before_the_pod_gives_up(live, liveroot):
    """Every app of a chain ignoring SIGTERM gets its SIGTERM and its own
    grace in turn: the pod's deadline covers the whole chain."""
    log = os.path.join(liveroot, "log")
    grace = {"stage1/stop-timeout": "0.3"}
    pod = live([_recorder("a", log, ignore=True, **grace),
                _recorder("b", log, ignore=True, **dict(grace, **{"stage1/after": "a"})),
                _recorder("c", log, ignore=True, **dict(grace, **{"stage1/after": "b"})),
                _recorder("d", log, ignore=True, **dict(grace, **{"stage1/after": "c"}))],
               None, "--grace", "0.3")
    _all_up(log, "abcd")
    pod.run.signal(15)
    assert pod.wait_end() == 0
    assert _terms(log) == ["d TERM", "c TERM", "b TERM", "a TERM"]
    assert [pod.status(n)["reason"] for n in "abcd"] == ["Killed"] * 4


def test_app_stop_of_an_app_others_come_after_stops_only_it(live):
    # Order governs starting and the pod's stop; `app stop` is explicit.
    pod = live([app("a", SLEEP), app("b", SLEEP, annotations={"stage1/after": "a"})])
    pod.wait_event("pod-ready")
    assert pod.request({"op": "stop", "app": "a"})["state"] == "exited"
    assert pod.apps()["b"][0] == "running"
