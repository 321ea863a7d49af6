"""An isolated pod's two processes, and what each does to the system.

  stage1 run: POD    on the host: creates the cgroups; with CNI networks,
                     the pod's network namespace and its networks
                     (network.py); the DNS files (dns.py); for a mutable
                     pod, the apps' directory shared into the pod; unshares
                     the PID namespace and forks; writes POD/pid (the
                     child, as the host sees it) and POD/ppid (itself),
                     passes every signal on to the child, waits for it,
                     removes the cgroups and exits with its status.  The
                     networks stay until `stage1 gc`, as rkt's do, so that
                     an exited pod still shows them.
  stage1 init: POD   PID 1 of the pod: joins the network namespace the host
                     side made (with CNI networks), new mount, UTS, IPC
                     (and, with --net=none, network) namespaces; / made a
                     slave of the host's, a fresh /proc; keeps that mount
                     namespace as the apps' template and goes on in a copy
                     of it; waits until POD/pid is written, prepares the
                     app roots, then the runner gives it the pod's
                     Supervisor.

The host side forks after unshare(CLONE_NEWPID) instead of having the
init unshare everything itself, because a process never enters the PID
namespace it creates, only its children do; it unshares nothing else, so
it keeps the host's /proc and mounts.  Each app enters its root between
fork and exec (spawn.c), with its cgroups, capabilities, no_new_privs,
oom_score_adj and seccomp filter, as decide.PodIsolation.isolate_launch
says.  The host side also records the insecure options in POD/isolation,
for `stage1 enter`.

The runner (runner/pod.py) strings these steps together; nothing here
knows of the Supervisor.
"""
import os
import select

from stage1.engine import native, spawn
from stage1.engine.loop import Loop
from stage1.isolation.decide import error_text
from stage1.pod.errors import PodError

SIGCHLD, SIGTERM = 17, 15


# -- the host side ---------------------------------------------------------------

def fork_pod(iso, log):
    """Cgroups, networks and DNS files, a new PID namespace, the fork:
    (pid, the pipe's end for this side), pid 0 in the child; None after a
    failure, reported and undone."""
    try:
        iso.create_cgroups(log)
        iso.attach_networks(log)
        iso.share_apps()
        iso.save_options(log)
        native.unshare(native.CLONE_NEWPID)
        ready_r, ready_w = os.pipe2(os.O_CLOEXEC)
        pid = os.fork()
    except (OSError, PodError) as err:
        log.warn(error_text(err))
        iso.unshare_apps()
        iso.detach_networks(log)
        iso.remove_cgroups(log)
        return None
    if pid == 0:
        os.close(ready_w)
        return 0, ready_r
    os.close(ready_r)
    iso.close_netns()
    return pid, ready_w


def in_child(main):
    """Run main() in the forked child and exit with its code: the child
    never returns to the caller's stack."""
    code = 254
    try:
        code = main()
    except BaseException:
        import traceback
        traceback.print_exc()
    finally:
        os._exit(code)


def record(poddir, pid, ready_w, log):
    """POD/pid and POD/ppid, then tell the init (pid, or an empty line)."""
    try:
        poddir.write_pids(pid, os.getpid())
        written = True
    except OSError as err:
        log.warn("unable to write %s: %s" % (poddir.pid_path, err.strerror))
        written = False
    try:
        # ready_w stays open while the host side lives: its EOF tells the
        # init that we are gone.  EPIPE: the init failed already.
        os.write(ready_w, b"%d\n" % pid if written else b"\n")
    except OSError:
        pass
    return written


def wait_passing_signals(sigfd, child):
    """Pass every signal but SIGCHLD to the child until it ends; its exit code."""
    loop = Loop()
    result = []

    def on_signals(infos, exits=None):
        for signo, _, _, _ in infos:
            if signo != SIGCHLD:
                native.kill_many([child], signo)
        for pid, status, _, _, _ in (native.reap() if exits is None else exits):
            if pid == child:
                result.append(spawn.exit_code(status))
                loop.stop()
    loop.add_signals(sigfd, on_signals)
    on_signals(native.read_signals(sigfd))
    if not result:
        loop.run()
    return result[0]


# -- PID 1 of the pod --------------------------------------------------------------

def become_pod_init(iso, ready_fd, parent_sigfd, interactive):
    """The pod's own signalfd, the namespaces, the app roots; the init's pid
    as the host sees it, None when the host side failed (it said why) or
    died.  Raises OSError or PodError."""
    import _prctl
    os.close(parent_sigfd)
    sigfd = native.take_signals()[0]    # still blocked: what apps get is the host side's
    # The host side passes every signal on; if it dies, stop the pod.
    _prctl.prctl(_prctl.PR_SET_PDEATHSIG, SIGTERM)
    if not interactive:
        # Out of the terminal's foreground group: a Ctrl-C reaches the host
        # side only, which passes it on once.
        os.setpgid(0, 0)
    try:
        iso.enter_namespaces()
        host_pid = _wait_for_host_side(ready_fd)
        if host_pid is not None:
            iso.prepare_roots()
    except BaseException:
        os.close(sigfd)
        raise
    return sigfd, host_pid


def _wait_for_host_side(fd):
    """The init's pid as the host sees it, once POD/pid is written; None if
    the host side failed or died.  PR_SET_PDEATHSIG was set before: if the
    host side is alive after this, its death will come as a SIGTERM."""
    line = os.read(fd, 64)
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    gone = any(ev & (select.POLLHUP | select.POLLERR) for _, ev in poller.poll(0))
    os.close(fd)
    if gone or not line.strip().isdigit():
        return None
    return int(line)
