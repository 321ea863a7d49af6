"""Apps' state machine, restart and exit policies, and the stop sequence.

Each app moves through an explicit table, `TRANSITIONS[state][event]`, in
the manner of s6-supervise: every (state, event) pair either names a handler
or is written down as doing nothing (`_nothing`).  The Supervisor owns the
apps, turns signals and reaped children into events, and decides when the
pod ends and with which exit code.  It never calls a system call itself:
spawning, killing and reaping go through spawn.py and native.py.

Exec mode (`stage1 exec`) is a pod of one app whose signals are all passed
on; pod mode (`stage1 run`) stops the pod on SIGTERM/SIGINT and passes the
other signals to every running app.

An event costs what it touches, whatever the pod's size (issue 14).  Pod-wide
questions (is every app ready? has every app ended? is the pod over? which
app may start or stop now?) are answered from small indexes kept up to date
as each app changes (`_index`), not by walking every app: a start pass looks
only at the apps waiting for the one that became ready, a stop pass only at
the apps the one that ended comes after, the exit policy only at the apps
that have not exited, and an answer waits (`when`) on the app it is about.
The pod-wide walks left are once per pod event (the pod's stop, its grace
running out, a signal to every app), never once per app event.
"""
import os
import time

from stage1.engine import init, native, spawn
from stage1.engine.loop import monotonic

SIGKILL, SIGTERM, SIGINT, SIGQUIT, SIGCHLD = 9, 15, 2, 3, 17
SPAWN_BATCH = 4096    # spawns a start pass gathers before it hands them over at once,
SPAWN_BATCH_FDS = 64  # or fewer once their pipes' ends (open in the init until the
                      # spawn) come to this many: the init's soft limit is often 1024
REAP_BATCH = 64       # children reaped in one loop turn (pod mode), see _reap;
                      # as many as StatusWriter writes (status.BATCH)
STOP_SIGNALS = (SIGTERM, SIGINT, SIGQUIT)

WAITING, STARTING, RUNNING, STOPPING, EXITED, BACKOFF = (
    "waiting", "starting", "running", "stopping", "exited", "backoff")
ENDED = (WAITING, EXITED)

_NO_RUSAGE = (None, None, None)

ON_ANY, ON_ANY_FAILURE, UNTIL_ALL = "onAny", "onAnyFailure", "untilAll"
EXIT_POLICIES = (ON_ANY, ON_ANY_FAILURE, UNTIL_ALL)
RESTART_POLICIES = ("never", "on-failure", "always")


class Log:
    """`stage1[PID]: ...` lines on stderr; debug ones only with -v."""

    def __init__(self, verbose=False):
        self.verbose = verbose
        self.prefix = "stage1[%d]: " % os.getpid()
        self.gone = False          # stderr's reader has gone (EPIPE): write no more

    def _write(self, msg):
        if self.gone:
            return
        try:
            os.write(2, (self.prefix + msg + "\n").encode(errors="replace"))
        except BrokenPipeError:
            self.gone = True
        except OSError:
            pass

    def debug(self, msg):
        if self.verbose:
            self._write(msg)

    def warn(self, msg):
        self._write(msg)


class App:
    """One app and its last run.  `launch` is a spawn.Launch.

    Slots, not a dict: a pod of 1600 apps saves 2 MiB.  The last five are
    set by the layers above (the plan, isolation, the live pod)."""
    __slots__ = ("name", "after", "is_init", "notify", "status_text", "notify_stopping",
                 "remove_when_ended", "restart_pending", "start_after_hook", "launch",
                 "restart", "stop_signal", "pre_start", "post_stop", "grace", "annotations",
                 "state", "ready", "pid", "hook_pid", "exit_code", "signal_name", "reason",
                 "message", "started_at", "finished_at", "started_mono", "restart_count",
                 "backoff_streak", "rusage", "stop_requested", "killed", "timer", "failed",
                 "after_started", "after_completed", "health_check", "health",
                 "health_message", "health_failures", "unhealthy_stop", "signal_group",
                 "log_mode", "log_limits", "log_copy", "spec", "make_launch", "file_sink")

    def __init__(self, name, launch, restart="never", stop_signal=SIGTERM,
                 pre_start=None, post_stop=None, grace=None, annotations=None,
                 after=(), is_init=False, notify=None):
        self.log_mode, self.log_limits = "inherit", None
        self.spec = self.make_launch = self.file_sink = None
        self.name = name
        self.after = list(after)          # start once these are ready
        self.is_init = is_init            # run to completion before the others
        self.after_started = []           # start once these have started
        self.after_completed = []         # start once these have ended with 0
        self.health_check = None          # its check (a manifest.HealthSpec) makes it ready
        self.health = None                # None (no check), "starting", "healthy", "unhealthy"
        self.health_message = None        # what the last failed check said
        self.health_failures = 0          # failed checks in a row
        self.unhealthy_stop = False       # stopped for failing its checks: restart it
        self.signal_group = False         # signals go to its process group (honcho's way)
        self.notify = notify              # None (ready once started), "systemd" or an fd number
        self.status_text = None           # sd_notify STATUS=
        self.notify_stopping = False      # sd_notify STOPPING=1
        self.remove_when_ended = False
        self.restart_pending = False      # stage1 app restart: start again once ended
        self.start_after_hook = False
        self.launch = launch
        self.restart = restart
        self.stop_signal = stop_signal
        self.pre_start, self.post_stop = pre_start, post_stop
        self.grace = grace
        self.annotations = annotations or {}
        self.state = WAITING
        self.ready = False
        self.pid = None
        self.hook_pid = None
        self.exit_code = None
        self.signal_name = None
        self.reason = None
        self.message = None
        self.started_at = self.finished_at = None
        self.started_mono = None
        self.restart_count = 0
        self.backoff_streak = 0
        self.rusage = _NO_RUSAGE
        self.stop_requested = False
        self.killed = False
        self.failed = None                # (finished_at, code) of a failure that was restarted
        self.timer = None

    @property
    def ended(self):
        return self.state in ENDED and self.hook_pid is None


class Supervisor:
    def __init__(self, loop, sigfd, signals, log, *, grace=10.0, policy=ON_ANY,
                 forward_all=False, group=False, tty_fd=-1, pgid_mode=None,
                 status=None, backoff=(10.0, 300.0), on_change=None, hook_launch=None):
        self.loop = loop
        self.signals = signals
        self.log = log
        self.grace = grace
        self.policy = policy
        self.forward_all = forward_all      # exec mode: everything goes to the app
        self.group = group
        self.tty_fd = tty_fd
        self.pgid_mode = native.PGID_NEW_GROUP if pgid_mode is None else pgid_mode
        self.status = status
        self.backoff = backoff
        self.on_change = on_change or (lambda: None)
        self.on_event = lambda kind, app, fields, when=None: None
        self._held = None       # events held while the pod starts (see start_all)
        self._batch = None      # the spawns a start pass has gathered (_start_pass)
        self._batch_fds = 0     # the fds the init holds open for them
        self.on_ready = lambda: None      # every app ready (rkt's supervisor-status)
        self.prepare = lambda app: {}     # extra spawn options per start (notify fds, logs)
        self.spawned = lambda app, ok: None   # after each spawn, whether it worked
        self.hook_launch = hook_launch or (lambda app, argv: None)
        self.report = False     # pod mode: one line on stderr for each end, restart, verdict
        self.children = {}      # pid -> on_exit(status): other children (exec health checks)
        self.waiters = {}       # app (None: any app) -> [(predicate, callback)]
        self.apps = {}
        self.by_pid = {}
        self.hooks = {}
        # The indexes (see _index); dicts, as ordered sets of apps.
        self._later = {}        # name -> the apps that come after it (any kind of after)
        self._completed = {}    # name -> the apps that start once it has ended with 0
        self._inits = []        # init apps, in manifest order
        self._unended = {}      # apps that have not ended (the pod's stop waits for them)
        self._unready = {}      # apps that keep the pod from being ready
        self._not_exited = {}   # the exit policy judges only these
        self._init_pending = {}   # init apps that have not succeeded yet
        self._startable = {}    # waiting apps a start pass may start (not init, not held)
        self._to_check, self._queued = [], set()   # of those, whose order may now allow it
        self._inits_done = False
        self._witness = None    # an app that was not over at the last policy check
        # Apps looked at by start passes, stop passes and the exit policy:
        # what the tests check to catch a walk of every app per event.
        self.visits = {"start": 0, "stop": 0, "policy": 0}
        self.exit_code = None
        self.running = False
        self.stopping = False
        self.done = False
        self.mutable = False
        self.pod_ready = False
        self._starting = self._start_again = False
        self._ended_later = []
        self._deadline = None
        self._swept = False
        self._pid1 = os.getpid() == 1
        self._refused = set()   # signals from the pod's processes not passed on (logged once)
        # An fd in reserve for the internal-error handler (see run).
        self._reserve = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        self._reap_pending = False     # the last reap left ended children
        self._reaped = False           # a SIGCHLD of this turn took a slice
        loop.add_signals(sigfd, self._on_signals, self._wait_plan)
        if not forward_all:
            loop.before_wait.append(self._reap_more)
        if status is not None:
            loop.before_wait.append(status.flush)

    # -- app lifecycle: the table ------------------------------------------

    def event(self, app, event, *args):
        handler = TRANSITIONS[app.state].get(event)
        if handler is None:
            raise AssertionError("no transition for %s in %s" % (event, app.state))
        if self.log.verbose:
            self.log.debug("%s: %s in %s" % (app.name, event, app.state))
        handler(self, app, *args)

    def _nothing(self, app, *args):
        pass

    def _start(self, app, *args):
        if app.hook_pid is not None:
            # The post-stop handler of the last run is still going: the next
            # run starts when it is done (unless a stop comes first).
            app.start_after_hook = True
            app.stop_requested = False
            self._index(app)
            return
        app.stop_requested = app.killed = False
        if app.pre_start:
            app.started_at = _now()     # the run starts with its pre-start handler
            self._run_hook(app, app.pre_start, "pre-start")
            self._set(app, STARTING)
        else:
            self._exec(app)

    def _prestart_done(self, app, code):
        if app.stop_requested:
            self._finish_failed(app, code, "Stopped", "stopped before it started")
            return
        if code == 0:
            self._exec(app)
            return
        self._finish_failed(app, code, "PreStartFailed",
                            "pre-start handler exited with %d" % code)

    def _exec(self, app):
        """Spawn the app.  In a start pass the request joins the pass's
        batch, spawned with the others in one native call (_spawn_batch)."""
        try:
            options = self.prepare(app)
            if self._batch is not None:
                self._batch.append((app, spawn.request(app.launch, self.signals,
                                                       pgid_mode=self.pgid_mode,
                                                       tty_fd=self.tty_fd, **options)))
                # Not startable while its spawn waits in the batch: a pass
                # that meets it again (queued by another app's start) skips it.
                self._startable.pop(app, None)
                fds = options.get("fd_map")
                if fds:
                    self._batch_fds += len(set(fds).difference(
                        app.launch.options.get("fd_map") or ()))
                return
            pid = spawn.start(app.launch, self.signals, pgid_mode=self.pgid_mode,
                              tty_fd=self.tty_fd, **options)
        except native.SpawnError as err:
            self._exec_failed(app, err)
            return
        self._exec_started(app, pid, _now())

    def _spawn_batch(self):
        """Spawn what the start pass has batched, then take up each app in
        the order they started (a big batch is shared by the spawner's
        threads): every app of the batch is running before the init does
        the bookkeeping of the first (state, indexes, events, readiness)."""
        batch, self._batch = self._batch, []
        self._batch_fds = 0
        if not batch:
            return
        results = native.spawn_each([request for _app, request in batch])
        taken = sorted(zip(batch, results), key=_spawned_at)
        for (app, _request), (pid, outcome) in taken:
            if pid is None:
                self._exec_failed(app, outcome)
            else:
                self._exec_started(app, pid, outcome)

    def _exec_failed(self, app, err):
        self.spawned(app, False)
        code = spawn.spawn_exit_code(err)
        self.log.warn("%s: %s" % (app.name, err))
        self._finish_failed(app, 254 if code is None else code,
                            "StartError" if code is None else "ExecFailed", str(err))

    def _exec_started(self, app, pid, when):
        app.pid = pid
        app.started_at = when
        app.started_mono = monotonic() - (_now() - when)
        app.exit_code = app.signal_name = app.reason = app.message = None
        app.finished_at = None
        app.rusage = _NO_RUSAGE
        app.status_text = None
        app.notify_stopping = False
        app.unhealthy_stop = False
        app.health = None if app.health_check is None else "starting"
        app.health_message, app.health_failures = None, 0
        self.by_pid[app.pid] = app
        if self.log.verbose:
            self.log.debug("%s: started pid %d" % (app.name, app.pid))
        self.spawned(app, True)
        self._set(app, RUNNING)
        self._emit("started", app, when, pid=app.pid)
        if app.notify is None and app.health_check is None:
            self.mark_ready(app, when)     # ready once started
        elif self._later.get(app.name):
            # not ready yet, but started is what `after-started` waits for
            self._queue_later(app)
            self._start_eligible()

    def _finish_failed(self, app, code, reason, message):
        app.pid = None
        app.ready = False
        app.exit_code = code
        app.signal_name = None
        app.reason, app.message = reason, message
        app.started_at = app.started_at if app.state == STARTING else _now()
        app.finished_at = _now()
        self._after_exit(app)

    def _exited(self, app, status, rusage):
        del self.by_pid[app.pid]
        app.ready = False
        app.exit_code = spawn.exit_code(status)
        sig = os.WTERMSIG(status) if os.WIFSIGNALED(status) else None
        app.signal_name = native.signal_name(sig) if sig else None
        app.reason = _reason(app, sig)
        app.message = None
        if app.unhealthy_stop:
            app.message = "stopped after %d failed health checks: %s" % (
                app.health_failures, app.health_message)
        app.finished_at = _now()
        app.rusage = rusage
        if self.log.verbose:
            self.log.debug("%s: pid %d exited %d (%s)" % (app.name, app.pid, app.exit_code, app.reason))
        if app.timer:
            app.timer.cancel()
            app.timer = None
        self._after_exit(app)

    def _after_exit(self, app):
        """Back off and restart, or end for good; post-stop runs either way."""
        self._emit("exited", app, exitCode=app.exit_code, signal=app.signal_name,
                   reason=app.reason, message=app.message)
        if app.exit_code == 0 and not app.stop_requested:
            app.failed = None             # a run that succeeds redeems the failures before it
        if self._should_restart(app):
            if _failed_on_its_own(app):
                # It is restarted, but it failed: a stop of the pod before a
                # run succeeds still exits with this code (the README's
                # "unless an app had failed on its own before").
                app.failed = app.failed or (app.finished_at, app.exit_code)
            delay = self._backoff_delay(app)
            app.restart_count += 1
            app.timer = self.loop.call_later(delay, lambda: self.event(app, "backoff_done"))
            self.log.debug("%s: restarting in %.3gs" % (app.name, delay))
            self._set(app, BACKOFF)
            self._emit("restarting", app, delay=delay, restartCount=app.restart_count)
            self._report_end(app, delay)
        else:
            self._set(app, EXITED)
            self._report_end(app, None)
        if app.post_stop:
            self._run_hook(app, app.post_stop, "post-stop")
        if app.state == EXITED:
            self._ended_for_good(app)

    def _stop(self, app, *args):
        app.stop_requested = True
        self._signal_app(app, app.stop_signal)      # first: the app stops while we write
        self._emit("stopping", app, signal=native.signal_name(app.stop_signal))
        grace = self.grace if app.grace is None else app.grace
        if grace > 0:
            app.timer = self.loop.call_later(grace, lambda: self.event(app, "kill"))
        self._set(app, STOPPING)

    def _stop_waiting(self, app, *args):
        app.stop_requested = True
        self._index(app)
        if app.timer:
            app.timer.cancel()
            app.timer = None
        if app.state == BACKOFF:
            self._set(app, EXITED)
            self._ended_for_good(app)

    def _stop_hook(self, app, *args):
        app.stop_requested = True
        if app.hook_pid is not None:
            native.kill_many([app.hook_pid], SIGKILL)
        # else the handler could not be spawned: its prestart_done (254) is
        # on its way and ends the app as Stopped.

    def _kill(self, app, *args):
        app.timer = None
        app.killed = True
        self.log.debug("%s: grace over, SIGKILL" % app.name)
        self._signal_app(app, SIGKILL)
        if self.forward_all:
            self._kill_everything(SIGKILL)

    def _set(self, app, state):
        app.state = state
        self._index(app)
        self._changed(app)
        self._wake(app)

    def _changed(self, app):
        """Something the app's status files show changed: they are written
        at the end of the loop turn (StatusWriter.flush)."""
        if self.status is not None:
            self.status.app(app)

    def _index(self, app):
        """Keep app's place in the indexes after a change of its state,
        readiness, hook or hold.  Called wherever one of those changes, so
        that each pod-wide question is a look at a small dict."""
        if self.apps.get(app.name) is not app:       # removed: in none
            for index in (self._unended, self._unready, self._not_exited,
                          self._init_pending, self._startable):
                index.pop(app, None)
            return
        _put(self._unended, app, not app.ended)
        # An init app, or one others start after once it has completed, is
        # done (ready, for the pod) once it has ended with 0.
        done = (app.is_init or bool(self._completed.get(app.name))) and \
            app.exit_code == 0 and app.state == EXITED
        _put(self._unready, app, not (app.ready or done))
        _put(self._not_exited, app, app.state != EXITED)
        _put(self._init_pending, app, app.is_init and not done)
        _put(self._startable, app, app.state == WAITING and not app.stop_requested
             and not app.is_init)

    def when(self, predicate, callback, app=None):
        """Call callback() once predicate() holds.  It is checked after each
        transition of `app` (its state, readiness, hook, removal) and when
        the pod starts or ends its stop; with no app, after every
        transition of any app."""
        if predicate():
            callback()
        else:
            self.waiters.setdefault(app, []).append((predicate, callback))

    def _wake(self, app):
        if self.waiters:
            self._wake_key(app)
            self._wake_key(None)

    def _wake_key(self, key):
        waiters = self.waiters.get(key)
        if not waiters:
            return
        due = [w for w in waiters if w[0]()]
        if not due:
            return
        left = [w for w in self.waiters.get(key, ()) if w not in due]
        if left:
            self.waiters[key] = left
        else:
            self.waiters.pop(key, None)
        for _, callback in due:
            callback()

    def _wake_all(self):
        """Every waiter: on pod events (a predicate may read sup.stopping)."""
        for key in list(self.waiters):
            self._wake_key(key)

    def status_changed(self, app):
        """Something reported of a running app changed (sd_notify STATUS=)."""
        self._changed(app)

    def _emit(self, kind, app, when=None, **fields):
        """when: the time it happened, if not now."""
        if self._held is not None:
            self._held.append((kind, app, fields, when or _now()))
        elif when is None:
            self.on_event(kind, app, fields)
        else:
            self.on_event(kind, app, fields, when)

    def _release_events(self):
        held, self._held = self._held, None
        for kind, app, fields, when in held or ():
            self.on_event(kind, app, fields, when)

    # -- saying what happened (pod mode) ------------------------------------

    def _report_end(self, app, delay):
        """One line when an app ends on its own and that is news: a failure,
        or any end that restarts it.  An end with 0 that is not restarted is
        what the app was for; a stop was asked for; an exec failure has had
        its line."""
        if not self.report or self.stopping or (app.stop_requested and not app.unhealthy_stop):
            return
        if delay is None and (app.exit_code == 0 or app.reason == "ExecFailed"):
            return
        then = "" if delay is None else "; restarting in %s s" % _seconds_text(delay)
        self.log.warn("%s %s%s (restart=%s)" % (app.name, _end_text(app), then, app.restart))

    def _report_stop(self, why):
        if self.report and not self.stopping:
            self.log.warn("stopping the pod: %s" % why)

    # -- health (live/health.py runs the checks) -------------------------------

    def health_result(self, app, ok, message=None):
        """One check's result.  A success makes the app healthy (and ready);
        `retries` failures in a row make it unhealthy, except those before
        its first success within its start period (Compose's rule)."""
        check = app.health_check
        if app.state != RUNNING or check is None:
            return
        if ok:
            app.health_failures = 0
            self._set_health(app, "healthy")
            return
        app.health_message = message
        if app.health == "starting" and monotonic() - app.started_mono < check.start_period:
            return
        app.health_failures += 1
        if app.health_failures >= check.retries:
            self._set_health(app, "unhealthy")
        if self.status is not None:
            self.status.app(app)

    def _set_health(self, app, health):
        """Healthy makes the app ready; unhealthy is said, and stops the app
        to restart it when its policy restarts failures."""
        if app.health == health:
            return
        was, app.health = app.health, health
        if self.status is not None:
            self.status.app(app)
        if health == "healthy":
            app.health_message = None
            self._emit("healthy", app)
            if was == "unhealthy" and self.report:
                self.log.warn("%s is healthy again" % app.name)
            self.mark_ready(app)
            return
        restart = app.restart != "never" and not self.stopping
        self._emit("unhealthy", app, failures=app.health_failures, message=app.health_message)
        if self.report:
            self.log.warn("%s is unhealthy: %d checks failed in a row (%s)%s" % (
                app.name, app.health_failures, app.health_message,
                "; restarting it (restart=%s)" % app.restart if restart else
                "; it goes on running (restart=never)"))
        if restart:
            app.unhealthy_stop = True
            self.event(app, "stop")

    def spawn_child(self, launch, on_exit, **options):
        """Spawn a child that is no app and no hook (an exec health check);
        on_exit(status) once it is reaped.  It leads a session of its own,
        so that killing its group reaches what it started.  Raises
        native.SpawnError."""
        pid = spawn.start(launch, self.signals, pgid_mode=native.PGID_NEW_SESSION, **options)
        self.children[pid] = on_exit
        return pid

    # -- readiness and order -----------------------------------------------

    def mark_ready(self, app, when=None):
        if app.ready or app.state != RUNNING:
            return
        app.ready = True
        self._index(app)
        self._changed(app)
        self._emit("ready", app, when)
        self._wake(app)
        self._queue_later(app)
        self._start_eligible()
        self._check_pod_ready()

    def _check_pod_ready(self):
        if self.pod_ready or self.stopping:
            return
        if not self._unready:
            self._unready = {}           # as large as the pod was: give it back
            self.pod_ready = True
            if self._held is not None:   # what made it ready is logged first
                self._release_events()
                self._held = []
            self.on_ready()

    def _queue_later(self, app):
        """The apps that come after app may start now: the next start pass
        looks at them (and only them)."""
        for other in self._later.get(app.name, ()):
            if other in self._startable:
                self._queue(other)

    def _queue(self, app):
        if app not in self._queued:
            self._queued.add(app)
            self._to_check.append(app)

    def _start_eligible(self):
        """Start what may start now: init apps one by one, then the rest by `after`.

        Starting an app can make it ready, which calls this again: the
        nested call only asks for one more pass, so 200 apps do not recurse."""
        if self.stopping or not self.running:
            return
        if self._starting:
            self._start_again = True
            return
        self._starting = True
        try:
            self._start_again = True
            while self._start_again and not self.stopping:
                self._start_again = False
                self._start_pass()
        finally:
            self._starting = False
        ended, self._ended_later = self._ended_later, []
        for app in ended:
            self._ended_for_good(app)

    def _start_pass(self):
        """Init apps one at a time while one has not succeeded; then the
        queued apps in the order they were queued (manifest order first).
        An app whose turn has not come is queued again when something it
        comes after becomes ready."""
        app = self._next_init()
        if app is not None:
            if app.state == WAITING and not app.stop_requested:
                self.event(app, "start")
            return
        if not self._inits_done:
            self._inits_done = True      # from now on, every waiting app may start
            for other in list(self._startable):
                self._queue(other)
        queue, i = self._to_check, 0
        self._batch = []
        try:
            while i < len(queue) and not self.stopping:
                app = queue[i]
                i += 1
                self._queued.discard(app)
                self.visits["start"] += 1
                if app in self._startable and _may_start(app, self.apps):
                    self.event(app, "start")
                    if len(self._batch) >= SPAWN_BATCH or self._batch_fds >= SPAWN_BATCH_FDS:
                        self._spawn_batch()
            self._spawn_batch()
        finally:
            # Whatever happens, nothing batched is left behind: the loop
            # never sees a child whose app does not know its pid.
            while self._batch:
                self._spawn_batch()
            self._batch = None
        del queue[:i]
        if not queue:
            self._queued = set()         # a set keeps its largest size: give it back
        if not self._startable:
            self._startable = {}

    def _next_init(self):
        """The init app to run now, or None once every init app has succeeded."""
        if not self._init_pending:
            return None
        return next(a for a in self._inits if a in self._init_pending)

    # -- hooks -------------------------------------------------------------

    def _run_hook(self, app, argv, kind):
        if self.status is not None:
            self.status.flush(app)   # a post-stop handler may read the app's final status
        launch = self.hook_launch(app, argv)
        try:
            pid = spawn.start(launch, self.signals, pgid_mode=self.pgid_mode)
        except native.SpawnError as err:
            self.log.warn("%s: %s handler: %s" % (app.name, kind, err))
            if kind == "pre-start":
                self.loop.call_later(0, lambda: self.event(app, "prestart_done", 254))
            return
        app.hook_pid = pid
        self.hooks[pid] = (app, kind)
        self._index(app)

    def _hook_exited(self, pid, status):
        app, kind = self.hooks.pop(pid)
        app.hook_pid = None
        self._index(app)
        code = spawn.exit_code(status)
        self.log.debug("%s: %s handler exited %d" % (app.name, kind, code))
        if kind == "pre-start":
            self.event(app, "prestart_done", code)
        elif app.start_after_hook:
            app.start_after_hook = False
            if not self.stopping and not app.stop_requested:
                self._start(app)
        self._wake(app)       # app.ended changed with hook_pid
        if self.stopping:
            self._stop_eligible(self._comes_after(app))
        self._maybe_finish()

    def _cancel_start(self, app, *args):
        """A stop while a start waits for the last post-stop handler."""
        if app.start_after_hook:
            app.start_after_hook = False
            app.stop_requested = True

    # -- policies ----------------------------------------------------------

    def _should_restart(self, app):
        if (app.stop_requested and not app.unhealthy_stop) or self.stopping or \
                app.reason in ("ExecFailed",):
            return False
        return app.restart == "always" or (app.restart == "on-failure" and (
            app.exit_code != 0 or app.unhealthy_stop))

    def _backoff_delay(self, app):
        base, cap = self.backoff
        ran = monotonic() - (app.started_mono or 0)
        app.backoff_streak = 1 if ran >= 600 else app.backoff_streak + 1
        # The streak only counts up to where the doubling has passed any
        # cap (2**64 times the base): a crash loop of a thousand restarts
        # must not overflow the float.
        return min(cap, base * 2.0 ** min(app.backoff_streak - 1, 64))

    def _ended_for_good(self, app):
        if self._starting:
            # An exec failure inside a start pass: judge the pod once the
            # pass has started everything it can.
            self._ended_later.append(app)
            return
        if app.restart_pending and not self.stopping:
            app.restart_pending = False
            self.event(app, "start")
            return
        if app.remove_when_ended:
            self.loop.call_later(0, lambda: self._remove(app))
        if self.stopping:
            self._stop_eligible(self._comes_after(app))
            self._maybe_finish()
            return
        failed = app.exit_code != 0
        if app.is_init:
            if failed:
                self.log.warn("init app %s failed with %d: the pod fails" % (app.name, app.exit_code))
                self.shutdown(app.exit_code)
            else:
                self._start_eligible()
                self._check_pod_ready()
            return
        # An app others start after once it has completed was meant to end:
        # its end with 0 starts them and is no reason to stop the pod.
        completed = not failed and bool(self._completed.get(app.name))
        if completed:
            self._queue_later(app)
            self._start_eligible()
            self._check_pod_ready()
        if self.mutable:
            return     # a mutable pod lives on until it is stopped
        # An app stopped on request does not trigger the policy, but it
        # counts among the ended ones.
        triggers = self.policy == ON_ANY or (self.policy == ON_ANY_FAILURE and failed)
        if triggers and not app.stop_requested and not completed:
            self._report_stop("%s %s (exit policy %s)" % (app.name, _end_text(app), self.policy))
            self.shutdown(app.exit_code)
        elif self._all_over():
            self.shutdown(self._first_failure() or 0)

    def _all_over(self):
        """Every app is over.  Exited apps are, so only the others are
        looked at, the one found not over last time first: while it runs,
        the answer costs one look, whatever the pod's size."""
        witness = self._witness
        if witness is not None and witness in self._not_exited:
            self.visits["policy"] += 1
            if not self._over(witness):
                return False
        for app in self._not_exited:
            self.visits["policy"] += 1
            if not self._over(app):
                self._witness = app
                return False
        return True

    def _over(self, app):
        """Ended for good: exited, or waiting for a start that cannot come
        (stopped on request, or something it comes after has exited)."""
        if app.state == EXITED:
            return True
        apps = self.apps
        return app.state == WAITING and (app.stop_requested or any(
            apps[d].state == EXITED for d in app.after if d in apps) or any(
            apps[d].state == EXITED and apps[d].started_mono is None
            for d in app.after_started if d in apps) or any(
            apps[d].state == EXITED and apps[d].exit_code != 0
            for d in app.after_completed if d in apps))

    def _first_failure(self):
        """The code of the first run that failed on its own: an app's last
        run, or one before it that was restarted (and not redeemed by a
        run that succeeded since).  Once, as the pod ends."""
        failures = [(a.finished_at or 0, a.exit_code) for a in self.apps.values()
                    if _failed_on_its_own(a)]
        failures += [a.failed for a in self.apps.values() if a.failed is not None]
        return min(failures, key=lambda f: f[0])[1] if failures else None

    # -- the pod -----------------------------------------------------------

    def add(self, app):
        self.apps[app.name] = app
        for dep in _deps(app):
            self._later.setdefault(dep, []).append(app)
        for dep in app.after_completed:
            self._completed.setdefault(dep, []).append(app)
            if dep in self.apps:
                self._index(self.apps[dep])
        if app.is_init:
            self._inits.append(app)
        self._index(app)

    def start_all(self):
        """Start what may start.  The events of this first pass (two an
        app: started, ready) are written once it is done, each with the
        time it happened: the next app's spawn does not wait for them."""
        self.running = True
        self._held = []
        try:
            self._start_eligible()
        finally:
            self._release_events()
        self._check_pod_ready()

    def add_app(self, app):
        """A new app in a running pod (stage1 app add); it waits for start."""
        # Held like an app stopped before it started, so that no start pass
        # (another app ready, an init app done) starts it: only `app start`.
        app.stop_requested = True
        self.add(app)
        self._changed(app)
        self.on_change()
        self._emit("added", app)

    def restart(self, app):
        """stage1 app restart: stop, then start again once ended.  The end
        in between is not the pod's: no exit policy, no removal."""
        app.restart_pending = True
        self.event(app, "stop")
        if app.ended and app.restart_pending:
            app.restart_pending = False
            self.event(app, "start")

    def _remove(self, app):
        if self.apps.get(app.name) is app and app.ended:
            del self.apps[app.name]
            for dep in _deps(app):
                self._later[dep].remove(app)
            for dep in app.after_completed:
                self._completed[dep].remove(app)
                if dep in self.apps:
                    self._index(self.apps[dep])
            if app in self._inits:
                self._inits.remove(app)
            self._index(app)
            # What came after it no longer waits for it (_may_start): the
            # next start pass looks at those again.
            self._queue_later(app)
            self.on_change()
            self._emit("removed", app)
            self._wake(app)
            self._maybe_finish()

    def run(self):
        """Start the apps and run the loop until the pod ends; the pod's
        exit code.

        A failure of stage1's own code must not leave the apps behind with
        no init to reap them: everything below the init gets SIGKILL and is
        reaped (for at most 2 s), the failure is reported with its
        traceback, and the code is 254.  The handler needs nothing it might
        fail to get: the fd kept in reserve is given up first (the failure
        may be running out of fds), and the traceback is only written when
        its module can still be imported."""
        try:
            self.start_all()
            if not self.done:
                self.loop.run()
            return self.exit_code
        except Exception as err:
            self._internal_error(err)
        return 254

    def _internal_error(self, err):
        if self._reserve is not None:
            os.close(self._reserve)
            self._reserve = None
        self.done = True
        for app in self.apps.values():
            self._signal_app(app, SIGKILL)
        self._kill_everything(SIGKILL)
        deadline = monotonic() + 2.0
        while native.has_children() and monotonic() < deadline:
            native.reap()
            native.wait_signal(0.05)
        native.reap()
        try:
            import traceback
            text = traceback.format_exc().rstrip()
        except Exception:
            text = "%s: %s" % (type(err).__name__, err)
        self.log.warn("internal error, every process of the pod was killed:\n%s" % text)
        self.exit_code = 254
        self.on_change()
        self.loop.flush(safe=True)

    def shutdown(self, exit_code=None):
        """Stop every app, ask leftovers to stop, SIGKILL all when grace ends."""
        if self.exit_code is None and exit_code is not None:
            self.exit_code = exit_code
        if self.stopping:
            return
        self.stopping = True
        self.log.debug("stopping the pod")
        self.on_change()
        apps = list(self.apps.values())
        for app in apps:
            if app.state in (WAITING, BACKOFF, STARTING):
                self.event(app, "stop")
        self._stop_eligible(apps)
        grace = self._longest_grace()
        if grace > 0:
            self._deadline = self.loop.call_later(grace, self._grace_over)
        self._wake_all()
        self._maybe_finish()

    def _stop_eligible(self, apps):
        """Stopping goes in reverse start order: an app gets its stop signal
        once every app that comes after it has ended.  `apps` are those
        whose turn may have come: every app as the stop begins, then, as
        each app ends, the apps it comes after."""
        for app in apps:
            self.visits["stop"] += 1
            if app.state == RUNNING and self._may_stop(app):
                self.event(app, "stop")

    def _may_stop(self, app):
        """True when every app that comes after it has ended."""
        return all(other.ended for other in self._later.get(app.name, ()) if other is not app)

    def _comes_after(self, app):
        """The apps app comes after, any kind of after (that are still in the pod)."""
        return [self.apps[d] for d in _deps(app) if d in self.apps]

    def _longest_grace(self):
        """The pod's deadline covers the slowest chain of ordered stops."""
        chain = _stop_time(self.apps, lambda a: self.grace if a.grace is None else a.grace)
        return max(self.grace, chain)

    def _grace_over(self):
        self.log.debug("grace period over: SIGKILL to everything left")
        for app in self.apps.values():
            if app.state == STOPPING:
                app.killed = True
                self._signal_app(app, SIGKILL)
        self._kill_everything(SIGKILL)
        # SIGKILL cannot be refused; give the kernel a bounded moment to
        # tear the processes down, then leave whatever is still there.
        self._deadline = self.loop.call_later(2.0, self._finish)

    def _maybe_finish(self):
        if not self.stopping or self.done:
            return
        if self._unended or self.hooks:
            return
        if native.has_children():
            # Every app has ended: what is left are leftovers (daemons,
            # orphans, children of apps).  Ask them once to stop; the grace
            # deadline sends SIGKILL.  With --grace 0 nobody waits for them.
            if not self._swept:
                self._swept = True
                self._kill_everything(SIGTERM)
            if self.grace > 0:
                return
        self._finish()

    def _finish(self):
        if self.done:
            return
        self.done = True
        if self._deadline:
            self._deadline.cancel()
        if self.exit_code is None:
            self.exit_code = self._first_failure() or 0
        self.on_change()
        self._wake_all()
        self.loop.flush()       # the status files, then the pod's
        self.loop.stop()

    # -- signals and children ---------------------------------------------

    def _wait_plan(self):
        """What the native signal wait may do without us (exec mode):
        reap children that are no app or hook (orphans) on its own, and
        pass signals on to the one app at once.  While stopping, or with
        -v, every end matters (the pod waits for its leftovers; -v logs
        each) and nothing is passed on behind our back."""
        if self.stopping or self.log.verbose:
            return None, 0
        watch = list(self.by_pid) + list(self.hooks) + list(self.children)
        forward = 0
        if self.forward_all and len(self.by_pid) == 1:
            app = next(iter(self.by_pid.values()))
            if app.state in (RUNNING, STOPPING):
                forward = -app.pid if self.group else app.pid
        return watch, forward

    def _on_signals(self, infos, exits=None):
        refused = self._from_the_pods(infos)
        for i, (signo, code, sender, forwarded) in enumerate(infos):
            if signo == SIGCHLD:
                self._reap(exits, sender)
                exits = None
            elif i in refused:
                # The init signals every app, of any user: passing on what
                # an app sends it would let an app signal apps it may not.
                if signo not in self._refused:
                    self._refused.add(signo)
                    self.log.warn("%s from pid %d, a process of the pod, is not passed on to "
                                  "the apps (nor any more of it)"
                                  % (native.signal_name(signo), sender))
            else:
                if self.log.verbose:
                    self.log.debug("received %s from pid %d" % (native.signal_name(signo), sender))
                self.on_signal(signo, forwarded)

    def _from_the_pods(self, infos):
        """The indexes of the signals (pod mode, stop signals aside) that a
        process of the pod sent, told before this batch's SIGCHLD reaps
        anything: an app that signals and ends is still a zombie then, and
        signals come lowest number first (SIGCHLD before SIGWINCH)."""
        if self.forward_all:
            return ()
        return {i for i, (signo, _code, sender, _forwarded) in enumerate(infos)
                if sender and signo not in (SIGCHLD, SIGTERM, SIGINT) and
                self._from_the_pod(sender)}

    def on_signal(self, signo, forwarded=False):
        if self.forward_all:
            for app in self.apps.values():
                if app.state in (RUNNING, STOPPING):
                    if not forwarded:
                        self._signal_app(app, signo)
                    if signo in STOP_SIGNALS and app.timer is None and self.grace > 0:
                        app.timer = self.loop.call_later(self.grace, lambda a=app: self.event(a, "kill"))
            return
        if signo in (SIGTERM, SIGINT):
            if not self.stopping:
                self._report_stop("received %s" % native.signal_name(signo))
            self.shutdown()
            return
        for app in self.apps.values():
            if app.state == RUNNING:
                self._signal_app(app, signo)

    def _from_the_pod(self, pid):
        """Whether pid, a signal's sender, is a process of the pod.  As PID 1
        of the pod's namespace: any process of the namespace (the host
        sends as pid 0; one that joined with nsenter or `docker exec` is in
        it).  On a host: an app or a process below the init, by its
        parents; one that is gone already cannot be told and is taken for
        somebody else's (a host's pod is no boundary)."""
        if self._pid1:
            return True
        me = os.getpid()
        for _ in range(256):
            if pid == me or pid in self.by_pid:
                return True
            pid = init.parent_pid(pid)
            if pid is None or pid <= 1:
                return False
        return True          # deeper than any pod's tree goes: not the host's

    def _reap(self, exits=None, first=None):
        """Each ended child becomes an event of its app.  exits: those the
        native wait reaped already (exec mode); else they are reaped here,
        in pod mode at most REAP_BATCH a turn: a thousand apps ending at
        once are taken in slices, each slice's status files written in its
        own turn (StatusWriter.flush), so that what is left to write when
        the last app is reaped is one slice, and the control socket and the
        rest are served in between.

        first: the child the SIGCHLD named, reaped alone first.  wait4(-1)
        walks every child of the init (some 150 us for 1600 children whose
        task structs are cold), and a restarted app is the newest child,
        the last the walk reaches: taken by its pid, one app's end costs
        one walk (the one that finds no other ended child; SIGCHLD is not
        queued per child, so that one is needed), not two."""
        if exits is None:
            exits = self._take_exits(first)
            self._reaped = True
        for pid, status, utime, stime, maxrss in exits:
            app = self.by_pid.get(pid)
            if app is not None:
                self.event(app, "exit", status, (utime, stime, maxrss))
            elif pid in self.hooks:
                self._hook_exited(pid, status)
            elif pid in self.children:
                self.children.pop(pid)(status)
            elif self.log.verbose:
                self.log.debug("reaped orphan pid %d" % pid)
        self._maybe_finish()

    def _take_exits(self, first=None):
        if self.forward_all:
            return native.reap()
        exits = []
        # Tracked (native.track_children), an app's end is found by its
        # pidfd without a walk: reap() takes it with the rest.
        if first is not None and not native.tracking() and \
                (first in self.by_pid or first in self.hooks):
            found = native.reap_pid(first)
            if found is not None:
                exits.append(found)
        more = native.reap(REAP_BATCH - len(exits))
        self._reap_pending = len(more) >= REAP_BATCH - len(exits)
        return exits + more

    def _reap_more(self, final=False):
        """Before the wait (pod mode): the next slice of ended children, if
        the last reap left some, or while the pod stops (its apps die
        while the stop pass runs: their ends are taken before their
        `stopping` status is written).  True while more may be left."""
        if final or self.done:
            return False
        if self._reaped:          # one slice a turn: its files are written first
            self._reaped = False
            return self._reap_pending
        if self._reap_pending or self.stopping:
            self._reap_pending = False
            self._reap()
            self._reaped = False
        return self._reap_pending

    def _signal_app(self, app, sig):
        """The app leads its own process group: -g sends to the group (the
        app among it, once); SIGKILL goes to the app and its group."""
        if not app.pid:
            return
        if sig == SIGKILL:
            native.kill_many([app.pid, -app.pid], sig)
        elif self.group or app.signal_group:
            native.kill_many([-app.pid], sig)
        else:
            native.kill_many([app.pid], sig)

    def _kill_everything(self, sig):
        """sig to every process left below the init.

        As PID 1 of a PID namespace, kill(-1) reaches every process of the
        namespace but the init itself, in one system call: the processes
        below the init, and any that joined the namespace from outside
        (`stage1 enter`, nsenter), which the kernel kills anyway once the
        init exits, as it does in a container whose PID 1 ends.  Otherwise
        (a subreaper on the host), only the processes below the init, from
        /proc (none when /proc is not our namespace's)."""
        if self._pid1:
            native.kill_many([-1], sig)
            return
        pids = init.descendants(os.getpid())
        if pids:
            native.kill_many(pids, sig)


def _spawned_at(item):
    """When a spawn of spawn_each ended: (batch entry, (pid, when) or (None, error))."""
    pid, outcome = item[1]
    return outcome if pid is not None else outcome.when


def _failed_on_its_own(app):
    return bool(app.exit_code) and app.reason not in ("Stopped", "Killed")


def _reason(app, sig):
    if app.unhealthy_stop:
        return "Unhealthy"
    if app.killed and sig == SIGKILL:
        return "Killed"
    if app.stop_requested and (sig is not None or app.exit_code == 0 or
                               app.exit_code == 128 + app.stop_signal):
        return "Stopped"
    if sig is not None:
        return "Signaled"
    return "Completed" if app.exit_code == 0 else "Error"


def _end_text(app):
    """How an app's last run ended, for a line on stderr."""
    if app.reason == "Unhealthy":
        return "was stopped (unhealthy)"
    if app.reason == "PreStartFailed":
        return "did not start: %s" % app.message
    if app.reason == "StartError":
        return "could not start"
    if app.reason == "ExecFailed":
        return "could not be run (%d)" % app.exit_code
    if app.signal_name and app.reason != "Completed":
        return "was killed by %s" % app.signal_name
    return "exited with %d" % app.exit_code


def _seconds_text(value):
    """10 -> "10", 0.25 -> "0.25", 1e-4 -> "0.0001"."""
    text = "%.4f" % value
    return text.rstrip("0").rstrip(".") if "." in text else text


# -- order: `stage1/after` and `stage1/init` ------------------------------------
# systemd's order, not a strict sequence: an app starts once everything it
# comes after is ready, and stops once everything that comes after it has
# ended, so unrelated apps start and stop together and a chain starts
# forwards and stops backwards.  Init apps (Kubernetes' init containers) run
# one at a time, in manifest order, before any other app.

def _may_start(app, apps):
    """True when every app it comes after is ready, has started or has ended
    with 0, as the kind of `after` says (removed ones no longer count)."""
    return (all(apps[d].ready for d in app.after if d in apps) and
            all(apps[d].started_mono is not None for d in app.after_started if d in apps) and
            all(apps[d].state == EXITED and apps[d].exit_code == 0
                for d in app.after_completed if d in apps))


def _deps(app):
    """Every app app comes after, whatever the kind: ready, started, completed."""
    return app.after + app.after_started + app.after_completed


def _put(index, app, member):
    if member:
        index[app] = None
    else:
        index.pop(app, None)


def _stop_time(apps, grace_of):
    """The slowest a pod stop can be: the longest chain of ordered stops,
    each app given its own grace.  An app's chain is its grace plus the
    slowest chain of the apps that come after it (they stop first)."""
    later = {name: [] for name in apps}
    for app in apps.values():
        for dep in app.after + app.after_started:
            if dep in later:
                later[dep].append(app.name)
    total, visiting = {}, set()
    for name in apps:
        stack = [name]
        while stack:       # iterative: a chain of 1000 apps must not recurse
            top = stack[-1]
            pending = [n for n in later[top] if n not in total and n not in visiting]
            if top not in total and pending:
                visiting.add(top)
                stack.extend(pending)
                continue
            stack.pop()
            visiting.discard(top)
            if top not in total:
                total[top] = grace_of(apps[top]) + max(
                    [total.get(n, 0.0) for n in later[top]] or [0.0])
    return max(total.values() or [0.0])



_now = time.time


S = Supervisor
TRANSITIONS = {
    WAITING:  {"start": S._start, "stop": S._stop_waiting, "kill": S._nothing,
               "exit": S._nothing, "backoff_done": S._nothing, "prestart_done": S._nothing},
    STARTING: {"start": S._nothing, "stop": S._stop_hook, "kill": S._nothing,
               "exit": S._nothing, "backoff_done": S._nothing,
               "prestart_done": S._prestart_done},
    RUNNING:  {"start": S._nothing, "stop": S._stop, "kill": S._kill, "exit": S._exited,
               "backoff_done": S._nothing, "prestart_done": S._nothing},
    STOPPING: {"start": S._nothing, "stop": S._nothing, "kill": S._kill, "exit": S._exited,
               "backoff_done": S._nothing, "prestart_done": S._nothing},
    BACKOFF:  {"start": S._nothing, "stop": S._stop_waiting, "kill": S._nothing,
               "exit": S._nothing, "backoff_done": S._start, "prestart_done": S._nothing},
    EXITED:   {"start": S._start, "stop": S._cancel_start, "kill": S._nothing,
               "exit": S._nothing, "backoff_done": S._nothing, "prestart_done": S._nothing},
}
del S
