"""Isolators, seen from inside the apps and in their cgroups on the host:
capabilities (default set, retain-set, remove-set, non-root users, the
rkt flag that lifts them), no_new_privs, oom_score_adj, memory and cpu
limits per app and per pod; isolators stage1 does not apply are reported."""
import os

import pytest

from isohelpers import podbase  # noqa: F401 (a fixture)
from isohelpers import IsoPod, IsoRun, iso_run, sh_app, wait_for
from stage1.pod import isolators

STATUS = ("grep -E '^(CapBnd|CapEff|CapPrm|CapAmb|NoNewPrivs):' /proc/self/status; "
          "cat /proc/self/oom_score_adj")


def _caps(names):
    return isolators.mask(names)


def _report(out):
    """{field: int} of what STATUS printed."""
    lines = out.splitlines()
    fields = {l.split(":")[0]: int(l.split()[1], 16) for l in lines[:-1]}
    fields["NoNewPrivs"] = int(lines[-2].split()[1])
    fields["oom"] = int(lines[-1])
    return fields


def _run_isolated(base, isolator_list=(), *args, **fields):
    pod = IsoPod(base, [sh_app("a", STATUS, isolators=list(isolator_list), **fields)])
    code, out, err = iso_run(pod, *args)
    assert code == 0, err
    return _report(out), err


def test_default_capabilities_are_appcs_default_set(podbase):
    seen, err = _run_isolated(podbase)
    default = _caps(isolators.DEFAULT_CAPS)
    assert seen["CapBnd"] == seen["CapEff"] == seen["CapPrm"] == default
    assert seen["CapAmb"] == 0          # rkt gives none; stage1 raised the set before
    assert (seen["NoNewPrivs"], err) == (0, "")


def test_retain_set_is_exactly_the_set(podbase):
    iso = {"name": "os/linux/capabilities-retain-set",
           "value": {"set": ["CAP_NET_BIND_SERVICE", "CAP_SYS_ADMIN"]}}
    seen, _ = _run_isolated(podbase, [iso])
    wanted = _caps(["CAP_NET_BIND_SERVICE", "CAP_SYS_ADMIN"])
    assert seen["CapBnd"] == seen["CapEff"] == wanted


def test_remove_set_takes_from_the_default_set(podbase):
    iso = {"name": "os/linux/capabilities-remove-set",
           "value": {"set": ["CAP_NET_RAW", "CAP_MKNOD", "CAP_SYS_ADMIN"]}}
    seen, _ = _run_isolated(podbase, [iso])
    wanted = _caps(isolators.DEFAULT_CAPS) & ~_caps(["CAP_NET_RAW", "CAP_MKNOD"])
    assert seen["CapBnd"] == seen["CapEff"] == wanted


def test_a_dropped_capability_is_really_gone(podbase):
    iso = {"name": "os/linux/capabilities-remove-set", "value": {"set": ["CAP_CHOWN"]}}
    pod = IsoPod(podbase, [sh_app("a", "touch /f; chown 1500 /f && echo chowned || echo denied",
                                   isolators=[iso])])
    assert iso_run(pod)[:2] == (0, "denied\n")


def test_a_non_root_user_gets_the_bounding_set_and_no_capabilities(podbase):
    seen, _ = _run_isolated(podbase, [], user="alice", group="staff")
    assert seen["CapBnd"] == _caps(isolators.DEFAULT_CAPS)
    assert seen["CapEff"] == seen["CapPrm"] == seen["CapAmb"] == 0


def test_disable_capabilities_restriction_leaves_them_all(podbase):
    seen, _ = _run_isolated(podbase, [], "--disable-capabilities-restriction")
    with open("/proc/self/status") as f:
        mine = [int(l.split()[1], 16) for l in f if l.startswith("CapBnd:")][0]
    assert seen["CapBnd"] == mine


def test_enter_leaves_the_capabilities_alone_when_the_run_did(podbase):
    from isohelpers import stage1_cmd
    pod = IsoPod(podbase, [sh_app("a", "exec sleep 60")])
    with IsoRun(pod, "--disable-capabilities-restriction"):
        pod.wait_state("a", "running")
        done = stage1_cmd("enter", pod.path, "--app", "a", "--", "grep", "CapBnd",
                          "/proc/self/status")
    assert done.returncode == 0, done.stderr
    with open("/proc/self/status") as f:
        mine = [int(l.split()[1], 16) for l in f if l.startswith("CapBnd:")][0]
    assert int(done.stdout.split()[1], 16) == mine


def test_no_new_privileges(podbase):
    seen, _ = _run_isolated(podbase, [{"name": "os/linux/no-new-privileges", "value": True}])
    assert seen["NoNewPrivs"] == 1
    seen, _ = _run_isolated(podbase, [{"name": "os/linux/no-new-privileges",
                                              "value": False}])
    assert seen["NoNewPrivs"] == 0


def _has_cap(name):
    with open("/proc/self/status") as f:
        eff = [int(l.split()[1], 16) for l in f if l.startswith("CapEff:")][0]
    return bool(eff & isolators.mask([name]))


@pytest.mark.parametrize("value", [-800, 0, 500, 1000])
def test_oom_score_adj(podbase, value):
    if value < 0 and not _has_cap("CAP_SYS_RESOURCE"):
        pytest.skip("lowering oom_score_adj needs CAP_SYS_RESOURCE, which this test runs without")
    seen, _ = _run_isolated(podbase, [{"name": "os/linux/oom-score-adj", "value": value}])
    assert seen["oom"] == value


def _limits_while_running(base, app_isolators, pod_isolators=()):
    pod = IsoPod(base, [sh_app("a", "sleep 60", isolators=list(app_isolators))],
                 isolators=list(pod_isolators))
    with IsoRun(pod) as r:
        pod.wait_state("a", "running")
        app_pid = wait_for(lambda: [p for p in _procs_of(pod.cgroup("memory", "a"))],
                           what="the app in its memory cgroup")[0]
        found = {}
        for controller, name in (("memory", "memory.limit_in_bytes"),
                                 ("memory", "memory.soft_limit_in_bytes"),
                                 ("cpu", "cpu.cfs_quota_us"), ("cpu", "cpu.cfs_period_us"),
                                 ("cpu", "cpu.shares")):
            for scope, app in (("app", "a"), ("pod", None)):
                with open(os.path.join(pod.cgroup(controller, app), name)) as f:
                    found[scope, name] = int(f.read())
        for controller in ("memory", "cpu", "pids", "devices"):
            assert app_pid in _procs_of(pod.cgroup(controller, "a"))
        r.signal(15)
        assert r.wait() == 0
    for controller in ("memory", "cpu", "pids"):
        assert not os.path.exists(pod.cgroup(controller))
    return found


def _procs_of(cgroup):
    try:
        with open(os.path.join(cgroup, "cgroup.procs")) as f:
            return [int(p) for p in f.read().split()]
    except FileNotFoundError:
        return []


@pytest.mark.parametrize("quantity, expected", [
    ("256Mi", 256 << 20), ("1G", 10 ** 9), ("1.5Gi", 3 << 29), ("100000000", 99999744),
    ("64M", 64000000 // 4096 * 4096)])
def test_memory_limit_in_the_apps_cgroup(podbase, quantity, expected):
    found = _limits_while_running(podbase, [{"name": "resource/memory",
                                              "value": {"limit": quantity}}])
    # the kernel rounds down to whole pages
    assert found["app", "memory.limit_in_bytes"] == expected // 4096 * 4096
    assert found["pod", "memory.limit_in_bytes"] > 1 << 60        # unlimited


def test_cpu_limit_and_request(podbase):
    found = _limits_while_running(podbase, [{"name": "resource/cpu",
                                              "value": {"limit": "500m", "request": "250m"}}])
    assert found["app", "cpu.cfs_period_us"] == 100000
    assert found["app", "cpu.cfs_quota_us"] == 50000
    assert found["app", "cpu.shares"] == 256
    assert found["pod", "cpu.cfs_quota_us"] == -1


def test_pod_level_memory_limit_bounds_the_pod(podbase, tmp_path):
    found = _limits_while_running(
        tmp_path, [], [{"name": "resource/memory", "value": {"limit": "1Gi", "request": "512Mi"}},
                       {"name": "resource/cpu", "value": {"limit": "2"}}])
    assert found["pod", "memory.limit_in_bytes"] == 1 << 30
    assert found["pod", "memory.soft_limit_in_bytes"] == 1 << 29
    assert found["pod", "cpu.cfs_quota_us"] == 200000
    assert found["app", "memory.limit_in_bytes"] > 1 << 60


def test_the_memory_limit_holds(podbase):
    # 32 MiB of /dev/shm (tmpfs pages are charged to the writer's cgroup)
    # does not fit in 16 MiB: the kernel kills the writer.
    script = "head -c 33554432 /dev/zero > /dev/shm/fill; echo survived"
    pod = IsoPod(podbase, [sh_app("a", script, isolators=[
        {"name": "resource/memory", "value": {"limit": "16Mi"}}])])
    code, out, err = iso_run(pod)
    assert "survived" not in out
    assert code != 0


def test_devices_cgroup_keeps_apps_off_the_hosts_disks(podbase):
    st = os.stat("/dev/null")
    script = ("mknod /tmp/null c 1 3 && echo made; echo x > /tmp/null && echo null-ok; "
              "mknod /tmp/mem c 1 1 && cat /tmp/mem > /dev/null 2>&1 && echo mem-open || "
              "echo mem-denied")
    pod = IsoPod(podbase, [sh_app("a", script)])
    code, out, err = iso_run(pod)
    assert code == 0, err
    assert out.split() == ["made", "null-ok", "mem-denied"]
    assert os.major(st.st_rdev) == 1


def test_unapplied_isolators_are_reported_once_each(podbase):
    block = {"name": "resource/block-bandwidth", "value": {"default": True, "limit": "1M"}}
    bandwidth = {"name": "resource/network-bandwidth", "value": {"default": True, "limit": "1G"}}
    nnp = {"name": "os/linux/no-new-privileges", "value": True}
    pod = IsoPod(podbase, [sh_app("a", "true", isolators=[block, nnp]),
                            sh_app("b", "true", isolators=[block, bandwidth])],
                 isolators=[{"name": "os/linux/selinux-context", "value": {}}])
    code, out, err = iso_run(pod)
    assert code == 0
    lines = err.splitlines()
    assert len(lines) == 3, err
    assert "os/linux/selinux-context (isolators[0]) is not applied" in lines[0]
    assert "resource/block-bandwidth (apps[0].app.isolators[0]) is not applied" in lines[1]
    assert "resource/network-bandwidth (apps[1].app.isolators[1]) is not applied" in lines[2]
    assert all("stage1 does not implement it" in l for l in lines)
