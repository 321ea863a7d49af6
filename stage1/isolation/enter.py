"""`stage1 enter`: run a command inside a running app of a pod.

rkt's enter entrypoint gets `--pid=PID --appname=NAME -- CMD` with cwd in
the pod directory; people write `stage1 enter POD --app NAME -- CMD`.

The command joins the namespaces of the pod's init: every namespace file
is opened first (after the mount namespace is joined, /proc is the pod's
and /proc/PID means something else), then setns in the order ipc, uts,
net, pid, mnt, skipping those we share already.  A PID namespace is only
entered by the children of whoever joins it, so the command is spawned,
like an app of the pod, with the app's root (its protected paths are the
pod's mounts there), environment, credentials, working directory, cgroups,
capabilities and seccomp filter (decide.for_enter), and
waited for by a Supervisor in exec mode: signals are passed on, a terminal
is handed over, and the exit code is the command's (127 not found, 126
not executable, 254 for a failure of enter itself).
"""
import os

from stage1.engine import init, native, spawn
from stage1.engine.loop import Loop
from stage1.engine.supervisor import App, Log, Supervisor, ON_ANY
from stage1.isolation import decide
from stage1.pod import manifest, plan
from stage1.pod.errors import PodError

EXIT_FAILURE = 254
NAMESPACES = (("ipc", native.CLONE_NEWIPC), ("uts", native.CLONE_NEWUTS),
              ("net", native.CLONE_NEWNET), ("pid", native.CLONE_NEWPID),
              ("mnt", native.CLONE_NEWNS))


def _app_spec(poddir, name):
    pod = manifest.parse_pod(poddir.read_manifest(), "pod", images=poddir)
    for spec in pod.apps:
        if spec.name == name:
            return spec
    raise PodError("no app named %r in %s" % (name, poddir.manifest_path))


def _is_isolated(pid):
    """The init of an isolated pod calls itself `stage1 init: POD`."""
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return f.read().startswith(b"stage1 init: ")
    except OSError:
        return False


def open_namespaces(pid):
    """[(fd, type, name)] of the init's namespaces that are not ours."""
    out = []
    for name, kind in NAMESPACES:
        path = "/proc/%d/ns/%s" % (pid, name)
        try:
            if os.stat(path).st_ino == os.stat("/proc/self/ns/" + name).st_ino:
                continue
            out.append((os.open(path, os.O_RDONLY | os.O_CLOEXEC), kind, name))
        except OSError as err:
            for fd, _, _ in out:
                os.close(fd)
            raise PodError("unable to open %s: %s" % (path, err.strerror))
    return out


def join(namespaces, pid):
    for fd, kind, name in namespaces:
        try:
            native.setns(fd, kind, "the %s namespace of pid %d" % (name, pid))
        finally:
            os.close(fd)


def launch_for(poddir, spec, command, pid):
    """The spawn.Launch of the command: the app's, with argv replaced."""
    app = plan.plan_app(spec, poddir, 0)
    launch = app.make_launch(command)
    launch.options["fd_map"] = [0, 1, 2]
    if _is_isolated(pid):
        iso = decide.for_enter(spec, poddir)
        iso.isolate_launch(iso.apps[spec.name], launch)
    return launch


def run(poddir, name, command, pid=None, verbose=False):
    log = Log(verbose)
    sigfd, mask, ignored = native.take_signals()
    try:
        pid = poddir.find_init() if pid is None else pid
        launch = launch_for(poddir, _app_spec(poddir, name), command, pid)
        join(open_namespaces(pid), pid)
    except (OSError, ValueError) as err:      # PodError, ManifestError are ValueErrors
        log.warn("enter: %s" % (err.strerror if isinstance(err, OSError) and err.strerror
                                else err))
        return EXIT_FAILURE
    loop = Loop()
    sup = Supervisor(loop, sigfd, spawn.SignalState(mask, ignored), log, policy=ON_ANY,
                     forward_all=True, tty_fd=init.terminal_fd())
    sup.add(App(os.path.basename(command[0]), launch))
    return sup.run()
