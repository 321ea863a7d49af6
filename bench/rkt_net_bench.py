"""stage1 under a real rkt (`--only rkt-net`): from `rkt run` to the app's first
output line, with `--net=none` and with rkt's default network (CNI: ptp,
host-local, masquerading, torn down by `rkt gc` between runs).

Skipped when `rkt` is not on PATH.  rkt's data directory and local config
are private to the bench; the image is busybox from Debian's
busybox-static.  rkt's own systemd stage1 took about 2.5 s to first output
by its rkt-monitor figures (a reference, not measured here).
"""
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time

import harness

RKT = shutil.which("rkt")


def busybox_aci(path):
    manifest = {"acKind": "ImageManifest", "acVersion": "0.8.11", "name": "example.com/busybox",
                "labels": [{"name": "version", "value": "1.35.0"},
                           {"name": "arch", "value": "amd64"}, {"name": "os", "value": "linux"}],
                "app": {"exec": ["/bin/echo", "first line"], "user": "0", "group": "0"}}
    with tarfile.open(path, "w:gz") as tar:
        def add(name, data=None, link=None):
            info = tarfile.TarInfo(name)
            if link:
                info.type, info.linkname = tarfile.SYMTYPE, link
                tar.addfile(info)
            elif data is None:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            else:
                info.size, info.mode = len(data), 0o755
                tar.addfile(info, io.BytesIO(data))
        add("manifest", json.dumps(manifest).encode())
        for d in ("rootfs", "rootfs/bin", "rootfs/etc"):
            add(d)
        with open("/usr/bin/busybox", "rb") as f:
            add("rootfs/bin/busybox", f.read())
        add("rootfs/bin/echo", link="busybox")


class Rkt:
    def __init__(self, workdir):
        self.dir = os.path.join(workdir, "data")
        self.config = os.path.join(workdir, "config")
        os.makedirs(os.path.join(self.config, "net.d"))
        self.stage1 = os.path.join(workdir, "stage1.aci")
        subprocess.run([sys.executable, "-m", "stage1.rkt.aci", "-o", self.stage1], check=True,
                       cwd=harness.ROOT, capture_output=True)
        self.image = os.path.join(workdir, "busybox.aci")
        busybox_aci(self.image)
        # Fetched once and run by hash, as the README advises: with
        # --stage1-path rkt reads and hashes the whole image on every run.
        fetched = subprocess.run(self.argv("fetch", self.stage1), capture_output=True,
                                 text=True, check=True)
        self.stage1_hash = fetched.stdout.split()[-1]

    def argv(self, *args):
        return [RKT, "--dir=" + self.dir, "--local-config=" + self.config,
                "--insecure-options=image"] + list(args)

    def first_output(self, net):
        """Seconds from spawning `rkt run` to the app's first line."""
        start = time.perf_counter()
        argv = self.argv("run", "--stage1-hash=" + self.stage1_hash, "--net=" + net, self.image)
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        line = proc.stdout.readline()
        took = time.perf_counter() - start
        proc.stdout.close()
        if proc.wait(60) != 0 or line != b"first line\n":
            raise harness.BenchError("rkt run --net=%s: %r, exit %s" % (net, line, proc.returncode))
        return took

    def gc(self):
        subprocess.run(self.argv("gc", "--grace-period=0s"), capture_output=True, timeout=120)


def run(quick=False, log=print):
    if RKT is None:
        return "rkt is not on PATH: skipped.\n"
    rounds = 3 if quick else 10
    samples = {"none": [], "default": []}
    with harness.workdir() as d:
        r = Rkt(d)
        try:
            r.first_output("none")           # warm rkt's image store
            r.gc()
            for i in range(rounds):
                for net in (("none", "default") if i % 2 else ("default", "none")):
                    samples[net].append(r.first_output(net))
                    r.gc()
            log("rkt: first output p50 none %.0f ms, default %.0f ms" % tuple(
                harness.median(samples[n]) * 1e3 for n in ("none", "default")))
        finally:
            r.gc()
            subprocess.run(r.argv("image", "gc"), capture_output=True)
    rows = [["rkt run --net=%s" % n, "%.0f ms" % (harness.median(samples[n]) * 1e3),
             "%.0f ms" % (min(samples[n]) * 1e3), "%.0f ms" % (max(samples[n]) * 1e3)]
            for n in ("none", "default")]
    return "\n".join([
        harness.markdown_table(["command", "first output p50", "min", "max"], rows), "",
        "- %d runs each, alternating, `rkt gc` after each; from spawning `rkt run` to the app's "
        "first stdout line (busybox echo); the self-contained stage1.aci, fetched once and "
        "given by hash; rkt %s." % (rounds, _version()),
        "- rkt's systemd stage1 took about 2.5 s by its rkt-monitor figures (not measured here).",
        ""])


def _version():
    out = subprocess.run([RKT, "version"], capture_output=True, text=True).stdout
    return out.split("\n")[0].split(":", 1)[-1].strip()


if __name__ == "__main__":
    print(run("--quick" in sys.argv))
