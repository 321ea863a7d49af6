"""The seccomp suite: what the default filter costs an app, and what the
filter (and the protected paths) cost the spawn path of an isolated pod.

  syscall loop  bench/syscall_loop.c, compiled static, the one app of an
                isolated pod: N getppid() calls and N one-byte reads of
                /dev/zero, timed by the app itself (so the pod's start and
                stop stay out of it); the pod runs with the default filter
                and with --disable-seccomp, rounds alternating.
  one spawn     stage1's native spawn of /bin/true and its reaping, with
                no_new_privs, with and without the default filter: the
                filter's own cost on the spawn path (the kernel checks,
                caches and JIT-compiles the program at each install).
  200 apps      an isolated pod of 200 apps (`sleep 1000`, busybox-static
                hard-linked into 200 roots): from spawning `stage1 run` until
                every app has exec'd (its comm is `sleep` under the pod's
                init, read every millisecond), with the default filter, with
                --disable-seccomp, and with --disable-paths as well (what the
                protected paths' mounts add to preparing the roots and to
                each app's copy of the pod's mount namespace).

An isolated pod is PID 1 of its own PID namespace by itself: no unshare.
Each run's pod directory is removed with `stage1 gc` after it.
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid

import harness
from harness import BenchError

VENV = os.environ.get("STAGE1_VENV") or os.path.join(harness.ROOT, ".venv")
STAGE1 = os.path.join(VENV, "bin", "stage1")
BUSYBOX = "/usr/bin/busybox"

APPS = 200
FULL = {"rounds": 7, "loop": 2000000, "pod_rounds": 5, "spawns": 100}
QUICK = {"rounds": 3, "loop": 300000, "pod_rounds": 2, "spawns": 30}

LOOP_ROWS = [("default filter", ()), ("--disable-seccomp", ("--disable-seccomp",))]
POD_ROWS = [("default filter", ()), ("--disable-seccomp", ("--disable-seccomp",)),
            ("--disable-seccomp --disable-paths", ("--disable-seccomp", "--disable-paths"))]


def run(quick=False, log=print):
    settings = QUICK if quick else FULL
    for path in (STAGE1, BUSYBOX):
        if not os.access(path, os.X_OK):
            raise BenchError("%s is missing (./build.sh bench installs it)" % path)
    # Short paths: the pod's unix sockets must fit in 108 bytes.
    tmp = os.path.join("/tmp", "s1b-" + uuid.uuid4().hex[:8])
    os.makedirs(tmp)
    try:
        loop = harness.compile_static(os.path.join(harness.HERE, "syscall_loop.c"), tmp,
                                      "syscall_loop")
        loops = {label: [] for label, _ in LOOP_ROWS}
        for r in range(settings["rounds"]):
            for label, flags in _rotate(LOOP_ROWS, r):
                log("seccomp: loop round %d/%d: %s" % (r + 1, settings["rounds"], label))
                loops[label].append(_loop_run(tmp, loop, settings["loop"], flags))
        spawns = _spawns(settings, log)
        pods = {label: [] for label, _ in POD_ROWS}
        pod = _make_pod(tmp)
        for r in range(settings["pod_rounds"]):
            for label, flags in _rotate(POD_ROWS, r):
                log("seccomp: 200 apps round %d/%d: %s" % (r + 1, settings["pod_rounds"], label))
                pods[label].append(_pod_run(pod, flags))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return report(loops, spawns, pods, settings)


def _rotate(rows, r):
    return rows[r % len(rows):] + rows[:r % len(rows)]


# -- the syscall loop ---------------------------------------------------------------

def _pod_dir(tmp, apps):
    """A pod directory in rkt's layout, named by a fresh UUID (its cgroups
    are stage1-<UUID>); the manifest lists `apps` [(name, exec)]."""
    path = os.path.join(tmp, str(uuid.uuid4()))
    manifest = {"acKind": "PodManifest", "acVersion": "0.8.11",
                "apps": [{"name": name, "image": {"id": "sha512-" + "0" * 128},
                          "app": {"exec": argv, "user": "0", "group": "0"}}
                         for name, argv in apps]}
    os.makedirs(os.path.join(path, "stage1", "rootfs"))
    with open(os.path.join(path, "pod"), "w") as f:
        json.dump(manifest, f)
    return path


def _app_root(pod, name):
    root = os.path.join(pod, "stage1", "rootfs", "opt", "stage2", name, "rootfs")
    os.makedirs(os.path.join(root, "bin"))
    return root


def _loop_run(tmp, loop, n, flags):
    pod = _pod_dir(tmp, [("loop", ["/bin/syscall_loop", str(n)])])
    shutil.copy2(loop, os.path.join(_app_root(pod, "loop"), "bin", "syscall_loop"))
    try:
        done = subprocess.run([STAGE1, "run"] + list(flags) + [pod], capture_output=True,
                              text=True, timeout=120, stdin=subprocess.DEVNULL)
    finally:
        _gc(pod)
    if done.returncode != 0:
        raise BenchError("the loop pod exited %d: %s" % (done.returncode, done.stderr[-300:]))
    found = dict(line.split() for line in done.stdout.splitlines() if len(line.split()) == 2)
    return {"getppid": float(found["getppid"]), "read": float(found["read"])}


def _gc(pod):
    subprocess.run([STAGE1, "gc", pod], capture_output=True, timeout=60)
    shutil.rmtree(pod, ignore_errors=True)


# -- one spawn ----------------------------------------------------------------------

def _spawns(settings, log):
    """{row: [us per spawn and reap]} of the native spawn, rows alternating."""
    sys.path.insert(0, harness.ROOT)
    from stage1.engine import native
    from stage1.isolation import seccomp
    program = seccomp.default_filter().program
    out = {"default filter": [], "no filter": []}
    for r in range(settings["rounds"]):
        log("seccomp: spawn round %d/%d" % (r + 1, settings["rounds"]))
        for label, prog in _rotate([("default filter", program), ("no filter", None)], r):
            t0 = time.perf_counter()
            for _ in range(settings["spawns"]):
                pid = native.spawn(["/bin/true"], ["true"], [], no_new_privs=True, seccomp=prog)
                os.waitpid(pid, 0)
            out[label].append((time.perf_counter() - t0) / settings["spawns"] * 1e6)
    return out


# -- 200 apps -----------------------------------------------------------------------

def _make_pod(tmp):
    """200 apps, each a root with busybox (a hard link) and a sleep link."""
    apps = [("app%03d" % i, ["/bin/sleep", "1000"]) for i in range(APPS)]
    pod = _pod_dir(tmp, apps)
    busybox = os.path.join(tmp, "busybox")
    shutil.copy2(BUSYBOX, busybox)
    for name, _ in apps:
        bin_dir = os.path.join(_app_root(pod, name), "bin")
        os.link(busybox, os.path.join(bin_dir, "busybox"))
        os.symlink("busybox", os.path.join(bin_dir, "sleep"))
    return pod


def _pod_run(pod, flags):
    """{running}: seconds from spawning `stage1 run` until all apps have exec'd."""
    stderr_path = pod + ".stderr"
    t0 = time.perf_counter()
    host = harness.spawn([STAGE1, "run"] + list(flags) + [pod], stderr_path=stderr_path)
    try:
        init = harness.wait_until("the pod's init", lambda: next(iter(harness.children(host)),
                                                                  None), timeout=30.0)
        seen = {}
        try:
            harness.wait_until("%d apps running" % APPS,
                               lambda: _running(init, seen) >= APPS, timeout=60.0)
        except BenchError:
            raise BenchError("%d of %d apps running after 60 s (stderr: %s)"
                             % (_running(init, seen), APPS, _tail(stderr_path)))
        running = time.perf_counter() - t0
        os.kill(host, signal.SIGTERM)
        status = harness.wait_until("the pod to exit", lambda: _reaped(host), timeout=60.0)[0]
        host = None
    finally:
        if host is not None:
            harness.end_namespace(host)
        subprocess.run([STAGE1, "gc", pod], capture_output=True, timeout=60)
    if status != 0:
        raise BenchError("the pod exited %d after SIGTERM (stderr: %s)"
                         % (status, _tail(stderr_path)))
    return {"running": running}


def _running(init, seen):
    for pid in harness.children(init):
        if pid not in seen:
            try:
                with open("/proc/%d/comm" % pid, "rb") as f:
                    if f.read().strip() == b"sleep":
                        seen[pid] = True
            except OSError:
                pass
    return len(seen)


def _reaped(pid):
    done, status = os.waitpid(pid, os.WNOHANG)
    return (os.waitstatus_to_exitcode(status),) if done else None


def _tail(path):
    try:
        with open(path, errors="replace") as f:
            return f.read()[-300:].strip() or "(no stderr)"
    except OSError:
        return "(no stderr)"


# -- the report -----------------------------------------------------------------------

def report(loops, spawns, pods, settings):
    med = {label: {k: harness.median([r[k] for r in runs]) for k in runs[0]}
           for label, runs in loops.items()}
    base = med["--disable-seccomp"]
    rows = [[label, "%.1f ns" % m["getppid"], "%.2fx" % (m["getppid"] / base["getppid"]),
             "%.1f ns" % m["read"], "%.2fx" % (m["read"] / base["read"])]
            for label, m in med.items()]
    loop_table = harness.markdown_table(
        ["pod", "getppid", "vs no filter", "read 1 byte", "vs no filter"], rows)
    pmed = {label: harness.median([r["running"] for r in runs]) for label, runs in pods.items()}
    off = pmed["--disable-seccomp"]
    prow = [[label, "%.1f ms" % (t * 1000), "%.2fx" % (t / off)] for label, t in pmed.items()]
    pod_table = harness.markdown_table(["pod", "all %d running" % APPS,
                                        "vs --disable-seccomp"], prow)
    smed = {label: harness.median(v) for label, v in spawns.items()}
    spawn_table = harness.markdown_table(
        ["spawn + reap of /bin/true", "per spawn", "vs no filter"],
        [[label, "%.0f us" % t, "%.2fx" % (t / smed["no filter"])] for label, t in smed.items()])
    per_app = (pmed["default filter"] - off) / APPS * 1e6
    paths = (off - pmed["--disable-seccomp --disable-paths"]) / APPS * 1e6
    return "\n".join([
        "### The filter's cost to an app", "", loop_table, "",
        "- %d calls of each per run, timed inside the app (bench/syscall_loop.c, static), "
        "medians of %d rounds, rows alternating." % (settings["loop"], settings["rounds"]),
        "- the default filter is rkt's whitelist, %d BPF instructions over the native and "
        "the 32-bit ABI; "
        "Linux caches the verdict of a filter that does not look at arguments for each "
        "allowed syscall (5.11+), so an allowed call skips the program." % _insns(),
        "", "### The spawn path", "", spawn_table, "",
        "- %d spawns per row and round, medians of %d rounds: the filter adds %.0f us to "
        "a spawn." % (settings["spawns"], settings["rounds"],
                      smed["default filter"] - smed["no filter"]),
        "", pod_table, "",
        "- an isolated pod of %d apps, from spawning `stage1 run` until every app has "
        "exec'd, medians of %d rounds, rows rotating; the filter is compiled once for the "
        "pod, installed by each child." % (APPS, settings["pod_rounds"]),
        "- per app, the filter adds %.0f us and the protected paths %.0f us (their mounts "
        "in each root); a figure below zero is this run's noise." % (per_app, paths),
    ])


def _insns():
    from stage1.isolation import seccomp
    return seccomp.default_filter().program.length


if __name__ == "__main__":
    if os.geteuid() != 0:
        sys.exit("seccomp bench: isolated pods need root")
    print(run(quick="--quick" in sys.argv[1:], log=lambda m: print(m, file=sys.stderr)))
