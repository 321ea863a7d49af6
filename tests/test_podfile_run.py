"""`stage1 run FILE`: a pod file run in a pod directory of its own, found by
name (status, ps, logs, events, stop); the caller's directory and
environment; one run of a pod at a time; --pod-dir and --print-manifest; a
Procfile as honcho runs one; the lines said on stderr for each event; and
`stage1 logs` for every log mode."""
import json
import os
import re
import signal
import subprocess
import textwrap

import pytest

from healthhelpers import free_port
from podhelpers import (PY, STAGE1, Pod, Run, app, run as run_pod, sh, wait_for, alive,
                        descendants)


class Project:
    """A project directory with a pod file, and a runtime directory of its own."""

    def __init__(self, tmp_path, text, name="stage1.toml", directory="shop"):
        self.dir = tmp_path / directory
        self.dir.mkdir(exist_ok=True)
        self.path = str(self.dir)
        self.runtime = str(tmp_path / "runtime")
        self.env = dict(os.environ, STAGE1_RUNTIME_DIR=self.runtime)
        self.env.pop("PORT", None)
        self.file_path = str(self.dir / name)
        self.write(text)
        self.out = tmp_path / "out"
        self.out.mkdir(exist_ok=True)

    def write(self, text):
        with open(self.file_path, "w") as f:
            f.write(textwrap.dedent(text).lstrip("\n"))

    def file(self, name):                    # where Run puts stdout and stderr
        return str(self.out / name)

    def pod(self, name="shop"):
        """The pod directory, read as podhelpers reads any."""
        return Pod.existing(os.path.join(self.runtime, name))

    def run(self, *args, bare=False, **kw):
        """`stage1 run ARGS` (the pod file when no ARGS, nothing with bare) in the background."""
        kw.setdefault("cwd", self.path)
        args = [] if bare else list(args) or [self.file_path]
        return Run(self, *args, pod_arg=False, env=self.env, **kw)

    def cli(self, *args, cwd=None):
        return subprocess.run([STAGE1] + [str(a) for a in args], cwd=cwd or self.path,
                              env=self.env, stdin=subprocess.DEVNULL, capture_output=True,
                              text=True, timeout=15)


def _lines(text):
    return [re.sub(r"^stage1\[\d+\]: ", "", l) for l in text.splitlines()]


SERVE = """
[web]
command = ["{py}", "-c", "import time; print('web up', flush=True); time.sleep(3600)"]

[job]
command = ["sh", "-c", "echo \\"job in $PWD with $GREETING and $EXTRA\\"; exec sleep 3600"]
environment = {{ EXTRA = "extra" }}
"""


# -- a pod directory of its own, found by name -------------------------------------

def test_a_pod_file_runs_in_the_runtime_directory_by_name(tmp_path):
    p = Project(tmp_path, SERVE.format(py=PY))
    p.env["GREETING"] = "hello"
    p.env["NOTIFY_SOCKET"] = "/run/somewhere"
    with p.run() as r:
        pod = p.pod()
        pod.wait_state("web", "running")
        pod.wait_state("job", "running")
        wait_for(lambda: "job| " in r.stdout() and "web| " in r.stdout(), what="both lines")
        assert sorted(r.stdout().splitlines()) == [
            "job| job in %s with hello and extra" % p.path, "web| web up"]
        assert open(os.path.join(pod.path, "podfile")).read() == p.file_path + "\n"
        compiled = json.loads(p.cli("run", "--print-manifest", p.file_path).stdout)
        assert json.load(open(os.path.join(pod.path, "pod"))) == compiled
        env = open("/proc/%d/environ" % pod.status("job")["pid"], "rb").read().split(b"\0")
        assert b"GREETING=hello" in env and not any(e.startswith(b"NOTIFY_SOCKET=") for e in env)
        for args in (["status", "shop"], ["status", p.file_path], ["status"],
                     ["status", "stage1.toml"]):
            s = p.cli(*args)
            assert s.returncode == 0 and s.stdout.startswith(
                "pod %s: running for " % pod.path), (args, s.stdout, s.stderr)
        assert p.cli("ps", "shop").stdout.count("sleep 3600") == 1
        events = p.cli("events", "shop").stdout
        assert '"event": "started"' in events
        assert p.cli("logs", "shop", "--app", "web").stdout == "web up\n"
        elsewhere = p.cli("stop", "shop", cwd="/")
        assert elsewhere.returncode == 0, elsewhere.stderr
        assert r.wait() == 0
    assert _lines(r.stderr()) == ["stopping the pod: received SIGTERM"]


def test_one_run_of_a_pod_at_a_time_and_the_next_starts_clean(tmp_path):
    p = Project(tmp_path, '[a]\ncommand = "sleep 3600"\n')
    with p.run() as first:
        p.pod().wait_state("a", "running")
        second = p.cli("run", p.file_path)
        assert second.returncode == 254
        assert ("pod shop is running already (from %s, in %s/shop)" % (p.file_path, p.runtime)
                ) in second.stderr and len(second.stderr.splitlines()) == 1
        assert first.alive()
        p.cli("stop", "shop")
        assert first.wait() == 0
    events = os.path.join(p.runtime, "shop", "events.jsonl")
    p.write('[b]\ncommand = "echo again"\n')
    with p.run() as again:
        assert again.wait() == 0
    kinds = [json.loads(l).get("app") for l in open(events)]
    assert "a" not in kinds and "b" in kinds
    assert not os.path.exists(os.path.join(p.runtime, "shop", "rkt", "status", "a.json"))


def test_stage1_run_alone_runs_the_pod_file_of_the_directory(tmp_path):
    p = Project(tmp_path, '[a]\ncommand = "echo from the default file"\n')
    with p.run(bare=True) as r:
        assert r.wait() == 0
    assert r.stdout() == "a| from the default file\n"
    assert p.pod().status("a")["exitCode"] == 0


def test_pod_dir(tmp_path):
    p = Project(tmp_path, '[a]\ncommand = "echo here"\n')
    target = tmp_path / "mine"
    with p.run("--pod-dir", str(target), p.file_path) as r:
        assert r.wait() == 0
    assert (target / "podfile").exists() and not os.path.exists(os.path.join(p.runtime, "shop"))
    assert p.cli("status", str(target)).stdout.startswith("pod %s: exited" % target)
    other = tmp_path / "other"
    other.mkdir()
    (other / "precious").write_text("x")
    bad = p.cli("run", "--pod-dir", str(other), p.file_path)
    assert bad.returncode == 254 and "holds something that no pod file made" in bad.stderr
    assert sorted(os.listdir(other)) == ["precious"]
    assert p.cli("run", "--pod-dir", str(other), str(tmp_path)).returncode == 2


def test_a_bad_pod_file_starts_nothing(tmp_path):
    marker = tmp_path / "ran"
    p = Project(tmp_path, """
        [a]
        command = "touch %s"

        [b]
        command = "true"
        restart = "sometimes"
    """ % marker)
    r = p.cli("run", p.file_path)
    assert r.returncode == 254
    # the file as the caller named it, relative to the current directory
    assert r.stderr.splitlines() == ['stage1: stage1.toml:6: b.restart: must be one of "no", '
                                     '"on-failure", "always", "unless-stopped", not '
                                     "'sometimes'"]
    assert not marker.exists() and not os.path.exists(p.runtime)


def test_print_manifest_is_valid_for_actool(tmp_path):
    p = Project(tmp_path, '[a]\ncommand = "x"\nhealthcheck = { tcp = 1 }\n'
                          '[b]\ncommand = "y"\ndepends_on = { a = "healthy" }\n')
    r = p.cli("run", "--print-manifest", p.file_path)
    assert r.returncode == 0 and not os.path.exists(p.runtime)
    out = tmp_path / "m.json"
    out.write_text(r.stdout)
    v = subprocess.run(["actool", "validate", str(out)], capture_output=True, text=True)
    assert v.returncode == 0, v.stdout + v.stderr


def test_status_shows_health_and_uptime(tmp_path):
    port = free_port()
    p = Project(tmp_path, """
        [web]
        command = "{py} -m http.server {port} --bind 127.0.0.1"
        healthcheck = {{ http = {port}, start_interval = "0.05s" }}

        [job]
        command = "sleep 3600"
        depends_on = {{ web = {{ condition = "healthy" }} }}
    """.format(py=PY, port=port))
    with p.run() as r:
        pod = p.pod()
        pod.wait_state("job", "running")
        rows = [l.split() for l in p.cli("status", "shop").stdout.splitlines()[2:]]
        assert rows[0][:3] == ["web", "running", "healthy"]
        assert re.fullmatch(r"\d+s", rows[0][4])
        assert rows[1][:2] == ["job", "running"] and re.fullmatch(r"\d+s", rows[1][3])
        doc = json.loads(p.cli("status", "shop", "--json").stdout)
        assert doc["apps"][0]["health"] == "healthy" and doc["apps"][0]["uptimeSeconds"] >= 0
        events = [json.loads(l) for l in open(os.path.join(pod.path, "events.jsonl"))]
        kinds = [(e["event"], e.get("app")) for e in events]
        assert kinds.index(("healthy", "web")) < kinds.index(("started", "job"))
        r.signal(signal.SIGTERM)
        assert r.wait() == 0


# -- the Procfile ----------------------------------------------------------------------

def test_a_procfile_as_honcho_runs_it(tmp_path):
    go = tmp_path / "go"
    p = Project(tmp_path, """
        # the app's processes
        web: echo "web on $PORT for $WHO"; exec sleep 3600

        worker: echo "worker on $PORT"; sleep 3600; echo never
        release: while [ ! -e %s ]; do sleep 0.02; done; echo done; exit 3
    """ % go, name="Procfile")
    (p.dir / ".env").write_text("WHO=world\n")
    with p.run() as r:
        pod = p.pod()
        shell = pod.wait_state("worker", "running")["pid"]
        sleep = wait_for(lambda: descendants(shell), what="the worker's sleep")[0]
        # A stop reaches the command's process group: its sleep ends with its shell.
        assert p.cli("app", "stop", "shop", "--app", "worker").returncode == 0
        wait_for(lambda: not alive(sleep), what="the worker's sleep to end")
        go.write_text("")
        assert r.wait() == 3                 # the first to end stops the pod, with its code
    assert sorted(r.stdout().splitlines()) == [
        "release| done", "web| web on 5000 for world", "worker| worker on 5100"]
    assert "stopping the pod: release exited with 3 (exit policy onAny)" in _lines(r.stderr())
    assert pod.status("worker")["reason"] == "Stopped"


# -- the lines said on stderr ------------------------------------------------------------

def test_the_lines_said_for_each_event(tmp_path):
    go = tmp_path / "go"
    p = Project(tmp_path, """
        restart_backoff = "0.2s"

        [flaky]
        command = ["sh", "-c", "test -e {go} || exit 2; exec sleep 3600"]
        restart = "on-failure"

        [crash]
        command = ["sh", "-c", "test -e {go} && kill -SEGV $$; exec sleep 3600"]

        [done]
        command = "true"
    """.format(go=go))
    with p.run() as r:
        pod = p.pod()
        wait_for(lambda: (pod.status("flaky") or {}).get("restartCount", 0) >= 1,
                 what="a restart")
        go.write_text("")
        wait_for(lambda: pod.state("flaky") == "running", what="flaky running")
        p.cli("app", "restart", "shop", "--app", "crash")     # a restart asked for: no line
        code = r.wait()
    lines = _lines(r.stderr())
    assert lines[0] == "flaky exited with 2; restarting in 0.2 s (restart=on-failure)"
    assert lines[-2:] == ["crash was killed by SIGSEGV (restart=never)",
                          "stopping the pod: crash was killed by SIGSEGV (exit policy "
                          "onAnyFailure)"]
    assert all("done" not in l for l in lines) and code == 128 + 11


def test_the_lines_of_an_appc_pod_and_none_with_exec(tmp_path):
    pod = Pod(tmp_path / "pod", [app("a", sh("exit 5")), app("b", ["sleep", "100"])])
    code, out, err = run_pod(pod)
    assert code == 5 and _lines(err) == [
        "a exited with 5 (restart=never)",
        "stopping the pod: a exited with 5 (exit policy onAnyFailure)"]
    r = subprocess.run([STAGE1, "exec", "--", "sh", "-c", "exit 5"], capture_output=True,
                       text=True, timeout=15)
    assert (r.returncode, r.stderr) == (5, "")


def test_the_lines_of_an_app_that_does_not_start(tmp_path):
    pod = Pod(tmp_path / "pod", [
        app("a", ["sleep", "100"], eventHandlers=[{"name": "pre-start", "exec": sh("exit 3")}]),
        app("b", ["sleep", "100"])])
    code, out, err = run_pod(pod)
    assert code == 3 and _lines(err) == [
        "a did not start: pre-start handler exited with 3 (restart=never)",
        "stopping the pod: a did not start: pre-start handler exited with 3 (exit policy "
        "onAnyFailure)"]


def test_verbose_still_says_everything(tmp_path):
    p = Project(tmp_path, '[a]\ncommand = "sh -c \'exit 1\'"\n')
    with p.run("-v", p.file_path) as r:
        assert r.wait() == 1
    lines = _lines(r.stderr())
    assert "a: started pid %d" % p.pod().status("a")["pid"] in lines
    assert "a exited with 1 (restart=never)" in lines


# -- stage1 logs, every mode -------------------------------------------------------------

def test_logs_for_every_mode(tmp_path):
    p = Project(tmp_path, """
        exit = "after-all"
        [tagged]
        command = "echo tagged"
        [nocopy]
        command = "echo nocopy"
        log = { copy = false }
        [file]
        command = "echo file"
        log = "file"
        [term]
        command = "echo term"
        log = "inherit"
        [gone]
        command = "echo gone"
        log = "null"
    """)
    with p.run() as r:
        assert r.wait() == 0
    logs = p.cli("logs", "shop")
    assert logs.returncode == 0
    assert logs.stdout == "tagged| tagged\nfile| file\n"
    notes = logs.stderr.splitlines()
    assert notes == [
        "stage1: nocopy: its output went to the stdout and stderr of `stage1 run`, tagged "
        "(stage1/log: prefix), and no copy was kept (stage1/log-copy: true keeps one)",
        "stage1: term: its output went straight to the stdout and stderr of `stage1 run` "
        "(the terminal it ran in), as stage1/log: inherit says; stage1 keeps none of it",
        "stage1: gone: its output is discarded (stage1/log: null)"]
    one = p.cli("logs", "shop", "--app", "term")
    assert one.returncode == 254 and one.stdout == "" and "went straight" in one.stderr
    assert p.cli("logs", "shop", "--app", "tagged").stdout == "tagged\n"
