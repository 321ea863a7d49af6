"""The pod's cgroups: one per hierarchy for the pod, one below it per app.

Where: below the cgroup the caller of `stage1 run` is in, in each
hierarchy, as `stage1-<pod name>/<app name>` (app names are AC names, so
they never clash with the kernel's `cgroup.*` or `memory.*` files).

Which hierarchies: cgroup v1 ones with a controller stage1 uses (memory,
cpu, cpuacct, pids, devices), each controller taken from v1 when a v1
hierarchy has it and from the v2 hierarchy otherwise (a hybrid host such
as this one has v1 controllers and an empty v2 hierarchy); on a v2-only
host, the one v2 hierarchy, with the controllers enabled in each parent's
cgroup.subtree_control on the way down.  The alternatives weighed: a
systemd scope (no systemd here) and v2 only (the controllers are in v1 on
hybrid hosts).

Every directory is recorded in POD/cgroups (JSON, written before the first
mkdir), so `stage1 gc` finds them whichever cgroup it runs in, and removal
is rmdir of them and of any cgroup below them, deepest first: a cgroup with
processes left in it stays, and is reported.

The devices controller (v1) gets a whitelist on the pod's cgroup: the
nodes the apps' /dev holds, and mknod but no access for any other device,
so that CAP_MKNOD (in appc's default set) does not open the host's disks.
"""
import errno
import json
import os

from stage1.engine import status

USED = ("memory", "cpu", "cpuacct", "pids", "devices")
CFS_PERIOD_US = 100000
# null zero full random urandom tty console ptmx, every pts; mknod of anything.
DEVICES_ALLOWED = ("c 1:3 rwm", "c 1:5 rwm", "c 1:7 rwm", "c 1:8 rwm", "c 1:9 rwm",
                   "c 5:0 rwm", "c 5:1 rwm", "c 5:2 rwm", "c 136:* rwm", "c *:* m", "b *:* m")


class CgroupError(OSError):
    """One line: what could not be done to which cgroup file, and why."""


class Hierarchy:
    __slots__ = ("mount", "version", "controllers", "own")

    def __init__(self, mount, version, controllers, own):
        self.mount, self.version = mount, version
        self.controllers = controllers    # set of names
        self.own = own                    # our cgroup, as a path below mount

    def path(self, *parts):
        return os.path.join(self.mount, self.own.lstrip("/"), *parts)


def _own_cgroups(text):
    """{controller or "" (v2): path} from /proc/self/cgroup."""
    out = {}
    for line in text.splitlines():
        _, controllers, path = line.split(":", 2)
        for name in controllers.split(",") if controllers else [""]:
            out[name] = path
    return out


def hierarchies(mountinfo="/proc/self/mountinfo", cgroup="/proc/self/cgroup"):
    """The hierarchies stage1 may use, v1 first."""
    try:
        with open(mountinfo) as f:
            mounts = f.read().splitlines()
        with open(cgroup) as f:
            own = _own_cgroups(f.read())
    except OSError:
        return []
    found = []
    for line in mounts:
        h = _hierarchy(line.split(), own)
        if h is not None and not any(o.mount == h.mount or (
                o.version == 1 and o.controllers == h.controllers) for o in found):
            found.append(h)
    v1 = set().union(*[h.controllers for h in found if h.version == 1])
    for h in found:
        if h.version == 2:
            h.controllers -= v1
    return [h for h in found if h.controllers]


def _hierarchy(fields, own):
    """A Hierarchy from one line of mountinfo, or None."""
    sep = fields.index("-")
    fstype, root, target = fields[sep + 1], fields[3], fields[4].replace("\\040", " ")
    if fstype == "cgroup":
        controllers = set(fields[sep + 3].split(",")) & set(USED)
        key = sorted(controllers)[0] if controllers else None
    elif fstype == "cgroup2":
        controllers, key = _v2_controllers(target) & set(USED), ""
    else:
        return None
    if key is None or key not in own:
        return None
    path = own[key]
    # A mount of a subtree (a cgroup namespace, a container) shows paths
    # relative to its root.
    if root != "/" and (path + "/").startswith(root.rstrip("/") + "/"):
        path = path[len(root.rstrip("/")):] or "/"
    return Hierarchy(target, 1 if fstype == "cgroup" else 2, controllers, path)


def _v2_controllers(mount):
    try:
        with open(os.path.join(mount, "cgroup.controllers")) as f:
            return set(f.read().split())
    except OSError:
        return set()


class Layout:
    """The pod's cgroup directories, computed before anything is created."""

    def __init__(self, pod_name, hierarchy_list):
        self.name = "stage1-" + pod_name
        self.hierarchies = hierarchy_list
        self.pod = [h.path(self.name) for h in hierarchy_list]
        self.apps = {}

    def controllers(self):
        return set().union(*[h.controllers for h in self.hierarchies])

    def app_dirs(self, app):
        return [os.path.join(d, app) for d in self.pod]

    def procs_files(self, app):
        return [os.path.join(d, "cgroup.procs") for d in self.apps.get(app, ())]

    def record(self):
        return {"pod": self.pod, "apps": self.apps}

    @classmethod
    def recorded(cls, record):
        """The layout a running pod recorded (for `stage1 enter`)."""
        layout = cls.__new__(cls)
        layout.hierarchies, layout.pod = [], list(record.get("pod", []))
        layout.apps = dict(record.get("apps") or {})
        return layout


def _write(path, text):
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.write(fd, text.encode())
        finally:
            os.close(fd)
    except OSError as err:
        raise CgroupError(err.errno, "unable to write %s to %s: %s"
                          % (text.strip(), path, err.strerror))


def _mkdir(path):
    try:
        os.mkdir(path, 0o755)
    except FileExistsError:
        pass
    except OSError as err:
        raise CgroupError(err.errno, "unable to create cgroup %s: %s" % (path, err.strerror))


def save_record(record_path, layout):
    status.write_json(record_path, layout.record())


def load_record(record_path):
    """{"pod": [...], "apps": {...}} or None when the pod made no cgroups."""
    try:
        with open(record_path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def create_pod(layout, record_path, limits, console_device=None):
    """Create the pod's cgroups with its own limits and the devices whitelist."""
    save_record(record_path, layout)
    for h, path in zip(layout.hierarchies, layout.pod):
        if h.version == 2:
            _enable_v2(h, path)
        _mkdir(path)
        if "devices" in h.controllers and h.version == 1:
            _write(os.path.join(path, "devices.deny"), "a")
            for rule in DEVICES_ALLOWED + ((console_device,) if console_device else ()):
                _write(os.path.join(path, "devices.allow"), rule)
        apply_limits(h, path, limits)


def create_app(layout, record_path, app, limits):
    layout.apps[app] = layout.app_dirs(app)
    save_record(record_path, layout)
    for h, path in zip(layout.hierarchies, layout.apps[app]):
        if h.version == 2:
            _enable_v2(h, os.path.dirname(path))
        _mkdir(path)
        apply_limits(h, path, limits)


def _enable_v2(h, path):
    """v2: a controller works in a cgroup only if its parent enables it for
    its children, all the way down from the root."""
    wanted = " ".join("+" + c for c in sorted(h.controllers & {"memory", "cpu", "pids"}))
    if not wanted:
        return
    parent = os.path.dirname(path)
    chain = []
    while parent.startswith(h.mount.rstrip("/") + "/") or parent == h.mount:
        chain.append(parent)
        if parent == h.mount:
            break
        parent = os.path.dirname(parent)
    for directory in reversed(chain):
        with open(os.path.join(directory, "cgroup.subtree_control")) as f:
            if set(wanted.replace("+", "").split()) <= set(f.read().split()):
                continue
        _write(os.path.join(directory, "cgroup.subtree_control"), wanted)


def apply_limits(h, path, limits):
    """resource/memory and resource/cpu on one cgroup directory."""
    if limits is None:
        return
    if limits.memory and "memory" in h.controllers:
        limit, request = limits.memory
        names = ("memory.limit_in_bytes", "memory.soft_limit_in_bytes") if h.version == 1 \
            else ("memory.max", "memory.low")
        for name, value in zip(names, (limit, request)):
            if value is not None and not (name == names[1] and value == limit):
                _write(os.path.join(path, name), str(value))
    if limits.cpu and "cpu" in h.controllers:
        limit, request = limits.cpu
        if h.version == 1:
            if limit is not None:
                _write(os.path.join(path, "cpu.cfs_period_us"), str(CFS_PERIOD_US))
                _write(os.path.join(path, "cpu.cfs_quota_us"),
                       str(max(1000, limit * CFS_PERIOD_US // 1000)))
            if request is not None:
                _write(os.path.join(path, "cpu.shares"), str(max(2, request * 1024 // 1000)))
        else:
            if limit is not None:
                _write(os.path.join(path, "cpu.max"), "%d %d" % (
                    max(1000, limit * CFS_PERIOD_US // 1000), CFS_PERIOD_US))
            if request is not None:
                shares = max(2, request * 1024 // 1000)
                _write(os.path.join(path, "cpu.weight"),
                       str(min(10000, 1 + (shares - 2) * 9999 // 262142)))


def remove(record_path):
    """rmdir every recorded cgroup and whatever cgroup is below it, deepest
    first; [(path, error)] of those left (processes still in them)."""
    record = load_record(record_path)
    if record is None:
        return []
    dirs = set(record.get("pod", []))
    for app_dirs in (record.get("apps") or {}).values():
        dirs.update(app_dirs)
    for top in list(dirs):
        for below, _, _ in os.walk(top):
            dirs.add(below)
    left = []
    for path in sorted(dirs, key=lambda p: (-p.count("/"), p)):
        try:
            os.rmdir(path)
        except OSError as err:
            if err.errno != errno.ENOENT:
                left.append((path, err.strerror))
    return left
