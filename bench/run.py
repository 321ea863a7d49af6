"""stage1's benchmarks beside its peers: `./build.sh bench [--quick] [--only SUITE]`.

One module per suite (exec_bench.py for `stage1 exec`, pod_bench.py,
live_bench.py, robust_bench.py, seccomp_bench.py, scale_bench.py, rkt_bench.py and
rkt_net_bench.py: under a real rkt, skipped without one), each with `run(quick, log) ->
markdown`.  This file picks the suites, prints each report and writes it to
bench/results/SUITE.md with the
date, the machine and the command, so that the README's figures can be
copied from one run.  Figures are ratios between rows of one run; the
absolute numbers move with the machine's noise.
"""
import argparse
import datetime
import importlib
import os
import platform
import signal
import sys

import harness

SUITES = {"exec": "exec_bench", "pod": "pod_bench", "live": "live_bench",
          "robust": "robust_bench", "seccomp": "seccomp_bench", "scale": "scale_bench",
          "rkt": "rkt_bench", "rkt-net": "rkt_net_bench", "podfile": "podfile_bench"}
RESULTS = os.path.join(harness.HERE, "results")


def parse_args(argv):
    p = argparse.ArgumentParser(prog="./build.sh bench", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="fewer samples: a smoke run")
    p.add_argument("--only", action="append", choices=sorted(SUITES), metavar="SUITE",
                   help="run only this suite (repeatable): %s" % ", ".join(sorted(SUITES)))
    return p.parse_args(argv)


def machine():
    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            model = next(line.split(":", 1)[1].strip() for line in f
                         if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return "%d cores (%s), Linux %s, Python %s" % (
        os.cpu_count() or 0, model, platform.release(), platform.python_version())


def header(suite, quick):
    command = "./build.sh bench" + (" --quick" if quick else "") + " --only %s" % suite
    return ["# Benchmark: %s" % suite, "",
            "- date: %s" % datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
            "- machine: %s" % machine(),
            "- command: `%s`" % command, ""]


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def _interrupted(signo, frame):
    raise KeyboardInterrupt("signal %d" % signo)


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    # Unwind through the suites' cleanup (kill and reap every namespace) on
    # SIGTERM too, and on SIGINT even when a shell started us with it ignored.
    signal.signal(signal.SIGTERM, _interrupted)
    signal.signal(signal.SIGINT, _interrupted)
    if os.geteuid() != 0:
        log("bench: unshare --pid needs root")
        return 1
    failed = 0
    for suite in args.only or sorted(SUITES):
        module = importlib.import_module(SUITES[suite])
        try:
            body = module.run(quick=args.quick, log=log)
        except harness.BenchError as err:
            log("bench: %s: %s" % (suite, err))
            failed = 1
            continue
        text = "\n".join(header(suite, args.quick) + [body, ""])
        print(text)
        os.makedirs(RESULTS, exist_ok=True)
        with open(os.path.join(RESULTS, suite + ".md"), "w") as f:
            f.write(text)
        log("bench: wrote %s" % os.path.relpath(os.path.join(RESULTS, suite + ".md")))
    return failed


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        log("bench: interrupted")
        sys.exit(130)
