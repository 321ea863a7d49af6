"""An isolated pod's namespaces, seen from inside its apps: PID 1, /proc,
hostname, network, IPC, mounts that stay in the pod; and from the host:
POD/pid, POD/ppid, the process titles, what turns isolation on or off."""
import os
import subprocess
import socket


from isohelpers import podbase  # noqa: F401 (a fixture)
from isohelpers import IsoPod, IsoRun, iso_run, mounts_below, sh_app, wait_for
from podhelpers import cmdline, nspid, children


def _ns(kind):
    return os.readlink("/proc/self/ns/" + kind)


def test_pid1_is_the_init_and_proc_shows_only_the_pod(podbase):
    pod = IsoPod(podbase, [sh_app("a", "tr '\\0' ' ' < /proc/1/cmdline; echo; "
                                        "cd /proc; echo [0-9]*; cat /proc/1/comm")])
    code, out, err = iso_run(pod)
    assert code == 0, err
    title, pids, comm = out.splitlines()
    assert title.split("\0")[0].startswith("stage1 init: %s" % pod.uuid)
    assert comm == ("stage1 init: %s" % pod.uuid)[:15]
    # the init, the app's shell and what it runs: a handful of small pids
    # (2 is the init's spawner thread, which /proc does not list)
    pids = [int(p) for p in pids.split()]
    assert 1 in pids and 3 in pids and 2 not in pids and len(pids) <= 4 and max(pids) < 20, pids
    assert os.getpid() not in pids or os.getpid() < 20


def test_pid_files_the_titles_and_the_init_as_the_host_sees_it(podbase):
    pod = IsoPod(podbase, [sh_app("a", "sleep 60")])
    with IsoRun(pod) as r:
        pod.wait_state("a", "running")
        host_side = r.proc.pid
        [init] = wait_for(lambda: children(host_side), what="the pod's init")
        assert pod.read("pid") == "%d\n" % init
        assert pod.read("ppid") == "%d\n" % host_side
        assert nspid(init) == 1
        assert cmdline(host_side)[0] == ("stage1 run: %s" % pod.uuid).encode()
        assert cmdline(init)[0] == ("stage1 init: %s" % pod.uuid).encode()
        assert pod.pod_status()["pid"] == init
        # the app's pid in the status file is its pid in the pod: 3, after
        # the init (1) and its spawner thread (2, native/children.c)
        assert pod.status("a")["pid"] == 3
        assert [nspid(p) for p in children(init)] == [3]


def test_pod_pid_is_written_before_any_app_starts(podbase):
    pod = IsoPod(podbase, [sh_app("a", "cat /pod/pid")])
    pod.manifest["volumes"] = [{"name": "pod", "kind": "host", "source": pod.path}]
    pod.manifest["apps"][0]["mounts"] = [{"volume": "pod", "path": "/pod"}]
    pod.write()
    with IsoRun(pod) as r:
        assert r.wait() == 0, r.stderr()
        [line] = r.stdout().splitlines()
        assert line == pod.read("pid").strip()


def test_hostname_from_the_flag_else_from_the_pod_uuid(podbase):
    host = socket.gethostname()
    pod = IsoPod(podbase, [sh_app("a", "hostname")])
    assert iso_run(pod, "--hostname=web-1")[:2] == (0, "web-1\n")
    pod = IsoPod(podbase, [sh_app("a", "hostname")])
    assert iso_run(pod)[:2] == (0, "rkt-%s\n" % pod.uuid)
    assert socket.gethostname() == host


def test_apps_share_the_pods_namespaces_and_not_the_hosts(podbase, tmp_path):
    script = "for n in pid mnt uts ipc net; do readlink /proc/self/ns/$n; done > /v/%s; " \
             "until test -e /v/%s; do sleep 0.01; done"
    # Each waits for the other: a namespace freed before the other app's is
    # made may give its inode number to the new one.
    pod = IsoPod(podbase, [sh_app("a", script % ("a", "b")), sh_app("b", script % ("b", "a"))],
                 volumes=[{"name": "v", "kind": "host", "source": str(tmp_path)}])
    for runtime in pod.manifest["apps"]:
        runtime["mounts"] = [{"volume": "v", "path": "/v"}]
    pod.manifest["annotations"] = [{"name": "stage1/exit-policy", "value": "untilAll"}]
    pod.write()
    code, _, err = iso_run(pod, "--net=none")
    assert code == 0, err
    a, b = (open(tmp_path / n).read().split() for n in "ab")
    # pid, uts, ipc and net are the pod's; each app has a mount namespace of
    # its own (pivot_root), a copy of the pod's
    assert a[:1] + a[2:] == b[:1] + b[2:]
    assert a[1] != b[1]
    assert all(inside != _ns(kind) for inside, kind in zip(a, "pid mnt uts ipc net".split()))
    assert all(inside != _ns(kind) for inside, kind in zip(b, "pid mnt uts ipc net".split()))


ESCAPE_C = r"""
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>
/* The classic chroot escape: chroot into a subdirectory while the cwd stays
   outside it, walk up, and chroot to where the walk ended. */
int main(int argc, char **argv)
{
    struct stat st;
    int i;
    mkdir("/jail", 0755);
    if (chroot("/jail") != 0) { perror("chroot"); return 2; }
    for (i = 0; i < 64; i++) chdir("..");
    chroot(".");
    return stat(argv[1], &st) == 0 ? 0 : 1;   /* 0: the host's file is in sight */
}
"""


def test_an_app_cannot_leave_its_root_even_with_cap_sys_chroot(podbase, tmp_path):
    marker = tmp_path / "host-only-marker"
    marker.write_text("")
    src = tmp_path / "escape.c"
    src.write_text(ESCAPE_C)
    pod = IsoPod(podbase, [{"name": "a", "image": {"id": "sha512-" + "0" * 64},
                            "app": {"exec": ["/escape", str(marker)], "user": "0",
                                    "group": "0"}}])
    r = subprocess.run(["cc", "-static", "-O", "-o", os.path.join(pod.app_root("a"), "escape"),
                        str(src)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    # The same program does escape a plain chroot, so the test can fail.
    jail = tmp_path / "jail-root"
    jail.mkdir()
    subprocess.run(["cp", os.path.join(pod.app_root("a"), "escape"), str(jail)], check=True)
    plain = subprocess.run(["chroot", str(jail), "/escape", str(marker)])
    assert plain.returncode == 0
    code, _, err = iso_run(pod)
    assert code == 1, err       # CAP_SYS_CHROOT is in rkt's default set, and still no way out

def test_net_host_keeps_the_hosts_network(podbase):
    pod = IsoPod(podbase, [sh_app("a", "readlink /proc/self/ns/net; ls /sys/class/net")])
    code, out, err = iso_run(pod, "--net=host")
    assert code == 0, err
    lines = out.split()
    assert lines[0] == _ns("net")
    assert sorted(lines[1:]) == sorted(os.listdir("/sys/class/net"))


def test_net_none_gives_only_lo_and_it_is_up(podbase):
    pod = IsoPod(podbase, [sh_app("a", "ls /sys/class/net; cat /sys/class/net/lo/flags")])
    code, out, err = iso_run(pod, "--net=none")
    assert code == 0, err
    names, flags = out.split()
    assert names == "lo"
    assert int(flags, 16) & 1    # IFF_UP


def test_nothing_mounted_in_the_pod_shows_on_the_host(podbase, tmp_path):
    before = mounts_below(str(tmp_path))
    pod = IsoPod(podbase, [sh_app("a", "sleep 60")],
                 volumes=[{"name": "v", "kind": "empty"}])
    pod.manifest["apps"][0]["mounts"] = [{"volume": "v", "path": "/data"}]
    pod.write()
    with IsoRun(pod) as r:
        pod.wait_state("a", "running")
        init = int(pod.read("pid"))
        with open("/proc/%d/mountinfo" % init) as f:
            inside = [l.split()[4] for l in f]
        root = os.path.realpath(pod.app_root("a"))
        for target in ("", "/proc", "/sys", "/dev", "/dev/pts", "/dev/shm", "/data"):
            assert root + target in inside
        assert mounts_below(str(tmp_path)) == before == []
    assert mounts_below(str(tmp_path)) == []


def test_no_isolate_runs_apps_on_the_host_even_with_app_roots(podbase):
    pod = IsoPod(podbase, [sh_app("a", "hostname; readlink /proc/self/ns/mnt")])
    code, out, err = iso_run(pod, "--no-isolate")
    assert code == 0, err
    assert out.split() == [socket.gethostname(), _ns("mnt")]


def test_isolate_needs_every_app_root(podbase):
    pod = IsoPod(podbase, [sh_app("a", "true")], roots=False)
    code, out, err = iso_run(pod, "--isolate")
    assert code == 254
    [line] = err.splitlines()
    assert "apps[0].name: the root of app a, %s, does not exist" % pod.app_root("a") in line


def test_isolate_and_no_isolate_exclude_each_other(podbase):
    pod = IsoPod(podbase, [sh_app("a", "true")])
    code, _, err = iso_run(pod, "--isolate", "--no-isolate")
    assert code == 2 and "exclude each other" in err
