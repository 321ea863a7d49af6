"""CNI networks of an isolated pod, with Debian's real plugins
(containernetworking-plugins: ptp, host-local, portmap): `--net=default`,
`default-restricted`, several networks, `all`, named networks and CNI_ARGS
from `--local-config`'s net.d, `ports` forwarded through portmap,
POD/netns and POD/net-info.json in rkt's format, teardown in `stage1 gc`,
and plugins that fail; then the pure parts (CNI results of every version,
plugin errors, the plugin deadline) without a pod.

Every test runs under `nothing_left`: `ip -o link`, `ip netns`, the
host-local leases under /var/lib/cni/networks and `iptables-save` are
snapshotted before and compared after, once gc has run (IsoRun runs it
whatever happens).  What the plugins keep by design and share between
pods is left out of the comparison: host-local's lock and
last_reserved_ip files, portmap's CNI-HOSTPORT-* chains, the nat table's
built-in chains.  Whatever a failing test did leave is removed by the
fixture, so the next test starts clean.
"""
import ipaddress
import json
import os
import shlex
import socket
import subprocess
import urllib.request

import pytest

from isohelpers import podbase  # noqa: F401 (a fixture)
from isohelpers import IsoPod, IsoRun, Run, gc, iso_run, sh_app, stage1_cmd, wait_for, DEADLINE
from stage1.isolation import dns, network

LEASES = "/var/lib/cni/networks"
NETNS = "/run/netns"
BUILTIN_CHAINS = {"PREROUTING", "INPUT", "OUTPUT", "POSTROUTING", "FORWARD"}
NETINFO_KEYS = ["netName", "netConf", "pluginPath", "ifName", "ip", "args", "mask"]
DEFAULT_NET = ipaddress.ip_network("172.16.28.0/24")
RESTRICTED_NET = ipaddress.ip_network("172.31.0.0/16")

pytestmark = pytest.mark.skipif(not os.path.exists("/usr/lib/cni/ptp"),
                                reason="Debian's containernetworking-plugins is not installed")


# -- what the host has: before and after ------------------------------------------------

def links():
    out = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    return {line.split(": ")[1].split("@")[0] for line in out.splitlines() if ": " in line}


def namespaces():
    return set(os.listdir(NETNS)) if os.path.isdir(NETNS) else set()


def leases(*dirs):
    """host-local's leases (its lock and last_reserved_ip files are not)."""
    out = set()
    for top in (LEASES,) + dirs:
        for net in os.listdir(top) if os.path.isdir(top) else ():
            for name in os.listdir(os.path.join(top, net)):
                if name != "lock" and not name.startswith("last_reserved_ip"):
                    out.add(os.path.join(top, net, name))
    return out


def rules():
    """(table, '-A ...' or ':CHAIN') of iptables-save; the shared chains and
    the rules that lead to them are left out (a pod's rules carry its id)."""
    out = subprocess.run(["iptables-save"], capture_output=True, text=True).stdout
    table, found = None, set()
    for line in out.splitlines():
        if line.startswith("*"):
            table = line[1:]
        elif line.startswith(":"):
            name = line[1:].split()[0]
            if name not in BUILTIN_CHAINS and not name.startswith("CNI-HOSTPORT-"):
                found.add((table, ":" + name))
        elif line.startswith("-A ") and ("CNI-HOSTPORT-" not in line or " id: " in line):
            found.add((table, line))        # a pod's own rules in the shared chains count
    return found


def snapshot(*ipam_dirs):
    return {"links": links(), "netns": namespaces(), "leases": leases(*ipam_dirs),
            "rules": rules()}


def new_since(before, *ipam_dirs):
    after = snapshot(*ipam_dirs)
    return {k: sorted(after[k] - before[k]) for k in after if after[k] - before[k]}


def scrub(new):
    """Remove what a failed test left, so that the next one starts clean."""
    for table, rule in new.get("rules", ()):
        if rule.startswith("-A "):
            subprocess.run(["iptables", "-t", table, "-D"] + shlex.split(rule)[1:],
                           capture_output=True)
    for table, chain in new.get("rules", ()):
        if chain.startswith(":"):
            for op in ("-F", "-X"):
                subprocess.run(["iptables", "-t", table, op, chain[1:]], capture_output=True)
    for name in new.get("links", ()):
        subprocess.run(["ip", "link", "del", name], capture_output=True)
    for name in new.get("netns", ()):
        subprocess.run(["umount", "-l", os.path.join(NETNS, name)], capture_output=True)
        os.unlink(os.path.join(NETNS, name))
    for path in new.get("leases", ()):
        os.unlink(path)


@pytest.fixture
def ipam_dir(tmp_path):
    """host-local's dataDir for the tests' own networks, so that they leave
    no directory in /var/lib/cni/networks."""
    return str(tmp_path / "ipam")


@pytest.fixture
def nothing_left(ipam_dir):
    """Fails the test if it leaves a link, netns, lease or iptables rule."""
    before = snapshot(ipam_dir)
    yield before
    new = new_since(before, ipam_dir)
    if new:
        scrub(new)
        pytest.fail("left on the host: %s" % new)


@pytest.fixture
def local_config(tmp_path):
    """A --local-config directory with an empty net.d (beside ipam_dir)."""
    os.makedirs(tmp_path / "rkt" / "net.d")
    return str(tmp_path / "rkt")


def write_net(local_config, filename, conf):
    if isinstance(conf, dict) and isinstance(conf.get("ipam"), dict):
        conf["ipam"].setdefault("dataDir", os.path.join(os.path.dirname(local_config), "ipam"))
    with open(os.path.join(local_config, "net.d", filename), "w") as f:
        f.write(conf if isinstance(conf, str) else json.dumps(conf, indent=1))


def write_plugin(local_config, name, script):
    """A plugin of our own in net.d, the first place plugins are looked for."""
    path = os.path.join(local_config, "net.d", name)
    with open(path, "w") as f:
        f.write("#!/bin/sh\n" + script)
    os.chmod(path, 0o755)
    return path


def ptp_conf(name, subnet, **extra):
    conf = {"cniVersion": "0.3.1", "name": name, "type": "ptp", "ipMasq": False,
            "ipam": {"type": "host-local", "subnet": subnet}}
    conf.update(extra)
    return conf


def applets(pod, app, *names):
    for name in names:
        os.symlink("busybox", os.path.join(pod.app_root(app), "bin", name))


def addresses(out):
    """{interface: ip_interface} from `ip -4 -o addr` lines."""
    found = {}
    for line in out.splitlines():
        words = line.split()
        if len(words) > 3 and words[2] == "inet" and words[1] != "lo":
            found[words[1]] = ipaddress.ip_interface(words[3])
    return found


def net_args(local_config, nets="default"):
    return ["--net=%s" % nets, "--local-config=%s" % local_config]


def one_line_failure(code, err):
    assert code == 254, err
    lines = [l for l in err.splitlines() if l.strip()]
    assert len(lines) == 1, err
    return lines[0]


# -- the default network -----------------------------------------------------------------

def test_default_network_gives_eth0_in_rkt_subnet_and_the_host_answers(podbase, local_config,
                                                                       nothing_left):
    pod = IsoPod(podbase, [sh_app("a", "ip -4 -o addr; gw=$(ip route | grep ^default | "
                                       "cut -d' ' -f3); echo gw $gw; ping -c1 -W5 $gw "
                                       "> /dev/null && echo pong")])
    applets(pod, "a", "ping")
    code, out, err = iso_run(pod, *net_args(local_config))
    assert code == 0, err
    eth0 = addresses(out)["eth0"]
    assert eth0.ip in DEFAULT_NET and eth0.network == DEFAULT_NET
    gw = [l.split()[1] for l in out.splitlines() if l.startswith("gw ")][0]
    assert ipaddress.ip_address(gw) in DEFAULT_NET
    assert "pong" in out.split()


def test_netns_and_net_info_in_rkt_format_until_gc(podbase, local_config, nothing_left):
    pod = IsoPod(podbase, [sh_app("a", "ip -4 -o addr show eth0; exec sleep 60")])
    with IsoRun(pod, *net_args(local_config)) as r:
        pod.wait_state("a", "running")
        out = wait_for(lambda: "inet" in r.stdout() and r.stdout(), what="the app's address")
        seen = addresses(out)["eth0"]
        with open(pod.file("netns")) as f:
            netns = f.read()
        assert netns == "/run/netns/stage1-%s" % pod.uuid      # a path, no newline
        assert os.path.basename(netns) in subprocess.run(
            ["ip", "netns", "list"], capture_output=True, text=True).stdout
        with open(pod.file("net-info.json")) as f:
            [info] = json.load(f)
        assert list(info) == NETINFO_KEYS
        assert info["netName"] == "default" and info["ifName"] == "eth0"
        assert info["ip"] == str(seen.ip) and info["mask"] == "255.255.255.0"
        assert info["args"] == "" and info["pluginPath"] == "/usr/lib/cni/ptp"
        assert info["netConf"] == "net/99-default.conf"       # relative to the pod, as rkt's
        assert os.path.isfile(pod.file(info["netConf"]))
        # the lease is host-local's (its default dataDir, as rkt's), keyed by the pod's UUID
        with open(os.path.join(LEASES, "default", info["ip"])) as f:
            assert f.read().split()[0] == pod.uuid
        assert stage1_cmd("stop", pod.path).returncode == 0
        assert r.wait() == 0
        # an exited pod keeps its networks until gc, as rkt's do
        assert os.path.exists(pod.file("net-info.json"))
        assert os.path.basename(netns) in os.listdir(NETNS)
        done = gc(pod)
        assert done.returncode == 0, done.stderr
        for name in ("netns", "net-info.json", "net"):
            assert not os.path.exists(pod.file(name))
        assert os.path.basename(netns) not in namespaces()
        assert gc(pod).returncode == 0          # twice is harmless


def test_restricted_network_has_no_default_route(podbase, local_config, nothing_left):
    pod = IsoPod(podbase, [sh_app("a", "ip -4 -o addr; ip route")])
    code, out, err = iso_run(pod, *net_args(local_config, "default-restricted"))
    assert code == 0, err
    assert addresses(out)["eth0"].ip in RESTRICTED_NET
    assert "default" not in out


def test_default_masquerades_and_restricted_does_not(podbase, local_config, nothing_left):
    pod = IsoPod(podbase, [sh_app("a", "exec sleep 60")])
    with IsoRun(pod, *net_args(local_config)):
        pod.wait_state("a", "running")
        assert [rule for _, rule in rules() if pod.uuid in rule and "MASQUERADE" in rule]
    pod2 = IsoPod(podbase, [sh_app("a", "exec sleep 60")])
    with IsoRun(pod2, *net_args(local_config, "default-restricted")):
        pod2.wait_state("a", "running")
        assert not [rule for _, rule in rules() if pod2.uuid in rule]


def test_two_networks_become_eth0_and_eth1_in_file_name_order(podbase, local_config,
                                                                nothing_left):
    pod = IsoPod(podbase, [sh_app("a", "ip -4 -o addr")])
    code, out, err = iso_run(pod, *net_args(local_config, "default,default-restricted"))
    assert code == 0, err
    found = addresses(out)
    # rkt applies networks sorted by file name: 99-default-restricted.conf
    # sorts before 99-default.conf
    assert found["eth0"].ip in RESTRICTED_NET and found["eth1"].ip in DEFAULT_NET


def test_net_info_lists_every_network(podbase, local_config, nothing_left):
    pod = IsoPod(podbase, [sh_app("a", "exec sleep 60")])
    with IsoRun(pod, *net_args(local_config, "default-restricted,default")):
        pod.wait_state("a", "running")
        with open(pod.file("net-info.json")) as f:
            infos = json.load(f)
    assert [(i["netName"], i["ifName"]) for i in infos] == [
        ("default-restricted", "eth0"), ("default", "eth1")]
    assert ipaddress.ip_address(infos[0]["ip"]) in RESTRICTED_NET
    assert ipaddress.ip_address(infos[1]["ip"]) in DEFAULT_NET


# -- named networks from --local-config ---------------------------------------------------

def test_named_network_from_local_config_with_cni_args(podbase, local_config, nothing_left):
    write_net(local_config, "10-mynet.conf", ptp_conf("mynet", "172.30.77.0/24"))
    pod = IsoPod(podbase, [sh_app("a", "ip -4 -o addr")])
    code, out, err = iso_run(pod, *net_args(local_config, "mynet:IP=172.30.77.77"))
    assert code == 0, err
    assert str(addresses(out)["eth0"]) == "172.30.77.77/24"


def test_cni_args_are_in_net_info(podbase, local_config, nothing_left):
    write_net(local_config, "10-mynet.conf", ptp_conf("mynet", "172.30.77.0/24"))
    pod = IsoPod(podbase, [sh_app("a", "exec sleep 60")])
    with IsoRun(pod, *net_args(local_config, "mynet:IP=172.30.77.78")):
        pod.wait_state("a", "running")
        with open(pod.file("net-info.json")) as f:
            [info] = json.load(f)
    assert info["args"] == "IP=172.30.77.78" and info["ip"] == "172.30.77.78"
    assert info["netConf"] == "net/10-mynet.conf"


def test_a_user_network_overrides_the_builtin_of_its_name(podbase, local_config,
                                                           nothing_left):
    write_net(local_config, "50-mine.conf", ptp_conf("default", "172.30.78.0/24"))
    pod = IsoPod(podbase, [sh_app("a", "ip -4 -o addr")])
    code, out, err = iso_run(pod, *net_args(local_config))
    assert code == 0, err
    assert addresses(out)["eth0"].ip in ipaddress.ip_network("172.30.78.0/24")


def test_all_joins_the_builtins_and_every_user_network(podbase, local_config, nothing_left):
    write_net(local_config, "10-mynet.conf", ptp_conf("mynet", "172.30.77.0/24"))
    write_net(local_config, "README", "not a conf: ignored")
    pod = IsoPod(podbase, [sh_app("a", "ip -4 -o addr")])
    code, out, err = iso_run(pod, *net_args(local_config, "all"))
    assert code == 0, err
    found = addresses(out)
    assert sorted(found) == ["eth0", "eth1", "eth2"]
    assert found["eth0"].ip in ipaddress.ip_network("172.30.77.0/24")   # 10-mynet.conf
    assert found["eth1"].ip in RESTRICTED_NET and found["eth2"].ip in DEFAULT_NET


def test_plugin_in_net_d_is_found_first_and_gets_the_cni_environment(podbase, local_config,
                                                                       tmp_path, nothing_left):
    log = tmp_path / "calls"
    write_plugin(local_config, "wrap",
                 'echo "$CNI_COMMAND $CNI_CONTAINERID $CNI_NETNS $CNI_IFNAME $CNI_ARGS '
                 '$CNI_PATH" >> %s\n'
                 'exec /usr/lib/cni/ptp\n' % log)
    conf = ptp_conf("wrapped", "172.30.76.0/24")
    conf["type"] = "wrap"
    write_net(local_config, "10-wrapped.conf", conf)
    pod = IsoPod(podbase, [sh_app("a", "ip -4 -o addr")])
    code, out, err = iso_run(pod, *net_args(local_config, "wrapped:IgnoreUnknown=1;K=V"))
    assert code == 0, err
    assert addresses(out)["eth0"].ip in ipaddress.ip_network("172.30.76.0/24")
    add, delete = log.read_text().splitlines()
    command, container, netns, ifname, args, cni_path = add.split()
    assert (command, container, ifname, args) == ("ADD", pod.uuid, "eth0", "IgnoreUnknown=1;K=V")
    assert netns == "/run/netns/stage1-%s" % pod.uuid
    assert cni_path.split(":") == [os.path.join(local_config, "net.d"), "/usr/lib/rkt/plugins/net",
                                   os.path.join(pod.root, "usr/lib/rkt/plugins/net"),
                                   "/usr/lib/cni"]
    assert delete.split()[:4] == ["DEL", pod.uuid, netns, "eth0"]


# -- ports -----------------------------------------------------------------------------------

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fetch(url):
    try:
        return urllib.request.urlopen(url, timeout=2).read()
    except OSError:
        return None


def web_pod(podbase, ports):
    app = sh_app("web", "mkdir -p /www; echo hello-from-the-pod > /www/index.html; "
                        "exec httpd -f -p 80 -h /www",
                 ports=[{"name": "http", "protocol": "tcp", "port": 80, "count": 1,
                         "socketActivated": False}])
    pod = IsoPod(podbase, [app], ports=ports)
    applets(pod, "web", "httpd")
    return pod


@pytest.mark.parametrize("host_ip", [None, "127.0.0.1"])
def test_ports_are_forwarded_through_portmap_and_removed_at_gc(podbase, local_config,
                                                                nothing_left, host_ip):
    port = free_port()
    exposed = {"name": "http", "hostPort": port}     # what `rkt run --port=http:PORT` writes
    if host_ip:
        exposed["hostIP"] = host_ip
    pod = web_pod(podbase, [exposed])
    with IsoRun(pod, *net_args(local_config)):
        pod.wait_state("web", "running")
        body = wait_for(lambda: fetch("http://127.0.0.1:%d/" % port), what="the forwarded port")
        assert body == b"hello-from-the-pod\n"
        assert [rule for _, rule in rules() if "dnat" in rule and pod.uuid in rule]
    assert not [rule for _, rule in rules() if pod.uuid in rule]


def test_a_pod_port_without_an_app_port(podbase, local_config, nothing_left):
    """What `rkt app sandbox --port=http:tcp:80:0.0.0.0:PORT` writes."""
    port = free_port()
    pod = web_pod(podbase, [{"name": "other", "hostPort": port, "hostIP": "0.0.0.0",
                             "podPort": {"name": "other", "protocol": "tcp", "port": 80,
                                         "count": 1, "socketActivated": False}}])
    with IsoRun(pod, *net_args(local_config)):
        pod.wait_state("web", "running")
        assert wait_for(lambda: fetch("http://127.0.0.1:%d/" % port), what="the forwarded port")


@pytest.mark.parametrize("ports, message", [
    ([{"name": "nope", "hostPort": 8080}], "ports[0].name: no app has a port named 'nope'"),
    ([{"name": "http", "hostPort": 8080}, {"name": "http", "hostPort": 8080}],
     "ports[1]: tcp port 8080 is forwarded by ports[0] already"),
    ([{"name": "http", "hostPort": 8080, "hostIP": "not-an-ip"}],
     "ports[0].hostIP: 'not-an-ip' is not an IP address"),
    ([{"name": "http", "hostPort": 0}], "ports[0].hostPort: must be a port number"),
])
def test_bad_ports_are_refused_before_anything_starts(podbase, local_config, nothing_left,
                                                       ports, message):
    pod = web_pod(podbase, ports)
    code, _, err = iso_run(pod, *net_args(local_config))
    assert message in one_line_failure(code, err)
    assert not os.path.exists(pod.file("pid")) and not os.path.exists(pod.file("netns"))


def test_ports_with_net_none_are_refused(podbase, nothing_left):
    pod = web_pod(podbase, [{"name": "http", "hostPort": 8080}])
    code, _, err = iso_run(pod, "--net=none")
    assert "--net=none has no network" in one_line_failure(code, err)


# -- bad input: one line, 254, nothing started -------------------------------------------------

@pytest.mark.parametrize("net, message", [
    ("mynet", "--net=mynet: no network named mynet"),
    ("default,nope", "no network named nope"),
    ("default,default", "network default is named twice"),
    (",default", "a network name must not be empty"),
    ("default:IP", "'IP' is not a CNI argument K=V"),
    ("default:a:b", "more than one ':'"),
    ("all:K=V", "all takes no arguments"),
    ("host,default", "host cannot be combined"),
    ("none,default", "none cannot be combined"),
])
def test_bad_net_flags_are_refused_before_anything_starts(podbase, local_config, nothing_left,
                                                          net, message):
    pod = IsoPod(podbase, [sh_app("a", "touch /ran")])
    code, _, err = iso_run(pod, *net_args(local_config, net))
    assert message in one_line_failure(code, err)
    assert not os.path.exists(os.path.join(pod.app_root("a"), "ran"))
    assert not os.path.exists(pod.file("pid")) and not os.path.exists(pod.file("netns"))


@pytest.mark.parametrize("conf, message", [
    ("{not json", "invalid JSON"),
    ('["a list"]', "must be a JSON object"),
    ('{"name": "broken"}', "'type' must be a non-empty string"),
    ('{"name": "broken", "type": "../../bin/sh"}', "is not a plugin name"),
    ('{"name": "broken", "type": "ptp", "ipam": "host-local"}', "'ipam' must be an object"),
])
def test_a_malformed_conf_in_net_d_is_one_line_naming_the_file(podbase, local_config,
                                                               nothing_left, conf, message):
    write_net(local_config, "20-broken.conf", conf)
    pod = IsoPod(podbase, [sh_app("a", "touch /ran")])
    code, _, err = iso_run(pod, *net_args(local_config))     # rkt parses every conf
    line = one_line_failure(code, err)
    assert os.path.join(local_config, "net.d", "20-broken.conf") in line and message in line
    assert not os.path.exists(pod.file("pid"))


def test_a_missing_plugin_is_refused_before_anything_starts(podbase, local_config,
                                                            nothing_left):
    write_net(local_config, "20-ghost.conf", {"name": "ghost", "type": "no-such-plugin"})
    pod = IsoPod(podbase, [sh_app("a", "touch /ran")])
    code, _, err = iso_run(pod, *net_args(local_config, "default,ghost"))
    line = one_line_failure(code, err)
    assert "network ghost" in line and "no plugin no-such-plugin in" in line
    assert not os.path.exists(pod.file("pid")) and not os.path.exists(pod.file("netns"))


# -- a plugin that fails -----------------------------------------------------------------------

@pytest.mark.parametrize("script, message", [
    ('echo \'{"cniVersion": "0.3.1", "code": 11, "msg": "no luck today", '
     '"details": "the failing plugin"}\'\nexit 1\n', "no luck today; the failing plugin"),
    ("echo 'failing: it says no on stderr' >&2\nexit 1\n", "failing: it says no on stderr"),
    ("exit 1\n", "exited with 1"),
])
def test_a_failing_plugin_undoes_everything_and_its_message_is_the_one_line(
        podbase, local_config, tmp_path, nothing_left, script, message):
    calls = tmp_path / "calls"
    write_plugin(local_config, "failing", 'echo "$CNI_COMMAND" >> %s\n%s' % (calls, script))
    # zz- sorts after 99-default.conf: default is up when the failing one runs
    write_net(local_config, "zz-broken.conf", {"cniVersion": "0.3.1", "name": "broken",
                                               "type": "failing"})
    pod = IsoPod(podbase, [sh_app("a", "touch /ran")])
    code, _, err = iso_run(pod, *net_args(local_config, "default,broken"))
    line = one_line_failure(code, err)
    assert line.endswith("network broken: failing: %s" % message), line
    assert not os.path.exists(os.path.join(pod.app_root("a"), "ran"))
    for name in ("pid", "netns", "net-info.json", "net"):
        assert not os.path.exists(pod.file(name)), name
    # rkt#3114: the failed plugin gets its DEL, as CNI asks of a runtime
    assert calls.read_text().split() == ["ADD", "DEL"]


def test_a_plugin_that_fails_first_leaves_nothing_either(podbase, local_config, nothing_left):
    write_plugin(local_config, "failing", "exit 1\n")
    write_net(local_config, "00-broken.conf", {"name": "broken", "type": "failing"})
    pod = IsoPod(podbase, [sh_app("a", "touch /ran")])
    code, _, err = iso_run(pod, *net_args(local_config, "broken,default"))
    assert "network broken: failing: exited with 1" in one_line_failure(code, err)
    assert not os.path.exists(pod.file("netns"))


def test_a_plugin_that_prints_no_json_result_fails_the_pod(podbase, local_config,
                                                           nothing_left):
    write_plugin(local_config, "liar", 'test "$CNI_COMMAND" = ADD && echo not-json\nexit 0\n')
    write_net(local_config, "zz-liar.conf", {"name": "liar", "type": "liar"})
    pod = IsoPod(podbase, [sh_app("a", "true")])
    code, _, err = iso_run(pod, *net_args(local_config, "default,liar"))
    assert "network liar: liar: its result is not JSON" in one_line_failure(code, err)


# -- gc ------------------------------------------------------------------------------------------

def test_a_second_run_without_gc_first_removes_what_the_first_left(podbase, local_config,
                                                                    nothing_left):
    pod = IsoPod(podbase, [sh_app("a", "true")])
    with Run(pod, *net_args(local_config)) as first:         # no gc after this one
        assert first.wait() == 0, first.stderr()
    assert os.path.exists(pod.file("netns"))
    with IsoRun(pod, *net_args(local_config)) as second:
        assert second.wait() == 0, second.stderr()
        with open(pod.file("net-info.json")) as f:
            [info] = json.load(f)
        # one lease, the second run's: the first one's was released
        assert leases() - nothing_left["leases"] == {os.path.join(LEASES, "default", info["ip"])}


def test_gc_after_the_pod_was_killed(podbase, local_config, nothing_left):
    pod = IsoPod(podbase, [sh_app("a", "exec sleep 60")])
    with IsoRun(pod, *net_args(local_config)) as r:
        pod.wait_state("a", "running")
        r.kill()                            # SIGKILL: nothing of stage1 runs after it
        assert os.path.exists(pod.file("netns"))
        done = wait_for(lambda: gc(pod).returncode == 0 or None, what="gc")
        assert done
    assert not os.path.exists(pod.file("netns"))


def test_gc_finds_everything_once_rkt_moved_the_pod_to_exited_garbage(podbase, local_config,
                                                                      nothing_left):
    pod = IsoPod(os.path.join(podbase, "run"), [sh_app("a", "exec sleep 60")])
    with IsoRun(pod, *net_args(local_config)) as r:
        pod.wait_state("a", "running")
        assert stage1_cmd("stop", pod.path).returncode == 0
        r.wait()
        garbage = os.path.join(podbase, "exited-garbage", pod.uuid)
        os.makedirs(os.path.dirname(garbage))
        os.rename(pod.path, garbage)
        pod.path, pod.root = garbage, os.path.join(garbage, "stage1", "rootfs")
        done = stage1_cmd("gc", "--local-config", local_config, pod.uuid, cwd=pod.path)
        assert done.returncode == 0, done.stderr
        assert not os.path.exists(pod.file("net"))


def test_gc_looks_a_plugin_up_again_when_its_path_is_gone(podbase, local_config,
                                                          nothing_left):
    """rkt#2319: the plugins of a stage1 image unmounted before gc."""
    pod = IsoPod(podbase, [sh_app("a", "exec sleep 60")])
    with IsoRun(pod, *net_args(local_config)) as r:
        pod.wait_state("a", "running")
        assert stage1_cmd("stop", pod.path).returncode == 0
        r.wait()
        record = pod.file("net", "teardown.json")
        with open(record) as f:
            doc = json.load(f)
        doc["steps"][0]["plugin"] = os.path.join(pod.root, "usr/lib/rkt/plugins/net/ptp")
        with open(record, "w") as f:
            json.dump(doc, f)
        done = stage1_cmd("gc", "--local-config", local_config, pod.uuid, cwd=pod.path)
        assert done.returncode == 0, done.stderr
        assert not os.path.exists(record)


def test_a_failing_del_keeps_what_gc_needs_to_try_again(podbase, local_config, tmp_path,
                                                        nothing_left):
    flag = tmp_path / "refuse-del"
    write_plugin(local_config, "moody",
                 'test "$CNI_COMMAND" = DEL -a -e %s && { echo "not now" >&2; exit 1; }\n'
                 'exec /usr/lib/cni/ptp\n' % flag)
    conf = ptp_conf("moody", "172.30.75.0/24", ipMasq=True)
    conf["type"] = "moody"
    write_net(local_config, "10-moody.conf", conf)
    pod = IsoPod(podbase, [sh_app("a", "exec sleep 60")])
    with IsoRun(pod, *net_args(local_config, "moody")) as r:
        pod.wait_state("a", "running")
        assert stage1_cmd("stop", pod.path).returncode == 0
        r.wait()
        flag.write_text("")
        done = gc(pod)
        assert done.returncode == 254
        assert "network moody (moody DEL): not now" in done.stderr
        assert os.path.exists(pod.file("netns"))         # the namespace stays for the retry
        assert [rule for _, rule in rules() if pod.uuid in rule]
        flag.unlink()
        done = gc(pod)
        assert done.returncode == 0, done.stderr
        assert not [rule for _, rule in rules() if pod.uuid in rule]


# -- rkt's entrypoint, and what still works ----------------------------------------------------

def test_net_host_and_none_still_need_no_cni(podbase, nothing_left):
    pod = IsoPod(podbase, [sh_app("a", "ls /sys/class/net")])
    code, out, err = iso_run(pod, "--net=none")
    assert code == 0, err
    assert out.split() == ["lo"]
    assert not os.path.exists(pod.file("netns"))


def test_enter_joins_the_pods_network_namespace(podbase, local_config, nothing_left):
    pod = IsoPod(podbase, [sh_app("a", "exec sleep 60")])
    with IsoRun(pod, *net_args(local_config)):
        pod.wait_state("a", "running")
        done = stage1_cmd("enter", "--app", "a", pod.path, "--", "/bin/ip", "-4", "-o", "addr",
                          timeout=DEADLINE)
        assert done.returncode == 0, done.stderr
        assert addresses(done.stdout)["eth0"].ip in DEFAULT_NET


# -- the pure parts -----------------------------------------------------------------------------

@pytest.mark.parametrize("result, expected", [
    # CNI 0.1.0/0.2.0, rkt's own era
    ({"ip4": {"ip": "172.16.28.5/24", "gateway": "172.16.28.1"}, "dns": {}},
     ("172.16.28.5", "255.255.255.0", "172.16.28.1")),
    # 0.3.x/0.4.0: the address on the pod's side wins over a host-side one
    ({"cniVersion": "0.4.0", "interfaces": [{"name": "veth1"}, {"name": "eth0", "sandbox": "/x"}],
      "ips": [{"version": "4", "interface": 0, "address": "10.0.0.1/16"},
              {"version": "4", "interface": 1, "address": "10.0.0.2/16", "gateway": "10.0.0.1"}]},
     ("10.0.0.2", "255.255.0.0", "10.0.0.1")),
    # 1.0.0: no "version"; IPv6 only is no ip4
    ({"cniVersion": "1.0.0", "ips": [{"address": "fd00::2/64"}, {"address": "192.168.9.9/30"}]},
     ("192.168.9.9", "255.255.255.252", None)),
    ({"cniVersion": "1.0.0", "ips": [{"address": "fd00::2/64"}]}, (None, None, None)),
])
def test_results_of_every_cni_version(result, expected):
    assert network.parse_result(result)[:3] == expected


@pytest.mark.parametrize("code, out, err, message", [
    (1, b'{"code": 7, "msg": "bad"}', b"", "bad"),
    (1, b'{"code": 7, "msg": "bad", "details": "very\\nbad"}', b"", "bad; very bad"),
    (1, b"", b"first\nlast line\n\n", "last line"),
    (2, b"plain words", b"", "plain words"),
    (3, b"", b"", "exited with 3"),
    (-9, b"", b"", "killed by signal 9"),
    (None, b"", b"", "did not answer within 60 s"),
])
def test_plugin_errors_are_one_line(code, out, err, message):
    assert network.plugin_error(code, out, err) == message


def test_a_plugin_past_its_deadline_is_killed(tmp_path):
    plugin = tmp_path / "slow"
    plugin.write_text("#!/bin/sh\nexec sleep 60\n")
    plugin.chmod(0o755)
    code, out, err = network.run_plugin(str(plugin), "ADD", b"{}", {}, timeout=0.2)
    assert code is None


def test_a_plugin_gets_its_conf_on_stdin_and_the_cni_environment(tmp_path):
    plugin = tmp_path / "echo"
    plugin.write_text("#!/bin/sh\ncat; echo \"$CNI_COMMAND $CNI_IFNAME\" >&2\n")
    plugin.chmod(0o755)
    code, out, err = network.run_plugin(str(plugin), "DEL", b'{"a": 1}', {"CNI_IFNAME": "eth3"})
    assert (code, out, err) == (0, b'{"a": 1}', b"DEL eth3\n")


@pytest.mark.parametrize("name, expected", [
    ("5b4e6c3e-1d2a-4c8e-9f00-0123456789ab", "5b4e6c3e-1d2a-4c8e-9f00-0123456789ab"),
    ("pod", None), ("my pod!", None)])
def test_container_ids(tmp_path, name, expected):
    got = network.container_id(str(tmp_path / name))
    if expected:
        assert got == expected
    else:
        assert got.startswith(name.replace(" ", "-").replace("!", "-") + "-") and len(got) < 64
        assert got != network.container_id(str(tmp_path / "other" / name))


def test_resolv_conf_and_hosts_text_as_rkt_makes_them():
    assert dns.make_resolv_conf({"nameservers": ["1.1.1.1", "8.8.8.8"], "search": ["a", "b"],
                                 "options": ["ndots:2"], "domain": "d"}, "from x") == (
        "# from x\n\nsearch a b\nnameserver 1.1.1.1\nnameserver 8.8.8.8\noptions ndots:2\n"
        "domain d\n")
    assert dns.add_host("127.0.0.1 localhost\n127.0.0.1 again\n", "127.0.0.1", "h") == \
        "127.0.0.1 localhost h\n127.0.0.1 again\n"
    assert dns.add_host("# none\n", "127.0.0.1", "h") == "# none\n127.0.0.1\th\n"
