"""`stage1 exec`: a drop-in PID 1 for one process.

A pod of one app under the same Supervisor as pod mode, with every signal
passed on to the app (or its process group) and the pod ending when the
app does.  Only what start-up needs is imported here; json and the status
writer load only with --status-dir.
"""
import os

from stage1.engine import init, spawn
from stage1.engine.loop import Loop
from stage1.engine.supervisor import App, Log, Supervisor, ON_ANY

EXIT_FAILURE = 254


def run(command, *, name, grace, group, status_dir, pdeathsig, verbose):
    try:
        sigfd, signals = init.become_init(pdeathsig)
    except OSError as err:
        os.write(2, b"stage1: unable to become an init: %s\n" % err.strerror.encode())
        return EXIT_FAILURE
    log = Log(verbose)
    init.set_title("stage1 exec: %s" % name)
    status = None
    if status_dir:
        from stage1.engine.status import StatusWriter
        status = StatusWriter(status_dir, log.warn)
    env = _environ()
    launch = spawn.Launch(command, env, path=os.environ.get("PATH", spawn.DEFAULT_PATH))
    loop = Loop()
    sup = Supervisor(loop, sigfd, signals, log, grace=grace, policy=ON_ANY,
                     forward_all=True, group=group, tty_fd=init.terminal_fd(),
                     status=status)
    sup.add(App(name, launch))
    code = sup.run()
    app = sup.apps[name]
    if app.reason == "ExecFailed":
        # The one line on stderr was written by the supervisor's log.
        return app.exit_code
    return code


def _environ():
    """The environment exactly as the caller gave it.

    Read from /proc/self/environ, not os.environ: when the locale is C or
    POSIX the interpreter adds LC_CTYPE=C.UTF-8 to its own environment
    before any of our code runs (PEP 538), and the app must not inherit it.
    Without /proc, os.environ is the best there is."""
    try:
        with open("/proc/self/environ", "rb") as f:
            block = f.read()
    except OSError:
        return [key + b"=" + value for key, value in os.environb.items()]
    return block.split(b"\0")[:-1]
