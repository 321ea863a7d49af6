"""User namespaces (`--private-users=SHIFT:COUNT`, what rkt passes).

The apps of the pod run in one user namespace mapping 0..COUNT-1 to
SHIFT..SHIFT+COUNT-1 on the host: root in the pod is SHIFT on the host, and
can do to host files only what uid SHIFT may.  The pod's init, stage1
itself, stays in the host's user namespace, so it keeps writing the pod
directory, the cgroups and the mounts; each app joins the namespace between
fork and exec (spawn.c, after its root and before its ids).  The pod's
other namespaces stay owned by the host's user namespace, so even root in
the pod has no capability over its mounts, hostname or network.

The namespace is made once, by a short-lived child that unshares it and
waits while the init writes its uid_map and gid_map (the init is root on
the host, so any mapping may be written); the init keeps an fd of it.

App roots are made usable with idmapped mounts (MOUNT_ATTR_IDMAP with the
namespace's mapping, rootfs.py): a file owned by 0 in the image is owned by
0 in the pod, and what the pod's root writes there is written as 0, so it
works with rkt's default overlay, where rkt itself needed --no-overlay and
a chown of every file.  When rkt did that chown (`--no-overlay`: it writes
POD/private-users-prepared), the roots are bound as they are.  Host
volumes are not shifted, as in rkt: in them, root in the pod is SHIFT.
"""
import os

from stage1.engine import native
from stage1.pod.errors import PodError

MAX_ID = 2 ** 32 - 1
PREPARED = "private-users-prepared"      # rkt wrote it after chowning the roots


def parse(value):
    """(shift, count) from `--private-users=SHIFT:COUNT`; None without it."""
    if value in (None, True, ""):
        return None
    shift, colon, count = value.partition(":")
    if not colon or not all(p.isascii() and p.isdigit() for p in (shift, count)):
        raise PodError("--private-users=%s: must be SHIFT:COUNT (such as 1294729216:65536)"
                       % value)
    shift, count = int(shift), int(count)
    if count < 1 or shift < 1 or shift + count > MAX_ID:
        raise PodError("--private-users=%s: SHIFT must be at least 1, COUNT at least 1, and "
                       "SHIFT+COUNT at most %d" % (value, MAX_ID))
    return shift, count


def prepared(poddir):
    """Did rkt already chown the roots to the shifted ids (--no-overlay)?"""
    return os.path.exists(os.path.join(poddir.path, PREPARED))


def make(shift, count):
    """An fd of a new user namespace mapping 0..count-1 to shift.., made
    by a child that unshares it and waits for its maps."""
    ready_r, ready_w = os.pipe2(os.O_CLOEXEC)
    go_r, go_w = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.close(ready_r)
            os.close(go_w)
            native.unshare(native.CLONE_NEWUSER)
            os.write(ready_w, b"u")
            os.read(go_r, 1)          # the init has opened the namespace, or gave up
            code = 0
        finally:
            os._exit(code)
    os.close(ready_w)
    os.close(go_r)
    try:
        if os.read(ready_r, 1) != b"u":
            raise PodError("unable to make the pod's user namespace")
        line = "0 %d %d\n" % (shift, count)
        for name in ("uid_map", "gid_map"):
            with open("/proc/%d/%s" % (pid, name), "w") as f:
                f.write(line)
        return os.open("/proc/%d/ns/user" % pid, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as err:
        raise PodError("unable to make the pod's user namespace (%d:%d): %s"
                       % (shift, count, err.strerror))
    finally:
        os.close(ready_r)
        os.close(go_w)
        os.waitpid(pid, 0)
