"""`stage1 status POD [--json]` and `stage1 ps POD`, from another process,
while the pod runs and after it ended."""
import json
import re
import signal

import pytest

from podhelpers import Pod, Run, app, cmdline, sh, stage1, wait_for, descendants


def _commands(pid):
    """The command lines of pid's descendants."""
    return [b" ".join(cmdline(child)).strip().decode() for child in descendants(pid)]


def _rows(text):
    """(title, [header, {column: cell} per app]): cells are read at their
    header's position, since an empty one (no health check, no exit yet)
    leaves a gap."""
    lines = text.splitlines()
    header = lines[1]
    starts = [i for i in range(len(header)) if header[i] != " " and (i == 0 or
                                                                   header[i - 1] == " ")]
    names = header.split()
    rows = [names]
    for line in lines[2:]:
        cells = [line[a:b].strip() for a, b in zip(starts, starts[1:] + [None])]
        rows.append(dict(zip(names, cells)))
    return lines[0], rows


def _two_app_pod(tmp_path):
    return Pod(tmp_path, [
        app("web", sh("touch %s/web.up; sleep 100 & wait" % tmp_path)),
        app("job", sh("exit 3"), annotations={"stage1/restart-policy": "never"})],
        annotations={"stage1/exit-policy": "untilAll"})


def test_status_while_running_and_after(tmp_path):
    pod = _two_app_pod(tmp_path)
    with Run(pod) as r:
        pod.wait_state("web", "running")
        pod.wait_state("job", "exited")
        p = stage1("status", pod.path)
        assert p.returncode == 0, p.stderr
        title, rows = _rows(p.stdout)
        assert re.fullmatch(r"pod %s: running for \d+s" % re.escape(pod.path), title)
        assert rows[0] == ["APP", "STATE", "HEALTH", "PID", "UPTIME", "EXIT", "RESTARTS",
                           "STARTED", "FINISHED", "REASON"]
        web, job = rows[1], rows[2]
        assert (web["APP"], web["STATE"], web["PID"]) == ("web", "running",
                                                          str(pod.status("web")["pid"]))
        assert re.fullmatch(r"\d+s", web["UPTIME"]) and web["HEALTH"] == ""
        assert (web["EXIT"], web["RESTARTS"]) == ("", "0")     # no exit yet, no restarts
        assert (job["APP"], job["STATE"], job["PID"], job["EXIT"]) == (
            "job", "exited", str(pod.status("job")["pid"]), "3")
        assert job["UPTIME"] == "" and job["REASON"] == "Error"
        r.signal(signal.SIGTERM)
        assert r.wait() == 3
    p = stage1("status", pod.path)
    title, rows = _rows(p.stdout)
    assert title == "pod %s: exited (exit code 3)" % pod.path
    assert [(row["APP"], row["STATE"], row["EXIT"], row["REASON"]) for row in rows[1:]] == [
        ("web", "exited", "SIGTERM", "Stopped"), ("job", "exited", "3", "Error")]


def test_status_json(tmp_path):
    pod = _two_app_pod(tmp_path)
    with Run(pod) as r:
        pod.wait_state("web", "running")
        p = stage1("status", "--json", pod.path)
        doc = json.loads(p.stdout)
        assert doc["pod"]["state"] == "running"
        assert [a["name"] for a in doc["apps"]] == ["web", "job"]
        assert doc["apps"][0]["state"] == "running"
        r.signal(signal.SIGTERM)
        r.wait()
    doc = json.loads(stage1("status", pod.path, "--json").stdout)
    assert doc["pod"] == pod.pod_status()
    assert doc["apps"] == [pod.status("web"), pod.status("job")]


def test_status_by_uuid_in_the_pod_directory(tmp_path):
    # rkt names the pod directory by its UUID and passes the UUID last.
    pod = Pod(tmp_path / "4a1e3b2c-uuid", [app("a", ["true"])])
    with Run(pod) as r:
        r.wait()
    p = stage1("status", "4a1e3b2c-uuid", cwd=pod.path)
    assert p.returncode == 0 and p.stdout.startswith("pod %s: exited" % pod.path)


@pytest.mark.parametrize("command", ["status", "stop", "ps", "gc", "events", "logs"])
def test_a_positional_that_is_not_the_pod_is_refused(tmp_path, command):
    """`stage1 stop TYPO` in a pod directory must not stop that pod."""
    pod = Pod(tmp_path / "4a1e3b2c-uuid", [app("a", ["sleep", "100"])])
    with Run(pod) as r:
        pod.wait_state("a", "running")
        p = stage1(command, "4a1e3b2c-typo", cwd=pod.path)
        assert (p.returncode, p.stderr) == (254, "stage1: 4a1e3b2c-typo: no such pod directory, "
                                            "and the current directory is not pod 4a1e3b2c-typo, nor is "
                                                "there a pod 4a1e3b2c-typo in /run/stage1\n")
        assert r.proc.poll() is None
        p = stage1(command, "/nonexistent/pod", cwd=pod.path)
        assert (p.returncode, p.stderr) == (254, "stage1: /nonexistent/pod: no such pod directory\n")
        assert r.proc.poll() is None


def test_status_of_a_pod_that_never_ran(tmp_path):
    pod = Pod(tmp_path, [app("a", ["true"])])
    p = stage1("status", pod.path)
    assert p.returncode == 254
    assert p.stderr == "stage1: no status in %s: the pod has not run\n" % pod.path


def test_status_usage(tmp_path):
    p = stage1("status", "--bogus")
    assert p.returncode == 2 and "unknown option --bogus" in p.stderr


@pytest.mark.parametrize("pid1", [False, True])
def test_ps_groups_the_process_tree_by_app(tmp_path, pid1):
    pod = Pod(tmp_path, [
        app("web", sh("touch %s/web.up; sleep 101 & wait" % tmp_path)),
        app("worker", ["sleep", "102"])])
    with Run(pod, pid1=pid1) as r:
        pod.wait_file("web.up")
        pod.wait_state("worker", "running")
        # Three pod processes, the shell's child past its exec (and touch gone).
        wait_for(lambda: len(descendants(r.init_pid)) == 3 and
                 "sleep 101" in _commands(r.init_pid), what="three pod processes")
        p = stage1("ps", pod.path)
        assert p.returncode == 0, p.stderr
        lines = p.stdout.splitlines()
        assert lines[0].split() == ["APP", "PID", "POD-PID", "STATE", "CPU%", "RSS", "COMMAND"]
        rows = [l.split(None, 6) for l in lines[1:]]
        by_app, pod_pids = {}, {}
        for row in rows:
            by_app.setdefault(row[0], []).append((int(row[1]), row[6]))
            pod_pids[int(row[1])] = int(row[2])
        assert by_app["(init)"] == [(r.init_pid, "stage1 run: " + tmp_path.name)]
        assert pod_pids[r.init_pid] == (1 if pid1 else r.init_pid)
        web = r.host_pid(pod.status("web")["pid"])
        worker = r.host_pid(pod.status("worker")["pid"])
        # POD-PID is the pid `stage1 status` shows
        assert pod_pids[web] == pod.status("web")["pid"]
        assert [pid for pid, _ in by_app["web"]][0] == web
        assert [cmd for _, cmd in by_app["web"]][1] == "sleep 101"
        assert by_app["worker"] == [(worker, "sleep 102")]
        assert set(by_app) == {"(init)", "web", "worker"}


def test_ps_shows_leftovers_as_the_pods(tmp_path):
    orphan = "sh -c 'exec sleep 103' & touch %s/up" % tmp_path
    pod = Pod(tmp_path, [app("starter", sh(orphan)), app("worker", ["sleep", "102"])],
              annotations={"stage1/exit-policy": "untilAll"})
    with Run(pod) as r:
        pod.wait_state("starter", "exited")
        pod.wait_state("worker", "running")
        wait_for(lambda: "sleep 103" in _commands(r.init_pid), what="the leftover past its exec")
        p = stage1("ps", pod.path)
        rows = [l.split(None, 6) for l in p.stdout.splitlines()[1:]]
        assert [(row[0], row[6]) for row in rows if row[0] == "(pod)"] == \
            [("(pod)", "sleep 103")]


def test_ps_of_a_pod_that_is_not_running(tmp_path):
    pod = Pod(tmp_path, [app("a", ["true"])])
    p = stage1("ps", pod.path)
    assert p.returncode == 254 and "no running init recorded" in p.stderr
    with Run(pod) as r:
        r.wait()
    p = stage1("ps", pod.path)
    assert p.returncode == 254 and "is not running" in p.stderr
