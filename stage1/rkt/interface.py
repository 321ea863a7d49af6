"""rkt's stage1 interface: the flags and argument forms rkt passes to each
entrypoint (rkt's Documentation/devel/stage1-implementors-guide.md and
its stage0), set apart from stage1's own options by the commands.
"""

# Every flag of rkt's stage1 run interface (v1-v5).  Those stage1 does not
# act on yet are accepted and named in the debug log.
RUN_FLAGS = ("--net", "--mds-token", "--local-config", "--private-users", "--hostname",
             "--dns", "--dns-search", "--dns-opt", "--dns-domain", "--hosts-entry",
             "--ipc", "--disable-capabilities-restriction", "--disable-paths",
             "--disable-seccomp", "--set-env", "--set-env-file", "--insecure-options",
             "--dns-conf-mode")

# rkt's crossing entrypoints (app add/start/stop/rm) pass these; stage1
# takes them and does not act on them.
APP_FLAGS = ("--uuid", "--disable-capabilities-restriction", "--disable-paths",
             "--disable-seccomp", "--private-users")


def split_run_flags(args):
    """rkt's flags come as --flag=value (or bare): (the other args, {flag: value})."""
    rest, flags = [], {}
    for arg in args:
        key, eq, value = arg.partition("=")
        if key in RUN_FLAGS:
            flags[key] = value if eq else True
        else:
            rest.append(arg)
    return rest, flags


def app_args(args):
    """Drop the rkt flags stage1 does not act on; rkt passes --debug=BOOL."""
    out = []
    for arg in args:
        key, _, value = arg.partition("=")
        if key in APP_FLAGS:
            continue
        if key == "--debug" and value in ("true", "false"):
            if value == "true":
                out.append("--debug")
            continue
        out.append(arg)
    return out
