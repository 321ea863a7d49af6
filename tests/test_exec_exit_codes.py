"""Exit status of `stage1 exec`, in the shell's conventions: the app's code
0-255, 128+N when it died of signal N, 127 when the command is not found,
126 when it is found but cannot be run (with one stderr line naming the
program and the reason), 2 for a usage error, 254 for other failures."""
import os
import re
import signal
import subprocess

import pytest

from conftest import exec_argv, py

NOENT = os.strerror(2)


def test_every_exit_code_is_passed_through(procs):
    # All 256 codes, a few inits at a time: they are independent.
    codes = list(range(256))
    running = []
    while codes or running:
        while codes and len(running) < 8:
            code = codes.pop()
            running.append((code, procs.start(exec_argv(["/bin/sh", "-c", "exit %d" % code]))))
        code, popen = running.pop(0)
        assert popen.wait(15) == code


@pytest.mark.parametrize("sig", [signal.SIGHUP, signal.SIGINT, signal.SIGQUIT, signal.SIGKILL,
                                 signal.SIGSEGV, signal.SIGABRT, signal.SIGUSR1, signal.SIGTERM,
                                 signal.SIGRTMIN + 1, signal.SIGRTMAX])
def test_app_killed_by_signal_n_gives_128_plus_n(procs, sig):
    app = py("import os, resource, signal, sys\n"
             "resource.setrlimit(resource.RLIMIT_CORE, (0, 0))\n"
             "if int(sys.argv[1]) != signal.SIGKILL:\n"
             "    signal.signal(int(sys.argv[1]), signal.SIG_DFL)\n"
             "os.kill(os.getpid(), int(sys.argv[1]))\n"
             "sys.exit(99)", int(sig))
    assert procs.run(app).returncode == 128 + sig


def one_error_line(stderr):
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    assert re.match(r"^stage1\[\d+\]: ", lines[0]), lines[0]
    return lines[0]


@pytest.mark.parametrize("pid1", [False, True], ids=["subreaper", "pid1"])
def test_command_not_found_exits_127(procs, tmp_path, pid1):
    missing = str(tmp_path / "no-such-program")
    r = procs.run([missing, "arg"], pid1=pid1)
    assert r.returncode == 127
    line = one_error_line(r.stderr)
    assert "unable to exec %s: %s" % (missing, NOENT) in line


def test_command_not_found_on_path_exits_127(procs, tmp_path):
    env = dict(os.environ, PATH="%s:%s" % (tmp_path / "a", tmp_path / "b"))
    r = procs.run(["no-such-program-s1"], env=env)
    assert r.returncode == 127
    assert "unable to exec no-such-program-s1: %s" % NOENT in one_error_line(r.stderr)


def test_a_path_through_a_file_exits_127(procs):
    r = procs.run(["/etc/passwd/x"])
    assert r.returncode == 127
    assert os.strerror(20) in one_error_line(r.stderr)      # ENOTDIR


def not_executable(tmp_path):
    path = tmp_path / "not-executable"
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(0o644)
    return path


def garbage(tmp_path):
    path = tmp_path / "garbage"
    path.write_bytes(bytes(range(256)) * 4)
    path.chmod(0o755)
    return path


@pytest.mark.parametrize("make,errno_", [
    (not_executable, 13),                   # EACCES
    (lambda tmp_path: tmp_path, 13),        # a directory: EACCES
    (garbage, 8),                           # ENOEXEC: no fallback to /bin/sh
], ids=["no-x-bit", "directory", "garbage"])
def test_command_found_but_not_runnable_exits_126(procs, tmp_path, make, errno_):
    prog = str(make(tmp_path))
    r = procs.run([prog])
    assert r.returncode == 126
    assert "unable to exec %s: %s" % (prog, os.strerror(errno_)) in one_error_line(r.stderr)


def test_path_search_remembers_eacces_and_goes_on(procs, tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir()
    second.mkdir()
    (first / "prog").write_text("#!/bin/sh\nexit 1\n")            # not executable
    env = dict(os.environ, PATH="%s:%s" % (first, second))
    r = procs.run(["prog"], env=env)
    assert r.returncode == 126, "EACCES found first and nothing better after it"
    assert os.strerror(13) in one_error_line(r.stderr)
    (second / "prog").write_text("#!/bin/sh\nexit 42\n")
    (second / "prog").chmod(0o755)
    assert procs.run(["prog"], env=env).returncode == 42     # execvp's order


USAGE_ERRORS = [
    [], ["--"], ["--bogus", "--", "true"], ["--grace"], ["--grace", "abc", "--", "true"],
    ["--grace", "-1", "--", "true"], ["--grace", "inf", "--", "true"],
    ["--grace", "nan", "--", "true"], ["-g=1", "--", "true"], ["--pdeathsig", "NOPE", "true"],
]


@pytest.mark.parametrize("args", USAGE_ERRORS, ids=[" ".join(a) or "none" for a in USAGE_ERRORS])
def test_usage_error_exits_2_with_a_usage_line(procs, args):
    r = subprocess.run([exec_argv([])[0], "exec"] + args, capture_output=True, text=True,
                       stdin=subprocess.DEVNULL, timeout=15)
    assert r.returncode == 2
    lines = r.stderr.splitlines()
    assert len(lines) == 2 and lines[0].startswith("stage1: "), r.stderr
    assert lines[1].startswith("usage: stage1 exec "), r.stderr
    assert r.stdout == ""


def pids_cgroup(tmp_name):
    """A v1 pids cgroup that allows one process, or None."""
    base = "/sys/fs/cgroup/pids"
    if not os.access(os.path.join(base, "cgroup.procs"), os.W_OK):
        return None
    path = os.path.join(base, tmp_name)
    os.mkdir(path)
    with open(os.path.join(path, "pids.max"), "w") as f:
        f.write("1")
    return path


def test_failure_to_fork_exits_254(procs, tmp_path):
    # In a pids cgroup that holds only the init, the fork of the app fails.
    cgroup = pids_cgroup("stage1-test-%d" % os.getpid())
    if cgroup is None:
        pytest.skip("no writable pids cgroup (v1) to make fork fail")
    try:
        def join():
            with open(os.path.join(cgroup, "cgroup.procs"), "w") as f:
                f.write("0")
        r = procs.run(["true"], "--status-dir", tmp_path, preexec_fn=join)
    finally:
        os.rmdir(cgroup)
    assert r.returncode == 254
    line = one_error_line(r.stderr)
    assert "true" in line and os.strerror(11) in line        # EAGAIN
    with open(tmp_path / "true") as f:
        assert f.read() == "254\n"
