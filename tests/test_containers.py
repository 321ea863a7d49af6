"""stage1 as a container's entrypoint, the two ways people use an init in
containers (examples/): `stage1 exec --` in front of one app, and `stage1
run` of a pod of several.  Run by podman with runc (`podman run --rootfs`,
so no registry and no image build): the rootfs is the self-contained
stage1.aci's (less rkt's entrypoints at its top: a container needs /run)
plus busybox.  Exit codes, `podman stop` (SIGTERM reaches the app, stage1's
grace ends before podman's), and Ctrl-C (`podman kill --signal INT`).
Skipped where podman or runc is missing."""
import json
import os
import shutil
import subprocess
import tarfile
import time
import uuid

import pytest

PODMAN, RUNC = shutil.which("podman"), shutil.which("runc")
pytestmark = pytest.mark.skipif(PODMAN is None or RUNC is None,
                                reason="podman and runc are not installed")
RKT_ENTRYPOINTS = ("run", "enter", "stop", "gc", "app-add", "app-start", "app-stop", "app-rm")
APPLETS = ("sh", "sleep", "echo", "cat", "true")
EXEC = ["/usr/bin/stage1", "exec", "--"]


@pytest.fixture(scope="module")
def rootfs(stage1_aci, tmp_path_factory):
    base = tmp_path_factory.mktemp("container")
    with tarfile.open(stage1_aci) as tar:
        tar.extractall(str(base))
    root = str(base / "rootfs")
    for name in RKT_ENTRYPOINTS:
        os.unlink(os.path.join(root, name))
    for d in ("bin", "run", "proc", "dev", "sys", "tmp", "pod"):
        os.makedirs(os.path.join(root, d), exist_ok=True)
    shutil.copy2("/usr/bin/busybox", os.path.join(root, "bin", "busybox"))
    for applet in APPLETS:
        os.symlink("busybox", os.path.join(root, "bin", applet))
    return root


@pytest.fixture(scope="module")
def ulimits(rootfs, tmp_path_factory):
    """--ulimit flags of the limits podman's runtime already runs with:
    podman's defaults (nofile and nproc raised) fail where the caller may not
    raise them (no CAP_SYS_RESOURCE, as in some CI sandboxes)."""
    d = tmp_path_factory.mktemp("runc-limits")
    wrapper, out = str(d / "runc"), str(d / "limits")
    with open(wrapper, "w") as f:
        f.write("#!/bin/sh\ncat /proc/self/limits > %s\nexec %s \"$@\"\n" % (out, RUNC))
    os.chmod(wrapper, 0o755)
    subprocess.run([PODMAN, "run", "--rm", "--network", "none", "--runtime", wrapper,
                    "--rootfs", rootfs, "/bin/true"], capture_output=True, timeout=60)
    flags = []
    with open(out) as f:
        for line in f:
            for name, what in (("nofile", "Max open files"), ("nproc", "Max processes")):
                if line.startswith(what):
                    soft, hard = line[len(what):].split()[:2]
                    flags += ["--ulimit", "%s=%s:%s" % (name, soft, hard)]
    return flags


class Container:
    def __init__(self, rootfs, ulimits, entrypoint, command, *opts):
        self.name = "stage1-test-%s" % uuid.uuid4().hex[:12]
        self.argv = ([PODMAN, "run", "--name", self.name, "--network", "none", "--runtime",
                      "runc"] + ulimits + list(opts) +
                     ["--entrypoint", json.dumps(entrypoint), "--rootfs", rootfs] + command)

    def run(self):
        return subprocess.run(self.argv, capture_output=True, text=True, timeout=120,
                              stdin=subprocess.DEVNULL)

    def start(self):
        argv = self.argv[:2] + ["-d"] + self.argv[2:]
        r = subprocess.run(argv, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        return self

    def podman(self, *args, timeout=120):
        return subprocess.run([PODMAN] + list(args), capture_output=True, text=True,
                              timeout=timeout)

    def logs(self):
        return self.podman("logs", self.name).stdout

    def wait_log(self, text, timeout=30):
        deadline = time.monotonic() + timeout
        while text not in self.logs():
            assert time.monotonic() < deadline, "no %r in %r" % (text, self.logs())
            time.sleep(0.05)

    def exit_code(self):
        r = self.podman("wait", self.name)
        assert r.returncode == 0, r.stderr
        return int(r.stdout.strip())

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.podman("rm", "-f", "-t", "0", self.name)


def test_exec_as_the_entrypoint_exits_with_the_apps_code(rootfs, ulimits):
    with Container(rootfs, ulimits, EXEC, ["sh", "-c", "echo hello; exit 3"], "--rm") as c:
        r = c.run()
    assert (r.returncode, r.stdout) == (3, "hello\n"), r.stderr


def test_podman_stop_reaches_the_app(rootfs, ulimits):
    app = ["sh", "-c", "trap 'echo got TERM; exit 7' TERM; echo ready; "
                       "while :; do sleep 0.1; done"]
    with Container(rootfs, ulimits, EXEC, app).start() as c:
        c.wait_log("ready")
        c.podman("stop", "-t", "20", c.name)
        assert c.exit_code() == 7
        assert "got TERM" in c.logs()


def test_stage1s_grace_ends_before_podmans(rootfs, ulimits):
    """An app that ignores SIGTERM is SIGKILLed by stage1 after its --grace
    (1 s), well before podman's own 20 s: 128+9."""
    app = ["sh", "-c", "trap '' TERM; echo ready; while :; do sleep 0.1; done"]
    entry = ["/usr/bin/stage1", "exec", "--grace", "1", "--"]
    with Container(rootfs, ulimits, entry, app).start() as c:
        c.wait_log("ready")
        start = time.monotonic()
        c.podman("stop", "-t", "20", c.name)
        took = time.monotonic() - start
        assert c.exit_code() == 137
        assert took < 15, took


def test_ctrl_c_reaches_the_app(rootfs, ulimits):
    with Container(rootfs, ulimits, EXEC, ["sh", "-c", "echo ready; exec sleep 1000"]) \
            .start() as c:
        c.wait_log("ready")
        c.podman("kill", "--signal", "INT", c.name)
        assert c.exit_code() == 130                  # sleep, killed by SIGINT


def test_a_multi_process_image_runs_a_pod(rootfs, ulimits, tmp_path):
    """ENTRYPOINT ["stage1", "run", "/pod"]: two apps, stopped together by
    podman stop; the pod's code is 0 (stopped on request)."""
    def app(name, script):
        return {"name": name, "image": {"name": "example.com/" + name,
                                            "id": "sha512-" + "0" * 64},
                "app": {"exec": ["/bin/sh", "-c", script], "user": "0", "group": "0"},
                "annotations": [{"name": "stage1/log", "value": "prefix"}]}
    loop = "trap 'echo stopping; exit 0' TERM; echo up; while :; do sleep 0.1; done"
    manifest = {"acVersion": "0.8.11", "acKind": "PodManifest",
                "apps": [app("web", loop), app("worker", loop)]}
    pod = tmp_path / "pod"
    pod.mkdir()
    (pod / "pod").write_text(json.dumps(manifest))
    with Container(rootfs, ulimits, ["/usr/bin/stage1", "run", "--grace", "5", "/pod"], [],
                   "-v", "%s:/pod" % pod).start() as c:
        c.wait_log("web| up")
        c.wait_log("worker| up")
        c.podman("stop", "-t", "20", c.name)
        assert c.exit_code() == 0
        logs = c.logs()
        assert "web| stopping" in logs and "worker| stopping" in logs
    with open(pod / "pod-status.json") as f:
        assert json.load(f)["state"] == "exited"
