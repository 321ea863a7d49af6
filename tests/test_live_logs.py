"""App output: `stage1/log` (and rkt's coreos.com/rkt/stage2/stdout)
inherit, prefix, file with rotation, null; `stage1 logs`."""
import os
import re
import subprocess
import threading

import pytest

from livehelpers import (DEADLINE, PY, STAGE1, Pod, app, kill_tree, run_to_end, sh, stage1,
                         wait_for)
from livehelpers import live, liveroot  # noqa: F401  (fixtures)

SLEEP = ["/bin/sleep", "3600"]

# Writes n distinct lines `<name>-<i>-xxx...` (i % 97 x's) in chunks that
# cut lines anywhere, then exits at once: whatever is still in the pipe
# must come out all the same.
FLOOD = r"""
import os, sys
name, n, stream, step = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
data = b"".join(b"%s-%06d-%s\n" % (name.encode(), i, b"x" * (i % 97)) for i in range(n))
view = memoryview(data)
for off in range(0, len(data), step):
    chunk = view[off:off + step]
    while chunk:
        chunk = chunk[os.write(stream, chunk):]
"""


def flood_app(name, n, stream=1, step=4093, mode="prefix", **annotations):
    annotations["stage1/log"] = mode
    return app(name, [PY, "-c", FLOOD, name, str(n), str(stream), str(step)],
               annotations=annotations)


def check_flood(text, names, n):
    """Every line once, whole, tagged with its app, in each app's order."""
    seen = {name: [] for name in names}
    line_re = re.compile(r"^([a-z0-9]+)\| ([a-z0-9]+)-(\d{6})-(x*)$")
    for line in text.split("\n")[:-1]:
        m = line_re.match(line)
        assert m and m.group(1) == m.group(2), "cut or mixed line: %r" % line[:200]
        i = int(m.group(3))
        assert len(m.group(4)) == i % 97, "line %r is not whole" % line[:200]
        seen[m.group(1)].append(i)
    for name in names:
        assert seen[name] == list(range(n)), "%s: %d lines, expected %d in order" % (
            name, len(seen[name]), n)
    assert text.endswith("\n")


# -- prefix -------------------------------------------------------------------------

def test_a_flood_from_four_apps_comes_out_whole_tagged_and_complete(live):
    names = ["a", "b", "c", "d"]
    pod = live([flood_app(n, 20000, step=4093 + i * 1000) for i, n in enumerate(names)],
               {"stage1/exit-policy": "untilAll"})
    assert pod.wait_end(timeout=60) == 0, pod.run.stderr()
    check_flood(pod.run.stdout(), names, 20000)


def test_stderr_is_tagged_onto_the_inits_stderr(live):
    pod = live([flood_app("o", 3000, stream=1), flood_app("e", 3000, stream=2)],
               {"stage1/exit-policy": "untilAll"})
    assert pod.wait_end() == 0
    check_flood(pod.run.stdout(), ["o"], 3000)
    err = "\n".join(l for l in pod.run.stderr().split("\n") if not l.startswith("stage1["))
    check_flood(err, ["e"], 3000)


def test_a_line_longer_than_64_KiB_is_split_not_lost(live):
    code = ("import os\n"
            "os.write(1, b'y' * 204800 + b'\\n')\n"
            "os.write(1, b'z' * 65536 + b'\\n' + b'after\\n')\n")
    pod = live([app("big", [PY, "-c", code], annotations={"stage1/log": "prefix"})])
    assert pod.wait_end() == 0
    lines = pod.run.stdout().split("\n")
    assert lines == ["big| " + "y" * 65536] * 3 + ["big| " + "y" * 8192,
                                                    "big| " + "z" * 65536, "big| after", ""]


def test_a_partial_last_line_of_an_app_that_exits_comes_out(live):
    # The pod goes on: the relay sees the end of the pipe and flushes.
    pod = live([app("t", sh("printf 'one\\ntwo no newline'"), annotations={"stage1/log": "prefix"}),
                app("s", SLEEP)])
    wait_for(lambda: "t| two no newline\n" in pod.run.stdout(), what="the partial line")
    assert pod.run.stdout() == "t| one\nt| two no newline\n"
    assert pod.run.alive()


def test_what_is_left_in_the_pipe_when_the_pod_ends_comes_out(live):
    # 1 MiB then exit, partial last line: the pod ends with the app, and
    # drains the pipe before it does.
    code = ("import os\n"
            "data = b''.join(b'%06d\\n' % i for i in range(150000)) + b'tail'\n"
            "view = memoryview(data)\n"
            "while view:\n"
            "    view = view[os.write(1, view):]\n")
    pod = live([app("p", [PY, "-c", code], annotations={"stage1/log": "prefix"})])
    assert pod.wait_end() == 0
    out = pod.run.stdout().split("\n")
    assert out[:-2] == ["p| %06d" % i for i in range(150000)] and out[-2:] == ["p| tail", ""]


def test_an_unreadable_stdout_does_not_take_the_init_down(liveroot):
    """The init's stdout is a pipe nobody reads any more: prefix lines are
    lost, the init says so once and goes on."""
    pod = Pod(os.path.join(liveroot, "pod"), [flood_app("a", 20000)])
    proc = subprocess.Popen([STAGE1, "run", pod.path], stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        proc.stdout.close()
        err = proc.stderr.read().decode()
        assert proc.wait(10) == 0, err
    finally:
        if proc.poll() is None:
            kill_tree(proc.pid)
            proc.wait()
    assert err.count("unable to write the output of an app (stdout/stderr): Broken pipe") == 1
    assert pod.status("a")["exitCode"] == 0


# -- inherit, null, rkt's annotation ---------------------------------------------------

def test_inherit_is_the_default_and_null_drops(live):
    pod = live([app("i", sh("echo plain; echo err >&2")),
                app("n", sh("echo dropped; echo dropped >&2"),
                    annotations={"stage1/log": "null"})],
               {"stage1/exit-policy": "untilAll"})
    assert pod.wait_end() == 0
    assert pod.run.stdout() == "plain\n"
    assert "err\n" in pod.run.stderr() and "dropped" not in pod.run.stderr()


@pytest.mark.parametrize("value,shown", [("stream", "r| hi\n"), ("null", ""), ("tty", "hi\n"),
                                         ("log", "")])
def test_rkts_stdout_annotation(live, value, shown):
    pod = live([app("r", sh("echo hi"), annotations={"coreos.com/rkt/stage2/stdout": value})])
    assert pod.wait_end() == 0
    assert pod.run.stdout() == shown
    assert (pod.pod.read("logs/r.log") == "hi\n") == (value == "log")


def test_stage1_log_wins_over_rkts_annotation(live):
    pod = live([app("r", sh("echo hi"), annotations={"coreos.com/rkt/stage2/stdout": "null",
                                                     "stage1/log": "prefix"})])
    assert pod.wait_end() == 0 and pod.run.stdout() == "r| hi\n"


@pytest.mark.parametrize("name,value", [("stage1/log", "syslog"),
                                        ("stage1/log-max-bytes", "10"),
                                        ("stage1/log-max-bytes", "1k"),
                                        ("stage1/log-keep", "-1"),
                                        ("stage1/log-keep", "101")])
def test_bad_log_annotations_are_refused_before_anything_starts(liveroot, name, value):
    marker = os.path.join(liveroot, "ran")
    pod = Pod(os.path.join(liveroot, "pod"), [
        app("a", sh("touch %s" % marker)), app("b", SLEEP, annotations={name: value})])
    code, out, err = run_to_end(pod)
    assert code == 254 and 'pod: apps[1].annotations["%s"]' % name in err, err
    assert not os.path.exists(marker)


# -- file mode and rotation --------------------------------------------------------------

def _numbered(name, count, width=40, **annotations):
    """count lines `<i> xxx` padded to width bytes (newline included)."""
    annotations.setdefault("stage1/log", "file")
    code = ("import os\n"
            "data = b''.join((b'%%06d ' %% i).ljust(%d, b'x') + b'\\n' for i in range(%d))\n"
            "view = memoryview(data)\n"
            "while view:\n"
            "    view = view[os.write(1, view[:7777]):]\n" % (width - 1, count))
    return app(name, [PY, "-c", code], annotations=annotations)


def _log_files(pod, name):
    d = pod.pod.file("logs")
    return sorted(f for f in os.listdir(d) if f.startswith(name + ".log"))


def test_file_mode_writes_the_apps_log(live):
    pod = live([app("f", sh("echo out; echo err >&2; printf last"),
                    annotations={"stage1/log": "file"})])
    assert pod.wait_end() == 0
    assert pod.run.stdout() == ""
    text = pod.pod.read("logs/f.log")
    assert text.endswith("\n") and sorted(text.split("\n")[:-1]) == ["err", "last", "out"]


def test_rotation_keeps_log_keep_files_each_within_max_bytes(live):
    count, width = 2000, 40      # 80000 bytes: many rotations at 1024
    pod = live([_numbered("f", count, width, **{"stage1/log-max-bytes": "1024",
                                                "stage1/log-keep": "2"})])
    assert pod.wait_end() == 0
    assert _log_files(pod, "f") == ["f.log", "f.log.1", "f.log.2"]
    texts = [pod.pod.read("logs/" + n) for n in ("f.log.2", "f.log.1", "f.log")]
    for text in texts:
        assert 0 < len(text) <= 1024 and text.endswith("\n")
    assert all(len(t) > 1024 - width for t in texts[:2])      # full before rotating
    numbers = [int(l[:6]) for l in "".join(texts).split("\n")[:-1]]
    # What is kept is one unbroken run of lines ending with the last one.
    assert numbers == list(range(numbers[0], count))
    assert len(numbers) > 2 * (1024 // width)


def test_rotation_with_keep_0_keeps_only_the_current_file(live):
    pod = live([_numbered("f", 500, 40, **{"stage1/log-max-bytes": "1024",
                                           "stage1/log-keep": "0"})])
    assert pod.wait_end() == 0
    assert _log_files(pod, "f") == ["f.log"]
    numbers = [int(l[:6]) for l in pod.pod.read("logs/f.log").split("\n")[:-1]]
    assert numbers == list(range(numbers[0], 500)) and len(numbers) <= 1024 // 40


def test_the_default_rotation_is_10_MiB(live):
    pod = live([_numbered("f", 300000, 40)])     # 12 MB
    assert pod.wait_end(timeout=30) == 0
    assert _log_files(pod, "f") == ["f.log", "f.log.1"]
    size = os.path.getsize(pod.pod.file("logs", "f.log.1"))
    assert 10 * 2 ** 20 - 40 < size <= 10 * 2 ** 20
    assert size + os.path.getsize(pod.pod.file("logs", "f.log")) == 300000 * 40


def test_a_long_line_in_file_mode_is_split_and_gets_its_own_file(live):
    code = "import os; os.write(1, b'a\\n' + b'L' * 70000 + b'\\nb\\n')"
    pod = live([app("f", [PY, "-c", code], annotations={"stage1/log": "file",
                                                       "stage1/log-max-bytes": "1024",
                                                       "stage1/log-keep": "5"})])
    assert pod.wait_end() == 0
    files = [pod.pod.read("logs/" + n) for n in ("f.log.3", "f.log.2", "f.log.1", "f.log")]
    assert files == ["a\n", "L" * 65536 + "\n", "L" * (70000 - 65536) + "\n", "b\n"]


def test_file_log_goes_on_across_restarts(live):
    pod = live([app("f", sh("echo run; exec sleep 3600"), annotations={"stage1/log": "file"})])
    wait_for(lambda: pod.pod.read("logs/f.log") == "run\n", what="the first run's line")
    assert pod.request({"op": "restart", "app": "f"})["ok"]
    wait_for(lambda: pod.pod.read("logs/f.log") == "run\nrun\n", what="the second run's line")


def test_an_unwritable_log_file_does_not_take_the_init_down(live):
    def block(p):
        os.makedirs(p.file("logs", "f.log"))     # a directory where the file goes
    pod = live([app("f", sh("echo lost; exit 3"), annotations={"stage1/log": "file"})],
               before_run=block)
    assert pod.wait_end() == 3
    assert "unable to write the output of an app (%s): Is a directory" % pod.pod.file(
        "logs", "f.log") in pod.run.stderr()


# -- stage1 logs -----------------------------------------------------------------------

def test_stage1_logs_shows_one_app_or_all_tagged(live):
    pod = live([app("a", sh("echo a1; echo a2"), annotations={"stage1/log": "file"}),
                app("b", sh("echo b1"), annotations={"stage1/log": "file"})],
               {"stage1/exit-policy": "untilAll"})
    assert pod.wait_end() == 0
    r = stage1("logs", pod.path, "--app", "a")
    assert (r.returncode, r.stdout) == (0, "a1\na2\n")
    r = stage1("logs", pod.path)
    assert (r.returncode, r.stdout) == (0, "a| a1\na| a2\nb| b1\n")
    r = stage1("logs", pod.path, "--app", "zz")
    assert r.returncode == 254 and "no log for zz" in r.stderr


def test_stage1_logs_follow_shows_new_lines_and_ends_with_the_pod(live, liveroot):
    go = os.path.join(liveroot, "go")
    script = ("echo first; while [ ! -e %s ]; do sleep 0.01; done; echo second; "
              "exec sleep 3600" % go)
    pod = live([app("a", sh(script), annotations={"stage1/log": "file",
                                                 "stage1/log-max-bytes": "1024"})])
    wait_for(lambda: pod.pod.read("logs/a.log"), what="the first line")
    follower = subprocess.Popen([STAGE1, "logs", pod.path, "--app", "a", "--follow"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert follower.stdout.readline() == "first\n"
        open(go, "w").close()
        assert follower.stdout.readline() == "second\n"
        assert stage1("stop", pod.path).returncode == 0
        assert follower.wait(10) == 0
        assert follower.stdout.read() == ""
    finally:
        if follower.poll() is None:
            follower.kill()
            follower.wait()


def test_stage1_logs_follow_reads_across_rotation(live, liveroot):
    go = os.path.join(liveroot, "go")
    code = ("import os, time\n"
            "for i in range(200):\n"
            "    if i == 100:\n"
            "        while not os.path.exists(%r):\n"
            "            time.sleep(0.005)\n"
            "    os.write(1, (b'%%06d ' %% i).ljust(39, b'x') + b'\\n')\n"
            "    time.sleep(0.001)\n"
            "time.sleep(3600)\n" % go)
    pod = live([app("a", [PY, "-c", code], annotations={
        "stage1/log": "file", "stage1/log-max-bytes": "4096", "stage1/log-keep": "3"})])
    wait_for(lambda: os.path.exists(pod.pod.file("logs", "a.log")), what="the log")
    follower = subprocess.Popen([STAGE1, "logs", pod.path, "--follow"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines = []

    def read():
        for _ in range(200):
            line = follower.stdout.readline()
            if not line:
                return
            lines.append(line)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        # The follower has read a.log before any rotation (the app waits at
        # line 100 for `go`, and a.log holds 102 lines): what it follows
        # from there is every line, across the rotations that come.
        wait_for(lambda: lines, what="the follower's first line")
        open(go, "w").close()
        wait_for(lambda: len(lines) == 200, what="the 200 lines")
        assert [int(l[:6]) for l in lines] == list(range(200))
    finally:
        follower.kill()
        follower.wait()
        reader.join(DEADLINE)


def test_lines_around_64_KiB_in_odd_chunks(live):
    """Line lengths at and around the limit, written in chunks that end
    anywhere; each line comes out whole or in 64 KiB pieces, in order."""
    lengths = [65535, 65536, 65537, 0, 131072, 131073, 32768, 32767, 100, 200000, 1, 98304]
    code = ("import os, sys\n"
            "lengths = %r\n"
            "data = b''.join(b'%%c' %% (97 + i %% 26) * n + b'\\n'\n"
            "               for i, n in enumerate(lengths))\n"
            "i, step = 0, 1\n"
            "while i < len(data):\n"
            "    step = step * 7 %% 90001 + 1\n"
            "    view = memoryview(data)[i:i + step]\n"
            "    while view:\n"
            "        view = view[os.write(1, view):]\n"
            "    i += step\n" % lengths)
    pod = live([app("c", [PY, "-c", code], annotations={"stage1/log": "prefix"})])
    assert pod.wait_end() == 0
    expected = []
    for i, n in enumerate(lengths):
        line = chr(97 + i % 26) * n
        pieces = [line[k:k + 65536] for k in range(0, len(line), 65536)] or [""]
        expected.extend("c| " + p for p in pieces)
    assert pod.run.stdout().split("\n")[:-1] == expected
