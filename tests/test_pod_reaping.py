"""Apps and orphans ending together, with the real init as PID 1 of its
namespace.  SIGCHLD is a standard signal: while one is pending, the next
child's end sends none.  A pod's init spawns its apps from a second thread
(the spawner, native/children.c), finds each app's end by its pidfd, and
walks only its main thread's children, the orphans the kernel gives it.  A
crowd of orphans ending at the time twenty apps do must leave every app's
end recorded, with its status file, and no zombie behind.
"""
import os

import pytest

import podhelpers
from conftest import children, nspid, zombies_of
from livehelpers import app, sh, wait_for
from livehelpers import live, liveroot  # noqa: F401  (fixtures)


def _task_children(pid):
    """{tid: [child pids]} of each thread of pid."""
    out = {}
    for tid in os.listdir("/proc/%d/task" % pid):
        try:
            with open("/proc/%d/task/%s/children" % (pid, tid)) as f:
                out[int(tid)] = [int(p) for p in f.read().split()]
        except FileNotFoundError:
            pass
    return out


def _pidfds(pid):
    n = 0
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            n += os.readlink("/proc/%d/fd/%s" % (pid, fd)) == "anon_inode:[pidfd]"
        except FileNotFoundError:
            pass
    return n


def _limit_init(tmp_path, monkeypatch, nofile):
    """Run the init under an open-files limit (soft and hard) of its own."""
    wrapper = tmp_path / "stage1-limited"
    wrapper.write_text('#!/bin/sh\nexec prlimit --nofile=%d:%d %s "$@"\n'
                       % (nofile, nofile, podhelpers.STAGE1))
    wrapper.chmod(0o755)
    monkeypatch.setattr(podhelpers, "STAGE1", str(wrapper))


# 1024 + 4 * 8: room for 8 pidfds (children.c), so that of the 21 apps 13
# have none and are found by a walk of every child, beside the 8 that do.
@pytest.mark.parametrize("nofile", [None, 1024 + 4 * 8], ids=["pidfds", "some-without"])
def test_apps_ending_among_orphans_are_each_reaped_and_recorded(live, tmp_path, monkeypatch,
                                                                 nofile):
    # 100 orphans that end at about the time 20 apps do, so that ends of
    # both kinds arrive while the others' signals are pending.
    if nofile:
        _limit_init(tmp_path, monkeypatch, nofile)
    maker = sh("while [ ! -e %s/go ]; do sleep 0.01; done; "
               "i=0; while [ $i -lt 100 ]; do (sleep 0.3 &); i=$((i+1)); done; "
               "touch %s/made; exec sleep 1000" % (tmp_path, tmp_path))
    quick = [app("quick%02d" % i, sh("while [ ! -e %s/made ]; do sleep 0.01; done; "
                                     "sleep 0.3; exit 0" % tmp_path))
             for i in range(20)]
    pod = live([app("maker", maker)] + quick, pid1=True)
    init = pod.run.init_pid
    wait_for(lambda: _pidfds(init) == (8 if nofile else 21), what="the apps' pidfds")
    open("%s/go" % tmp_path, "w").close()
    wait_for(lambda: all(state == "exited" for name, (state, *_)
                         in pod.apps().items() if name != "maker"),
             timeout=30, what="the 20 quick apps to end")
    wait_for(lambda: len(children(init)) == 1 and not zombies_of(init), timeout=30,
             what="every orphan reaped (children %r, zombies %r)"
             % (children(init), zombies_of(init)))
    apps = pod.apps()
    assert apps["maker"][0] == "running"
    for i in range(20):
        assert apps["quick%02d" % i][0] == "exited"
    status_dir = pod.pod.status_dir
    for i in range(20):
        with open(os.path.join(status_dir, "quick%02d" % i)) as f:
            assert f.read() == "0\n"
    assert pod.run.alive()
    assert _pidfds(init) == 1       # the maker's: each ended app's closed


def test_apps_are_the_spawner_threads_children_orphans_the_main_threads(live, tmp_path):
    # What makes an app's end cost the same whatever the pod's size: the
    # walk for orphans visits the main thread's children alone.
    maker = sh("(sleep 1000 &); touch %s/made; exec sleep 1000" % tmp_path)
    pod = live([app("maker", maker), app("other", sh("while [ ! -e %s/end ]; do sleep 0.02; done" % tmp_path))], pid1=True)
    wait_for(lambda: os.path.exists("%s/made" % tmp_path), what="the orphan")
    init = pod.run.init_pid
    apps = {name: pid for name, (state, pid, *_) in pod.apps().items()}
    wait_for(lambda: len(children(init)) == 3, what="two apps and an orphan as children")
    kids = _task_children(init)
    assert set(kids) == {init, max(kids)} and len(kids) == 2, kids
    spawner = max(kids)
    with open("/proc/%d/task/%d/comm" % (init, spawner)) as f:
        assert f.read().strip() == "spawner"
    assert sorted(nspid(p) for p in kids[spawner]) == sorted(apps.values())
    (orphan,) = kids[init]
    assert nspid(orphan) not in apps.values()
    os.kill(orphan, 9)
    wait_for(lambda: orphan not in children(init), what="the orphan reaped")
    open("%s/end" % tmp_path, "w").close()
    wait_for(lambda: pod.apps()["other"][0] == "exited", what="the app's end recorded")
    assert pod.apps()["maker"][0] == "running" and not zombies_of(init)
