"""Bad values that used to pass validation and fail later, or end in a
traceback: each is now one line naming its place, 254 (2 for a usage
error), and nothing started.  Values at the edge of what the kernel and the
loop take are either taken or refused here, never in the spawn path after
other apps have started.
"""
import os
import subprocess

import pytest

from podhelpers import Pod, app, run, sh, stage1
from test_pod_manifest import APP1, BODY1, _annotation, _set
from livehelpers import live, liveroot  # noqa: F401 (fixtures)
from conftest import DEADLINE, exec_argv


def _app_field(key, value):
    return _set(BODY1 + [key], value)


CASES = [
    ("stop-timeout-too-long", _annotation([], "stage1/stop-timeout", "3000000"),
     'pod: annotations["stage1/stop-timeout"]: must be at most 2147483 seconds'),
    ("backoff-too-long", _annotation([], "stage1/restart-backoff", "1e10"),
     'pod: annotations["stage1/restart-backoff"]: must be at most 2147483 seconds'),
    ("app-stop-timeout-too-long", _annotation(APP1, "stage1/stop-timeout", "9e9"),
     'pod: apps[1].annotations["stage1/stop-timeout"]: must be at most 2147483 seconds'),
    ("huge-exponent", _set(BODY1 + ["isolators"], [
        {"name": "resource/memory", "value": {"limit": "1e999999999"}}]),
     "pod: apps[1].app.isolators[0].value.limit: '1e999999999': an exponent is at most 30"),
    ("quantity-too-big", _set(BODY1 + ["isolators"], [
        {"name": "resource/memory", "value": {"limit": "100Ei"}}]),
     "pod: apps[1].app.isolators[0].value.limit: '100Ei' is more than the kernel takes"),
    ("quantity-unicode-digit", _set(BODY1 + ["isolators"], [
        {"name": "resource/cpu", "value": {"limit": "\u0661"}}]),
     "pod: apps[1].app.isolators[0].value.limit: '\u0661' is not a quantity"),
    ("surrogate-in-exec", _app_field("exec", ["/bin/echo", "\ud800"]),
     "pod: apps[1].app.exec[1]: is not valid UTF-8 text (a lone surrogate)"),
    ("surrogate-in-env", _app_field("environment", [{"name": "X", "value": "\udcff"}]),
     "pod: apps[1].app.environment[0].value: is not valid UTF-8 text"),
    ("surrogate-in-workdir", _app_field("workingDirectory", "/\ud800"),
     "pod: apps[1].app.workingDirectory: is not valid UTF-8 text"),
    ("nul-in-argv", _app_field("exec", ["/bin/echo", "a\u0000b"]),
     "pod: apps[1].app.exec[1]: holds a NUL byte"),
    ("nul-in-env", _app_field("environment", [{"name": "X", "value": "a\u0000b"}]),
     "pod: apps[1].app.environment[0].value: holds a NUL byte"),
    ("nul-in-cwd", _app_field("workingDirectory", "/tmp\u0000x"),
     "pod: apps[1].app.workingDirectory: holds a NUL byte"),
    ("uid-too-big", _app_field("user", "4294967295"),
     "pod: apps[1].app.user: '4294967295': a user id must be at most 4294967294"),
    ("unicode-superscript-uid", _app_field("user", "\u00b2"),
     "pod: apps[1].app.user: '\u00b2' is neither in"),
    ("arabic-digit-gid", _app_field("group", "\u0661"),
     "pod: apps[1].app.group: '\u0661' is neither in"),
    ("unicode-digit-log-keep", _annotation(APP1, "stage1/log-keep", "\u0663"),
     'pod: apps[1].annotations["stage1/log-keep"]: must be a whole number from 0 to 100'),
    ("unicode-digit-signal", _annotation(APP1, "stage1/stop-signal", "\u0661\u0665"),
     'pod: apps[1].annotations["stage1/stop-signal"]: no such signal'),
    ("newline-in-app-name", _set(APP1 + ["name"], "a\n"),
     "pod: apps[1].name: 'a\\n' is not an AC name"),
    ("newline-in-env-name", _app_field("environment", [{"name": "X\n", "value": "1"}]),
     "pod: apps[1].app.environment[0].name: 'X\\n' is not a variable name"),
    ("newline-in-volume-name", _set(["volumes"], [{"name": "v\n", "kind": "empty"}]),
     "pod: volumes[0].name: 'v\\n' is not an AC name"),
    ("newline-in-mode", _set(["volumes"], [{"name": "v", "kind": "empty", "mode": "0755\n"}]),
     "pod: volumes[0].mode: must be an octal mode"),
    ("image-name-type", _set(APP1 + ["image", "name"], 7),
     "pod: apps[1].image.name: must be a non-empty string"),
    ("image-labels-type", _set(APP1 + ["image", "labels"], {"os": "linux"}),
     "pod: apps[1].image.labels: must be a list"),
    ("image-label-value", _set(APP1 + ["image", "labels"], [{"name": "os", "value": 1}]),
     "pod: apps[1].image.labels[0].value: must be a string"),
    ("ports-type", _app_field("ports", "http"), "pod: apps[1].app.ports: must be a list"),
    ("port-number", _app_field("ports", [{"name": "http", "protocol": "tcp", "port": "80"}]),
     "pod: apps[1].app.ports[0].port: must be a whole number from 0 to 65535"),
    ("port-protocol", _app_field("ports", [{"name": "http", "protocol": "sctp", "port": 80}]),
     "pod: apps[1].app.ports[0].protocol: must be \"tcp\" or \"udp\""),
    ("pod-port", _set(["ports"], [{"name": "http", "hostPort": 70000}]),
     "pod: ports[0].hostPort: must be a whole number from 0 to 65535"),
    ("pod-port-zero", _set(["ports"], [{"name": "http", "hostPort": 0}]),
     "pod: ports[0].hostPort: must be a port number from 1 to 65535"),
    ("message-on-one-line", _app_field("user", "bob\nroot"),
     "pod: apps[1].app.user: 'bob\\nroot' is neither in"),
]


def _write(pod, change):
    if callable(change):
        change(pod.manifest)
        pod.write()
    else:
        with open(pod.file("pod"), "wb") as f:
            f.write(change.encode())


@pytest.mark.parametrize("change, message", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_values_fail_before_anything_starts(tmp_path, change, message):
    pod = Pod(tmp_path, [app("first", sh("touch %s/ran" % tmp_path)),
                         app("second", sh("touch %s/ran" % tmp_path))])
    _write(pod, change)
    code, out, err = run(pod)
    assert code == 254
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert "]: " + message in lines[0], lines[0]
    assert not os.path.exists(pod.file("ran"))
    assert not os.path.exists(pod.status_dir)


def test_json_nested_5000_deep(tmp_path):
    pod = Pod(tmp_path, [app("a", ["true"])])
    with open(pod.file("pod"), "w") as f:
        f.write('{"acKind": "PodManifest", "x": ' + "[" * 5000 + "]" * 5000 + "}")
    code, out, err = run(pod)
    assert (code, err.split("]: ", 1)[1]) == (254, "pod: invalid JSON: nested too deeply\n")


def test_an_after_chain_of_1100_apps_listed_backwards(tmp_path):
    """Validating the order used to recurse once per app."""
    n = 1100
    apps = [app("a%d" % i, ["true"], annotations={"stage1/after": "a%d" % (i + 1)})
            for i in range(n - 1)] + [app("a%d" % (n - 1), ["true"])]
    pod = Pod(tmp_path, apps, annotations={"stage1/exit-policy": "untilAll"})
    code, out, err = run(pod, timeout=120)
    assert (code, err) == (0, "")
    assert pod.code("a0") == 0


def test_a_cycle_in_a_long_chain_is_found(tmp_path):
    n = 3000
    apps = [app("a%d" % i, ["true"], annotations={"stage1/after": "a%d" % ((i + 1) % n)})
            for i in range(n)]
    code, out, err = run(Pod(tmp_path, apps))
    assert code == 254 and "stage1/after makes a cycle: a0 -> a1 -> a2" in err


def test_a_uid_above_2_31_is_taken(tmp_path):
    pod = Pod(tmp_path, [app("a", ["sh", "-c", "id -u; id -g"], user="3000000000",
                             group="4294967294")])
    code, out, err = run(pod)
    assert (code, out.split(), err) == (0, ["3000000000", "4294967294"], "")


@pytest.mark.parametrize("grace, message", [
    ("1e10", "--grace must be at most 2147483 seconds, not '1e10'"),
    ("\u0661", "--grace must be a number of seconds >= 0, not '\u0661'"),
    ("inf", "--grace must be a number of seconds >= 0, not 'inf'"),
])
def test_exec_grace_out_of_range_is_a_usage_error(grace, message):
    p = subprocess.run(exec_argv(["true"], "--grace", grace), capture_output=True, text=True,
                       timeout=DEADLINE)
    assert p.returncode == 2 and p.stderr.splitlines()[0] == "stage1: " + message


def test_exec_grace_at_the_limit_works():
    p = subprocess.run(exec_argv(["sh", "-c", "exit 5"], "--grace", "2147483"),
                       timeout=DEADLINE)
    assert p.returncode == 5


def test_a_huge_exponent_through_app_add_is_refused_at_once(live):
    pod = live([app("a", ["sleep", "100"])], None, "--mutable")
    runtime = app("b", ["true"], isolators=[{"name": "resource/memory",
                                             "value": {"limit": "1e999999999"}}])
    answer = pod.request({"op": "add", "app": "b", "runtimeApp": runtime})
    assert answer == {"ok": False, "error": "app add: runtimeApp.app.isolators[0].value.limit: "
                      "'1e999999999': an exponent is at most 30"}
    runtime = app("c", ["/bin/echo", "\ud800"])
    answer = pod.request({"op": "add", "app": "c", "runtimeApp": runtime})
    assert answer == {"ok": False, "error": "app add: runtimeApp.app.exec[1]: is not valid "
                      "UTF-8 text (a lone surrogate)"}
    assert set(pod.apps()) == {"a"}


def test_a_pod_file_with_unicode_digits_in_passwd(tmp_path):
    """An app root's /etc/passwd with a uid of "²" is skipped, not a traceback."""
    pod = Pod(tmp_path, [app("a", ["true"], user="weird")], stage1_rootfs=True)
    root = os.path.join(pod.app_dir("a"), "rootfs", "etc")
    os.makedirs(root)
    with open(os.path.join(root, "passwd"), "w") as f:
        f.write("weird:x:\u00b2:0::/:/bin/sh\n")
    code, out, err = run(pod, "--no-isolate")
    assert code == 254 and "apps[0].app.user: 'weird' is neither in" in err
    assert len(err.splitlines()) == 1


def test_enter_pid_unicode_digit_is_a_usage_error():
    p = stage1("enter", "--pid=\u0661", "--appname=a")
    assert p.returncode == 2 and "--pid must be a process id" in p.stderr

