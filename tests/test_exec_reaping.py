"""Reaping: the init adopts every orphan below it (as PID 1, or as a child
subreaper when it is not PID 1) and reaps every child, so that an orphan
storm leaves no zombie while the app runs."""
import os
import signal

import pytest

from conftest import alive, children, gone, nspid, py, wait_until, zombies_of

N = 200

# The app: an intermediate process makes N orphans and exits.  "shell": a
# shell starts N background `head` processes and exits; "daemon": N
# double forks whose middle processes exit at once and are never reaped by
# the intermediate, so they reach the init as zombies already.  Each orphan
# says its pid on a pipe, then blocks reading another until the app closes
# its write end (SIGUSR1).  The app writes the orphans' pids (as its
# namespace numbers them) to OUT, and exits 0 on SIGUSR2.
ORPHANS = r"""
import os, signal, sys
n, mode, out = int(sys.argv[1]), sys.argv[2], sys.argv[3]
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1, signal.SIGUSR2})
r, w = os.pipe()
pr, pw = os.pipe()
mid = os.fork()
if mid == 0:
    if mode == "shell":
        os.set_inheritable(r, True)
        os.set_inheritable(pw, True)
        os.execv("/bin/sh", ["sh", "-c", "i=0; while [ $i -lt %d ]; do "
                 "sh -c 'echo $$ >&%d; exec head -c1 <&%d >/dev/null' & "
                 "i=$((i+1)); done" % (n, pw, r)])
    for _ in range(n):
        if os.fork() == 0:
            if os.fork():
                os._exit(0)
            os.close(w)
            os.write(pw, b"%d\n" % os.getpid())
            os.read(r, 1)
            os._exit(0)
    os._exit(0)
os.close(r)
os.waitpid(mid, 0)
said = b""
while said.count(b"\n") < n:
    said += os.read(pr, 4096)
with open(out + ".tmp", "wb") as f:
    f.write(said)
os.rename(out + ".tmp", out)
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
    said = [int(p) for p in marker.read_text().split()]
    assert len(set(said)) == N
    app = init.app()

    # Every orphan comes to have the init as its parent, and the middle
    # processes of the double forks, which reached the init dead, are reaped.
    def adopted():
        kids = {nspid(c): c for c in children(init.pid)}
        return all(p in kids for p in said) and not zombies_of(init.pid) and kids
    kids = wait_until(adopted, what="%d orphans adopted, no zombie" % N)
    orphans = [kids[p] for p in said]
    assert all(alive(p) for p in orphans)

    # The storm: all of them exit at once.  (/proc/PID/task/*/children may
    # miss entries while they change, so the orphans are checked one by one.)
    os.kill(app, signal.SIGUSR1)
    wait_until(lambda: all(gone(p) for p in orphans), what="every orphan reaped")
    wait_until(lambda: children(init.pid) == [app] and not zombies_of(init.pid),
               what="the app alone below the init")

    os.kill(app, signal.SIGUSR2)
    assert init.wait() == 0
