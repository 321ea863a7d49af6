"""`stage1 run`: the init stub of a pod.

Two phases, so that bad input never leaves half a pod: `plan` reads and
validates the manifest, every annotation, user and group before anything
starts, and turns each app into a supervisor.App; `run` then becomes the
init, writes the pid file and hands the apps to the Supervisor.
"""
import os
import time

from stage1 import init, manifest, native, spawn, users
from stage1.loop import Loop
from stage1.pod import PodError
from stage1.status import StatusWriter, rfc3339, write_json
from stage1.supervisor import (App, Log, Supervisor, EXIT_POLICIES, ON_ANY_FAILURE,
                               RESTART_POLICIES)

EXIT_FAILURE = 254
POD_ANNOTATIONS = ("stage1/exit-policy", "stage1/restart-backoff",
                   "stage1/restart-backoff-max", "stage1/stop-timeout")
APP_ANNOTATIONS = ("stage1/restart-policy", "stage1/stop-signal", "stage1/stop-timeout",
                   "stage1/notify", "stage1/after", "stage1/init", "stage1/log",
                   "stage1/log-max-bytes", "stage1/log-keep")
LOG_MODES = ("inherit", "prefix", "file", "null")
# rkt's attach annotations (coreos.com/rkt/stage2/stdout) in stage1's terms.
RKT_LOG_MODES = {"null": "null", "log": "file", "stream": "prefix", "tty": "inherit",
                 "interactive": "inherit"}
NOTIFY_SOCKET_NAME = "notify.sock"


class Options:
    """What the command line asked of the pod."""

    def __init__(self, grace=None, verbose=False, interactive=False, mutable=False, flags=(),
                 isolate=None):
        self.grace = grace
        self.verbose = verbose
        self.interactive = interactive
        self.mutable = mutable
        self.flags = dict(flags)   # every rkt run flag as given, for the debug log
        self.isolate = isolate     # --isolate / --no-isolate; None: when app roots exist


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

    _image_notify(spec, poddir)
    features = app_features(spec, at)
    if features["notify"] == "systemd":
        env["NOTIFY_SOCKET"] = os.path.join(poddir.path, NOTIFY_SOCKET_NAME)
    app = App(spec.name, launch(spec.exec), restart=restart, stop_signal=stop_signal,
              pre_start=spec.event_handlers.get("pre-start"),
              post_stop=spec.event_handlers.get("post-stop"), annotations=spec.annotations,
              grace=features["grace"], after=features["after"], is_init=features["init"],
              notify=features["notify"])
    app.log_mode = features["log"]
    app.log_limits = features["log_limits"]
    app.spec = spec
    app.make_launch = launch
    return app


SUPPORTS_NOTIFY = "appc.io/executor/supports-systemd-notify"


def _image_notify(spec, poddir):
    """appc's notify annotation lives in the image manifest, and rkt puts
    an app section in every RuntimeApp, so the image's annotations are not
    merged in: look in the image manifest for this one, when there is one."""
    a = spec.annotations
    if "stage1/notify" in a or SUPPORTS_NOTIFY in a:
        return
    path = os.path.join(poddir.app_dir(spec.name), "manifest")
    if not os.path.exists(path):
        return
    try:
        _, image_annotations, _ = poddir.image_app(spec.name)
    except ValueError:
        return      # an unreadable image manifest says nothing about notify
    if image_annotations.get(SUPPORTS_NOTIFY) == "true":
        a[SUPPORTS_NOTIFY] = "true"


def _int(value, where, low, high):
    if not value.isdigit() or not low <= int(value) <= high:
        raise manifest.ManifestError("pod", where, "must be a whole number from %d to %d, not %r"
                                     % (low, high, value))
    return int(value)


def app_features(spec, at):
    """Readiness, order, logs and grace from the app's annotations."""
    a = spec.annotations
    notify = a.get("stage1/notify")
    if notify is None and a.get("appc.io/executor/supports-systemd-notify") == "true":
        notify = "systemd"
    if notify is not None and notify != "systemd":
        if not notify.startswith("fd:"):
            raise manifest.ManifestError("pod", at("stage1/notify"),
                                         "must be \"systemd\" or \"fd:N\", not %r" % notify)
        notify = _int(notify[3:], at("stage1/notify"), 3, 63)
    after = [n.strip() for n in a.get("stage1/after", "").split(",") if n.strip()]
    init = a.get("stage1/init", "false")
    if init not in ("true", "false"):
        raise manifest.ManifestError("pod", at("stage1/init"), "must be true or false, not %r" % init)
    log = a.get("stage1/log")
    if log is None:
        log = RKT_LOG_MODES.get(a.get("coreos.com/rkt/stage2/stdout", "tty"), "inherit")
    if log not in LOG_MODES:
        raise manifest.ManifestError("pod", at("stage1/log"), "must be one of %s, not %r"
                                     % (", ".join(LOG_MODES), log))
    limits = (_int(a.get("stage1/log-max-bytes", str(10 << 20)), at("stage1/log-max-bytes"),
                   1024, 1 << 40),
              _int(a.get("stage1/log-keep", "3"), at("stage1/log-keep"), 0, 100))
    grace = None
    if "stage1/stop-timeout" in a:
        grace = _seconds(a["stage1/stop-timeout"], at("stage1/stop-timeout"))
    return {"notify": notify, "after": after, "init": init == "true", "log": log,
            "log_limits": limits, "grace": grace}


def check_order(apps, known=()):
    """Every `stage1/after` name exists and there is no cycle."""
    from stage1 import order
    names = {a.name for a in apps} | set(known)
    for app in apps:
        for dep in app.after:
            if dep not in names:
                raise manifest.ManifestError("pod", 'apps[%d].annotations["stage1/after"]'
                                             % app.spec.index, "no app named %r" % dep)
    cycle = order.find_cycle({a.name: a.after for a in apps})
    if cycle:
        raise manifest.ManifestError("pod", "annotations", "stage1/after makes a cycle: %s"
                                     % " -> ".join(cycle))


def plan(poddir, opts, stdin_fd):
    """Everything validated, nothing started: a Plan, or ManifestError/PodError."""
    pod = manifest.parse_pod(poddir.read_manifest(), "pod", image_apps=poddir.image_app)
    if not pod.apps and not opts.mutable:
        raise manifest.ManifestError("pod", "apps", "the pod has no apps")
    policy, backoff, grace = pod_settings(pod, opts)
    from stage1 import isolate
    isolation = isolate.check(pod, poddir, opts)     # app roots first: users live there
    apps = [plan_app(spec, poddir, stdin_fd) for spec in pod.apps]
    check_order(apps)
    opts.mutable = opts.mutable or pod.annotations.get("coreos.com/rkt/stage1/mutable") == "true"
    the_plan = Plan(pod, apps, policy, backoff, grace, isolation.unapplied)
    the_plan.stdin_fd = stdin_fd
    the_plan.isolation = isolation
    return the_plan


def report_unapplied(plan, log):
    """appc: an executor must tell the user of isolators it does not apply."""
    seen = set()
    for name, where, why in plan.unapplied:
        if name not in seen:
            seen.add(name)
            log.warn("%s (%s) is not applied: %s" % (name, where, why))


class PodStatus:
    """POD/pod-status.json, written when the pod's state changes."""

    def __init__(self, poddir, sup, log, pid=None):
        self.poddir, self.sup, self.log = poddir, sup, log
        self.pid = pid or os.getpid()      # an isolated init is 1 to itself
        self.state = None
        self.started_at = time.time()
        self.failed = False

    def __call__(self):
        sup = self.sup
        state = "exited" if sup.done else "stopping" if sup.stopping else "running"
        if (state, list(sup.apps)) == self.state:
            return       # `app add` and `app rm` change the list of apps
        self.state = (state, list(sup.apps))
        doc = {"state": state, "exitCode": sup.exit_code if sup.done else None,
               "pid": self.pid, "startedAt": rfc3339(self.started_at),
               "finishedAt": rfc3339(time.time()) if sup.done else None,
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
    if the_plan.isolation.isolated:
        from stage1 import isolate
        return isolate.run(the_plan, poddir, opts, log, supervise, _keep_lock_fd)
    sigfd, signals = init.become_init()
    _keep_lock_fd(log)
    init.set_title("stage1 run: %s" % os.path.basename(poddir.path))
    try:
        poddir.write_pids(os.getpid(), os.getppid())
    except OSError as err:
        log.warn("unable to write %s: %s" % (poddir.pid_path, err.strerror))
        return EXIT_FAILURE
    return supervise(the_plan, poddir, opts, log, sigfd, signals)


def supervise(the_plan, poddir, opts, log, sigfd, signals, pid=None, before_start=None):
    from stage1.runtime import LivePod
    loop = Loop()
    status = StatusWriter(poddir.status_dir, log.warn)
    sup = Supervisor(loop, sigfd, signals, log, grace=the_plan.grace, policy=the_plan.policy,
                     tty_fd=init.terminal_fd() if opts.interactive else -1,
                     pgid_mode=native.PGID_NEW_GROUP if opts.interactive else native.PGID_NEW_SESSION,
                     status=status, backoff=the_plan.backoff,
                     hook_launch=lambda app, argv: app.make_launch(argv))
    sup.mutable = opts.mutable
    sup.on_change = PodStatus(poddir, sup, log, pid)
    live = LivePod(poddir, loop, sup, log,
                   lambda name, runtime_app: add_app(poddir, sup, name, runtime_app,
                                                     the_plan.stdin_fd, the_plan.isolation))
    for app in the_plan.apps:
        sup.add(app)
        status.app(app)
    sup.on_change()
    if before_start is not None:
        before_start()
    code = sup.run()
    live.close()
    return code


def add_app(poddir, sup, name, runtime_app, stdin_fd, isolation=None):
    """stage1 app add: the app from POD/pod (rewritten by whoever adds it) or
    from one RuntimeApp given with the request; validated like the pod."""
    if runtime_app is None:
        pod = manifest.parse_pod(poddir.read_manifest(), "pod", image_apps=poddir.image_app)
        specs = [a for a in pod.apps if a.name == name]
        if not specs:
            raise PodError("no app %r in %s" % (name, poddir.manifest_path))
        spec = specs[0]
    else:
        reader = manifest._Reader("app add")
        spec = manifest.parse_runtime_app(reader, runtime_app, "runtimeApp", poddir.image_app)
        if spec.name != name:
            raise PodError("app add: runtimeApp.name: %r does not match --app %r"
                           % (spec.name, name))
        spec.index = len(sup.apps)
    app = plan_app(spec, poddir, stdin_fd)
    if app.is_init:
        raise manifest.ManifestError("app add", '%s.annotations["stage1/init"]' % name,
                                     "init apps run before the others: not in a running pod")
    check_order([app], known=sup.apps)
    # The pod's apps may come after an app removed earlier and added again.
    from stage1 import order
    graph = {n: other.after for n, other in sup.apps.items()}
    graph[app.name] = app.after
    cycle = order.find_cycle(graph)
    if cycle:
        raise manifest.ManifestError("pod", "annotations", "stage1/after makes a cycle: %s"
                                     % " -> ".join(cycle))
    if isolation is not None and isolation.isolated:
        isolation.add_app(app, manifest.parse_pod(poddir.read_manifest(), "pod",
                                                  image_apps=poddir.image_app))
    return app
