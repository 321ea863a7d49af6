"""The exec suite: `stage1 exec` beside tini, dumb-init and catatonit (issue 2).

Every init runs as PID 1 of a fresh PID namespace (see harness.Namespace)
with the C app of app.c, and every figure is taken for all inits in the
same run, interleaved where it is a wall time, so that a noisy machine
moves all rows together; what matters is the ratio between rows.

  start-up      `INIT -- /bin/true`, median wall time of unshare's whole run;
                rounds rotate the order of the rows.  The "Python floor" is
                the project's interpreter spawning /bin/true and waiting for
                it, the least any init written in Python can cost.
  idle RSS      VmRSS of the init while the app waits (all inits at once).
  idle wake-ups voluntary + involuntary context switches of the init while
                the app waits, per second.
  signal p50/99 SIGUSR1 from the bench to the init until the app, blocked in
                sigwaitinfo, has written a byte back; one signal in flight at
                a time so none is merged, round-robin over the inits so each
                finds its caches cold, as a real PID 1 does.  The warm p50
                sends bursts of 100 to one init: the gap between the two is
                what cold caches cost that init.  CPU per signal is the
                init's own CPU time per forwarded signal, without the
                scheduler's noise that wall times carry.
  CPU/orphan    the init's own CPU time (schedstat, not its children's)
                across a storm of orphans the app makes, divided by their
                number; one init at a time, since a storm takes a core.

Beside the peers are two Python rows that no target is about: the floor
(start-up and RSS of the bare interpreter) and mininit.py, tini's loop
written with the standard library, which shows what any Python init pays
per wake-up and so how much of stage1's figures is stage1's own.
"""
import importlib.util
import os
import shutil
import signal
import sys
import time

import harness
from harness import BenchError, Namespace

# build.sh's venv, found from this file rather than the working directory.
VENV = os.environ.get("STAGE1_VENV") or os.path.join(harness.ROOT, ".venv")
STAGE1 = os.path.join(VENV, "bin", "stage1")
PYTHON = os.path.join(VENV, "bin", "python")

INITS = [
    ("stage1 exec", [STAGE1, "exec", "--"]),
    ("tini", ["tini", "--"]),
    ("dumb-init", ["dumb-init", "--"]),
    ("catatonit", ["catatonit", "--"]),
    # Not a peer: tini's loop in Python's standard library, to show how much
    # of a Python init's cost is the interpreter's.
    ("Python minimal init", [PYTHON, os.path.join(harness.HERE, "mininit.py")]),
]
FLOOR = "Python floor"
FLOOR_ARGV = [PYTHON, "-c", "import os, sys; "
              "os.waitpid(os.posix_spawn(sys.argv[1], sys.argv[1:], {}), 0)"]
REFERENCE = "tini"

FULL = {"startup_runs": 40, "idle_seconds": 2.0, "signal_samples": 1000,
        "orphans": 3000, "storm_rounds": 3}
QUICK = {"startup_runs": 10, "idle_seconds": 1.0, "signal_samples": 200,
         "orphans": 1000, "storm_rounds": 1}
WARMUP_SIGNALS = 20
WARM_BURST = 100

TARGET_RSS_KIB = 12 * 1024


def run(quick=False, log=print):
    """Measure everything; the markdown report (table, then target lines)."""
    settings = QUICK if quick else FULL
    _check_tools()
    warnings = []
    stale = stale_bytecode()
    if stale:
        warnings.append("stale bytecode in stage1/ (%s): start-up includes compiling;"
                        " ./build.sh bench compiles first" % ", ".join(stale))
        log("exec: " + warnings[-1])
    with harness.workdir() as tmp:
        app = harness.compile_c(os.path.join(harness.HERE, "app.c"), tmp, "app")
        log("exec: start-up, %d runs of each row ..." % settings["startup_runs"])
        startup, unshare_alone = measure_startup(settings["startup_runs"], tmp)
        log("exec: idle for %gs, then %d signals per init ..."
            % (settings["idle_seconds"], settings["signal_samples"]))
        idle, (latency, warm, signal_cpu) = measure_idle_and_signals(app, settings, tmp)
        log("exec: orphan storms, %d x %d orphans per init ..."
            % (settings["storm_rounds"], settings["orphans"]))
        orphans = measure_orphans(app, settings, tmp)
    results = {"startup": startup, "unshare": unshare_alone, "idle": idle,
               "latency": latency, "warm": warm, "signal_cpu": signal_cpu,
               "orphans": orphans, "warnings": warnings}
    return report(results, settings)


def stale_bytecode():
    """stage1 modules whose bytecode is missing or older than the source.

    The interpreter runs with PYTHONDONTWRITEBYTECODE here, so a module
    edited after `./build.sh` compiles at every start and start-up counts it."""
    pkg = os.path.join(harness.ROOT, "stage1")
    stale = []
    for name in sorted(os.listdir(pkg)):
        if not name.endswith(".py"):
            continue
        src = os.path.join(pkg, name)
        pyc = importlib.util.cache_from_source(src)
        if not os.path.exists(pyc) or os.stat(pyc).st_mtime < os.stat(src).st_mtime:
            stale.append(name)
    return stale


def _check_tools():
    needed = [argv[0] for _, argv in INITS] + ["unshare", "cc"]
    missing = [name for name in needed if not shutil.which(name)]
    if missing:
        raise BenchError("missing: %s (./build.sh bench installs the peers and builds stage1)"
                         % ", ".join(missing))


# -- start-up ---------------------------------------------------------------

def startup_rows():
    rows = [(label, harness.UNSHARE + argv + ["/bin/true"]) for label, argv in INITS]
    rows.append((FLOOR, harness.UNSHARE + FLOOR_ARGV + ["/bin/true"]))
    rows.append(("unshare alone", harness.UNSHARE + ["/bin/true"]))
    return rows


def measure_startup(runs, tmp):
    """({label: median seconds}, unshare-alone median seconds)."""
    rows = startup_rows()
    errpath = os.path.join(tmp, "startup.stderr")
    for _, argv in rows:             # warm the page cache
        harness.time_run(argv, errpath)
    times = {label: [] for label, _ in rows}
    for r in range(runs):
        for label, argv in rows[r % len(rows):] + rows[:r % len(rows)]:
            times[label].append(harness.time_run(argv, errpath))
    medians = {label: harness.median(t) for label, t in times.items()}
    return medians, medians.pop("unshare alone")


# -- idle and signals -------------------------------------------------------

def measure_idle_and_signals(app, settings, tmp):
    """Every init and the floor wait with the app at once: idle first, then signals."""
    from contextlib import ExitStack
    wait_app = [app, "wait", "{fd}"]
    with ExitStack() as stack:
        spaces = {label: stack.enter_context(Namespace(label, argv, wait_app, tmp))
                  for label, argv in INITS}
        spaces[FLOOR] = stack.enter_context(Namespace(FLOOR, FLOOR_ARGV, wait_app, tmp))
        time.sleep(0.5)              # let every init finish what follows the spawn
        idle = measure_idle(spaces, settings["idle_seconds"])
        inits = [spaces[label] for label, _ in INITS]
        latency, cpu = measure_signals(inits, settings["signal_samples"])
        warm, _ = measure_signals(inits, settings["signal_samples"], burst=WARM_BURST)
        for ns in inits:
            code = ns.stop()
            if code != 0:
                raise BenchError("%s exited %d after SIGTERM, expected 0" % (ns.label, code))
    return idle, (latency, warm, cpu)


def measure_idle(spaces, seconds):
    """{label: (VmRSS KiB, context switches per second)}."""
    rss = {label: harness.rss_kib(ns.init_pid) for label, ns in spaces.items()}
    before = {label: harness.context_switches(ns.init_pid) for label, ns in spaces.items()}
    t0 = time.monotonic()
    time.sleep(seconds)
    after = {label: harness.context_switches(ns.init_pid) for label, ns in spaces.items()}
    elapsed = time.monotonic() - t0
    return {label: (rss[label], (after[label] - before[label]) / elapsed) for label in spaces}


def measure_signals(spaces, samples, burst=1):
    """({label: [seconds from kill to the app's byte]}, {label: init CPU s per signal}).

    Bursts of `burst` signals to one init, round-robin over the inits.  With
    bursts of 1 each signal finds the init's memory as the other inits left
    the caches, as a PID 1 that hears a signal now and then does: that is the
    figure the targets use.  Long bursts show the same path with warm caches."""
    for ns in spaces:
        for _ in range(WARMUP_SIGNALS):
            _one_signal(ns)
    out = {ns.label: [] for ns in spaces}
    cpu = {ns.label: harness.cpu_ns(ns.init_pid) for ns in spaces}
    for i in range(samples // burst):
        k = i % len(spaces)
        for ns in spaces[k:] + spaces[:k]:
            out[ns.label].extend(_one_signal(ns) for _ in range(burst))
    for ns in spaces:
        cpu[ns.label] = (harness.cpu_ns(ns.init_pid) - cpu[ns.label]) / 1e9 / len(out[ns.label])
    return out, cpu


def _one_signal(ns):
    t0 = time.perf_counter()
    os.kill(ns.init_pid, signal.SIGUSR1)
    ns.expect(b"x")
    return time.perf_counter() - t0


# -- orphans ----------------------------------------------------------------

def measure_orphans(app, settings, tmp):
    """{label: [init CPU seconds per reaped orphan, one per round]}."""
    out = {label: [] for label, _ in INITS}
    for r in range(settings["storm_rounds"]):
        k = r % len(INITS)
        for label, argv in INITS[k:] + INITS[:k]:
            out[label].append(_one_storm(label, argv, app, settings["orphans"], tmp))
    return out


def _one_storm(label, argv, app, count, tmp):
    with Namespace(label, argv, [app, "storm", "{fd}", str(count)], tmp) as ns:
        time.sleep(0.2)
        before = harness.cpu_ns(ns.init_pid)
        # The go signal goes straight to the app, so forwarding it is not
        # counted against the init.
        os.kill(ns.app_pid, signal.SIGUSR1)
        ns.expect(b"d", timeout=120.0)
        # 'd' means the last orphan exists, not that it has been reaped: a
        # zombie stays in its parent's children file until then.
        harness.wait_until("%s to reap every orphan" % label,
                           lambda: harness.children(ns.init_pid) == [ns.app_pid], timeout=60.0)
        spent = harness.cpu_ns(ns.init_pid) - before
        ns.stop()
    return spent / 1e9 / count


# -- the report -------------------------------------------------------------

def report(res, settings):
    rows = [_row(label, res) for label, _ in INITS]
    rows.append(_floor_row(res))
    header = ["init", "start-up", "idle RSS", "idle wake-ups/s", "signal p50",
              "signal p99", "signal p50, warm", "CPU per signal", "CPU per reaped orphan"]
    notes = [
        "",
        "- start-up: median of %d runs of `unshare --pid --fork --mount-proc INIT -- /bin/true`;"
        " unshare alone takes %s of every row." % (settings["startup_runs"], _ms(res["unshare"])),
        "- idle: VmRSS and context switches of the init over %gs while the app waits in"
        " sigwaitinfo." % settings["idle_seconds"],
        "- signal: %d SIGUSR1 per init, one at a time round-robin over the inits, from"
        " os.kill on the init to a byte written by the app; *warm*: the same in bursts of %d"
        " to one init, so its caches stay warm; *CPU per signal*: the init's own CPU time"
        " per signal, one at a time." % (settings["signal_samples"], WARM_BURST),
        "- orphans: the init's own CPU time (schedstat) over %d storms of %d orphans,"
        " median storm." % (settings["storm_rounds"], settings["orphans"]),
        "- Python floor: `python -c 'import os; os.waitpid(os.posix_spawn(\"/bin/true\", ...), 0)'`"
        " with the project's interpreter, PID 1 like the inits.",
        "- Python minimal init: bench/mininit.py, tini's loop in the standard library;"
        " a reference, not a peer.",
    ] + ["- **warning**: %s" % w for w in res.get("warnings", ())]
    return "\n".join([harness.markdown_table(header, rows)] + notes + [""] + targets(res))


def _row(label, res):
    rss, wakeups = res["idle"][label]
    lat = res["latency"][label]
    return [label, _ms(res["startup"][label]), _kib(rss), "%.1f" % wakeups,
            _us(harness.percentile(lat, 50)), _us(harness.percentile(lat, 99)),
            _us(harness.percentile(res["warm"][label], 50)), _us(res["signal_cpu"][label]),
            _us(harness.median(res["orphans"][label]))]


def _floor_row(res):
    rss, wakeups = res["idle"][FLOOR]
    return [FLOOR, _ms(res["startup"][FLOOR]), _kib(rss), "%.1f" % wakeups] + ["-"] * 5


def targets(res):
    """One line per target: the figures, the ratio, PASS or MISS."""
    me, ref = "stage1 exec", REFERENCE
    lat_me, lat_ref = res["latency"][me], res["latency"][ref]
    p50 = harness.percentile(lat_me, 50), harness.percentile(lat_ref, 50)
    p99 = harness.percentile(lat_me, 99), harness.percentile(lat_ref, 99)
    cpu = harness.median(res["orphans"][me]), harness.median(res["orphans"][ref])
    base = res["unshare"]
    start = res["startup"][me] - base, res["startup"][FLOOR] - base
    wakeups = res["idle"][me][1]
    rss = res["idle"][me][0]
    lines = [
        _target("idle wake-ups", "%.1f/s" % wakeups, "target 0", wakeups == 0),
        _ratio("CPU per reaped orphan", cpu, "tini", 2.0, _us),
        _ratio("signal latency p50", p50, "tini", 1.5, _us),
        _ratio("signal latency p99", p99, "tini", 2.0, _us),
        _ratio("start-up (less unshare)", start, "the Python floor", 2.0, _ms),
        _target("init RSS", _kib(rss), "target <= 12 MiB", rss <= TARGET_RSS_KIB),
    ]
    return ["```"] + lines + ["```"]


def _ratio(what, pair, against, limit, fmt):
    mine, theirs = pair
    ratio = mine / theirs if theirs > 0 else float("inf")
    figures = "%s vs %s %s = %.2fx" % (fmt(mine), against, fmt(theirs), ratio)
    return _target(what, figures, "target <= %gx" % limit, ratio <= limit)


def _target(what, figures, goal, ok):
    return "%-24s %-44s %-18s %s" % (what + ":", figures, goal, "PASS" if ok else "MISS")


def _ms(seconds):
    return "%.1f ms" % (seconds * 1e3)


def _us(seconds):
    return "%.1f µs" % (seconds * 1e6)


def _kib(kib):
    return "%d KiB" % kib if kib < 1024 else "%.1f MiB" % (kib / 1024)


if __name__ == "__main__":
    sys.exit("run it through bench/run.py")
