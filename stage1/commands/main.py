"""`stage1`: the entry point, and `stage1 exec`.

exec is parsed here, with nothing but what it needs imported: the other
commands' modules are imported only when they are the command (a lazy
import for start-up time: `stage1 exec` pays for none of them).
"""
import os
import sys

from stage1.commands import EXIT_FAILURE, EXIT_USAGE, UsageError, parse, seconds

EXEC_OPTIONS = {
    "--grace": ("grace", True), "-g": ("group", False), "--group": ("group", False),
    "--status-dir": ("status_dir", True), "--name": ("name", True),
    "--pdeathsig": ("pdeathsig", True), "-v": ("verbose", False),
    "--verbose": ("verbose", False), "-h": ("help", False), "--help": ("help", False),
}


def cmd_exec(args):
    opts, command = parse(args, EXEC_OPTIONS, stop_at_positional=True)
    if opts.get("help"):
        return show_help("exec")
    if not command:
        raise UsageError("exec needs a command")
    grace = seconds(opts.get("grace", "10"), "--grace")
    pdeathsig = None
    if "pdeathsig" in opts:
        from stage1.engine import native
        try:
            pdeathsig = native.signal_number(opts["pdeathsig"])
        except ValueError as err:
            raise UsageError("--pdeathsig: %s" % err)
    name = opts.get("name") or os.path.basename(command[0])
    if "/" in name or name in ("", ".", ".."):
        raise UsageError("--name %r: a status name is a plain file name" % name, "exec")
    from stage1.engine import execmode
    return execmode.run(command, name=name, grace=grace, group=bool(opts.get("group")),
                        status_dir=opts.get("status_dir"), pdeathsig=pdeathsig,
                        verbose=bool(opts.get("verbose")))


def commands():
    from stage1.commands import live, pod     # lazily: see the docstring
    table = {"exec": cmd_exec, "help": cmd_help}
    table.update(pod.COMMANDS)
    table.update(live.COMMANDS)
    return table


def show_help(command=None):
    from stage1.commands import helptext      # lazily: see the docstring
    sys.stdout.write(helptext.overview() if command is None else helptext.command_help(command))
    return 0


def cmd_help(args):
    """`stage1 help [COMMAND]`, `stage1 help --man`."""
    if args in (["-h"], ["--help"]):
        return show_help("help")
    if args == ["--man"]:
        from stage1 import __version__
        from stage1.commands import helptext
        sys.stdout.write(helptext.man_page(__version__))
        return 0
    if len(args) > 1 or (args and args[0] not in commands()):
        raise UsageError("help takes one command, not %r" % " ".join(args) if len(args) > 1
                         else "no command %r" % args[0], "help")
    return show_help(args[0] if args else None)


def wants_help(args):
    """-h or --help among a command's options (before `--`: what follows
    it is another program's)."""
    for arg in args:
        if arg == "--":
            return False
        if arg in ("-h", "--help"):
            return True
    return False


def main(argv=None):
    args = sys.argv[1:] if argv is None else argv
    try:
        if not args:
            from stage1.commands import helptext
            sys.stderr.write(helptext.overview())
            return EXIT_USAGE
        if args[0] in ("-h", "--help"):
            return show_help()
        if args[0] == "--version":
            from stage1 import __version__
            sys.stdout.write("stage1 %s\n" % __version__)
            return 0
        if args[0] == "exec":
            return cmd_exec(args[1:])
        command = commands().get(args[0])
        if command is None:
            raise UsageError("unknown command %r" % args[0])
        if args[0] != "help" and wants_help(args[1:]):
            return show_help(args[0])
        return command(args[1:])
    except UsageError as err:
        if err.command is None and args and args[0] in commands():
            err.command = args[0]
        sys.stderr.write("stage1: %s\n%s\n" % (err, err.usage_line()))
        return EXIT_USAGE
    except ValueError as err:
        # A PodError from finding the pod a command names (pod/errors.py):
        # one line, 254.  Loaded only if raised, so exec pays nothing.
        from stage1.pod.errors import PodError
        if not isinstance(err, PodError):
            raise
        sys.stderr.write("stage1: %s\n" % err)
        return EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())
