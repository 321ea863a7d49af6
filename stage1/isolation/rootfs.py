"""Each app's root filesystem, prepared by the pod's init in the pod's own
mount namespace (so nothing here is ever seen by the host), in this order:

  the root bound onto itself (a mount of its own, to make read-only later)
  /proc      a fresh procfs: it shows the pod's PID namespace only
  /sys       a fresh sysfs, read-only
  /dev       a tmpfs with null, zero, full, random, urandom, tty and console
             bound from the host (no mknod: it works without CAP_MKNOD),
             a private devpts with ptmx, shm, and the fd links
  protected paths (unless --disable-paths), the union of rkt's list
             (stage1/init/common/app.go) and Docker's:
             read-only  /proc/sys, sysrq-trigger, bus, fs, irq (and /sys,
                        read-only as a whole), each bound onto itself and
                        made read-only; under /proc/sys the pod's own
                        namespaced sysctls stay writable (UTS: hostname,
                        domainname; with a private IPC namespace the IPC
                        limits and fs/mqueue; with a network namespace of
                        the pod's own, net): the kernel lets the pod's root
                        change them for the pod's namespaces only
             masked     kernel memory, symbols, keys, timers and firmware
                        (MASKED): an empty read-only file bound over a file,
                        an empty read-only tmpfs over a directory; what this
                        kernel does not have is skipped
  /tmp       created when missing, mode 1777
  volumes    host (bind, recursive or not) and empty (a directory of the
             pod), parents before children, read-only where asked
  DNS files  /etc/resolv.conf and /etc/hosts bound from the files dns.py
             chose, after the volumes (they win over a volume, as in rkt);
             a fallback /etc/hosts only where the app has none
  read-only  the root's own mount, last: the mounts above stay as they are

Paths inside an app root are resolved the way the app will see them: a
symlink in the image is followed inside the root, never out of it
(`resolve`), and missing directories are created.  Nothing is unmounted on
failure: the mount namespace goes away with the init.
"""
import errno
import os

from stage1.engine import native

DEV_NODES = ("null", "zero", "full", "random", "urandom", "tty")
DEV_LINKS = (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"),
             ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2"),
             ("ptmx", "pts/ptmx"))
NOSUID_NODEV_NOEXEC = native.MS_NOSUID | native.MS_NODEV | native.MS_NOEXEC
MAX_LINKS = 40

PROC_READ_ONLY = ("sys", "sysrq-trigger", "bus", "fs", "irq")
MASKED = ("/proc/kcore", "/proc/kmem", "/proc/mem", "/proc/kallsyms", "/proc/config.gz",
          "/proc/keys", "/proc/timer_list", "/proc/timer_stats", "/proc/latency_stats",
          "/proc/sched_debug", "/proc/acpi", "/proc/asound", "/proc/scsi",
          "/sys/firmware", "/sys/fs", "/sys/hypervisor", "/sys/module", "/sys/power",
          "/sys/devices/virtual/powercap")
# Under /proc/sys.  The IPC ids (kernel/*_next_id) need CAP_CHECKPOINT_RESTORE
# and stay read-only.
UTS_SYSCTLS = ("kernel/hostname", "kernel/domainname")
IPC_SYSCTLS = ("kernel/msgmax", "kernel/msgmnb", "kernel/msgmni", "kernel/sem",
               "kernel/shmall", "kernel/shmmax", "kernel/shmmni", "kernel/shm_rmid_forced",
               "fs/mqueue")
NET_SYSCTLS = ("net",)
EMPTY_FILE = ".stage1-empty"


class Mount:
    """One volume mounted in one app: all of it decided at plan time."""
    __slots__ = ("target", "source", "kind", "recursive", "read_only", "where", "empty")

    def __init__(self, target, source, kind, recursive, read_only, where, empty=None):
        self.target = target          # absolute, normalised, inside the app
        self.source = source          # host path (for `empty`: the pod's directory)
        self.kind = kind              # "host" or "empty"
        self.recursive = recursive
        self.read_only = read_only
        self.where = where            # JSON path, for messages
        self.empty = empty            # (mode, uid, gid) of an empty volume


def resolve(root, path):
    """The host path of `path` inside `root`, following symlinks as a process
    chrooted into root would (.. stops at the root).  Missing components are
    kept as they are."""
    parts = [p for p in path.split("/") if p not in ("", ".")]
    done, links = [], 0
    while parts:
        part = parts.pop(0)
        if part == "..":
            done = done[:-1]
            continue
        host = os.path.join(root, *done, part)
        try:
            target = os.readlink(host)
        except OSError:     # not a symlink, or missing: keep the name
            done.append(part)
            continue
        links += 1
        if links > MAX_LINKS:
            raise OSError(40, "too many levels of symbolic links in %s" % path)
        if target.startswith("/"):
            done = []
        parts = [p for p in target.split("/") if p not in ("", ".")] + parts
    return os.path.join(root, *done)


def make_dir(root, path, mode=0o755):
    """Create `path` (and its parents) inside root; its host path.  What
    `resolve` returns is free of symlinks up to the first missing
    component, and nothing after it exists yet."""
    host = resolve(root, path)
    os.makedirs(host, mode, exist_ok=True)
    return host


def make_file(root, path):
    """An empty file to bind a file onto; its host path."""
    host = resolve(root, path)
    os.makedirs(os.path.dirname(host), 0o755, exist_ok=True)
    if not os.path.lexists(host):
        os.close(os.open(host, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644))
    return host


def bind(source, target, recursive=False, read_only=False):
    native.mount(source, target, None, native.MS_BIND | (native.MS_REC if recursive else 0))
    if read_only:
        native.mount_setattr(target, recursive, native.MOUNT_ATTR_RDONLY)


def make_slave():
    """Nothing mounted in the pod propagates to the host; what the host
    mounts where it shares with the pod (an app rkt adds later: its root,
    share_apps below) reaches the pod.  Mounts the host does not share stay
    private to the pod."""
    native.mount(None, "/", None, native.MS_REC | native.MS_SLAVE)


def share_apps(stage1_root):
    """On the host, before the pod's mount namespace is made: the apps'
    directory (<stage1 root>/opt/stage2) a shared bind mount of itself, so
    that a root rkt mounts there after the pod started (`rkt app add`, with
    its default overlay) propagates into the pod.  Most hosts' own mounts
    are private, so nothing else would carry it.  gc unmounts it, with
    everything else under the pod."""
    apps = os.path.join(stage1_root, "opt", "stage2")
    os.makedirs(apps, exist_ok=True)
    native.mount(apps, apps, None, native.MS_BIND | native.MS_REC)
    native.mount(None, apps, None, native.MS_SHARED)
    return apps


def mount_proc(target):
    native.mount("proc", target, "proc", NOSUID_NODEV_NOEXEC)


def _mount_dev(root, console):
    dev = make_dir(root, "/dev")
    native.mount("tmpfs", dev, "tmpfs", native.MS_NOSUID | native.MS_NOEXEC,
                 "mode=755,size=65536k")
    for name in DEV_NODES:
        bind("/dev/" + name, make_file(root, "/dev/" + name))
    bind(console, make_file(root, "/dev/console"))
    pts = make_dir(root, "/dev/pts")
    native.mount("devpts", pts, "devpts", native.MS_NOSUID | native.MS_NOEXEC,
                 "newinstance,ptmxmode=0666,mode=0620")
    shm = make_dir(root, "/dev/shm")
    native.mount("shm", shm, "tmpfs", native.MS_NOSUID | native.MS_NODEV, "mode=1777")
    for name, target in DEV_LINKS:
        os.symlink(target, os.path.join(dev, name))
    return dev


def _protect(root, dev, writable):
    """The protected paths in a root whose /proc, /sys and /dev are mounted."""
    proc = resolve(root, "/proc")
    for name in PROC_READ_ONLY:
        path = os.path.join(proc, name)
        if os.path.lexists(path):
            bind(path, path, read_only=True)
    for name in writable:
        # A bind of a path on a read-only mount starts read-only.
        path = os.path.join(proc, "sys", name)
        if os.path.lexists(path):
            bind(path, path)
            native.mount_setattr(path, False, 0, native.MOUNT_ATTR_RDONLY)
    # The empty file is made in the app's /dev (a tmpfs of its own), bound
    # read-only over each masked file, and unlinked: the binds keep it.
    empty = os.path.join(dev, EMPTY_FILE)
    os.close(os.open(empty, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o444))
    try:
        for path in MASKED:
            target = resolve(root, path)
            if os.path.isdir(target):
                native.mount("tmpfs", target, "tmpfs",
                             NOSUID_NODEV_NOEXEC | native.MS_RDONLY, "mode=0555,size=4k")
            elif os.path.lexists(target):
                bind(empty, target, read_only=True)
    finally:
        os.unlink(empty)


def _prepare_volume(root, m, shift=0):
    if m.kind == "empty":
        # An empty volume is the pod's own: its ids are the pod's, shifted
        # with the pod's user namespace (host volumes are not).
        mode, uid, gid = m.empty
        os.makedirs(m.source, exist_ok=True)
        os.chown(m.source, uid + shift, gid + shift)
        os.chmod(m.source, mode)
        _bind_volume(root, m, m.source)
        return
    # A host source is opened with no symlink followed at any level and
    # bound from that fd (through /proc/self/fd, in this mount namespace):
    # what is mounted is what was checked, even if someone swaps a symlink
    # into the path meanwhile (a swap before the open fails with ELOOP).
    fd = native.open_nofollow(m.source)
    try:
        _bind_volume(root, m, "/proc/self/fd/%d" % fd)
    finally:
        os.close(fd)


def _bind_volume(root, m, source):
    if os.path.isdir(source):
        target = make_dir(root, m.target)
    else:
        target = make_file(root, m.target)
    bind(source, target, m.recursive, m.read_only)


def _bind_file(root, f):
    """One dns.DnsFile onto its target in the app, never through a symlink
    that leads out of the root."""
    target = resolve(root, f.target)
    if f.only_if_missing and os.path.exists(target):
        return
    bind(f.source, make_file(root, f.target), read_only=f.read_only)


def prepare(root, mounts, read_only, console, extra_files=(), dns_files=(), protect=(),
            idmap=None, shift=0):
    """Mount everything an app's root needs; `protect` is None for no
    protected paths, else the sysctls (under /proc/sys) left writable;
    `idmap` a user namespace fd to idmap the root with (--private-users,
    userns.py), `shift` the host id of the pod's root (for empty volumes).
    OSError names what failed."""
    bind(root, root, recursive=True)
    mount_proc(make_dir(root, "/proc", 0o555))
    native.mount("sysfs", make_dir(root, "/sys", 0o555), "sysfs",
                 NOSUID_NODEV_NOEXEC | native.MS_RDONLY)
    dev = _mount_dev(root, console)
    if protect is not None:
        _protect(root, dev, protect)
    tmp = make_dir(root, "/tmp")
    os.chmod(tmp, 0o1777)
    for m in sorted(mounts, key=lambda m: m.target.count("/")):
        _prepare_volume(root, m, shift)
    for path in extra_files:
        make_file(root, path)
    for f in dns_files:
        _bind_file(root, f)
    if idmap is not None:
        # Last: the init (root on the host, outside the pod's user
        # namespace) cannot create files through an idmapped mount, so
        # every mount point is made first, on the root as it is.
        _idmap(root, idmap)
    if read_only:
        native.mount_setattr(root, False, native.MOUNT_ATTR_RDONLY)


def _idmap(root, userns_fd):
    try:
        native.idmap_bind(root, userns_fd)
    except OSError as err:
        if err.errno in (errno.EINVAL, errno.EOPNOTSUPP, errno.ENOSYS):
            raise OSError(err.errno, "its filesystem cannot be idmapped, which "
                          "--private-users needs (%s)" % os.strerror(err.errno))
        raise
