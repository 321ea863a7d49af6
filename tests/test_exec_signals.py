"""Forwarding: every catchable signal but SIGCHLD goes to the app (with -g
to its process group), in the order the init receives it; fault signals sent
with kill(2) too, and the init survives them, and floods of them."""
import os
import resource
import signal
import subprocess

import pytest

from conftest import Recorder, exec_argv, py, status_field, wait_until

SIGRTMIN, SIGRTMAX = signal.SIGRTMIN, signal.SIGRTMAX
# The list first, then every other catchable signal.
NAMED = [signal.SIGHUP, signal.SIGINT, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2,
         signal.SIGALRM, signal.SIGTERM, signal.SIGWINCH, signal.SIGURG, signal.SIGIO,
         signal.SIGPWR, signal.SIGSYS]
FAULTS = [signal.SIGSEGV, signal.SIGBUS, signal.SIGFPE, signal.SIGILL, signal.SIGTRAP]
CATCHABLE = sorted(signal.valid_signals() - {signal.SIGKILL, signal.SIGSTOP, signal.SIGCHLD})
EVERY = NAMED + FAULTS + [s for s in CATCHABLE if s not in NAMED + FAULTS]

PIDS = pytest.mark.parametrize("pid1", [False, True], ids=["subreaper", "pid1"])


def start_recorder(procs, tmp_path, *options, pid1=False, **kw):
    rec = Recorder(tmp_path / "signals", **kw)
    init = procs.init(rec.argv, "--grace", "60", *options, pid1=pid1)
    rec.pid()
    return init, rec


@PIDS
def test_every_catchable_signal_but_sigchld_is_forwarded_in_order(procs, tmp_path, pid1):
    assert len(EVERY) == 59 and signal.SIGCHLD not in EVERY
    init, rec = start_recorder(procs, tmp_path, pid1=pid1, count=len(EVERY), code=7)
    for i, sig in enumerate(EVERY):
        init.kill(sig)
        rec.wait_signals(i + 1, "signal %d at the app" % sig)
    assert rec.signals() == EVERY
    # TERM, INT and QUIT armed the 60 s kill timer; the app ends first.
    assert init.wait() == 7


def test_a_burst_of_distinct_signals_arrives_whole(procs, tmp_path):
    # Sent faster than anyone reads them, standard signals are taken lowest
    # number first, so only the set can be compared: nothing lost, nothing
    # twice.  SIGCONT is left out: the kernel itself discards a pending
    # SIGCONT when TSTP, TTIN or TTOU is sent after it.
    burst = [s for s in EVERY if s != signal.SIGCONT]
    init, rec = start_recorder(procs, tmp_path, count=len(burst), code=3)
    for sig in burst:
        init.kill(sig)
    rec.wait_signals(len(burst))
    assert init.wait() == 3
    assert sorted(rec.signals()) == sorted(burst)


def test_sigchld_sent_to_the_init_is_not_forwarded(procs, tmp_path):
    init, rec = start_recorder(procs, tmp_path, last=signal.SIGWINCH)
    init.kill(signal.SIGCHLD)
    # The init reads 17 before 28 whenever both are pending, so once 28 is
    # at the app, 17 would have been passed on before it.
    init.kill(signal.SIGWINCH)
    assert init.wait() == 0
    assert rec.signals() == [signal.SIGWINCH]


@PIDS
def test_fault_signals_sent_with_kill_are_forwarded_and_the_init_survives(procs, tmp_path,
                                                                          pid1):
    init, rec = start_recorder(procs, tmp_path, pid1=pid1, count=len(FAULTS) + 1, code=5)
    for i, sig in enumerate(FAULTS + [signal.SIGSYS]):
        init.kill(sig)
        rec.wait_signals(i + 1)
        # After the last one the app exits by itself (code 5), and so may the init.
        assert init.running() or i == len(FAULTS)
    assert rec.signals() == FAULTS + [signal.SIGSYS]
    assert init.wait() == 5


@pytest.mark.parametrize("sig", [32, 33])
def test_glibc_reserved_signals_are_forwarded_not_fatal_to_the_init(procs, sig):
    # glibc keeps 32 and 33 out of sigfillset and refuses to block them; the
    # init must block them anyway.  The app (sleep) dies of the default action.
    init = procs.init(["sleep", "60"])
    init.app()
    init.kill(sig)
    assert init.wait() == 128 + sig     # not -sig: the init itself survived


# The app blocks every signal and forks a child that sleeps with every
# signal blocked, so that what reaches the child stays pending where
# /proc/PID/status (ShdPnd) shows it.  The app records what it is sent.
GROUP_APP = r"""
import os, signal, sys, time
out, last = sys.argv[1], int(sys.argv[2])
sigs = signal.valid_signals() - {signal.SIGKILL, signal.SIGSTOP}
signal.pthread_sigmask(signal.SIG_BLOCK, sigs)
child = os.fork()
if child == 0:
    while True:
        time.sleep(1000)
fd = os.open(out, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
os.write(fd, b"ready %d\n" % child)
while True:
    sig = signal.sigwaitinfo(sigs).si_signo
    os.write(fd, b"%d\n" % sig)
    if sig == last:
        os.kill(child, signal.SIGKILL)
        sys.exit(0)
"""


def pending(pid):
    return {n for n in range(1, 65) if int(status_field(pid, "ShdPnd"), 16) >> (n - 1) & 1}


def start_group_app(procs, tmp_path, *options, pid1=False):
    rec = Recorder(tmp_path / "signals")
    init = procs.init(py(GROUP_APP, rec.path, signal.SIGRTMAX), "--grace", "60", *options,
                      pid1=pid1)
    child = init.host_pid(rec.pid())   # the recorder's "ready" pid is the child's
    return init, rec, child


@PIDS
def test_group_flag_sends_signals_to_the_apps_process_group(procs, tmp_path, pid1):
    init, rec, child = start_group_app(procs, tmp_path, "-g", pid1=pid1)
    for sig in (signal.SIGUSR1, signal.SIGHUP, SIGRTMIN + 3):
        init.kill(sig)
        wait_until(lambda: sig in pending(child), what="signal %d at the app's child" % sig)
    # The app (the group's leader) records each as it takes it, after the
    # kernel has made it pending in the child too.
    wait_until(lambda: signal.SIGUSR1 in rec.signals(), what="SIGUSR1 at the app")
    init.kill(SIGRTMAX)
    assert init.wait() == 0


def test_without_group_flag_only_the_app_is_signalled(procs, tmp_path):
    init, rec, child = start_group_app(procs, tmp_path)
    init.kill(signal.SIGUSR1)
    init.kill(SIGRTMIN + 3)
    # SIGRTMAX-1 is read after the others: once it is at the app, the init
    # has finished passing on USR1 and RTMIN+3.
    init.kill(SIGRTMAX - 1)
    assert rec.wait_signals(3) == [signal.SIGUSR1, SIGRTMIN + 3, SIGRTMAX - 1]
    assert pending(child) == set()
    init.kill(SIGRTMAX)
    assert init.wait() == 0


def test_group_flag_delivers_each_signal_once_to_the_app(procs, tmp_path):
    init, rec, child = start_group_app(procs, tmp_path, "-g")
    init.kill(SIGRTMIN + 1)     # real-time signals queue: a second copy would show
    init.kill(SIGRTMAX)
    assert init.wait() == 0
    assert rec.signals() == [SIGRTMIN + 1, SIGRTMAX]


def test_ten_thousand_standard_signals_leave_the_init_alive(procs, tmp_path):
    init, rec = start_recorder(procs, tmp_path, last=signal.SIGUSR2, code=4)
    for _ in range(10000):
        init.kill(signal.SIGUSR1)
    # Standard signals coalesce: at least one gets through.
    rec.wait_signals(1)
    assert init.running()
    init.kill(signal.SIGUSR2)
    assert init.wait() == 4
    sigs = rec.signals()
    assert set(sigs) == {signal.SIGUSR1, signal.SIGUSR2} and sigs[-1] == signal.SIGUSR2


def test_ten_thousand_realtime_signals_are_each_passed_on(procs, tmp_path):
    soft, _ = resource.getrlimit(resource.RLIMIT_SIGPENDING)
    if soft != resource.RLIM_INFINITY and soft < 30000:
        pytest.skip("RLIMIT_SIGPENDING %d cannot queue the burst twice over" % soft)
    init, rec = start_recorder(procs, tmp_path, last=signal.SIGUSR2, code=4)
    for _ in range(10000):
        init.kill(SIGRTMIN + 4)
    # Real-time signals queue: the init reads each one and passes each on.
    rec.wait_signals(10000)
    assert init.running()
    init.kill(signal.SIGUSR2)
    assert init.wait() == 4
    assert rec.signals() == [SIGRTMIN + 4] * 10000 + [signal.SIGUSR2]


def test_pdeathsig_option_is_parsed_as_a_signal(procs):
    for bad in ("NOPE", "0", "65", "RTMIN+31", "SIGRTMAX-31x"):
        r = procs.run(["true"], "--pdeathsig", bad)
        assert r.returncode == 2, bad
        assert "--pdeathsig" in r.stderr and "usage: stage1 exec" in r.stderr


# The intermediate parent: starts the init, says its pid, waits to be killed.
PARENT = r"""
import subprocess, sys, time
p = subprocess.Popen(sys.argv[1:], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
print(p.pid, flush=True)
time.sleep(1000)
"""


@pytest.mark.parametrize("name,sig", [("TERM", signal.SIGTERM), ("SIGUSR1", signal.SIGUSR1),
                                      ("12", signal.SIGUSR2), ("RTMIN+2", SIGRTMIN + 2)])
def test_pdeathsig_is_handled_like_a_received_signal(procs, tmp_path, name, sig):
    rec = Recorder(tmp_path / "signals", count=1, code=6)
    parent = procs.start(py(PARENT, *exec_argv(rec.argv, "--pdeathsig", name, "--grace", "60")),
                         stdout=subprocess.PIPE)
    init_pid = int(parent.stdout.readline())
    rec.pid()
    assert rec.signals() == []
    parent.kill()
    parent.wait()
    # We are a subreaper: the orphaned init is now our child.
    assert wait_child(init_pid) == 6
    assert rec.signals() == [sig]


def wait_child(pid):
    """The exit code of our child pid, once it has ended."""
    def ended():
        done, status = os.waitpid(pid, os.WNOHANG)
        return done and [os.waitstatus_to_exitcode(status)]
    return wait_until(ended, what="pid %d to end" % pid)[0]
