"""`stage1 gc`: remove what a pod left behind, once it has ended.

rkt runs it as `gc [--debug] [--local-config DIR] UUID` with cwd in the pod
directory, before it deletes the directory.  What stage1 may leave:

  networks  the CNI networks a pod was attached to (network.py): DEL to
            each plugin in reverse order, then its network namespace
            unmounted and removed.  First, before the mounts below go: a
            plugin may live in the stage1 image mounted under the pod
            (rkt#2319); one whose path is gone is looked up again in the
            plugin directories (--local-config's net.d first).  A DEL that
            fails keeps its record and the namespace, and gc fails.
  mounts    under the pod directory, in the caller's mount namespace.  An
            isolated pod mounts only in its own namespace, which the kernel
            tears down with the pod; what gc finds here was mounted by
            someone else (rkt's overlays, a crash of a tool), and it goes too,
            deepest first, detached (MNT_DETACH) so that a busy mount cannot
            make gc fail.
  cgroups   the directories listed in POD/cgroups (cgroups.py), deepest
            first.  One that still has processes stays, and gc fails.

Running it twice is safe: the second run finds nothing and exits 0.  A pod
whose init still runs is refused.
"""
import errno
import os

from stage1.engine import native, status
from stage1.engine.supervisor import Log
from stage1.isolation import cgroups, network
from stage1.pod.errors import PodError

EXIT_FAILURE = 254


def _unescape(field):
    """mountinfo escapes space, tab, newline and backslash as \\ooo."""
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and field[i + 1:i + 4].isdigit():
            out.append(chr(int(field[i + 1:i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def mounts_under(path, mountinfo="/proc/self/mountinfo"):
    """Mount points at or below path, deepest first (a path stacked twice
    appears twice)."""
    top = os.path.realpath(path).rstrip("/") + "/"
    with open(mountinfo) as f:
        points = [_unescape(line.split()[4]) for line in f]
    found = [p for p in points if (p.rstrip("/") + "/").startswith(top)]
    return sorted(found, key=lambda p: -p.count("/"))


def unmount_all(path, log):
    """Unmount everything under path; [(mount point, error)] of what stays."""
    failed = {}
    for _ in range(64):
        todo = [p for p in mounts_under(path) if p not in failed]
        if not todo:
            break
        for point in todo:
            try:
                native.umount(point, native.MNT_DETACH)
                log.debug("unmounted %s" % point)
            except OSError as err:
                # EINVAL: no longer a mount point (its parent took it along).
                if err.errno not in (errno.EINVAL, errno.ENOENT):
                    failed[point] = err.strerror
    return sorted(failed.items())


def run(poddir, verbose=False, local_config=None):
    log = Log(verbose)
    try:
        pid = poddir.find_init()
    except PodError:
        pid = None
    if pid is not None:
        log.warn("gc: the pod's init (pid %d) is still running: stop the pod first" % pid)
        return EXIT_FAILURE
    for directory in (poddir.path, poddir.status_dir):
        for name in status.remove_stale(directory):
            log.debug("removed %s, left by a writer killed half-way" % name)
    dirs = network.plugin_dirs(local_config or network.DEFAULT_LOCAL_CONFIG,
                               poddir.stage1_root)
    left = network.teardown(poddir.path, dirs, log)
    left += unmount_all(poddir.path, log)
    left += cgroups.remove(os.path.join(poddir.path, "cgroups"))
    for what, why in left:
        log.warn("gc: unable to remove %s: %s" % (what, why))
    return EXIT_FAILURE if left else 0
