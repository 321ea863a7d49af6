"""User namespaces: `--private-users=SHIFT:COUNT`, as rkt passes it.

Root in the pod is SHIFT on the host: what it creates in a host volume is
SHIFT's, and it cannot write, read or chown host files SHIFT may not.  The
app's root is idmapped, so a file owned by 0 in the image is its own and
what it writes there is written as 0; with rkt's --no-overlay (rkt chowned
the root to the shifted ids and wrote POD/private-users-prepared) the root
is used as it is.  A root on a filesystem that cannot be idmapped is one
line and 254.  Tried as an attacker would: mounting, setting the hostname,
writing to the host's files.
"""
import os
import subprocess

import pytest

from isohelpers import podbase  # noqa: F401 (a fixture)
from isohelpers import IsoPod, IsoRun, iso_run, sh_app, stage1_cmd
from conftest import descendants, status_field

SHIFT, COUNT = 1294729216, 65536          # what rkt picked in the recorded run
USERS = "--private-users=%d:%d" % (SHIFT, COUNT)


def _with_volume(pod, source, path="/v"):
    pod.manifest["volumes"] = [{"name": "v", "kind": "host", "source": source}]
    for runtime in pod.manifest["apps"]:
        runtime["mounts"] = [{"volume": "v", "path": path}]
    pod.write()
    return pod


@pytest.fixture
def volume(tmp_path):
    """A host directory anyone may write to, a root-owned file in it, and a
    root-only file."""
    d = tmp_path / "vol"
    d.mkdir()
    os.chmod(d, 0o1777)
    (d / "roots").write_text("host root's\n")
    os.chmod(d / "roots", 0o644)
    (d / "secret").write_text("secret\n")
    os.chmod(d / "secret", 0o600)
    return d


def test_root_in_the_pod_is_shift_on_the_host(podbase, volume):
    script = "id -u; id -g; cat /proc/self/uid_map; touch /v/made-by-root"
    pod = _with_volume(IsoPod(podbase, [sh_app("a", script)]), str(volume))
    code, out, err = iso_run(pod, "--net=none", USERS)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[:2] == ["0", "0"]
    assert lines[2].split() == ["0", str(SHIFT), str(COUNT)]
    st = os.stat(volume / "made-by-root")
    assert (st.st_uid, st.st_gid) == (SHIFT, SHIFT)


def test_a_user_of_the_pod_is_shifted_too(podbase, volume):
    pod = _with_volume(IsoPod(podbase, [sh_app("a", "touch /v/by-alice", user="1500",
                                               group="1600")]), str(volume))
    code, out, err = iso_run(pod, "--net=none", USERS)
    assert code == 0, err
    st = os.stat(volume / "by-alice")
    assert (st.st_uid, st.st_gid) == (SHIFT + 1500, SHIFT + 1600)


def test_root_in_the_pod_cannot_touch_host_files_it_does_not_own(podbase, volume):
    script = ("echo x >> /v/roots && echo WROTE; cat /v/secret && echo READ; "
              "chown 0:0 /v/made 2>/dev/null; touch /v/made; chown 5 /v/roots && echo CHOWNED; "
              "rm /v/roots && echo REMOVED; echo done")
    pod = _with_volume(IsoPod(podbase, [sh_app("a", script)]), str(volume))
    code, out, err = iso_run(pod, "--net=none", USERS)
    assert code == 0, err
    assert out.splitlines()[-1] == "done"
    for word in ("WROTE", "READ", "CHOWNED", "REMOVED"):
        assert word not in out, out
    assert (volume / "roots").read_text() == "host root's\n"
    assert os.stat(volume / "roots").st_uid == 0


def test_the_apps_root_is_idmapped_its_files_are_its_own(podbase):
    script = "echo extra >> /etc/passwd && touch /newfile && ls -ln /etc/passwd /newfile"
    pod = IsoPod(podbase, [sh_app("a", script)])
    code, out, err = iso_run(pod, "--net=none", USERS)
    assert code == 0, err
    for line in out.splitlines():
        assert line.split()[2:4] == ["0", "0"], line      # owned by the pod's root
    root = pod.app_root("a")
    assert os.stat(os.path.join(root, "newfile")).st_uid == 0   # written as 0 on disk
    with open(os.path.join(root, "etc", "passwd")) as f:
        assert f.read().endswith("extra\n")


def test_rkts_no_overlay_layout_is_used_as_it_is(podbase, volume):
    """rkt run --private-users --no-overlay chowns the root to the shifted
    ids and writes POD/private-users-prepared: no idmapping on top."""
    pod = _with_volume(IsoPod(podbase, [sh_app("a", "touch /mine; id -u; ls -ln /mine")]),
                       str(volume))
    root = pod.app_root("a")
    for directory, dirs, files in os.walk(root):
        for name in [directory] + [os.path.join(directory, n) for n in dirs + files]:
            st = os.lstat(name)
            os.lchown(name, st.st_uid + SHIFT, st.st_gid + SHIFT)
    with open(pod.file("private-users-prepared"), "w") as f:
        f.write("%d:%d" % (SHIFT, COUNT))
    code, out, err = iso_run(pod, "--net=none", USERS)
    assert code == 0, err
    assert out.splitlines()[0] == "0"
    assert os.stat(os.path.join(root, "mine")).st_uid == SHIFT


def test_root_in_the_pod_has_no_power_over_the_pods_own_namespaces(podbase):
    """The pod's mount, UTS and network namespaces belong to the host's user
    namespace: root in the pod cannot mount, set the hostname or bring a
    link down, even with the capabilities it is given."""
    script = ("mount -t tmpfs t /tmp && echo MOUNTED; hostname evil 2>/dev/null && "
              "echo RENAMED; ip link set lo down 2>/dev/null && echo DOWN; hostname")
    pod = IsoPod(podbase, [sh_app("a", script)])
    pod.manifest["apps"][0]["app"]["isolators"] = [
        {"name": "os/linux/capabilities-retain-set",
         "value": {"set": ["CAP_SYS_ADMIN", "CAP_NET_ADMIN"]}},
        {"name": "os/linux/seccomp-retain-set", "value": {"set": ["@appc.io/all"]}}]
    pod.write()
    code, out, err = iso_run(pod, "--net=none", USERS)
    assert code == 0, err
    assert out.splitlines() == ["rkt-" + pod.uuid], out


def test_enter_runs_in_the_pods_user_namespace(podbase):
    pod = IsoPod(podbase, [sh_app("a", "sleep 100")])
    with IsoRun(pod, "--net=none", USERS):
        pod.wait_state("a", "running")
        p = stage1_cmd("enter", pod.path, "--app", "a", "--", "/bin/sh", "-c",
                       "id -u; cat /proc/self/uid_map")
        assert p.returncode == 0, p.stderr
        lines = p.stdout.splitlines()
        assert lines[0] == "0" and lines[1].split() == ["0", str(SHIFT), str(COUNT)]


def test_the_apps_process_is_shift_on_the_host(podbase):
    pod = IsoPod(podbase, [sh_app("a", "sleep 100")])
    with IsoRun(pod, "--net=none", USERS):
        st = pod.wait_state("a", "running")
        init = int(pod.read("pid"))
        hosts = descendants(init)
        app = [p for p in hosts if status_field(p, "NSpid").split()[-1] == str(st["pid"])][0]
        assert status_field(app, "Uid").split() == [str(SHIFT)] * 4


@pytest.mark.parametrize("value, message", [
    ("abc", "--private-users=abc: must be SHIFT:COUNT"),
    ("100000", "--private-users=100000: must be SHIFT:COUNT"),
    ("100000:0", "--private-users=100000:0: SHIFT must be at least 1, COUNT at least 1"),
    ("0:65536", "--private-users=0:65536: SHIFT must be at least 1"),
    ("4294967295:10", "--private-users=4294967295:10: SHIFT must be at least 1"),
])
def test_a_bad_mapping_is_refused_before_anything_starts(podbase, value, message):
    pod = IsoPod(podbase, [sh_app("a", "touch /ran")])
    code, out, err = iso_run(pod, "--net=none", "--private-users=" + value)
    assert code == 254 and len(err.splitlines()) == 1 and message in err, err
    assert not os.path.exists(os.path.join(pod.app_root("a"), "ran"))


def test_a_root_that_cannot_be_idmapped_is_one_line_and_254(tmp_path):
    base = tmp_path / "ramfs"
    base.mkdir()
    subprocess.run(["mount", "-t", "ramfs", "ramfs", str(base)], check=True)
    try:
        pod = IsoPod(str(base), [sh_app("a", "touch /ran")])
        code, out, err = iso_run(pod, "--net=none", USERS)
        assert code == 254
        [line] = err.splitlines()
        assert "its filesystem cannot be idmapped, which --private-users needs" in line
        assert not os.path.exists(os.path.join(pod.app_root("a"), "ran"))
    finally:
        subprocess.run(["umount", "-l", str(base)], check=True)
