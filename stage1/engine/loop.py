"""The event loop: one epoll, a deadline heap, nothing else.

tini-shaped: block in one epoll_wait whose timeout comes from the nearest
deadline, run the callbacks of the fds that are ready, then expire due
timers.  Signals arrive as a readable signalfd (see native.take_signals), so
there are no handlers, no threads, no sleeps and no polling: an idle init
makes one system call and wakes zero times a second.  The alternative,
Python signal handlers with set_wakeup_fd, was rejected: handlers run
between bytecodes at arbitrary points and lose siginfo (the sender's pid).
"""
import heapq
import select
import time

from stage1.engine import native

monotonic = time.monotonic
MAX_WAIT = 1e6           # seconds, about 11 days


class Timer:
    __slots__ = ("when", "callback", "cancelled")

    def __init__(self, when, callback):
        self.when = when
        self.callback = callback
        self.cancelled = False

    def cancel(self):
        self.cancelled = True

    def __lt__(self, other):
        return self.when < other.when


class Loop:
    def __init__(self):
        self._epoll = select.epoll()      # close-on-exec, as Python makes every fd
        self._readers = {}
        self._writers = {}
        self._timers = []
        # Called before each wait: batched work (status files).  One that
        # returns true has more to do: the wait then only polls, so the fds
        # and signals that are ready get their turn and the work goes on
        # after them (a thousand apps ending at once are reaped and written
        # in slices, not in one long turn).
        self.before_wait = []
        self._sigfd = None
        self._on_signals = None
        self.running = False

    def add_signals(self, sigfd, callback, plan=lambda: (None, 0)):
        """callback([(signo, code, sender pid, forwarded), ...], exits) for every
        signal; exits are the children already reaped with a SIGCHLD, or
        None when the callback is to reap them itself."""
        self._sigfd = sigfd
        self._on_signals = callback
        # plan() -> (the pids whose end matters or None for every end, the
        # pid or -group to pass other signals to at once, or 0): what the
        # native wait may do on its own, in exec mode.
        self._plan = plan
        self._epoll.register(sigfd, select.EPOLLIN)

    def add_reader(self, fd, callback):
        self._readers[fd] = callback
        self._watch(fd)

    def remove_reader(self, fd):
        if self._readers.pop(fd, None) is not None:
            self._watch(fd)

    def set_writer(self, fd, callback):
        """callback() when fd can be written to; None to stop asking.
        For an fd that also has a reader (a client socket), until its
        reader is removed."""
        if callback is None:
            if self._writers.pop(fd, None) is not None:
                self._watch(fd)
        else:
            had = fd in self._writers
            self._writers[fd] = callback
            if not had:
                self._watch(fd)

    def _watch(self, fd):
        """(Re)register fd for what its reader and writer want."""
        mask = (select.EPOLLIN if fd in self._readers else 0) | \
            (select.EPOLLOUT if fd in self._writers else 0)
        try:
            if mask:
                self._epoll.modify(fd, mask)
            else:
                self._epoll.unregister(fd)
        except FileNotFoundError:      # not registered yet
            if mask:
                self._epoll.register(fd, mask)

    def call_at(self, when, callback):
        timer = Timer(when, callback)
        heapq.heappush(self._timers, timer)
        return timer

    def call_later(self, delay, callback):
        return self.call_at(monotonic() + delay, callback)

    def _timeout(self):
        timers = self._timers
        while timers and timers[0].cancelled:
            heapq.heappop(timers)
        if not timers:
            return -1
        # epoll_wait takes milliseconds in an int: a deadline further away
        # than MAX_WAIT is waited for in several turns.
        return min(MAX_WAIT, max(0.0, timers[0].when - monotonic()))

    def _expire(self):
        now = monotonic()
        timers = self._timers
        while timers and (timers[0].cancelled or timers[0].when <= now):
            timer = heapq.heappop(timers)
            if not timer.cancelled:
                timer.callback()

    def flush(self, safe=False):
        """All the batched work now, as the pod ends (a callback that has
        more to do is called until it has not).  safe: a failing callback
        does not keep the others from running (the internal-error path)."""
        for callback in self.before_wait:
            try:
                while callback(final=True):
                    pass
            except Exception:
                if not safe:
                    raise

    def run(self):
        self.running = True
        readers = self._readers
        before_wait = self.before_wait
        while self.running:
            busy = False
            for callback in before_wait:
                if callback():
                    busy = True
            if not self.running:
                break
            timeout = 0 if busy else self._timeout()
            if not readers and not self._writers:
                # Nothing but signals to wait for (exec mode): block in
                # sigtimedwait as tini does, one system call a signal and
                # ~10 us less per wake-up than epoll_wait + read here.
                infos, exits = native.wait_signal(timeout, *self._plan())
                if infos:
                    self._on_signals(infos, exits)
                self._expire()
                continue
            try:
                events = self._epoll.poll(timeout)
            except InterruptedError:
                continue
            for fd, mask in events:
                if fd == self._sigfd:
                    self._on_signals(native.read_signals(fd), None)
                    continue
                if mask & (select.EPOLLOUT | select.EPOLLERR | select.EPOLLHUP):
                    writer = self._writers.get(fd)
                    if writer is not None:
                        writer()
                if mask & ~select.EPOLLOUT:
                    callback = readers.get(fd)
                    if callback is not None:
                        callback()
            self._expire()

    def stop(self):
        self.running = False
