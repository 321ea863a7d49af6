"""Health checks (stage1/health-*): http, tcp and exec probes against a real
local server that stops answering; healthy, unhealthy, healthy again; the
start period; a restart when the policy says so; readiness from a check
feeding `stage1/after` and supervisor-status; the after-started and
after-completed conditions; the lines said on stderr; bad annotations."""
import os
import re

import pytest

from healthhelpers import FAST, Server, checked, free_port
from conftest import alive, children
from livehelpers import PY, Pod, app, py, run_to_end, sh, wait_for
from livehelpers import live, liveroot  # noqa: F401  (fixtures)
from isohelpers import IsoPod, IsoRun, sh_app
from isohelpers import podbase  # noqa: F401  (fixture)

SLEEP = ["/bin/sleep", "3600"]


@pytest.fixture
def server():
    s = Server()
    try:
        yield s
    finally:
        s.close()


def _lines(pod):
    """The init's stderr lines, without the stage1[PID]: prefix."""
    return [re.sub(r"^stage1\[\d+\]: ", "", l) for l in pod.run.stderr().splitlines()]


def _wait_line(pod, text):
    return wait_for(lambda: text in _lines(pod), what="the line %r; stderr: %s" % (
        text, pod.run.stderr()[-1500:]))


# -- http ------------------------------------------------------------------------------

def test_http_healthy_unhealthy_and_healthy_again(live, server):
    pod = live([checked("a", SLEEP, "http", server.url, **FAST)])
    pod.wait_event("healthy", "a")
    assert pod.wait_status("a", health="healthy", ready=True)
    pod.wait_event("pod-ready")
    server.set("error")
    ev = pod.wait_event("unhealthy", "a")
    message = "http://127.0.0.1:%d/health: HTTP 503 Service Unavailable" % server.port
    assert ev["message"] == message and ev["failures"] == 2
    st = pod.wait_status("a", health="unhealthy")
    assert st["healthFailures"] == 2 and st["healthMessage"] == message
    assert st["state"] == "running" and st["restartCount"] == 0   # restart=never: it goes on
    _wait_line(pod, "a is unhealthy: 2 checks failed in a row (%s); it goes on running "
               "(restart=never)" % message)
    server.set("ok")
    pod.wait_event("healthy", "a", count=2)
    assert pod.wait_status("a", health="healthy", healthFailures=0)["healthMessage"] is None
    _wait_line(pod, "a is healthy again")


def test_http_sends_the_path_and_host_and_a_server_that_hangs_times_out(live, server):
    pod = live([checked("a", SLEEP, "http", server.url + "?x=1",
                        **dict(FAST, timeout="0.2", retries="1"))])
    pod.wait_event("healthy", "a")
    assert server.paths[0] == "/health?x=1" and server.hosts[0] == "127.0.0.1:%d" % server.port
    server.set("hang")
    ev = pod.wait_event("unhealthy", "a")
    assert ev["message"] == "%s?x=1: no answer within 0.2 s" % server.url


def test_http_to_a_server_that_is_gone_is_refused(live, server):
    pod = live([checked("a", SLEEP, "http", server.url, **FAST)])
    pod.wait_event("healthy", "a")
    server.down()
    ev = pod.wait_event("unhealthy", "a")
    assert ev["message"] == "%s: Connection refused" % server.url


def test_http_statuses_3xx_pass_and_4xx_fail(live, liveroot):
    """A server that is an app of the pod: 302 passes, 404 fails."""
    port = free_port()
    code = ("import http.server, os\n"
            "class H(http.server.BaseHTTPRequestHandler):\n"
            "    def do_GET(self):\n"
            "        self.send_response(404 if os.path.exists(%r) else 302)\n"
            "        self.send_header('Location', '/')\n"
            "        self.end_headers()\n"
            "    def log_message(self, *a): pass\n"
            "http.server.HTTPServer(('127.0.0.1', %d), H).serve_forever()\n"
            % (os.path.join(liveroot, "404"), port))
    pod = live([checked("web", py(code), "http", "http://localhost:%d/" % port, **FAST)])
    pod.wait_event("healthy", "web")
    open(os.path.join(liveroot, "404"), "w").close()
    ev = pod.wait_event("unhealthy", "web")
    assert ev["message"] == "http://localhost:%d/: HTTP 404 Not Found" % port


# -- tcp -----------------------------------------------------------------------------

def test_tcp_passes_while_something_listens(live, server):
    pod = live([checked("a", SLEEP, "tcp", "127.0.0.1:%d" % server.port, **FAST)])
    pod.wait_event("healthy", "a")
    server.down()
    ev = pod.wait_event("unhealthy", "a")
    assert ev["message"] == "tcp 127.0.0.1:%d: Connection refused" % server.port
    assert server.count() == 0          # a tcp check connects, it sends nothing


def test_tcp_on_ipv6_loopback(live):
    import socket
    listener = socket.socket(socket.AF_INET6)
    try:
        listener.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback here")
    listener.listen(16)
    try:
        pod = live([checked("a", SLEEP, "tcp", "[::1]:%d" % listener.getsockname()[1], **FAST)])
        pod.wait_event("healthy", "a")
    finally:
        listener.close()


# -- exec ------------------------------------------------------------------------------

def test_exec_runs_in_the_apps_context_and_its_output_is_the_message(live, liveroot):
    down = os.path.join(liveroot, "down")
    check = ('["/bin/sh", "-c", "test \\"$FOO\\" = bar && test \\"$PWD\\" = /tmp && '
             'test \\"$(id -u)\\" = 65534 && if [ -e %s ]; then echo first; '
             'echo \\"it is down\\" >&2; exit 3; fi"]' % down)
    a = checked("a", SLEEP, "exec", check, **FAST)
    a["app"].update(user="65534", group="65534", workingDirectory="/tmp",
                    environment=[{"name": "FOO", "value": "bar"}])
    pod = live([a])
    pod.wait_event("healthy", "a")
    open(down, "w").close()
    ev = pod.wait_event("unhealthy", "a")
    assert ev["message"].endswith(": exit 3: it is down"), ev


def test_an_exec_check_that_hangs_is_killed_with_its_group(live, liveroot):
    marker = os.path.join(liveroot, "checks")
    check = '["/bin/sh", "-c", "echo $$ >> %s; sleep 3600 & sleep 3600"]' % marker
    pod = live([checked("a", SLEEP, "exec", check,
                        **dict(FAST, timeout="0.2", retries="1"))])
    ev = pod.wait_event("unhealthy", "a")
    assert ev["message"] == "%s: no answer within 0.2 s" % " ".join(
        ["/bin/sh", "-c", "echo $$ >> %s; sleep 3600 & sleep 3600" % marker])
    # every check's shell and sleeps are gone, but for the one in flight
    first = int(open(marker).read().split()[0])
    wait_for(lambda: not os.path.exists("/proc/%d" % first) or
             open("/proc/%d/stat" % first).read().split()[2] == "Z", what="the first check gone")
    # The init's live children (of every thread: the spawner's too) come
    # down to the app and the check in flight; one whose group escaped the
    # kill would stay among them for an hour.  (Zombies are left out: the
    # check killed a moment ago may not be reaped yet.)
    wait_for(lambda: len([c for c in children(pod.run.init_pid) if alive(c)]) <= 2,
             what="only the app and one check left (%r)" % children(pod.run.init_pid))



def test_an_exec_check_that_cannot_run_fails(live):
    pod = live([checked("a", SLEEP, "exec", '["/nonexistent/check"]', **FAST)])
    ev = pod.wait_event("unhealthy", "a")
    assert "/nonexistent/check" in ev["message"] and "No such file" in ev["message"]


# -- the start period, a restart, readiness ------------------------------------------------

def test_failures_in_the_start_period_do_not_count(live, server):
    server.set("error")
    pod = live([checked("a", SLEEP, "http", server.url, **dict(FAST, start_period="60"))])
    wait_for(lambda: server.count() >= 5, what="five probes")
    st = pod.status("a")
    assert (st["health"], st["healthFailures"], st["ready"]) == ("starting", 0, False)
    assert ("unhealthy", "a") not in pod.kinds()
    server.set("ok")
    pod.wait_event("healthy", "a")


def test_before_the_first_success_probes_come_every_start_interval(live, server):
    server.set("error")
    pod = live([checked("a", SLEEP, "http", server.url, interval="3600", start_interval="0.05",
                        start_period="3600", timeout="1")])
    wait_for(lambda: server.count() >= 3, what="three probes at start_interval")
    server.set("ok")
    pod.wait_event("healthy", "a")
    seen = server.count()
    assert pod.wait_status("a", health="healthy")
    assert server.count() == seen          # the next one is an hour away


def test_an_unhealthy_app_is_restarted_when_its_policy_says_so(live, server):
    pod = live([checked("a", SLEEP, "http", server.url, **FAST,
                        **{"stage1/restart-policy": "on-failure"})],
               {"stage1/restart-backoff": "0.1"})
    first = pod.wait_event("started", "a")["pid"]
    pod.wait_event("healthy", "a")
    server.set("error")
    ev = pod.wait_event("exited", "a")
    assert ev["reason"] == "Unhealthy" and ev["exitCode"] == 143
    assert ev["message"].startswith("stopped after 2 failed health checks: http://")
    assert pod.wait_event("restarting", "a")["delay"] == 0.1
    server.set("ok")
    again = pod.wait_event("started", "a", count=2)["pid"]
    assert again != first
    pod.wait_event("healthy", "a", count=2)
    st = pod.wait_status("a", health="healthy", restartCount=1)
    assert st["state"] == "running"
    message = "http://127.0.0.1:%d/health: HTTP 503 Service Unavailable" % server.port
    lines = _lines(pod)
    assert "a is unhealthy: 2 checks failed in a row (%s); restarting it (restart=on-failure)" \
        % message in lines
    assert "a was stopped (unhealthy); restarting in 0.1 s (restart=on-failure)" in lines


def test_readiness_from_a_check_orders_starts_and_the_pod_ready(live, server):
    server.set("error")
    pod = live([app("b", SLEEP, annotations={"stage1/after": "a"}),
                checked("a", SLEEP, "http", server.url, **dict(FAST, start_period="60"))])
    wait_for(lambda: server.count() >= 3, what="three failed probes")
    assert pod.apps()["b"][0] == "waiting" and pod.supervisor_status() is None
    server.set("ok")
    pod.wait_event("pod-ready")
    kinds = pod.kinds()
    assert kinds.index(("healthy", "a")) < kinds.index(("ready", "a")) < \
        kinds.index(("started", "b")) < kinds.index(("pod-ready", None))
    assert pod.supervisor_status() == "ready"


def test_after_started_needs_no_readiness(live, server):
    server.set("error")
    pod = live([app("b", SLEEP, annotations={"stage1/after-started": "a"}),
                checked("a", SLEEP, "http", server.url, **dict(FAST, start_period="60"))])
    pod.wait_event("started", "b")
    # b started in the turn a did: the turn's status files come after its events.
    assert pod.wait_status("a", state="running")["ready"] is False
    kinds = pod.kinds()
    assert kinds.index(("started", "a")) < kinds.index(("started", "b"))


def test_after_completed_waits_for_an_end_with_0(live):
    pod = live([app("web", SLEEP, annotations={"stage1/after-completed": "migrate"}),
                app("migrate", sh("sleep 0.2; exit 0"))], {"stage1/exit-policy": "onAny"})
    pod.wait_event("started", "web")
    kinds = pod.kinds()
    assert kinds.index(("exited", "migrate")) < kinds.index(("started", "web"))
    # migrate's end was what it was for: onAny does not stop the pod for it
    pod.wait_event("pod-ready")
    assert pod.run.alive() and pod.apps()["web"][0] == "running"


def test_after_completed_never_starts_after_a_failure(live):
    pod = live([app("web", SLEEP, annotations={"stage1/after-completed": "migrate"}),
                app("migrate", sh("exit 4"))], {"stage1/exit-policy": "untilAll"})
    assert pod.wait_end() == 4
    assert ("started", "web") not in pod.kinds()


def test_no_check_is_probed_while_the_app_stops(live, server):
    pod = live([checked("a", ["/bin/sh", "-c", "trap 'sleep 0.5; exit 0' TERM; "
                              "while :; do sleep 0.01; done"], "http", server.url, **FAST)])
    pod.wait_event("healthy", "a")
    pod.request({"op": "stop", "app": "a"})
    pod.wait_event("stopping", "a")
    seen = server.count()
    pod.wait_event("exited", "a")
    assert server.count() <= seen + 1     # at most the probe that was in flight


# -- bad annotations ---------------------------------------------------------------------

@pytest.mark.parametrize("annotations,message", [
    ({"stage1/health-tcp": "db:5432"}, "'db' is not an IP address or localhost"),
    ({"stage1/health-tcp": "127.0.0.1"}, "must be HOST:PORT"),
    ({"stage1/health-tcp": "127.0.0.1:70000"}, "'70000' is not a port number"),
    ({"stage1/health-http": "https://127.0.0.1/"}, "https is not supported"),
    ({"stage1/health-http": "127.0.0.1:80"}, "must be a URL such as"),
    ({"stage1/health-exec": "pg_isready -q"}, "must be a JSON list of strings"),
    ({"stage1/health-exec": "[]"}, "must be a JSON list of strings"),
    ({"stage1/health-exec": '["a"]', "stage1/health-tcp": "127.0.0.1:1"},
     "an app has one health check"),
    ({"stage1/health-interval": "5"}, "needs a health check"),
    ({"stage1/health-tcp": "127.0.0.1:1", "stage1/health-interval": "0"},
     "must be a number of seconds > 0"),
    ({"stage1/health-tcp": "127.0.0.1:1", "stage1/health-retries": "0"},
     "must be a whole number from 1 to 1000000"),
    ({"stage1/health-tcp": "127.0.0.1:1", "stage1/health-start-period": "-1"},
     "must be a number of seconds >= 0"),
    ({"stage1/after-started": "nope"}, "no app named 'nope'"),
    ({"stage1/after-completed": "a"}, "'a' restarts always"),
    ({"stage1/environment": "all"}, "must be one of clean, inherit"),
    ({"stage1/log-copy": "yes"}, "must be one of true, false"),
    ({"stage1/signal-group": "1"}, "must be one of true, false"),
])
def test_bad_annotations_are_refused_before_anything_starts(liveroot, annotations, message):
    marker = os.path.join(liveroot, "ran")
    pod = Pod(os.path.join(liveroot, "pod"), [
        app("a", sh("touch %s" % marker), annotations={"stage1/restart-policy": "always"}),
        app("b", SLEEP, annotations=annotations)])
    code, out, err = run_to_end(pod)
    assert code == 254 and message in err, err
    assert err.count("\n") == 1 and "apps[1]" in err, err
    assert not os.path.exists(marker)


# -- an isolated pod --------------------------------------------------------------------

def test_an_exec_check_runs_inside_an_isolated_apps_root(podbase):
    """The check is the app's own: its root (busybox only), its PID
    namespace, its user; what it prints is the message."""
    check = ('["/bin/sh", "-c", "test -x /bin/busybox && test ! -e /usr/bin/python3 && '
             'echo uid=$(id -u) pid1=$(cat /proc/1/comm); exit 1"]')
    a = sh_app("a", "exec sleep 100", user="1500", group="1600",
               annotations={"stage1/health-exec": check, "stage1/health-interval": "0.05",
                            "stage1/health-start-interval": "0.05",
                            "stage1/health-retries": "1"})
    pod = IsoPod(podbase, [a])
    with IsoRun(pod):
        st = wait_for(lambda: (pod.status("a") or {}).get("health") == "unhealthy" and
                      pod.status("a"), what="the check's verdict")
        assert ": exit 1: uid=1500 pid1=stage1 init" in st["healthMessage"], st
