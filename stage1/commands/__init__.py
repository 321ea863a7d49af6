"""The command line: options and output only; the work is in the layers below.

This package's __init__ holds what every command shares: the option
parser, UsageError and the exit codes.  A small parser of our own instead
of argparse: argparse (with enum and re) costs 17 ms at start-up here, and
`stage1 exec` must start within twice a bare interpreter's time.  Usage
errors exit 2 with one line.

main.py is the entry point and `exec` (whose start-up counts); pod.py the
pod commands (run, status, stop, ps, enter, gc); live.py those of a live
pod (app, events, logs).  May import every layer.
"""

EXIT_USAGE = 2
EXIT_FAILURE = 254          # rkt's code for a failure of stage1 itself

USAGE = """\
usage: stage1 exec [OPTIONS] [--] CMD [ARGS...]
       stage1 run [OPTIONS] [FILE | POD | UUID]
       stage1 status POD [--json] [--wait-ready [--timeout S]]
       stage1 stop [--force] [POD | UUID]
       stage1 ps POD
       stage1 enter [--pid=PID] --appname=NAME [POD] [-- CMD [ARGS...]]
       stage1 gc [--debug] [--local-config DIR] [POD | UUID]
       stage1 app start|stop|restart|rm|add [POD] --app NAME [--manifest FILE]
       stage1 events [POD] [--follow]
       stage1 logs [POD] [--app NAME] [--follow]
       stage1 --version | --help

exec options:
  --grace SECONDS     SIGKILL what is left this long after a stop signal (default 10, 0: never)
  -g, --group         pass signals to the app's process group
  --status-dir DIR    write DIR/NAME and DIR/NAME.json when the app exits
  --name NAME         the status name (default: basename of CMD)
  --pdeathsig SIG     have the kernel send SIG to the init when its parent dies
  -v, --verbose       log signals, reaped pids and decisions to stderr
"""


class UsageError(Exception):
    """A bad command line: one line saying what, then the command's usage line."""

    def __init__(self, message, command=None):
        super().__init__(message)
        self.command = command

    def usage_line(self):
        for line in USAGE.splitlines():
            words = line.replace("usage:", "").split()
            if self.command and words[1:2] == [self.command]:
                return "usage: " + " ".join(words)
        return USAGE.splitlines()[0]


def parse(args, options, stop_at_positional=False):
    """Split args into ({name: value}, positionals).

    `options` maps each spelling ('-g', '--grace') to (name, takes_value).
    With stop_at_positional, the first positional and everything after it
    are returned as positionals untouched (the command of `exec`)."""
    opts, positionals = {}, []
    i = 0
    while i < len(args):
        arg = args[i]
        i += 1
        if arg == "--":
            positionals.extend(args[i:])
            break
        if not arg.startswith("-") or arg == "-":
            positionals.append(arg)
            if stop_at_positional:
                positionals.extend(args[i:])
                break
            continue
        key, eq, value = arg.partition("=")
        if key not in options:
            raise UsageError("unknown option %s" % key)
        name, takes_value = options[key]
        if takes_value and not eq:
            if i >= len(args):
                raise UsageError("option %s needs a value" % key)
            value = args[i]
            i += 1
        elif not takes_value and eq:
            raise UsageError("option %s takes no value" % key)
        opts[name] = value if takes_value else True
    return opts, positionals


MAX_SECONDS = 2147483      # the longest single wait epoll takes (2**31 ms): 24 days


def seconds(text, what):
    try:
        value = float(text) if text.isascii() else -1.0
    except ValueError:
        value = -1.0
    if not value >= 0 or value == float("inf"):       # NaN fails too
        raise UsageError("%s must be a number of seconds >= 0, not %r" % (what, text))
    if value > MAX_SECONDS:
        raise UsageError("%s must be at most %d seconds, not %r" % (what, MAX_SECONDS, text))
    return value


