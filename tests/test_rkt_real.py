"""stage1 driven by a real rkt: `rkt run`, `status`, `list`, `enter`,
`app sandbox` + `app add/start/stop/rm`, `--dns`/`--hosts-entry`, `--port`,
`stop` and `gc`, with rkt's defaults (its default network, its overlays).

rkt is not packaged: these tests run when `rkt` is on PATH (a stage0 built
by hand from the public rkt sources) and are skipped otherwise.  Each module
run uses a data directory of its own (`rkt --dir`) and a local config
directory of its own, with stage1.aci as `./build.sh aci` writes it and a
busybox image made here; at the end everything is collected and the
machine holds no mount, netns, veth, cgroup or iptables rule of ours.
"""
import contextlib
import io
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
import time

import pytest

from podhelpers import DEADLINE, wait_for
from test_isolation_network import fetch, free_port

RKT = shutil.which("rkt")
pytestmark = pytest.mark.skipif(RKT is None, reason="rkt is not on PATH (build its stage0 "
                                "from the public rkt sources to run these)")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUSYBOX = "/usr/bin/busybox"
APPLETS = ("sh", "cat", "echo", "ls", "hostname", "id", "sleep", "touch", "grep", "ip",
           "ping", "httpd", "mkdir", "wget", "true")


def _busybox_aci(path):
    """example.com/busybox, an app section as actool writes it, a port."""
    manifest = {
        "acKind": "ImageManifest", "acVersion": "0.8.11", "name": "example.com/busybox",
        "labels": [{"name": "version", "value": "1.35.0"}, {"name": "arch", "value": "amd64"},
                   {"name": "os", "value": "linux"}],
        "app": {"exec": ["/bin/sh", "-c", "echo hello"], "user": "0", "group": "0",
                "environment": [{"name": "PATH", "value": "/bin"}],
                "ports": [{"name": "http", "protocol": "tcp", "port": 80, "count": 1,
                           "socketActivated": False}]},
    }
    with tarfile.open(path, "w:gz") as tar:
        def add(name, data=None, mode=0o755, link=None):
            info = tarfile.TarInfo(name)
            if link:
                info.type, info.linkname = tarfile.SYMTYPE, link
                tar.addfile(info)
            elif data is None:
                info.type, info.mode = tarfile.DIRTYPE, mode
                tar.addfile(info)
            else:
                info.size, info.mode = len(data), mode
                tar.addfile(info, io.BytesIO(data))
        add("manifest", json.dumps(manifest).encode(), 0o644)
        for d in ("rootfs", "rootfs/bin", "rootfs/etc", "rootfs/tmp"):
            add(d, mode=0o1777 if d.endswith("tmp") else 0o755)
        with open(BUSYBOX, "rb") as f:
            add("rootfs/bin/busybox", f.read())
        for applet in APPLETS:
            add("rootfs/bin/" + applet, link="busybox")
        add("rootfs/etc/passwd", b"root:x:0:0:root:/:/bin/sh\n", 0o644)
        add("rootfs/etc/group", b"root:x:0:\n", 0o644)


class Rkt:
    def __init__(self, base, stage1):
        self.base = base
        self.dir = os.path.join(base, "data")
        self.config = os.path.join(base, "config")
        os.makedirs(os.path.join(self.config, "net.d"))
        self.stage1 = stage1        # the self-contained image (conftest's stage1_aci)
        self.image = os.path.join(base, "busybox.aci")
        _busybox_aci(self.image)
        self.env = dict(os.environ, RKT_EXPERIMENT_APP="true")

    def argv(self, *args):
        return [RKT, "--dir=" + self.dir, "--local-config=" + self.config,
                "--insecure-options=image"] + list(args)

    def __call__(self, *args, timeout=60, check=True):
        p = subprocess.run(self.argv(*args), capture_output=True, text=True, timeout=timeout,
                           env=self.env, stdin=subprocess.DEVNULL)
        if check:
            assert p.returncode == 0, "%s: %d\n%s%s" % (args, p.returncode, p.stdout, p.stderr)
        return p

    def popen(self, *args):
        return subprocess.Popen(self.argv(*args), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=self.env,
                                stdin=subprocess.DEVNULL)

    def run(self, *args, app=(), uuid_file=None):
        """`rkt run [FLAGS] IMAGE [APP FLAGS]`, to its end."""
        uuid_file = uuid_file or os.path.join(self.base, "uuid-%f" % time.monotonic())
        p = self("run", "--stage1-path=" + self.stage1, "--uuid-file-save=" + uuid_file,
                 *args, self.image, *app, check=False)
        with open(uuid_file) as f:
            return p, f.read().strip()

    @contextlib.contextmanager
    def background(self, command, *args):
        """`rkt COMMAND --stage1-path=... --uuid-file-save=... ARGS` in the
        background (COMMAND: "run" or "app sandbox"): (proc, uuid); whatever
        happens, the pod is stopped and rkt reaped."""
        uuid_file = os.path.join(self.base, "uuid-%f" % time.monotonic())
        proc = self.popen(*command.split(), "--stage1-path=" + self.stage1,
                          "--uuid-file-save=" + uuid_file, *args)
        try:
            uuid = wait_for(lambda: os.path.exists(uuid_file) and open(uuid_file).read().strip(),
                            timeout=30, what="the pod's uuid")
            yield proc, uuid
        finally:
            if proc.poll() is None and os.path.exists(uuid_file):
                self("stop", "--force", open(uuid_file).read().strip(), check=False)
            if proc.poll() is None:
                proc.kill()
            proc.wait(DEADLINE)
            proc.stdout.close()
            proc.stderr.close()

    def status(self, uuid):
        out = self("status", uuid).stdout
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def running(self, uuid):
        return self.status(uuid).get("state") == "running"

    def ready(self, uuid):
        """Running, and its supervisor ready (what rkt's app commands need)."""
        link = os.path.join(self.dir, "pods", "run", uuid, "stage1", "rootfs", "rkt",
                            "supervisor-status")
        return self.running(uuid) and os.path.islink(link)


def _ours():
    """What this machine holds that a pod could have made."""
    with open("/proc/self/mountinfo") as f:
        mounts = sorted(line.split()[4] for line in f)
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    netns = sorted(os.listdir("/run/netns")) if os.path.isdir("/run/netns") else []
    rules = subprocess.run(["iptables-save"], capture_output=True, text=True).stdout
    cgroups = subprocess.run(["find", "/sys/fs/cgroup", "-maxdepth", "3", "-name", "stage1-*"],
                             capture_output=True, text=True).stdout.split()
    return {"mounts": mounts, "veths": sorted(l.split(":")[1].split("@")[0].strip()
                                              for l in links.splitlines() if "veth" in l),
            "netns": netns, "cgroups": cgroups,
            # portmap's shared chains stay by design; a pod's own rules name it
            "rules": sorted(l for l in rules.splitlines()
                            if l.startswith("-A") and "CNI-HOSTPORT-" not in l.split()[1])}


@pytest.fixture(scope="module")
def rkt(stage1_aci):
    base = tempfile.mkdtemp(prefix="stage1-rkt-", dir="/tmp")
    before = _ours()
    r = Rkt(base, stage1_aci)
    try:
        yield r
    finally:
        listing = r("list", "--no-legend", "--full", check=False).stdout
        for line in listing.splitlines():
            if "\trunning\t" in line:
                r("stop", "--force", line.split()[0], check=False)
        r("gc", "--grace-period=0s", "--expire-prepared=0s", check=False)
        r("image", "gc", check=False)
        after = _ours()
        shutil.rmtree(base, ignore_errors=True)
        assert {k: v for k, v in after.items() if v != before[k]} == {}, \
            "left behind: %r" % {k: sorted(set(after[k]) - set(before[k])) for k in after}


def _collect(rkt, uuid):
    rkt("gc", "--grace-period=0s")
    assert not os.path.exists(os.path.join(rkt.dir, "pods", "run", uuid))


def test_rkt_run_with_no_flags_gets_rkts_default_network(rkt):
    before = _ours()
    p, uuid = rkt.run(app=["--exec=/bin/sh", "--", "-c",
                           "echo hello; ip -4 -o addr show eth0; ping -c 1 -W 5 172.16.28.1"])
    assert p.returncode == 0, p.stderr
    assert "hello\n" in p.stdout
    assert " 172.16.28." in p.stdout and " 0% packet loss" in p.stdout, p.stdout
    status = rkt.status(uuid)
    assert status["state"] == "exited" and status["app-busybox"] == "0"
    ip = status["networks"].split("=")[1]
    assert status["networks"] == "default:ip4=" + ip and ip.startswith("172.16.28.")
    listing = rkt("list", "--full", "--no-legend").stdout
    assert [l for l in listing.splitlines() if l.startswith(uuid)][0].endswith(
        "default:ip4=" + ip)
    _collect(rkt, uuid)
    assert _ours() == before


def test_rkt_run_net_none(rkt):
    p, uuid = rkt.run("--net=none", app=["--exec=/bin/sh", "--", "-c", "ip -o link"])
    assert p.returncode == 0, p.stderr
    links = [l.split(":")[1].strip() for l in p.stdout.splitlines() if ": " in l]
    assert links == ["lo"]
    assert rkt.status(uuid)["networks"] == ""
    _collect(rkt, uuid)


def test_an_apps_exit_code_is_rkts(rkt):
    p, uuid = rkt.run("--net=none", app=["--exec=/bin/sh", "--", "-c", "exit 7"])
    assert p.returncode == 7
    assert rkt.status(uuid)["app-busybox"] == "7"
    _collect(rkt, uuid)


def test_rkt_enter_and_rkt_stop(rkt):
    with rkt.background("run", "--net=none", rkt.image, "--exec=/bin/sleep", "--",
                        "600") as (proc, uuid):
        wait_for(lambda: rkt.running(uuid), timeout=30, what="the pod running")
        entered = rkt("enter", uuid, "/bin/sh", "-c", "hostname; id -u; cat /proc/1/cmdline")
        lines = entered.stdout.splitlines()
        assert lines[0] == "rkt-" + uuid and lines[1] == "0"
        assert lines[2].startswith("stage1 init: ")
        assert rkt("stop", uuid).returncode == 0
        assert proc.wait(DEADLINE) == 0                  # stopped on request: the pod's 0
        assert rkt.status(uuid)["app-busybox"] == "143"  # what SIGTERM made of sleep
    _collect(rkt, uuid)


def test_rkt_app_sandbox_apps_are_isolated_with_rkts_default_overlay(rkt):
    marker = "/tmp/stage1-rkt-sandbox-%d" % os.getpid()
    try:
        with rkt.background("app sandbox", "--net=none") as (proc, uuid):
            _sandbox(rkt, proc, uuid, marker)
    finally:
        if os.path.exists(marker):
            os.unlink(marker)
    _collect(rkt, uuid)


def _sandbox(rkt, proc, uuid, marker):
    """The sandbox's part: add an app with rkt's default overlay, start, stop, rm."""
    wait_for(lambda: rkt.ready(uuid), timeout=30, what="the sandbox ready")
    rkt("fetch", rkt.image)
    script = ("touch %s; grep -E '^(NSpid|CapEff|NoNewPrivs)' /proc/$$/status; hostname; "
              "cat /proc/self/cgroup | grep -c stage1-%s; sleep 600" % (marker, uuid))
    rkt("app", "add", uuid, "example.com/busybox", "--name=x", "--memory=64M",
        "--", "-c", script)
    rkt("app", "start", uuid, "--app=x")
    pod = os.path.join(rkt.dir, "pods", "run", uuid)
    status = os.path.join(pod, "stage1", "rootfs", "rkt", "status", "x.json")
    wait_for(lambda: os.path.exists(status) and json.load(open(status))["state"] ==
             "running", what="x running")
    out = wait_for(lambda: _lines(proc, 5), what="x's output")
    # the pod's own PID namespace: the pid the app sees is the one the
    # pod reports, and the pod's init is PID 1 of a namespace below the host's
    assert out[0].split() == ["NSpid:", str(json.load(open(status))["pid"])]
    with open(os.path.join(pod, "pid")) as f:
        init = int(f.read())
    with open("/proc/%d/status" % init) as f:
        assert [l.split()[1:] for l in f if l.startswith("NSpid:")] == [[str(init), "1"]]
    assert out[3] == "rkt-" + uuid
    assert out[4] != "0"                                   # in the pod's cgroups
    assert not os.path.exists(marker)                      # not the host's /tmp
    assert "x\trunning" in rkt("app", "list", uuid).stdout
    rkt("app", "stop", uuid, "--app=x")
    assert "x\texited" in rkt("app", "list", uuid).stdout
    rkt("app", "rm", uuid, "--app=x")
    assert "x" not in rkt("app", "list", uuid, "--no-legend").stdout
    rkt("stop", uuid)
    assert proc.wait(DEADLINE) == 0


_buffers = {}


def _lines(proc, n):
    """The first n lines the process printed (non-blocking)."""
    os.set_blocking(proc.stdout.fileno(), False)
    try:
        data = proc.stdout.read() or ""
    except (BlockingIOError, TypeError):
        data = ""
    _buffers[proc.pid] = _buffers.get(proc.pid, "") + data
    lines = _buffers[proc.pid].splitlines()
    return lines[:n] if len(lines) >= n else None


def test_rkt_dns_and_hosts_entries_reach_the_app(rkt):
    p, uuid = rkt.run("--dns=10.1.2.3", "--dns-search=example.com",
                      "--hosts-entry=10.0.0.1=foo", "--net=none",
                      app=["--exec=/bin/sh", "--", "-c", "cat /etc/resolv.conf /etc/hosts"])
    assert p.returncode == 0, p.stderr
    assert "nameserver 10.1.2.3" in p.stdout and "search example.com" in p.stdout
    assert "10.0.0.1 foo" in p.stdout
    _collect(rkt, uuid)


def test_rkt_port_forwards_the_apps_port(rkt):
    port = free_port()
    web = "mkdir /www; echo hello-from-rkt > /www/index.html; exec httpd -f -p 80 -h /www"
    with rkt.background("run", "--port=http:%d" % port, rkt.image, "--exec=/bin/sh", "--",
                        "-c", web) as (proc, uuid):
        assert wait_for(lambda: fetch("http://127.0.0.1:%d/" % port), timeout=30,
                        what="the forwarded port") == b"hello-from-rkt\n"
        rkt("stop", uuid)
        proc.wait(DEADLINE)
    _collect(rkt, uuid)
    assert fetch("http://127.0.0.1:%d/" % port) is None


def test_rkt_private_users(rkt):
    """rkt run --private-users: rkt picks the shift, needs --no-overlay and
    chowns the roots itself; root in the pod is that shift on the host."""
    p, uuid = rkt.run("--private-users", "--no-overlay", "--net=none",
                      app=["--exec=/bin/sh", "--", "-c", "id -u; cat /proc/self/uid_map"])
    assert p.returncode == 0, p.stderr
    lines = [l for l in p.stdout.splitlines() if l.strip()]
    shift, count = open(os.path.join(rkt.dir, "pods", "run", uuid,
                                     "private-users-prepared")).read().split(":")
    assert lines[0] == "0"
    assert lines[1].split() == ["0", shift, count] and int(shift) > 0
    _collect(rkt, uuid)
