#!/bin/sh
# stage1's one entry point for people and CI.
#   ./build.sh            set up .venv and build the native module
#   ./build.sh example    set up, then run the example pod (examples/)
#   ./build.sh test       set up, then run the whole test suite
#   ./build.sh bench      set up, then run the benchmarks beside the peers
#   ./build.sh aci        set up, then write stage1.aci (a self-contained stage1 image for rkt)
set -eu
cd "$(dirname "$0")"
VENV=${STAGE1_VENV:-$PWD/.venv}
PY=$VENV/bin/python

need_apt() {
    # $1: a file that must exist, $2: the Debian package that ships it
    [ -e "$1" ] && return 0
    if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
        echo "build.sh: $1 is missing: install Debian's $2 (apt-get install $2)" >&2
        exit 1
    fi
    [ -n "${APT_UPDATED:-}" ] || { apt-get update -qq; APT_UPDATED=1; }
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null
}

setup() {
    need_apt /usr/include/sys/capability.h libcap-dev   # python-prctl compiles against it
    # CNI networks (rkt's --net=default): the CNI project's plugins; ptp's
    # masquerading and portmap drive iptables.
    need_apt /usr/lib/cni/ptp containernetworking-plugins
    need_apt /usr/sbin/iptables iptables
    need_apt /usr/include/seccomp.h libseccomp-dev      # the native module links libseccomp
    [ -x "$PY" ] || python3 -m venv "$VENV"
    if ! "$PY" -c 'import cffi, prctl, psutil, setuptools, wheel' 2>/dev/null; then
        # A current pip writes console scripts that do not import re (13 ms).
        "$PY" -m pip install -q --disable-pip-version-check -U pip
        "$PY" -m pip install -q --disable-pip-version-check cffi python-prctl psutil setuptools wheel
    fi
    # Rebuild the native module when a C source or the header is newer.
    so=$(ls stage1/engine/_native*.so 2>/dev/null | head -n 1 || true)
    if [ -z "$so" ] || [ -n "$(find native -newer "$so" -type f)" ] || \
       [ ! -x "$VENV/bin/stage1" ]; then
        # compat mode: a plain path in a .pth; the default finder imports
        # pathlib and re in every interpreter of the venv (+24 ms a start).
        "$PY" -m pip install -q --disable-pip-version-check --no-build-isolation \
            --config-settings editable_mode=compat -e .
    fi
    # Bytecode even where PYTHONDONTWRITEBYTECODE is set: start-up counts.
    "$PY" -m compileall -q stage1
}

aci_deps() {
    # the image's launcher is linked static; its shared objects are stripped
    need_apt /usr/bin/strip binutils
    need_apt "$(cc -print-file-name=libc.a)" libc6-dev
}

aci() {
    aci_deps
    # reproducible: the last commit's time, unless the caller says otherwise
    if [ -z "${SOURCE_DATE_EPOCH:-}" ] && git rev-parse --git-dir >/dev/null 2>&1; then
        SOURCE_DATE_EPOCH=$(git log -1 --format=%ct) && export SOURCE_DATE_EPOCH
    fi
    exec "$PY" -m stage1.rkt.aci "$@"
}

test_deps() {
    need_apt /usr/bin/busybox busybox-static
    need_apt /bin/ip iproute2                           # the network tests look at links
    need_apt /usr/bin/actool appc-spec
    need_apt /usr/bin/podman podman      # the container recipes, run with --rootfs
    need_apt /usr/sbin/runc runc
    "$PY" -c 'import pytest, build' 2>/dev/null || \
        "$PY" -m pip install -q --disable-pip-version-check pytest build
}

peers() {
    need_apt /usr/bin/tini tini
    need_apt /usr/bin/dumb-init dumb-init
    need_apt /usr/bin/catatonit catatonit
    need_apt /usr/bin/supervisord supervisor
    need_apt /usr/bin/busybox busybox-static    # the seccomp suite's app roots
}

cmd=${1:-setup}
[ $# -gt 0 ] && shift
case $cmd in
    setup) setup ;;
    example)
        setup
        echo "build.sh: running the example pod (examples/stage1.toml, about 10 s)" >&2
        rc=0; "$VENV/bin/stage1" run "$@" examples/stage1.toml || rc=$?
        "$VENV/bin/stage1" status example
        echo "build.sh: the example pod exited with $rc" >&2
        exit $rc ;;
    test) setup; aci_deps; test_deps; exec "$PY" -m pytest tests "$@" ;;
    bench) setup; peers; exec "$PY" bench/run.py "$@" ;;
    aci) setup; aci "$@" ;;
    *) echo "usage: ./build.sh [setup|example|test|bench|aci]" >&2; exit 2 ;;
esac
