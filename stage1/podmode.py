"""`stage1 run`: the init stub of a pod.

Two phases, so that bad input never leaves half a pod: `plan` reads and
validates the manifest, every annotation, user and group before anything
starts, and turns each app into a supervisor.App; `run` then becomes the
init, writes the pid file and hands the apps to the Supervisor.
"""
import os

from stage1 import init, manifest, native, spawn, users
from stage1.loop import Loop
from stage1.pod import PodError
from stage1.status import StatusWriter, rfc3339, write_json
from stage1.supervisor import (App, Log, Supervisor, EXIT_POLICIES, ON_ANY_FAILURE,
                               RESTART_POLICIES)

EXIT_FAILURE = 254
POD_ANNOTATIONS = ("stage1/exit-policy", "stage1/restart-backoff",
                   "stage1/restart-backoff-max", "stage1/stop-timeout")
APP_ANNOTATIONS = ("stage1/restart-policy", "stage1/stop-signal")


class Options:
    """What the command line asked of the pod."""

    def __init__(self, grace=None, verbose=False, interactive=False, mutable=False, flags=()):
        self.grace = grace
        self.verbose = verbose
        self.interactive = interactive
        self.mutable = mutable
        self.flags = dict(flags)   # every rkt run flag as given, for the debug log


class Plan:
    """A validated pod, ready to start."""

    def __init__(self, pod, apps, policy, backoff, grace, unapplied):
        self.pod, self.apps = pod, apps
        self.policy, self.backoff, self.grace = policy, backoff, grace
        self.unapplied = unapplied


def _seconds(value, where, positive=False):
    try:
        number = float(value)
    except ValueError:
        number = -1.0
    if not (number > 0 if positive else number >= 0) or number == float("inf"):
        raise manifest.ManifestError("pod", where, "must be a number of seconds%s, not %r"
                                     % (" > 0" if positive else " >= 0", value))
    return number


def _annotations(annotations, allowed, where):
    for name in annotations:
        if name.startswith("stage1/") and name not in allowed:
            raise manifest.ManifestError("pod", '%s["%s"]' % (where, name),
                                         "unknown stage1 annotation")
    return lambda name: '%s["%s"]' % (where, name)


def pod_settings(pod, opts):
    """(exit policy, (backoff base, cap), grace) from the pod's annotations."""
    a = pod.annotations
    at = _annotations(a, POD_ANNOTATIONS, "annotations")
    policy = a.get("stage1/exit-policy", ON_ANY_FAILURE)
    if policy not in EXIT_POLICIES:
        raise manifest.ManifestError("pod", at("stage1/exit-policy"), "must be one of %s, not %r"
                                     % (", ".join(EXIT_POLICIES), policy))
    base = _seconds(a.get("stage1/restart-backoff", "10"), at("stage1/restart-backoff"), True)
    cap = _seconds(a.get("stage1/restart-backoff-max", "300"),
                   at("stage1/restart-backoff-max"), True)
    if "stage1/stop-timeout" in a:
        grace = _seconds(a["stage1/stop-timeout"], at("stage1/stop-timeout"))
    else:
        grace = 10.0 if opts.grace is None else opts.grace
    return policy, (base, max(base, cap)), grace


def app_environment(spec):
    env = {"PATH": spawn.DEFAULT_PATH}
    env.update(spec.environment)
    env["AC_APP_NAME"] = spec.name
    env["container"] = "stage1"
    return env


def plan_app(spec, poddir, stdin_fd):
    """One validated app -> a supervisor.App (credentials resolved)."""
    where = "apps[%d]" % spec.index
    at = _annotations(spec.annotations, APP_ANNOTATIONS, where + ".annotations")
    restart = spec.annotations.get("stage1/restart-policy", "never")
    if restart not in RESTART_POLICIES:
        raise manifest.ManifestError("pod", at("stage1/restart-policy"), "must be one of %s, not %r"
                                     % (", ".join(RESTART_POLICIES), restart))
    try:
        stop_signal = native.signal_number(spec.annotations.get("stage1/stop-signal", "SIGTERM"))
    except ValueError as err:
        raise manifest.ManifestError("pod", at("stage1/stop-signal"), str(err))
    root = poddir.app_root(spec.name)
    root = root if os.path.isdir(root) else "/"
    ids = {}
    for key, table in (("user", "passwd"), ("group", "group")):
        try:
            ids[key] = users.resolve(getattr(spec, key), root, table)
        except users.UserError as err:
            raise manifest.ManifestError("pod", "%s.app.%s" % (where, key), str(err))
    env = app_environment(spec)

    def launch(argv):
        uid, gid, groups = ids["user"], ids["group"], list(spec.supplementary_gids)
        if os.geteuid() != 0 and uid == os.geteuid() and gid == os.getegid() and not groups:
            uid = gid = -1     # unprivileged supervision: nothing to change
            groups = None
        return spawn.Launch(argv, spawn.env_list(env), path=env["PATH"],
                            cwd=spec.working_directory, uid=uid, gid=gid, groups=groups,
                            fd_map=[stdin_fd, 1, 2], close_fds=True)

    app = App(spec.name, launch(spec.exec), restart=restart, stop_signal=stop_signal,
              pre_start=spec.event_handlers.get("pre-start"),
              post_stop=spec.event_handlers.get("post-stop"), annotations=spec.annotations)
    app.spec = spec
    app.make_launch = launch
    return app


def plan(poddir, opts, stdin_fd):
    """Everything validated, nothing started: a Plan, or ManifestError/PodError."""
    pod = manifest.parse_pod(poddir.read_manifest(), "pod", image_apps=poddir.image_app)
    if not pod.apps and not opts.mutable:
        raise manifest.ManifestError("pod", "apps", "the pod has no apps")
    policy, backoff, grace = pod_settings(pod, opts)
    apps = [plan_app(spec, poddir, stdin_fd) for spec in pod.apps]
    unapplied = [(name, where) for name, _, where in pod.isolators]
    for spec in pod.apps:
        unapplied.extend((name, where) for name, _, where in spec.isolators)
        if spec.mounts or spec.mount_points:
            unapplied.append(("mounts", "apps[%d].mounts" % spec.index))
        if spec.read_only_rootfs:
            unapplied.append(("readOnlyRootFS", "apps[%d].readOnlyRootFS" % spec.index))
    return Plan(pod, apps, policy, backoff, grace, unapplied)


def report_unapplied(plan, log):
    """appc: an executor must tell the user of isolators it does not apply."""
    seen = set()
    for name, where in plan.unapplied:
        if name not in seen:
            seen.add(name)
            log.warn("%s (%s) is not applied: this pod runs without isolation" % (name, where))


class PodStatus:
    """POD/pod-status.json, written when the pod's state changes."""

    def __init__(self, poddir, sup, log):
        self.poddir, self.sup, self.log = poddir, sup, log
        self.state = None
        self.started_at = __import__("time").time()
        self.failed = False

    def __call__(self):
        sup = self.sup
        state = "exited" if sup.done else "stopping" if sup.stopping else "running"
        if state == self.state:
            return
        self.state = state
        doc = {"state": state, "exitCode": sup.exit_code if sup.done else None,
               "pid": os.getpid(), "startedAt": rfc3339(self.started_at),
               "finishedAt": rfc3339(__import__("time").time()) if sup.done else None,
               "apps": list(sup.apps)}
        try:
            write_json(self.poddir.status_path, doc)
        except OSError as err:
            if not self.failed:
                self.failed = True
                self.log.warn("unable to write %s: %s" % (self.poddir.status_path, err.strerror))


def _keep_lock_fd(log):
    """rkt's RKT_LOCK_FD stays open (and locked) in the init, never in apps."""
    fd = os.environ.get("RKT_LOCK_FD")
    if fd is None:
        return
    try:
        os.set_inheritable(int(fd), False)
    except (ValueError, OSError) as err:
        log.warn("RKT_LOCK_FD=%s is not an open fd: %s" % (fd, err))


def run(poddir, opts):
    log = Log(opts.verbose)
    for flag, value in opts.flags.items():
        log.debug("run flag %s=%s accepted" % (flag, value))
    stdin_fd = 0 if opts.interactive else os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    try:
        the_plan = plan(poddir, opts, stdin_fd)
    except (manifest.ManifestError, PodError) as err:
        log.warn(str(err))
        return EXIT_FAILURE
    report_unapplied(the_plan, log)
    sigfd, signals = init.become_init()
    _keep_lock_fd(log)
    init.set_title("stage1 run: %s" % os.path.basename(poddir.path))
    try:
        poddir.write_pids(os.getpid(), os.getppid())
    except OSError as err:
        log.warn("unable to write %s: %s" % (poddir.pid_path, err.strerror))
        return EXIT_FAILURE
    return supervise(the_plan, poddir, opts, log, sigfd, signals)


def supervise(the_plan, poddir, opts, log, sigfd, signals):
    loop = Loop()
    status = StatusWriter(poddir.status_dir, log.warn)
    sup = Supervisor(loop, sigfd, signals, log, grace=the_plan.grace, policy=the_plan.policy,
                     tty_fd=init.terminal_fd() if opts.interactive else -1,
                     pgid_mode=native.PGID_NEW_GROUP if opts.interactive else native.PGID_NEW_SESSION,
                     status=status, backoff=the_plan.backoff,
                     hook_launch=lambda app, argv: app.make_launch(argv))
    sup.mutable = opts.mutable
    sup.on_change = PodStatus(poddir, sup, log)
    for app in the_plan.apps:
        sup.add(app)
        status.app(app)
    sup.on_change()
    sup.start_all()
    if not sup.done:
        loop.run()
    return sup.exit_code
