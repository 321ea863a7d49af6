"""Each field of an app: exec and the PATH search, environment,
workingDirectory, user and group, supplementaryGIDs, exec failures,
isolators."""
import os

import pytest

from podhelpers import Pod, app, run, sh

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def _script(path, text, mode=0o755):
    os.makedirs(os.path.dirname(str(path)), exist_ok=True)
    with open(str(path), "w") as f:
        f.write(text)
    os.chmod(str(path), mode)


def _env_lines(out):
    return dict(line.split("=", 1) for line in out.splitlines())


# -- exec and PATH -------------------------------------------------------------

def test_exec_searches_the_apps_path(tmp_path):
    _script(tmp_path / "bin" / "myprog", "#!/bin/sh\necho found $0 \"$@\"\n")
    pod = Pod(tmp_path, [app("a", ["myprog", "x y", "z"], environment=[
        {"name": "PATH", "value": "/nonexistent:%s/bin:/bin" % tmp_path}])])
    code, out, err = run(pod)
    assert (code, out) == (0, "found %s/bin/myprog x y z\n" % tmp_path), err


def test_exec_does_not_search_the_init_path(tmp_path):
    _script(tmp_path / "bin" / "myprog", "#!/bin/sh\necho found\n")
    pod = Pod(tmp_path, [app("a", ["myprog"])])
    env = dict(os.environ, PATH="%s/bin:%s" % (tmp_path, os.environ["PATH"]))
    code, out, err = run(pod, env=env)
    assert (code, out) == (127, "")
    assert pod.status("a")["message"] == "unable to exec myprog: No such file or directory"


def test_path_search_skips_non_executables_like_execvp(tmp_path):
    _script(tmp_path / "first" / "prog", "#!/bin/sh\necho wrong\n", mode=0o644)
    _script(tmp_path / "second" / "prog", "#!/bin/sh\necho right\n")
    pod = Pod(tmp_path, [app("a", ["prog"], environment=[
        {"name": "PATH", "value": "%s/first:%s/second" % (tmp_path, tmp_path)}])])
    assert run(pod)[:2] == (0, "right\n")


# -- environment ---------------------------------------------------------------

def test_environment_defaults_and_nothing_of_the_init_leaks(tmp_path):
    pod = Pod(tmp_path, [app("web", ["/usr/bin/env"])])
    env = dict(os.environ, STAGE1_TEST_LEAK="from-the-init", container="docker")
    code, out, err = run(pod, env=env)
    assert code == 0, err
    assert _env_lines(out) == {"PATH": DEFAULT_PATH, "AC_APP_NAME": "web",
                               "container": "stage1"}


def test_environment_from_the_manifest(tmp_path):
    pod = Pod(tmp_path, [app("web", ["/usr/bin/env"], environment=[
        {"name": "PATH", "value": "/bin"}, {"name": "GREETING", "value": "a b=c"},
        {"name": "EMPTY", "value": ""},
        {"name": "AC_APP_NAME", "value": "not-mine"}, {"name": "container", "value": "x"}])])
    code, out, err = run(pod)
    assert code == 0, err
    assert _env_lines(out) == {"PATH": "/bin", "GREETING": "a b=c", "EMPTY": "",
                               "AC_APP_NAME": "web", "container": "stage1"}


def test_each_app_has_its_own_environment(tmp_path):
    pod = Pod(tmp_path, [
        app("one", sh("echo $AC_APP_NAME ${X:-unset} > %s/one.out" % tmp_path),
            environment=[{"name": "X", "value": "1"}]),
        app("two", sh("echo $AC_APP_NAME ${X:-unset} > %s/two.out" % tmp_path))],
        annotations={"stage1/exit-policy": "untilAll"})
    assert run(pod)[0] == 0
    assert pod.read("one.out") == "one 1\n"
    assert pod.read("two.out") == "two unset\n"


# -- workingDirectory ----------------------------------------------------------

def test_working_directory_defaults_to_root(tmp_path):
    pod = Pod(tmp_path, [app("a", ["pwd"])])
    assert run(pod, cwd=str(tmp_path))[:2] == (0, "/\n")


def test_working_directory(tmp_path):
    os.makedirs(tmp_path / "wd")
    pod = Pod(tmp_path, [app("a", ["pwd"], workingDirectory=str(tmp_path / "wd"))])
    assert run(pod)[:2] == (0, "%s/wd\n" % tmp_path)


def test_missing_working_directory_fails_that_app_with_a_reason(tmp_path):
    pod = Pod(tmp_path, [
        app("a", ["true"], workingDirectory="/nonexistent/wd"),
        app("b", sh("touch %s/b-ran; sleep 100" % tmp_path))])
    code, out, err = run(pod)
    st = pod.status("a")
    assert st["state"] == "exited"
    assert st["reason"] in ("ExecFailed", "StartError")
    assert "chdir" in st["message"] and "No such file or directory" in st["message"]
    assert st["exitCode"] == code == 254
    assert pod.raw_code("a") == "254\n"
    assert "a: unable to chdir" in err
    # only that app failed; the exit policy (onAnyFailure) stopped the pod
    # at once, so b was stopped or never started
    st = pod.status("b")
    assert (st["state"], st["reason"]) in (("exited", "Stopped"), ("waiting", None))


# -- user and group ------------------------------------------------------------

ID = sh("echo $(id -u) $(id -g)")


def test_numeric_user_and_group(tmp_path):
    pod = Pod(tmp_path, [app("a", ID, user="1234", group="2345")])
    assert run(pod)[:2] == (0, "1234 2345\n")


def _rootfs(pod, name):
    # An app root makes the pod isolated (isolate.py): these tests, about
    # users and groups from an image's /etc, run it with --no-isolate.
    root = os.path.join(pod.app_dir(name), "rootfs")
    os.makedirs(os.path.join(root, "etc"))
    with open(os.path.join(root, "etc", "passwd"), "w") as f:
        f.write("root:x:0:0:root:/root:/bin/sh\nalice:x:1500:1600::/home/alice:/bin/sh\n"
                "1000:x:1777:1777::/:/bin/sh\n")
    with open(os.path.join(root, "etc", "group"), "w") as f:
        f.write("root:x:0:\nstaff:x:1700:alice\n")
    return root


@pytest.mark.parametrize("stage1_rootfs", [False, True])
def test_user_and_group_names_from_the_apps_root(tmp_path, stage1_rootfs):
    pod = Pod(tmp_path, [app("a", ID, user="alice", group="staff")],
              stage1_rootfs=stage1_rootfs)
    _rootfs(pod, "a")
    code, out, err = run(pod, "--no-isolate")
    assert (code, out) == (0, "1500 1700\n"), err


def test_a_name_in_the_image_wins_over_a_number(tmp_path):
    pod = Pod(tmp_path, [app("a", ID, user="1000", group="0")])
    _rootfs(pod, "a")
    assert run(pod, "--no-isolate")[:2] == (0, "1777 0\n")


def test_user_and_group_from_a_files_owner(tmp_path):
    pod = Pod(tmp_path, [app("a", ID, user="/data/owned", group="/data/owned")])
    root = _rootfs(pod, "a")
    os.makedirs(os.path.join(root, "data"))
    open(os.path.join(root, "data", "owned"), "w").close()
    os.chown(os.path.join(root, "data", "owned"), 1501, 1701)
    assert run(pod, "--no-isolate")[:2] == (0, "1501 1701\n")


@pytest.mark.parametrize("field, value, message", [
    ("user", "bob", "apps[0].app.user: 'bob' is neither in"),
    ("group", "wheel", "apps[0].app.group: 'wheel' is neither in"),
    ("user", "/no/such/file", "apps[0].app.user: /no/such/file: No such file or directory"),
])
def test_unknown_user_or_group_is_refused_before_anything_starts(tmp_path, field, value,
                                                                 message):
    pod = Pod(tmp_path, [app("first", sh("touch %s/ran" % tmp_path)),
                         app("a", ID, **{field: value})])
    pod.manifest["apps"].reverse()
    pod.write()
    _rootfs(pod, "a")
    code, out, err = run(pod, "--no-isolate")
    assert code == 254
    assert message in err and len(err.splitlines()) == 1
    assert not os.path.exists(pod.file("ran"))


def test_supplementary_gids(tmp_path):
    pod = Pod(tmp_path, [app("a", ["grep", "^Groups:", "/proc/self/status"], user="1234",
                             group="2345", supplementaryGIDs=[11, 22, 4000000000])])
    code, out, err = run(pod)
    assert code == 0, err
    assert out.split() == ["Groups:", "11", "22", "4000000000"]


def test_no_supplementary_gids_means_none(tmp_path):
    pod = Pod(tmp_path, [app("a", ["grep", "^Groups:", "/proc/self/status"])])
    os.setgroups([0, 5, 6])
    try:
        code, out, err = run(pod)
    finally:
        os.setgroups([0])
    assert out.split() == ["Groups:"]


def test_credentials_are_dropped_for_good(tmp_path):
    pod = Pod(tmp_path, [app("a", ["grep", "-E", "^(Uid|Gid):", "/proc/self/status"],
                             user="1234", group="2345")])
    out = run(pod)[1].split()
    assert out == ["Uid:"] + ["1234"] * 4 + ["Gid:"] + ["2345"] * 4


# -- exec failures -------------------------------------------------------------

@pytest.mark.parametrize("prog, code, error", [
    ("no-such-program", 127, "No such file or directory"),
    ("/no/such/program", 127, "No such file or directory"),
    ("{tmp}/not-executable", 126, "Permission denied"),
    ("{tmp}", 126, "Permission denied"),
    ("{tmp}/bad-interpreter", 127, "No such file or directory"),
    ("{tmp}/garbage", 126, "Exec format error"),
])
def test_exec_failure(tmp_path, prog, code, error):
    _script(tmp_path / "not-executable", "#!/bin/sh\n", mode=0o644)
    _script(tmp_path / "bad-interpreter", "#!/no/such/interpreter\n")
    _script(tmp_path / "garbage", "\x7fELF-not-really\n")
    prog = prog.format(tmp=tmp_path)
    pod = Pod(tmp_path, [app("a", [prog, "arg"])])
    rc, out, err = run(pod)
    assert rc == code
    st = pod.status("a")
    message = "unable to exec %s: %s" % (prog, error)
    assert (st["state"], st["reason"], st["exitCode"], st["message"], st["signal"]) == \
        ("exited", "ExecFailed", code, message, None)
    assert st["startedAt"] and st["finishedAt"]
    assert pod.raw_code("a") == "%d\n" % code
    lines = err.splitlines()
    # the failure's own line, then why the pod stops
    assert len(lines) == 2 and message in lines[0], err
    assert lines[1].endswith("stopping the pod: a could not be run (%d) (exit policy "
                             "onAnyFailure)" % code), err


def test_an_exec_failure_is_never_restarted(tmp_path):
    pod = Pod(tmp_path, [app("a", ["no-such-program"],
                             annotations={"stage1/restart-policy": "always"})],
              annotations={"stage1/restart-backoff": "0.01"})
    assert run(pod)[0] == 127
    assert pod.status("a")["restartCount"] == 0


# -- isolators -----------------------------------------------------------------

def test_isolators_and_mounts_are_reported_once(tmp_path):
    memory = {"name": "resource/memory", "value": {"limit": "1G"}}
    pod = Pod(tmp_path, [
        app("a", ["true"], isolators=[memory, {"name": "os/linux/no-new-privileges",
                                               "value": True}]),
        app("b", ["true"], isolators=[memory], mountPoints=[{"name": "data", "path": "/d"}])],
        isolators=[memory], volumes=[{"name": "data", "kind": "empty"}])
    pod.manifest["apps"][1]["mounts"] = [{"volume": "data", "path": "/d"}]
    pod.write()
    code, out, err = run(pod)
    assert code == 0
    lines = err.splitlines()
    assert len([l for l in lines if "resource/memory" in l]) == 1
    assert len([l for l in lines if "os/linux/no-new-privileges" in l]) == 1
    assert len([l for l in lines if "mounts" in l]) == 1
    assert len(lines) == 3
    assert all("is not applied" in l for l in lines)


def test_user_lookup_reads_a_changed_passwd_again(tmp_path):
    from stage1.pod import users
    root = str(tmp_path)
    os.makedirs(os.path.join(root, "etc"))
    with open(os.path.join(root, "etc", "passwd"), "w") as f:
        f.write("alice:x:1500:1600::/:/bin/sh\n")
    assert users.resolve("alice", root, "passwd") == 1500
    with open(os.path.join(root, "etc", "passwd"), "w") as f:
        f.write("alice:x:2500:1600::/:/bin/sh\nbob:x:7:7::/:/bin/sh\n")
    assert users.resolve("alice", root, "passwd") == 2500
    assert users.resolve("bob", root, "passwd") == 7
