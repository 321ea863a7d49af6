"""Each app's root, seen from inside: /dev, /proc, /sys, /tmp, volumes
(host and empty, read-write and read-only, recursive or not, files), the
mount points created, readOnlyRootFS; symlinks of the image stay inside."""
import os
import stat

import pytest

from isohelpers import podbase  # noqa: F401 (a fixture)
from isohelpers import IsoPod, iso_run, sh_app


def _pod(base, script, volumes=(), mounts=(), **fields):
    runtime = sh_app("a", script, **fields)
    if mounts:
        runtime["mounts"] = [{"volume": v, "path": p} for v, p in mounts]
    pod = IsoPod(base, [runtime], volumes=list(volumes))
    return pod


DEV_NODES = {"null": (1, 3), "zero": (1, 5), "full": (1, 7), "random": (1, 8),
             "urandom": (1, 9), "tty": (5, 0)}


def test_dev_has_the_nodes_a_private_devpts_and_shm(podbase):
    script = ("for n in null zero full random urandom tty console ptmx pts/ptmx; do "
              "stat -L -c '%n %F %t %T' /dev/$n; done; readlink /dev/ptmx; "
              "stat -c '%a' /dev/shm; ls /dev/pts; echo x > /dev/null; "
              "head -c 4 /dev/zero | wc -c; grep -E ' /dev/(pts|shm) ' /proc/self/mounts")
    code, out, err = iso_run(_pod(podbase, script))
    assert code == 0, err
    lines = out.splitlines()
    nodes = {l.split()[0][5:]: l.split(" ", 1)[1] for l in lines[:9]}
    for name, (major, minor) in DEV_NODES.items():
        assert nodes[name] == "character special file %x %x" % (major, minor)
    assert nodes["console"].startswith("character special file")
    assert nodes["ptmx"] == nodes["pts/ptmx"] == "character special file 5 2"
    assert lines[9:13] == ["pts/ptmx", "1777", "ptmx", "4"]
    assert lines[13].split()[:3] == ["devpts", "/dev/pts", "devpts"]
    assert "newinstance" not in lines[13] or True    # the kernel does not show it
    assert lines[14].split()[:3] == ["shm", "/dev/shm", "tmpfs"]


def test_proc_is_fresh_sys_is_read_only_tmp_is_1777(podbase):
    script = ("grep -E ' /(proc|sys) ' /proc/self/mounts; stat -c '%a' /tmp; "
              "touch /sys/x 2>/dev/null && echo sys-writable || echo sys-read-only; "
              "touch /tmp/x && echo tmp-writable")
    code, out, err = iso_run(_pod(podbase, script))
    assert code == 0, err
    proc, sys_, mode, sys_write, tmp_write = out.splitlines()
    assert proc.split()[:3] == ["proc", "/proc", "proc"]
    assert sys_.split()[:3] == ["sysfs", "/sys", "sysfs"]
    assert sys_.split()[3].split(",")[0] == "ro"
    assert (mode, sys_write, tmp_write) == ("1777", "sys-read-only", "tmp-writable")


def test_tmp_of_the_image_gets_mode_1777(podbase):
    pod = _pod(podbase, "stat -c '%a' /tmp")
    os.mkdir(os.path.join(pod.app_root("a"), "tmp"), 0o700)
    assert iso_run(pod)[:2] == (0, "1777\n")


def test_host_volume_read_write_and_read_only(podbase, tmp_path):
    rw, ro = tmp_path / "rw", tmp_path / "ro"
    rw.mkdir()
    ro.mkdir()
    (ro / "given").write_text("from the host\n")
    script = ("echo written > /rw/file; cat /ro/given; "
              "echo nope > /ro/file 2>/dev/null && echo ro-writable || echo ro-read-only")
    pod = _pod(podbase, script,
               volumes=[{"name": "rw", "kind": "host", "source": str(rw)},
                        {"name": "ro", "kind": "host", "source": str(ro), "readOnly": True}],
               mounts=[("rw", "/rw"), ("ro", "/srv/deep/ro")])
    pod.manifest["apps"][0]["app"]["exec"][2] = script.replace("/ro/", "/srv/deep/ro/")
    pod.write()
    code, out, err = iso_run(pod)
    assert code == 0, err
    assert out == "from the host\nro-read-only\n"
    assert (rw / "file").read_text() == "written\n"
    assert not (ro / "file").exists()
    # the missing target directories were created in the image
    assert os.path.isdir(os.path.join(pod.app_root("a"), "srv", "deep", "ro"))


def test_mount_point_read_only_makes_the_mount_read_only(podbase, tmp_path):
    (tmp_path / "v").mkdir()
    pod = _pod(podbase, "touch /data/x 2>/dev/null && echo writable || echo read-only",
               volumes=[{"name": "data", "kind": "host", "source": str(tmp_path / "v")}],
               mountPoints=[{"name": "data", "path": "/data", "readOnly": True}])
    assert iso_run(pod)[:2] == (0, "read-only\n")


def test_a_mount_point_is_satisfied_by_the_volume_of_its_name(podbase, tmp_path):
    (tmp_path / "v").mkdir()
    (tmp_path / "v" / "f").write_text("found\n")
    pod = _pod(podbase, "cat /var/lib/data/f",
               volumes=[{"name": "data", "kind": "host", "source": str(tmp_path / "v")}],
               mountPoints=[{"name": "data", "path": "/var/lib/data"}])
    assert iso_run(pod)[:2] == (0, "found\n")


@pytest.mark.parametrize("recursive", [True, False])
def test_recursive_host_volume(podbase, tmp_path, recursive):
    from stage1.engine import native
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "f").write_text("below\n")
    native.mount(str(tmp_path / "other"), str(src / "sub"), None, native.MS_BIND)
    try:
        pod = _pod(podbase, "cat /v/sub/f 2>/dev/null || echo nothing; "
                             "touch /v/sub/g 2>/dev/null && echo writable || echo read-only",
                   volumes=[{"name": "v", "kind": "host", "source": str(src),
                             "recursive": recursive, "readOnly": True}],
                   mounts=[("v", "/v")])
        code, out, err = iso_run(pod)
    finally:
        native.umount(str(src / "sub"), native.MNT_DETACH)
    assert code == 0, err
    # recursive: the submount comes along, read-only too; else an empty directory
    assert out == ("below\nread-only\n" if recursive else "nothing\nread-only\n")


def test_host_volume_of_a_file(podbase, tmp_path):
    (tmp_path / "conf").write_text("key=value\n")
    pod = _pod(podbase, "cat /etc/app.conf",
               volumes=[{"name": "conf", "kind": "host", "source": str(tmp_path / "conf")}],
               mounts=[("conf", "/etc/app.conf")])
    assert iso_run(pod)[:2] == (0, "key=value\n")


def test_empty_volume_is_a_directory_of_the_pod_shared_by_apps(podbase):
    vol = {"name": "work", "kind": "empty", "mode": "0750", "uid": 1500, "gid": 1600}
    a = sh_app("a", "stat -c '%a %u %g' /work; echo hello > /work/msg")
    b = sh_app("b", "while [ ! -s /shared/msg ]; do sleep 0.01; done; cat /shared/msg")
    a["mounts"] = [{"volume": "work", "path": "/work"}]
    b["mounts"] = [{"volume": "work", "path": "/shared"}]
    pod = IsoPod(podbase, [a, b], volumes=[vol],
                 annotations={"stage1/exit-policy": "untilAll"})
    code, out, err = iso_run(pod)
    assert code == 0, err
    assert sorted(out.splitlines()) == ["750 1500 1600", "hello"]
    directory = os.path.join(pod.root, "rkt", "volumes", "work")
    st = os.stat(directory)
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o750, 1500, 1600)
    with open(os.path.join(directory, "msg")) as f:
        assert f.read() == "hello\n"


def test_read_only_root_keeps_its_mounts_writable(podbase, tmp_path):
    (tmp_path / "v").mkdir()
    script = ("touch /x 2>/dev/null && echo root-writable || echo root-read-only; "
              "touch /v/x && echo volume-writable; echo y > /dev/null && echo dev-writable; "
              "touch /dev/shm/x && echo shm-writable")
    pod = _pod(podbase, script, volumes=[{"name": "v", "kind": "host",
                                           "source": str(tmp_path / "v")}],
               mounts=[("v", "/v")])
    pod.manifest["apps"][0]["readOnlyRootFS"] = True
    pod.write()
    code, out, err = iso_run(pod)
    assert code == 0, err
    assert out.split() == ["root-read-only", "volume-writable", "dev-writable", "shm-writable"]
    assert not os.path.exists(os.path.join(pod.app_root("a"), "x"))


def test_without_read_only_root_the_root_is_writable(podbase):
    pod = _pod(podbase, "touch /x && echo root-writable")
    assert iso_run(pod)[:2] == (0, "root-writable\n")
    assert os.path.exists(os.path.join(pod.app_root("a"), "x"))


def test_a_symlink_in_the_image_never_leads_out_of_the_root(podbase, tmp_path):
    (tmp_path / "v").mkdir()
    pod = _pod(podbase, "ls /escape", volumes=[{"name": "v", "kind": "host",
                                                 "source": str(tmp_path / "v")}],
               mounts=[("v", "/escape/target")])
    # /escape -> /../../../../outside: resolved inside the root, as the app sees it
    os.symlink("/../../../../%s/outside" % tmp_path, os.path.join(pod.app_root("a"), "escape"))
    code, out, err = iso_run(pod)
    assert code == 0, err
    assert out == "target\n"
    assert not (tmp_path / "outside").exists()
    assert os.path.isdir(os.path.join(pod.app_root("a"), str(tmp_path).lstrip("/"),
                                      "outside", "target"))


def test_the_app_runs_in_its_root_with_its_working_directory(podbase):
    pod = _pod(podbase, "pwd; ls /", workingDirectory="/etc")
    code, out, err = iso_run(pod)
    assert code == 0, err
    cwd, *entries = out.split()
    assert cwd == "/etc"
    assert set(entries) >= {"bin", "etc", "proc", "sys", "dev", "tmp"}
    assert "stage1" not in entries and "pod" not in entries


def test_forty_apps_started_in_one_pass_each_run_in_its_own_root_as_its_own_user(podbase):
    """40 apps with no order between them are one start pass, spawned by
    the spawner and its helpers (a batch of 32 or more is shared): each app
    still runs in its own root (a file only its root has), as its own user,
    with its own environment."""
    names = ["app%02d" % i for i in range(40)]
    apps = [sh_app(name, "echo $AC_APP_NAME $(cat /etc/owner) $(id -u):$(id -g)",
                   user="1500" if i % 2 else "0", group="1600" if i % 2 else "0")
            for i, name in enumerate(names)]
    pod = IsoPod(podbase, apps)
    for name in names:
        with open(os.path.join(pod.app_root(name), "etc", "owner"), "w") as f:
            f.write(name + "\n")
    code, out, err = iso_run(pod)
    assert code == 0, err
    assert sorted(out.splitlines()) == ["%s %s %s" % (name, name, "1500:1600" if i % 2 else "0:0")
                                        for i, name in enumerate(names)]
