"""`python -m stage1.rkt.aci [-o FILE]` (`./build.sh aci`): write stage1.aci,
an image rkt takes as its stage1 (`rkt run --stage1-path=stage1.aci ...`).

The image holds a manifest whose annotations name the entrypoints of
rkt's stage1 interface, and a rootfs with one small shell script per
entrypoint.  rkt runs them on the host, from the pod's copy of the rootfs
(enter: from its tree store), with cwd in the pod directory.  By default
the image is self-contained (bundle.py): each entrypoint runs the image's
own interpreter through the image's own loader and libraries, so the
image can be copied to any Linux host of its architecture that has
/bin/sh.  With `--stage1 PATH` the entrypoints exec that stage1 instead
(an absolute path, taken when the image is written): an image for this
machine's checkout only, as before (bench/ compares the two).
rootfs/rkt/status/ is there, empty, because rkt refuses a stage1 without it;
etc/hosts-fallback is what stage0 starts rkt-hosts with.

Interface version 6: `run` takes every flag rkt passes up to it (rkt/interface.py's
RUN_FLAGS), `--ipc` (what 6 adds to 5) included, `gc` takes --local-config,
and the crossing entrypoints of mutable pods (app/add, app/start, app/stop,
app/rm) are declared, so `rkt app sandbox` and `rkt app ...` work with this
stage1.

Reproducible: every entry has the mtime SOURCE_DATE_EPOCH (else the newest
mtime of stage1's sources), owner root, and a fixed order; the gzip header
has no name and that mtime; two builds from the same tree and host are
byte-identical.
"""
import gzip
import io
import json
import os
import platform
import shlex
import sys
import tarfile
import tempfile

from stage1 import __version__
from stage1.rkt import bundle

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


def _add(tar, name, data=None, mode=0o644, mtime=0, link=None):
    info = tarfile.TarInfo(name)
    info.mtime, info.uid, info.gid, info.uname, info.gname = mtime, 0, 0, "root", "root"
    if link is not None:
        info.type, info.linkname, info.mode = tarfile.SYMTYPE, link, 0o777
        tar.addfile(info)
        return
    if data is None:
        info.type, info.mode = tarfile.DIRTYPE, 0o755
        tar.addfile(info)
        return
    info.size, info.mode = len(data), mode
    tar.addfile(info, io.BytesIO(data))


def source_date_epoch():
    """SOURCE_DATE_EPOCH, else the newest mtime among stage1's own files."""
    if os.environ.get("SOURCE_DATE_EPOCH"):
        return int(os.environ["SOURCE_DATE_EPOCH"])
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    newest = 0
    for directory, _, names in os.walk(here):
        for n in names:
            if n.endswith(".py"):
                newest = max(newest, int(os.stat(os.path.join(directory, n)).st_mtime))
    return newest


def write(path, stage1_bin=None, workdir=None):
    """The image at path (gzip-compressed tar), written to a temporary name
    and renamed: self-contained, or with entrypoints that exec stage1_bin.
    Returns the number of files in its rootfs."""
    mtime = source_date_epoch()
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        if stage1_bin is None:
            content = bundle.files(tmp, [name for _, name, _ in ENTRYPOINTS])
        else:
            content = [(name, entrypoint(stage1_bin, command), 0o755, None)
                       for _, name, command in ENTRYPOINTS]
    entries = {"rootfs/" + p: (d, m, link) for p, d, m, link in content}
    entries["rootfs/etc/hosts-fallback"] = (HOSTS_FALLBACK, 0o644, None)
    dirs = set(ROOTFS_DIRS)
    for name in entries:
        parent = name.rsplit("/", 1)[0]
        while parent not in dirs:
            dirs.add(parent)
            parent = parent.rsplit("/", 1)[0]
    tmp = "%s.%d.tmp" % (path, os.getpid())
    try:
        with open(tmp, "wb") as raw, \
                gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=mtime,
                              compresslevel=6) as gz, \
                tarfile.open(fileobj=gz, mode="w|", format=tarfile.PAX_FORMAT) as tar:
            _add(tar, "manifest", (json.dumps(manifest(), indent=2) + "\n").encode(), mtime=mtime)
            for name in sorted(dirs | set(entries)):
                if name in entries:
                    data, mode, link = entries[name]
                    _add(tar, name, data, mode, mtime, link)
                else:
                    _add(tar, name, mtime=mtime)
        os.rename(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return len(entries)


def default_stage1():
    """The `stage1` beside the interpreter that runs us: the venv's."""
    return os.path.join(os.path.dirname(os.path.abspath(sys.executable)), "stage1")


def _mib(n):
    return "%.1f MiB" % (n / 1048576.0)


def main(argv):
    out, stage1_bin = "stage1.aci", None
    args = list(argv)
    while args:
        arg = args.pop(0)
        if arg in ("-o", "--output") and args:
            out = args.pop(0)
        elif arg == "--stage1" and args:
            stage1_bin = args.pop(0)
        else:
            sys.stderr.write("usage: python -m stage1.rkt.aci [-o FILE] [--stage1 PATH]\n")
            return 2
    if stage1_bin is not None and not os.access(stage1_bin, os.X_OK):
        sys.stderr.write("stage1.aci: %s is not an executable stage1: run ./build.sh\n"
                         % stage1_bin)
        return 1
    try:
        count = write(out, None if stage1_bin is None else os.path.abspath(stage1_bin))
    except bundle.BundleError as err:
        sys.stderr.write("stage1.aci: %s\n" % err)
        return 1
    size = os.path.getsize(out)
    if stage1_bin is None:
        with gzip.open(out, "rb") as f:
            unpacked = sum(len(chunk) for chunk in iter(lambda: f.read(1 << 20), b""))
        sys.stdout.write("%s: a self-contained stage1 for rkt, %d files, %s (%s unpacked)\n"
                         % (out, count, _mib(size), _mib(unpacked)))
    else:
        sys.stdout.write("%s: a stage1 for rkt, entrypoints exec %s, %s\n"
                         % (out, stage1_bin, _mib(size)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
