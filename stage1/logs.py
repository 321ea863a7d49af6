"""App output: `inherit`, `prefix` or `file` (app annotation `stage1/log`).

inherit costs the init nothing: the app writes to the init's own stdout
and stderr.  prefix and file put a pipe between the app and the init:
the init cuts what it reads into lines and writes whole lines only, each
batch in one write(2), so lines from different apps never cut into each
other (the init is one thread).  A line longer than MAX_LINE is split,
not lost; whatever is left in the pipe when an app exits is drained before
the pod ends.  file mode appends to POD/logs/<app>.log and rotates it at
`stage1/log-max-bytes`, keeping `stage1/log-keep` old files.
"""
import array
import fcntl
import os
import termios

MAX_LINE = 64 * 1024
READ_SIZE = 64 * 1024


def write_all(fd, data):
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view):]
        except InterruptedError:
            continue
        except BlockingIOError:
            # Our stdout is non-blocking (someone else's setting): wait for it.
            import select
            select.select([], [fd], [])


class PrefixSink:
    """Lines go to fd tagged `<app>| `."""

    def __init__(self, name, fd):
        self.prefix = name.encode() + b"| "
        self.fd = fd

    def lines(self, lines):
        p = self.prefix
        write_all(self.fd, b"".join(p + line + b"\n" for line in lines))

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

    def lines(self, lines):
        """Whole lines; the file is rotated before the line that would take
        it past max_bytes (so a batch read at once may span files), and a
        line longer than that gets a file of its own."""
        if self.fd is None:
            self._open()
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
        chunks = []
        while True:
            try:
                data = os.read(self.fd, READ_SIZE)
            except BlockingIOError:
                break
            except InterruptedError:
                continue
            if not data:
                self._feed(b"".join(chunks), eof=True)
                self.close()
                return False
            chunks.append(data)
            if len(chunks) >= 4:
                break      # let the other apps have their turn
        self._feed(b"".join(chunks))
        return True

    def _feed(self, data, eof=False):
        buf = self.partial + data
        lines = buf.split(b"\n")
        self.partial = lines.pop()
        out = []
        for line in lines:
            while len(line) > MAX_LINE:
                out.append(line[:MAX_LINE])
                line = line[MAX_LINE:]
            out.append(line)
        while len(self.partial) > MAX_LINE:
            out.append(self.partial[:MAX_LINE])
            self.partial = self.partial[MAX_LINE:]
        if eof and self.partial:
            out.append(self.partial)
            self.partial = b""
        if out:
            self._deliver(out)

    def _deliver(self, lines):
        """A sink that fails (a full disk, a closed stdout) loses those lines
        and says so once; the pipe is still read, so the app never blocks
        on it, and the init goes on."""
        try:
            self.sink.lines(lines)
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
            self._deliver([self.partial])
            self.partial = b""

    def close(self):
        if self.fd is not None:
            self.loop.remove_reader(self.fd)
            os.close(self.fd)
            self.fd = None


def _pending(fd):
    """Bytes waiting in a pipe (FIONREAD)."""
    buf = array.array("i", [0])
    try:
        fcntl.ioctl(fd, termios.FIONREAD, buf)
    except OSError:
        return 0
    return buf[0]
