"""The pure parts of isolation, without a pod: quantities, isolators,
cgroup hierarchies from mountinfo (v1, hybrid, v2-only, cgroup namespace),
and path resolution inside an app root."""
import os
from fractions import Fraction

import pytest

from stage1.isolation import cgroups, rootfs
from stage1.pod import isolators
from stage1.pod.errors import ManifestError


@pytest.mark.parametrize("text, value", [
    ("1000000", 1000000), ("1G", 10 ** 9), ("1K", 1000), ("1k", 1000), ("512Mi", 512 << 20),
    ("1.5Gi", 3 << 29), ("1e3", 1000), ("2E-1", "1/5"), ("500m", "1/2"), ("0.5", "1/2"),
    (".5", "1/2"), ("1Ei", 1 << 60), ("1E", 10 ** 18), ("+3", 3), ("100u", "1/10000")])
def test_quantities(text, value):
    assert isolators.parse_quantity(text) == Fraction(value)


@pytest.mark.parametrize("text", ["", "G", "1 G", "1GB", "1.2.3", "0x10", "1Kib", "--1"])
def test_bad_quantities(text):
    with pytest.raises(ValueError):
        isolators.parse_quantity(text)


def test_limits_round_up_to_whole_units():
    limits, unapplied = isolators.parse([
        ("resource/memory", {"limit": "1.5"}, "w0"), ("resource/cpu", {"limit": "0.0001"}, "w1"),
        ("os/linux/selinux-context", {"user": "u"}, "w2")])
    assert limits.memory == (2, 2) and limits.cpu == (1, 1)
    assert unapplied == [("os/linux/selinux-context", "w2")]


def test_only_resources_apply_to_the_pod():
    limits, unapplied = isolators.parse([
        ("os/linux/no-new-privileges", True, "isolators[0]"),
        ("resource/cpu", {"limit": "1"}, "isolators[1]")], scope="pod")
    assert unapplied == [("os/linux/no-new-privileges", "isolators[0]")]
    assert not limits.no_new_privs and limits.cpu == (1000, 1000)


def test_capability_names_are_forgiving_about_case_and_prefix():
    limits, _ = isolators.parse([("os/linux/capabilities-retain-set",
                                  {"set": ["cap_kill", "NET_RAW"]}, "w")])
    assert limits.caps == isolators.mask(["CAP_KILL", "CAP_NET_RAW"])


def test_an_isolator_given_twice_is_an_error():
    with pytest.raises(ManifestError, match="w1: os/linux/oom-score-adj is given twice"):
        isolators.parse([("os/linux/oom-score-adj", 1, "w0"), ("os/linux/oom-score-adj", 2, "w1")])


def _write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


def _line(mount_id, root, target, fstype, options):
    return "%d 1 0:%d %s %s rw,relatime - %s %s %s" % (mount_id, mount_id, root, target, fstype,
                                                      fstype, options)


def test_hybrid_hierarchies_take_controllers_from_v1(tmp_path):
    unified = tmp_path / "unified"
    _write(str(unified / "cgroup.controllers"), "hugetlb memory\n")
    mountinfo = "\n".join([
        _line(30, "/", "/sys/fs/cgroup/memory", "cgroup", "rw,memory"),
        _line(31, "/", "/sys/fs/cgroup/cpu,cpuacct", "cgroup", "rw,cpu,cpuacct"),
        _line(32, "/", "/sys/fs/cgroup/systemd", "cgroup", "rw,name=systemd"),
        _line(33, "/", str(unified), "cgroup2", "rw"),
        _line(34, "/", "/sys/fs/cgroup/memory2", "cgroup", "rw,memory"),    # same, mounted twice
    ])
    own = "5:memory:/user/me\n4:cpu,cpuacct:/\n1:name=systemd:/x\n0::/u\n"
    _write(str(tmp_path / "mountinfo"), mountinfo)
    _write(str(tmp_path / "cgroup"), own)
    found = cgroups.hierarchies(str(tmp_path / "mountinfo"), str(tmp_path / "cgroup"))
    assert [(h.mount, h.version, sorted(h.controllers), h.own) for h in found] == [
        ("/sys/fs/cgroup/memory", 1, ["memory"], "/user/me"),
        ("/sys/fs/cgroup/cpu,cpuacct", 1, ["cpu", "cpuacct"], "/")]
    layout = cgroups.Layout("p", found)
    assert layout.pod == ["/sys/fs/cgroup/memory/user/me/stage1-p",
                          "/sys/fs/cgroup/cpu,cpuacct/stage1-p"]


def test_v2_only_and_a_cgroup_namespace(tmp_path):
    _write(str(tmp_path / "cg" / "cgroup.controllers"), "cpuset cpu io memory pids\n")
    _write(str(tmp_path / "mountinfo"), _line(40, "/kubepods/pod1", str(tmp_path / "cg"),
                                              "cgroup2", "rw") + "\n")
    _write(str(tmp_path / "cgroup"), "0::/kubepods/pod1/c1\n")
    [h] = cgroups.hierarchies(str(tmp_path / "mountinfo"), str(tmp_path / "cgroup"))
    assert (h.version, sorted(h.controllers), h.own) == (2, ["cpu", "memory", "pids"], "/c1")
    assert h.path("stage1-p") == str(tmp_path / "cg" / "c1" / "stage1-p")


def test_resolve_follows_symlinks_inside_the_root(tmp_path):
    root = str(tmp_path)
    os.makedirs(os.path.join(root, "usr", "lib"))
    os.symlink("usr/lib", os.path.join(root, "lib"))
    os.symlink("/../../..", os.path.join(root, "up"))
    os.symlink("../../../../etc", os.path.join(root, "usr", "etc"))
    os.symlink("loop", os.path.join(root, "loop"))
    assert rootfs.resolve(root, "/lib/x") == os.path.join(root, "usr", "lib", "x")
    assert rootfs.resolve(root, "/up/etc/passwd") == os.path.join(root, "etc", "passwd")
    assert rootfs.resolve(root, "/usr/etc") == os.path.join(root, "etc")
    assert rootfs.resolve(root, "/../../a/../b") == os.path.join(root, "b")
    with pytest.raises(OSError, match="too many levels"):
        rootfs.resolve(root, "/loop/x")
