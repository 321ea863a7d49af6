"""Mutable pods (`stage1 run --mutable`, rkt's `rkt app sandbox`): apps
come and go; the pod lives until it is stopped."""
import json
import os

from livehelpers import Pod, app, run_to_end, stage1, wait_for, write_atomic
from livehelpers import live, liveroot  # noqa: F401  (fixtures)

SLEEP = ["/bin/sleep", "3600"]


def _add_to_manifest(pod, runtime_app):
    manifest = json.loads(pod.pod.read("pod"))
    manifest["apps"].append(runtime_app)
    write_atomic(pod.pod.file("pod"), json.dumps(manifest))


def _remove_from_manifest(pod, name):
    manifest = json.loads(pod.pod.read("pod"))
    manifest["apps"] = [a for a in manifest["apps"] if a["name"] != name]
    write_atomic(pod.pod.file("pod"), json.dumps(manifest))


def test_an_empty_mutable_pod_lives_and_takes_apps(live, tmp_path):
    pod = live([], None, "--mutable")
    pod.wait_event("pod-ready")
    assert stage1("status", pod.path, "--wait-ready", "--timeout", "5").returncode == 0
    assert pod.apps() == {}

    _add_to_manifest(pod, app("web", SLEEP))
    assert stage1("app", "add", pod.path, "--app", "web").returncode == 0
    manifest = tmp_path / "db.json"
    manifest.write_text(json.dumps(app("db", SLEEP)))
    r = stage1("app", "add", pod.path, "--app", "db", "--manifest", str(manifest))
    assert r.returncode == 0, r.stderr
    assert {n: s[0] for n, s in pod.apps().items()} == {"web": "waiting", "db": "waiting"}

    for name in ("web", "db"):
        assert stage1("app", "start", pod.path, "--app", name).returncode == 0
    assert {n: s[0] for n, s in pod.apps().items()} == {"web": "running", "db": "running"}

    assert stage1("app", "stop", pod.path, "--app", "web").returncode == 0
    assert stage1("app", "stop", pod.path, "--app", "db").returncode == 0
    # Every app has ended: a mutable pod goes on.
    assert pod.run.alive() and pod.apps()["db"][0] == "exited"

    r = stage1("app", "rm", pod.path, "--app", "web")
    assert r.returncode == 0, r.stderr
    assert set(pod.apps()) == {"db"}
    assert pod.wait_status("web", state="exited")["reason"] == "Stopped"   # kept until gc

    assert stage1("stop", pod.path).returncode == 0
    assert pod.wait_end() == 0
    assert pod.kinds()[-1] == ("pod-exited", None)


def test_the_last_app_ending_on_its_own_does_not_end_a_mutable_pod(live):
    pod = live([app("a", ["sh", "-c", "exit 3"])], None, "--mutable")
    st = pod.wait_status("a", state="exited")
    assert st["exitCode"] == 3 and pod.run.alive()
    assert pod.request({"op": "start", "app": "a"})["ok"]
    assert pod.wait_event("exited", "a", count=2)["exitCode"] == 3
    assert pod.run.alive()
    pod.run.signal(15)
    assert pod.wait_end() == 3


def test_a_crash_of_the_last_app_does_not_end_a_mutable_pod_under_onAny(live):
    pod = live([app("a", ["sh", "-c", "kill -9 $$"])],
               {"stage1/exit-policy": "onAny"}, "--mutable")
    assert pod.wait_status("a", state="exited")["signal"] == "SIGKILL"
    assert pod.request({"op": "status"})["stopping"] is False and pod.run.alive()


def test_rkts_mutable_annotation(live):
    pod = live([app("a", ["true"])], {"coreos.com/rkt/stage1/mutable": "true"})
    pod.wait_status("a", state="exited")
    assert pod.run.alive()
    assert pod.request({"op": "rm", "app": "a"})["removed"] is True
    assert pod.apps() == {} and pod.run.alive()


def test_an_empty_pod_that_is_not_mutable_is_refused(liveroot):
    pod = Pod(os.path.join(liveroot, "pod"), [])
    code, out, err = run_to_end(pod)
    assert code == 254 and "pod: apps: the pod has no apps" in err


def test_an_app_removed_can_be_added_again(live):
    pod = live([app("a", SLEEP)], None, "--mutable")
    pod.wait_event("pod-ready")
    assert pod.request({"op": "rm", "app": "a"})["ok"]
    _remove_from_manifest(pod, "a")
    _add_to_manifest(pod, app("a", ["sh", "-c", "echo second; exec sleep 3600"]))
    assert pod.request({"op": "add", "app": "a"})["ok"]
    answer = pod.request({"op": "start", "app": "a"})
    assert answer["state"] == "running"
    wait_for(lambda: "second" in pod.run.stdout(), what="the new app's output")
    assert [k for k, _ in pod.kinds("a")] == ["started", "ready", "stopping", "exited", "removed",
                                              "added", "started", "ready"]


def test_rkt_app_entrypoints_drive_a_mutable_pod(live):
    """What `rkt app add/start/stop/rm` run: the entrypoint with cwd in the
    pod directory, --debug=BOOL, --uuid=, --app= (stage0/app_*.go)."""
    pod = live([], None, "--mutable")
    pod.wait_event("pod-ready")
    _add_to_manifest(pod, app("svc", SLEEP))
    steps = [(["add", "--debug=false", "--uuid=6a4ce43e", "--app=svc",
               "--disable-capabilities-restriction", "--disable-paths", "--disable-seccomp"],
              "svc: waiting\n"),
             (["start", "--debug=false", "--app=svc"], None),
             (["stop", "--debug=true", "--app=svc"], "svc: exited (pid"),
             (["rm", "--debug=false", "--app=svc"], "svc: removed\n")]
    for args, out in steps:
        r = stage1("app", *args, cwd=pod.path)
        assert r.returncode == 0, (args, r.stderr)
        if out:
            assert r.stdout.startswith(out), (args, r.stdout)
    assert pod.apps() == {} and pod.run.alive()
