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
"""
import os
import time

from stage1.engine import init, native, spawn
from stage1.engine.loop import monotonic

SIGKILL, SIGTERM, SIGINT, SIGQUIT, SIGCHLD = 9, 15, 2, 3, 17
STOP_SIGNALS = (SIGTERM, SIGINT, SIGQUIT)

WAITING, STARTING, RUNNING, STOPPING, EXITED, BACKOFF = (
    "waiting", "starting", "running", "stopping", "exited", "backoff")
ENDED = (WAITING, EXITED)

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
    """One app and its last run.  `launch` is a spawn.Launch."""

    def __init__(self, name, launch, restart="never", stop_signal=SIGTERM,
                 pre_start=None, post_stop=None, grace=None, annotations=None,
                 after=(), is_init=False, notify=None):
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
        self.rusage = (None, None, None)
        self.stop_requested = False
        self.killed = False
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
        self.on_event = lambda kind, app, fields: None
        self.on_ready = lambda: None      # every app ready (rkt's supervisor-status)
        self.prepare = lambda app: {}     # extra spawn options per start (notify fds, logs)
        self.spawned = lambda app, ok: None   # after each spawn, whether it worked
        self.hook_launch = hook_launch or (lambda app, argv: None)
        self.report = False     # pod mode: one line on stderr for each end, restart, verdict
        self.children = {}      # pid -> on_exit(status): other children (exec health checks)
        self.waiters = []
        self.apps = {}
        self.by_pid = {}
        self.hooks = {}
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
        # An fd in reserve for the internal-error handler (see run).
        self._reserve = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        loop.add_signals(sigfd, self._on_signals, self._wait_plan)
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
        try:
            app.pid = spawn.start(app.launch, self.signals, pgid_mode=self.pgid_mode,
                                  tty_fd=self.tty_fd, **self.prepare(app))
        except native.SpawnError as err:
            self.spawned(app, False)
            code = spawn.spawn_exit_code(err)
            self.log.warn("%s: %s" % (app.name, err))
            self._finish_failed(app, 254 if code is None else code,
                                "StartError" if code is None else "ExecFailed", str(err))
            return
        app.started_at = _now()
        app.started_mono = monotonic()
        app.exit_code = app.signal_name = app.reason = app.message = None
        app.finished_at = None
        app.rusage = (None, None, None)
        app.status_text = None
        app.notify_stopping = False
        app.unhealthy_stop = False
        app.health = None if app.health_check is None else "starting"
        app.health_message, app.health_failures = None, 0
        self.by_pid[app.pid] = app
        self.log.debug("%s: started pid %d" % (app.name, app.pid))
        self.spawned(app, True)
        self._set(app, RUNNING)
        self._emit("started", app, pid=app.pid)
        if app.notify is None and app.health_check is None:
            self.mark_ready(app)     # ready once started
        elif any(app.name in a.after_started for a in self.apps.values()):
            self._start_eligible()   # not ready yet, but started is what they wait for

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
        self.log.debug("%s: pid %d exited %d (%s)" % (app.name, app.pid, app.exit_code, app.reason))
        if app.timer:
            app.timer.cancel()
            app.timer = None
        self._after_exit(app)

    def _after_exit(self, app):
        """Back off and restart, or end for good; post-stop runs either way."""
        self._emit("exited", app, exitCode=app.exit_code, signal=app.signal_name,
                   reason=app.reason, message=app.message)
        if self._should_restart(app):
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
        self._emit("stopping", app, signal=native.signal_name(app.stop_signal))
        self._signal_app(app, app.stop_signal)
        grace = self.grace if app.grace is None else app.grace
        if grace > 0:
            app.timer = self.loop.call_later(grace, lambda: self.event(app, "kill"))
        self._set(app, STOPPING)

    def _stop_waiting(self, app, *args):
        app.stop_requested = True
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
        if self.status is not None:
            self.status.app(app)
        self.on_change()
        self._wake_waiters()

    def when(self, predicate, callback):
        """Call callback() once predicate() holds, checked after every transition."""
        if predicate():
            callback()
        else:
            self.waiters.append((predicate, callback))

    def _wake_waiters(self):
        if not self.waiters:
            return
        due = [w for w in self.waiters if w[0]()]
        if due:
            self.waiters = [w for w in self.waiters if w not in due]
            for _, callback in due:
                callback()

    def status_changed(self, app):
        """Something reported of a running app changed (sd_notify STATUS=)."""
        if self.status is not None:
            self.status.app(app)

    def _emit(self, kind, app, **fields):
        self.on_event(kind, app, fields)

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

    def mark_ready(self, app):
        if app.ready or app.state != RUNNING:
            return
        app.ready = True
        if self.status is not None:
            self.status.app(app)
        self._emit("ready", app)
        self._wake_waiters()
        self._start_eligible()
        self._check_pod_ready()

    def _check_pod_ready(self):
        if self.pod_ready or self.stopping:
            return
        if all(a.ready or (a.exit_code == 0 and a.state == EXITED and (
                a.is_init or any(a.name in b.after_completed for b in self.apps.values())))
               for a in self.apps.values()):
            self.pod_ready = True
            self.on_ready()

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
        app, inits_done = _next_init(self.apps)
        if app is not None:
            if app.state == WAITING and not app.stop_requested:
                self.event(app, "start")
            return
        for app in list(self.apps.values()):
            if (app.state == WAITING and not app.is_init and not app.stop_requested
                    and _may_start(app, self.apps)):
                self.event(app, "start")

    # -- hooks -------------------------------------------------------------

    def _run_hook(self, app, argv, kind):
        if self.status is not None:
            self.status.flush()      # a post-stop handler may read the app's final status
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

    def _hook_exited(self, pid, status):
        app, kind = self.hooks.pop(pid)
        app.hook_pid = None
        code = spawn.exit_code(status)
        self.log.debug("%s: %s handler exited %d" % (app.name, kind, code))
        if kind == "pre-start":
            self.event(app, "prestart_done", code)
        elif app.start_after_hook:
            app.start_after_hook = False
            if not self.stopping and not app.stop_requested:
                self._start(app)
        self._wake_waiters()       # app.ended changed with hook_pid
        if self.stopping:
            self._stop_eligible()
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
            self._stop_eligible()
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
        completed = not failed and any(app.name in a.after_completed
                                       for a in self.apps.values())
        if completed:
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
        elif all(self._over(a) for a in self.apps.values()):
            self.shutdown(self._first_failure() or 0)

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
        ended = sorted((a for a in self.apps.values()
                        if a.exit_code and a.reason not in ("Stopped", "Killed")),
                       key=lambda a: a.finished_at or "")
        return ended[0].exit_code if ended else None

    # -- the pod -----------------------------------------------------------

    def add(self, app):
        self.apps[app.name] = app

    def start_all(self):
        self.running = True
        self._start_eligible()
        self._check_pod_ready()

    def add_app(self, app):
        """A new app in a running pod (stage1 app add); it waits for start."""
        # Held like an app stopped before it started, so that no start pass
        # (another app ready, an init app done) starts it: only `app start`.
        app.stop_requested = True
        self.apps[app.name] = app
        if self.status is not None:
            self.status.app(app)
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
            self.on_change()
            self._emit("removed", app)
            self._wake_waiters()
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
        if self.status is not None:
            self.status.flush()
        self.on_change()

    def shutdown(self, exit_code=None):
        """Stop every app, ask leftovers to stop, SIGKILL all when grace ends."""
        if self.exit_code is None and exit_code is not None:
            self.exit_code = exit_code
        if self.stopping:
            return
        self.stopping = True
        self.log.debug("stopping the pod")
        self.on_change()
        for app in list(self.apps.values()):
            if app.state in (WAITING, BACKOFF, STARTING):
                self.event(app, "stop")
        self._stop_eligible()
        if self._longest_grace() > 0:
            self._deadline = self.loop.call_later(self._longest_grace(), self._grace_over)
        self._maybe_finish()

    def _stop_eligible(self):
        """Stopping goes in reverse start order: an app gets its stop signal
        once every app that comes after it has ended."""
        for app in list(self.apps.values()):
            if app.state == RUNNING and _may_stop(app, self.apps):
                self.event(app, "stop")

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
        if not all(a.ended for a in self.apps.values()) or self.hooks:
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
        if self.status is not None:
            self.status.flush()
        self.on_change()
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
        for signo, code, sender, forwarded in infos:
            if signo == SIGCHLD:
                self._reap(exits)
                exits = None
            else:
                if self.log.verbose:
                    self.log.debug("received %s from pid %d" % (native.signal_name(signo), sender))
                self.on_signal(signo, forwarded)

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

    def _reap(self, exits=None):
        for pid, status, utime, stime, maxrss in (native.reap() if exits is None else exits):
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
        """sig to every process left below the init."""
        pids = init.descendants(os.getpid())
        if pids is None and self._pid1:
            # No /proc of our own: kill(-1) reaches every process of the
            # namespace but the init itself.
            native.kill_many([-1], sig)
        elif pids:
            native.kill_many(pids, sig)

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


def _may_stop(app, apps):
    """True when every app that comes after it has ended."""
    return all(other.ended for other in apps.values()
               if other is not app and (app.name in other.after or
                                        app.name in other.after_started))


def _next_init(apps):
    """(the init app to run now or None, whether all init apps succeeded)."""
    for app in apps.values():
        if not app.is_init:
            continue
        if app.exit_code == 0 and app.state == "exited":
            continue
        return app, False
    return None, True


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
