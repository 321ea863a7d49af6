"""The least an init written in Python can do, as a reference row for the bench.

    python mininit.py CMD [ARGS...]

tini's loop in the standard library alone: block every signal, spawn the
app with an empty mask, then wait for one signal at a time with
sigwaitinfo; SIGCHLD drains waitpid, anything else is passed to the app.
It ends with the app's exit code.  No options, no state machine, no
status: what is left of a Python init's cost per wake-up is the
interpreter's, which tells how much of stage1's figures is its own.
`_signal` rather than `signal`, whose enums cost milliseconds at start-up.
"""
import os
import sys

import _signal as signal


def main(argv):
    every = signal.valid_signals() - {signal.SIGKILL, signal.SIGSTOP}
    signal.pthread_sigmask(signal.SIG_BLOCK, every)
    app = os.posix_spawn(argv[0], argv, os.environ, setsigmask=())
    while True:
        info = signal.sigwaitinfo(every)
        if info.si_signo != signal.SIGCHLD:
            os.kill(app, info.si_signo)
            continue
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return 0
            if pid == 0:
                break
            if pid == app:
                return os.waitstatus_to_exitcode(status)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
