"""The control socket POD/stage1.sock and the `stage1 app` commands:
start, stop, restart, rm, add; bad requests; who may talk to it."""
import json
import os
import socket
import stat

import pytest

from livehelpers import NOBODY, app, as_user, named, sh, wait_for, write_atomic
from livehelpers import live, liveroot  # noqa: F401  (fixtures)

SLEEP = ["/bin/sleep", "3600"]


def _two(live, *args, **kw):
    pod = live([app("a", SLEEP), app("b", SLEEP)], None, *args, **kw)
    pod.wait_event("pod-ready")
    return pod


# -- the socket ------------------------------------------------------------------

def test_socket_is_0600_and_answers_status(live):
    pod = _two(live)
    st = os.stat(pod.sock)
    assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600
    answer = pod.request({"op": "status"})
    assert answer["ok"] and answer["ready"] and not answer["stopping"]
    assert [a["name"] for a in answer["apps"]] == ["a", "b"]
    assert all(a["state"] == "running" and a["pid"] for a in answer["apps"])


class _Loop:
    def add_reader(self, fd, callback):
        pass

    def remove_reader(self, fd):
        pass


def test_the_socket_appears_only_once_it_listens(tmp_path, monkeypatch):
    # A client that finds stage1.sock connects at once (a `stage1 app` run
    # just after the pod's start): a socket bound but not yet listening
    # would refuse it.  The init binds under a name of its own and renames.
    from stage1.live import control
    path = str(tmp_path / "stage1.sock")
    seen = []
    real = control.listening_socket

    class Watched:
        def __init__(self, sock):
            self._sock = sock

        def listen(self, backlog):
            seen.append(os.path.exists(path))
            self._sock.listen(backlog)

        def __getattr__(self, name):
            return getattr(self._sock, name)

    monkeypatch.setattr(control, "listening_socket", lambda *a: Watched(real(*a)))
    server = control.ControlServer(path, _Loop(), None, None, {0}, None)
    try:
        assert seen == [False]
        assert os.listdir(tmp_path) == ["stage1.sock"]
        with socket.socket(socket.AF_UNIX) as c:
            c.connect(path)
    finally:
        server.close()
    assert os.listdir(tmp_path) == []


def test_a_socket_that_cannot_be_put_in_place_leaves_nothing(tmp_path, monkeypatch):
    from stage1.live import control
    path = str(tmp_path / "stage1.sock")

    def refuse(src, dst):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(control.os, "rename", refuse)
    with pytest.raises(PermissionError):
        control.ControlServer(path, _Loop(), None, None, {0}, None)
    assert os.listdir(tmp_path) == []


def test_several_requests_on_one_connection_each_get_a_line(live):
    pod = _two(live)
    with pod.conn() as c:
        c.send(b'{"op": "status"}\n\n{"op": "nope"}\n{"op": "status"}\n')
        first, second, third = c.obj(), c.obj(), c.obj()
    assert first["ok"] and third["ok"] and not second["ok"]


def test_socket_removed_when_the_pod_ends(live):
    pod = _two(live)
    assert pod.cli("stop", pod.path).returncode == 0
    assert pod.wait_end() == 0
    assert not os.path.exists(pod.sock)


# -- stop, start, restart --------------------------------------------------------

def test_app_stop_keeps_the_status_and_app_start_runs_it_again(live):
    pod = _two(live)
    old = pod.apps()["a"][1]
    r = pod.cli("app", "stop", pod.path, "--app", "a")
    assert r.returncode == 0 and r.stdout.startswith("a: exited"), r.stderr
    st = pod.wait_status("a", state="exited")
    assert (st["reason"], st["exitCode"]) == ("Stopped", 143)
    assert pod.pod.code("a") == 143
    assert pod.run.alive() and pod.apps()["b"][0] == "running"
    r = pod.cli("app", "start", pod.path, "--app", "a")
    assert r.returncode == 0 and r.stdout.startswith("a: running (pid"), r.stderr
    new = pod.apps()["a"][1]
    assert new != old and pod.wait_status("a", state="running", pid=new)
    assert pod.kinds("a")[-4:] == [("stopping", "a"), ("exited", "a"), ("started", "a"),
                                   ("ready", "a")]


def test_app_restart_gives_a_new_pid_and_says_so(live):
    pod = _two(live)
    old = pod.apps()["a"][1]
    r = pod.cli("app", "restart", pod.path, "--app", "a")
    assert r.returncode == 0, r.stderr
    new = pod.apps()["a"][1]
    assert new != old and r.stdout.strip() == "a: running (pid %d)" % new
    assert pod.wait_status("a", pid=new)["restartCount"] == 0


def test_app_restart_of_the_only_app_does_not_end_the_pod(live):
    pod = live([app("a", SLEEP)])
    pod.wait_event("pod-ready")
    old = pod.apps()["a"][1]
    answer = pod.request({"op": "restart", "app": "a"})
    assert answer["ok"] and answer["state"] == "running" and answer["pid"] != old, answer
    assert pod.run.alive() and pod.apps()["a"][0] == "running"


def test_start_of_a_running_app_answers_at_once_and_changes_nothing(live):
    pod = _two(live)
    before = pod.apps()
    answer = pod.request({"op": "start", "app": "a"})
    assert answer["ok"] and answer["state"] == "running"
    assert pod.apps() == before


def test_stop_of_a_stopped_app_answers_exited(live):
    pod = _two(live)
    assert pod.request({"op": "stop", "app": "a"})["state"] == "exited"
    events = pod.pod.read("events.jsonl")
    answer = pod.request({"op": "stop", "app": "a"})
    assert answer["ok"] and answer["state"] == "exited" and answer["exitCode"] == 143
    assert pod.pod.read("events.jsonl") == events


# -- rm ----------------------------------------------------------------------------

def test_app_rm_stops_and_removes_but_keeps_status_files(live):
    pod = _two(live)
    r = pod.cli("app", "rm", pod.path, "--app", "b")
    assert (r.returncode, r.stdout) == (0, "b: removed\n"), r.stderr
    assert "b" not in pod.apps()
    assert pod.wait_status("b", state="exited") and pod.pod.code("b") == 143
    assert pod.kinds("b")[-3:] == [("stopping", "b"), ("exited", "b"), ("removed", "b")]
    assert pod.run.alive()
    r = pod.cli("status", pod.path, "--json")
    assert [a["name"] for a in json.loads(r.stdout)["apps"]] == ["a"]
    r = pod.cli("app", "start", pod.path, "--app", "b")
    assert r.returncode == 1 and "no app 'b'" in r.stderr


def test_app_rm_of_an_app_that_never_started(live):
    pod = live([app("a", SLEEP), app("b", SLEEP, annotations={"stage1/after": "a",
                                                              "stage1/notify": "systemd"}),
                app("c", SLEEP, annotations={"stage1/after": "b"})])
    pod.wait_state("b", "running")
    answer = pod.request({"op": "rm", "app": "c"})
    assert answer == {"ok": True, "app": "c", "removed": True}
    assert set(pod.apps()) == {"a", "b"} and pod.wait_status("c", state="waiting")


# -- add ---------------------------------------------------------------------------

def _add_to_manifest(pod, runtime_app):
    manifest = json.loads(pod.pod.read("pod"))
    manifest["apps"].append(runtime_app)
    write_atomic(pod.pod.file("pod"), json.dumps(manifest))


def test_app_add_from_the_pod_manifest_then_start(live):
    pod = _two(live)
    _add_to_manifest(pod, app("c", sh("echo $AC_APP_NAME > %s; exec sleep 3600"
                                      % pod.pod.file("c-ran"))))
    r = pod.cli("app", "add", pod.path, "--app", "c")
    assert (r.returncode, r.stdout) == (0, "c: waiting\n"), r.stderr
    assert pod.apps()["c"][0] == "waiting" and pod.wait_status("c", state="waiting")
    assert pod.kinds("c") == [("added", "c")]
    r = pod.cli("app", "start", pod.path, "--app", "c")
    assert r.returncode == 0, r.stderr
    wait_for(lambda: pod.pod.read("c-ran") == "c\n", what="c's output")
    r = pod.cli("status", pod.path, "--json")
    assert [a["name"] for a in json.loads(r.stdout)["apps"]] == ["a", "b", "c"]


def test_app_add_from_a_manifest_file(live, tmp_path):
    pod = _two(live)
    path = tmp_path / "c.json"
    path.write_text(json.dumps(app("c", SLEEP)))
    r = pod.cli("app", "add", pod.path, "--app", "c", "--manifest", str(path))
    assert r.returncode == 0, r.stderr
    assert pod.request({"op": "start", "app": "c"})["state"] == "running"


def test_an_added_app_waits_for_start_whatever_else_happens(live):
    # Another app becoming ready, or restarting, must not start it.
    pod = _two(live)
    assert pod.request({"op": "add", "app": "c", "runtimeApp": app("c", SLEEP)})["ok"]
    assert pod.request({"op": "restart", "app": "a"})["ok"]
    pod.wait_event("ready", "a", count=2)
    assert pod.request({"op": "stop", "app": "b"})["ok"]
    assert pod.apps()["c"][0] == "waiting"


def test_app_add_takes_stage1_annotations_and_after(live):
    pod = _two(live)
    c = app("c", SLEEP, annotations={"stage1/after": "a", "stage1/notify": "fd:4"})
    assert pod.request({"op": "add", "app": "c", "runtimeApp": c})["ok"]
    answer = pod.request({"op": "start", "app": "c"})
    assert answer["state"] == "running" and answer["ready"] is False


# -- bad requests: an error answer, nothing changed --------------------------------

BAD_RAW = [
    (b"not json\n", "malformed request"),
    (b'{"op": "status"\n', "malformed request"),
    (b'["op", "status"]\n', "a request is a JSON object"),
    (b'"status"\n', "a request is a JSON object"),
    (b'{"op": "explode", "app": "a"}\n', "unknown op 'explode'"),
    (b'{"app": "a"}\n', "unknown op None"),
    (b'{"op": 3, "app": "a"}\n', "unknown op 3"),
    (b'{"op": "__init__"}\n', "unknown op '__init__'"),
    (b'{"op": "stop", "app": "zz"}\n', "no app 'zz' in this pod"),
    (b'{"op": "restart", "app": "zz"}\n', "no app 'zz' in this pod"),
    (b'{"op": "rm", "app": "zz"}\n', "no app 'zz' in this pod"),
    (b'{"op": "start", "app": ["a"]}\n', '"app" must name an app'),
    (b'{"op": "stop"}\n', '"app" must name an app'),
    (b'{"op": "stop", "app": "\xff\xfe"}\n', "malformed request"),
    (b"[" * 100000 + b"]" * 100000 + b"\n", "malformed request"),
    (b'{"op": "add", "app": "a", "runtimeApp": {}}\n', "already in the pod"),
]


@pytest.mark.parametrize("data,error", BAD_RAW, ids=range(len(BAD_RAW)))
def test_a_bad_request_gets_an_error_and_changes_nothing(live, data, error):
    pod = _two(live)
    before = pod.snapshot()
    answer = pod.raw(data)
    assert answer["ok"] is False and error in answer["error"], answer
    assert pod.snapshot() == before and pod.run.alive()


def _bad_app(change):
    runtime = app("c", SLEEP)
    change(runtime)
    return runtime


BAD_APPS = [
    (lambda a: a["app"].pop("exec"),
     "app add: runtimeApp.app.exec: must be a non-empty list of strings"),
    (lambda a: a["app"].update(exec=[]), "app add: runtimeApp.app.exec: must be a non-empty list"),
    (lambda a: a["app"].pop("user"), "app add: runtimeApp.app.user: is required"),
    (lambda a: a["app"].update(user="no-such-user"), "app.user"),
    (lambda a: a.update(name="Bad Name"), "app add: runtimeApp.name: 'Bad Name' is not an AC name"),
    (lambda a: a.update(name="d"),
     "app add: runtimeApp.name: 'd' does not match --app 'c'"),
    (lambda a: a.pop("image"), "app add: runtimeApp.image: is required"),
    (lambda a: a["app"].update(workingDirectory="rel"), "app.workingDirectory"),
    (lambda a: a.update(annotations=named({"stage1/after": "nosuch"})), "no app named 'nosuch'"),
    (lambda a: a.update(annotations=named({"stage1/after": "c"})), "cycle"),
    (lambda a: a.update(annotations=named({"stage1/notify": "sometimes"})), "stage1/notify"),
    (lambda a: a.update(annotations=named({"stage1/log": "syslog"})), "stage1/log"),
    (lambda a: a.update(annotations=named({"stage1/frobnicate": "1"})),
     "unknown stage1 annotation"),
    (lambda a: a.update(annotations=named({"stage1/restart-policy": "sometimes"})),
     "stage1/restart-policy"),
    (lambda a: a.update(annotations=named({"stage1/init": "true"})),
     'app add: c.annotations["stage1/init"]: init apps run before the others'),
]


@pytest.mark.parametrize("change,error", BAD_APPS, ids=range(len(BAD_APPS)))
def test_add_of_a_bad_runtime_app_is_refused_and_changes_nothing(live, change, error):
    pod = _two(live)
    before = pod.snapshot()
    answer = pod.request({"op": "add", "app": "c", "runtimeApp": _bad_app(change)})
    assert answer["ok"] is False and error in answer["error"], answer
    assert pod.snapshot() == before
    assert pod.status("c") is None


def test_runtime_app_not_an_object_is_refused(live):
    pod = _two(live)
    before = pod.snapshot()
    answer = pod.request({"op": "add", "app": "c", "runtimeApp": ["c"]})
    assert answer == {"ok": False, "error": "app add: runtimeApp: must be an object"}
    assert pod.snapshot() == before


def test_add_of_an_app_missing_from_the_pod_manifest_is_refused(live):
    pod = _two(live)
    before = pod.snapshot()
    r = pod.cli("app", "add", pod.path, "--app", "c")
    assert r.returncode == 1 and "no app 'c' in %s" % pod.pod.file("pod") in r.stderr
    assert pod.snapshot() == before


def test_add_from_a_broken_pod_manifest_is_refused(live):
    pod = _two(live)
    write_atomic(pod.pod.file("pod"), "{ not json")
    before = pod.snapshot()
    answer = pod.request({"op": "add", "app": "c"})
    assert not answer["ok"] and "invalid JSON" in answer["error"]
    assert pod.snapshot() == before


def test_bad_app_in_the_rewritten_pod_manifest_is_refused(live):
    pod = _two(live)
    _add_to_manifest(pod, _bad_app(lambda a: a["app"].update(exec="sleep")))
    before = pod.snapshot()
    r = pod.cli("app", "add", pod.path, "--app", "c")
    assert r.returncode == 1 and "pod: apps[2].app.exec" in r.stderr, r.stderr
    assert pod.snapshot() == before


def test_a_request_longer_than_1_MiB_is_refused_and_the_connection_closed(live):
    pod = _two(live)
    before = pod.snapshot()
    with pod.conn() as c:
        try:
            c.send(b'{"op": "status", "pad": "' + b"x" * (2 << 20))
        except (BrokenPipeError, ConnectionResetError):
            pass        # the init closed first: its answer is still there to read
        answer = c.obj()
        assert not answer["ok"] and "longer than" in answer["error"]
        assert c.line() == b""
    assert pod.snapshot() == before


def test_a_client_that_hangs_up_mid_request_changes_nothing(live):
    pod = _two(live)
    before = pod.snapshot()
    with pod.conn() as c:
        c.send(b'{"op": "stop", "app": "a"')
    assert pod.snapshot() == before


def test_requests_to_a_stopping_pod_are_refused(live, liveroot):
    log = os.path.join(liveroot, "log")
    script = "trap '' TERM; echo up > %s; while :; do sleep 3600 & wait; done" % log
    pod = live([app("a", sh(script), annotations={"stage1/stop-timeout": "5"})])
    _trap_set(log)
    pod.run.signal(15)
    pod.wait_event("stopping", "a")
    for op in ("start", "restart"):
        answer = pod.request({"op": op, "app": "a"})
        assert answer == {"ok": False, "error": "the pod is stopping"}
    answer = pod.request({"op": "add", "app": "b", "runtimeApp": app("b", SLEEP)})
    assert answer == {"ok": False, "error": "the pod is stopping"}


# -- the CLI -------------------------------------------------------------------------

def test_cli_usage_and_failures(live, tmp_path):
    pod = _two(live)
    r = pod.cli("app", "restart", pod.path)
    assert r.returncode == 2 and "needs --app NAME" in r.stderr
    r = pod.cli("app", "frob", pod.path, "--app", "a")
    assert r.returncode == 2
    r = pod.cli("app", "stop", pod.path, "--app", "a", "--manifest", "x")
    assert r.returncode == 2
    r = pod.cli("app", "stop", pod.path, "--app", "zz")
    assert (r.returncode, r.stderr) == (1, "stage1: app stop zz: no app 'zz' in this pod\n")
    r = pod.cli("app", "add", pod.path, "--app", "c", "--manifest", str(tmp_path / "none"))
    assert r.returncode == 1 and "No such file or directory" in r.stderr
    r = pod.cli("app", "stop", str(tmp_path), "--app", "a")
    assert r.returncode == 254 and "unable to reach the pod's init" in r.stderr


def test_rkt_crossing_entrypoint_forms(live):
    """rkt runs its app entrypoints in the pod directory with --debug=BOOL,
    --uuid=UUID and --app=NAME (stage0/app_*.go)."""
    pod = _two(live)
    _add_to_manifest(pod, app("c", SLEEP))
    for args in (["add", "--debug=false", "--uuid=1234", "--app=c"],
                 ["start", "--debug=true", "--app=c"],
                 ["stop", "--debug=false", "--app=c"],
                 ["rm", "--debug", "--app=c"]):
        r = pod.cli("app", *args, cwd=pod.path)
        assert r.returncode == 0, (args, r.stderr)
    assert [k for k, _ in pod.kinds("c")] == ["added", "started", "ready", "stopping",
                                              "exited", "removed"]


# -- who may talk ---------------------------------------------------------------------

def _connect_and_ask(path, request):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect(path)
    try:
        s.sendall(request)
    except (BrokenPipeError, ConnectionResetError):
        pass
    data = b""
    while True:
        try:
            chunk = s.recv(4096)
        except ConnectionResetError:
            break
        if not chunk:
            break
        data += chunk
        if data.endswith(b"\n"):
            break
    s.close()
    return data.decode()


def test_another_user_cannot_connect_to_the_0600_socket(live):
    pod = _two(live)
    before = pod.snapshot()
    result = as_user(NOBODY, _connect_and_ask, pod.sock, b'{"op": "stop", "app": "a"}\n')
    assert result == ["raised", "EACCES"]
    assert pod.snapshot() == before


def test_peer_credentials_refuse_another_user_even_on_a_0666_socket(live):
    pod = _two(live)
    os.chmod(pod.sock, 0o666)
    before = pod.snapshot()
    text = as_user(NOBODY, _connect_and_ask, pod.sock, b'{"op": "stop", "app": "a"}\n')
    assert [json.loads(l) for l in text.splitlines()] == [
        {"ok": False, "error": "permission denied"}]
    assert pod.snapshot() == before
    assert "control: refused pid" in pod.run.stderr() and "(uid %d)" % NOBODY in pod.run.stderr()


def test_the_owner_of_the_pod_directory_may_talk(live):
    def own(p):
        os.chown(p.path, NOBODY, NOBODY)
    pod = live([app("a", SLEEP)], None, before_run=own)
    pod.wait_event("pod-ready")
    assert os.stat(pod.sock).st_uid == NOBODY
    text = as_user(NOBODY, _connect_and_ask, pod.sock, b'{"op": "status"}\n')
    assert isinstance(text, str) and json.loads(text)["ok"] is True, text
    assert as_user(NOBODY - 1, _connect_and_ask, pod.sock, b'{"op": "status"}\n') == [
        "raised", "EACCES"]


def test_add_refuses_a_cycle_through_apps_already_in_the_pod(live):
    # a comes after c; c removed and added again after a: a cycle.
    pod = live([app("c", SLEEP), app("a", SLEEP, annotations={"stage1/after": "c"})])
    pod.wait_event("pod-ready")
    assert pod.request({"op": "rm", "app": "c"})["ok"]
    before = pod.snapshot()
    c = app("c", SLEEP, annotations={"stage1/after": "a"})
    answer = pod.request({"op": "add", "app": "c", "runtimeApp": c})
    assert not answer["ok"] and "stage1/after makes a cycle" in answer["error"], answer
    assert pod.snapshot() == before


def _slow_to_stop(name, log):
    """Takes a moment to end after SIGTERM, so requests can meet it stopping."""
    script = ("trap 'sleep 0.3; exit 0' TERM; echo run >> %s; while :; do sleep 3600 & wait; done"
              % log)
    return app(name, sh(script))


def _trap_set(log):
    wait_for(lambda: os.path.exists(log) and open(log).read(), what="the app's trap")


def test_a_stop_during_a_restart_wins(live, liveroot):
    log = os.path.join(liveroot, "log")
    pod = live([_slow_to_stop("a", log), app("b", SLEEP)])
    _trap_set(log)
    with pod.conn() as restart:
        restart.send_obj({"op": "restart", "app": "a"})
        pod.wait_event("stopping", "a")
        assert pod.request({"op": "stop", "app": "a"})["state"] == "exited"
        answer = restart.obj()
    assert answer["ok"] and answer["state"] == "exited"
    assert pod.apps()["a"][0] == "exited" and pod.kinds("a").count(("started", "a")) == 1
    with open(log) as f:
        assert f.read() == "run\n"


def test_an_rm_during_a_restart_removes(live, liveroot):
    log = os.path.join(liveroot, "log")
    pod = live([_slow_to_stop("a", log), app("b", SLEEP)])
    _trap_set(log)
    with pod.conn() as restart:
        restart.send_obj({"op": "restart", "app": "a"})
        pod.wait_event("stopping", "a")
        assert pod.request({"op": "rm", "app": "a"})["removed"] is True
        assert restart.obj()["state"] == "exited"
    assert set(pod.apps()) == {"b"}


def test_a_restart_waits_for_the_post_stop_handler(live, liveroot):
    log = os.path.join(liveroot, "log")
    a = app("a", sh("echo run >> %s; exec sleep 3600" % log), eventHandlers=[
        {"name": "post-stop", "exec": ["/bin/sh", "-c", "sleep 0.1; echo post-stop >> %s" % log]}])
    pod = live([a, app("b", SLEEP)])
    pod.wait_event("pod-ready")
    answer = pod.request({"op": "restart", "app": "a"})
    assert answer["ok"] and answer["state"] == "running"
    wait_for(lambda: open(log).read().count("run") == 2, what="the second run")
    with open(log) as f:
        assert f.read() == "run\npost-stop\nrun\n"


def test_restart_of_an_app_that_cannot_exec_answers_its_failure(live):
    pod = live([app("a", SLEEP), app("b", SLEEP)], None, "--mutable")
    pod.wait_event("pod-ready")
    bad = app("c", ["/nonexistent/prog"])
    assert pod.request({"op": "add", "app": "c", "runtimeApp": bad})["ok"]
    answer = pod.request({"op": "restart", "app": "c"})
    assert answer["ok"] and (answer["state"], answer["exitCode"]) == ("exited", 127)
    assert pod.run.alive()


def test_a_pod_deeper_than_a_unix_socket_path_still_has_its_socket(live):
    deep = os.path.join("d" * 60, "e" * 60)
    pod = live([app("a", SLEEP)], name=os.path.join(deep, "pod"))
    pod_path = pod.path
    assert len(os.path.join(pod_path, "stage1.sock")) > 108
    pod.wait_event("pod-ready")
    r = pod.cli("app", "restart", pod_path, "--app", "a")
    assert r.returncode == 0, r.stderr
    assert "unable to listen" not in pod.run.stderr()
    assert pod.cli("stop", pod_path).returncode == 0 and pod.wait_end() == 0
