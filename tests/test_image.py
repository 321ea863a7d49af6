"""The self-contained stage1.aci (stage1/rkt/bundle.py): copied to a fresh
directory and run with nothing of the checkout's (no venv, no pyenv on
PATH), its run entrypoint runs a pod as rkt runs it, with the image's own
interpreter; its manifest and interface are rkt's; two builds are
byte-identical; nothing in it names the build machine's paths; its size
is reported.  (test_rkt_interface.py drives every entrypoint of the same
image, test_rkt_real.py a real rkt.)"""
import json
import os
import subprocess
import sys
import tarfile

import pytest

from isohelpers import podbase  # noqa: F401 (a fixture)
from isohelpers import IsoPod, Proc, make_root, sh_app, wait_for, DEADLINE
from conftest import aci_env
from podhelpers import ROOT

ENTRYPOINTS = ("run", "enter", "stop", "gc", "app-add", "app-start", "app-stop", "app-rm")
CLEAN_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}      # nothing of the checkout's


@pytest.fixture(scope="module")
def unpacked(stage1_aci, tmp_path_factory):
    """The image unpacked where nothing else is."""
    where = tmp_path_factory.mktemp("image")
    with tarfile.open(stage1_aci) as tar:
        tar.extractall(str(where))
    return str(where / "rootfs")


def test_the_image_is_rkts_stage1_image(stage1_aci):
    with tarfile.open(stage1_aci) as tar:
        doc = json.load(tar.extractfile("manifest"))
        names = set(tar.getnames())
        fallback = tar.extractfile("rootfs/etc/hosts-fallback").read()
    annotations = {a["name"]: a["value"] for a in doc["annotations"]}
    assert annotations["coreos.com/rkt/stage1/interface-version"] == "6"
    for e in ENTRYPOINTS:
        assert annotations["coreos.com/rkt/stage1/" + e.replace("-", "/")] == "/" + e
        assert "rootfs/" + e in names
    for d in ("rootfs/etc", "rootfs/opt/stage2", "rootfs/rkt/status", "rootfs/rkt/env"):
        assert d in names
    assert fallback.startswith(b"# This is the default rkt /etc/hosts\n127.0.0.1 localhost")
    assert subprocess.run(["actool", "validate", stage1_aci]).returncode == 0


def test_the_image_holds_what_it_runs(unpacked):
    for path in ("lib64/ld-linux-x86-64.so.2", "lib/libc.so.6", "lib/libseccomp.so.2",
                 "lib/libcap.so.2", "usr/bin/python3", "usr/lib/stage1/launch",
                 "usr/lib/python3.%d/os.pyc" % sys.version_info[1],
                 "usr/lib/cni/ptp", "usr/lib/cni/host-local", "usr/lib/cni/portmap"):
        assert os.path.isfile(os.path.join(unpacked, path)), path
    site = os.path.join(unpacked, "usr/lib/python3.%d/site-packages" % sys.version_info[1])
    for name in ("stage1", "psutil"):
        assert os.path.isdir(os.path.join(site, name))
    assert [n for n in os.listdir(os.path.join(site, "stage1", "engine"))
            if n.startswith("_native") and n.endswith(".so")]
    # the plugins where network.py looks in a stage1 image, each run by the launcher
    out = subprocess.run([os.path.join(unpacked, "usr/lib/rkt/plugins/net/ptp")],
                         env=dict(CLEAN_ENV, CNI_COMMAND="VERSION"), stdin=subprocess.DEVNULL,
                         capture_output=True, text=True, timeout=30)
    assert "0.3.1" in json.loads(out.stdout)["supportedVersions"], out.stderr


def test_nothing_in_the_image_names_the_build_machines_paths(unpacked):
    import stage1
    paths = {ROOT, sys.prefix, os.path.realpath(sys.base_prefix),
             os.path.dirname(os.path.dirname(os.path.abspath(stage1.__file__)))}
    paths = {p.encode() for p in paths if p not in ("/", "/usr", "/usr/local")}
    found = []
    for directory, _, files in os.walk(unpacked):
        for f in files:
            path = os.path.join(directory, f)
            if os.path.islink(path):
                assert not os.readlink(path).startswith("/"), path
                continue
            with open(path, "rb") as fh:
                data = fh.read()
            found += ["%s: %s" % (os.path.relpath(path, unpacked), p.decode())
                      for p in paths if p in data]
    assert not found


def test_two_builds_are_byte_identical(stage1_aci, tmp_path):
    """The session's image and one built again, with the same
    SOURCE_DATE_EPOCH."""
    again = str(tmp_path / "again.aci")
    r = subprocess.run([os.path.join(ROOT, "build.sh"), "aci", "-o", again],
                       capture_output=True, text=True, timeout=600, env=aci_env())
    assert r.returncode == 0, r.stderr
    size = os.path.getsize(again)
    assert "%.1f MiB" % (size / 1048576.0) in r.stdout        # the build reports its size
    assert size < 25 * 1048576
    with open(stage1_aci, "rb") as a, open(again, "rb") as b:
        assert a.read() == b.read()


def test_exec_through_the_images_own_interpreter(unpacked, tmp_path):
    stage1 = os.path.join(unpacked, "usr", "bin", "stage1")
    r = subprocess.run([stage1, "exec", "--", "sh", "-c", "exit 3"], env=CLEAN_ENV,
                       cwd=str(tmp_path), capture_output=True, text=True, timeout=30)
    assert (r.returncode, r.stderr) == (3, "")
    # the app gets the caller's environment, exactly (a shell launcher adds PWD)
    r = subprocess.run([stage1, "exec", "--", "/usr/bin/env"], env={"A": "1"},
                       cwd=str(tmp_path), capture_output=True, text=True, timeout=30)
    assert r.stdout == "A=1\n"
    r = subprocess.run([stage1, "status", "--help"], env=CLEAN_ENV, capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 0 and r.stdout.startswith("usage: stage1 status")


def test_a_pod_run_through_the_images_run_entrypoint(unpacked, podbase, tmp_path):
    """As rkt runs it: the image as the pod's stage1 rootfs, cwd the pod,
    rkt's argv.  The init (and stage1 run above it) run the image's own
    loader; ps shows their titles."""
    pod = IsoPod(podbase, [sh_app("a", "echo hello; exec sleep 60")], roots=False)
    os.rmdir(pod.root)
    subprocess.run(["cp", "-a", unpacked, pod.root], check=True)
    make_root(pod.app_root("a"))
    config = tmp_path / "rkt"
    (config / "net.d").mkdir(parents=True)
    rootfs = os.path.join(pod.path, "stage1", "rootfs")
    argv = [os.path.join(rootfs, "run"), "--net=none", "--local-config=%s" % config, pod.uuid]
    with Proc(argv, cwd=pod.path, env=CLEAN_ENV) as p:
        pod.wait_state("a", "running")
        init = int(pod.read("pid"))
        for pid, title in ((init, "stage1 init: " + pod.uuid),
                           (p.proc.pid, "stage1 run: " + pod.uuid)):
            exe = os.readlink("/proc/%d/exe" % pid)
            assert exe == os.path.join(rootfs, "lib64", "ld-linux-x86-64.so.2")
            with open("/proc/%d/cmdline" % pid, "rb") as f:
                assert f.read().rstrip(b"\0").decode() == title
        ps = subprocess.run(["ps", "-o", "args=", "-p", str(p.proc.pid)], capture_output=True,
                            text=True)
        assert ps.stdout.strip() == "stage1 run: " + pod.uuid
        stop = subprocess.run([os.path.join(rootfs, "stop"), pod.uuid], cwd=pod.path,
                              env=CLEAN_ENV, capture_output=True, text=True, timeout=DEADLINE)
        assert stop.returncode == 0, stop.stderr
        assert p.wait() == 0, p.stderr()
        assert p.stdout() == "hello\n"
    assert pod.raw_code("a") == "143\n"
    gc = subprocess.run([os.path.join(rootfs, "gc"), "--local-config", str(config), pod.uuid],
                        cwd=pod.path, env=CLEAN_ENV, capture_output=True, text=True,
                        timeout=60)
    assert gc.returncode == 0, gc.stderr
