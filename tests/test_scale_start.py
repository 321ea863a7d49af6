"""A start pass of many apps (issue 14): the init builds every request,
then spawns them all in one native call (s1_spawn_each) and does the
bookkeeping of each app after, so that nothing of the interpreter runs
between one child's exec and the next spawn.

Here: what that call answers for each request, failures in the middle
included; that in a real pod each app's process is that app's (the
results are matched to the right apps); that apps with log pipes are
handed over in small batches, so a pod needs hardly more fds than one app
at a time did; and that the defaults an app without stage1 annotations
gets are what reading its (absent) annotations gives.
"""
import errno
import os
import resource
import time

import podhelpers
from livehelpers import app, wait_for
from livehelpers import live, liveroot  # noqa: F401  (fixtures)
from stage1.engine import native, spawn, supervisor
from stage1.pod import manifest

SLEEP = ["/bin/sleep", "1000"]


def _reap(pid):
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def test_spawn_each_answers_for_every_request_in_order_failures_included(tmp_path):
    signals = spawn.SignalState(0, 0)
    launches = [spawn.Launch(["/bin/sh", "-c", "exit 3"], []),
                spawn.Launch([str(tmp_path / "missing")], []),
                spawn.Launch(["sh", "-c", "exit 4"], ["PATH=/bin:/usr/bin"], path="/bin:/usr/bin"),
                spawn.Launch(["/bin/true"], [], cwd=str(tmp_path / "no-such-dir"))]
    before = time.time()
    results = native.spawn_each([spawn.request(l, signals) for l in launches])
    after = time.time()
    assert len(results) == 4
    (pid1, t1), (none2, err2), (pid3, t3), (none4, err4) = results
    assert none2 is None and none4 is None
    assert isinstance(err2, native.SpawnError) and err2.step == native.STEP_EXEC
    assert err2.errno == errno.ENOENT and "missing" in str(err2)
    assert err4.step == native.lib.S1_STEP_CHDIR and err4.errno == errno.ENOENT
    assert before <= t1 <= t3 <= after
    # Each pid is the process of its own request.
    assert (_reap(pid1), _reap(pid3)) == (3, 4)


def test_spawn_each_of_nothing_spawns_nothing():
    assert native.spawn_each([]) == []


def _proc(pid, name):
    with open("/proc/%d/%s" % (pid, name), "rb") as f:
        return f.read()


def test_each_app_of_a_batch_runs_as_itself(live):
    """300 apps started in one pass: the pid the init records for each is a
    process whose environment names that app (AC_APP_NAME).  The pass is
    shared by the spawner's threads: the events say each app started once,
    in the order they did (their times)."""
    n = 300
    pod = live([app("app%03d" % i, SLEEP) for i in range(n)])
    wait_for(lambda: len([s for s, *_ in pod.apps().values() if s == "running"]) == n,
             timeout=60, what="%d apps running" % n)
    seen = set()
    for name, (state, pid, ready, _restarts) in pod.apps().items():
        # A spawn returns at the exec's switch of memory, before the kernel
        # has laid out the new program's arguments and environment.
        env = wait_for(lambda: _proc(pid, "environ"), what="%s's environment" % name)
        assert ("AC_APP_NAME=%s" % name).encode() in env.split(b"\0"), name
        cmdline = wait_for(lambda: _proc(pid, "cmdline"), what="%s's command line" % name)
        assert cmdline.split(b"\0")[:2] == [b"/bin/sleep", b"1000"]
        seen.add(pid)
    assert len(seen) == n
    started = [e for e in pod.events() if e["event"] == "started"]
    assert sorted(e["app"] for e in started) == ["app%03d" % i for i in range(n)]
    assert [e["time"] for e in started] == sorted(e["time"] for e in started)


def test_logged_apps_start_with_hardly_more_fds_than_one_at_a_time(live, tmp_path, monkeypatch):
    """Each app logging with a prefix keeps two pipes' read ends in the
    init; their write ends stay open only until the spawn.  The batches
    are cut at SPAWN_BATCH_FDS of those, so a pod of n such apps starts
    with a limit (soft and hard) of 2n + SPAWN_BATCH_FDS + what the init
    itself holds."""
    n = 120
    limit = 2 * n + supervisor.SPAWN_BATCH_FDS + 40
    apps = [app("app%03d" % i, ["/bin/sh", "-c", "echo up; exec sleep 1000"],
                annotations={"stage1/log": "prefix"}) for i in range(n)]
    # The hard limit too (the init raises its soft limit up to the hard
    # one), set for the init alone: this process could not raise it again.
    wrapper = tmp_path / "stage1-limited"
    wrapper.write_text('#!/bin/sh\nexec prlimit --nofile=%d:%d %s "$@"\n'
                       % (limit, limit, podhelpers.STAGE1))
    wrapper.chmod(0o755)
    monkeypatch.setattr(podhelpers, "STAGE1", str(wrapper))
    pod = live(apps)
    wait_for(lambda: not pod.run.alive() or
             len([s for s, *_ in pod.apps().values() if s == "running"]) == n,
             timeout=60, what="%d logged apps running" % n)
    assert pod.run.alive(), pod.run.stderr()[-2000:]
    assert "Too many open files" not in pod.run.stderr()


def test_an_app_without_stage1_annotations_gets_what_reading_them_gives():
    r = manifest._Reader("pod")
    for annotations in ({}, {"example.com/owner": "me", "coreos.com/rkt/stage2/stdin": "true"}):
        fast, full = manifest.AppSpec(), manifest.AppSpec()
        fast.annotations, full.annotations = dict(annotations), dict(annotations)
        manifest.app_annotations(r, fast, "apps[0]")
        manifest._read_app_annotations(r, full, "apps[0]")
        for field in manifest.ANNOTATION_FIELDS:
            assert getattr(fast, field) == getattr(full, field), field
    # The lists are the app's own: one app's `after` is not another's.
    one, two = manifest.AppSpec(), manifest.AppSpec()
    one.annotations, two.annotations = {}, {}
    manifest.app_annotations(r, one, "apps[0]")
    manifest.app_annotations(r, two, "apps[1]")
    one.after.append("x")
    assert two.after == []


def _limits(pid):
    with open("/proc/%d/limits" % pid) as f:
        for line in f:
            if line.startswith("Max open files"):
                return tuple(int(v) for v in line.split()[3:5])


def test_a_pod_of_many_logged_apps_is_not_bound_by_the_soft_fd_limit(live):
    """The init raises its own soft limit on open files to the hard one
    (two pipes' read ends per logged app stay open in it), and gives every
    app the limit it was given itself."""
    n = 200
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    low = 256                              # less than the 2n read ends the init keeps
    apps = [app("app%03d" % i, ["/bin/sh", "-c", "echo up; exec sleep 1000"],
                annotations={"stage1/log": "prefix"}) for i in range(n)]
    resource.setrlimit(resource.RLIMIT_NOFILE, (low, hard))
    try:
        pod = live(apps)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    wait_for(lambda: not pod.run.alive() or
             len([s for s, *_ in pod.apps().values() if s == "running"]) == n,
             timeout=60, what="%d logged apps running" % n)
    assert pod.run.alive(), pod.run.stderr()[-2000:]
    assert _limits(pod.run.init_pid) == (hard, hard)
    for name, (state, pid, *_rest) in list(pod.apps().items())[:20]:
        assert _limits(pid) == (low, hard), name


def test_requests_share_c_objects_by_value_and_keep_them_alive():
    """An argv, fd map, limits or directory many apps have is built once
    (native._valued); each request keeps what it uses, so a request that
    waits in a batch while the cache is cleared still spawns what it said."""
    signals = spawn.SignalState(0, 0)
    signals.rlimits = ((resource.RLIMIT_NOFILE, 256, 512),)

    def launch(word):
        return spawn.Launch(["/bin/sh", "-c", 'test "$(ulimit -n) $PWD" = "256 /tmp" && exit %s'
                             % word], [], cwd="/tmp", fd_map=[0, 1, 2])
    first, second = (spawn.request(launch("3"), signals), spawn.request(launch("3"), signals))
    assert first[0].argv == second[0].argv and first[0].fd_map == second[0].fd_map
    assert first[0].rlimits == second[0].rlimits and first[0].cwd == second[0].cwd
    native._by_value.clear()
    for i in range(2000):       # reuse the freed memory, if anything was freed
        native.request(["/bin/true"], ["/bin/true", "x" * (i % 50)], [], cwd="/" + "y" * (i % 50))
    (pid, _when), = native.spawn_each([first])
    assert _reap(pid) == 3
    third = spawn.request(launch("4"), signals)
    assert third[0].argv != first[0].argv
    (pid, _when), = native.spawn_each([third])
    assert _reap(pid) == 4
