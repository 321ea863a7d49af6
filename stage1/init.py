"""Becoming an init: take the signals, become a subreaper, name ourselves.

Shared by `stage1 exec` and `stage1 run`.  `become_init` must run before
anything else the init does, so that every signal sent from then on is
queued on the signalfd instead of acting on the interpreter.
"""
import os

from stage1 import native
from stage1.spawn import SignalState


def become_init(pdeathsig=None):
    """Return (signalfd, SignalState) once the process is ready to be an init."""
    fd, mask, ignored = native.take_signals()
    import _prctl   # python-prctl's C module; prctl.py costs 2 ms more at start-up
    if os.getpid() != 1:
        # Orphans of our apps come to us instead of to the host's init.
        _prctl.prctl(_prctl.PR_SET_CHILD_SUBREAPER, 1)
    if pdeathsig:
        ppid = os.getppid()
        _prctl.prctl(_prctl.PR_SET_PDEATHSIG, pdeathsig)
        if os.getppid() != ppid:
            # The parent died before the request took effect: act as if
            # the signal had come.
            os.kill(os.getpid(), pdeathsig)
    return fd, SignalState(mask, ignored)


def set_title(title):
    """What `ps axf` shows for the init."""
    try:
        import _prctl
        _prctl.set_proctitle(title)
        _prctl.prctl(_prctl.PR_SET_NAME, title[:15])  # what top and /proc/PID/comm show
    except (OSError, ValueError):
        pass


def terminal_fd():
    """0 when stdin is a terminal whose foreground group is ours, else -1."""
    try:
        if os.isatty(0) and os.tcgetpgrp(0) == os.getpgrp():
            return 0
    except OSError:
        pass
    return -1
