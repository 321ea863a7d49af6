"""eventHandlers: pre-start runs to completion, with the app's environment
and credentials, before the app; post-stop runs after the app ended,
whatever ended it."""
import os

import pytest

from podhelpers import Pod, Run, app, run, sh


def hooks(pre=None, post=None):
    out = []
    if pre:
        out.append({"name": "pre-start", "exec": pre})
    if post:
        out.append({"name": "post-stop", "exec": post})
    return out


def test_pre_start_runs_to_completion_with_the_apps_env_and_credentials(tmp_path):
    pod = Pod(tmp_path, [app(
        "a", sh("echo app $(id -u) $(id -g)"), user="1234", group="2345",
        workingDirectory="/tmp", environment=[{"name": "X", "value": "x"}],
        eventHandlers=hooks(pre=sh("echo pre $AC_APP_NAME $X $(id -u) $(id -g) $(pwd); "
                                   "sleep 0.2; echo pre done")))])
    code, out, err = run(pod)
    assert code == 0, err
    assert out.splitlines() == ["pre a x 1234 2345 /tmp", "pre done", "app 1234 2345"]


def test_failing_pre_start_fails_the_app_which_never_runs(tmp_path):
    pod = Pod(tmp_path, [app("a", sh("touch %s/ran" % tmp_path),
                             eventHandlers=hooks(pre=sh("exit 3")))])
    code, out, err = run(pod)
    assert code == 3
    st = pod.status("a")
    assert (st["state"], st["reason"], st["exitCode"]) == ("exited", "PreStartFailed", 3)
    assert "pre-start" in st["message"] and "3" in st["message"]
    assert pod.raw_code("a") == "3\n"
    assert not os.path.exists(pod.file("ran"))


def test_pre_start_that_cannot_run_fails_the_app(tmp_path):
    pod = Pod(tmp_path, [app("a", sh("touch %s/ran" % tmp_path),
                             eventHandlers=hooks(pre=["no-such-hook"]))])
    code, out, err = run(pod)
    st = pod.status("a")
    assert st["reason"] == "PreStartFailed" and st["exitCode"] == code != 0
    assert "a: pre-start handler: unable to exec no-such-hook" in err
    assert not os.path.exists(pod.file("ran"))


def test_stopping_the_pod_during_pre_start(tmp_path):
    pod = Pod(tmp_path, [app("a", sh("touch %s/ran" % tmp_path), eventHandlers=hooks(
        pre=sh("touch %s/pre; exec sleep 100" % tmp_path)))])
    with Run(pod) as r:
        pod.wait_file("pre")
        r.signal(15)
        assert r.wait() == 0
    st = pod.status("a")
    assert (st["state"], st["reason"]) == ("exited", "Stopped")
    assert not os.path.exists(pod.file("ran"))


@pytest.mark.parametrize("app_exec, code, reason", [
    (sh("exit 0"), 0, "Completed"),
    (sh("exit 5"), 5, "Error"),
    (sh("kill -USR1 $$"), 138, "Signaled"),
    (["no-such-program"], 127, "ExecFailed"),
])
def test_post_stop_runs_after_the_app_ended(tmp_path, app_exec, code, reason):
    post = sh("echo post $AC_APP_NAME $(cat %s/rkt/status/a)" % tmp_path)
    pod = Pod(tmp_path, [app("a", app_exec, eventHandlers=hooks(post=post))])
    rc, out, err = run(pod)
    assert rc == code
    assert pod.status("a")["reason"] == reason
    # the app's status file was final when post-stop ran
    assert out.splitlines()[-1] == "post a %d" % code


def test_post_stop_runs_after_a_stop_and_the_pod_waits_for_it(tmp_path):
    post = sh("sleep 0.2; echo post $(cat %s/rkt/status/a)" % tmp_path)
    pod = Pod(tmp_path, [app("a", sh("touch %s/up; exec sleep 100" % tmp_path),
                             eventHandlers=hooks(post=post))])
    with Run(pod) as r:
        pod.wait_file("up")
        r.signal(15)
        assert r.wait() == 0
        assert r.stdout() == "post 143\n"
    assert pod.status("a")["reason"] == "Stopped"
    assert pod.pod_status()["state"] == "exited"


def test_post_stop_runs_after_the_app_was_killed(tmp_path):
    post = sh("echo post $(cat %s/rkt/status/a)" % tmp_path)
    pod = Pod(tmp_path, [app("a", sh("trap '' TERM; touch %s/up; sleep 100" % tmp_path),
                             eventHandlers=hooks(post=post))],
              annotations={"stage1/stop-timeout": "0.2"})
    with Run(pod) as r:
        pod.wait_file("up")
        r.signal(15)
        assert r.wait() == 0
        assert r.stdout() == "post 137\n"
    assert pod.status("a")["reason"] == "Killed"


def _flaky_app(tmp_path, hook_kw, backoff):
    count = tmp_path / "count"
    script = "n=$(cat %s 2>/dev/null || echo 0); n=$((n+1)); echo $n > %s; " \
             "echo run $n; [ $n -ge 3 ]" % (count, count)
    return Pod(tmp_path, [app("a", sh(script), eventHandlers=hooks(**hook_kw),
                              annotations={"stage1/restart-policy": "on-failure"})],
               annotations={"stage1/restart-backoff": backoff})


def test_hooks_run_around_every_restart(tmp_path):
    pod = _flaky_app(tmp_path, dict(pre=sh("echo pre"), post=sh("echo post")), "0.1")
    code, out, err = run(pod)
    assert code == 0, err
    assert out.splitlines() == ["pre", "run 1", "post", "pre", "run 2", "post",
                                "pre", "run 3", "post"]
    assert pod.status("a")["restartCount"] == 2


def test_a_restart_waits_for_the_previous_post_stop(tmp_path):
    pod = _flaky_app(tmp_path, dict(pre=sh("echo pre"), post=sh("sleep 0.2; echo post")),
                     "0.01")
    code, out, err = run(pod)
    assert code == 0, err
    assert out.splitlines() == ["pre", "run 1", "post", "pre", "run 2", "post",
                                "pre", "run 3", "post"]
