"""`stage1 run FILE`: a pod file, compiled (pod/podfile.py), given a pod
directory of its own, and run like any pod (runner/pod.py).

The pod directory is `--pod-dir DIR`, else `<runtime dir>/<name>`
(pod/directory.py runtime_dir: /run/stage1 as root), so that `stage1
status NAME`, `ps`, `stop`, `logs` and `events` find it by the pod's name.
It holds what any pod directory holds (the compiled manifest as `pod`),
and `podfile`, the path of the file it was made for.

The init holds an exclusive flock on the directory for its whole life: a
second `stage1 run` of the same pod is refused, whatever stale pid files
say, and the lock goes with the init however it ends.  What the last run
left is removed as the next one starts (status files, events, the pod's
status), except the logs, which are appended to, as supervisord keeps its
log files.  A directory that was not made for a pod file is never used.
"""
import fcntl
import os

from stage1.engine import status
from stage1.engine.supervisor import Log
from stage1.pod import directory
from stage1.pod.errors import PodError
from stage1.runner import pod as runner

MARKER = "podfile"


def run(compiled, opts, pod_dir=None):
    """The pod of a compiled pod file, to its end: the exit code."""
    try:
        poddir, lock_fd = prepare(compiled, pod_dir)
    except PodError as err:
        Log(opts.verbose).warn(str(err))
        return runner.EXIT_FAILURE
    del lock_fd         # stays open (close-on-exec) until the init exits
    return runner.run(poddir, opts)


def prepare(compiled, pod_dir=None):
    """(PodDir, the lock fd): the directory made or taken, locked, cleaned of
    the last run, with the compiled manifest in it."""
    path = os.path.abspath(pod_dir) if pod_dir else os.path.join(directory.runtime_dir(),
                                                                 compiled.name)
    if not pod_dir:
        _runtime_dir(os.path.dirname(path))
    try:
        os.makedirs(path, mode=0o755, exist_ok=True)
    except OSError as err:
        raise PodError("unable to make the pod directory %s: %s" % (path, err.strerror))
    marker = os.path.join(path, MARKER)
    if not os.path.exists(marker) and os.listdir(path):
        raise PodError("%s holds something that no pod file made (no %s): give another "
                       "--pod-dir" % (path, MARKER))
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise PodError("pod %s is running already (from %s, in %s): stop it first, or give "
                       "this one another name (name = \"...\")" % (
                           compiled.name, _read(marker) or "?", path))
    _clean(path)
    try:
        status.write_atomic(marker, compiled.path.encode() + b"\n")
        status.write_json(os.path.join(path, "pod"), compiled.manifest)
    except OSError as err:
        os.close(fd)
        raise PodError("unable to write in %s: %s" % (path, err.strerror))
    return directory.PodDir(path), fd


def _runtime_dir(path):
    """The runtime directory: made 0755 as root (/run/stage1), 0700 for a
    user; one that another user owns is refused (a /tmp directory someone
    else made first)."""
    try:
        os.makedirs(path, mode=0o755 if os.geteuid() == 0 else 0o700, exist_ok=True)
        st = os.lstat(path)
    except OSError as err:
        raise PodError("unable to make the runtime directory %s: %s" % (path, err.strerror))
    if st.st_uid != os.geteuid() or not os.path.isdir(path) or os.path.islink(path):
        raise PodError("the runtime directory %s is not this user's own directory" % path)


def _clean(path):
    """What the last run of the pod left, but its logs."""
    for name in ("pod-status.json", "events.jsonl", "pid", "ppid", "pod"):
        _unlink(os.path.join(path, name))
    status_dir = os.path.join(path, "rkt", "status")
    try:
        names = os.listdir(status_dir)
    except OSError:
        names = []
    for name in names:
        _unlink(os.path.join(status_dir, name))


def _unlink(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as err:
        raise PodError("unable to remove %s: %s" % (path, err.strerror))


def _read(path):
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None
