"""Isolation of a pod, decided at plan time: whether, and exactly what.

A pod is isolated when any of its apps has a root under
<stage1 root>/opt/stage2/<app>/rootfs (rkt always gives one), or with
--isolate; --no-isolate turns it off.  Without isolation nothing below
applies and every isolator, mount and isolation flag is reported as not
applied, as before isolation existed.

`check` runs before anything starts: app roots, volumes, mount targets,
seccomp filters (compiled here, once per distinct rule set) and flags are
validated there (the other isolators were, with the manifest), and every
error is one line naming its place (exit 254).  The PodIsolation it
returns holds everything decided: namespaces, hostname, each app's root,
mounts, limits, filter and spawn options, the CNI networks (network.py)
and the DNS files (dns.py); host.py carries it out.

rkt's insecure options arrive as flags: --disable-capabilities-restriction,
--disable-paths (no protected paths in the app roots, rootfs.py) and
--disable-seccomp (no filter).  The run records them in POD/isolation so
that `stage1 enter` applies what the apps got.
"""
import os
import posixpath
import stat

from stage1.engine import native, status
from stage1.isolation import cgroups, dns, network, rootfs, seccomp, userns
from stage1.pod import isolators
from stage1.pod.errors import ManifestError, PodError

EXIT_FAILURE = 254
NET_HOST, NET_NONE, NET_CNI = "host", "none", "cni"
NOTIFY_PATH = "/run/stage1/notify.sock"
NOTIFY_ENV = "NOTIFY_SOCKET="
NOT_IMPLEMENTED = "stage1 does not implement it"
NOT_ISOLATED = "this pod runs without isolation"
RESERVED_TARGETS = ("/", "/proc", "/sys", "/dev")
SIGCHLD, SIGTERM = 17, 15
CAP_SYS_ADMIN = 21


def error_text(err):
    """One line for an OSError: its message, and the file when it names one."""
    if not isinstance(err, OSError) or not err.strerror:
        return str(err)
    return "%s: %s" % (err.filename, err.strerror) if err.filename else err.strerror


class AppIsolation:
    """One app's root, mounts and limits, as decided at plan time."""

    def __init__(self, name, root, limits, mounts=(), read_only=False, unapplied=(),
                 seccomp_filter=None):
        self.name, self.root = name, root
        self.limits, self.mounts, self.read_only = limits, mounts, read_only
        self.unapplied = unapplied
        self.seccomp = seccomp_filter   # seccomp.Filter, compiled; None: no filter
        self.notify = False             # speaks sd_notify: the socket goes in its root


class PodIsolation:
    def __init__(self, poddir):
        self.poddir = poddir
        self.isolated = False
        self.unapplied = []          # (name, where, why) to report once each
        self.mutable = False         # apps may be added later: share their directory
        self.shared_apps = None
        self.apps = {}
        self.pod_limits = None
        self.hostname = self.net = None
        self.networks = None         # network.NetPlan, with --net=<CNI networks>
        self.attached = None         # network.Attached, once the host side set them up
        self.netns_fd = -1           # the pod's network namespace, for the init to join
        self.dns = None              # dns.DnsPlan
        self.private_ipc = True
        self.caps_disabled = False
        self.seccomp_disabled = False
        self.paths_disabled = False
        self.console = "/dev/null"
        self.layout = None
        self.needs_cgroups = False
        self.default_caps = 0
        self.mnt_template = -1       # the init's: its namespace before any app root
        self.userns = None           # --private-users: (shift, count)
        self.userns_fd = -1          # the apps' user namespace, once made
        self._before_template = []   # launches made before those (bind): given them then
        self.log = None              # the init's, once it runs

    @property
    def record_path(self):
        return os.path.join(self.poddir.path, "cgroups")

    @property
    def options_path(self):
        return os.path.join(self.poddir.path, "isolation")

    def save_options(self, log):
        """What `stage1 enter` must apply as the apps got it."""
        doc = {"capabilities": not self.caps_disabled, "seccomp": not self.seccomp_disabled,
               "paths": not self.paths_disabled,
               "privateUsers": list(self.userns) if self.userns else None}
        try:
            status.write_json(self.options_path, doc)
        except OSError as err:
            log.warn("unable to write %s: %s (stage1 enter will restrict in full)"
                     % (self.options_path, err.strerror))

    def load_options(self):
        """Those a run recorded; a pod that recorded none gets them all."""
        try:
            doc = status.read_json(self.options_path)
        except (OSError, ValueError):
            doc = {}
        self.caps_disabled = doc.get("capabilities") is False
        self.seccomp_disabled = doc.get("seccomp") is False
        self.paths_disabled = doc.get("paths") is False
        users = doc.get("privateUsers")
        if isinstance(users, list) and len(users) == 2:
            self.userns = tuple(users)

    @property
    def writable_sysctls(self):
        """The pod's own namespaced sysctls, left writable under a read-only
        /proc/sys: the kernel lets the pod's root set them for its own
        namespaces only (UTS always; IPC and network when the pod has its own)."""
        out = rootfs.UTS_SYSCTLS
        out += rootfs.IPC_SYSCTLS if self.private_ipc else ()
        out += rootfs.NET_SYSCTLS if self.net == NET_NONE else ()
        return out

    # -- spawn options -------------------------------------------------------

    def bind(self, app):
        """Make every launch of a supervisor.App (hooks too) isolated.
        Before prepare_roots: whether the app speaks sd_notify is the
        App's to say (the manifest reads it from the image manifest too)."""
        a = self.apps.get(app.name)
        if a is None:
            return
        a.notify = getattr(app, "notify", None) == "systemd"
        make = app.make_launch

        def launch(argv):
            return self.isolate_launch(a, make(argv))
        app.make_launch = launch
        app.launch = launch(app.spec.exec)

    def isolate_launch(self, a, launch):
        """A spawn.Launch run inside the app: root, cgroups, capabilities,
        no_new_privs, seccomp."""
        launch.root = a.root
        # pivot_root in a mount namespace of the app's own: a chroot alone
        # is left by any app that keeps CAP_SYS_CHROOT.
        launch.options["pivot"] = True
        launch.options["mnt_template"] = self.mnt_template
        launch.options["userns"] = self.userns_fd
        if self.mnt_template < 0:
            self._before_template.append(launch)
        launch.cwd = launch.cwd or "/"
        launch.env = [NOTIFY_ENV + NOTIFY_PATH if e.startswith(NOTIFY_ENV) else e
                      for e in launch.env]
        options = launch.options
        if self.layout is not None:
            options["cgroup_procs"] = self.layout.procs_files(a.name)
        if a.limits.oom_score_adj is not None:
            options["oom_score_adj"] = a.limits.oom_score_adj
        if a.limits.no_new_privs:
            options["no_new_privs"] = True
        as_root = launch.uid == 0 or (launch.uid == -1 and os.geteuid() == 0)
        if not self.caps_disabled:
            bounding = a.limits.caps if a.limits.caps is not None else self.default_caps
            # rkt's rule: capabilities bound root apps; other users get none
            # in their process sets, and nobody gets ambient capabilities.
            options["caps"] = (bounding, bounding if as_root else 0)
        if a.seccomp is not None and not self.seccomp_disabled:
            options["seccomp"] = a.seccomp.program
            if not as_root:
                # The kernel takes a filter from a process without
                # CAP_SYS_ADMIN only under no_new_privs; rkt forced it too.
                options["no_new_privs"] = True
            elif not options.get("no_new_privs") and "caps" in options \
                    and not (options["caps"][1] >> CAP_SYS_ADMIN) & 1:
                # Held until exec, for the filter alone (spawn.c).
                options["caps_until_exec"] = 1 << CAP_SYS_ADMIN
        return launch

    # -- the host side -------------------------------------------------------

    def create_cgroups(self, log):
        """Before anything starts.  Without limits to apply, cgroups are
        for accounting only: a failure is reported and the pod runs on."""
        if self.layout is None:
            return
        self.remove_cgroups(log)     # what a run that was killed left, if anything
        try:
            rule = _device_rule(self.console)
            cgroups.create_pod(self.layout, self.record_path, self.pod_limits, rule)
            for a in self.apps.values():
                cgroups.create_app(self.layout, self.record_path, a.name, a.limits)
        except cgroups.CgroupError as err:
            if self.needs_cgroups:
                raise
            log.warn("%s: the apps run without cgroups" % err.strerror)
            self.remove_cgroups(log)
            self.layout = None

    def remove_cgroups(self, log):
        for path, why in cgroups.remove(self.record_path):
            log.debug("cgroup %s is left: %s" % (path, why))

    def attach_networks(self, log):
        """The CNI networks, then the DNS files (CNI may give the DNS).
        PodError or OSError; what a failing plugin did is undone by
        network.setup itself, the rest by detach_networks."""
        if self.networks is not None:
            self.attached = network.setup(self.networks, log)
            self.netns_fd = os.open(self.attached.netns, os.O_RDONLY | os.O_CLOEXEC)
        cni_dns = self.attached.dns if self.attached is not None else None
        dns.write(self.dns, cni_dns, log)

    def detach_networks(self, log):
        """After a failure of the host side once the networks were up."""
        self.close_netns()
        if self.attached is not None:
            for what, why in network.teardown(self.poddir.path, self.networks.dirs, log):
                log.warn("%s is left for stage1 gc: %s" % (what, why))
            self.attached = None

    def close_netns(self):
        if self.netns_fd >= 0:
            os.close(self.netns_fd)
            self.netns_fd = -1

    # -- PID 1 of the pod ----------------------------------------------------

    def enter_namespaces(self):
        if self.netns_fd >= 0:
            native.setns(self.netns_fd, native.CLONE_NEWNET, "the pod's network namespace")
            self.close_netns()
        flags = native.CLONE_NEWNS | native.CLONE_NEWUTS
        flags |= native.CLONE_NEWIPC if self.private_ipc else 0
        flags |= native.CLONE_NEWNET if self.net == NET_NONE else 0
        native.unshare(flags)
        rootfs.make_slave()
        rootfs.mount_proc("/proc")
        native.sethostname(self.hostname)
        if self.net == NET_NONE:
            native.loopback_up()
        # The namespace as it is now, before any app root, is kept as the
        # template of every app's (spawn.c): the init goes on in a copy of
        # it, where the roots are mounted, and an app copies the template
        # and its own root's tree, not every root of the pod.
        self.mnt_template = os.open("/proc/self/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
        native.unshare(native.CLONE_NEWNS)
        self.make_userns()
        for launch in self._before_template:
            launch.options["mnt_template"] = self.mnt_template
            launch.options["userns"] = self.userns_fd
        self._before_template = []

    def make_userns(self):
        """The apps' user namespace (--private-users), made by the init
        (or by `stage1 enter`, with the mapping the run recorded)."""
        if self.userns is not None and self.userns_fd < 0:
            self.userns_fd = userns.make(*self.userns)

    @property
    def idmap(self):
        """The user namespace fd app roots are idmapped with, or None:
        none without --private-users, none when rkt chowned them already."""
        if self.userns_fd < 0 or userns.prepared(self.poddir):
            return None
        return self.userns_fd

    @property
    def id_shift(self):
        return self.userns[0] if self.userns else 0

    def share_apps(self):
        """A mutable pod's apps directory, shared from the host (rootfs.share_apps)."""
        if self.mutable and self.poddir.stage1_root != self.poddir.path:
            self.shared_apps = rootfs.share_apps(self.poddir.stage1_root)

    def unshare_apps(self):
        if self.shared_apps is not None:
            try:
                native.umount(self.shared_apps, native.MNT_DETACH)
            except OSError:
                pass
            self.shared_apps = None

    def prepare_roots(self):
        for a in self.apps.values():
            prepare_app(a, self.console, self.dns_files, self.protected_paths, self.idmap,
                        self.id_shift)

    @property
    def dns_files(self):
        return self.dns.files if self.dns is not None else ()

    @property
    def protected_paths(self):
        """What rootfs.prepare protects: None with --disable-paths, else
        the sysctls that stay writable."""
        return None if self.paths_disabled else self.writable_sysctls

    def bind_notify_socket(self, apps=None):
        """The sd_notify socket, created by the live pod after the roots,
        onto the placeholder file each app that uses it got with its root."""
        source = os.path.join(self.poddir.path, "notify.sock")
        for a in apps or self.apps.values():
            if not a.notify or not os.path.exists(source):
                continue
            try:
                rootfs.bind(source, rootfs.resolve(a.root, NOTIFY_PATH))
            except OSError as err:
                self.log.warn("%s: no sd_notify socket in its root: %s"
                              % (a.name, error_text(err)))

    def add_app(self, app, pod):
        """stage1 app add in a running isolated pod: check, cgroups, root."""
        if not self.isolated:
            return
        a = check_app(app.spec, pod, self.poddir, self.seccomp_disabled)
        if self.layout is not None:
            cgroups.create_app(self.layout, self.record_path, a.name, a.limits)
        self.apps[a.name] = a
        self.bind(app)
        prepare_app(a, self.console, self.dns_files, self.protected_paths, self.idmap,
                    self.id_shift)
        self.bind_notify_socket([a])


def prepare_app(a, console, dns_files=(), protect=(), idmap=None, shift=0):
    try:
        extra = (NOTIFY_PATH,) if a.notify else ()
        rootfs.prepare(a.root, a.mounts, a.read_only, console, extra, dns_files, protect,
                       idmap, shift)
    except OSError as err:
        raise PodError("app %s: unable to prepare its root %s: %s"
                       % (a.name, a.root, error_text(err)))


def _device_rule(console):
    try:
        st = os.stat(console)
    except OSError:
        return None
    if not stat.S_ISCHR(st.st_mode):
        return None
    return "c %d:%d rwm" % (os.major(st.st_rdev), os.minor(st.st_rdev))


# -- plan time ---------------------------------------------------------------

def wanted(pod, poddir, opts):
    """--isolate/--no-isolate, else: when an app has a root, or the pod is a
    mutable pod with a stage1 root (`rkt app sandbox`: rkt runs it before it
    has apps, and the apps it adds later must land inside it)."""
    if opts.isolate is not None:
        return opts.isolate
    if opts.mutable and poddir.stage1_root != poddir.path:
        return True
    return poddir.has_app_dirs() and \
        any(os.path.lexists(poddir.app_root(spec.name)) for spec in pod.apps)


def check(pod, poddir, opts):
    """Everything isolation needs, validated: a PodIsolation, or
    ManifestError / PodError naming the place."""
    iso = PodIsolation(poddir)
    iso.isolated = wanted(pod, poddir, opts)
    if not iso.isolated:
        iso.unapplied = _without_isolation(pod, opts.flags)
        return iso
    if os.geteuid() != 0:
        raise PodError("isolation needs root: run as root, or with --no-isolate")
    iso.default_caps = isolators.mask(isolators.DEFAULT_CAPS)
    iso.mutable = opts.mutable
    _flags(iso, opts, pod)
    iso.pod_limits = pod.limits
    iso.unapplied = [(n, w, NOT_IMPLEMENTED) for n, w in pod.unapplied]
    for spec in pod.apps:
        a = check_app(spec, pod, poddir, iso.seccomp_disabled)
        iso.unapplied.extend((n, w, NOT_IMPLEMENTED) for n, w in a.unapplied)
        iso.apps[spec.name] = a
    iso.needs_cgroups = iso.pod_limits.needs_cgroups or any(
        a.limits.needs_cgroups for a in iso.apps.values())
    iso.layout = _layout(iso, poddir)
    return iso


def _flags(iso, opts, pod):
    flags = opts.flags
    _net(iso, flags, pod)
    iso.userns = userns.parse(flags.get("--private-users"))
    ipc = flags.get("--ipc", "auto")
    if ipc not in ("auto", "private", "parent", True, ""):
        raise PodError("--ipc=%s: must be auto, private or parent" % ipc)
    iso.private_ipc = ipc != "parent"
    iso.caps_disabled = _flag_on(flags, "--disable-capabilities-restriction")
    iso.seccomp_disabled = _flag_on(flags, "--disable-seccomp")
    iso.paths_disabled = _flag_on(flags, "--disable-paths")
    iso.hostname = _hostname(flags.get("--hostname"), iso.poddir)
    iso.dns = dns.plan(flags.get("--dns-conf-mode"), iso.hostname, iso.poddir.stage1_root)
    if opts.interactive and os.isatty(0):
        iso.console = os.ttyname(0)


def _net(iso, flags, pod):
    """--net: host (stage1's default without rkt), none, or CNI networks
    (a bare --net is rkt's default network)."""
    value = flags.get("--net", NET_HOST)
    wanted = network.parse_net_list("default" if value in (True, "") else value)
    if list(wanted) in ([NET_HOST], [NET_NONE]):
        iso.net = list(wanted)[0]
        if iso.net == NET_NONE and pod.ports:
            raise PodError("pod: ports: --net=none has no network to forward them from")
        return
    local_config = flags.get("--local-config")
    if local_config in (None, True, ""):
        local_config = network.DEFAULT_LOCAL_CONFIG
    iso.net = NET_CNI
    iso.networks = network.plan(wanted, local_config, iso.poddir, pod)


def _flag_on(flags, name):
    """rkt passes its insecure options bare; Go's flags also take =false."""
    value = flags.get(name)
    if value is None:
        return False
    if value is True or value == "" or value.lower() in ("true", "1"):
        return True
    if value.lower() in ("false", "0"):
        return False
    raise PodError("%s=%s: must be true or false" % (name, value))


def _hostname(given, poddir):
    if isinstance(given, str) and given:
        if len(given.encode()) > 64:
            raise PodError("--hostname=%s: a hostname has at most 64 bytes" % given)
        return given
    # rkt's default: rkt-<pod UUID> (the pod directory is named by it).
    name = "".join(c if c.isalnum() or c == "-" else "-"
                   for c in os.path.basename(poddir.path).lower())
    return ("rkt-" + name)[:63].rstrip("-") or "rkt"


def _without_isolation(pod, flags):
    out = [(name, where, NOT_ISOLATED) for name, _, where in pod.isolators]
    for spec in pod.apps:
        out.extend((name, where, NOT_ISOLATED) for name, _, where in spec.isolators)
        if spec.mounts or spec.mount_points:
            out.append(("mounts", "apps[%d].mounts" % spec.index, NOT_ISOLATED))
        if spec.read_only_rootfs:
            out.append(("readOnlyRootFS", "apps[%d].readOnlyRootFS" % spec.index, NOT_ISOLATED))
    if isinstance(flags.get("--hostname"), str) and flags["--hostname"]:
        out.append(("--hostname", "the command line", NOT_ISOLATED))
    net = flags.get("--net")
    if net is not None and net != NET_HOST:
        out.append(("--net" if net is True else "--net=%s" % net, "the command line",
                    NOT_ISOLATED))
    return out


def _layout(iso, poddir):
    hierarchy_list = cgroups.hierarchies()
    have = set().union(*[h.controllers for h in hierarchy_list])
    for name, controller in ((isolators.MEMORY, "memory"), (isolators.CPU, "cpu")):
        wanted_here = [a.name for a in iso.apps.values()
                       if getattr(a.limits, controller) is not None]
        if getattr(iso.pod_limits, controller) is not None:
            wanted_here.append("the pod")
        if wanted_here and controller not in have:
            raise PodError("%s (%s) cannot be applied: no %s cgroup controller is mounted"
                           % (name, ", ".join(wanted_here), controller))
    if not hierarchy_list:
        return None
    return cgroups.Layout(os.path.basename(poddir.path), hierarchy_list)


def check_app(spec, pod, poddir, seccomp_disabled=False):
    source, body = spec.app_source
    root = poddir.app_root(spec.name)
    if not os.path.isdir(root):
        what = "is not a directory" if os.path.lexists(root) else "does not exist"
        raise ManifestError("pod", "apps[%d].name" % spec.index,
                                     "the root of app %s, %s, %s" % (spec.name, root, what))
    mounts = check_mounts(spec, pod, poddir)
    return AppIsolation(spec.name, root, spec.limits, mounts, spec.read_only_rootfs,
                        spec.unapplied, app_filter(spec, seccomp_disabled))


def app_filter(spec, disabled):
    """The app's seccomp.Filter, compiled now (once per distinct rule set),
    so that no spawn pays for it; None without one."""
    if disabled:
        return None
    found = seccomp.for_app(spec.limits)
    if found is not None:
        try:
            found.program
        except (OSError, ValueError) as err:
            raise PodError("app %s: %s" % (spec.name, error_text(err)))
    return found


def _target(path, source, where):
    if not isinstance(path, str) or not path.startswith("/"):
        raise ManifestError(source, where, "must be an absolute path")
    target = posixpath.normpath("/" + path.lstrip("/"))
    if target in RESERVED_TARGETS:
        raise ManifestError(source, where, "%s is stage1's to mount, not a volume's"
                                     % target)
    return target


def check_mounts(spec, pod, poddir):
    """Every volume the app mounts, resolved: [rootfs.Mount]."""
    source, body = spec.app_source
    points = {}
    for i, (name, path, read_only) in enumerate(spec.mount_points):
        where = "%s.mountPoints[%d]" % (body, i)
        points[_target(path, source, where + ".path")] = (name, read_only, where)
    mounts, taken = [], {}
    for volume, path, app_volume, where in spec.mounts:
        target = _target(path, "pod", where + ".path")
        vol = app_volume or pod.volumes.get(volume)
        if vol is None:
            raise ManifestError("pod", where + ".volume",
                                         "no volume named %r is declared in volumes" % volume)
        _claim(taken, target, "pod", where + ".path")
        read_only = points.get(target, (None, False))[1]
        mounts.append(_mount(vol, target, read_only, where, poddir))
    for target, (name, read_only, where) in sorted(points.items()):
        if target in taken:
            continue
        vol = pod.volumes.get(name)
        if vol is None:
            raise ManifestError(source, where + ".name", "mount point %r is not "
                                         "satisfied: no mount has its path and no volume its "
                                         "name" % name)
        _claim(taken, target, source, where + ".path")
        mounts.append(_mount(vol, target, read_only, where, poddir))
    return mounts


def _claim(taken, target, source, where):
    if target in taken:
        raise ManifestError(source, where, "overlaps %s: both mount on %s"
                                     % (taken[target], target))
    taken[target] = where


def _mount(vol, target, read_only, where, poddir):
    read_only = read_only or vol["readOnly"]
    if vol["kind"] == "empty":
        source = os.path.join(poddir.stage1_root, "rkt", "volumes", vol["name"])
        return rootfs.Mount(target, source, "empty", False, read_only, where,
                            (vol["mode"], vol["uid"], vol["gid"]))
    _check_host_source(vol)
    return rootfs.Mount(target, vol["source"], "host", vol["recursive"], read_only, where)


def _check_host_source(vol):
    """ace.md: a missing source, or a symlink at any level of it, is an
    error: said here, before anything starts.  The mount itself opens the
    source again the same way and binds from that fd (rootfs.py), so a
    symlink swapped in after this check stops the pod instead of
    redirecting the mount."""
    try:
        os.close(native.open_nofollow(vol["source"]))
    except OSError as err:
        _explain_host_source(vol, err)


def _explain_host_source(vol, err):
    """Which component is missing or a symlink, for the one line."""
    where = vol["where"] + ".source"
    path = "/"
    for part in [p for p in vol["source"].split("/") if p]:
        path = os.path.join(path, part)
        try:
            st = os.lstat(path)
        except OSError as lerr:
            raise ManifestError("pod", where, "%s: %s" % (path, lerr.strerror))
        if stat.S_ISLNK(st.st_mode):
            raise ManifestError("pod", where, "%s is a symbolic link: a host volume "
                                "must not go through one" % path)
    raise ManifestError("pod", where, "%s: %s" % (vol["source"], err.strerror))


# -- stage1 enter ----------------------------------------------------------------

def for_enter(spec, poddir):
    """What `stage1 enter` applies to a command run in an app of an
    isolated pod: the app's root (with its protected paths, mounted by the
    pod), capabilities, no_new_privs, seccomp filter, oom_score_adj and the
    cgroups the pod recorded, as far as the run's insecure options left
    them.  Nothing is checked that the run did not check already."""
    iso = PodIsolation(poddir)
    iso.isolated = True
    iso.default_caps = isolators.mask(isolators.DEFAULT_CAPS)
    iso.load_options()
    iso.make_userns()         # the same mapping as the apps'; made before enter joins the pod
    iso.apps[spec.name] = AppIsolation(spec.name, poddir.app_root(spec.name), spec.limits,
                                       seccomp_filter=app_filter(spec, iso.seccomp_disabled))
    record = cgroups.load_record(iso.record_path)
    if record is not None:
        iso.layout = cgroups.Layout.recorded(record)
    return iso
