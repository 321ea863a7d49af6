"""How `stage1 run` is called: a pod directory, or rkt's way (cwd in the
pod, its flags, the UUID last); --grace, -v, --interactive, usage errors."""
import os
import subprocess

import pytest

from podhelpers import Pod, Run, app, run, sh, stage1, STAGE1

UUID = "6f9b2d5e-1c3a-4e8b-9a0d-2b7c4f1e3a55"
RKT_FLAGS = ["--debug", "--net=host", "--mds-token=x", "--local-config=/x", "--hostname=h",
             "--private-users=", "--dns=8.8.8.8", "--set-env=A=B", "--disable-seccomp"]


def test_a_positional_naming_a_directory_is_the_pod(tmp_path):
    pod = Pod(tmp_path / "pod", [app("a", sh("exit 3"))])
    code, _, err = run(pod, cwd=str(tmp_path))
    assert code == 3, err
    assert pod.code("a") == 3


def test_rkt_style_cwd_is_the_pod_and_the_uuid_comes_last(tmp_path):
    # rkt names the pod directory by the pod's UUID (var/lib/rkt/pods/run/UUID)
    pod = Pod(tmp_path / UUID, [app("a", sh("echo $AC_APP_NAME ran"))])
    with Run(pod, *RKT_FLAGS, UUID, pod_arg=False, cwd=pod.path) as r:
        assert r.wait() == 0, r.stderr()
        assert r.stdout() == "a ran\n"
        # --debug is -v: every rkt flag it accepted is in the debug log
        for flag in ("--net=host", "--hostname=h", "--private-users="):
            assert "run flag %s accepted" % flag in r.stderr()
    assert pod.code("a") == 0


def test_mutable_pod_outlives_its_apps_until_stopped_by_uuid(tmp_path):
    pod = Pod(tmp_path / UUID, [app("a", ["true"])])
    with Run(pod, "--mutable", UUID, pod_arg=False, cwd=pod.path) as r:
        pod.wait_state("a", "exited")
        assert pod.pod_status()["state"] == "running" and r.alive()
        stop = stage1("stop", UUID, cwd=pod.path)
        assert stop.returncode == 0, stop.stderr
        assert r.wait() == 0
    assert pod.pod_status()["state"] == "exited"


def test_without_interactive_apps_read_dev_null(tmp_path):
    pod = Pod(tmp_path, [app("a", ["cat"])])
    with Run(pod, stdin=subprocess.PIPE) as r:
        assert r.wait() == 0
        assert r.stdout() == ""


def test_interactive_gives_the_app_the_init_stdin(tmp_path):
    pod = Pod(tmp_path, [app("a", ["cat"])])
    with open(tmp_path / "input", "w") as f:
        f.write("typed\n")
    with open(tmp_path / "input") as stdin, Run(pod, "--interactive", stdin=stdin) as r:
        assert r.wait() == 0
        assert r.stdout() == "typed\n"


def test_verbose_logs_decisions(tmp_path):
    pod = Pod(tmp_path, [app("a", ["true"])])
    code, _, err = run(pod, "-v")
    assert code == 0
    assert "a: started pid" in err and "a: pid" in err and "exited 0 (Completed)" in err


def test_quiet_by_default(tmp_path):
    pod = Pod(tmp_path, [app("a", ["true"])])
    assert run(pod) == (0, "", "")


def test_grace_flag_bounds_the_stop(tmp_path):
    pod = Pod(tmp_path, [app("a", sh("trap '' TERM; touch %s/up; sleep 100" % tmp_path))])
    with Run(pod, "--grace", "0.2") as r:
        pod.wait_file("up")
        r.signal(15)
        assert r.wait() == 0      # a pod stopped on request ends well
    st = pod.status("a")
    assert (st["reason"], st["signal"], st["exitCode"]) == ("Killed", "SIGKILL", 137)


def test_stop_timeout_annotation_wins_over_grace_flag(tmp_path):
    pod = Pod(tmp_path, [app("a", sh("trap '' TERM; touch %s/up; sleep 100" % tmp_path))],
              annotations={"stage1/stop-timeout": "0.1"})
    with Run(pod, "--grace", "100") as r:
        pod.wait_file("up")
        r.signal(15)
        assert r.wait(5) == 0
    assert pod.status("a")["reason"] == "Killed"


@pytest.mark.parametrize("args, message", [
    (["--grace"], "option --grace needs a value"),
    (["--grace", "soon"], "--grace must be a number of seconds"),
    (["--grace=-1"], "--grace must be a number of seconds"),
    (["--bogus"], "unknown option --bogus"),
    (["-v=1"], "option -v takes no value"),
    (["one", "two"], "run takes one pod directory or UUID, not 2"),
])
def test_usage_errors_exit_2_with_one_line_and_the_usage(tmp_path, args, message):
    pod = Pod(tmp_path, [app("a", sh("touch %s/ran" % tmp_path))])
    p = subprocess.run([STAGE1, "run"] + args, cwd=str(tmp_path), capture_output=True,
                       text=True, timeout=10)
    assert p.returncode == 2
    first, usage = p.stderr.splitlines()
    assert first.startswith("stage1: ") and message in first
    assert usage.startswith("usage: stage1 run")
    assert not os.path.exists(pod.file("ran"))


def test_help(tmp_path):
    p = stage1("run", "--help")
    assert p.returncode == 0 and p.stdout.startswith("usage: stage1 run")


def test_no_manifest_in_cwd_is_a_stage1_failure(tmp_path):
    os.makedirs(tmp_path / UUID)
    p = subprocess.run([STAGE1, "run", UUID], cwd=str(tmp_path / UUID), capture_output=True,
                       text=True, timeout=10)
    assert p.returncode == 254
    assert "unable to read the pod manifest %s/pod" % (tmp_path / UUID) in p.stderr
    assert len(p.stderr.splitlines()) == 1


def test_a_uuid_that_is_not_the_current_directorys_is_refused(tmp_path):
    pod = Pod(tmp_path, [app("a", sh("touch ran"))])
    p = subprocess.run([STAGE1, "run", UUID], cwd=pod.path, capture_output=True,
                       text=True, timeout=10)
    assert (p.returncode, p.stderr) == (254, "stage1: %s: no such pod directory, and the "
                                        "current directory is not pod %s, nor is there a pod "
                                        "%s in /run/stage1\n" % (UUID, UUID, UUID))
    assert not os.path.exists(pod.file("ran")) and not os.path.exists(pod.file("pid"))


def test_run_of_a_directory_that_does_not_exist(tmp_path):
    p = subprocess.run([STAGE1, "run", "/nonexistent/pod"], cwd=str(tmp_path),
                       capture_output=True, text=True, timeout=10)
    assert (p.returncode, p.stderr) == (254, "stage1: /nonexistent/pod: no such pod directory\n")
