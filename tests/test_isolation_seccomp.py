"""Seccomp filters: the default one, the appc retain and remove sets with
and without errno, rkt's wildcards and special cases, --disable-seccomp,
no_new_privs for other users, pre-start handlers and `stage1 enter`; and,
without a pod, the filters as compiled (lists, caching, newer syscalls).

The apps run tests/probe.c, which makes one system call per operation and
prints its result and errno, so a test tells the filter's errno from the
kernel's own answer; a kill shows as the app's SIGSYS."""
import errno
import os

import pytest

from isohelpers import podbase, probe  # noqa: F401 (fixtures)
from isohelpers import IsoPod, IsoRun, iso_run, sh_app, install, probe_results, stage1_cmd
from stage1.engine import native
from stage1.isolation import seccomp
from stage1.pod import isolators
from stage1.pod.errors import ManifestError

SIGSYS = 31
STATUS = "grep -E '^(Seccomp|NoNewPrivs):' /proc/self/status"
WITHOUT_MKDIR = [n for n in seccomp.DOCKER_DEFAULT_WHITELIST if n not in ("mkdir", "mkdirat")]


def _status(out):
    return {line.split(":")[0]: int(line.split()[1]) for line in out.splitlines()
            if line.startswith(("Seccomp:", "NoNewPrivs:"))}


def _iso(kind, items, errno_name=None):
    value = {"set": list(items)}
    if errno_name is not None:
        value["errno"] = errno_name
    return {"name": "os/linux/seccomp-%s-set" % kind, "value": value}


def _run(base, probe, script, isolator_list=(), *args, user="0"):
    pod = IsoPod(base, [sh_app("a", script, isolators=list(isolator_list), user=user,
                               group=user)])
    install(probe, pod.app_root("a"))
    code, out, err = iso_run(pod, *args)
    return code, out, err, pod


# -- the default filter ------------------------------------------------------------------

def test_a_root_app_gets_the_default_filter_without_no_new_privs(podbase, probe):
    code, out, err, _ = _run(podbase, probe, STATUS + "; /bin/probe getppid keyctl mount /tmp")
    assert code == 0, err
    assert _status(out) == {"Seccomp": 2, "NoNewPrivs": 0}
    found = probe_results(out)
    assert found["getppid"] == (0, 0)
    assert found["keyctl"] == found["mount"] == (-1, errno.EPERM)


def test_a_non_root_app_gets_the_filter_and_no_new_privs(podbase, probe):
    code, out, err, _ = _run(podbase, probe, STATUS + "; /bin/probe keyctl", user="1500")
    assert code == 0, err
    assert _status(out) == {"Seccomp": 2, "NoNewPrivs": 1}
    assert probe_results(out)["keyctl"] == (-1, errno.EPERM)


def test_disable_seccomp_turns_every_filter_off(podbase, probe):
    for user in ("0", "1500"):
        code, out, err, _ = _run(podbase, probe, STATUS + "; /bin/probe keyctl",
                                 [_iso("remove", ["keyctl"], "EPERM")], "--disable-seccomp",
                                 user=user)
        assert code == 0, err
        assert _status(out) == {"Seccomp": 0, "NoNewPrivs": 0}
        assert probe_results(out)["keyctl"] == (0, 0)


def test_pre_start_handlers_run_under_the_apps_filter(podbase):
    pod = IsoPod(podbase, [sh_app("a", "true", eventHandlers=[
        {"name": "pre-start", "exec": ["/bin/sh", "-c", STATUS]}])])
    code, out, err = iso_run(pod)
    assert code == 0, err
    assert _status(out)["Seccomp"] == 2


@pytest.mark.skipif(os.uname().machine != "x86_64", reason="the i386 ABI is x86_64's")
def test_32_bit_syscalls_are_judged_by_the_same_rules(podbase, probe):
    found = {}
    for args in ((), ("--disable-seccomp",)):
        code, out, err, _ = _run(podbase, probe, "/bin/probe int80-getppid int80-keyctl", (),
                                 *args)
        assert code == 0, err
        found[args] = probe_results(out)
    if found[("--disable-seccomp",)]["int80-getppid"] != (0, 0):
        pytest.skip("this kernel runs no i386 syscalls (IA32 emulation is off)")
    assert found[()] == {"int80-getppid": (0, 0), "int80-keyctl": (-1, errno.EPERM)}
    assert found[("--disable-seccomp",)]["int80-keyctl"] == (0, 0)


# -- retain-set and remove-set -------------------------------------------------------------

def test_retain_set_with_errno_blocks_the_rest_with_that_errno(podbase, probe):
    code, out, err, _ = _run(podbase, probe, "/bin/probe getppid mkdir /tmp/d mount /tmp",
                             [_iso("retain", WITHOUT_MKDIR, "ENOTSUP")])
    assert code == 0, err
    found = probe_results(out)
    assert found["getppid"] == (0, 0)
    assert found["mkdir"] == found["mount"] == (-1, errno.ENOTSUP)


def test_retain_set_without_errno_kills_with_sigsys(podbase, probe):
    code, out, err, pod = _run(podbase, probe, "/bin/probe getppid mkdir /tmp/d getppid",
                               [_iso("retain", WITHOUT_MKDIR)])
    assert code == 128 + SIGSYS, err
    assert out.splitlines() == ["getppid 0 0"]
    assert pod.status("a")["signal"] == "SIGSYS"


def test_rkts_seccomp_flag_arrives_with_an_empty_errno_and_kills(podbase, probe):
    # rkt run --seccomp mode=retain,... writes the isolator with "errno": "".
    code, out, _, _ = _run(podbase, probe, "/bin/probe getppid mkdir /tmp/d",
                           [_iso("retain", WITHOUT_MKDIR, "")])
    assert (code, out) == (128 + SIGSYS, "getppid 0 0\n")


def test_remove_set_with_errno_blocks_only_the_set(podbase, probe):
    code, out, err, _ = _run(podbase, probe, "/bin/probe mkdir /tmp/d keyctl",
                             [_iso("remove", ["mkdir", "mkdirat"], "EROFS")])
    assert code == 0, err
    found = probe_results(out)
    assert found["mkdir"] == (-1, errno.EROFS)
    assert found["keyctl"] == (0, 0)        # blocked by the default filter, not by this one


def test_remove_set_without_errno_kills_with_sigsys(podbase, probe):
    code, out, _, _ = _run(podbase, probe, "/bin/probe keyctl mkdir /tmp/d keyctl",
                           [_iso("remove", ["mkdir", "mkdirat"])])
    assert (code, out) == (128 + SIGSYS, "keyctl 0 0\n")


def test_remove_set_with_rkts_blacklist_wildcard(podbase, probe):
    code, out, err, _ = _run(podbase, probe, "/bin/probe keyctl mkdir /tmp/d",
                             [_iso("remove", ["@rkt/default-blacklist"], "EACCES")])
    assert code == 0, err
    assert probe_results(out) == {"keyctl": (-1, errno.EACCES), "mkdir": (0, 0)}


def test_retain_all_means_no_filter(podbase, probe):
    code, out, err, _ = _run(podbase, probe, STATUS + "; /bin/probe keyctl",
                             [_iso("retain", ["@appc.io/all", "read"])], user="1500")
    assert code == 0, err
    assert _status(out) == {"Seccomp": 0, "NoNewPrivs": 0}
    assert probe_results(out)["keyctl"] == (0, 0)


@pytest.mark.parametrize("errno_name, code, keyctl", [
    ("EPERM", 0, (-1, errno.EPERM)), (None, 128 + SIGSYS, None)])
def test_remove_empty_means_the_default_whitelist(podbase, probe, errno_name, code, keyctl):
    found_code, out, err, _ = _run(podbase, probe, "/bin/probe getppid keyctl",
                                   [_iso("remove", ["@appc.io/empty", "mount"], errno_name)])
    assert found_code == code, err
    assert probe_results(out).get("keyctl") == keyctl
    assert probe_results(out)["getppid"] == (0, 0)


# -- stage1 enter --------------------------------------------------------------------------

ENTER = STATUS + "; /bin/probe keyctl write /proc/sys/kernel/core_pattern x read /proc/kallsyms"


def _enter(base, probe, user, *args):
    pod = IsoPod(base, [sh_app("a", "exec sleep 60", user=user, group=user)])
    install(probe, pod.app_root("a"))
    with IsoRun(pod, *args):
        pod.wait_state("a", "running")
        done = stage1_cmd("enter", pod.path, "--app", "a", "--", "/bin/sh", "-c", ENTER)
    assert done.returncode == 0, done.stderr
    return _status(done.stdout), probe_results(done.stdout)


@pytest.mark.parametrize("args, filtered", [((), True), (("--disable-seccomp",), False)])
def test_enter_gets_the_apps_filter_and_protected_paths(podbase, probe, args, filtered):
    status, found = _enter(podbase, probe, "0", *args)
    assert status == {"Seccomp": 2 if filtered else 0, "NoNewPrivs": 0}
    assert found["keyctl"] == ((-1, errno.EPERM) if filtered else (0, 0))
    assert found["write"] == (-1, errno.EROFS)          # core_pattern, as root
    assert found["read"] == (0, 0)                      # kallsyms, masked


def test_enter_as_a_non_root_app_gets_no_new_privs(podbase, probe):
    status, found = _enter(podbase, probe, "1500")
    assert status == {"Seccomp": 2, "NoNewPrivs": 1}
    assert found["keyctl"] == (-1, errno.EPERM)


# -- the filters, without a pod ------------------------------------------------------------

def _limits(kind=None, items=(), errno_name=None):
    if kind is None:
        return isolators.Limits()
    iso = _iso(kind, items, errno_name)
    return isolators.parse([(iso["name"], iso["value"], "apps[0].app.isolators[0]")])[0]


def test_every_name_in_the_lists_is_known_to_libseccomp():
    for names in (seccomp.DOCKER_DEFAULT_WHITELIST, seccomp.DOCKER_DEFAULT_BLACKLIST,
                  seccomp.RKT_ARM_WHITELIST, seccomp.NEWER):
        assert [n for n in names if not native.seccomp_known(n)] == []
    assert not set(seccomp.DOCKER_DEFAULT_WHITELIST) & set(seccomp.DOCKER_DEFAULT_BLACKLIST)
    assert not set(seccomp.NEWER) & (set(seccomp.DOCKER_DEFAULT_WHITELIST) |
                                     set(seccomp.DOCKER_DEFAULT_BLACKLIST))


def test_the_default_filter_is_rkts_whitelist_with_eperm():
    f = seccomp.for_app(_limits())
    assert f is seccomp.default_filter()
    assert f.default == errno.EPERM
    allowed = {name for name, action in f.rules if action == native.SECCOMP_ALLOW}
    assert allowed == set(seccomp.RKT_DEFAULT_WHITELIST)
    assert dict(f.rules)["clone3"] == errno.ENOSYS
    assert not f.allowed("mount") and f.allowed("read")


def test_newer_syscalls_answer_enosys_unless_the_set_names_them():
    f = seccomp.for_app(_limits("retain", ["read", "clone3"]))
    rules = dict(f.rules)
    assert f.default == native.SECCOMP_KILL
    assert rules["clone3"] == native.SECCOMP_ALLOW and rules["rseq"] == errno.ENOSYS
    assert {"execve", "exit", "exit_group"} <= {n for n, a in f.rules if a == native.SECCOMP_ALLOW}
    blacklist = seccomp.for_app(_limits("remove", ["read"]))
    assert dict(blacklist.rules) == {"read": native.SECCOMP_KILL}


def test_one_program_per_distinct_rule_set():
    a = seccomp.for_app(_limits("remove", ["mount", "bpf"], "EPERM"))
    b = seccomp.for_app(_limits("remove", ["bpf", "mount"], "EPERM"))
    c = seccomp.for_app(_limits("remove", ["bpf", "mount"], "EACCES"))
    assert a.program is b.program
    assert c.program is not a.program
    assert seccomp.for_app(_limits("remove", ["@appc.io/empty"], "EPERM")) \
        is seccomp.default_filter()


@pytest.mark.parametrize("items, where, message", [
    (["read", "nope"], "set[1]", "unknown syscall 'nope'"),
    (["@rkt/nope"], "set[0]", "unknown seccomp wildcard '@rkt/nope'"),
    (["@appc.io/all", "nope"], "set[1]", "unknown syscall 'nope'"),
])
def test_unknown_names_are_bad_input_naming_the_place(items, where, message):
    with pytest.raises(ManifestError) as info:
        seccomp.for_app(_limits("retain", items))
    assert str(info.value).startswith("pod: apps[0].app.isolators[0].value.%s: %s"
                                      % (where, message))


@pytest.mark.parametrize("name, number", [("EPERM", 1), ("ENOTSUP", errno.ENOTSUP),
                                          ("", None), (None, None)])
def test_errno_names(name, number):
    value = {"set": ["read"]}
    if name is not None:
        value["errno"] = name
    limits, _ = isolators.parse([("os/linux/seccomp-retain-set", value, "w")])
    assert limits.seccomp.errno == number
