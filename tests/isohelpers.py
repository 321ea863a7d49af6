"""Helpers of the isolation and rkt tests: app roots, isolated pods, gc.

An isolated pod is a pod directory in rkt's layout (podhelpers.Pod with
stage1/rootfs) whose apps each get a root: Debian's busybox-static copied
to rootfs/bin/busybox, with a link per applet, and an /etc/passwd and
/etc/group.  The directory is named by a fresh UUID, as rkt names it, so
that the pod's cgroups (stage1-<UUID>) never meet another test's, and it
lives in a short directory under /tmp (the `podbase` fixture): the pod's
sockets must fit in the 108 bytes of a unix socket address, which
pytest's tmp_path and a UUID together do not.

Apps report what they see from inside (a sh script writing to stdout or
into a host volume); the tests compare.  `IsoRun` wraps podhelpers.Run:
whatever happens, it kills and reaps everything it started, then runs
`stage1 gc` so no cgroup is left on the host.

For what busybox cannot do, tests/probe.c (compiled static once a session,
the `probe` fixture) makes single system calls and prints their result and
errno.  An app root can also run the host's dynamically linked programs
(python3, coreutils): `with_host_usr` links /lib and /lib64 into it and
gives the app /usr as a read-only host volume.
"""
import json
import os
import shutil
import subprocess
import tempfile
import uuid

import pytest

from podhelpers import IMAGE, Pod, Run, stage1, wait_for, DEADLINE, STAGE1, named  # noqa: F401

BUSYBOX = "/usr/bin/busybox"
APPLETS = ("sh", "cat", "echo", "ls", "hostname", "id", "sleep", "touch", "mkdir", "grep",
           "stat", "readlink", "test", "true", "false", "wc", "ip", "ifconfig", "mount",
           "env", "head", "tr", "cut", "printf", "rm", "ps", "mknod", "chroot", "pwd")
PASSWD = "root:x:0:0:root:/root:/bin/sh\nalice:x:1500:1600::/home/alice:/bin/sh\n"
GROUP = "root:x:0:\nstaff:x:1600:alice\n"


def make_root(path):
    """A one-file userland: busybox and its links, /etc/passwd and /etc/group."""
    for d in ("bin", "etc"):
        os.makedirs(os.path.join(path, d), exist_ok=True)
    shutil.copy2(BUSYBOX, os.path.join(path, "bin", "busybox"))
    for name in APPLETS:
        os.symlink("busybox", os.path.join(path, "bin", name))
    with open(os.path.join(path, "etc", "passwd"), "w") as f:
        f.write(PASSWD)
    with open(os.path.join(path, "etc", "group"), "w") as f:
        f.write(GROUP)
    return path


HERE = os.path.dirname(os.path.abspath(__file__))


@pytest.fixture(scope="session")
def probe():
    """The path of tests/probe.c compiled static (any root can run it)."""
    out = tempfile.mkdtemp(prefix="s1-probe-")
    binary = os.path.join(out, "probe")
    r = subprocess.run(["cc", "-static", "-O", "-Wall", "-o", binary,
                        os.path.join(HERE, "probe.c")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    yield binary
    shutil.rmtree(out, ignore_errors=True)


def install(binary, root, name=None):
    """Copy a (static) binary into an app root's /bin."""
    target = os.path.join(root, "bin", name or os.path.basename(binary))
    shutil.copy2(binary, target)
    return "/bin/" + os.path.basename(target)


def probe_results(out):
    """{op: (result, errno)} of the probe's lines in out (the last of each op)."""
    found = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1].lstrip("-").isdigit() and parts[2].isdigit():
            found[parts[0]] = (int(parts[1]), int(parts[2]))
    return found


def with_host_usr(pod, name):
    """Let app `name` run the host's /usr (read-only): lib links in its root,
    a host volume on /usr."""
    root = pod.app_root(name)
    for link in ("lib", "lib64"):
        os.symlink("usr/" + link, os.path.join(root, link))
    volumes = pod.manifest["volumes"] = pod.manifest.get("volumes") or []   # rkt writes null
    if not any(v["name"] == "host-usr" for v in volumes):
        volumes.append({"name": "host-usr", "kind": "host", "source": "/usr", "readOnly": True})
    for runtime in pod.manifest["apps"]:
        if runtime["name"] == name:
            runtime.setdefault("mounts", []).append({"volume": "host-usr", "path": "/usr"})
    pod.write()


def sh_app(name, script, *, annotations=None, user="0", group="0", **fields):
    """A RuntimeApp running `/bin/sh -c script` inside its root."""
    body = {"exec": ["/bin/sh", "-c", script], "user": user, "group": group}
    body.update(fields)
    runtime = {"name": name, "image": json.loads(json.dumps(IMAGE)), "app": body}
    if annotations:
        runtime["annotations"] = named(annotations)
    return runtime


@pytest.fixture
def podbase():
    """A short directory for pod directories; removed unless something is
    still mounted below it (rmtree would go through a bind mount)."""
    base = tempfile.mkdtemp(prefix="s1-", dir="/tmp")
    yield base
    if not mounts_below(base):
        shutil.rmtree(base, ignore_errors=True)


class IsoPod(Pod):
    """A pod in rkt's layout whose every app has a busybox root."""

    def __init__(self, base, apps=(), roots=True, **extra):
        self.uuid = str(uuid.uuid4())
        super().__init__(os.path.join(str(base), self.uuid), apps, stage1_rootfs=True,
                         **extra)
        if roots:
            for runtime in apps:
                make_root(self.app_root(runtime["name"]))

    def app_root(self, name):
        return os.path.join(self.app_dir(name), "rootfs")

    def cgroup(self, controller, app=None):
        """The pod's (or an app's) cgroup directory in one v1 hierarchy."""
        with open("/proc/self/cgroup") as f:
            for line in f:
                _, names, path = line.rstrip("\n").split(":", 2)
                if controller in names.split(","):
                    parts = ["/sys/fs/cgroup", controller, path.lstrip("/"),
                             "stage1-" + self.uuid] + ([app] if app else [])
                    return os.path.join(*[p for p in parts if p])
        raise AssertionError("no %s hierarchy" % controller)


class IsoRun(Run):
    """podhelpers.Run, then `stage1 gc` once everything is dead."""

    def __exit__(self, *exc):
        super().__exit__(*exc)
        gc_until_clean(self.pod)


def gc(pod):
    return stage1("gc", pod.uuid, cwd=pod.path)


def gc_until_clean(pod):
    """After a SIGKILL the pod's processes take a moment to leave their
    cgroups: gc until it has nothing left to remove."""
    wait_for(lambda: gc(pod).returncode == 0, what="stage1 gc of %s" % pod.path)


def iso_run(pod, *args, timeout=DEADLINE, **kw):
    """An isolated `stage1 run` to its end: (exit code, stdout, stderr)."""
    with IsoRun(pod, *args, **kw) as r:
        code = r.wait(timeout)
        return code, r.stdout(), r.stderr()


def mountinfo():
    with open("/proc/self/mountinfo") as f:
        return f.read().splitlines()


def mounts_below(path):
    path = os.path.realpath(path).rstrip("/") + "/"
    return [l for l in mountinfo() if (l.split()[4] + "/").startswith(path)]


def stage1_cmd(*args, cwd=None, timeout=DEADLINE, env=None, stdin=subprocess.DEVNULL):
    return subprocess.run([STAGE1] + [str(a) for a in args], cwd=cwd, timeout=timeout,
                          env=env, stdin=stdin, capture_output=True, text=True)


class Proc:
    """Any command in the background (rkt's entrypoints, stage1 enter);
    stdout and stderr go to files.  On exit, it and everything below it is
    SIGKILLed and reaped; with `pod`, `stage1 gc` runs after."""

    def __init__(self, argv, *, cwd=None, env=None, pass_fds=(), pod=None,
                 stdin=subprocess.DEVNULL):
        self.pod = pod
        fd, self._out = tempfile.mkstemp(prefix="s1-out-")
        os.close(fd)
        fd, self._err = tempfile.mkstemp(prefix="s1-err-")
        os.close(fd)
        with open(self._out, "wb") as out, open(self._err, "wb") as err:
            self.proc = subprocess.Popen([str(a) for a in argv], cwd=cwd, env=env,
                                         pass_fds=pass_fds, stdin=stdin, stdout=out,
                                         stderr=err)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        from podhelpers import kill_tree
        if self.proc.poll() is None:
            kill_tree(self.proc.pid)
        self.proc.wait(DEADLINE)
        if self.pod is not None:
            gc_until_clean(self.pod)
        for path in (self._out, self._err):
            os.unlink(path)

    def wait(self, timeout=DEADLINE):
        return self.proc.wait(timeout)

    def alive(self):
        return self.proc.poll() is None

    def stdout(self):
        with open(self._out, errors="replace") as f:
            return f.read()

    def stderr(self):
        with open(self._err, errors="replace") as f:
            return f.read()


def unpack_aci(aci, pod):
    """What rkt does with a stage1 image: POD/stage1/{manifest,rootfs}."""
    import tarfile
    with tarfile.open(aci) as tar:
        tar.extractall(os.path.join(pod.path, "stage1"))
