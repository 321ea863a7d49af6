"""Reaping: the init adopts every orphan below it (as PID 1, or as a child
subreaper when it is not PID 1) and reaps every child, so that an orphan
storm leaves no zombie while the app runs."""
import os
import signal

import pytest

from conftest import alive, children, gone, py, wait_until, zombies_of

N = 200

# The app: an intermediate process makes N orphans and exits.  "shell": a
# shell starts N background `head` processes and exits; "daemon": N
# double forks whose middle processes exit at once and are never reaped by
# the intermediate, so they reach the init as zombies already.  Every orphan
# blocks reading a pipe until the app closes its write end (SIGUSR1); the
# app exits 0 on SIGUSR2.
ORPHANS = r"""
import os, signal, sys
n, mode, out = int(sys.argv[1]), sys.argv[2], sys.argv[3]
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1, signal.SIGUSR2})
r, w = os.pipe()
mid = os.fork()
if mid == 0:
    if mode == "shell":
        os.set_inheritable(r, True)
        os.execv("/bin/sh", ["sh", "-c", "i=0; while [ $i -lt %d ]; do "
                 "head -c1 <&%d >/dev/null & i=$((i+1)); done" % (n, r)])
    for _ in range(n):
        if os.fork() == 0:
            if os.fork():
                os._exit(0)
            os.close(w)
            os.read(r, 1)
            os._exit(0)
    os._exit(0)
os.close(r)
os.waitpid(mid, 0)
with open(out, "w") as f:
    f.write("orphaned")
signal.sigwait({signal.SIGUSR1})
os.close(w)
signal.sigwait({signal.SIGUSR2})
"""


@pytest.mark.parametrize("mode", ["shell", "daemon"])
@pytest.mark.parametrize("pid1", [False, True], ids=["subreaper", "pid1"])
def test_orphan_storm_leaves_no_zombie(procs, tmp_path, pid1, mode):
    marker = tmp_path / "marker"
    init = procs.init(py(ORPHANS, N, mode, marker), pid1=pid1)
    wait_until(marker.exists, what="the orphans to be made")
    app = init.app()

    # Every orphan now has the init as its parent, and the middle processes
    # of the double forks, which reached the init dead, are reaped.
    def adopted():
        kids = children(init.pid)
        return len(kids) == N + 1 and not zombies_of(init.pid) and kids
    orphans = [p for p in wait_until(adopted, what="%d orphans adopted, no zombie" % N)
               if p != app]
    assert all(alive(p) for p in orphans)

    # The storm: all of them exit at once.
    os.kill(app, signal.SIGUSR1)
    wait_until(lambda: children(init.pid) == [app], what="every orphan reaped")
    assert zombies_of(init.pid) == []
    assert all(gone(p) for p in orphans)

    os.kill(app, signal.SIGUSR2)
    assert init.wait() == 0

