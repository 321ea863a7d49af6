"""The help of every command: `stage1 COMMAND --help`, `stage1 help
COMMAND`, `stage1 --help` (the list of commands), the usage lines of usage
errors, and the manual page (`stage1 help --man`), all from the one table
below.  Imported only when help or a usage error is asked for, so no
command's start-up pays for it (`stage1 exec` imports none of it).

Each command: its usage lines, one line of summary, what it does, its
options (spelling, what), and its exit codes.  tests/test_help.py checks
that every option each command's parser takes is in its help.
"""

PROG = "stage1"

COMMON_POD = ("POD is a pod directory; UUID is rkt's form, the name of the current "
              "directory (rkt runs its stage1 with cwd in the pod and the UUID last); "
              "without either, the pod is the current directory.")

EXIT_USAGE = ("2", "usage error (one line on stderr and the usage)")
EXIT_NO_POD = ("254", "no such pod, no status, or no running init")

COMMANDS = [
    ("exec", {
        "usage": ["stage1 exec [OPTIONS] [--] CMD [ARGS...]"],
        "summary": "run one command as its init: reap, pass signals on, stop gracefully",
        "text": "Runs CMD as the only child of an init: every zombie is reaped (orphans "
                "included: stage1 is PID 1 or a child subreaper), every signal but SIGCHLD "
                "is passed to CMD, and after a stop signal (TERM, INT, QUIT) what is left "
                "gets SIGKILL when the grace period ends. When CMD exits, the processes "
                "still left get SIGTERM, then SIGKILL after the grace period, and stage1 "
                "exits with CMD's status. CMD gets the caller's environment, cwd, standard "
                "streams, inherited fds and signal mask, and nothing of stage1's. It is "
                "searched in PATH. The container form: ENTRYPOINT [\"stage1\", \"exec\", "
                "\"--\"].",
        "options": [
            ("--grace SECONDS", "SIGKILL what is left this long after a stop signal "
                                "(default 10; 0: never)"),
            ("-g, --group", "pass signals to CMD's process group"),
            ("--status-dir DIR", "write DIR/NAME (its exit code) and DIR/NAME.json when "
                                 "CMD exits"),
            ("--name NAME", "the status name (default: the basename of CMD)"),
            ("--pdeathsig SIG", "have the kernel send SIG to stage1 when its parent dies"),
            ("-v, --verbose", "log signals, reaped pids and decisions to stderr"),
            ("-h, --help", "show this help"),
        ],
        "exits": [("N", "CMD's exit code"), ("128+N", "CMD was killed by signal N"),
                  ("126", "CMD cannot be executed"), ("127", "CMD was not found"),
                  EXIT_USAGE, ("254", "a failure of stage1 itself")],
    }),
    ("run", {
        "usage": ["stage1 run [OPTIONS] [rkt run flags] [FILE | POD | UUID]"],
        "summary": "run a pod (a pod file, a Procfile or an appc pod manifest)",
        "text": "FILE is a pod file (TOML, one table per app) or a Procfile, compiled "
                "to an appc pod manifest and run in a pod directory of its own "
                "(/run/stage1/NAME as root, $XDG_RUNTIME_DIR/stage1/NAME otherwise, or "
                "--pod-dir), found by name by the other commands. "
                "Otherwise the init of an appc pod in rkt's pod directory layout (POD/pod, the "
                "apps' status in <stage1 root>/rkt/status/). Every app starts with what "
                "its manifest gives it; restart and exit policies, start order, readiness, "
                "logs and events come from the stage1/ annotations. SIGTERM and SIGINT "
                "(and stage1 stop) stop the pod: each app gets its stop signal, SIGKILL "
                "after the stop timeout. A pod whose apps have roots (rkt always gives "
                "them) is isolated: namespaces, app roots, cgroups, seccomp, capabilities, "
                "CNI networks. " + COMMON_POD,
        "options": [
            ("--grace SECONDS", "the stop timeout when the pod gives none "
                                "(stage1/stop-timeout; default 10)"),
            ("-v, --verbose, --debug", "log decisions to stderr"),
            ("--interactive", "give the apps stage1's stdin (else /dev/null)"),
            ("--mutable", "a pod that apps are added to and removed from while it runs; "
                          "it does not end with its last app"),
            ("--pod-dir DIR", "a pod file's pod directory (default: the runtime directory)"),
            ("--print-manifest", "print the appc pod manifest a pod file compiles to, "
                                 "and run nothing"),
            ("--isolate", "isolate the pod even if no app has a root"),
            ("--no-isolate", "do not isolate it (isolators and mounts are reported, not "
                             "applied)"),
            ("--net=host|none|NET[,NET...]", "the pod's network: the host's (the default "
                                             "without --net), only lo, or CNI networks "
                                             "(rkt's default, default-restricted, "
                                             "<local-config>/net.d/*.conf)"),
            ("--local-config=DIR", "where net.d is (default /etc/rkt)"),
            ("--hostname=NAME", "the pod's hostname (default rkt-<UUID>)"),
            ("--dns-conf-mode=resolv=MODE,hosts=MODE", "each app's /etc/resolv.conf and "
                                                        "/etc/hosts: stage0, host, none, "
                                                        "default"),
            ("--ipc=auto|private|parent", "parent: the host's IPC namespace"),
            ("--disable-capabilities-restriction, --disable-paths, --disable-seccomp",
             "rkt's --insecure-options: leave capabilities, protected paths or seccomp "
             "alone"),
            ("--private-users=..., --mds-token=..., --dns=..., --dns-search=..., "
             "--dns-opt=..., --dns-domain=..., --hosts-entry=..., --set-env=..., "
             "--set-env-file=..., --insecure-options=...",
             "rkt's other stage1 flags (of every interface version): taken where stage1 "
             "acts on them (--private-users, --dns*), else not acted on "
             "(logged with --debug)"),
            ("-h, --help", "show this help"),
        ],
        "exits": [("0", "every app ended as the exit policy wants, or the pod was stopped"),
                  ("N", "the code of the app that decided the pod's end (stage1/exit-policy: "
                        "onAnyFailure, onAny, untilAll); 128+N when signal N killed it"),
                  EXIT_USAGE,
                  ("254", "a failure of stage1 itself (a bad manifest, an app that could not "
                          "be set up), as rkt's stage1")],
    }),
    ("status", {
        "usage": ["stage1 status [POD | UUID] [--json] [--wait-ready [--timeout S]]"],
        "summary": "the state of a pod and of each of its apps",
        "text": "One line for the pod, then one per app: state, pid, exit code, restarts, "
                "start and finish times, reason; read from the status files, so it works "
                "for a pod that has ended. " + COMMON_POD,
        "options": [
            ("--json", "the pod's and the apps' status as JSON"),
            ("--wait-ready", "first wait until every app is ready (rkt's supervisor-status)"),
            ("--timeout S", "with --wait-ready: give up after S seconds"),
            ("-h, --help", "show this help"),
        ],
        "exits": [("0", "done"), ("1", "--wait-ready: not ready in time, or the pod ended "
                                       "first"),
                  EXIT_USAGE, ("254", "the pod has not run (no status)")],
    }),
    ("stop", {
        "usage": ["stage1 stop [--force] [POD | UUID]"],
        "summary": "stop a running pod (--force: kill it)",
        "text": "Sends SIGTERM to the pod's init, which stops every app gracefully and "
                "exits; with --force, SIGKILLs the init and every process of the pod at "
                "once. The init is found from POD/pid and its process title, so no "
                "unrelated process is ever signalled. rkt's stop entrypoint. " + COMMON_POD,
        "options": [("-f, --force", "SIGKILL the pod's processes at once"),
                    ("-h, --help", "show this help")],
        "exits": [("0", "the signal was sent"), EXIT_USAGE, EXIT_NO_POD],
    }),
    ("ps", {
        "usage": ["stage1 ps [POD | UUID]"],
        "summary": "a running pod's processes, by app",
        "text": "Every process of the pod, grouped by app: its pid on the host, its pid "
                "in the pod's PID namespace, state, CPU, RSS and command. " + COMMON_POD,
        "options": [("-h, --help", "show this help")],
        "exits": [("0", "done"), EXIT_USAGE, EXIT_NO_POD],
    }),
    ("enter", {
        "usage": ["stage1 enter [--pid=PID] --appname=NAME [POD] [-- CMD [ARGS...]]",
                  "stage1 enter POD --app NAME [-- CMD [ARGS...]]"],
        "summary": "run a command inside a running pod's app",
        "text": "Joins the pod's namespaces and runs CMD (default /bin/sh) as the app "
                "runs: its root, environment, user, group, working directory, cgroups, "
                "capabilities and seccomp filter. Signals are passed on. The first form is "
                "rkt's enter entrypoint (cwd in the pod, --pid the pod's init).",
        "options": [("--appname NAME, --app NAME", "the app to enter"),
                    ("--pid PID", "the pod's init (rkt's form; default: from POD/pid)"),
                    ("-v, --debug", "log what is done to stderr"),
                    ("-h, --help", "show this help (before --)")],
        "exits": [("N", "CMD's exit code"), ("126", "CMD cannot be executed"),
                  ("127", "CMD was not found"), EXIT_USAGE,
                  ("254", "the pod cannot be entered")],
    }),
    ("gc", {
        "usage": ["stage1 gc [--debug] [--local-config DIR] [POD | UUID]"],
        "summary": "clean up after an exited pod: networks, mounts, cgroups",
        "text": "Tears down the pod's CNI networks (DEL to each plugin, then its network "
                "namespace), unmounts what is mounted under the pod directory and removes "
                "its cgroups. It refuses a pod that still runs; running it twice is "
                "harmless. rkt's gc entrypoint (rkt gc). " + COMMON_POD,
        "options": [("--local-config DIR", "where net.d is (default /etc/rkt)"),
                    ("-v, --debug", "log what is done to stderr"),
                    ("-h, --help", "show this help")],
        "exits": [("0", "nothing of the pod is left"), EXIT_USAGE,
                  ("254", "the pod still runs, or something could not be removed (run it "
                          "again)")],
    }),
    ("app", {
        "usage": ["stage1 app start|stop|restart|rm [POD | UUID] --app NAME",
                  "stage1 app add [POD | UUID] --app NAME [--manifest RUNTIME_APP.json]"],
        "summary": "start, stop, restart, remove or add an app of a running pod",
        "text": "Asks the pod's init, through POD/stage1.sock, and prints its answer. "
                "start, stop and restart return once the app is there; add takes the app as "
                "POD/pod lists it, or from --manifest, and waits for app start; rm keeps "
                "the app's status files until gc. rkt's crossing entrypoints (app/add, "
                "app/start, app/stop, app/rm) are these, with --app=NAME and "
                "--debug=BOOL. " + COMMON_POD,
        "options": [("--app NAME", "the app"),
                    ("--manifest FILE", "app add: the app (a RuntimeApp, JSON)"),
                    ("-v, --debug", "log to stderr"),
                    ("-h, --help", "show this help")],
        "exits": [("0", "done"), ("1", "the pod refused (the error is printed)"), EXIT_USAGE,
                  ("254", "no pod to ask (no init listening)")],
    }),
    ("events", {
        "usage": ["stage1 events [POD | UUID] [--follow]"],
        "summary": "a pod's events, one JSON line each",
        "text": "Prints POD/events.jsonl: every transition of an app (started, ready, "
                "stopping, exited, restarting, added, removed) and of the pod (pod-ready, "
                "pod-exited), with a timestamp. With --follow, then the live stream, "
                "without a gap or a repeat, until the pod ends. " + COMMON_POD,
        "options": [("-f, --follow", "stream the events until the pod ends"),
                    ("-h, --help", "show this help")],
        "exits": [("0", "done"), ("1", "--follow: the stream ended before the pod did"),
                  EXIT_USAGE, ("254", "no events (the pod has not run), or no init to "
                                      "follow")],
    }),
    ("logs", {
        "usage": ["stage1 logs [POD | UUID] [--app NAME] [--follow]"],
        "summary": "the apps' file logs (stage1/log: file)",
        "text": "Prints POD/logs/<app>.log, each line tagged with its app when there are "
                "several; with --follow, goes on across rotations until the pod "
                "ends. " + COMMON_POD,
        "options": [("--app NAME", "only this app's log"),
                    ("-f, --follow", "follow the logs until the pod ends"),
                    ("-h, --help", "show this help")],
        "exits": [("0", "done"), EXIT_USAGE, ("254", "no log for an app")],
    }),
    ("help", {
        "usage": ["stage1 help [COMMAND]", "stage1 help --man"],
        "summary": "help on stage1 or a command; --man: the manual page (roff)",
        "text": "stage1 help COMMAND is stage1 COMMAND --help. stage1 help --man writes "
                "the manual page, stage1(1), to stdout: stage1 help --man > stage1.1; "
                "man ./stage1.1.",
        "options": [("--man", "the manual page, in roff")],
        "exits": [("0", "done"), EXIT_USAGE],
    }),
]
TABLE = dict(COMMANDS)

OVERVIEW_TEXT = ("A small PID 1 for pods and containers: stage1 exec runs one command as "
                 "its init (tini's job); stage1 run runs the apps of an appc pod, "
                 "supervised, on a host, in a container, or as rkt's stage1.")


def usage_line(command=None):
    """The first usage line of a command (or stage1's own)."""
    if command in TABLE:
        return "usage: " + TABLE[command]["usage"][0]
    return "usage: stage1 COMMAND [OPTIONS] [ARGS...]  (stage1 --help: the commands)"


def _wrap(text, indent, width=79):
    import textwrap
    return textwrap.fill(text, width=width, initial_indent=indent, subsequent_indent=indent,
                         break_on_hyphens=False, break_long_words=False)


def _pairs(rows, indent="  ", column=24):
    out = []
    for left, right in rows:
        first = indent + left
        if len(first) + 2 > column:
            out.append(first)
            out.append(_wrap(right, " " * column))
        else:
            wrapped = _wrap(right, " " * column).lstrip()
            out.append(first.ljust(column) + wrapped)
    return out


def command_help(command):
    """The text of `stage1 COMMAND --help`."""
    c = TABLE[command]
    lines = ["usage: " + c["usage"][0]] + ["       " + u for u in c["usage"][1:]]
    lines += ["", c["summary"][0].upper() + c["summary"][1:] + ".", "", _wrap(c["text"], ""),
              "", "options:"]
    lines += _pairs(c["options"])
    lines += ["", "exit codes:"] + _pairs(c["exits"], column=10)
    return "\n".join(lines) + "\n"


def overview():
    """The text of `stage1 --help`."""
    lines = ["usage: stage1 COMMAND [OPTIONS] [ARGS...]", "       stage1 --version | --help",
             "", _wrap(OVERVIEW_TEXT, ""), "", "commands:"]
    lines += _pairs([(name, c["summary"]) for name, c in COMMANDS], column=11)
    lines += ["", _wrap("stage1 COMMAND --help (or stage1 help COMMAND) shows a command's "
                        "options and exit codes; stage1 help --man writes the manual page.", "")]
    return "\n".join(lines) + "\n"


def _roff(text):
    text = text.replace("\\", "\\e").replace("-", "\\-")
    return "\n".join(("\\&" + line) if line.startswith((".", "'")) else line
                     for line in text.split("\n"))


def man_page(version):
    """stage1(1), in roff (man(7) macros)."""
    out = ['.TH STAGE1 1 "" "stage1 %s" "User Commands"' % version,
           ".SH NAME", "stage1 \\- a small PID 1 for pods and containers",
           ".SH SYNOPSIS"]
    for name, c in COMMANDS:
        for u in c["usage"]:
            out += [".br", _roff(u)]
    out += [".SH DESCRIPTION", _roff(OVERVIEW_TEXT), ".SH COMMANDS"]
    for name, c in COMMANDS:
        out += [".SS " + _roff(name), _roff(" ".join(c["usage"][:1])), ".PP",
                _roff(c["summary"][0].upper() + c["summary"][1:] + ". " + c["text"])]
        for left, right in c["options"]:
            out += [".TP", ".B " + _roff(left), _roff(right)]
        out += [".PP", "Exit codes:"]
        for left, right in c["exits"]:
            out += [".TP", ".B " + _roff(left), _roff(right)]
    out += [".SH SEE ALSO", "rkt(1), tini(1), dumb\\-init(1)", ""]
    return "\n".join(out)
