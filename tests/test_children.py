"""The spawner thread and the pidfds of its children (native/children.c).

A pod's init spawns from a second thread so that its apps are that
thread's children, each watched by a pidfd, and a SIGCHLD walks only the
main thread's children (orphans).  Each scenario runs in an interpreter of
its own (the spawner thread, once started, is for the life of the
process), as root, and prints what it found as JSON: every child's end is
reaped once, with its own status and rusage, tracked or not; stale pidfds
are closed; a batch's exec failures are no children at all; a big batch
is shared by the spawner's helpers, each result still its own request's.
"""
import errno
import json
import os
import signal
import subprocess
import sys

import pytest

from conftest import ROOT

PRELUDE = r'''
import json, os, resource, signal, sys, time
from stage1.engine import native
from stage1.engine._native import lib

def req(argv):
    return native.request([argv[0]], argv, [])

def reap_until(pids, deadline=10.0):
    """reap() until every pid in pids has ended: {pid: (status, stime+utime)}."""
    got, end = {}, time.monotonic() + deadline
    while set(pids) - set(got) and time.monotonic() < end:
        for pid, status, utime, stime, _rss in native.reap():
            assert pid not in got, "reaped twice: %d" % pid
            got[pid] = (status, utime + stime)
        time.sleep(0.005)
    return got

def fds():
    return len(os.listdir("/proc/self/fd"))

def environ(pid, deadline=5.0):
    """pid's environment once its exec has set it up: a spawn returns when
    the child's exec has switched its memory, before the kernel has laid
    out its arguments and environment (read before that, it is empty)."""
    end = time.monotonic() + deadline
    while True:
        with open("/proc/%d/environ" % pid, "rb") as f:
            env = f.read()
        if env or time.monotonic() > end:
            return env
        time.sleep(0.001)
'''


def _run(script, *, nofile=None):
    argv = [sys.executable, "-c", PRELUDE + script]
    if nofile is not None:
        argv = ["prlimit", "--nofile=%d:%d" % (nofile, nofile)] + argv
    r = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_children_of_the_spawner_are_reaped_by_their_pidfds_each_with_its_status():
    out = _run(r'''
assert native.track_children() and native.tracking()
before = fds()
res = native.spawn_each([req(["/bin/sh", "-c", "exit %d" % i]) for i in range(20)]
                        + [req(["/no/such/program"])]
                        + [req(["/bin/sleep", "1000"]) for _ in range(5)])
pids = [p for p, _ in res if p]
failed = [str(e) for p, e in res if p is None]
def link(fd):
    try:
        return os.readlink("/proc/self/fd/" + fd)
    except FileNotFoundError:       # the listing's own
        return None
pidfds = sorted(int(fd) for fd in os.listdir("/proc/self/fd") if link(fd) == "anon_inode:[pidfd]")
sleepers = pids[20:]
for p in sleepers[:3]:
    os.kill(p, signal.SIGKILL)
os.kill(sleepers[3], signal.SIGTERM)
got = reap_until(pids[:20] + sleepers[:4])
single = native.spawn(["/bin/sh"], ["/bin/sh", "-c", "exit 7"], [])
got.update(reap_until([single]))
os.kill(sleepers[4], signal.SIGKILL)
got.update(reap_until([sleepers[4]]))
threads = sorted(os.listdir("/proc/self/task"))
print(json.dumps({"codes": [os.waitstatus_to_exitcode(got[p][0]) for p in pids[:20]],
                  "killed": [os.waitstatus_to_exitcode(got[p][0]) for p in sleepers],
                  "single": os.waitstatus_to_exitcode(got[single][0]),
                  "failed": failed, "untracked": len(native._untracked),
                  "fds_left": fds() - before, "threads": len(threads),
                  "children_left": lib.s1_has_children(), "pidfds": pidfds}))
''')
    assert out["codes"] == list(range(20))
    assert out["killed"] == [-9, -9, -9, -15, -9]
    assert out["single"] == 7
    assert len(out["failed"]) == 1 and "no/such/program" in out["failed"][0]
    assert out["untracked"] == 0
    assert out["fds_left"] == 0           # every pidfd closed once its child was reaped
    assert out["threads"] == 2
    assert out["children_left"] == 0
    assert len(out["pidfds"]) == 25 and out["pidfds"][0] >= 1024    # from fd 1024 up


def test_a_big_batch_is_shared_by_the_spawners_helpers_each_result_its_own():
    """200 spawns (S1_SHARED_FROM is 32), every seventh a program that does
    not exist: each pid is the process of its own request (its environment
    says which), each failure is its own request's, the children are split
    over the spawner and one helper per further CPU (at most 4 threads),
    every helper has every signal blocked, and every child is tracked and
    reaped once.  A batch of 31 makes no helper."""
    out = _run(r'''
def blocked(tid):
    with open("/proc/self/task/%d/status" % tid) as f:
        for line in f:
            if line.startswith("SigBlk:"):
                return int(line.split()[1], 16)
def comm(tid):
    with open("/proc/self/task/%d/comm" % tid) as f:
        return f.read().strip()
def spawning_threads():
    """{tid: its children} for each thread but the main one."""
    out = {}
    for t in os.listdir("/proc/self/task"):
        if int(t) != os.getpid():
            with open("/proc/self/task/%s/children" % t) as f:
                out[int(t)] = [int(p) for p in f.read().split()]
    return out
assert native.track_children()
small = native.spawn_each([native.request(["/bin/sleep"], ["/bin/sleep", "1000"], ["N=%d" % i])
                           for i in range(31)])
after_small = spawning_threads()
n = 200
reqs = [native.request(["/no/such/%d" % i] if i % 7 == 3 else ["/bin/sleep"],
                       ["/bin/sleep", "1000"], ["N=%d" % i]) for i in range(n)]
res = native.spawn_each(reqs)
threads = spawning_threads()
own, failed = [], []
for i, (pid, outcome) in enumerate(res):
    if pid is None:
        failed.append([i, outcome.step == native.STEP_EXEC, outcome.errno])
        continue
    own.append(environ(pid) == b"N=%d\0" % i)
pids = [p for p, _ in small + res if p]
for p in pids:
    os.kill(p, signal.SIGKILL)
got = reap_until(pids)
print(json.dumps({"own": own, "failed": failed, "cpus": len(os.sched_getaffinity(0)),
                  "after_small": len(after_small),
                  "threads": {str(t): len([p for p in c if p in set(pids)]) for t, c in threads.items()},
                  "names": sorted(set(comm(t) for t in threads)),
                  "masks": sorted(set(blocked(t) for t in threads)),
                  "untracked": len(native._untracked), "reaped": len(got), "all": len(pids),
                  "children_left": lib.s1_has_children()}))
''')
    assert out["own"] == [True] * len(out["own"]) and len(out["own"]) == 200 - 29
    assert out["failed"] == [[i, True, errno.ENOENT] for i in range(200) if i % 7 == 3]
    assert out["after_small"] == 1                 # the spawner alone
    helpers = min(out["cpus"], 4) - 1
    assert len(out["threads"]) == 1 + helpers
    if helpers:
        assert all(count > 0 for count in out["threads"].values()), out["threads"]
    assert sum(out["threads"].values()) == 200 - 29 + 31
    assert out["names"] == ["spawner"]
    every = {n for n in range(1, 65)} - {signal.SIGKILL, signal.SIGSTOP}
    assert [{n for n in range(1, 65) if m >> (n - 1) & 1} for m in out["masks"]] == [every]
    assert out["untracked"] == 0 and out["reaped"] == out["all"] == 200 - 29 + 31
    assert out["children_left"] == 0


def test_a_waiting_signal_32_never_meets_a_thread_that_has_it_open():
    """glibc starts each new thread with 32 (its cancellation signal)
    unblocked until the thread blocks everything itself, and 32's default
    action ends the process: a 32 sent to the init waits in its signalfd's
    queue while the interpreter waits for a batch, and would end the init
    the moment a helper (or the spawner) is made.  So none is made while a
    32 waits: the batch is spawned by the spawner alone, the signalfd still
    has the 32, and once it is read the next big batch makes the helpers.
    Before the spawner: no spawner at all (reaping walks every child)."""
    out = _run(r'''
import struct
sigfd, _mask, _ignored = native.take_signals()
def read_signal():
    """The next signal of the signalfd that is not SIGCHLD (the batches' children end)."""
    while True:
        sig = struct.unpack_from("I", os.read(sigfd, 128))[0]
        if sig != signal.SIGCHLD:
            return sig
def threads():
    return len(os.listdir("/proc/self/task"))
os.kill(os.getpid(), 32)
no_spawner = native.track_children()
first = read_signal()
assert native.track_children()
os.kill(os.getpid(), 32)
res = native.spawn_each([req(["/bin/true"]) for _ in range(40)])
alone = threads()
second = read_signal()
res += native.spawn_each([req(["/bin/true"]) for _ in range(40)])
shared = threads()
got = reap_until([p for p, _ in res])
print(json.dumps({"no_spawner": no_spawner, "signals": [first, second], "alone": alone,
                  "shared": shared, "cpus": len(os.sched_getaffinity(0)),
                  "codes": sorted(set(got[p][0] for p, _ in res)), "n": len(got)}))
''')
    assert out["no_spawner"] is False
    assert out["signals"] == [32, 32]
    assert out["alone"] == 2                                   # main and spawner
    assert out["shared"] == 1 + min(out["cpus"], 4)
    assert out["codes"] == [0] and out["n"] == 80


KILLER = r"""
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
int main(int argc, char **argv)
{
    struct timespec pause = { 0, 20000 };     /* 20 us: the init's queue stays short */
    pid_t pid = atoi(argv[1]);

    while (getppid() == pid) {      /* until the init is gone */
        kill(pid, 32);
        nanosleep(&pause, NULL);
    }
    return 0;
}
"""


def test_an_init_under_a_storm_of_signal_32_survives_making_its_threads(tmp_path):
    """A process sends the init signal 32 every 20 us while the init makes
    its spawner and, for a big batch, its helpers, reading its signalfd in
    between (as the loop does): no thread is made while a 32 waits, and
    while one is made 32 is ignored, so one that comes then is lost instead
    of ending the init.  10 inits, each making 2 threads here; with the
    wait for a queued 32 alone (not ignoring it), 20 of 20 died on this
    2-CPU VM."""
    src = tmp_path / "killer.c"
    src.write_text(KILLER)
    killer = tmp_path / "killer"
    r = subprocess.run(["cc", "-O2", "-o", str(killer), str(src)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    script = r'''
import select
sigfd, _mask, _ignored = native.take_signals()
os.set_blocking(sigfd, False)
def drain():
    while True:
        try:
            os.read(sigfd, 128 * 16)
        except BlockingIOError:
            return
# native.spawn, not subprocess: CPython puts its mask back with pthread_sigmask,
# which would unblock 32 in this thread for good.
null = os.open("/dev/null", os.O_RDWR)
killer = native.spawn([KILLER], [KILLER, str(os.getpid())], [], fd_map=[null, null, null])
select.select([], [], [], 0.02)
for _ in range(5000):
    drain()
    if native.track_children():
        break
pids, helpers = [], False
for _ in range(500):
    drain()
    pids += [p for p, _ in native.spawn_each([req(["/bin/true"]) for _ in range(32)])]
    if len(os.listdir("/proc/self/task")) > 2:
        helpers = True
        break
os.kill(killer, signal.SIGKILL)
os.waitpid(killer, 0)
got = reap_until(pids)
print(json.dumps({"tracked": native.tracking(), "helpers": helpers, "reaped": len(got) == len(pids)}))
'''.replace("KILLER", repr(str(killer)))
    outcomes = []
    for _ in range(10):
        argv = [sys.executable, "-c", PRELUDE + script]
        done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=60)
        outcomes.append(done.returncode)
        assert done.returncode == 0, "an init died of signal 32: %r" % outcomes
        assert json.loads(done.stdout.strip().splitlines()[-1])["reaped"]


def test_a_batch_that_hands_over_the_terminal_is_never_shared():
    """Each app given the terminal takes it (tcsetpgrp) as it starts, so the
    one that has it in the end must be the batch's last: such a batch is
    spawned in order by the spawner alone.  (/dev/null is no terminal: each
    fails at that step, in order.)"""
    out = _run(r'''
assert native.track_children()
null = os.open("/dev/null", os.O_RDWR)
res = native.spawn_each([native.request(["/bin/true"], ["/bin/true"], [], tty_fd=null,
                                        pgid_mode=native.PGID_NEW_GROUP) for _ in range(40)])
steps = sorted(set(e.step for _, e in res))
times = [e.when for _, e in res]
with_tty = len(os.listdir("/proc/self/task"))
ok = native.spawn_each([req(["/bin/true"]) for _ in range(40)])
got = reap_until([p for p, _ in ok])
print(json.dumps({"steps": steps, "ordered": times == sorted(times), "with_tty": with_tty,
                  "after": len(os.listdir("/proc/self/task")),
                  "cpus": len(os.sched_getaffinity(0)), "reaped": len(got)}))
''')
    assert out["steps"] == [native_step("S1_STEP_TCSETPGRP")]
    assert out["ordered"] and out["with_tty"] == 2
    assert out["after"] == 1 + min(out["cpus"], 4) and out["reaped"] == 40


def test_a_fork_of_the_init_that_tracks_again_shares_its_batches_anew():
    """A fork has no spawner and no helpers; if it starts tracking itself,
    its crew starts from nothing copied of the parent's (a helper made in
    the fork must not take the parent's last batch for a new one): every
    request of its big batches is spawned once, as itself."""
    out = _run(r'''
assert native.track_children()
first = native.spawn_each([req(["/bin/true"]) for _ in range(40)])
reap_until([p for p, _ in first])
r, w = os.pipe()
child = os.fork()
if child == 0:
    assert native.track_children()
    seen = []
    for _ in range(3):
        res = native.spawn_each([native.request(["/bin/sleep"], ["/bin/sleep", "1000"],
                                                ["N=%d" % i]) for i in range(50)])
        pids = [p for p, _ in res]
        own = []
        for i, p in enumerate(pids):
            own.append(environ(p) == b"N=%d\0" % i)
        kids = sum(len(open("/proc/self/task/%s/children" % t).read().split())
                   for t in os.listdir("/proc/self/task"))
        for p in pids:
            os.kill(p, signal.SIGKILL)
        got = reap_until(pids)
        seen.append([all(own), kids, len(got)])
    os.write(w, json.dumps(seen).encode())
    os._exit(0)
os.close(w)
answer = os.read(r, 4096)
_, status = os.waitpid(child, 0)
print(json.dumps({"seen": json.loads(answer), "child": os.waitstatus_to_exitcode(status)}))
''')
    assert out == {"seen": [[True, 50, 50]] * 3, "child": 0}


def native_step(name):
    from stage1.engine._native import lib
    return getattr(lib, name)


def test_children_beyond_the_pidfd_room_are_found_by_a_walk():
    """Under an open-files limit of 1024 + 4 * 5 there is room for 5 pidfds:
    of 12 children, 7 have none, and every end is still reaped, once."""
    out = _run(r'''
assert native.track_children()
res = native.spawn_each([req(["/bin/sleep", "1000"]) for _ in range(12)])
pids = [p for p, _ in res]
untracked = len(native._untracked)
for i, p in enumerate(pids):
    os.kill(p, signal.SIGKILL if i % 2 else signal.SIGTERM)
got = reap_until(pids)
print(json.dumps({"untracked": untracked, "left": len(native._untracked),
                  "codes": [os.waitstatus_to_exitcode(got[p][0]) for p in pids],
                  "children_left": lib.s1_has_children()}))
''', nofile=1024 + 4 * 5)
    assert out["untracked"] == 7
    assert out["left"] == 0
    assert out["codes"] == [-15 if i % 2 == 0 else -9 for i in range(12)]
    assert out["children_left"] == 0


def test_no_pidfd_under_a_limit_of_1024_fds():
    out = _run(r'''
assert native.track_children()
pids = [p for p, _ in native.spawn_each([req(["/bin/true"]) for _ in range(4)])]
untracked = len(native._untracked)
got = reap_until(pids)
print(json.dumps({"untracked": untracked, "codes": sorted(set(got[p][0] for p in pids))}))
''', nofile=1024)
    assert out == {"untracked": 4, "codes": [0]}


def test_a_pidfd_whose_child_was_reaped_elsewhere_is_closed_not_reported():
    """A tracked child reaped by its pid (os.waitpid) leaves a pidfd that
    is readable for ever: the next reap closes it and reports nothing."""
    out = _run(r'''
assert native.track_children()
before = fds()
(pid, _), = native.spawn_each([req(["/bin/true"])])
os.waitpid(pid, 0)
stale = fds() - before
reported = native.reap()
print(json.dumps({"stale": stale, "reported": reported, "left": fds() - before}))
''')
    assert out == {"stale": 1, "reported": [], "left": 0}


def test_the_spawner_runs_with_every_signal_blocked_and_apps_get_their_own_mask():
    """No signal is ever delivered to the spawner thread (the init reads
    them from a signalfd), glibc's 32 and 33 included, and starting it
    leaves the main thread's mask as it was (glibc's pthread_sigmask would
    unblock 32 and 33, whose default action ends the init); an app gets the
    mask it is given, not the thread's."""
    out = _run(r'''
sigfd, _mask, _ignored = native.take_signals()     # as an init does: every signal blocked
def blocked(path):
    with open(path) as f:
        for line in f:
            if line.startswith("SigBlk:"):
                return int(line.split()[1], 16)
main_before = blocked("/proc/self/task/%d/status" % os.getpid())
assert native.track_children()
tids = sorted(int(t) for t in os.listdir("/proc/self/task"))
spawner = [t for t in tids if t != os.getpid()][0]
pid = native.spawn(["/bin/sleep"], ["/bin/sleep", "1000"], [], sigmask=1 << (signal.SIGUSR2 - 1))
app_mask = blocked("/proc/%d/status" % pid)
with open("/proc/%d/stat" % pid) as f:
    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
os.kill(pid, signal.SIGKILL)
reap_until([pid])
print(json.dumps({"spawner": blocked("/proc/self/task/%d/status" % spawner), "app": app_mask,
                  "main_before": main_before,
                  "main_after": blocked("/proc/self/task/%d/status" % os.getpid()),
                  "ppid_is_init": ppid == os.getpid()}))
''')
    every = {n for n in range(1, 65)} - {signal.SIGKILL, signal.SIGSTOP}
    assert {n for n in range(1, 65) if out["spawner"] >> (n - 1) & 1} == every
    assert {n for n in range(1, 65) if out["main_before"] >> (n - 1) & 1} == every
    assert out["main_after"] == out["main_before"]
    assert out["app"] == 1 << (signal.SIGUSR2 - 1)
    assert out["ppid_is_init"]


def test_an_app_gets_exactly_the_dispositions_it_is_given_whatever_the_inits_are():
    """The child sets only the signals whose disposition in the init differs
    from the app's (spawn.c): the init's ignored ones (Python ignores
    SIGPIPE and SIGXFSZ; here SIGUSR1 too) and caught ones (SIGINT, SIGHUP
    here) come to the app at default, and what the app is to ignore
    (SIGUSR2, SIGTERM) is ignored, from the main thread and the spawner."""
    out = _run(r'''
signal.signal(signal.SIGUSR1, signal.SIG_IGN)
signal.signal(signal.SIGHUP, lambda *a: None)
ign = (1 << (signal.SIGUSR2 - 1)) | (1 << (signal.SIGTERM - 1))
def dispositions(pid):
    found = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("SigIgn", "SigCgt"):
                found[key] = [n for n in range(1, 65) if int(value, 16) >> (n - 1) & 1]
    return found
seen = []
for tracked in (False, True):
    if tracked:
        assert native.track_children()
    pid = native.spawn(["/bin/sleep"], ["/bin/sleep", "1000"], [], sigign=ign)
    seen.append(dispositions(pid))
    os.kill(pid, signal.SIGKILL)
    reap_until([pid])
print(json.dumps(seen))
''')
    expected = {"SigIgn": sorted([signal.SIGTERM, signal.SIGUSR2]), "SigCgt": []}
    assert out == [expected, expected]


def test_a_process_forked_from_a_tracking_init_spawns_by_itself():
    """fork copies only the calling thread: a child of the init must not
    hand its spawns to a spawner thread it does not have (it would wait for
    ever); it spawns them itself and reaps them by a walk."""
    out = _run(r'''
assert native.track_children()
r, w = os.pipe()
child = os.fork()
if child == 0:
    pid = native.spawn(["/bin/sh"], ["/bin/sh", "-c", "exit 5"], [])
    got = reap_until([pid], deadline=5.0)
    os.write(w, b"%d" % os.waitstatus_to_exitcode(got[pid][0]) if pid in got else b"none")
    os._exit(0)
os.close(w)
answer = os.read(r, 16)
_, status = os.waitpid(child, 0)
print(json.dumps({"answer": answer.decode(), "child": os.waitstatus_to_exitcode(status)}))
''')
    assert out == {"answer": "5", "child": 0}
