"""The two processes of an isolated run: the host side passes signals on and
exits with the pod's code; the init stops the pod when the host side dies;
stage1 status, ps and app add work on an isolated pod."""
import os
import signal

from isohelpers import podbase  # noqa: F401 (a fixture)
from isohelpers import IsoPod, IsoRun, gc, iso_run, sh_app, stage1_cmd, wait_for, STAGE1
from podhelpers import alive, children


def test_the_exit_code_is_the_pods(podbase):
    pod = IsoPod(podbase, [sh_app("a", "exit 3")])
    assert iso_run(pod)[0] == 3
    pod = IsoPod(podbase, [sh_app("a", "kill -USR1 $$")])
    assert iso_run(pod)[0] == 128 + signal.SIGUSR1


def test_the_host_side_passes_signals_on_to_the_apps(podbase):
    pod = IsoPod(podbase, [sh_app("a", "trap 'echo got HUP' HUP; trap 'echo got USR2' USR2; "
                                       "echo ready; while :; do sleep 0.01; done")])
    with IsoRun(pod) as r:
        wait_for(lambda: r.stdout() == "ready\n", what="the app's traps")
        for sig in (signal.SIGHUP, signal.SIGUSR2):
            os.kill(r.proc.pid, sig)       # the host side, not the init
        wait_for(lambda: "got USR2" in r.stdout(), what="the signals to arrive")
        assert r.stdout().splitlines() == ["ready", "got HUP", "got USR2"]
        os.kill(r.proc.pid, signal.SIGTERM)
        assert r.wait() == 0
    assert pod.status("a")["reason"] == "Stopped"


def test_the_init_stops_the_pod_when_the_host_side_dies(podbase):
    pod = IsoPod(podbase, [sh_app("a", "trap 'echo stopped > /v/stopped; exit 0' TERM; "
                                       "touch /v/trapped; while :; do sleep 0.01; done")],
                 volumes=[{"name": "v", "kind": "empty"}])
    pod.manifest["apps"][0]["mounts"] = [{"volume": "v", "path": "/v"}]
    pod.write()
    volume = os.path.join(pod.root, "rkt", "volumes", "v")
    with IsoRun(pod) as r:
        pod.wait_state("a", "running")
        # Running is spawned; the app's trap is set once it says so.
        wait_for(lambda: os.path.exists(os.path.join(volume, "trapped")),
                 what="the app's trap set")
        init = int(pod.read("pid"))
        os.kill(r.proc.pid, signal.SIGKILL)
        r.proc.wait()
        wait_for(lambda: not alive(init), what="the pod to end")
    with open(os.path.join(volume, "stopped")) as f:
        assert f.read() == "stopped\n"
    assert pod.status("a")["reason"] == "Stopped"


def test_status_and_ps_of_an_isolated_pod(podbase):
    pod = IsoPod(podbase, [sh_app("a", "exec sleep 60")])
    with IsoRun(pod):
        pod.wait_state("a", "running")
        init = int(pod.read("pid"))
        app = wait_for(lambda: children(init), what="the app")[0]
        ps = stage1_cmd("ps", pod.path)
        assert ps.returncode == 0, ps.stderr
        rows = [l.split() for l in ps.stdout.splitlines()[1:]]
        assert [r[:2] for r in rows] == [["(init)", str(init)], ["a", str(app)]]
        status = stage1_cmd("status", pod.path)
        assert status.returncode == 0 and "pod %s: running" % pod.path in status.stdout


def test_an_app_added_to_an_isolated_pod_is_isolated_too(podbase):
    first = sh_app("a", "exec sleep 60")
    second = sh_app("b", "hostname; readlink /proc/self/root; ls /proc | grep -c '^[0-9]'",
                    isolators=[{"name": "os/linux/no-new-privileges", "value": True}])
    pod = IsoPod(podbase, [first, second])
    pod.manifest["apps"] = [first]
    pod.write()
    with IsoRun(pod, "--mutable") as r:
        pod.wait_state("a", "running")
        pod.manifest["apps"] = [first, second]
        pod.write()
        for op in ("add", "start"):
            done = stage1_cmd("app", op, pod.path, "--app", "b")
            assert done.returncode == 0, done.stderr
        pod.wait_state("b", "exited")
        hostname, root, count = r.stdout().split()
        assert (hostname, root) == ("rkt-" + pod.uuid, "/")
        assert int(count) <= 6       # the init, a, b's shell, ls, grep: not the host's
        assert pod.code("b") == 0


def test_the_notify_socket_is_inside_the_apps_that_use_it(podbase):
    pod = IsoPod(podbase, [
        sh_app("a", "echo $NOTIFY_SOCKET; test -S $NOTIFY_SOCKET && echo a-socket",
               annotations={"stage1/notify": "systemd"}),
        sh_app("b", "test -e /run/stage1/notify.sock || echo b-none")],
        annotations={"stage1/exit-policy": "untilAll"})
    code, out, err = iso_run(pod)
    assert code == 0, err
    assert sorted(out.split()) == ["/run/stage1/notify.sock", "a-socket", "b-none"]


def test_interactive_with_a_terminal_makes_it_the_console(podbase):
    import pty
    import select
    import time
    pod = IsoPod(podbase, [sh_app("a", "stat -c '%t' /dev/console; read x; echo got $x")])
    pid, fd = pty.fork()
    if pid == 0:
        os.execv(STAGE1, [STAGE1, "run", "--interactive", pod.path])
    out, sent, deadline = b"", False, time.monotonic() + 10
    try:
        while b"got hello" not in out and time.monotonic() < deadline:
            if select.select([fd], [], [], 0.1)[0]:
                try:
                    out += os.read(fd, 1024)
                except OSError:
                    break
            if not sent and b"\n" in out:
                os.write(fd, b"hello\n")
                sent = True
    finally:
        ended = []
        try:
            wait_for(lambda: ended.append(os.waitpid(pid, os.WNOHANG)) or ended[-1][0],
                     what="stage1 run to end")
        finally:
            if not ended or not ended[-1][0]:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            os.close(fd)
            wait_for(lambda: gc(pod).returncode == 0, what="gc")
    assert os.WEXITSTATUS(ended[-1][1]) == 0
    lines = out.decode().split()
    assert lines[0] == "88"       # 136, a pseudo-terminal: the one stage1 runs on
    assert "got" in lines and lines[-1] == "hello"


def test_a_pod_runs_again_over_the_cgroups_a_killed_run_left(podbase):
    pod = IsoPod(podbase, [sh_app("a", "[ -e /again ] && exit 0; touch /again; exec sleep 60",
                                  isolators=[{"name": "resource/memory",
                                              "value": {"limit": "64Mi"}}])])
    with IsoRun(pod) as r:
        pod.wait_state("a", "running")
        init = int(pod.read("pid"))
        os.kill(r.proc.pid, signal.SIGKILL)
        r.proc.wait()
        wait_for(lambda: not alive(init), what="the first run to end")
        assert os.path.isdir(pod.cgroup("devices", "a"))
        code, out, err = iso_run(pod)
        assert (code, err) == (0, "")
