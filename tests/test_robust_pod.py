"""A crash-looping app, a writer killed half-way, a full disk, a racing
local user, a broken handler, a killed init: the pod (or what it says of
itself) holds.
"""
import ctypes
import json
import os
import signal
import subprocess
import threading

from podhelpers import STAGE1, Pod, Run, app, run, sh, stage1, wait_for
from isohelpers import IsoPod, IsoRun, podbase, sh_app  # noqa: F401 (fixture)
from conftest import DEADLINE


def test_a_thousand_restarts_in_a_row(tmp_path):
    """base * 2 ** (streak - 1) overflowed a float at the 1025th restart."""
    pod = Pod(tmp_path, [app("crash", ["false"], annotations={"stage1/restart-policy": "always"}),
                         app("b", ["sleep", "100"])],
              annotations={"stage1/restart-backoff": "0.0001",
                           "stage1/restart-backoff-max": "0.0001"})
    with Run(pod) as r:
        wait_for(lambda: (pod.status("crash") or {}).get("restartCount", 0) > 1100,
                 timeout=120, what="1100 restarts")
        assert r.alive(), r.stderr()
        r.signal(signal.SIGTERM)
        # the crash loop's failure is the pod's code: it failed on its own
        assert r.wait() == 1, r.stderr()
    # one line per restart (and the stop), nothing else
    lines = r.stderr().splitlines()
    assert len(lines) > 1100 and lines[-1].endswith("stopping the pod: received SIGTERM")
    assert {l.split(": ", 1)[1] for l in lines[:-1]} == {
        "crash exited with 1; restarting in 0.0001 s (restart=always)"}


def test_stale_temporary_files_are_removed_by_the_next_run_and_by_gc(tmp_path):
    pod = Pod(tmp_path, [app("a", ["true"])])
    os.makedirs(pod.status_dir)
    stale = [pod.file("pod-status.json.999999.tmp"), pod.file("pid.999998.tmp"),
             os.path.join(pod.status_dir, "a.json.999997.tmp")]
    for path in stale:
        open(path, "w").close()
    assert run(pod)[0] == 0
    assert [p for p in stale if os.path.exists(p)] == []
    for path in stale:
        open(path, "w").close()
    assert stage1("gc", pod.path).returncode == 0
    assert [p for p in stale if os.path.exists(p)] == []
    assert os.path.exists(pod.file("pod-status.json"))     # what is not stale stays


def test_events_never_end_in_half_a_line_when_the_disk_fills(tmp_path):
    writer = "i=0; while [ $i -lt 400 ]; do i=$((i+1)); done"
    pod = Pod(tmp_path, [app("crash", sh(writer), annotations={"stage1/restart-policy": "always"}),
                         app("b", ["sleep", "100"])],
              annotations={"stage1/restart-backoff": "0.001", "stage1/restart-backoff-max": "0.001"})
    # The file size limit stands for a full disk: events.jsonl grows until
    # its next line no longer fits.
    proc = subprocess.Popen(["prlimit", "--fsize=30000", STAGE1, "run", pod.path],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    try:
        wait_for(lambda: os.path.exists(pod.file("events.jsonl")) and
                 os.path.getsize(pod.file("events.jsonl")) > 29000, what="events.jsonl full")
        wait_for(lambda: (pod.status("crash") or {}).get("restartCount", 0) > 200,
                 what="more restarts after the file is full")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(DEADLINE) == 0
        err = proc.stderr.read().decode()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()
    with open(pod.file("events.jsonl"), "rb") as f:
        data = f.read()
    assert data.endswith(b"\n") and len(data) <= 30000
    for line in data.splitlines():
        json.loads(line)
    assert err.count("unable to append to %s" % pod.file("events.jsonl")) == 1, err


def test_a_prestart_handler_that_cannot_be_spawned_while_the_pod_stops(tmp_path):
    """_stop_hook used to kill_many([None]) here (a TypeError: exit 254 with
    a traceback, the app's status left `starting`)."""
    pod = Pod(tmp_path, [
        app("a", ["sleep", "100"], eventHandlers=[{"name": "pre-start",
                                                   "exec": ["/nonexistent/handler"]}]),
        app("b", ["true"])], annotations={"stage1/exit-policy": "onAny"})
    code, out, err = run(pod)
    assert "internal error" not in err and "Traceback" not in err, err
    assert code in (0, 254)
    assert pod.status("a")["state"] == "exited"
    assert pod.status("a")["reason"] in ("Stopped", "PreStartFailed")


def test_status_says_when_the_init_is_gone(tmp_path):
    pod = Pod(tmp_path, [app("a", ["sleep", "100"])])
    with Run(pod) as r:
        pod.wait_state("a", "running")
        assert stage1("stop", "--force", pod.path).returncode == 0
        r.wait()
        p = stage1("status", pod.path)
        assert p.returncode == 0
        assert p.stdout.splitlines()[0] == (
            "pod %s: running, but its init is gone (killed?): what follows is its last word"
            % pod.path)
        doc = json.loads(stage1("status", "--json", pod.path).stdout)
        assert doc["pod"]["state"] == "running" and doc["pod"]["initRunning"] is False


def test_an_isolated_pods_status_labels_its_pids(podbase):
    pod = IsoPod(podbase, [sh_app("a", "sleep 100")])
    with IsoRun(pod):
        pod.wait_state("a", "running")
        p = stage1("status", pod.path)
        header = p.stdout.splitlines()[1].split()
        assert header[3] == "POD-PID"
        ps = stage1("ps", pod.path).stdout.splitlines()
        row = [line.split() for line in ps if line.startswith("a ")][0]
        assert int(row[2]) == pod.status("a")["pid"] and int(row[1]) != int(row[2])
        assert json.loads(stage1("status", "--json", pod.path).stdout)["pod"]["isolated"]


# -- a host volume raced by a local user ------------------------------------------

_libc = ctypes.CDLL(None, use_errno=True)
RENAME_EXCHANGE = 2
AT_FDCWD = -100


def _exchange(a, b):
    return _libc.renameat2(AT_FDCWD, a.encode(), AT_FDCWD, b.encode(), RENAME_EXCHANGE)


def test_a_symlink_swapped_into_a_host_volume_never_mounts_what_it_points_to(podbase):
    """A local user owns a directory on the source path and swaps a symlink
    in (renameat2 RENAME_EXCHANGE) between the check and the mount: with
    the check and the mount on two different lookups, a root-only directory
    was mounted into the pod in 2 tries of 6."""
    base = os.path.join(podbase, "race")
    owned = os.path.join(base, "owned")          # the local user's directory
    secret = os.path.join(base, "secret")        # root's: must never be mounted
    os.makedirs(os.path.join(owned, "vol"))
    os.makedirs(secret)
    open(os.path.join(secret, "SECRET"), "w").close()
    os.symlink(secret, os.path.join(owned, "link"))
    stop = threading.Event()

    def swap():
        while not stop.is_set():
            _exchange(os.path.join(owned, "vol"), os.path.join(owned, "link"))
    racer = threading.Thread(target=swap)
    racer.start()
    seen = []
    try:
        for _ in range(12):
            pod = IsoPod(podbase, [sh_app("a", "ls /v")])
            pod.manifest["volumes"] = [{"name": "v", "kind": "host",
                                        "source": os.path.join(owned, "vol")}]
            pod.manifest["apps"][0]["mounts"] = [{"volume": "v", "path": "/v"}]
            pod.write()
            with IsoRun(pod) as r:
                code = r.wait()
                seen.append((code, r.stdout(), r.stderr()))
    finally:
        stop.set()
        racer.join()
    assert not [s for s in seen if "SECRET" in s[1]], seen
    # Each run either mounted the real directory or refused, naming the symlink.
    for code, out, err in seen:
        assert code == 0 or "symbolic link" in err or "Too many levels" in err, (code, err)
