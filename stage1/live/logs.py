"""App output: `inherit`, `prefix` or `file` (app annotation `stage1/log`).

inherit costs the init nothing: the app writes to the init's own stdout
and stderr.  prefix and file put a pipe between the app and the init:
the init reads what is there, keeps the last unfinished line for later
and writes the whole lines, each batch in one write(2), so lines from
different apps never cut into each other (the init is one thread).  A line
longer than MAX_LINE is split, not lost; whatever is left in the pipe when
an app exits is drained before the pod ends.  file mode appends to
POD/logs/<app>.log and rotates it at `stage1/log-max-bytes`, keeping
`stage1/log-keep` old files.

The hot path never splits what it reads into a list of lines (10000
objects per MB, three times the CPU): the bytes read go to the sink as
they are, with the unfinished line of the last read in front and the
end of the last whole line; tagging is one bytes.replace and the check
for long lines a few bytes.find.  Each 64 KiB read costs two allocations
(the read, the tagged copy), since fresh ones are where the kernel time
goes (page faults as malloc gives memory back and takes it again).
"""
import array
import fcntl
import os
import termios

MAX_LINE = 64 * 1024
READ_SIZE = 64 * 1024


def write_all(fd, *buffers):
    """Every byte of buffers, in order, with as few writev(2) as it takes."""
    views = [memoryview(b) for b in buffers if len(b)]
    while views:
        try:
            n = os.writev(fd, views)
        except InterruptedError:
            continue
        except BlockingIOError:
            # Our stdout is non-blocking (someone else's setting): wait for it.
            import select
            select.select([], [fd], [])
            continue
        while n:
            if n >= len(views[0]):
                n -= len(views.pop(0))
            else:
                views[0], n = views[0][n:], 0


class PrefixSink:
    """Lines go to fd tagged `<app>| `."""

    def __init__(self, name, fd):
        self.prefix = name.encode() + b"| "
        self.sep = b"\n" + self.prefix
        self.fd = fd

    def write(self, head, data, end):
        """head + data[:end] are whole lines (head has no newline)."""
        # Each newline becomes newline + tag, the first line's tag goes in
        # front, and what follows the last newline (the next, unfinished
        # line, which the relay keeps) is not written.
        tagged = data.replace(b"\n", self.sep)
        cut = tagged.rfind(b"\n") + 1      # data[end:] holds no newline
        write_all(self.fd, self.prefix, head, memoryview(tagged)[:cut])

    def close(self):
        pass


class TeeSink:
    """Lines to a sink (the terminal) and a copy to a FileSink
    (`stage1/log-copy`).  A copy that cannot be written is said once and
    dropped; the lines still go to the terminal."""

    def __init__(self, sink, copy, warn):
        self.sink, self.copy, self.warn = sink, copy, warn

    def write(self, head, data, end):
        self.sink.write(head, data, end)
        if self.copy is None:
            return
        try:
            self.copy.write(head, data, end)
        except OSError as err:
            self.warn("unable to keep a copy of an app's output in %s: %s; no copy from now on"
                      % (self.copy.path, err.strerror or err))
            self.copy = None

    def close(self):
        pass


class FileSink:
    """Lines appended to a file rotated at max_bytes, keeping `keep` old ones."""

    def __init__(self, path, max_bytes, keep):
        self.path, self.max_bytes, self.keep = path, max_bytes, keep
        self.fd = None
        self.size = 0

    def _open(self):
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        self.fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        self.size = os.fstat(self.fd).st_size

    def _rotate(self):
        os.close(self.fd)
        self.fd = None
        for i in range(self.keep, 0, -1):
            src = self.path if i == 1 else "%s.%d" % (self.path, i - 1)
            try:
                if i == self.keep and os.path.exists("%s.%d" % (self.path, i)):
                    os.unlink("%s.%d" % (self.path, i))
                os.rename(src, "%s.%d" % (self.path, i))
            except FileNotFoundError:
                pass
        if self.keep == 0:
            os.unlink(self.path)
        self._open()

    def write(self, head, data, end):
        """head + data[:end] are whole lines (head has no newline).  The
        file is rotated before the line that would take it past max_bytes
        (so one read may span files); a longer line gets a file of its own."""
        if self.fd is None:
            self._open()
        n = len(head) + end
        if self.size + n <= self.max_bytes:
            # the common case: no rotation in this batch, and no copy
            write_all(self.fd, head, memoryview(data)[:end])
            self.size += n
            return
        lines = (head + data[:end]).split(b"\n")
        lines.pop()
        batch, size = [], self.size
        for line in lines:
            if size and size + len(line) + 1 > self.max_bytes:
                self._append(batch)
                self._rotate()
                batch, size = [], 0
            batch.append(line)
            size += len(line) + 1
        self._append(batch)

    def _append(self, batch):
        if batch:
            data = b"".join(line + b"\n" for line in batch)
            write_all(self.fd, data)
            self.size += len(data)

    def close(self):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


class LineRelay:
    """Reads one pipe, hands whole lines to a sink, drains on close."""

    def __init__(self, fd, sink, loop, warn=None):
        self.fd, self.sink, self.loop = fd, sink, loop
        self.warn = warn
        self.failed = False
        self.partial = b""
        os.set_blocking(fd, False)
        loop.add_reader(fd, self._readable)

    def _readable(self):
        self.pump()

    def pump(self):
        """Read what is there now; returns False at EOF (and closes)."""
        for _ in range(4):      # then let the other apps have their turn
            try:
                data = os.read(self.fd, READ_SIZE)
            except BlockingIOError:
                break
            except InterruptedError:
                continue
            if not data:
                self._feed(b"", eof=True)
                self.close()
                return False
            self._feed(data)
        return True

    def _feed(self, data, eof=False):
        """The whole lines of partial + data to the sink; the rest waits."""
        end = data.rfind(b"\n") + 1
        head = self.partial
        if not end:
            self.partial = head + data
        elif len(head) + data.find(b"\n") > MAX_LINE or _has_long_line(data, end):
            self.partial = data[end:]
            self._deliver_block(_cut_long(head + data[:end]))     # rare: the simple way
        else:
            self.partial = data[end:]
            self._deliver(head, data, end)
        if len(self.partial) > MAX_LINE:
            # pieces of MAX_LINE, leaving 1 to MAX_LINE bytes for later
            cut = (len(self.partial) - 1) // MAX_LINE * MAX_LINE
            self._deliver_block(_cut_long(self.partial[:cut] + b"\n"))
            self.partial = self.partial[cut:]
        if eof and self.partial:
            self._deliver_block(self.partial + b"\n")
            self.partial = b""

    def _deliver_block(self, block):
        self._deliver(b"", block, len(block))

    def _deliver(self, head, data, end):
        """A sink that fails (a full disk, a closed stdout) loses those lines
        and says so once; the pipe is still read, so the app never blocks
        on it, and the init goes on."""
        try:
            self.sink.write(head, data, end)
        except OSError as err:
            if not self.failed and self.warn is not None:
                self.warn("unable to write the output of an app (%s): %s; lines are lost"
                          % (getattr(self.sink, "path", "stdout/stderr"),
                             err.strerror or err))
            self.failed = True

    def drain(self):
        """Everything in the pipe now, then the partial line (the pod is ending)."""
        while self.fd is not None and _pending(self.fd) > 0:
            if not self.pump():
                return
        if self.fd is not None and self.partial:
            self._deliver_block(self.partial + b"\n")
            self.partial = b""

    def close(self):
        if self.fd is not None:
            self.loop.remove_reader(self.fd)
            os.close(self.fd)
            self.fd = None


def _has_long_line(data, end):
    """Is a line of data[:end] (ending with a newline) longer than MAX_LINE?

    Such a line covers a whole aligned window of MAX_LINE/2 bytes, which
    then holds no newline: a few finds clear the region; only one with a
    line of 32 KiB or more is split to be sure."""
    if end <= MAX_LINE:
        return False
    w = MAX_LINE // 2
    if all(data.find(b"\n", k, min(k + w, end)) >= 0 for k in range(0, end, w)):
        return False
    return max(map(len, data[:end].split(b"\n"))) > MAX_LINE


def _cut_long(block):
    """block (whole lines) with each line longer than MAX_LINE cut into
    MAX_LINE pieces."""
    out = []
    lines = block.split(b"\n")
    lines.pop()
    for line in lines:
        while len(line) > MAX_LINE:
            out.append(line[:MAX_LINE])
            line = line[MAX_LINE:]
        out.append(line)
    return b"\n".join(out) + b"\n"


def _pending(fd):
    """Bytes waiting in a pipe (FIONREAD)."""
    buf = array.array("i", [0])
    try:
        fcntl.ioctl(fd, termios.FIONREAD, buf)
    except OSError:
        return 0
    return buf[0]
