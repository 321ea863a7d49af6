"""Each step of the child between fork and exec, failing on its own.

The native spawn reports the failing step and its errno through a
close-on-exec pipe; `stage1.engine.native.spawn` raises SpawnError with .step and
.errno.  Exec mode reaches only the exec step (see test_exec_exit_codes);
the other steps are driven here through the Python API directly.  A
successful spawn's child is reaped with os.waitpid; a failed one has been
reaped by spawn itself.

Steps that cannot fail from here, and so have no test: setsid and setpgid
(a freshly forked child is never a group or session leader), umask (cannot
fail), keepcaps (only with SECBIT_KEEP_CAPS_LOCKED), no_new_privs, restoring
signals and marking fds close-on-exec (no failure for valid arguments).
"""
import errno
import json
import os
import resource
import subprocess
import sys

import pytest

from conftest import children

native = pytest.importorskip("stage1.engine.native")
from stage1.engine.spawn import spawn_exit_code  # noqa: E402

TRUE = ["/bin/true"]


def spawn(**kw):
    kw.setdefault("candidates", TRUE)
    kw.setdefault("argv", ["true"])
    kw.setdefault("env", [])
    return native.spawn(kw.pop("candidates"), kw.pop("argv"), kw.pop("env"), **kw)


def failure(**kw):
    """The SpawnError of a spawn that must fail; and no child is left."""
    before = set(children(os.getpid()))
    with pytest.raises(native.SpawnError) as info:
        spawn(**kw)
    assert set(children(os.getpid())) <= before, "the failed child was not reaped"
    return info.value


def test_a_good_request_runs_and_its_status_is_ours_to_reap(tmp_path):
    pid = spawn(candidates=["/bin/sh"], argv=["sh", "-c", 'test "$PWD" = "$1" && exit 5',
                                              "sh", str(tmp_path)],
                env=["PWD=" + str(tmp_path)], cwd=str(tmp_path))
    assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 5


def check(err, step, errno_, program="true", path=None):
    """The error names the step, the path it worked on (chdir, chroot), the
    program and the reason."""
    assert (err.step_name, err.errno) == (step, errno_), str(err)
    assert err.strerror == os.strerror(errno_)
    if step == "exec":
        assert str(err) == "unable to exec %s: %s" % (program, os.strerror(errno_))
    else:
        what = "%s to %s" % (step, path) if path else step
        assert str(err) == "unable to %s for %s: %s" % (what, program, os.strerror(errno_))


def test_too_many_fds_is_refused_before_fork():
    check(failure(fd_map=list(range(65))), "spawn", errno.EINVAL)


def test_step_fds_bad_source_fd():
    check(failure(fd_map=[1000]), "set up fds", errno.EBADF)


def test_step_tcsetpgrp_on_a_file_that_is_no_terminal(tmp_path):
    fd = os.open(tmp_path / "not-a-tty", os.O_RDWR | os.O_CREAT)
    try:
        check(failure(pgid_mode=native.PGID_NEW_GROUP, tty_fd=fd), "take the terminal",
              errno.ENOTTY)
    finally:
        os.close(fd)


def test_step_cgroup_missing_procs_file(tmp_path):
    check(failure(cgroup_procs=[str(tmp_path / "none" / "cgroup.procs")]), "join cgroup",
          errno.ENOENT)


def test_step_oom_score_adj_out_of_range():
    check(failure(oom_score_adj=5000), "set oom_score_adj", errno.EINVAL)


def test_step_rlimit_soft_above_hard():
    check(failure(rlimits=[(resource.RLIMIT_NOFILE, 64, 32)]), "set rlimits", errno.EINVAL)


def test_step_chroot_missing_root(tmp_path):
    check(failure(root=str(tmp_path / "missing")), "chroot", errno.ENOENT,
          path=tmp_path / "missing")


def test_step_chroot_root_is_a_file(tmp_path):
    (tmp_path / "file").write_text("")
    check(failure(root=str(tmp_path / "file")), "chroot", errno.ENOTDIR, path=tmp_path / "file")


def test_step_chdir_missing_cwd(tmp_path):
    check(failure(cwd=str(tmp_path / "missing")), "chdir", errno.ENOENT,
          path=tmp_path / "missing")


def test_step_chdir_cwd_is_a_file(tmp_path):
    (tmp_path / "file").write_text("")
    check(failure(cwd=str(tmp_path / "file")), "chdir", errno.ENOTDIR, path=tmp_path / "file")


def test_step_chdir_is_relative_to_the_new_root(tmp_path):
    # chroot comes first: the cwd is looked up inside the new root.
    (tmp_path / "outside").mkdir()
    (tmp_path / "root").mkdir()
    check(failure(root=str(tmp_path / "root"), cwd=str(tmp_path / "outside")), "chdir",
          errno.ENOENT, path=tmp_path / "outside")


def test_steps_run_in_order_the_first_failure_is_reported(tmp_path):
    check(failure(root=str(tmp_path / "missing"), cwd=str(tmp_path / "missing"),
                  rlimits=[(resource.RLIMIT_NOFILE, 64, 32)]), "set rlimits", errno.EINVAL)


def test_step_capset_outside_the_bounding_set():
    # Keep nothing in the bounding set, then ask for CAP_CHOWN (0) as
    # inheritable: no new inheritable capability outside the bounding set.
    check(failure(caps=(0, 1 << 0)), "set capabilities", errno.EPERM)


def test_step_ambient_outside_permitted_and_inheritable():
    # An ambient capability must be permitted and inheritable: CAP_KILL (5) is neither.
    check(failure(caps=(1 << 0, 1 << 0), ambient=1 << 5), "set ambient capabilities",
          errno.EPERM)


def test_ambient_set_is_cleared_and_raised_only_as_asked():
    status = "grep -E '^Cap(Amb|Eff):' /proc/self/status"
    read, write = os.pipe()
    for ambient, expected in ((0, 0), (1 << 5, 1 << 5)):
        pid = spawn(candidates=["/bin/sh"], argv=["sh", "-c", status], fd_map=[0, write, 2],
                    caps=((1 << 0) | (1 << 5), (1 << 0) | (1 << 5)), ambient=ambient)
        assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0
        fields = dict(line.split(":") for line in os.read(read, 4096).decode().splitlines())
        assert int(fields["CapAmb"], 16) == expected
    os.close(read)
    os.close(write)


def _filter(name, action):
    """A filter that gives `action` to the one syscall `name`."""
    return native.seccomp_compile(native.SECCOMP_ALLOW, [(name, action)])


def test_step_seccomp_without_no_new_privs_or_cap_sys_admin():
    # The kernel takes a filter from a process with no_new_privs or
    # CAP_SYS_ADMIN: here it has neither (the bounding set keeps CAP_CHOWN).
    check(failure(caps=(1 << 0, 1 << 0), seccomp=_filter("mkdir", errno.EPERM)),
          "install the seccomp filter", errno.EACCES)


def test_step_seccomp_with_a_program_the_kernel_refuses():
    bad = native.SeccompProgram(native.ffi.new("char[]", 8 * 2), 2)   # two zero instructions
    check(failure(no_new_privs=True, seccomp=bad), "install the seccomp filter", errno.EINVAL)


def test_cap_sys_admin_until_exec_installs_the_filter_and_does_not_reach_the_app():
    status = "grep -E '^(CapEff|CapPrm|Seccomp):' /proc/self/status; mkdir /proc/x"
    read, write = os.pipe()
    pid = spawn(candidates=["/bin/sh"], argv=["sh", "-c", status], fd_map=[0, write, write],
                caps=(1 << 0, 1 << 0), caps_until_exec=1 << 21,
                seccomp=_filter("mkdir", errno.ENOTSUP))
    assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) != 0
    os.close(write)
    out = os.read(read, 4096).decode()
    os.close(read)
    fields = dict(line.split(":", 1) for line in out.splitlines() if line.startswith(("Cap", "Secc")))
    assert int(fields["CapEff"], 16) == int(fields["CapPrm"], 16) == 1 << 0
    assert fields["Seccomp"].strip() == "2"
    assert os.strerror(errno.ENOTSUP) in out


def test_the_filter_is_the_last_step_its_kill_is_the_apps():
    # A filter that kills execve: every step of the child ran before it (the
    # spawn gets that far), and the child dies of SIGSYS at exec.
    pid = spawn(no_new_privs=True, seccomp=_filter("execve", native.SECCOMP_KILL))
    status = os.waitpid(pid, 0)[1]
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == 31


# Credentials: run as root without CAP_SETUID, CAP_SETGID and CAP_SETPCAP
# (setpriv takes them out of the bounding set, so the interpreter never has
# them), and report what the spawn says.
WITHOUT_CAPS = r"""
import json, sys
from stage1.engine import native
try:
    native.spawn(["/bin/true"], ["true"], [], **json.loads(sys.argv[1]))
    print(json.dumps(None))
except native.SpawnError as err:
    print(json.dumps([err.step_name, err.errno]))
"""


def spawn_without_caps(**kw):
    r = subprocess.run(["setpriv", "--bounding-set", "-setuid,-setgid,-setpcap",
                        sys.executable, "-c", WITHOUT_CAPS, json.dumps(kw)],
                       capture_output=True, text=True, timeout=15)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


@pytest.mark.parametrize("request_,step", [
    ({"groups": [1]}, "setgroups"),
    ({"gid": 1}, "setgid"),
    ({"uid": 1}, "setuid"),
    ({"caps": [0, 0]}, "drop bounding capabilities"),
], ids=["setgroups", "setgid", "setuid", "capbset"])
def test_credential_steps_without_the_capability(request_, step):
    if not os.path.exists("/usr/bin/setpriv"):
        pytest.skip("setpriv (util-linux) is needed to run without capabilities")
    assert spawn_without_caps() is None, "the same spawn without the request must work"
    assert spawn_without_caps(**request_) == [step, errno.EPERM]


def not_executable(tmp_path):
    path = tmp_path / "prog"
    path.write_text("#!/bin/sh\n")
    path.chmod(0o644)
    return [str(path)], []


def garbage(tmp_path):
    path = tmp_path / "prog"
    path.write_bytes(b"\x7fELF\x00garbage" * 100)
    path.chmod(0o755)
    return [str(path)], []


def loop(tmp_path):
    os.symlink("b", tmp_path / "a")
    os.symlink("a", tmp_path / "b")
    return [str(tmp_path / "a")], []


def huge_args(tmp_path):
    return TRUE, ["x" * (1 << 20)] * 4      # 4 MiB: beyond ARG_MAX


_held_open = []


def busy(tmp_path):
    path = tmp_path / "prog"
    path.write_bytes(open("/bin/true", "rb").read())
    path.chmod(0o755)
    _held_open.append(os.open(path, os.O_WRONLY))     # open for writing: ETXTBSY
    return [str(path)], []


@pytest.mark.parametrize("make,errno_", [
    (lambda p: ([str(p / "missing")], []), errno.ENOENT),
    (lambda p: (["/etc/passwd/x"], []), errno.ENOTDIR),
    (lambda p: (["/" + "x" * 5000], []), errno.ENAMETOOLONG),
    (loop, errno.ELOOP),
    (not_executable, errno.EACCES),
    (lambda p: ([str(p)], []), errno.EACCES),
    (garbage, errno.ENOEXEC),
    (huge_args, errno.E2BIG),
    (busy, errno.ETXTBSY),
], ids=["ENOENT", "ENOTDIR", "ENAMETOOLONG", "ELOOP", "EACCES", "directory", "ENOEXEC",
        "E2BIG", "ETXTBSY"])
def test_step_exec(tmp_path, make, errno_):
    candidates, extra = make(tmp_path)
    try:
        err = failure(candidates=candidates, argv=["prog"] + extra)
    finally:
        while _held_open:
            os.close(_held_open.pop())
    check(err, "exec", errno_, program="prog")
    # Exec mode's exit code for it: 127 not found, 126 found but not runnable.
    expected = 127 if errno_ in (errno.ENOENT, errno.ENOTDIR, errno.ENAMETOOLONG,
                                 errno.ELOOP) else 126
    assert spawn_exit_code(err) == expected


def test_exec_tries_each_candidate_and_keeps_eacces(tmp_path):
    (tmp_path / "prog").write_text("#!/bin/sh\n")
    candidates = [str(tmp_path / "missing"), str(tmp_path / "prog"), str(tmp_path / "gone")]
    check(failure(candidates=candidates, argv=["prog"]), "exec", errno.EACCES, program="prog")
    pid = spawn(candidates=[str(tmp_path / "missing"), "/bin/sh"],
                argv=["sh", "-c", "exit 4"])
    assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 4
