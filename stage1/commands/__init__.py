"""The command line: options and output only; the work is in the layers below.

This package's __init__ holds what every command shares: the option
parser, UsageError and the exit codes.  A small parser of our own instead
of argparse: argparse (with enum and re) costs 17 ms at start-up here, and
`stage1 exec` must start within twice a bare interpreter's time.  Usage
errors exit 2 with one line.

main.py is the entry point and `exec` (whose start-up counts); pod.py the
pod commands (run, status, stop, ps, enter, gc); live.py those of a live
pod (app, events, logs); helptext.py every command's help, usage lines and
the manual page, loaded only for help or a usage error.  Help and usage
errors: `stage1 COMMAND --help` and `stage1 help COMMAND` on stdout, exit
0; a usage error is one line and the command's usage line on stderr,
exit 2, never anything on stdout.  May import every layer.
"""

EXIT_USAGE = 2
EXIT_FAILURE = 254          # rkt's code for a failure of stage1 itself

class UsageError(Exception):
    """A bad command line: one line saying what, then the command's usage line."""

    def __init__(self, message, command=None):
        super().__init__(message)
        self.command = command

    def usage_line(self):
        from stage1.commands import helptext     # only on this path: see helptext
        return helptext.usage_line(self.command)


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


