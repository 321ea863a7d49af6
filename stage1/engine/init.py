"""Becoming an init: take the signals, become a subreaper, name ourselves;
and the init's view of the processes below it (plain /proc reads).

Shared by `stage1 exec` and `stage1 run`.  `become_init` must run before
anything else the init does, so that every signal sent from then on is
queued on the signalfd instead of acting on the interpreter.
"""
import os

from stage1.engine import native
from stage1.engine.spawn import SignalState


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
    """What `ps axf` and /proc/PID/cmdline show for the init (and, cut to 15
    bytes, what top and /proc/PID/comm show).

    The title overwrites the argument strings in place: their bounds come
    from /proc/self/stat (arg_start, arg_end) and the bytes go through
    /proc/self/mem.  python-prctl's set_proctitle was given up: it finds argv
    by walking back from environ[0] and dereferences NULL when that fails,
    which it does with an empty environment or 8 KiB of arguments (SIGSEGV).
    """
    import _prctl
    try:
        _prctl.prctl(_prctl.PR_SET_NAME, title[:15])
    except (OSError, ValueError):
        pass
    try:
        with open("/proc/self/stat", "rb") as f:
            fields = f.read().rpartition(b")")[2].split()
        start, end = int(fields[45]), int(fields[46])    # fields 48 and 49
        if end - start < 2:
            return
        data = title.encode(errors="replace")[:end - start - 1]
        fd = os.open("/proc/self/mem", os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.pwrite(fd, data.ljust(end - start, b"\0"), start)
        finally:
            os.close(fd)
    except (OSError, ValueError, IndexError):
        pass    # no /proc: the title stays as it was


def terminal_fd():
    """0 when stdin is a terminal whose foreground group is ours, else -1."""
    try:
        if os.isatty(0) and os.tcgetpgrp(0) == os.getpgrp():
            return 0
    except OSError:
        pass
    return -1


# -- the processes below the init, from /proc ------------------------------------

def parent_pid(pid):
    """pid's parent from /proc/PID/stat, or None when it is gone."""
    try:
        with open("/proc/%d/stat" % pid, "rb") as f:
            return _ppid(f.read())
    except (OSError, ValueError, IndexError):
        return None


def _ppid(stat):
    # The command name may hold spaces and parentheses: parse after the last ')'.
    return int(stat[stat.rindex(b")") + 2:].split(None, 2)[1])


def descendants(root):
    """Pids below root, from /proc; None when /proc is not our namespace's."""
    try:
        if os.readlink("/proc/self") != str(os.getpid()):
            return None
        names = os.listdir("/proc")
    except OSError:
        return None
    children = {}
    for name in names:
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % name, "rb") as f:
                children.setdefault(_ppid(f.read()), []).append(int(name))
        except (OSError, ValueError, IndexError):
            continue
    out, todo = [], [root]
    while todo:
        for pid in children.get(todo.pop(), ()):
            out.append(pid)
            todo.append(pid)
    return out
