"""What one event costs the Supervisor, counted, not timed (issue 14).

The Supervisor runs in this process with fake apps: spawning returns the
next fake pid, kill(2) and wait4(2) are recorded and answered from a list
of "zombies", and the loop's batched work runs when the test says a turn
ends.  What is counted: how many apps a start pass, a stop pass and the
exit policy look at (`Supervisor.visits`), how many status files are
written (`StatusWriter.written`), how many app records are built, how
many waiters' predicates are asked.  Each test checks that an event that
concerns one app costs the same in a pod of 10 as in a pod of 1000, or
that a pod-wide event looks at each app once, so a walk of every app per
event comes back as a failure here, whatever the machine's speed.
"""
import itertools
import json
import os
import random

import pytest

from stage1.engine import native, spawn, status, supervisor
from stage1.engine.loop import Loop
from stage1.engine.supervisor import App, EXITED, RUNNING, STOPPING, WAITING, Supervisor

SIGTERM_STATUS = 15              # a wait status: killed by SIGTERM


class FakePod:
    """A Supervisor over n fake apps; `after` maps an app index to the
    indexes it comes after.  It patches spawn and the reaping calls for
    itself: one pod at a time."""

    def __init__(self, monkeypatch, tmp_path, n, policy="onAnyFailure", after=None,
                 restart="never", mutable=False):
        self.pids = itertools.count(1000)
        self.zombies = []            # (pid, wait status) not reaped yet
        self.kills = []              # (pid, signal) in the order sent
        self.children = set()
        monkeypatch.setattr(spawn, "start", self._spawn)
        monkeypatch.setattr(native, "spawn_each", self._spawn_each)   # a start pass's batch
        monkeypatch.setattr(native, "kill_many", self._kill)
        monkeypatch.setattr(native, "reap", self._reap)
        monkeypatch.setattr(native, "reap_pid", self._reap_pid)
        monkeypatch.setattr(native, "has_children", lambda: bool(self.children))
        self.loop = Loop()
        self.rfd, self.wfd = os.pipe()
        log = supervisor.Log(False)
        self.status = status.StatusWriter(str(tmp_path / "status"), log.warn)
        self.sup = Supervisor(self.loop, self.rfd, spawn.SignalState(0, 0), log, grace=10.0,
                              policy=policy, status=self.status, hook_launch=lambda a, argv: None)
        self.sup._pid1 = False
        self.sup.mutable = mutable
        monkeypatch.setattr(supervisor.init, "descendants", lambda pid: [])
        # What a walk of the apps would call once per app, counted.
        self.calls = dict.fromkeys(("over", "may_stop", "may_start", "ended"), 0)
        over, may_stop, may_start = Supervisor._over, Supervisor._may_stop, supervisor._may_start
        monkeypatch.setattr(Supervisor, "_over", lambda s, a: self._count("over", over, s, a))
        monkeypatch.setattr(Supervisor, "_may_stop",
                            lambda s, a: self._count("may_stop", may_stop, s, a))
        monkeypatch.setattr(supervisor, "_may_start",
                            lambda a, apps: self._count("may_start", may_start, a, apps))
        monkeypatch.setattr(App, "ended", property(lambda a: self._count(
            "ended", lambda: a.state in supervisor.ENDED and a.hook_pid is None)))
        after = after or {}
        self.apps = []
        for i in range(n):
            app = App("app%04d" % i, spawn.Launch(["sleep", "1000"], []), restart=restart,
                      after=["app%04d" % d for d in after.get(i, ())])
            self.apps.append(app)
            self.sup.add(app)

    def _count(self, what, call, *args):
        self.calls[what] += 1
        return call(*args)

    def close(self):
        os.close(self.rfd)
        os.close(self.wfd)

    # -- the fake system calls -------------------------------------------------

    def _spawn(self, launch, signals, **extra):
        pid = next(self.pids)
        self.children.add(pid)
        return pid

    def _spawn_each(self, requests):
        return [(self._spawn(None, None), 1.0) for _ in requests]

    def _kill(self, pids, sig):
        for pid in pids:
            self.kills.append((pid, sig))
        return len(pids)

    def _reap(self, limit=None):
        n = len(self.zombies) if limit is None else min(limit, len(self.zombies))
        taken, self.zombies = self.zombies[:n], self.zombies[n:]
        for pid, _ in taken:
            self.children.discard(pid)
        return [(pid, st, 0.01, 0.0, 1000) for pid, st in taken]

    def _reap_pid(self, pid):
        for i, (p, st) in enumerate(self.zombies):
            if p == pid:
                del self.zombies[i]
                self.children.discard(pid)
                return (pid, st, 0.01, 0.0, 1000)
        return None

    # -- driving it ----------------------------------------------------------------

    def die(self, *apps, status=SIGTERM_STATUS):
        """The apps' processes end; a SIGCHLD (naming the first) comes."""
        for app in apps:
            self.zombies.append((app.pid, status))
        self.sup._on_signals([(17, 1, apps[0].pid, False)], None)

    def turn(self):
        """The end of a loop turn: its batched work, once."""
        return [callback() for callback in self.loop.before_wait]

    def drain(self):
        """Turns until the batched work is done."""
        turns = 0
        while any(self.turn()):
            turns += 1
        return turns

    def costs(self):
        return dict(self.sup.visits, written=self.status.written, **self.calls)


def _delta(before, after):
    return {k: after[k] - before[k] for k in after}


@pytest.fixture
def fake(monkeypatch, tmp_path):
    made = []

    def make(n, **kw):
        pod = FakePod(monkeypatch, tmp_path / ("pod%d" % len(made)), n, **kw)
        made.append(pod)
        return pod
    yield make
    for pod in made:
        pod.close()


def check_indexes(sup):
    """Each index of the Supervisor is what a walk of every app finds."""
    apps = list(sup.apps.values())
    assert set(sup._unended) == {a for a in apps if not a.ended}
    assert set(sup._unready) == {a for a in apps if not (
        a.ready or (a.is_init and a.exit_code == 0 and a.state == EXITED))}
    assert set(sup._not_exited) == {a for a in apps if a.state != EXITED}
    assert set(sup._startable) == {a for a in apps if a.state == WAITING
                                   and not a.stop_requested and not a.is_init}
    for name, later in sup._later.items():
        assert later == [a for a in apps if name in a.after]


# -- starting ------------------------------------------------------------------------

@pytest.mark.parametrize("n", [10, 1000])
def test_starting_the_pod_looks_at_each_app_once(fake, n):
    pod = fake(n)
    pod.sup.start_all()
    assert all(a.state == RUNNING and a.ready for a in pod.apps)
    assert pod.sup.pod_ready
    assert pod.sup.visits["start"] == n and pod.calls["may_start"] == n
    check_indexes(pod.sup)


def test_a_chain_listed_backwards_starts_in_order_in_linear_passes(fake):
    n = 1000
    # app i comes after app i+1: the last one starts first, the first last.
    pod = fake(n, after={i: [i + 1] for i in range(n - 1)})
    pod.sup.start_all()
    assert all(a.state == RUNNING for a in pod.apps)
    started = sorted(pod.apps, key=lambda a: a.pid)
    assert started == list(reversed(pod.apps))
    assert pod.sup.visits["start"] <= 2 * n and pod.calls["may_start"] <= 2 * n
    check_indexes(pod.sup)


# -- one app's restart ---------------------------------------------------------------

def _restart_costs(pod, app, records):
    pod.sup.start_all()
    pod.drain()
    records.clear()
    before = pod.costs()
    kills, old = len(pod.kills), app.pid
    pod.sup.restart(app)
    pod.turn()
    pod.die(app)
    pod.drain()
    assert app.state == RUNNING and app.pid != old and app.restart_count == 0
    assert pod.kills[kills:] == [(old, 15)]
    return dict(_delta(before, pod.costs()), records=len(records))


def test_a_restart_costs_the_same_in_a_pod_of_10_and_of_1000(fake, monkeypatch):
    records = []
    real = status.app_record
    monkeypatch.setattr(status, "app_record", lambda app: records.append(app) or real(app))
    costs = {}
    for n in (10, 1000):     # one after the other: each pod patches the system calls
        pod = fake(n)
        costs[n] = _restart_costs(pod, pod.apps[n // 2], records)
    assert costs[10] == costs[1000]
    # stopping, then exited and running again: a file a turn and the exit
    # code once; the start pass looks at nothing, the stop sequence and the
    # policy do not run (the pod is not stopping).
    assert costs[1000]["written"] <= 3 and costs[1000]["records"] <= 2
    assert costs[1000]["stop"] == 0 and costs[1000]["policy"] == 0
    assert costs[1000]["start"] <= 1


def test_an_answer_waits_on_its_app_only(fake):
    n = 1000
    pod = fake(n)
    pod.sup.start_all()
    asked = [0] * n
    for i, app in enumerate(pod.apps):
        def predicate(i=i, app=app):
            asked[i] += 1
            return app.state == EXITED
        pod.sup.when(predicate, lambda: None, app)
    asked[:] = [0] * n
    pod.sup.event(pod.apps[7], "stop")
    pod.die(pod.apps[7])
    assert sum(asked) == asked[7] and asked[7] >= 1
    assert pod.apps[7] not in pod.sup.waiters


# -- the pod's stop ------------------------------------------------------------------

@pytest.mark.parametrize("n", [10, 1000])
def test_the_stop_looks_at_each_app_once_then_at_what_an_end_concerns(fake, n):
    pod = fake(n)
    pod.sup.start_all()
    pod.drain()
    before = pod.costs()
    pod.sup.shutdown()
    assert pod.sup.visits["stop"] - before["stop"] == n
    assert all(a.state == STOPPING for a in pod.apps)
    pod.zombies.extend((a.pid, SIGTERM_STATUS) for a in pod.apps)
    pod.sup._on_signals([(17, 1, pod.apps[0].pid, False)], None)
    turns = pod.drain()
    assert pod.sup.done and pod.sup.exit_code == 0
    after = pod.costs()
    assert after["stop"] - before["stop"] == n      # no app comes after another
    assert after["policy"] == before["policy"] and after["over"] == before["over"]
    assert after["may_stop"] - before["may_stop"] == n
    assert after["ended"] - before["ended"] <= 3 * n   # each app's own ends, not everyone's
    # Slices: 64 ends reaped and their files written a turn, so the last
    # slice is all that is left when the last app is reaped; and no
    # `stopping` is written for an app already reaped.
    assert turns >= n // supervisor.REAP_BATCH - 1
    assert after["written"] - before["written"] == 2 * n   # `<app>` and `<app>.json`, once
    check_indexes(pod.sup)


def test_a_chain_stops_backwards_each_end_looking_at_one_app(fake):
    n = 300
    pod = fake(n, after={i: [i - 1] for i in range(1, n)})   # app i after app i-1
    pod.sup.start_all()
    pod.sup.shutdown()
    order = []
    while not pod.sup.done:
        stopping = [a for a in pod.apps if a.state == STOPPING]
        assert len(stopping) == 1
        order.append(stopping[0])
        pod.die(stopping[0])
        pod.drain()
    assert order == list(reversed(pod.apps))
    assert pod.sup.visits["stop"] <= 2 * n and pod.calls["may_stop"] <= 2 * n


def test_status_files_are_written_in_slices_and_only_what_changed(fake, tmp_path):
    n = 500
    pod = fake(n, policy="untilAll")
    pod.sup.start_all()
    first = pod.turn()
    assert first[1] is True and pod.status.written == status.BATCH    # 64 apps, more left
    pod.drain()
    assert pod.status.written == n          # each app's JSON once: running and ready
    pod.sup.shutdown()
    pod.zombies.extend((a.pid, SIGTERM_STATUS) for a in pod.apps)
    pod.sup._on_signals([(17, 1, pod.apps[0].pid, False)], None)
    pod.drain()
    assert pod.status.written == n + 2 * n
    with open(os.path.join(pod.status.directory, "app0042")) as f:
        assert f.read() == "143\n"
    with open(os.path.join(pod.status.directory, "app0042.json")) as f:
        doc = json.load(f)
    assert doc["state"] == "exited" and doc["reason"] == "Stopped" and doc["exitCode"] == 143
    # The same exit code again: `<app>` is not written again.
    written = pod.status.written
    pod.status.app(pod.apps[42])
    pod.status.flush()
    assert pod.status.written == written + 1


def test_status_records_keep_json_dumps_text():
    rec = {"name": "a", "pid": None, "ok": True, "t": "x\ny\u2028\"", "n": 1.5, "big": 2 ** 70}
    assert status.json_text(rec) == json.dumps(rec, indent=2, sort_keys=True) + "\n"
    nested = {"apps": ["a", "b"], "state": "running"}
    assert status.json_text(nested) == json.dumps(nested, indent=2, sort_keys=True) + "\n"


# -- the exit policy -------------------------------------------------------------------

@pytest.mark.parametrize("n", [10, 1000])
def test_each_end_asks_the_policy_about_one_app(fake, n):
    pod = fake(n, policy="untilAll")
    pod.sup.start_all()
    for app in pod.apps[:-1]:
        before = pod.costs()
        pod.die(app, status=0)
        after = pod.costs()
        assert after["policy"] - before["policy"] <= 2 and after["over"] - before["over"] <= 2
        assert after["ended"] - before["ended"] <= 3
        assert not pod.sup.stopping
    pod.die(pod.apps[-1], status=0)
    assert pod.sup.stopping and pod.sup.exit_code == 0
    pod.drain()
    assert pod.sup.done


# -- the indexes -----------------------------------------------------------------------

def test_the_indexes_follow_every_event(fake):
    rnd = random.Random(14)
    n = 60
    after = {i: rnd.sample(range(i), min(i, 2)) for i in range(10, n)}
    pod = fake(n, policy="untilAll", after=after, mutable=True)
    pod.sup.start_all()
    check_indexes(pod.sup)
    added = 0
    for step in range(400):
        apps = list(pod.sup.apps.values())
        app = rnd.choice(apps)
        what = rnd.random()
        if what < 0.3 and app.state in (RUNNING, STOPPING):
            pod.die(app, status=rnd.choice([0, 256, SIGTERM_STATUS]))
        elif what < 0.5:
            pod.sup.event(app, "stop")
        elif what < 0.7 and app.state in (WAITING, EXITED):
            pod.sup.event(app, "start")
        elif what < 0.8 and app.state == RUNNING:
            pod.sup.restart(app)
        elif what < 0.9 and app.ended:
            pod.sup._remove(app)
        else:
            new = App("added%d" % added, spawn.Launch(["sleep", "1"], []),
                      after=[rnd.choice(apps).name])
            added += 1
            pod.sup.add_app(new)
        pod.turn()
        check_indexes(pod.sup)


# -- the status answer -----------------------------------------------------------------

def test_the_status_answer_builds_each_record_once(fake, monkeypatch):
    from stage1.live import control
    n = 2000
    pod = fake(n)
    pod.sup.start_all()
    records = []
    real = control.app_record
    monkeypatch.setattr(control, "app_record", lambda app: records.append(app) or real(app))

    class Client:
        lines = []

        def send(self, obj):
            control.Client.send(self, obj)

        def send_line(self, line):
            self.lines.append(line)

    class Server:
        sup = pod.sup
    client = Client()
    control.ControlServer.op_status(Server(), client, {"op": "status"})
    assert len(records) == n and len(set(map(id, records))) == n
    answer = json.loads(client.lines[0])
    assert [a["name"] for a in answer["apps"]] == [a.name for a in pod.apps]
