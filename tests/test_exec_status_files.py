"""Status files: `--status-dir DIR [--name NAME]` keeps DIR/NAME.json up to
date and writes DIR/NAME (`<code>\\n`, rkt's format) when the app ends; the
name defaults to the basename of CMD.  Files are replaced atomically, so a
kill -9 of the init leaves only whole files behind."""
import calendar
import json
import os
import re
import signal
import time

import pytest

from conftest import py, read_json, wait_until

RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")
FIELDS = {"name", "state", "ready", "pid", "exitCode", "signal", "reason", "message",
          "startedAt", "finishedAt", "restartCount", "cpuUserSeconds", "cpuSystemSeconds",
          "maxRssKiB"}


def parse_time(text):
    assert RFC3339.match(text), text
    return calendar.timegm(time.strptime(text[:19], "%Y-%m-%dT%H:%M:%S")) + float(text[19:-1])


@pytest.mark.parametrize("code,reason", [(0, "Completed"), (3, "Error")])
def test_status_of_an_app_that_exited(procs, tmp_path, code, reason):
    before = time.time()
    r = procs.run(["/bin/sh", "-c", "echo $$; exit %d" % code], "--status-dir", tmp_path)
    after = time.time()
    assert r.returncode == code
    assert (tmp_path / "sh").read_text() == "%d\n" % code
    st = read_json(tmp_path / "sh.json")
    assert set(st) >= FIELDS
    assert (st["name"], st["state"], st["exitCode"], st["signal"], st["reason"]) == (
        "sh", "exited", code, None, reason)
    assert st["pid"] == int(r.stdout) and st["restartCount"] == 0
    started, finished = parse_time(st["startedAt"]), parse_time(st["finishedAt"])
    assert before - 1 <= started <= finished <= after + 1
    assert st["cpuUserSeconds"] >= 0 and st["cpuSystemSeconds"] >= 0
    assert st["maxRssKiB"] > 0


def test_status_while_running_then_signaled(procs, tmp_path):
    init = procs.init(["sleep", "60"], "--status-dir", tmp_path, "--name", "napper")
    app = init.app()
    st = wait_until(lambda: (tmp_path / "napper.json").exists()
                    and read_json(tmp_path / "napper.json"))
    assert (st["state"], st["pid"], st["exitCode"], st["finishedAt"]) == (
        "running", app, None, None)
    assert RFC3339.match(st["startedAt"])
    assert not (tmp_path / "napper").exists()       # no exit code while it runs
    init.kill(signal.SIGUSR1)
    assert init.wait() == 138
    st = read_json(tmp_path / "napper.json")
    assert (st["state"], st["exitCode"], st["signal"], st["reason"]) == (
        "exited", 138, "SIGUSR1", "Signaled")
    assert (tmp_path / "napper").read_text() == "138\n"


def test_status_records_cpu_time_and_memory(procs, tmp_path):
    app = py("import time\n"
             "block = bytearray(64 << 20)\n"
             "for i in range(0, len(block), 4096): block[i] = 1\n"
             "while time.process_time() < 0.3: pass")
    assert procs.run(app, "--status-dir", tmp_path, "--name", "busy").returncode == 0
    st = read_json(tmp_path / "busy.json")
    assert st["cpuUserSeconds"] + st["cpuSystemSeconds"] >= 0.2
    assert st["maxRssKiB"] >= 60 << 10


@pytest.mark.parametrize("cmd,options,name", [
    (["/usr/bin/env"], [], "env"),
    (["true"], [], "true"),
    (["true"], ["--name", "given"], "given"),
])
def test_status_name(procs, tmp_path, cmd, options, name):
    assert procs.run(cmd, "--status-dir", tmp_path / "d", *options).returncode == 0
    assert sorted(os.listdir(tmp_path / "d")) == [name, name + ".json"]


def test_status_of_a_command_not_found(procs, tmp_path):
    r = procs.run([str(tmp_path / "missing")], "--status-dir", tmp_path, "--name", "m")
    assert r.returncode == 127
    assert (tmp_path / "m").read_text() == "127\n"
    st = read_json(tmp_path / "m.json")
    assert (st["state"], st["exitCode"], st["reason"]) == ("exited", 127, "ExecFailed")
    assert os.strerror(2) in st["message"]


def test_unwritable_status_dir_is_reported_and_the_app_runs(procs):
    r = procs.run(["/bin/sh", "-c", "exit 6"], "--status-dir", "/etc/passwd/status")
    assert r.returncode == 6
    assert "unable to write status" in r.stderr


def check_whole(directory):
    """Every status file left in directory parses; returns their names."""
    names = [n for n in os.listdir(directory) if not n.endswith(".tmp")]
    for name in names:
        data = (directory / name).read_text()
        if name.endswith(".json"):
            assert json.loads(data)["name"] == "true"
        else:
            assert re.match(r"^\d+\n$", data), data
    return names


def test_kill_9_of_the_init_leaves_only_whole_status_files(procs, tmp_path):
    # Kill the init at a spread of moments from its start to a little past
    # the time one whole run takes here, so that some kills land around its
    # writes.
    start = time.monotonic()
    assert procs.run(["true"], "--status-dir", tmp_path / "whole").returncode == 0
    whole = time.monotonic() - start
    seen = set()
    for i in range(40):
        d = tmp_path / str(i)
        d.mkdir()
        init = procs.init(["true"], "--status-dir", d)
        deadline = time.monotonic() + whole * i / 30
        while time.monotonic() < deadline:
            pass
        init.kill(signal.SIGKILL)       # a zombie not yet waited for takes it too
        init.wait()
        seen.update(check_whole(d))
    assert "true.json" in seen, "no run got as far as writing a status file"
