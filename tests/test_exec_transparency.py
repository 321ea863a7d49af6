"""Transparency: the app gets the caller's cwd, environment, standard
streams, inherited fds, signal mask and ignored signals, and nothing of the
init's own (no signalfd, epoll or pipes; no blocked signals).

The one documented exception: the interpreter ignores SIGPIPE and SIGXFSZ
before any of stage1's code runs, and the old disposition is lost, so apps
get those two at their default (as CPython's subprocess gives them)."""
import json
import os
import signal
import subprocess

import pytest

from conftest import exec_argv, fd_targets, mask_to_set, py

PIDS = pytest.mark.parametrize("pid1", [False, True], ids=["subreaper", "pid1"])

# Prints {fd: target} of every fd the app has open, but the one listing them.
LIST_FDS = r"""
import json, os
fds = {}
for name in os.listdir("/proc/self/fd"):
    try:
        fds[name] = os.readlink("/proc/self/fd/" + name)
    except OSError:
        pass
print(json.dumps(fds))
"""


@PIDS
def test_app_gets_the_callers_cwd(procs, tmp_path, pid1):
    (tmp_path / "here").mkdir()
    r = procs.run(["/bin/pwd", "-P"], pid1=pid1, cwd=tmp_path / "here")
    assert r.returncode == 0
    assert r.stdout == os.path.realpath(tmp_path / "here") + "\n"


ENVIRONMENTS = {
    "no-locale": {"PATH": "/usr/bin:/bin", "FOO": "bar baz", "EMPTY": "", "EQ": "a=b=c",
                  "NEWLINE": "x\ny"},
    "raw-bytes": {b"PATH": b"/usr/bin:/bin", b"RAW": b"\xff\xfe", b"LANG": b"C"},
    "empty": {},
}


@pytest.mark.parametrize("env", ENVIRONMENTS.values(), ids=ENVIRONMENTS.keys())
@PIDS
def test_app_gets_exactly_the_callers_environment(procs, env, pid1):
    # No LANG or LC_*: the interpreter coerces its own locale (PEP 538) by
    # adding LC_CTYPE=C.UTF-8 to its environment; the app must not see it.
    # An empty environment crashed the process-title code once.
    expected = sorted(os.fsencode(k) + b"=" + os.fsencode(v) for k, v in env.items())
    assert sorted(run_bytes(procs, ["/usr/bin/env", "-0"], pid1, env)) == expected


def run_bytes(procs, cmd, pid1, env):
    """The app's stdout, NUL-separated, as bytes."""
    popen = procs.start(exec_argv(cmd, pid1=pid1), env=env, stdout=subprocess.PIPE)
    out, _ = popen.communicate(timeout=15)
    assert popen.returncode == 0
    return out.split(b"\0")[:-1]


def test_app_gets_the_callers_standard_streams(procs, tmp_path):
    # The app's fds 0, 1 and 2 are the very pipes the caller passed.
    report = tmp_path / "report"
    app = py("import json, os, sys\n"
             "data = sys.stdin.read()\n"
             "sys.stdout.write(data.upper()); sys.stderr.write('to stderr\\n')\n"
             "fds = {n: os.readlink('/proc/self/fd/%d' % n) for n in (0, 1, 2)}\n"
             "open(sys.argv[1], 'w').write(json.dumps(fds))", report)
    popen = procs.start(exec_argv(app), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                        stderr=subprocess.PIPE)
    ends = {"0": popen.stdin.fileno(), "1": popen.stdout.fileno(), "2": popen.stderr.fileno()}
    pipes = {n: "pipe:[%d]" % os.fstat(fd).st_ino for n, fd in ends.items()}
    out, err = popen.communicate(b"hello\n", timeout=15)
    assert popen.returncode == 0
    assert (out, err) == (b"HELLO\n", b"to stderr\n")
    assert json.loads(report.read_text()) == pipes


@PIDS
def test_app_gets_inherited_fds_and_none_of_the_inits(procs, tmp_path, pid1):
    path = tmp_path / "inherited"
    fd = os.open(path, os.O_RDWR | os.O_CREAT)       # not close-on-exec once passed
    r, w = os.pipe()
    try:
        init = procs.init(py(LIST_FDS), pid1=pid1, pass_fds=(fd, w), stdout=subprocess.PIPE,
                          stderr=subprocess.DEVNULL)
        out = init.popen.stdout.read()
        assert init.wait() == 0
    finally:
        os.close(fd)
        os.close(r)
        os.close(w)
    fds = {int(k): v for k, v in json.loads(out).items()}
    assert set(fds) == {0, 1, 2, fd, w}
    assert fds[fd] == str(path)
    assert not [t for t in fds.values() if t.startswith("anon_inode:")]


def test_closed_standard_fds_stay_closed_in_the_app(procs):
    # The init's own fds then take the free low numbers: close-on-exec,
    # they must not fill the app's 0 and 2.
    def close_0_and_2():
        os.close(0)
        os.close(2)
    popen = procs.start(exec_argv(py(LIST_FDS)), stdout=subprocess.PIPE,
                        preexec_fn=close_0_and_2)
    out, _ = popen.communicate(timeout=15)
    assert popen.returncode == 0
    assert set(json.loads(out)) == {"1"}


def test_the_init_has_fds_of_its_own_that_apps_do_not_get(procs):
    # The other side of the test above: there is something not to leak.
    init = procs.init(["sleep", "60"])
    app = init.app()
    mine = set(fd_targets(init.pid).values())
    assert "anon_inode:[signalfd]" in mine and "anon_inode:[eventpoll]" in mine
    assert set(fd_targets(app)) == {0, 1, 2}
    init.kill(signal.SIGTERM)
    assert init.wait() == 143


def sig_fields(stdout):
    fields = dict(line.split(":\t") for line in stdout.splitlines())
    return mask_to_set(int(fields["SigBlk"], 16)), mask_to_set(int(fields["SigIgn"], 16))


BLOCKED = {signal.SIGUSR1, signal.SIGRTMIN + 2}


def blocked_and_ignored(ignore):
    def preexec():
        signal.pthread_sigmask(signal.SIG_SETMASK, BLOCKED)
        for sig in ignore:
            signal.signal(sig, signal.SIG_IGN)
    return preexec


def app_masks(procs, preexec, stage1=True, pid1=False):
    cmd = ["grep", "^Sig[BI]", "/proc/self/status"]
    argv = exec_argv(cmd, pid1=pid1) if stage1 else cmd
    popen = procs.start(argv, preexec_fn=preexec, stdout=subprocess.PIPE)
    out, _ = popen.communicate(timeout=15)
    assert popen.returncode == 0
    return sig_fields(out.decode())


def test_app_gets_the_inherited_mask_and_ignored_signals(procs):
    preexec = blocked_and_ignored([signal.SIGHUP, signal.SIGWINCH, signal.SIGCHLD])
    blocked, ignored = app_masks(procs, preexec)
    assert blocked == BLOCKED
    assert ignored == {signal.SIGHUP, signal.SIGWINCH, signal.SIGCHLD}
    # ... exactly what the app gets without stage1 in between.
    assert app_masks(procs, preexec, stage1=False) == (blocked, ignored)


def test_app_gets_the_inherited_mask_as_pid1(procs):
    # unshare itself puts SIGCHLD back to default: compare with unshare alone.
    preexec = blocked_and_ignored([signal.SIGHUP, signal.SIGCHLD])
    blocked, ignored = app_masks(procs, preexec, pid1=True)
    assert blocked == BLOCKED and signal.SIGHUP in ignored
    base = procs.start(["unshare", "--pid", "--fork", "grep", "^Sig[BI]", "/proc/self/status"],
                       preexec_fn=preexec, stdout=subprocess.PIPE)
    assert sig_fields(base.communicate(timeout=15)[0].decode()) == (blocked, ignored)


def test_sigpipe_and_sigxfsz_come_to_the_app_at_default(procs):
    # The documented exception: ignored by the caller, default in the app.
    preexec = blocked_and_ignored([signal.SIGHUP, signal.SIGPIPE, signal.SIGXFSZ])
    assert app_masks(procs, preexec, stage1=False)[1] == {
        signal.SIGHUP, signal.SIGPIPE, signal.SIGXFSZ}
    blocked, ignored = app_masks(procs, preexec)
    assert (blocked, ignored) == (BLOCKED, {signal.SIGHUP})


@PIDS
def test_app_gets_nothing_blocked_or_ignored_when_the_init_inherited_none(procs, pid1):
    # Python's own SIGINT handler and ignored SIGPIPE/SIGXFSZ, and the init's
    # blocked everything, stay in the init.
    assert app_masks(procs, None, pid1=pid1) == (set(), set())


def test_an_init_started_with_sigchld_ignored_still_sees_the_exit_status(procs):
    popen = procs.start(exec_argv(["/bin/sh", "-c", "exit 7"]),
                        preexec_fn=lambda: signal.signal(signal.SIGCHLD, signal.SIG_IGN))
    assert popen.wait(15) == 7
