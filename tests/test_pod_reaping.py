"""Apps and orphans ending together, with the real init as PID 1 of its
namespace.  SIGCHLD is a standard signal: while one is pending, the next
child's end sends none, so the init reaps the child a SIGCHLD names and
then walks for any other (wait4(-1)).  A crowd of orphans ending at the time
twenty apps do must leave every app's end recorded, with its status file,
and no zombie behind.
"""
import os

from livehelpers import app, sh, wait_for
from livehelpers import live, liveroot  # noqa: F401  (fixtures)


def _children(pid):
    with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
        return [int(p) for p in f.read().split()]


def _zombies(pid):
    out = []
    for child in _children(pid):
        try:
            with open("/proc/%d/stat" % child, "rb") as f:
                stat = f.read()
        except FileNotFoundError:
            continue
        if stat[stat.rindex(b")") + 2:stat.rindex(b")") + 3] == b"Z":
            out.append(child)
    return out


def test_apps_ending_among_orphans_are_each_reaped_and_recorded(live, tmp_path):
    # 100 orphans that end at about the time 20 apps do, so that ends of
    # both kinds arrive while the others' signals are pending.
    maker = sh("i=0; while [ $i -lt 100 ]; do (sleep 0.3 &); i=$((i+1)); done; "
               "touch %s/made; exec sleep 1000" % tmp_path)
    quick = [app("quick%02d" % i, sh("while [ ! -e %s/made ]; do sleep 0.01; done; "
                                     "sleep 0.3; exit 0" % tmp_path))
             for i in range(20)]
    pod = live([app("maker", maker)] + quick, pid1=True)
    wait_for(lambda: all(state == "exited" for name, (state, *_)
                         in pod.apps().items() if name != "maker"),
             timeout=30, what="the 20 quick apps to end")
    init = pod.run.init_pid
    wait_for(lambda: len(_children(init)) == 1 and not _zombies(init), timeout=30,
             what="every orphan reaped (children %r, zombies %r)"
             % (_children(init), _zombies(init)))
    apps = pod.apps()
    assert apps["maker"][0] == "running"
    for i in range(20):
        assert apps["quick%02d" % i][0] == "exited"
    status_dir = pod.pod.status_dir
    for i in range(20):
        with open(os.path.join(status_dir, "quick%02d" % i)) as f:
            assert f.read() == "0\n"
    assert pod.run.alive()
