"""`stage1 exec`: a drop-in PID 1 for one process.

A pod of one app under the same Supervisor as pod mode, with every signal
passed on to the app (or its process group) and the pod ending when the
app does.  Only what start-up needs is imported here; json and the status
writer load only with --status-dir.
"""
import os

from stage1 import init, native, spawn
from stage1.loop import Loop
from stage1.supervisor import App, Log, Supervisor, ON_ANY

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
        from stage1.status import StatusWriter
        status = StatusWriter(status_dir, log.warn)
    env = list(_environ())
    launch = spawn.Launch(command, env, path=os.environ.get("PATH", spawn.DEFAULT_PATH))
    loop = Loop()
    sup = Supervisor(loop, sigfd, signals, log, grace=grace, policy=ON_ANY,
                     forward_all=True, group=group, tty_fd=init.terminal_fd(),
                     status=status)
    sup.add(App(name, launch))
    sup.start_all()
    if not sup.done:
        loop.run()
    app = sup.apps[name]
    if app.reason == "ExecFailed":
        # The one line on stderr was written by the supervisor's log.
        return app.exit_code
    return sup.exit_code


def _environ():
    for key, value in os.environb.items():
        yield key + b"=" + value
