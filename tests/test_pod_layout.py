"""The pod directory in rkt's layout: manifest, stage1 root, status dir,
pid file, image manifests, and the RKT_LOCK_FD lock."""
import fcntl
import json
import os

import pytest

from podhelpers import Pod, Run, app, run, sh, app_host_pid


def test_status_dir_and_pid_files_in_pod_dir(tmp_path):
    pod = Pod(tmp_path, [app("a", sh("cat %s/pid > %s/seen-pid" % (tmp_path, tmp_path)))])
    with Run(pod) as r:
        assert r.wait() == 0
        init = r.init_pid
    assert os.path.isdir(tmp_path / "rkt" / "status")
    assert pod.read("pid") == "%d\n" % init
    assert pod.read("ppid") == "%d\n" % os.getpid()
    # written before any app starts: the app read it at its very start
    assert pod.read("seen-pid") == "%d\n" % init
    assert pod.raw_code("a") == "0\n"


def test_stage1_rootfs_is_the_stage1_root_when_it_exists(tmp_path):
    pod = Pod(tmp_path, [app("a", ["true"])], stage1_rootfs=True)
    assert run(pod)[0] == 0
    assert pod.raw_code("a") == "0\n"
    assert os.path.isdir(tmp_path / "stage1" / "rootfs" / "rkt" / "status")
    assert not os.path.exists(tmp_path / "rkt")
    # the pod's own files stay in the pod directory
    assert os.path.exists(tmp_path / "pid")
    assert pod.pod_status()["state"] == "exited"


def test_pid_file_in_a_pid_namespace_holds_the_namespace_pid(tmp_path):
    pod = Pod(tmp_path, [app("a", sh("cat %s/pid > %s/seen-pid" % (tmp_path, tmp_path)))])
    assert run(pod, pid1=True)[0] == 0
    assert pod.read("seen-pid") == "1\n"


def _image_manifest(pod, name, body, annotations=None):
    os.makedirs(pod.app_dir(name), exist_ok=True)
    doc = {"acKind": "ImageManifest", "acVersion": "0.8.11", "name": "example.com/" + name,
           "app": body}
    if annotations:
        doc["annotations"] = [{"name": k, "value": v} for k, v in annotations.items()]
    with open(os.path.join(pod.app_dir(name), "manifest"), "w") as f:
        json.dump(doc, f)


@pytest.mark.parametrize("stage1_rootfs", [False, True])
def test_app_section_falls_back_to_the_image_manifest(tmp_path, stage1_rootfs):
    runtime = app("img", [])
    del runtime["app"]
    pod = Pod(tmp_path, [runtime], stage1_rootfs=stage1_rootfs)
    _image_manifest(pod, "img", {"exec": ["/bin/sh", "-c", "echo from-image $X; exit 7"],
                                 "user": "0", "group": "0",
                                 "environment": [{"name": "X", "value": "yes"}]})
    code, out, err = run(pod)
    assert (code, out) == (7, "from-image yes\n"), err


def test_image_manifest_annotations_apply_unless_the_pod_overrides(tmp_path):
    runtime = app("img", [], annotations={"stage1/restart-policy": "never"})
    del runtime["app"]
    pod = Pod(tmp_path, [runtime], annotations={"stage1/restart-backoff": "0.05"})
    _image_manifest(pod, "img", {"exec": ["/bin/sh", "-c", "exit 3"], "user": "0", "group": "0"},
                    annotations={"stage1/restart-policy": "on-failure"})
    assert run(pod)[0] == 3
    assert pod.status("img")["restartCount"] == 0


def test_missing_image_manifest_is_a_stage1_failure(tmp_path):
    runtime = app("img", [])
    del runtime["app"]
    pod = Pod(tmp_path, [runtime])
    code, out, err = run(pod)
    assert code == 254
    assert "app img has no app section" in err and "manifest" in err
    assert len(err.splitlines()) == 1
    assert not os.path.exists(tmp_path / "pid")


def _fds(pid):
    return {int(fd): os.readlink("/proc/%d/fd/%s" % (pid, fd))
            for fd in os.listdir("/proc/%d/fd" % pid)}


def _locked(path):
    """Is path flocked by someone else?"""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)


@pytest.mark.parametrize("pid1", [False, True])
def test_rkt_lock_fd_stays_locked_in_the_init_and_out_of_apps(tmp_path, pid1):
    pod = Pod(tmp_path, [app("a", ["sleep", "100"])])
    lock = os.open(str(tmp_path), os.O_RDONLY | os.O_DIRECTORY)
    fcntl.flock(lock, fcntl.LOCK_EX)
    env = dict(os.environ, RKT_LOCK_FD=str(lock))
    try:
        r = Run(pod, pid1=pid1, env=env, pass_fds=[lock])
    finally:
        os.close(lock)      # from now on only the init holds the lock
    with r:
        app_pid = app_host_pid(r, pod, "a")
        assert _fds(r.init_pid).get(lock) == str(tmp_path)
        assert str(tmp_path) not in _fds(app_pid).values()
        assert lock not in _fds(app_pid)
        assert _locked(str(tmp_path))
        r.signal(15)
        r.wait()
    assert not _locked(str(tmp_path))


def test_a_bad_rkt_lock_fd_is_reported_and_the_pod_runs(tmp_path):
    pod = Pod(tmp_path, [app("a", ["true"])])
    code, _, err = run(pod, env=dict(os.environ, RKT_LOCK_FD="77"))
    assert code == 0
    assert "RKT_LOCK_FD=77" in err
