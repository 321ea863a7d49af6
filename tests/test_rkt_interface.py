"""rkt's stage1 interface: the stage1.aci image, and run, enter, stop and gc
driven exactly as rkt drives them (cwd in the pod directory, rkt's flags,
the UUID last, RKT_LOCK_FD holding a flock on the pod directory)."""
import fcntl
import json
import os
import signal
import subprocess
import tarfile

import pytest

from isohelpers import podbase  # noqa: F401 (a fixture)
from isohelpers import (IsoPod, IsoRun, Proc, iso_run, mountinfo, mounts_below, sh_app,
                        stage1_cmd, unpack_aci, wait_for, DEADLINE, STAGE1)
from podhelpers import children, alive, nspid, ROOT

RKT_RUN_FLAGS = ["--debug", "--net=host", "--mds-token=x", "--local-config=/etc/rkt",
                 "--hostname=h", "--private-users=", "--disable-seccomp",
                 "--dns-conf-mode=resolv=host,hosts=stage0"]
# annotation -> (file in the rootfs, what the script runs)
ENTRYPOINTS = {"run": ("run", "run"), "enter": ("enter", "enter"), "stop": ("stop", "stop"),
               "gc": ("gc", "gc"), "app/add": ("app-add", "app add"),
               "app/start": ("app-start", "app start"), "app/stop": ("app-stop", "app stop"),
               "app/rm": ("app-rm", "app rm")}


@pytest.fixture(scope="module")
def aci(stage1_aci):
    """stage1.aci as `./build.sh aci` writes it (conftest: built once a session)."""
    return stage1_aci


# -- the image ---------------------------------------------------------------------

def test_actool_validates_the_image(aci):
    done = subprocess.run(["actool", "validate", aci], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_actool_would_refuse_a_broken_image(tmp_path, aci):
    broken = str(tmp_path / "broken.aci")
    with tarfile.open(aci) as src, tarfile.open(broken, "w:gz") as dst:
        for member in src.getmembers():
            if member.name == "manifest":
                doc = json.load(src.extractfile(member))
                doc["name"] = "Not A Valid Name"
                data = json.dumps(doc).encode()
                member.size = len(data)
                import io
                dst.addfile(member, io.BytesIO(data))
            else:
                dst.addfile(member, src.extractfile(member) if member.isfile() else None)
    assert subprocess.run(["actool", "validate", broken], capture_output=True).returncode != 0


def test_the_manifest_names_the_entrypoints_and_the_interface_version(aci):
    with tarfile.open(aci) as tar:
        doc = json.load(tar.extractfile("manifest"))
        names = tar.getnames()
        status = tar.getmember("rootfs/rkt/status")
        links = {f: tar.getmember("rootfs/" + f) for f, _ in ENTRYPOINTS.values()}
        launcher = tar.getmember("rootfs/usr/lib/stage1/launch")
    annotations = {a["name"]: a["value"] for a in doc["annotations"]}
    for e, (f, words) in ENTRYPOINTS.items():
        assert annotations["coreos.com/rkt/stage1/" + e] == "/" + f
        # each a link to the image's launcher, which runs `stage1 WORDS`
        # by its name (test_image.py runs them)
        assert links[f].issym() and links[f].linkname == "usr/lib/stage1/launch"
    assert launcher.isfile() and launcher.mode & 0o111
    assert annotations["coreos.com/rkt/stage1/interface-version"] == "6"
    labels = {l["name"]: l["value"] for l in doc["labels"]}
    assert set(labels) == {"version", "arch", "os"} and labels["os"] == "linux"
    # rkt refuses a stage1 without rkt/status; it is empty
    assert status.isdir() and not [n for n in names if n.startswith("rootfs/rkt/status/")]


# -- run, as rkt runs it ---------------------------------------------------------------

def _rkt_pod(base, aci, apps):
    pod = IsoPod(base, apps)
    unpack_aci(aci, pod)
    return pod


def _entrypoint(pod, name):
    return os.path.join(pod.path, "stage1", "rootfs", name)


def _try_lock(path):
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    finally:
        os.close(fd)


def test_run_driven_exactly_as_rkt_drives_it(podbase, aci):
    pod = _rkt_pod(podbase, aci, [sh_app("a", "hostname; ls /proc/self/fd; exec sleep 60")])
    lock = os.open(pod.path, os.O_RDONLY | os.O_DIRECTORY)
    fcntl.flock(lock, fcntl.LOCK_EX)
    env = dict(os.environ, RKT_LOCK_FD=str(lock))
    argv = [_entrypoint(pod, "run")] + RKT_RUN_FLAGS + [pod.uuid]
    with Proc(argv, cwd=pod.path, env=env, pass_fds=(lock,), pod=pod) as p:
        os.close(lock)     # from here on only stage1 holds the lock
        pod.wait_state("a", "running")
        assert not _try_lock(pod.path), "the pod directory is not locked while the pod runs"
        assert p.alive()
        stop = subprocess.run([_entrypoint(pod, "stop"), pod.uuid], cwd=pod.path,
                              capture_output=True, text=True, timeout=DEADLINE)
        assert stop.returncode == 0, stop.stderr
        assert p.wait() == 0, p.stderr()
        hostname, *fds = p.stdout().split()
        assert hostname == "h"
        assert fds == ["0", "1", "2", "3"]      # 3: the directory ls reads
        for flag in RKT_RUN_FLAGS[1:]:
            assert "run flag %s" % flag in p.stderr()
    assert _try_lock(pod.path)
    assert pod.raw_code("a") == "143\n"      # sleep, ended by the SIGTERM of the stop
    assert pod.status("a")["reason"] == "Stopped"


def test_rkt_default_network_from_the_run_entrypoint_to_gc(podbase, aci, tmp_path):
    """rkt's argv (records of a real stage0): `init --net=default
    --local-config=DIR UUID`, then `gc --local-config DIR UUID`."""
    local_config = tmp_path / "rkt"
    (local_config / "net.d").mkdir(parents=True)
    pod = _rkt_pod(podbase, aci, [sh_app("a", "ip -4 -o addr show eth0")])
    argv = [_entrypoint(pod, "run"), "--net=default", "--local-config=%s" % local_config,
            pod.uuid]
    with Proc(argv, cwd=pod.path) as p:
        assert p.wait() == 0, p.stderr()
        assert " inet 172.16.28." in p.stdout()
        with open(pod.file("net-info.json")) as f:
            [info] = json.load(f)
        assert (info["netName"], info["ifName"]) == ("default", "eth0")
        assert info["ip"] in p.stdout()
        gc = subprocess.run([_entrypoint(pod, "gc"), "--local-config", str(local_config),
                             pod.uuid], cwd=pod.path, capture_output=True, text=True,
                            timeout=DEADLINE)
        assert gc.returncode == 0, gc.stderr
        assert not os.path.exists(pod.file("netns"))
        assert not os.path.exists(pod.file("net-info.json"))


# -- enter -------------------------------------------------------------------------------

def _running(base, *apps, args=()):
    pod = IsoPod(base, list(apps) or [sh_app("a", "exec sleep 60")])
    r = IsoRun(pod, *args)
    pod.wait_state(pod.manifest["apps"][0]["name"], "running")
    return pod, r


ENTER_SCRIPT = ("hostname; tr '\\0' ' ' < /proc/1/cmdline | cut -c1-13; id -u; pwd; "
                "echo $AC_APP_NAME; grep -c . /proc/self/cgroup > /dev/null && "
                "grep memory /proc/self/cgroup; exit 7")


def test_enter_as_rkt_calls_it(podbase, aci):
    pod = _rkt_pod(podbase, aci, [sh_app("a", "exec sleep 60", user="alice", group="staff",
                                         workingDirectory="/etc")])
    with IsoRun(pod) as r:
        pod.wait_state("a", "running")
        argv = [_entrypoint(pod, "enter"), "--pid=%s" % pod.read("pid").strip(),
                "--appname=a", "--", "/bin/sh", "-c", ENTER_SCRIPT]
        done = subprocess.run(argv, cwd=pod.path, capture_output=True, text=True,
                              timeout=DEADLINE, stdin=subprocess.DEVNULL)
        assert done.returncode == 7, done.stderr
        lines = done.stdout.splitlines()
        assert lines[:5] == ["rkt-" + pod.uuid, "stage1 init: ", "1500", "/etc", "a"]
        assert lines[5].endswith("/stage1-%s/a" % pod.uuid)
        assert r.alive()


def test_enter_for_people_and_its_capabilities(podbase):
    iso = {"name": "os/linux/capabilities-retain-set", "value": {"set": ["CAP_KILL"]}}
    pod, r = _running(podbase, sh_app("a", "exec sleep 60", isolators=[iso]))
    with r:
        done = stage1_cmd("enter", pod.path, "--app", "a", "--", "grep", "CapBnd",
                          "/proc/self/status")
        assert done.returncode == 0, done.stderr
        assert int(done.stdout.split()[1], 16) == 1 << 5     # CAP_KILL


@pytest.mark.parametrize("command, code, message", [
    (["/no/such/program"], 127, "unable to exec /no/such/program: No such file or directory"),
    (["/etc/passwd"], 126, "unable to exec /etc/passwd: Permission denied"),
])
def test_enter_exec_failures(podbase, command, code, message):
    pod, r = _running(podbase)
    with r:
        done = stage1_cmd("enter", "--appname=a", "--", *command, cwd=pod.path)
        assert done.returncode == code
        [line] = done.stderr.splitlines()
        assert message in line


def test_enter_passes_signals_on(podbase):
    pod, r = _running(podbase)
    with r, Proc([STAGE1, "enter", pod.path, "--app", "a", "--", "/bin/sleep", "60"]) as e:
        init = int(pod.read("pid"))
        sleeper = wait_for(lambda: [p for p in children(e.proc.pid)], what="the command")[0]
        assert nspid(sleeper) not in (None, sleeper)     # it lives in the pod's namespace
        e.proc.send_signal(signal.SIGTERM)
        assert e.wait() == 128 + signal.SIGTERM
        assert alive(init)


@pytest.mark.parametrize("args, message", [
    (["--appname=zz"], "no app named 'zz'"),
    (["--appname=a", "--pid=999999"], "unable to open /proc/999999/ns/"),
])
def test_enter_refusals(podbase, args, message):
    pod, r = _running(podbase)
    with r:
        done = stage1_cmd("enter", *args, "--", "true", cwd=pod.path)
        assert done.returncode == 254
        assert message in done.stderr


def test_enter_a_pod_that_is_not_running(podbase):
    pod = IsoPod(podbase, [sh_app("a", "true")])
    assert iso_run(pod)[0] == 0
    done = stage1_cmd("enter", "--appname=a", "--", "true", cwd=pod.path)
    assert done.returncode == 254 and "is not running" in done.stderr


# -- stop --------------------------------------------------------------------------------

def test_stop_an_isolated_pod_gracefully(podbase):
    pod, r = _running(podbase, sh_app("a", "trap 'echo stopping; exit 0' TERM; "
                                           "sleep 60 & wait"))
    with r:
        done = stage1_cmd("stop", pod.uuid, cwd=pod.path)
        assert done.returncode == 0, done.stderr
        assert r.wait() == 0
        assert r.stdout() == "stopping\n"
    assert pod.status("a")["reason"] == "Stopped"


def test_stop_force_kills_the_whole_pod(podbase):
    pod, r = _running(podbase)
    with r:
        init = int(pod.read("pid"))
        app = wait_for(lambda: children(init), what="the app")[0]
        done = stage1_cmd("stop", "--force", pod.uuid, cwd=pod.path)
        assert done.returncode == 0, done.stderr
        assert r.wait() == 128 + signal.SIGKILL
        wait_for(lambda: not alive(app) and not alive(init), what="the pod gone")
    # the host side removed the cgroups when its child died
    assert not os.path.exists(pod.cgroup("memory"))


# -- gc ------------------------------------------------------------------------------------

def test_gc_leaves_no_mount_behind(podbase):
    before = mountinfo()
    pod = IsoPod(podbase, [sh_app("a", "true")], volumes=[{"name": "v", "kind": "empty"}])
    pod.manifest["apps"][0]["mounts"] = [{"volume": "v", "path": "/v"}]
    pod.write()
    assert iso_run(pod)[0] == 0
    done = stage1_cmd("gc", "--debug", "--local-config", "/etc/rkt", pod.uuid, cwd=pod.path)
    assert done.returncode == 0, done.stderr
    assert mountinfo() == before


def test_gc_unmounts_what_was_left_under_the_pod_and_is_idempotent(podbase, tmp_path):
    from stage1.engine import native
    pod = IsoPod(podbase, [sh_app("a", "true")])
    before = mountinfo()
    root = pod.app_root("a")
    native.mount("tmpfs", os.path.join(root, "etc"), "tmpfs")
    os.makedirs(os.path.join(root, "etc", "deep"))
    native.mount(str(tmp_path), os.path.join(root, "etc", "deep"), None, native.MS_BIND)
    native.mount(str(tmp_path), os.path.join(root, "bin"), None, native.MS_BIND)
    native.mount(str(tmp_path), os.path.join(root, "bin"), None, native.MS_BIND)  # stacked
    assert len(mounts_below(pod.path)) == 4
    for _ in range(2):
        done = stage1_cmd("gc", "--local-config=/etc/rkt", pod.uuid, cwd=pod.path)
        assert (done.returncode, done.stderr) == (0, "")
        assert mounts_below(pod.path) == [] and mountinfo() == before
    assert os.path.exists(os.path.join(root, "bin", "busybox"))     # unmounted, not deleted


def test_gc_removes_the_cgroups_of_a_pod_whose_host_side_was_killed(podbase):
    pod, r = _running(podbase)
    with r:
        init = int(pod.read("pid"))
        os.kill(r.proc.pid, signal.SIGKILL)
        r.proc.wait(DEADLINE)
        # PR_SET_PDEATHSIG: the init stops the pod when its host side dies
        wait_for(lambda: not alive(init), what="the init to end")
        dirs = [pod.cgroup(c) for c in ("memory", "cpu", "pids", "devices")]
        dirs += [pod.cgroup(c, "a") for c in ("memory", "cpu", "pids", "devices")]
        assert all(os.path.isdir(d) for d in dirs)
        for _ in range(2):
            done = stage1_cmd("gc", pod.uuid, cwd=pod.path)
            assert (done.returncode, done.stderr) == (0, "")
            assert not any(os.path.exists(d) for d in dirs)


def test_gc_removes_what_is_below_the_pods_cgroups(podbase):
    pod, r = _running(podbase)
    with r:
        init = int(pod.read("pid"))
        os.kill(r.proc.pid, signal.SIGKILL)
        r.proc.wait(DEADLINE)
        wait_for(lambda: not alive(init), what="the init to end")
        with open(pod.file("cgroups")) as f:
            record = json.load(f)
        os.mkdir(os.path.join(pod.cgroup("pids", "a"), "nested"))
        with open(pod.file("cgroups"), "w") as f:
            json.dump({"pod": record["pod"]}, f)        # the apps forgotten
        done = stage1_cmd("gc", pod.uuid, cwd=pod.path)
        assert (done.returncode, done.stderr) == (0, "")
        assert not any(os.path.exists(d) for d in record["pod"])


def test_gc_refuses_a_running_pod(podbase):
    pod, r = _running(podbase)
    with r:
        done = stage1_cmd("gc", pod.uuid, cwd=pod.path)
        assert done.returncode == 254
        assert "is still running" in done.stderr
        assert os.path.isdir(pod.cgroup("memory", "a"))


def test_gc_of_a_pod_that_never_ran(podbase):
    pod = IsoPod(podbase, [sh_app("a", "true")])
    done = stage1_cmd("gc", "--debug", pod.uuid, cwd=pod.path)
    assert (done.returncode, done.stderr) == (0, "")


def test_enter_a_pod_without_isolation(podbase):
    pod = IsoPod(podbase, [sh_app("a", "exec sleep 60")])
    with IsoRun(pod, "--no-isolate"):
        pod.wait_state("a", "running")
        done = stage1_cmd("enter", pod.path, "--app", "a", "--", "/bin/sh", "-c",
                          "echo $AC_APP_NAME; readlink /proc/self/ns/mnt")
        assert done.returncode == 0, done.stderr
        assert done.stdout.split() == ["a", os.readlink("/proc/self/ns/mnt")]
