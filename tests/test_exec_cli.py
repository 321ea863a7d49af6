"""What `stage1 exec` shows of itself: the process title (`ps`,
/proc/PID/cmdline and comm), `-v` log lines, `--version` and `--help`; and
that an idle init does not wake."""
import os
import re
import signal
import subprocess

import pytest

import stage1
from conftest import STAGE1, cmdline, status_field, wait_until

PIDS = pytest.mark.parametrize("pid1", [False, True], ids=["subreaper", "pid1"])


def title(pid):
    return cmdline(pid).rstrip(b"\0").decode()


@pytest.mark.parametrize("options,name", [([], "sleep"), (["--name", "web"], "web")])
@PIDS
def test_process_title_names_the_app(procs, pid1, options, name):
    init = procs.init(["sleep", "60"], *options, pid1=pid1)
    init.app()     # spawned after the title is set
    assert title(init.pid) == "stage1 exec: " + name
    with open("/proc/%d/comm" % init.pid) as f:
        assert f.read() == ("stage1 exec: " + name)[:15] + "\n"
    ps = subprocess.run(["ps", "-o", "args=", "-p", str(init.pid)], capture_output=True,
                        text=True, timeout=15)
    assert ps.stdout.strip() == "stage1 exec: " + name
    init.kill(signal.SIGTERM)
    assert init.wait() == 143


@pytest.mark.parametrize("env", [None, {}], ids=["environment", "empty-environment"])
def test_process_title_with_long_arguments(procs, env):
    # python-prctl's set_proctitle found argv by walking back at most 8 KiB
    # from environ[0], and crashed the init (SIGSEGV) when it could not.
    long_arg = "x" * 10000
    init = procs.init(["/bin/sh", "-c", "exec sleep 60", "sh", long_arg], env=env)
    init.app()
    assert title(init.pid) == "stage1 exec: sh"
    init.kill(signal.SIGTERM)
    assert init.wait() == 143


@PIDS
def test_verbose_logs_lines_prefixed_with_the_inits_pid(procs, pid1):
    init = procs.init(["/bin/sh", "-c", "exit 4"], "-v", pid1=pid1)
    assert init.wait() == 4
    lines = init.stderr().splitlines()
    own = 1 if pid1 else init.pid
    assert len(lines) >= 2
    for line in lines:
        assert line.startswith("stage1[%d]: " % own), line
    assert any(re.search(r"started pid \d+", l) for l in lines)


def test_quiet_by_default(procs):
    r = procs.run(["/bin/sh", "-c", "exit 4"])
    assert (r.returncode, r.stderr) == (4, "")


def test_version():
    r = subprocess.run([STAGE1, "--version"], capture_output=True, text=True, timeout=15)
    assert (r.returncode, r.stdout, r.stderr) == (0, "stage1 %s\n" % stage1.__version__, "")


@pytest.mark.parametrize("args", [["exec", "--help"], ["exec", "-h"], ["help", "exec"]])
def test_help(args):
    r = subprocess.run([STAGE1] + args, capture_output=True, text=True, timeout=15)
    assert r.returncode == 0 and r.stderr == ""
    assert r.stdout.startswith("usage: stage1 exec [OPTIONS] [--] CMD [ARGS...]\n")
    assert "--grace" in r.stdout and "--pdeathsig" in r.stdout and "exit codes:" in r.stdout


def test_top_level_help_lists_exec():
    # `stage1 --help` lists the commands (tests/test_help.py); exec's
    # options are in `stage1 exec --help`
    r = subprocess.run([STAGE1, "--help"], capture_output=True, text=True, timeout=15)
    assert r.returncode == 0 and "\n  exec " in r.stdout


# The x86_64 system call number of rt_sigtimedwait.

RT_SIGTIMEDWAIT = "128"


def in_sigtimedwait_forever(pid):
    """Whether pid is blocked in rt_sigtimedwait with no timeout (a NULL
    timespec, the third argument): exec mode waits for signals as tini does."""
    with open("/proc/%d/syscall" % pid) as f:
        fields = f.read().split()
    return fields[0] == RT_SIGTIMEDWAIT and int(fields[3], 16) == 0


def switches(pid):
    return (int(status_field(pid, "voluntary_ctxt_switches")) +
            int(status_field(pid, "nonvoluntary_ctxt_switches")))


@pytest.mark.skipif(os.uname().machine != "x86_64", reason="system call numbers of x86_64")
@PIDS
def test_idle_init_blocks_without_timeout_and_does_not_wake(procs, pid1):
    import time
    init = procs.init(["sleep", "60"], pid1=pid1)
    init.app()
    # One thread, asleep in rt_sigtimedwait with no timeout: no timer, no poll.
    wait_until(lambda: in_sigtimedwait_forever(init.pid),
               what="the init idle in rt_sigtimedwait")
    assert os.listdir("/proc/%d/task" % init.pid) == [str(init.pid)]

    def quiet_for_a_second():
        before = switches(init.pid)
        time.sleep(1.0)      # the window measured, not a wait for an event
        return switches(init.pid) == before
    wait_until(quiet_for_a_second, timeout=6, what="a second without a wake-up")
    init.kill(signal.SIGTERM)
    assert init.wait() == 143


@pytest.mark.parametrize("name", ["../escaped", "a/b", "..", "."])
def test_a_status_name_that_is_not_a_file_name_is_a_usage_error(tmp_path, name):
    r = subprocess.run([STAGE1, "exec", "--status-dir", str(tmp_path / "d"), "--name", name,
                        "--", "true"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 2
    assert "--name" in r.stderr and "usage: stage1 exec" in r.stderr
    assert not (tmp_path / "escaped").exists() and not (tmp_path / "d").exists()
