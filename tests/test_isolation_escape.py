"""The escape suite: what an app running as root with rkt's default
capability set tries from inside an isolated pod, and fails to do, while
everyday programs go on working.

Every attempt is a test that can fail.  The files are written with the
host's own value where a write that went through would still change nothing
(core_pattern, which the issue names, gets a new value and is put back if
it ever changed), and the host is read before and after.  The system calls
are made by tests/probe.c with arguments that do no harm when they go
through, and each is also made in a control pod, run with
--disable-seccomp and the capability the call needs: there it is not
refused with EPERM, so the EPERM of the default pod is the filter's.
"""
import errno
import os
import shutil
import socket
import tempfile

import pytest

from isohelpers import podbase, probe  # noqa: F401 (fixtures)
from isohelpers import IsoPod, IsoRun, iso_run, sh_app, install, probe_results, with_host_usr
from isohelpers import stage1_cmd, wait_for
from stage1.isolation import rootfs
from stage1.pod import isolators

EPERM, EROFS = errno.EPERM, errno.EROFS


def _read(path):
    with open(path) as f:
        return f.read()


def _probe_pod(base, probe, args, *run_args, user="0", **fields):
    """Run `probe ARGS...` as the app a; {op: (result, errno)} and stderr."""
    pod = IsoPod(base, [sh_app("a", "/bin/probe %s" % args, user=user, group=user, **fields)])
    install(probe, pod.app_root("a"))
    code, out, err = iso_run(pod, *run_args)
    assert code == 0, err
    return probe_results(out), err


# -- /proc/sys and friends: read-only ------------------------------------------------

def test_core_pattern_cannot_be_written_and_the_host_keeps_its_own(podbase, probe):
    path = "/proc/sys/kernel/core_pattern"
    before = _read(path)
    try:
        found, _ = _probe_pod(podbase, probe, "write %s '|/tmp/stage1-escape %%p'" % path)
        assert found["write"] == (-1, EROFS)
    finally:
        if _read(path) != before:                   # the escape worked: undo it
            with open(path, "w") as f:
                f.write(before)
    assert _read(path) == before


@pytest.mark.parametrize("name", ["vm/panic_on_oom", "kernel/core_uses_pid", "fs/suid_dumpable",
                                  "kernel/printk", "vm/overcommit_memory"])
def test_other_sysctls_cannot_be_written(podbase, probe, name):
    path = "/proc/sys/" + name
    value = _read(path).strip()          # the host's own: a write that went through changes nothing
    found, _ = _probe_pod(podbase, probe, "write %s '%s'" % (path, value))
    assert found["write"] == (-1, EROFS)
    assert _read(path).strip() == value


def test_sysrq_trigger_cannot_be_written(podbase, probe):
    if not os.path.exists("/proc/sysrq-trigger"):
        pytest.skip("this kernel has no /proc/sysrq-trigger (CONFIG_MAGIC_SYSRQ)")
    found, _ = _probe_pod(podbase, probe, "write /proc/sysrq-trigger h")    # h: help only
    assert found["write"] == (-1, EROFS)


def _mountinfo_of_app(base, *run_args):
    pod = IsoPod(base, [sh_app("a", "cat /proc/self/mountinfo")])
    code, out, err = iso_run(pod, *run_args)
    assert code == 0, err
    return {line.split()[4]: line.split()[5].split(",") for line in out.splitlines()}


def test_proc_and_sys_paths_are_read_only_mounts(podbase):
    mounts = _mountinfo_of_app(podbase)
    expected = ["/proc/" + n for n in rootfs.PROC_READ_ONLY if os.path.exists("/proc/" + n)]
    assert len(expected) >= 4
    for path in expected + ["/sys"]:
        assert "ro" in mounts[path], (path, mounts.get(path))


def test_irq_affinity_cannot_be_written(podbase, probe):
    path = "/proc/irq/default_smp_affinity"
    value = _read(path).strip()
    found, _ = _probe_pod(podbase, probe, "write %s %s" % (path, value))
    assert found["write"] == (-1, EROFS)


# -- masked ----------------------------------------------------------------------------

MASKED_FILES = [p for p in rootfs.MASKED if os.path.isfile(p)]
MASKED_DIRS = [p for p in rootfs.MASKED if os.path.isdir(p)]


@pytest.mark.parametrize("path", MASKED_FILES)
def test_masked_files_read_empty(podbase, probe, path):
    found, _ = _probe_pod(podbase, probe, "read %s write %s x" % (path, path))
    assert found["read"] == (0, 0)
    assert found["write"] == (-1, EROFS)
    if path != "/proc/keys":         # the host's may be empty as well
        with open(path, "rb") as f:
            assert f.read(1), "the host's %s reads empty: the test proves nothing" % path


FSTYPE_OF = "awk '$5 == \"%s\" { for (i = 7; i < NF; i++) if ($i == \"-\") print $(i + 1) }' " \
            "/proc/self/mountinfo"


@pytest.mark.parametrize("path", MASKED_DIRS)
def test_masked_directories_are_empty_and_read_only(podbase, path):
    script = "ls -A %s | wc -l; touch %s/x 2>/dev/null || echo refused; " % (path, path)
    pod = IsoPod(podbase, [sh_app("a", script + FSTYPE_OF % path)])
    code, out, err = iso_run(pod)
    assert code == 0, err
    # The host's may be empty too (/proc/acpi without ACPI): what is over it says more.
    assert out.split() == ["0", "refused", "tmpfs"]


# -- the pod's own namespaced sysctls -------------------------------------------------

def test_the_pods_hostname_is_settable_and_the_hosts_is_not_touched(podbase, probe):
    host = socket.gethostname()
    pod = IsoPod(podbase, [sh_app("a", "/bin/probe write /proc/sys/kernel/hostname inside; "
                                        "hostname")])
    install(probe, pod.app_root("a"))
    code, out, err = iso_run(pod)
    assert code == 0, err
    assert out.splitlines() == ["write 6 0", "inside"]
    assert socket.gethostname() == host


@pytest.mark.parametrize("args, writable", [(("--net=none",), True), (("--net=host",), False)])
def test_net_sysctls_are_writable_only_in_the_pods_own_network(podbase, probe, args, writable):
    # somaxconn: per network namespace, and no capability asked beyond root
    # (ip_forward, say, also wants CAP_NET_ADMIN, which the default set lacks).
    path = "/proc/sys/net/core/somaxconn"
    host = _read(path).strip()
    value = str(int(host) - 1) if writable else host   # the host's network: never changed
    found, _ = _probe_pod(podbase, probe, "write %s %s" % (path, value), *args)
    assert found["write"] == ((len(value), 0) if writable else (-1, EROFS))
    assert _read(path).strip() == host


@pytest.mark.parametrize("args, writable", [((), True), (("--ipc=parent",), False)])
def test_ipc_sysctls_are_writable_only_in_the_pods_own_ipc(podbase, probe, args, writable):
    path = "/proc/sys/kernel/msgmax"
    host = _read(path).strip()
    value = str(int(host) - 1) if writable else host
    found, _ = _probe_pod(podbase, probe, "write %s %s" % (path, value), *args)
    assert found["write"] == ((len(value), 0) if writable else (-1, EROFS))
    assert _read(path).strip() == host


def test_disable_paths_leaves_proc_and_sys_as_they_are(podbase):
    mounts = _mountinfo_of_app(podbase, "--disable-paths")
    assert "/proc/sys" not in mounts and "/proc/kallsyms" not in mounts
    assert "/sys/firmware" not in mounts
    assert "ro" in mounts["/sys"]          # /sys was read-only before protected paths


# -- system calls ---------------------------------------------------------------------

CALLS = ["mount", "unshare-user", "unshare-mnt", "keyctl", "bpf", "ptrace", "reboot",
         "kexec_load", "open_by_handle_at"]
CONTROL_CAPS = ["CAP_SYS_ADMIN", "CAP_SYS_PTRACE", "CAP_SYS_BOOT", "CAP_DAC_READ_SEARCH"]
SIBLING = ("pid=; for p in /proc/[0-9]*; do [ \"$(cat $p/comm 2>/dev/null)\" = sleep ] && "
           "pid=${p#/proc/}; done; ")


def _calls(base, probe, *run_args, isolator_list=()):
    """The probe's result for every call, from an app `a` with a sibling `target`."""
    # unshare comes last: a process in a user namespace of its own has no
    # capability left for the calls after it.
    script = SIBLING + "/bin/probe getppid mount /tmp keyctl bpf ptrace $pid reboot " \
                       "kexec_load open_by_handle_at unshare-mnt unshare-user"
    pod = IsoPod(base, [sh_app("target", "exec sleep 60"),
                        sh_app("a", script, annotations={"stage1/after": "target"},
                               isolators=list(isolator_list))],
                 annotations={"stage1/exit-policy": "onAny"})
    install(probe, pod.app_root("a"))
    code, out, err = iso_run(pod, *run_args)
    assert code == 0, err
    found = probe_results(out)
    assert found.get("getppid") == (0, 0), out
    return found


@pytest.fixture(scope="module")
def calls(probe):
    base = tempfile.mkdtemp(prefix="s1-", dir="/tmp")      # short: the pod's sockets
    retain = {"name": isolators.CAPS_RETAIN,
              "value": {"set": list(isolators.DEFAULT_CAPS) + CONTROL_CAPS}}
    try:
        yield {"default": _calls(base, probe),
               "control": _calls(base, probe, "--disable-seccomp", isolator_list=[retain])}
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.mark.parametrize("call", CALLS)
def test_escape_calls_fail_with_eperm(calls, call):
    assert calls["default"][call] == (-1, EPERM)
    # Without the filter (and with the capability) the same call is not
    # refused that way: the EPERM above is the filter's.
    assert calls["control"][call] != (-1, EPERM), calls["control"]


@pytest.mark.parametrize("user", ["0", "1000"])
def test_unshare_user_then_mount_fails_also_as_an_ordinary_user(podbase, user):
    script = "unshare -U -r -m sh -c 'mount -t tmpfs t /tmp && echo mounted' 2>&1; true"
    found = {}
    for args in ((), ("--disable-seccomp",)):
        pod = IsoPod(podbase, [sh_app("a", script, user=user, group=user)])
        code, out, err = iso_run(pod, *args)
        assert code == 0, err
        found[args] = out
    assert "mounted" not in found[()]
    assert "Operation not permitted" in found[()]
    if "mounted" not in found[("--disable-seccomp",)]:
        pytest.skip("this host refuses user namespaces to uid %s anyway: %s"
                    % (user, found[("--disable-seccomp",)].strip()))


def test_root_apps_get_no_ambient_capabilities(podbase):
    pod = IsoPod(podbase, [sh_app("a", "grep -E '^Cap(Amb|Eff):' /proc/self/status")])
    code, out, err = iso_run(pod)
    assert code == 0, err
    fields = {line.split(":")[0]: int(line.split()[1], 16) for line in out.splitlines()}
    assert fields["CapEff"] == isolators.mask(isolators.DEFAULT_CAPS)
    assert fields["CapAmb"] == 0


# -- everyday programs still work -------------------------------------------------------

EVERYDAY = r"""
set -u
check() { if "$@" >/dev/null 2>&1; then echo "ok $1"; else echo "FAILED $*"; fi; }
cd /tmp
check sh -c 'echo hello > f && cat f | grep -q hello'
check ls -la /
check cp f g
check mv g h
check ln -s h l
check readlink l
check chmod 600 h
check chown 1500:1600 h
check stat h
check touch -d '2020-01-01' h
check mkdir -p d/e/f
check find /tmp -name f
check sed -i s/hello/bye/ f
check awk '{print $1}' f
check sort /etc/passwd
check tar -cf a.tar d f
check tar -tf a.tar
check gzip -k f
check gunzip -c f.gz
check sha256sum f
check base64 f
check xargs echo < f
check date
check id
check ps
check top -b -n 1
check df /
check du -s /tmp
check free
check uptime
check uname -a
check hostname
check env
check timeout 5 true
check mkfifo p
check kill -0 $$
check sh -c 'sleep 0.01 & wait'
check sh -c 'seq 1 1000 | tail -n 1'
check dd if=/dev/zero of=z bs=4096 count=16
check truncate -s 0 z
check rm -rf d
check nproc
"""


def test_busybox_applets_work_under_the_default_filter(podbase):
    pod = IsoPod(podbase, [sh_app("a", EVERYDAY)])
    root = pod.app_root("a")
    for name in ("awk", "sed", "sort", "tar", "gzip", "gunzip", "sha256sum", "base64",
                 "xargs", "date", "top", "df", "du", "free", "uptime", "uname", "timeout",
                 "mkfifo", "kill", "seq", "tail", "dd", "truncate", "nproc", "find",
                 "ln", "chmod", "chown", "cp", "mv"):
        if not os.path.lexists(os.path.join(root, "bin", name)):
            os.symlink("busybox", os.path.join(root, "bin", name))
    code, out, err = iso_run(pod)
    assert code == 0, err
    failed = [line for line in out.splitlines() if not line.startswith("ok ")]
    assert not failed and len(out.splitlines()) >= 40, out + err


PYTHON_APP = r"""
import asyncio, concurrent.futures, hashlib, json, multiprocessing, os, socket, subprocess
import sqlite3, tempfile, threading
t = threading.Thread(target=lambda: None); t.start(); t.join()
print("threads")
with concurrent.futures.ThreadPoolExecutor(2) as pool:
    assert list(pool.map(abs, [-1, -2])) == [1, 2]
with multiprocessing.Pool(2) as pool:
    assert pool.map(abs, [-3]) == [3]
print("processes")
assert subprocess.run(["/usr/bin/true"]).returncode == 0
print("subprocess")
a, b = socket.socketpair(); a.send(b"x"); assert b.recv(1) == b"x"
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(); c = socket.create_connection(s.getsockname())
print("sockets")
with tempfile.TemporaryDirectory() as d:
    db = sqlite3.connect(os.path.join(d, "db")); db.execute("create table t (x)"); db.commit()
    os.stat(d); os.access(d, os.X_OK, effective_ids=True)
print("files")
assert asyncio.run(asyncio.sleep(0, "ok")) == "ok"
print(json.dumps(hashlib.sha256(b"").hexdigest()[:8]))
"""

COREUTILS = "/usr/bin/ls -l /usr/bin/true && /usr/bin/stat /usr && /usr/bin/cp /etc/passwd /tmp/p"


def test_python3_and_coreutils_work_under_the_default_filter(podbase):
    # Threads (clone3), ls and stat (statx) and access(2) with effective ids
    # (faccessat2) use calls newer than the whitelist: they get ENOSYS and
    # fall back, where EPERM would break them.
    if not os.path.exists("/usr/bin/python3"):
        pytest.skip("no /usr/bin/python3 on this host")
    pod = IsoPod(podbase, [sh_app("a", "/usr/bin/python3 -c '%s' && %s && echo coreutils" %
                                   (PYTHON_APP.replace("'", "\""), COREUTILS))])
    with_host_usr(pod, "a")
    code, out, err = iso_run(pod)
    assert code == 0, out + err
    lines = out.splitlines()
    assert lines[:6] == ["threads", "processes", "subprocess", "sockets", "files",
                         '"e3b0c442"'], out
    assert lines[-1] == "coreutils", out


# -- the init's threads ------------------------------------------------------------

def _restart_and_check_the_inits_threads(pod, run, name, threads):
    """After an attack on the init's threads: `name` restarts (spawned, its
    old process reaped), the init has `threads` threads, none stopped."""
    init = int(pod.read("pid"))
    old = pod.wait_state(name, "running")["pid"]
    res = stage1_cmd("app", "restart", pod.path, "--app", name)
    assert res.returncode == 0, res.stderr
    wait_for(lambda: pod.state(name) == "running" and
             (pod.status(name) or {}).get("pid") not in (None, old),
             what="%s running again with a new pid" % name)
    tasks = os.listdir("/proc/%d/task" % init)
    assert len(tasks) == threads
    for task in tasks:
        with open("/proc/%d/task/%s/stat" % (init, task)) as f:
            assert f.read().rsplit(")", 1)[1].split()[0] in ("S", "R")   # not stopped
    assert run.proc.poll() is None


def test_kill_and_stop_of_the_inits_threads_from_inside_change_nothing(podbase):
    """pid 2 of the pod is the init's spawner thread (native/children.c),
    and kill(2, ...) signals the init's whole process.  SIGKILL and SIGSTOP
    cannot be blocked or read; a root app sends them to both pids, and the
    kernel drops them (the namespace's init).  The pod goes on: an app
    restarted after the attack is spawned by the spawner and its old
    process reaped.  (The other signals an app sends the init are read and
    passed on to the apps, as tini passes on what it is sent.)"""
    pod = IsoPod(podbase, [
        sh_app("attacker", "for s in KILL STOP; do kill -$s 2 1 || exit 1; done; "
                           "echo sent > /tmp/sent; exec sleep 1000"),
        sh_app("victim", "exec sleep 1000")])
    with IsoRun(pod, "--mutable") as r:
        sent = os.path.join(pod.app_root("attacker"), "tmp", "sent")
        wait_for(lambda: os.path.exists(sent), what="the signals sent")
        _restart_and_check_the_inits_threads(pod, r, "victim", 2)     # the spawner lives
        assert pod.state("attacker") == "running", pod.status("attacker")


def test_signals_from_inside_to_the_spawners_helpers_change_nothing(podbase):
    """A pod whose first start pass is 32 apps or more has the spawner's
    helpers too (pids 3 and up, one per further CPU): a root app sends
    every thread of the init SIGKILL, SIGSTOP, glibc's 32 (whose default
    action would end a process), SIGSEGV and SIGUSR1.  The kernel drops the
    first two; the others are read from the init's signalfd and refused,
    each said once; every thread lives and runs, every app still runs, and
    a restarted app is spawned and its old process reaped."""
    cpus = len(os.sched_getaffinity(0))
    threads = 1 + min(cpus, 4)
    pids = " ".join(str(p) for p in range(2, threads + 1))
    apps = [sh_app("app%02d" % i, "exec sleep 1000") for i in range(39)]
    apps.append(sh_app("attacker", "for s in KILL STOP 32 SEGV USR1; do for p in %s; do "
                                   "kill -$s $p || exit 1; done; done; "
                                   "echo sent > /tmp/sent; exec sleep 1000" % pids))
    pod = IsoPod(podbase, apps)
    with IsoRun(pod, "--mutable") as r:
        sent = os.path.join(pod.app_root("attacker"), "tmp", "sent")
        wait_for(lambda: os.path.exists(sent) or r.proc.poll() is not None,
                 what="the signals sent")
        assert os.path.exists(sent), r.stderr()[-2000:]
        wait_for(lambda: r.stderr().count("a process of the pod, is not passed on") == 3,
                 what="32, SEGV and USR1 refused (%s)" % r.stderr()[-500:])
        _restart_and_check_the_inits_threads(pod, r, "app07", threads)
        assert all(pod.state("app%02d" % i) == "running" for i in range(39))
        assert pod.state("attacker") == "running", pod.status("attacker")


def test_a_signal_an_app_sends_the_init_is_not_passed_on_to_the_other_apps(podbase):
    """The init signals apps of every user: what an app sends it (to pid 1
    or to pid 2, its spawner thread) is not passed on, or any app could
    have any other signalled (tests/test_pod_signal_senders.py)."""
    pod = IsoPod(podbase, [
        sh_app("victim", "trap 'echo usr1 >> /tmp/got' USR1; touch /tmp/up; "
                         "while :; do sleep 0.02; done"),
        sh_app("attacker", "trap '' USR1 HUP; while [ ! -e /victim/up ]; do sleep 0.01; done; "
                           "kill -USR1 1; kill -HUP 2; touch /tmp/sent; exec sleep 1000")])
    victim_tmp = os.path.join(pod.app_root("victim"), "tmp")
    os.makedirs(victim_tmp, exist_ok=True)
    pod.manifest["volumes"] = [{"name": "victim", "kind": "host", "source": victim_tmp}]
    pod.manifest["apps"][1]["mounts"] = [{"volume": "victim", "path": "/victim"}]
    pod.write()
    with IsoRun(pod) as r:
        sent = os.path.join(pod.app_root("attacker"), "tmp", "sent")
        wait_for(lambda: os.path.exists(sent), what="the signals sent")
        wait_for(lambda: r.stderr().count("a process of the pod, is not passed on") == 2,
                 what="both refused (%s)" % r.stderr()[-500:])
        assert not os.path.exists(os.path.join(victim_tmp, "got"))
        assert pod.state("victim") == "running" and pod.state("attacker") == "running"
