"""The terminal: when stdin is a terminal whose foreground group is the
init's, the app runs in a process group of its own which becomes the
terminal's foreground group, so an interactive shell works and Ctrl-C
reaches the app (and not the init)."""
import errno
import fcntl
import os
import select
import termios
import time

import pytest

from conftest import DEADLINE, children, cmdline, exec_argv, py, read_json, wait_until

PIDS = pytest.mark.parametrize("pid1", [False, True], ids=["subreaper", "pid1"])


class Terminal:
    """A pty whose slave is the controlling terminal of a new session."""

    def __init__(self):
        self.master, self.slave = os.openpty()
        self.output = b""

    def start(self, procs, cmd, *options, pid1=False):
        def take_terminal():
            os.setsid()
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)
        popen = procs.start(exec_argv(cmd, *options, pid1=pid1), stdin=self.slave,
                            stdout=self.slave, stderr=self.slave, preexec_fn=take_terminal)
        os.close(self.slave)
        self.slave = None
        return popen

    def write(self, data):
        os.write(self.master, data)

    def read_until(self, text, timeout=DEADLINE):
        """Read until `text` has appeared since the last call; return what came."""
        deadline = time.monotonic() + timeout
        start = len(self.output)
        while text.encode() not in self.output[start:]:
            left = deadline - time.monotonic()
            if left <= 0 or not self._read(left):
                raise AssertionError("%r never came on the terminal; got %r"
                                     % (text, self.output[start:]))
        return self.output[start:].decode(errors="replace")

    def drain(self):
        """Everything until the slave side is closed by every process."""
        while self._read(DEADLINE):
            pass
        return self.output.decode(errors="replace")

    def _read(self, timeout):
        if not select.select([self.master], [], [], timeout)[0]:
            return False
        try:
            data = os.read(self.master, 4096)
        except OSError as err:
            if err.errno == errno.EIO:      # every slave fd is closed
                return False
            raise
        self.output += data
        return bool(data)

    def close(self):
        for fd in (self.master, self.slave):
            if fd is not None:
                os.close(fd)


@pytest.fixture
def term():
    t = Terminal()
    yield t
    t.close()


FOREGROUND = ("import os; print('pid=%d pgrp=%d fg=%d' % "
              "(os.getpid(), os.getpgrp(), os.tcgetpgrp(0)), flush=True)")


@PIDS
def test_app_gets_its_own_group_as_the_terminals_foreground(procs, term, pid1):
    popen = term.start(procs, py(FOREGROUND), pid1=pid1)
    assert popen.wait(DEADLINE) == 0
    line = [l for l in term.drain().splitlines() if l.startswith("pid=")][0]
    fields = dict(f.split("=") for f in line.split())
    assert fields["pid"] == fields["pgrp"] == fields["fg"]


def find_child(pid, name):
    """A descendant of pid whose argv[0] is name."""
    def find():
        todo = [pid]
        while todo:
            for child in children(todo.pop()):
                if cmdline(child).split(b"\0")[0] == name:
                    return child
                todo.append(child)
        return None
    return wait_until(find, what="a %s below pid %d" % (name.decode(), pid))


@pytest.mark.parametrize("script,code,signal_name", [
    ('trap "exit 130" INT; echo ready; while :; do sleep 0.1; done', 130, None),
    ("echo ready; while :; do sleep 0.1; done", 130, "SIGINT"),
], ids=["trap", "default"])
@PIDS
def test_ctrl_c_reaches_the_app_not_the_init(procs, term, tmp_path, pid1, script, code,
                                            signal_name):
    # With a trap the shell exits 130 itself; without one it dies of SIGINT,
    # which the init also reports as 130: the status file tells them apart.
    popen = term.start(procs, ["sh", "-c", script], "-v", "--status-dir", tmp_path,
                       "--name", "app", pid1=pid1)
    term.read_until("ready")
    term.write(b"\x03")
    assert popen.wait(DEADLINE) == code
    st = read_json(tmp_path / "app.json")
    assert (st["exitCode"], st["signal"]) == (code, signal_name)
    # The init was not in the foreground group: it got no SIGINT to pass on.
    assert "received SIGINT" not in term.drain()


@PIDS
def test_interactive_shell_works(procs, term, pid1):
    popen = term.start(procs, ["sh", "-i"], pid1=pid1)
    term.write(b"echo answer=$((6*7))\n")
    term.read_until("answer=42")
    # A foreground job of the shell's, interrupted from the keyboard.
    term.write(b"sleep 30\n")
    find_child(popen.pid, b"sleep")
    term.write(b"\x03")
    term.write(b"echo status=$?\n")
    term.read_until("status=130")
    term.write(b"exit 3\n")
    assert popen.wait(DEADLINE) == 3
    out = term.drain()
    assert "job control turned off" not in out and "can't access tty" not in out, out
