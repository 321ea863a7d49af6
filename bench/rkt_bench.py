"""The rkt suite: the self-contained stage1.aci beside the checkout-bound
one (`python -m stage1.rkt.aci --stage1 .venv/bin/stage1`, whose
entrypoints exec this checkout's venv).

  size         each image's size, compressed and unpacked
  first output from spawning `rkt run --net=none IMAGE --exec=/bin/echo` to
               the app's first byte on rkt's stdout (rkt's own work, the
               stage1's start-up and the pod's set-up), rounds alternating;
               with --stage1-path (rkt reads and hashes the image every run)
               and with --stage1-hash (the image already in rkt's store)

A real rkt is needed (a stage0 built by hand, on PATH); without one the
suite says so and is skipped.  rkt runs with a data directory of its own,
collected (`rkt gc`, `rkt image gc`) and removed at the end.
"""
import gzip
import io
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
import time

import harness
from harness import BenchError

VENV = os.environ.get("STAGE1_VENV") or os.path.join(harness.ROOT, ".venv")
PY = os.path.join(VENV, "bin", "python")
BUSYBOX = "/usr/bin/busybox"


def _busybox_aci(path):
    manifest = {"acKind": "ImageManifest", "acVersion": "0.8.11", "name": "example.com/busybox",
                "labels": [{"name": "version", "value": "1.35.0"},
                           {"name": "arch", "value": "amd64"}, {"name": "os", "value": "linux"}],
                "app": {"exec": ["/bin/echo", "hello"], "user": "0", "group": "0"}}
    with tarfile.open(path, "w:gz") as tar:
        def add(name, data=None, mode=0o755, link=None):
            info = tarfile.TarInfo(name)
            if link:
                info.type, info.linkname = tarfile.SYMTYPE, link
                tar.addfile(info)
            elif data is None:
                info.type, info.mode = tarfile.DIRTYPE, mode
                tar.addfile(info)
            else:
                info.size, info.mode = len(data), mode
                tar.addfile(info, io.BytesIO(data))
        add("manifest", json.dumps(manifest).encode(), 0o644)
        for d in ("rootfs", "rootfs/bin", "rootfs/etc"):
            add(d)
        with open(BUSYBOX, "rb") as f:
            add("rootfs/bin/busybox", f.read())
        for applet in ("sh", "echo"):
            add("rootfs/bin/" + applet, link="busybox")


def _unpacked(path):
    with gzip.open(path, "rb") as f:
        return sum(len(c) for c in iter(lambda: f.read(1 << 20), b""))


def _first_output(argv):
    """Seconds from spawning argv to its first byte on stdout; it must exit 0."""
    start = time.monotonic()
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         stdin=subprocess.DEVNULL, bufsize=0)
    first = p.stdout.read(1)
    took = time.monotonic() - start
    out, err = p.communicate(timeout=120)
    if p.returncode != 0 or first + out != b"hello\n":
        raise BenchError("%s: %d %r %s" % (argv, p.returncode, first + out, err[-500:]))
    return took


def run(quick, log):
    rkt = shutil.which("rkt")
    if rkt is None:
        log("rkt: no rkt on PATH: skipped")
        return "Skipped: no `rkt` on PATH (build rkt's stage0 from its sources to run this)."
    rounds = 3 if quick else 10
    base = tempfile.mkdtemp(prefix="stage1-rkt-bench-", dir="/tmp")
    data = os.path.join(base, "data")

    def rkt_cmd(*args):
        return [rkt, "--dir=" + data, "--insecure-options=image"] + list(args)
    try:
        images = {"self-contained": os.path.join(base, "self-contained.aci"),
                  "checkout-bound": os.path.join(base, "checkout-bound.aci")}
        for name, path in images.items():
            extra = [] if name == "self-contained" else ["--stage1",
                                                         os.path.join(VENV, "bin", "stage1")]
            r = subprocess.run([PY, "-m", "stage1.rkt.aci", "-o", path] + extra,
                               cwd=harness.ROOT, capture_output=True, text=True, timeout=600)
            if r.returncode != 0:
                raise BenchError("building %s: %s" % (name, r.stderr))
            log("rkt: " + r.stdout.strip())
        sizes = {name: (os.path.getsize(path), _unpacked(path)) for name, path in images.items()}
        app = os.path.join(base, "busybox.aci")
        _busybox_aci(app)
        hashes = {}
        for name, path in images.items():
            r = subprocess.run(rkt_cmd("fetch", path), capture_output=True, text=True,
                               timeout=300)
            if r.returncode != 0:
                raise BenchError("rkt fetch %s: %s" % (path, r.stderr))
            hashes[name] = r.stdout.strip().splitlines()[-1]
        variants = []
        for name in images:
            variants.append(("%s, --stage1-path" % name, "--stage1-path=" + images[name]))
            variants.append(("%s, --stage1-hash" % name, "--stage1-hash=" + hashes[name]))
        for _, flag in variants:                       # warm: the tree store, the caches
            _first_output(rkt_cmd("run", flag, "--net=none", app))
        times = {label: [] for label, _ in variants}
        for i in range(rounds):
            order = variants if i % 2 == 0 else variants[::-1]
            for label, flag in order:
                times[label].append(_first_output(rkt_cmd("run", flag, "--net=none", app)))
            log("rkt: round %d/%d" % (i + 1, rounds))
    finally:
        subprocess.run(rkt_cmd("gc", "--grace-period=0s", "--expire-prepared=0s"),
                       capture_output=True, timeout=600)
        subprocess.run(rkt_cmd("image", "gc"), capture_output=True, timeout=600)
        shutil.rmtree(base, ignore_errors=True)
    return _report(sizes, times, rounds)


def _mib(n):
    return "%.1f MiB" % (n / 1048576.0) if n >= 1048576 else "%.1f KiB" % (n / 1024.0)


def _ms(seconds):
    return "%.0f ms" % (seconds * 1000)


def _report(sizes, times, rounds):
    rows = [(name, _mib(packed), _mib(unpacked)) for name, (packed, unpacked) in sizes.items()]
    out = ["#### The images", "", harness.markdown_table(["image", "stage1.aci", "unpacked"],
                                                          rows), ""]
    med = {label: harness.median(v) for label, v in times.items()}
    rows = [(label, _ms(med[label]), _ms(min(v)), _ms(max(v))) for label, v in times.items()]
    out += ["#### `rkt run` to the app's first output, %d rounds" % rounds, "",
            harness.markdown_table(["stage1 image, rkt flag", "median", "min", "max"], rows), "",
            "- `rkt --insecure-options=image run --net=none IMAGE` of a busybox image whose app is "
            "`/bin/echo hello`; from spawning rkt to the first byte on its stdout; rounds "
            "alternate the rows' order; one warm-up run of each row first.", ""]
    out.append("```")
    for flag in ("--stage1-path", "--stage1-hash"):
        a = med["self-contained, %s" % flag]
        b = med["checkout-bound, %s" % flag]
        out.append("first output, %s: self-contained %s vs checkout-bound %s = %.2fx   "
                   "target <= 1.10x   %s" % (flag, _ms(a), _ms(b), a / b,
                                              "PASS" if a / b <= 1.10 else "FAIL"))
    packed = sizes["self-contained"][0]
    out.append("self-contained stage1.aci: %s   target < 25 MiB   %s"
               % (_mib(packed), "PASS" if packed < 25 * 1048576 else "FAIL"))
    out.append("```")
    return "\n".join(out)
