"""Readiness: sd_notify (NOTIFY_SOCKET, READY=1, STATUS=, STOPPING=1, the
sender known by its credentials), s6's fd:N, the supervisor-status
symlink and `stage1 status --wait-ready`."""
import json
import os
import subprocess

import pytest

from livehelpers import (NOBODY, STAGE1, app, as_user, notify_code, py, send_notify, sh, stage1,
                        wait_for)
from livehelpers import live, liveroot  # noqa: F401  (fixtures)

SLEEP = ["/bin/sleep", "3600"]


def _notify_app(name, *steps, **annotations):
    annotations.setdefault("stage1/notify", "systemd")
    return app(name, py(notify_code(*steps)), annotations=annotations)


# -- sd_notify ---------------------------------------------------------------------

def test_ready_status_and_symlink_wait_for_READY(live, liveroot):
    trigger = os.path.join(liveroot, "go")
    pod = live([app("a", SLEEP),
                _notify_app("b", "STATUS=warming up", ("wait", trigger),
                            "READY=1\nSTATUS=serving")])
    st = pod.wait_status("b", statusText="warming up")
    assert st["state"] == "running" and st["ready"] is False
    assert pod.wait_status("a", ready=True) and pod.supervisor_status() is None
    open(trigger, "w").close()
    pod.wait_event("pod-ready")
    st = pod.wait_status("b", statusText="serving")
    assert st["ready"] is True and pod.supervisor_status() == "ready"
    kinds = pod.kinds()
    assert kinds.index(("started", "b")) < kinds.index(("ready", "b")) < kinds.index(
        ("pod-ready", None))


def test_notify_socket_is_given_to_notify_apps_only(live):
    pod = live([app("plain", sh('echo "${NOTIFY_SOCKET-unset}"; exec sleep 3600')),
                app("n", sh('echo "$NOTIFY_SOCKET"; exec sleep 3600'),
                    annotations={"stage1/notify": "systemd"})])
    wait_for(lambda: len(pod.run.stdout().splitlines()) == 2, what="both apps' output")
    assert sorted(pod.run.stdout().splitlines()) == sorted(["unset", pod.pod.file("notify.sock")])
    assert pod.wait_status("plain", ready=True)
    assert pod.wait_status("n", state="running")["ready"] is False


def test_image_annotation_supports_systemd_notify(live, liveroot):
    go = os.path.join(liveroot, "go")

    def image(p):
        d = p.app_dir("img")
        os.makedirs(d)
        with open(os.path.join(d, "manifest"), "w") as f:
            json.dump({"acKind": "ImageManifest", "acVersion": "0.8.11", "name": "example.com/img",
                       "app": {"exec": py(notify_code(("wait", go), "READY=1")),
                               "user": "0", "group": "0"},
                       "annotations": [{"name": "appc.io/executor/supports-systemd-notify",
                                        "value": "true"}]}, f)
    runtime = app("img", SLEEP)
    del runtime["app"]
    pod = live([runtime], before_run=image)
    assert pod.wait_status("img", state="running")["ready"] is False
    open(go, "w").close()
    assert pod.wait_status("img", ready=True)


def test_stopping_is_recorded(live, liveroot):
    trigger = os.path.join(liveroot, "go")
    pod = live([_notify_app("a", "READY=1", ("wait", trigger), "STOPPING=1\nSTATUS=bye")])
    assert pod.wait_status("a", ready=True)["stopping"] is False
    open(trigger, "w").close()
    st = pod.wait_status("a", statusText="bye")
    assert st["stopping"] is True


def test_a_child_of_the_app_may_notify_for_it(live, liveroot):
    # NotifyAccess=all: any descendant speaks for the app.  The child
    # stays until the app is ready: a sender that is gone before the init
    # reads its datagram cannot be traced to an app (systemd has the same
    # limit with systemd-notify).
    status = os.path.join(liveroot, "pod", "rkt", "status", "a.json")
    # The status file may not be there yet (it is written whole, by a
    # rename): the child waits on, it does not end (a crash would leave its
    # datagram untraceable, and the app never ready).
    child = notify_code("READY=1\nSTATUS=from child", sleep=False) + (
        "import json\n"
        "def ready():\n"
        "    try:\n"
        "        return json.load(open(%r)).get('ready')\n"
        "    except OSError:\n"
        "        return False\n"
        "while not ready():\n"
        "    time.sleep(0.005)\n" % status)
    pod = live([app("a", ["/bin/sh", "-c", '/usr/bin/python3 -c "$0"; exec sleep 3600', child],
                    annotations={"stage1/notify": "systemd"})])
    st = pod.wait_status("a", ready=True)
    assert st["statusText"] == "from child"


@pytest.mark.skipif(not os.path.exists("/usr/bin/systemd-notify"), reason="no systemd-notify")
@pytest.mark.parametrize("pid1", [False, True], ids=["subreaper", "pid1"])
def test_systemd_notify_from_a_shell_script(live, pid1):
    # systemd-notify (>= 246) waits on BARRIER=1 until the init has read
    # its message: it is still there to be traced to the app.
    pod = live([app("a", sh("systemd-notify --ready --status=up; exec sleep 3600"),
                    annotations={"stage1/notify": "systemd"})], None, pid1=pid1)
    assert pod.wait_status("a", ready=True)["statusText"] == "up"


# -- the sender is who the kernel says -------------------------------------------------

def _gated_app(liveroot, name="b"):
    """An app that, once `<liveroot>/go` exists, sends STATUS=checked: the
    init handles datagrams in order, so when statusText is `checked`,
    every datagram sent before `go` was created has been handled."""
    return _notify_app(name, ("wait", os.path.join(liveroot, "go")), "STATUS=checked")


def test_a_process_outside_the_pod_cannot_make_an_app_ready(live, liveroot):
    pod = live([_gated_app(liveroot)])
    pid = pod.wait_status("b", state="running")["pid"]
    for message in ("READY=1", "READY=1\nMAINPID=%d" % pid, "MAINPID=%d\nREADY=1" % pid,
                    "STATUS=forged"):
        send_notify(pod.pod.file("notify.sock"), message)
    open(os.path.join(liveroot, "go"), "w").close()
    st = pod.wait_status("b", statusText="checked")
    assert st["ready"] is False and pod.supervisor_status() is None
    assert ("ready", "b") not in pod.kinds()


def _forge_as_nobody(path, pid):
    out = []
    for creds in ((pid, NOBODY, NOBODY), (pid, 0, 0), None):
        try:
            send_notify(path, "READY=1\nMAINPID=%d" % pid, creds)
            out.append("sent")
        except OSError as err:
            import errno
            out.append(errno.errorcode[err.errno])
    return out


def test_forged_credentials_are_refused_by_the_kernel(live, liveroot):
    pod = live([_gated_app(liveroot)])
    pid = pod.wait_status("b", state="running")["pid"]
    assert as_user(NOBODY, _forge_as_nobody, pod.pod.file("notify.sock"), pid) == [
        "EPERM", "EPERM", "sent"]
    open(os.path.join(liveroot, "go"), "w").close()
    assert pod.wait_status("b", statusText="checked")["ready"] is False


ORPHAN = """
import json, os, socket, sys, time
status, go = sys.argv[1], sys.argv[2]
parent = os.getpid()
if os.fork():
    os._exit(0)          # the app's child ends: the grandchild is the init's orphan
while os.getppid() == parent:
    time.sleep(0.005)
pid = None
while not pid:
    try:
        pid = json.load(open(status)).get("pid")
    except (OSError, ValueError):
        time.sleep(0.005)
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.connect(os.environ["NOTIFY_SOCKET"])
s.send(("READY=1\\nMAINPID=%d" % pid).encode())
open(go, "w").close()
time.sleep(3600)
"""


@pytest.mark.parametrize("pid1", [False, True], ids=["subreaper", "pid1"])
def test_an_orphan_in_the_pod_cannot_make_an_app_ready(live, liveroot, pid1):
    """The orphan's parent is the init, not an app: whatever MAINPID it
    names, it speaks for nobody."""
    go = os.path.join(liveroot, "go")
    status = os.path.join(liveroot, "pod", "rkt", "status", "b.json")
    a = app("a", ["/bin/sh", "-c", '/usr/bin/python3 -c "$0" "$1" "$2"; exec sleep 3600',
                  ORPHAN, status, go],
            annotations={"stage1/notify": "systemd"})
    pod = live([a, _gated_app(liveroot)], None, pid1=pid1)
    st = pod.wait_status("b", statusText="checked")
    assert st["ready"] is False
    assert pod.apps()["a"][2] is False and pod.supervisor_status() is None


def test_pid1_pod_notify_through_the_namespace(live):
    pod = live([_notify_app("a", "READY=1\nSTATUS=up")], None, pid1=True)
    st = pod.wait_status("a", ready=True)
    assert st["statusText"] == "up" and pod.supervisor_status() == "ready"


# -- fd:N --------------------------------------------------------------------------------

def test_fd_notification_ready_on_newline(live, liveroot):
    go = os.path.join(liveroot, "go")
    script = ('for fd in 3 4 5 6; do { true >&$fd; } 2>/dev/null && echo open $fd; done; '
              'while [ ! -e %s ]; do sleep 0.01; done; printf "ok" >&5; echo >&5; '
              'exec sleep 3600' % go)
    pod = live([app("a", sh(script), annotations={"stage1/notify": "fd:5"})])
    wait_for(lambda: "open 5" in pod.run.stdout(), what="the fd check")
    assert pod.run.stdout() == "open 5\n"     # fds 3 and 4 closed, nothing of the init's
    assert pod.wait_status("a", state="running")["ready"] is False
    open(go, "w").close()
    pod.wait_event("ready", "a")
    assert pod.wait_status("a", ready=True) and pod.supervisor_status() == "ready"


def test_fd_notification_is_per_run(live):
    pod = live([app("a", sh("echo >&3; exec sleep 3600"), annotations={"stage1/notify": "fd:3"})])
    pod.wait_event("ready", "a")
    assert pod.request({"op": "restart", "app": "a"})["ok"]
    pod.wait_event("ready", "a", count=2)


def test_fd_app_that_never_writes_is_never_ready_and_the_pod_waits(live):
    pod = live([app("a", SLEEP, annotations={"stage1/notify": "fd:4"}),
                app("b", SLEEP, annotations={"stage1/after": "a"})])
    assert pod.wait_status("a", state="running")["ready"] is False
    r = stage1("status", pod.path, "--wait-ready", "--timeout", "0.2")
    assert r.returncode == 1 and "not ready after 0.2s" in r.stderr
    assert pod.apps()["b"][0] == "waiting"


# -- supervisor-status and --wait-ready ------------------------------------------------

def test_wait_ready_returns_once_every_app_is_ready(live, liveroot):
    go = os.path.join(liveroot, "go")
    pod = live([app("a", SLEEP), _notify_app("b", ("wait", go), "READY=1")])
    pod.wait_status("b", state="running")
    waiter = subprocess.Popen([STAGE1, "status", pod.path, "--wait-ready"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        r = stage1("status", pod.path, "--wait-ready", "--timeout", "0")
        assert r.returncode == 1
        assert waiter.poll() is None
        open(go, "w").close()
        out, err = waiter.communicate(timeout=10)
    finally:
        if waiter.poll() is None:
            waiter.kill()
            waiter.wait()
    assert waiter.returncode == 0, err
    assert out.startswith("pod %s: running" % pod.path)
    assert os.readlink(os.path.join(pod.pod.root, "rkt", "supervisor-status")) == "ready"


def test_wait_ready_fails_when_the_pod_ends_unready(live):
    pod = live([app("a", sh("exit 3"), annotations={"stage1/notify": "systemd"})])
    assert pod.wait_end() == 3
    r = stage1("status", pod.path, "--wait-ready")
    assert r.returncode == 1 and "the pod ended before it was ready" in r.stderr


def test_supervisor_status_of_an_earlier_run_is_removed(live):
    pod = live([app("a", SLEEP)])
    pod.wait_event("pod-ready")
    assert stage1("stop", pod.path).returncode == 0 and pod.wait_end() == 0
    assert pod.supervisor_status() == "ready"
    manifest = json.loads(pod.pod.read("pod"))
    manifest["apps"][0]["annotations"] = [{"name": "stage1/notify", "value": "fd:3"}]
    pod.pod.write(json.dumps(manifest))
    again = live(name="pod", apps=manifest["apps"])
    again.wait_status("a", state="running")
    assert again.supervisor_status() is None
    assert stage1("status", pod.path, "--wait-ready", "--timeout", "0.1").returncode == 1


def test_init_apps_count_as_ready_once_done(live):
    pod = live([app("setup", ["true"], annotations={"stage1/init": "true"}), app("a", SLEEP)])
    pod.wait_event("pod-ready")
    assert stage1("status", pod.path, "--wait-ready", "--timeout", "5").returncode == 0
    assert pod.kinds()[-1] == ("pod-ready", None)


def test_stage1_rootfs_layout_puts_the_symlink_there(live):
    def rootfs(p):
        os.makedirs(os.path.join(p.path, "stage1", "rootfs"))
    pod = live([app("a", SLEEP)], before_run=rootfs)
    pod.wait_event("pod-ready")
    link = os.path.join(pod.path, "stage1", "rootfs", "rkt", "supervisor-status")
    wait_for(lambda: os.path.islink(link), what="the symlink")
    assert os.readlink(link) == "ready"
    assert stage1("status", pod.path, "--wait-ready", "--timeout", "5").returncode == 0


def test_image_notify_annotation_counts_beside_an_app_section(live, liveroot):
    """rkt writes an app section into every RuntimeApp; the image's
    annotations are then only in the image manifest."""
    go = os.path.join(liveroot, "go")

    def image(p):
        d = p.app_dir("svc")
        os.makedirs(d)
        with open(os.path.join(d, "manifest"), "w") as f:
            json.dump({"acKind": "ImageManifest", "acVersion": "0.8.11", "name": "example.com/svc",
                       "app": {"exec": ["/bin/false"], "user": "0", "group": "0"},
                       "annotations": [{"name": "appc.io/executor/supports-systemd-notify",
                                        "value": "true"}]}, f)
    pod = live([app("svc", py(notify_code(("wait", go), "READY=1"))), app("plain", SLEEP)],
               before_run=image)
    assert pod.wait_status("svc", state="running")["ready"] is False
    open(go, "w").close()
    assert pod.wait_status("svc", ready=True)
    assert pod.wait_status("plain", ready=True)
