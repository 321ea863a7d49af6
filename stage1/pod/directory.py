"""The pod directory, in rkt's layout: paths, the pid file, the lock fd.

    POD/pod                          the PodManifest
    POD/pid, POD/ppid                the init's PID (and its parent's) in its own PID namespace;
                                     for an isolated pod (isolation/), as the host sees them
    POD/cgroups                      the cgroups of an isolated pod (isolation/cgroups.py), for gc
    POD/isolation                    the insecure options an isolated pod runs with, for enter
    POD/pod-status.json              pod state, exit code, times
    POD/stage1/rootfs                the stage1 root when it exists, else POD itself
    <stage1 root>/opt/stage2/<app>/  the app's image: manifest and rootfs
    <stage1 root>/rkt/status/<app>   rkt's exit status files (and <app>.json)
    POD/podfile                      the pod file a pod directory was made for (runner/podfile.py)

A pod file's pod directory lives in the runtime directory by its name
(runtime_dir): `stage1 status NAME` finds it there.
"""
import os

from stage1.engine import status
from stage1.pod import manifest
from stage1.pod.errors import PodError


class PodDir:
    def __init__(self, path):
        self.path = os.path.abspath(path)
        root = os.path.join(self.path, "stage1", "rootfs")
        self.stage1_root = root if os.path.isdir(root) else self.path
        self.manifest_path = os.path.join(self.path, "pod")
        self.pid_path = os.path.join(self.path, "pid")
        self.ppid_path = os.path.join(self.path, "ppid")
        self.status_path = os.path.join(self.path, "pod-status.json")
        self.status_dir = os.path.join(self.stage1_root, "rkt", "status")
        self._stage2 = os.path.join(self.stage1_root, "opt", "stage2", "")

    # An app's name is an AC name (manifest.py): one component, no "/", so
    # the paths are put together by hand (a thousand apps ask three times each).
    def app_dir(self, name):
        return self._stage2 + name

    def has_app_dirs(self):
        """Is there opt/stage2, where rkt puts each app's directory?"""
        return os.path.isdir(self._stage2)

    def app_root(self, name):
        return self._stage2 + name + "/rootfs"

    def read_manifest(self):
        try:
            with open(self.manifest_path, "rb") as f:
                return f.read()
        except OSError as err:
            raise PodError("unable to read the pod manifest %s: %s"
                           % (self.manifest_path, err.strerror))

    def image_app(self, name):
        """(app object, annotations, source) from the app's image manifest."""
        path = self.app_dir(name) + "/manifest"
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError as err:
            raise PodError("app %s has no app section and its image manifest %s "
                           "cannot be read: %s" % (name, path, err.strerror))
        return manifest.parse_image_manifest(data, path)

    def image_annotations(self, name):
        """The annotations of the app's image manifest; {} when there is none
        or it cannot be read (it then says nothing)."""
        if not os.path.exists(self.app_dir(name) + "/manifest"):
            return {}
        try:
            return self.image_app(name)[1]
        except ValueError:
            return {}

    def write_pids(self, pid, ppid):
        status.write_atomic(self.pid_path, b"%d\n" % pid)
        status.write_atomic(self.ppid_path, b"%d\n" % ppid)

    def read_pid(self):
        try:
            with open(self.pid_path, "rb") as f:
                return int(f.read().strip())
        except (OSError, ValueError) as err:
            raise PodError("no running init recorded in %s: %s" % (
                self.pid_path, getattr(err, "strerror", None) or err))

    @property
    def init_title(self):
        """What the init calls itself (init.set_title), in /proc/PID/cmdline."""
        return "stage1 run: %s" % os.path.basename(self.path)

    def find_init(self):
        """The pid, in our PID namespace, of this pod's running init.

        POD/pid holds the pid the init has in its own namespace: 1 when it
        runs as PID 1 of a fresh one, where it cannot learn the pid its
        parent sees.  So the recorded pid is never signalled blindly (from
        the host, 1 is the host's init): it is the pod's init only if /proc
        shows the init's title there, else the init is the one process with
        that title whose innermost NSpid is the recorded pid."""
        pid = self.read_pid()
        title = self.init_title.encode()
        # An isolated pod (isolation/) records its init as the host sees it;
        # to itself, that init is PID 1 and calls itself `stage1 init: POD`.
        isolated = ("stage1 init: %s" % os.path.basename(self.path)).encode()
        if _is_init(pid, pid, title) or _is_init(pid, 1, isolated):
            return pid
        found = [int(n) for n in _proc_pids() if _is_init(int(n), pid, title)]
        if len(found) == 1:
            return found[0]
        if found:
            raise PodError("%d processes are inits of a pod named %s: give its init "
                           "a unique directory name" % (len(found), os.path.basename(self.path)))
        raise PodError("the pod's init (pid %d in %s) is not running" % (pid, self.pid_path))

    def read_status(self):
        """(pod status dict or {}, [app status dicts]) from the files alone."""
        try:
            pod = status.read_json(self.status_path)
        except (OSError, ValueError):
            pod = {}
        apps = []
        names = pod.get("apps") or _json_names(self.status_dir)
        for name in names:
            try:
                apps.append(status.read_json(os.path.join(self.status_dir, name + ".json")))
            except (OSError, ValueError):
                apps.append({"name": name, "state": "waiting"})
        return pod, apps


def _json_names(directory):
    try:
        return sorted(n[:-5] for n in os.listdir(directory)
                      if n.endswith(".json") and ".tmp" not in n)
    except OSError:
        return []


def _proc_pids():
    try:
        return [n for n in os.listdir("/proc") if n.isdigit()]
    except OSError:
        return []


def _is_init(host_pid, ns_pid, title):
    """Is host_pid a stage1 init called title, with pid ns_pid in its namespace?"""
    try:
        with open("/proc/%d/cmdline" % host_pid, "rb") as f:
            if f.read().split(b"\0", 1)[0] != title:
                return False
        with open("/proc/%d/status" % host_pid, "rb") as f:
            for line in f:
                if line.startswith(b"NSpid:"):
                    return int(line.split()[-1]) == ns_pid
    except (OSError, ValueError):
        pass
    return False


def runtime_dir():
    """Where pod files' pod directories go, by name: $STAGE1_RUNTIME_DIR,
    else /run/stage1 for root (where supervisord and Compose users look for
    runtime state), $XDG_RUNTIME_DIR/stage1 for others (systemd --user's
    place), else /tmp/stage1-<uid>."""
    if os.environ.get("STAGE1_RUNTIME_DIR"):
        return os.path.abspath(os.environ["STAGE1_RUNTIME_DIR"])
    if os.geteuid() == 0:
        return "/run/stage1"
    if os.environ.get("XDG_RUNTIME_DIR", "").startswith("/"):
        return os.path.join(os.environ["XDG_RUNTIME_DIR"], "stage1")
    return "/tmp/stage1-%d" % os.geteuid()


def _is_pod(path):
    return os.path.isfile(os.path.join(path, "pod"))


def _named(name):
    """The pod directory of the pod file pod called name, if it has run."""
    path = os.path.join(runtime_dir(), name)
    return PodDir(path) if name not in (".", "..") and os.path.isdir(path) else None


DEFAULT_FILES = ("stage1.toml", "Procfile")    # what `stage1 run` looks for in the cwd


def default_file(directory):
    for name in DEFAULT_FILES:
        path = os.path.join(directory, name)
        if os.path.isfile(path):
            return path
    return None


def find(arg):
    """rkt runs its stage1 with cwd in the pod and the UUID last: a
    positional that names an existing directory is the pod; else the name
    of the current directory (rkt's UUID) when it is a pod directory.  Then
    pod files: a pod file's pod, or a name of the runtime directory's pods.
    A positional that is none of these is an error, never the current
    directory's pod by default (`stage1 stop TYPO` must not stop it).
    Without one: the current directory, or the pod of the pod file in it
    (stage1.toml, Procfile) when it is no pod directory."""
    cwd = os.getcwd()
    # podfile (tomllib, shlex) only when a pod file is in play: start-up time.
    if not arg:
        found = None if _is_pod(cwd) else default_file(cwd)
        if found:
            from stage1.pod import podfile
        named = _named(podfile.name_of(found)) if found else None
        return named or PodDir(cwd)
    if os.path.isdir(arg):
        return PodDir(arg)
    here = "/" not in arg and arg == os.path.basename(cwd)
    if here and _is_pod(cwd):
        return PodDir(cwd)
    base = os.path.basename(arg)
    if os.path.isfile(arg) and (base.endswith((".toml", ".procfile")) or base == "Procfile" or
                                base.startswith("Procfile.")):
        from stage1.pod import podfile
        name = podfile.name_of(arg)
        named = _named(name)
        if named is None:
            raise PodError("%s: its pod %s has not run (no %s)" % (
                arg, name, os.path.join(runtime_dir(), name)))
        return named
    named = _named(arg) if "/" not in arg else None
    if named is not None:
        return named
    if here:
        return PodDir(cwd)
    if "/" in arg or not os.path.lexists(arg):
        raise PodError("%s: no such pod directory%s" % (
            arg, "" if "/" in arg else ", and the current directory is not pod %s, nor is "
            "there a pod %s in %s" % (arg, arg, runtime_dir())))
    raise PodError("%s: not a directory" % arg)
