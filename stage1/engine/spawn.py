"""App spec -> the native spawn request.

A Launch says what to run (argv, environment, PATH for the search, cwd,
credentials, root, and the isolation options the native layer applies).
`start` does the PATH search in the parent, as _posixsubprocess does, so the
child only tries a prepared list of paths, and gives the app the signal mask
and ignored signals the init inherited.
"""
import os

from stage1.engine import native

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# The interpreter sets SIGPIPE and SIGXFSZ to ignored before any of our code
# runs, and the old disposition is lost: apps get them at default, as
# CPython's subprocess (restore_signals) gives them.
_PYTHON_IGNORED = (1 << (13 - 1)) | (1 << (25 - 1))


class SignalState:
    """What the init inherited, to hand on to apps unchanged: the signal
    mask and ignored signals, and the resource limits it has raised for
    itself, as rlimits ((resource, soft, hard), ...) to give back."""
    __slots__ = ("mask", "ignored", "rlimits")

    def __init__(self, mask, ignored):
        self.mask = mask
        self.ignored = ignored & ~_PYTHON_IGNORED
        self.rlimits = ()


class Launch:
    __slots__ = ("argv", "env", "path", "cwd", "uid", "gid", "groups", "root", "options")

    def __init__(self, argv, env, path=None, cwd=None, uid=-1, gid=-1,
                 groups=None, root=None, **options):
        self.argv = list(argv)
        self.env = list(env)
        self.path = path
        self.cwd = cwd
        self.uid, self.gid, self.groups = uid, gid, groups
        self.root = root
        self.options = options

    def candidates(self):
        """The paths to try, in order, for argv[0] (execvp's search).
        Kept by (PATH, program): a thousand apps with the same PATH and
        program, and every restart, share one list, which nobody changes
        (native.spawn builds its C array once)."""
        prog = self.argv[0]
        path = None if "/" in prog else self.path if self.path is not None else DEFAULT_PATH
        found = _searched.get((path, prog))
        if found is None:
            if len(_searched) >= 256:
                _searched.clear()
            found = _searched[path, prog] = [prog] if path is None else \
                [os.path.join(d or ".", prog) for d in path.split(":")]
        return found


_searched = {}


def env_list(mapping):
    return ["%s=%s" % kv for kv in mapping.items()]


def start(launch, signals, **extra):
    """Spawn the app; return its pid or raise native.SpawnError."""
    options = _options(launch, signals, extra)
    return native.spawn(launch.candidates(), launch.argv, launch.env, **options)


def request(launch, signals, **extra):
    """What start() would spawn, for native.spawn_each."""
    options = _options(launch, signals, extra)
    return native.request(launch.candidates(), launch.argv, launch.env, **options)


def _options(launch, signals, extra):
    options = dict(launch.options)
    options.update(extra)
    if signals.rlimits:
        own = options.get("rlimits")
        if not own:
            options["rlimits"] = signals.rlimits
        else:               # what the launch sets itself wins
            given = {r[0] for r in own}
            options["rlimits"] = tuple(own) + tuple(r for r in signals.rlimits
                                                    if r[0] not in given)
    options.update(cwd=launch.cwd, uid=launch.uid, gid=launch.gid, groups=launch.groups,
                   root=launch.root, sigmask=signals.mask, sigign=signals.ignored,
                   shared_candidates=True)
    return options


def exit_code(status):
    """Shell convention: the code, or 128+N for a signal."""
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    if os.WIFEXITED(status):
        return os.WEXITSTATUS(status)
    return 255


def spawn_exit_code(err):
    """127 not found, 126 found but not runnable (exec step); None for other steps."""
    if err.step != native.STEP_EXEC:
        return None
    import errno
    return 127 if err.errno in (errno.ENOENT, errno.ENOTDIR, errno.ENAMETOOLONG, errno.ELOOP) else 126
