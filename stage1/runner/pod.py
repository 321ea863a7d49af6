"""`stage1 run`: the init stub of a pod, from the manifest to the exit code.

The steps, in order, so that bad input never leaves half a pod:

  1. plan      read and validate the manifest (pod/manifest.py), decide the
               isolation (isolation/decide.py: app roots first, since users
               are looked up in them), plan every app (pod/plan.py).
               Nothing has started; any error is one line and 254.
  2. become    an init: take the signals, keep rkt's lock fd, set the title.
               Isolated pods fork here (isolation/host.py): the host side
               waits and passes signals on, the child becomes PID 1 of the
               pod's namespaces and prepares the app roots.
  3. supervise the apps, with the live pod around them (live/runtime.py),
               until the pod ends.
"""
import gc
import os
import sys
import time

from stage1.engine import init, native, spawn
from stage1.engine.loop import Loop
from stage1.engine.status import StatusWriter, remove_stale, rfc3339, write_json
from stage1.engine.supervisor import Log, Supervisor
from stage1.isolation import decide, host
from stage1.live.runtime import LivePod
from stage1.pod import manifest, plan
from stage1.pod.errors import ManifestError, PodError

EXIT_FAILURE = 254


def run(poddir, opts):
    # Planning and starting a pod of a thousand apps makes some hundred
    # thousand objects and no garbage: the collector would only walk them,
    # over and over, while the apps wait.  It comes back once they run.
    gc.disable()
    log = Log(opts.verbose)
    for flag, value in opts.flags.items():
        log.debug("run flag %s=%s accepted" % (flag, value))
    stdin_fd = 0 if opts.interactive else os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    try:
        the_plan = make_plan(poddir, opts, stdin_fd)
    except (ManifestError, PodError) as err:
        log.warn(str(err))
        return EXIT_FAILURE
    report_unapplied(the_plan, log)
    remove_stale(poddir.path)       # what a writer killed half-way left (status dir: StatusWriter)
    if the_plan.isolation.isolated:
        return run_isolated(the_plan, poddir, opts, log)
    sigfd, signals = init.become_init()
    _raise_nofile(signals, log)
    _keep_lock_fd(log)
    init.set_title("stage1 run: %s" % os.path.basename(poddir.path))
    try:
        poddir.write_pids(os.getpid(), os.getppid())
    except OSError as err:
        log.warn("unable to write %s: %s" % (poddir.pid_path, err.strerror))
        return EXIT_FAILURE
    return _exit(supervise(the_plan, poddir, opts, log, sigfd, signals))


def _exit(code):
    """The pod has ended and everything is written: the init exits now.
    The interpreter's teardown of every app's objects (30 ms for 1600
    apps) would only delay the exit the pod's caller waits for; an
    isolated pod's init leaves the same way (host.in_child)."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


def make_plan(poddir, opts, stdin_fd):
    """Everything validated, nothing started: a Plan, or ManifestError/PodError."""
    pod = plan.read_pod(poddir, opts)
    isolation = decide.check(pod, poddir, opts)     # app roots first: users live there
    the_plan = plan.make(pod, poddir, opts, stdin_fd)
    the_plan.isolation = isolation
    the_plan.unapplied = isolation.unapplied
    return the_plan


def report_unapplied(the_plan, log):
    """appc: an executor must tell the user of isolators it does not apply."""
    seen = set()
    for name, where, why in the_plan.unapplied:
        if name not in seen:
            seen.add(name)
            log.warn("%s (%s) is not applied: %s" % (name, where, why))


def _raise_nofile(signals, log):
    """The init of a pod holds pipes for every logged app (two read ends
    each) and sockets besides: its soft limit on open files goes up to
    the hard one, as systemd raises its own, and every app gets the limit
    the init was given (SignalState.rlimits), not the raised one."""
    import resource
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft < hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            signals.rlimits = ((resource.RLIMIT_NOFILE, soft, hard),)
    except (OSError, ValueError) as err:
        log.debug("open-files limit left as it is: %s" % err)


def _keep_lock_fd(log):
    """rkt's RKT_LOCK_FD stays open (and locked) in the init, never in apps."""
    fd = os.environ.get("RKT_LOCK_FD")
    if fd is None:
        return
    try:
        os.set_inheritable(int(fd), False)
    except (ValueError, OSError) as err:
        log.warn("RKT_LOCK_FD=%s is not an open fd: %s" % (fd, err))


# -- an isolated pod -------------------------------------------------------------

def run_isolated(the_plan, poddir, opts, log):
    """The host side; the child becomes the pod's PID 1 (pod_init)."""
    iso = the_plan.isolation
    sigfd, mask, ignored = native.take_signals()
    signals = spawn.SignalState(mask, ignored)
    _raise_nofile(signals, log)
    _keep_lock_fd(log)
    init.set_title("stage1 run: %s" % os.path.basename(poddir.path))
    forked = host.fork_pod(iso, log)
    if forked is None:
        return EXIT_FAILURE
    pid, ready_fd = forked
    if pid == 0:
        host.in_child(lambda: pod_init(the_plan, poddir, opts, ready_fd, sigfd, signals))
    gc.enable()
    written = host.record(poddir, pid, ready_fd, log)
    code = host.wait_passing_signals(sigfd, pid)
    iso.remove_cgroups(log)
    return code if written else EXIT_FAILURE


def pod_init(the_plan, poddir, opts, ready_fd, parent_sigfd, signals):
    """PID 1 of the pod: namespaces, roots, then the Supervisor."""
    log = Log(opts.verbose)
    init.set_title("stage1 init: %s" % os.path.basename(poddir.path))
    iso = the_plan.isolation
    iso.log = log
    for app in the_plan.apps:
        iso.bind(app)
    try:
        sigfd, host_pid = host.become_pod_init(iso, ready_fd, parent_sigfd, opts.interactive)
    except (OSError, PodError) as err:
        log.warn(decide.error_text(err))
        return EXIT_FAILURE
    if host_pid is None:
        return EXIT_FAILURE
    return supervise(the_plan, poddir, opts, log, sigfd, signals, pid=host_pid,
                     before_start=iso.bind_notify_socket)


# -- the pod's life ------------------------------------------------------------------

class PodStatus:
    """POD/pod-status.json, written when the pod's state or its list of apps
    changes.  The Supervisor calls it (on_change) on those pod events only,
    never on an app's transition; it notes them and writes the file once
    at the end of the loop turn (flush), so that a hundred `app add`s in a
    turn cost one file, not a hundred lists of every app."""

    def __init__(self, poddir, sup, log, pid=None):
        self.poddir, self.sup, self.log = poddir, sup, log
        self.isolated = pid is not None    # the apps' pids are the pod namespace's
        self.pid = pid or os.getpid()      # an isolated init is 1 to itself
        self.state = None
        self.dirty = True
        self.started_at = time.time()
        self.failed = False

    def __call__(self):
        self.dirty = True

    def flush(self, final=False):
        if not self.dirty:
            return False
        self.dirty = False
        sup = self.sup
        state = "exited" if sup.done else "stopping" if sup.stopping else "running"
        if (state, list(sup.apps)) == self.state:
            return
        self.state = (state, list(sup.apps))
        doc = {"state": state, "exitCode": sup.exit_code if sup.done else None,
               "pid": self.pid, "startedAt": rfc3339(self.started_at),
               "finishedAt": rfc3339(time.time()) if sup.done else None,
               "apps": list(sup.apps), "isolated": self.isolated}
        try:
            write_json(self.poddir.status_path, doc)
        except OSError as err:
            if not self.failed:
                self.failed = True
                self.log.warn("unable to write %s: %s" % (self.poddir.status_path, err.strerror))


def supervise(the_plan, poddir, opts, log, sigfd, signals, pid=None, before_start=None):
    loop = Loop()
    status = StatusWriter(poddir.status_dir, log.warn)
    sup = Supervisor(loop, sigfd, signals, log, grace=the_plan.grace, policy=the_plan.policy,
                     tty_fd=init.terminal_fd() if opts.interactive else -1,
                     pgid_mode=native.PGID_NEW_GROUP if opts.interactive else native.PGID_NEW_SESSION,
                     status=status, backoff=the_plan.backoff,
                     hook_launch=lambda app, argv: app.make_launch(argv))
    sup.mutable = opts.mutable
    sup.report = True
    pod_status = sup.on_change = PodStatus(poddir, sup, log, pid)
    loop.before_wait.append(pod_status.flush)      # after the apps' status files
    live = LivePod(poddir, loop, sup, log,
                   lambda name, runtime_app: add_app(poddir, sup, name, runtime_app,
                                                     the_plan.stdin_fd, the_plan.isolation))
    for app in the_plan.apps:
        sup.add(app)
        status.app(app)
        app.spec = None          # planned and isolated: what it says is in the app now
    the_plan.pod = None
    pod_status.flush()
    if before_start is not None:
        before_start()
    # The init has its namespaces: from here on its children are the
    # spawner thread's, each found by its pidfd when it ends (children.c).
    if not native.track_children():
        log.debug("no spawner thread: every end is found by a walk of all children")
    loop.call_later(0, _started)        # the loop's first turn: every app has started
    code = sup.run()
    live.close()
    return code


def _started():
    """What the plan and the start made lives as long as the pod: frozen,
    it is out of every later collection (a turn's garbage is collected
    without walking a thousand apps), and the collector is on again."""
    gc.freeze()
    gc.enable()


def add_app(poddir, sup, name, runtime_app, stdin_fd, isolation=None):
    """stage1 app add: the app validated like the pod, planned, and (in an
    isolated pod) given its root, cgroups and limits."""
    spec = plan.added_spec(poddir, name, runtime_app, len(sup.apps))
    if spec.is_init:
        raise ManifestError("app add", '%s.annotations["stage1/init"]' % name,
                            "init apps run before the others: not in a running pod")
    # The pod's apps may come after an app removed earlier and added again.
    manifest.check_order([spec], known={n: other.after + other.after_started +
                                        other.after_completed for n, other in sup.apps.items()})
    app = plan.plan_app(spec, poddir, stdin_fd)
    if isolation is not None and isolation.isolated:
        isolation.add_app(app, manifest.parse_pod(poddir.read_manifest(), "pod", images=poddir))
    app.spec = None
    return app
