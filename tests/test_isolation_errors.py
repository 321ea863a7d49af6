"""Bad input for an isolated pod: exit 254 before anything starts, with one
line on stderr naming the place in the manifest (or the flag)."""
import json
import os

import pytest

from isohelpers import podbase  # noqa: F401 (a fixture)
from isohelpers import IsoPod, iso_run, sh_app


def _iso(name, value):
    return {"name": name, "value": value}


def _caps(kind, *names):
    return _iso("os/linux/capabilities-%s-set" % kind, {"set": list(names)})


def _seccomp(kind, items, errno=None):
    value = {"set": items}
    if errno is not None:
        value["errno"] = errno
    return _iso("os/linux/seccomp-%s-set" % kind, value)


def _memory(limit):
    return _iso("resource/memory", {"limit": limit})


def isolators(*items):
    def change(pod, tmp):
        pod.manifest["apps"][0]["app"]["isolators"] = list(items)
    return change


def mounts(*pairs, volumes=None, points=None):
    def change(pod, tmp):
        pod.manifest["apps"][0]["mounts"] = [{"volume": v, "path": p} for v, p in pairs]
        pod.manifest["volumes"] = volumes if volumes is not None else [
            {"name": "v", "kind": "host", "source": str(tmp)}]
        if points:
            pod.manifest["apps"][0]["app"]["mountPoints"] = points
    return change


def host_volume(source):
    def change(pod, tmp):
        pod.manifest["apps"][0]["mounts"] = [{"volume": "v", "path": "/v"}]
        pod.manifest["volumes"] = [{"name": "v", "kind": "host", "source": source(tmp)}]
    return change


def _symlinked(tmp):
    os.makedirs(os.path.join(str(tmp), "real", "dir"))
    os.symlink("real", os.path.join(str(tmp), "link"))
    return os.path.join(str(tmp), "link", "dir")


def pod_isolators(*items):
    def change(pod, tmp):
        pod.manifest["isolators"] = list(items)
    return change


CASES = [
    ("unknown capability", isolators(_caps("retain", "CAP_CHOWN", "CAP_KILL", "CAP_FOO")),
     'apps[0].app.isolators[0].value.set[2]: unknown capability "CAP_FOO"'),
    ("capability not a string", isolators(_caps("remove", 12)),
     "apps[0].app.isolators[0].value.set[0]: unknown capability 12"),
    ("capability set missing", isolators(_iso("os/linux/capabilities-retain-set", ["CAP_KILL"])),
     "apps[0].app.isolators[0].value: must be an object with a \"set\" list"),
    ("retain and remove", isolators(_caps("retain", "CAP_KILL"), _caps("remove", "CAP_KILL")),
     "apps[0].app.isolators[1]: os/linux/capabilities-remove-set cannot be used with "
     "os/linux/capabilities-retain-set (apps[0].app.isolators[0])"),
    ("unknown syscall", isolators(_seccomp("retain", ["read", "nosuchcall"])),
     "apps[0].app.isolators[0].value.set[1]: unknown syscall 'nosuchcall'"),
    ("unknown seccomp wildcard", isolators(_seccomp("remove", ["@systemd/mount"])),
     "apps[0].app.isolators[0].value.set[0]: unknown seccomp wildcard '@systemd/mount'"),
    ("empty seccomp set", isolators(_seccomp("retain", [])),
     "apps[0].app.isolators[0].value: must be an object with a non-empty \"set\" list"),
    ("seccomp set not a list", isolators(_seccomp("retain", "read")),
     "apps[0].app.isolators[0].value: must be an object with a non-empty \"set\" list"),
    ("seccomp entry not a string", isolators(_seccomp("remove", ["mount", 165])),
     "apps[0].app.isolators[0].value.set[1]: must be a syscall name or a wildcard"),
    ("errno not upper case", isolators(_seccomp("remove", ["mount"], "eperm")),
     "apps[0].app.isolators[0].value.errno: must be the name of an errno such as \"EPERM\", "
     "not \"eperm\""),
    ("unknown errno", isolators(_seccomp("remove", ["mount"], "ENOPE")),
     "apps[0].app.isolators[0].value.errno: must be the name of an errno"),
    ("errno not a string", isolators(_seccomp("remove", ["mount"], 1)),
     "apps[0].app.isolators[0].value.errno: must be the name of an errno"),
    ("seccomp retain and remove", isolators(_seccomp("remove", ["mount"]),
                                            _seccomp("retain", ["@rkt/default-whitelist"])),
     "apps[0].app.isolators[1]: os/linux/seccomp-retain-set cannot be used with "
     "os/linux/seccomp-remove-set (apps[0].app.isolators[0])"),
    ("two seccomp sets", isolators(_seccomp("remove", ["mount"]), _seccomp("remove", ["bpf"])),
     "apps[0].app.isolators[1]: os/linux/seccomp-remove-set is given twice"),
    ("remove every syscall", isolators(_seccomp("remove", ["@appc.io/all"])),
     "apps[0].app.isolators[0].value.set[0]: @appc.io/all cannot be removed"),
    ("seccomp wildcards and names together", isolators(
        _seccomp("retain", ["@appc.io/empty", "@docker/default-whitelist", "mount"], "")),
     None),
    ("memory does not parse", isolators(_memory("12X")),
     "apps[0].app.isolators[0].value.limit: '12X' is not a quantity"),
    ("memory not a string", isolators(_memory(512)),
     "apps[0].app.isolators[0].value.limit: must be a string"),
    ("memory zero", isolators(_memory("0")),
     "apps[0].app.isolators[0].value.limit: must be more than 0"),
    ("memory negative", isolators(_memory("-1G")),
     "apps[0].app.isolators[0].value.limit: must be more than 0"),
    ("memory empty", isolators(_iso("resource/memory", {})),
     "apps[0].app.isolators[0].value: must be an object with a \"limit\" or a \"request\""),
    ("cpu does not parse", isolators(_iso("resource/cpu", {"limit": "half"})),
     "apps[0].app.isolators[0].value.limit: 'half' is not a quantity"),
    ("oom out of range", isolators(_iso("os/linux/oom-score-adj", 1001)),
     "apps[0].app.isolators[0].value: must be a whole number from -1000 to 1000"),
    ("no-new-privileges not a boolean", isolators(_iso("os/linux/no-new-privileges", "yes")),
     "apps[0].app.isolators[0].value: must be true or false"),
    ("pod memory does not parse", pod_isolators(_memory("1 G")),
     "pod: isolators[0].value.limit: '1 G' is not a quantity"),
    ("undeclared volume", mounts(("nope", "/data")),
     "apps[0].mounts[0].volume: no volume named 'nope' is declared in volumes"),
    ("overlapping targets", mounts(("v", "/data"), ("v", "/data/")),
     "apps[0].mounts[1].path: overlaps apps[0].mounts[0].path: both mount on /data"),
    ("overlapping mount point", mounts(("v", "/srv//data"), points=[
        {"name": "other", "path": "/srv/data"}], volumes=[
        {"name": "v", "kind": "empty"}, {"name": "other", "kind": "empty"}]),
     None),     # a mount at a mount point's path satisfies it: no error
    ("relative target", mounts(("v", "data")), "apps[0].mounts[0].path: must be an absolute path"),
    ("stage1's target", mounts(("v", "/proc")),
     "apps[0].mounts[0].path: /proc is stage1's to mount, not a volume's"),
    ("unsatisfied mount point", mounts(points=[{"name": "cache", "path": "/cache"}]),
     "apps[0].app.mountPoints[0].name: mount point 'cache' is not satisfied"),
    ("missing host source", host_volume(lambda tmp: str(tmp) + "/nonexistent"),
     "volumes[0].source: %s/nonexistent: No such file or directory"),
    ("host source through a symlink", host_volume(_symlinked),
     "volumes[0].source: %s/link is a symbolic link"),
]


@pytest.mark.parametrize("change, message", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_fails_before_anything_starts(podbase, tmp_path, change, message):
    pod = IsoPod(podbase, [sh_app("a", "touch /ran")])
    change(pod, tmp_path)
    pod.write()
    code, out, err = iso_run(pod)
    ran = os.path.exists(os.path.join(pod.app_root("a"), "ran"))
    if message is None:
        assert (code, ran) == (0, True), err
        return
    assert code == 254
    [line] = err.splitlines()
    assert message.replace("%s", str(tmp_path)) in line, line
    assert not ran
    for name in ("pid", "cgroups", "pod-status.json"):
        assert not os.path.exists(pod.file(name))


def test_app_root_missing_for_one_app(podbase):
    pod = IsoPod(podbase, [sh_app("a", "touch /ran"), sh_app("b", "true")])
    os.rename(pod.app_root("b"), pod.app_root("b") + ".gone")
    code, _, err = iso_run(pod)
    assert code == 254
    [line] = err.splitlines()
    assert "pod: apps[1].name: the root of app b, %s, does not exist" % pod.app_root("b") in line
    assert not os.path.exists(os.path.join(pod.app_root("a"), "ran"))


def test_app_root_not_a_directory(podbase):
    pod = IsoPod(podbase, [sh_app("a", "true")], roots=False)
    os.makedirs(pod.app_dir("a"))
    open(pod.app_root("a"), "w").close()
    code, _, err = iso_run(pod)
    assert code == 254
    assert "apps[0].name: the root of app a, %s, is not a directory" % pod.app_root("a") in err


@pytest.mark.parametrize("isolator, message", [
    (_caps("retain", "CAP_NOPE"), 'app.isolators[0].value.set[0]: unknown capability "CAP_NOPE"'),
    (_seccomp("retain", ["@rkt/default-whitelist", "nope"]),
     "app.isolators[0].value.set[1]: unknown syscall 'nope'"),
], ids=["capability", "syscall"])
def test_an_error_in_an_image_manifest_names_the_image_manifest(podbase, isolator, message):
    pod = IsoPod(podbase, [sh_app("a", "true")])
    body = pod.manifest["apps"][0].pop("app")
    body["isolators"] = [isolator]
    with open(os.path.join(pod.app_dir("a"), "manifest"), "w") as f:
        json.dump({"acKind": "ImageManifest", "acVersion": "0.8.11", "name": "x/a",
                   "app": body}, f)
    pod.write()
    code, _, err = iso_run(pod)
    assert code == 254
    where = os.path.join(pod.app_dir("a"), "manifest")
    assert "%s: %s" % (where, message) in err


@pytest.mark.parametrize("flag, message", [
    ("--private-users=1000", "--private-users=1000: must be SHIFT:COUNT"),
    ("--ipc=shared", "--ipc=shared: must be auto, private or parent"),
    ("--hostname=" + "h" * 65, "a hostname has at most 64 bytes"),
    ("--disable-seccomp=maybe", "--disable-seccomp=maybe: must be true or false"),
])
def test_bad_flags(podbase, flag, message):
    pod = IsoPod(podbase, [sh_app("a", "touch /ran")])
    code, _, err = iso_run(pod, flag)
    assert code == 254
    [line] = err.splitlines()
    assert message in line
    assert not os.path.exists(os.path.join(pod.app_root("a"), "ran"))
