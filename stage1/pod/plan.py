"""A validated pod -> the apps the Supervisor runs: the plan decides.

Every field was validated where the manifest was parsed (manifest.py);
here each AppSpec becomes a supervisor.App: its user and group resolved in
its root, its environment, its launch (argv, credentials, cwd, fds), and
the pod's exit policy, back-off and grace taken from the spec or the
command line.  Nothing starts here.
"""
import os

from stage1.engine import spawn
from stage1.engine.supervisor import App
from stage1.pod import manifest, users
from stage1.pod.errors import ManifestError, PodError

NOTIFY_SOCKET_NAME = "notify.sock"
# What the init's own environment holds for the init alone (its service
# manager's readiness socket and socket activation): not inherited by apps.
NOT_INHERITED = ("NOTIFY_SOCKET", "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES", "RKT_LOCK_FD")


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

    def __init__(self, pod, apps, policy, backoff, grace, stdin_fd):
        self.pod, self.apps = pod, apps
        self.policy, self.backoff, self.grace = policy, backoff, grace
        self.stdin_fd = stdin_fd
        self.isolation = None      # isolation.plan.PodIsolation, set by the runner
        self.unapplied = []        # (name, where, why) to report once each


def read_pod(poddir, opts):
    """The pod manifest, validated; the pod must have apps unless mutable."""
    pod = manifest.parse_pod(poddir.read_manifest(), "pod", images=poddir)
    opts.mutable = opts.mutable or pod.mutable
    if not pod.apps and not opts.mutable:
        raise ManifestError("pod", "apps", "the pod has no apps")
    return pod


def make(pod, poddir, opts, stdin_fd):
    """Every app planned: a Plan.  Users are looked up in the app roots,
    so the runner checks those first."""
    grace = pod.stop_timeout
    if grace is None:
        grace = 10.0 if opts.grace is None else opts.grace
    looked_up = {}       # apps of one root share their users: one look-up each
    roots = poddir.has_app_dirs()    # none at all: every app runs in "/"
    apps = [plan_app(spec, poddir, stdin_fd, looked_up, roots) for spec in pod.apps]
    return Plan(pod, apps, pod.exit_policy, pod.backoff, grace, stdin_fd)


# One string for what many apps share (PATH=..., container=stage1).
_shared = {}.setdefault


def app_environment(spec):
    """appc's clean environment; with `stage1/environment: inherit` (what a
    pod file asks for, as honcho and foreman do) the init's own under it."""
    env = {"PATH": spawn.DEFAULT_PATH}
    if spec.inherit_environment:
        env.update((k, v) for k, v in os.environ.items() if k not in NOT_INHERITED)
    env.update(spec.environment)
    env["AC_APP_NAME"] = spec.name
    env["container"] = "stage1"
    return env


def plan_app(spec, poddir, stdin_fd, looked_up=None, roots=True):
    """One validated app -> a supervisor.App (credentials resolved).
    looked_up: (value, root, table) -> id, shared by the apps of one plan;
    roots: false when no app has a directory (no root to look for)."""
    root = poddir.app_root(spec.name) if roots else "/"
    root = root if root == "/" or os.path.isdir(root) else "/"
    ids = {}
    looked_up = {} if looked_up is None else looked_up
    for key, table in (("user", "passwd"), ("group", "group")):
        what = (getattr(spec, key), root, table)
        try:
            if what not in looked_up:
                looked_up[what] = users.resolve(what[0], root, table)
            ids[key] = looked_up[what]
        except users.UserError as err:
            raise ManifestError("pod", "apps[%d].app.%s" % (spec.index, key), str(err))
    env = app_environment(spec)
    if spec.notify == "systemd":
        env["NOTIFY_SOCKET"] = os.path.join(poddir.path, NOTIFY_SOCKET_NAME)
    # What every launch of the app needs, and no more: the closure lives as
    # long as the app (its hooks' launches), the spec need not.
    env_list = [_shared(e, e) for e in spawn.env_list(env)]
    path, cwd = env["PATH"], spec.working_directory
    uid, gid, groups = ids["user"], ids["group"], list(spec.supplementary_gids)
    if os.geteuid() != 0 and uid == os.geteuid() and gid == os.getegid() and not groups:
        uid = gid = -1     # unprivileged supervision: nothing to change
        groups = None

    def launch(argv):
        return spawn.Launch(argv, env_list, path=path, cwd=cwd, uid=uid, gid=gid,
                            groups=None if groups is None else list(groups),
                            fd_map=[stdin_fd, 1, 2], close_fds=True)

    app = App(spec.name, launch(spec.exec), restart=spec.restart, stop_signal=spec.stop_signal,
              pre_start=spec.event_handlers.get("pre-start"),
              post_stop=spec.event_handlers.get("post-stop"), annotations=spec.annotations,
              grace=spec.stop_timeout, after=spec.after, is_init=spec.is_init,
              notify=spec.notify)
    app.log_mode = spec.log_mode
    app.log_limits = spec.log_limits
    app.log_copy = spec.log_copy
    app.after_started = list(spec.after_started)
    app.after_completed = list(spec.after_completed)
    app.health_check = spec.health
    app.signal_group = spec.signal_group
    app.spec = spec
    app.make_launch = launch
    return app


def added_spec(poddir, name, runtime_app, index):
    """The spec of an app `stage1 app add` adds: from POD/pod (rewritten by
    whoever adds it, as rkt does) or from one RuntimeApp given with the
    request; validated like the pod."""
    if runtime_app is None:
        pod = manifest.parse_pod(poddir.read_manifest(), "pod", images=poddir)
        specs = [a for a in pod.apps if a.name == name]
        if not specs:
            raise PodError("no app %r in %s" % (name, poddir.manifest_path))
        return specs[0]
    manifest.check_strings(runtime_app, "app add", "runtimeApp")
    reader = manifest._Reader("app add")
    spec = manifest.parse_runtime_app(reader, runtime_app, "runtimeApp", poddir)
    if spec.name != name:
        raise PodError("app add: runtimeApp.name: %r does not match --app %r" % (spec.name, name))
    spec.index = index
    return spec
