"""Help for every command: `stage1 COMMAND --help` and `stage1 help
COMMAND` (the same text, on stdout, exit 0, with the command's options and
exit codes), `stage1 --help` (the commands), `stage1 help --man`, and usage
errors (one line and the usage line on stderr, nothing on stdout, exit 2).
Every option each command's parser takes is in its help, so the two cannot
drift apart.
"""
import subprocess

import pytest

from podhelpers import STAGE1
from stage1.commands import helptext, live, main, pod
from stage1.rkt import interface

COMMANDS = ("exec", "run", "status", "stop", "ps", "enter", "gc", "app", "events", "logs")


def stage1(*args, cwd=None):
    return subprocess.run([STAGE1] + list(args), capture_output=True, text=True, timeout=15,
                          stdin=subprocess.DEVNULL, cwd=cwd)


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help_with_its_options_and_exit_codes(command, tmp_path):
    # in a directory that is no pod: help never touches one (stop --help stops nothing)
    r = stage1(command, "--help", cwd=str(tmp_path))
    assert (r.returncode, r.stderr) == (0, ""), r.stderr
    assert r.stdout.startswith("usage: stage1 %s" % command)
    assert "\noptions:\n" in r.stdout and "\nexit codes:\n" in r.stdout
    assert "  2       usage error" in r.stdout
    assert stage1("help", command).stdout == r.stdout
    assert stage1(command, "-h", cwd=str(tmp_path)).stdout == r.stdout


def _spellings(command):
    if command == "exec":
        return set(main.EXEC_OPTIONS)
    if command == "run":
        return set(pod.RUN_OPTIONS) | set(interface.RUN_FLAGS)
    return set(pod.OPTIONS.get(command) or live.OPTIONS.get(command) or ())


@pytest.mark.parametrize("command", COMMANDS)
def test_every_option_a_command_takes_is_in_its_help(command):
    text = helptext.command_help(command)
    options = "\n".join(left for left, _ in helptext.TABLE[command]["options"])
    words = {w.strip(",").split("=")[0] for w in options.split()}
    missing = sorted(o for o in _spellings(command) if o not in words)
    assert not missing, "%s --help does not name %s" % (command, missing)
    assert "-h, --help" in text


def test_the_top_level_help_lists_every_command():
    r = stage1("--help")
    assert (r.returncode, r.stderr) == (0, "")
    listed = [line.split()[0] for line in r.stdout.split("commands:\n")[1].split("\n\n")[0]
              .splitlines()]
    assert listed == list(COMMANDS) + ["help"]
    assert stage1("help").stdout == r.stdout


def test_no_command_is_a_usage_error_on_stderr():
    r = stage1()
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.startswith("usage: stage1 COMMAND") and "commands:" in r.stderr


@pytest.mark.parametrize("args,message", [
    (["bogus"], "unknown command 'bogus'"),
    (["status", "--bogus"], "unknown option --bogus"),
    (["stop", "--force=1"], "option --force takes no value"),
    (["ps", "-x"], "unknown option -x"),
    (["gc", "--local-config"], "option --local-config needs a value"),
    (["enter", "--pid=x", "--appname=a"], "--pid must be a process id"),
    (["app", "frob"], "app needs one of"),
    (["events", "--bogus"], "unknown option --bogus"),
    (["logs", "--app"], "option --app needs a value"),
    (["help", "bogus"], "no command 'bogus'"),
    (["help", "run", "stop"], "help takes one command"),
    (["run", "--bogus"], "unknown option --bogus"),
    (["exec", "--bogus", "--", "true"], "unknown option --bogus"),
])
def test_usage_errors_are_one_line_and_the_usage_on_stderr(args, message, tmp_path):
    r = stage1(*args, cwd=str(tmp_path))
    assert r.returncode == 2 and r.stdout == ""
    lines = r.stderr.splitlines()
    assert len(lines) == 2, r.stderr
    assert lines[0].startswith("stage1: ") and message in lines[0], r.stderr
    command = args[0] if args[0] in COMMANDS + ("help",) else "COMMAND"
    assert lines[1].startswith("usage: stage1 %s" % command)


def test_help_after_double_dash_is_the_commands():
    assert main.wants_help(["--app", "a", "--help"])
    assert not main.wants_help(["--app=a", "--", "sh", "--help"])
    # exec: --help after the command is the command's
    r = stage1("exec", "--", "sh", "-c", 'echo "$1"', "sh", "--help")
    assert (r.returncode, r.stdout) == (0, "--help\n")


def test_the_man_page_has_every_command():
    r = stage1("help", "--man")
    assert r.returncode == 0 and r.stdout.startswith(".TH STAGE1 1 ")
    for command in COMMANDS:
        assert "\n.SS %s\n" % command in r.stdout
    rendered = subprocess.run(["man", "-l", "-"], input=r.stdout, capture_output=True,
                              text=True, env={"MANWIDTH": "80", "PATH": "/usr/bin:/bin"})
    if rendered.returncode == 0:           # man-db present
        assert "stage1 exec [OPTIONS] [--] CMD [ARGS...]" in rendered.stdout
