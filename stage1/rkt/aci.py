"""`python -m stage1.aci [-o FILE]` (`./build.sh aci`): write stage1.aci, an
image rkt takes as its stage1 (`rkt run --stage1-path=stage1.aci ...`).

The image holds a manifest whose annotations name the entrypoints of
rkt's stage1 interface, and a rootfs with one small shell script per
entrypoint.  rkt runs them on the host, from the pod's copy of the rootfs,
with cwd in the pod directory; each execs the stage1 installed by
build.sh (an absolute path, taken when the image is written), so the
image is for this machine's checkout, not for distribution.
rootfs/rkt/status/ is there, empty, because rkt refuses a stage1 without it;
etc/hosts-fallback is what stage0 starts rkt-hosts with.

Interface version 6: `run` takes every flag rkt passes up to it (rkt/interface.py's
RUN_FLAGS), `--ipc` (what 6 adds to 5) included, `gc` takes --local-config,
and the crossing entrypoints of mutable pods (app/add, app/start, app/stop,
app/rm) are declared, so `rkt app sandbox` and `rkt app ...` work with this
stage1.
"""
import io
import json
import os
import platform
import shlex
import sys
import tarfile

from stage1 import __version__

NAME = "stage1.example/stage1"
INTERFACE_VERSION = "6"
# (annotation, file in rootfs, stage1's words)
ENTRYPOINTS = (("run", "run", "run"), ("enter", "enter", "enter"), ("stop", "stop", "stop"),
               ("gc", "gc", "gc"), ("app/add", "app-add", "app add"),
               ("app/start", "app-start", "app start"), ("app/stop", "app-stop", "app stop"),
               ("app/rm", "app-rm", "app rm"))
# What rkt's own stage1 images hold and stage0 expects: rkt/status (it
# touches it before the exec), etc (rkt-resolv.conf, rkt-hosts), opt/stage2
# (the apps), rkt/env.
ROOTFS_DIRS = ("rootfs", "rootfs/etc", "rootfs/opt", "rootfs/opt/stage2", "rootfs/rkt",
               "rootfs/rkt/status", "rootfs/rkt/env")
# stage0 starts rkt-hosts (--hosts-entry) with the stage1's etc/hosts-fallback.
HOSTS_FALLBACK = b"""\
# This is the default rkt /etc/hosts
127.0.0.1 localhost localhost.domain localhost4 localhost4.localdomain4
::1 ip6-localhost ip6-loopback localhost6 localhost6.localdomain6
"""
ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "i386",
        "ppc64le": "ppc64le", "s390x": "s390x"}


def manifest():
    annotations = [{"name": "coreos.com/rkt/stage1/%s" % name, "value": "/" + path}
                   for name, path, _ in ENTRYPOINTS]
    annotations.append({"name": "coreos.com/rkt/stage1/interface-version",
                        "value": INTERFACE_VERSION})
    return {
        "acKind": "ImageManifest",
        "acVersion": "0.8.11",
        "name": NAME,
        "labels": [{"name": "version", "value": __version__},
                   {"name": "arch", "value": ARCH.get(platform.machine(), platform.machine())},
                   {"name": "os", "value": "linux"}],
        "annotations": annotations,
    }


def entrypoint(stage1_bin, command):
    return ("#!/bin/sh\n"
            "# rkt's %s entrypoint: the stage1 this image was written for.\n"
            "exec %s %s \"$@\"\n" % (command, shlex.quote(stage1_bin), command)).encode()


def _add(tar, name, data=None, mode=0o644, mtime=0):
    info = tarfile.TarInfo(name)
    info.mtime, info.uid, info.gid, info.uname, info.gname = mtime, 0, 0, "root", "root"
    if data is None:
        info.type, info.mode = tarfile.DIRTYPE, 0o755
        tar.addfile(info)
        return
    info.size, info.mode = len(data), mode
    tar.addfile(info, io.BytesIO(data))


def write(path, stage1_bin):
    """The image at path (gzip-compressed tar), written to a temporary name
    and renamed."""
    mtime = int(os.environ.get("SOURCE_DATE_EPOCH", os.stat(__file__).st_mtime))
    tmp = "%s.%d.tmp" % (path, os.getpid())
    with tarfile.open(tmp, "w:gz", format=tarfile.PAX_FORMAT) as tar:
        _add(tar, "manifest", (json.dumps(manifest(), indent=2) + "\n").encode(), mtime=mtime)
        for directory in ROOTFS_DIRS:
            _add(tar, directory, mtime=mtime)
        _add(tar, "rootfs/etc/hosts-fallback", HOSTS_FALLBACK, 0o644, mtime)
        for _, name, command in ENTRYPOINTS:
            _add(tar, "rootfs/" + name, entrypoint(stage1_bin, command), 0o755, mtime)
    os.rename(tmp, path)


def default_stage1():
    """The `stage1` beside the interpreter that runs us: the venv's."""
    return os.path.join(os.path.dirname(os.path.abspath(sys.executable)), "stage1")


def main(argv):
    out, stage1_bin = "stage1.aci", default_stage1()
    args = list(argv)
    while args:
        arg = args.pop(0)
        if arg in ("-o", "--output") and args:
            out = args.pop(0)
        elif arg == "--stage1" and args:
            stage1_bin = args.pop(0)
        else:
            sys.stderr.write("usage: python -m stage1.aci [-o FILE] [--stage1 PATH]\n")
            return 2
    if not os.access(stage1_bin, os.X_OK):
        sys.stderr.write("stage1.aci: %s is not an executable stage1: run ./build.sh\n"
                         % stage1_bin)
        return 1
    write(out, os.path.abspath(stage1_bin))
    sys.stdout.write("%s: a stage1 for rkt, entrypoints exec %s\n" % (out, stage1_bin))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
