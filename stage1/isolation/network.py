"""CNI networks of an isolated pod, the way rkt's stage1 sets them up
(rkt's networking/: networking.go, podenv.go, net_plugin.go, netinfo/),
with the plugins of the CNI project (Debian's containernetworking-plugins).

Plan time (`plan`, from decide.py): `--net=a,b:K=V;K2=V2` is parsed as
rkt's NetList (names, per-network CNI_ARGS, `all`); the networks are
stage1's two builtins (rkt's: `default`, ptp with host-local IPAM on
172.16.28.0/24, a default route and masquerading; `default-restricted`,
172.31.0.0/16, neither) and every `<local-config>/net.d/*.conf`, a user
network overriding a builtin of the same name; the chosen ones are applied
in the order of their file names and become eth0, eth1, ...  Every conf
in net.d must parse (rkt refuses a broken one even when it is not asked
for), every name asked for must exist, and every plugin (and IPAM plugin)
must be found in `<local-config>/net.d`, /usr/lib/rkt/plugins/net, the
stage1 image's usr/lib/rkt/plugins/net, then /usr/lib/cni.  The pod
manifest's `ports` (`rkt run --port`) are matched with the apps' ports.

The host side (`setup`, from host.py, before the pod's init is forked):
a network namespace, made by unshare(CLONE_NEWNET) in the host side
itself, lo brought up, bound onto /run/netns/stage1-<pod> (where `ip
netns` and rkt put them; its path in POD/netns, as rkt writes it); then
CNI ADD for each network, the plugin run with the CNI environment and the
conf on stdin; port forwarding through CNI's own `portmap` plugin chained
after the network rkt would forward from (the first with ipMasq, else the
last), with the mappings as its runtimeConfig (rkt wrote iptables rules of
its own); POD/net-info.json in rkt's format, which `rkt list` and `rkt
status` read.  The init then setns()es into the namespace.

What gc needs is written before each plugin runs (POD/net/teardown.json:
every ADD about to run or done, with the plugin's path, a copy of its
conf in POD/net/ as rkt keeps it, and the result), so nothing is lost to a
crash half-way.  Paths into the pod are relative to it (rkt's netConf is
`net/<file>`): rkt moves an exited pod to pods/exited-garbage/ before gc.  Teardown (`teardown`: on a failure during setup, and in
`stage1 gc`) runs DEL for each of them in reverse order, while the
namespace still exists (ptp finds the masquerade rules to remove through
the addresses inside it), then unmounts and removes the namespace.  A
plugin that fails during setup gets its DEL too, as the CNI spec asks of
a runtime, and its error is what the user sees; a DEL that fails in gc
keeps its step and the namespace, so gc can be run again.  rkt leaked
here: the namespace of a failed setup, never DELed (rkt#3114), and the
leases of pods whose stage1 plugins were gone by gc time (rkt#2319); a
plugin whose recorded path is gone is looked up again.

Plugins run through the native spawn (no Python between fork and exec),
with a clean signal mask (the host side blocks every signal), the init's
environment plus CNI's variables, and a deadline.  Whatever the plugins
leave behind by design stays: host-local's lock and last_reserved_ip files
in /var/lib/cni/networks/<network>, portmap's shared CNI-HOSTPORT-* chains,
ptp's net.ipv4.ip_forward=1.
"""
import json
import os
import select

from stage1.engine import native
from stage1.engine.status import write_atomic
from stage1.pod.errors import ManifestError, PodError

DEFAULT_LOCAL_CONFIG = "/etc/rkt"
NET_D = "net.d"
RKT_PLUGINS = "/usr/lib/rkt/plugins/net"
STAGE1_PLUGINS = "usr/lib/rkt/plugins/net"     # inside the stage1 image
CNI_PLUGINS = "/usr/lib/cni"
NETNS_DIR = "/run/netns"
PLUGIN_TIMEOUT = 60.0
CNI_VERSION = "0.3.1"       # understood by rkt-era plugins and current ones alike
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

BUILTINS = (
    ("99-default.conf", {
        "cniVersion": CNI_VERSION, "name": "default", "type": "ptp", "ipMasq": True,
        "ipam": {"type": "host-local", "subnet": "172.16.28.0/24",
                 "routes": [{"dst": "0.0.0.0/0"}]}}),
    ("99-default-restricted.conf", {
        "cniVersion": CNI_VERSION, "name": "default-restricted", "type": "ptp",
        "ipMasq": False, "ipam": {"type": "host-local", "subnet": "172.31.0.0/16"}}),
)


class Network:
    """One network the pod joins, as decided at plan time."""
    __slots__ = ("name", "filename", "source", "raw", "conf", "args", "plugin", "ifname",
                 "copy")

    def __init__(self, filename, source, raw, conf):
        self.name, self.filename, self.source = conf["name"], filename, source
        self.raw, self.conf = raw, conf
        self.args = ""
        self.plugin = self.ifname = self.copy = None

    @property
    def masquerades(self):
        return self.conf.get("ipMasq") is True


class NetPlan:
    """Everything the host side needs to attach the pod: no I/O left to decide."""

    def __init__(self, poddir, networks, ports, dirs):
        self.poddir_path = poddir.path
        self.networks, self.ports, self.dirs = networks, ports, dirs
        self.container_id = container_id(poddir.path)
        self.netns = os.path.join(NETNS_DIR, "stage1-" + self.container_id)
        self.portmap = None          # the portmap plugin's path, when there are ports
        self.forward = None          # the Network the ports are forwarded from


# -- plan time ----------------------------------------------------------------------

def parse_net_list(value):
    """rkt's NetList: 'a,b:K=V;K2=V2' -> {name: CNI_ARGS}, in order."""
    shown = "--net=%s" % value
    nets = {}
    for item in value.split(","):
        parts = item.split(":")
        name = parts[0]
        if not name:
            raise PodError("%s: a network name must not be empty" % shown)
        if name in nets:
            raise PodError("%s: network %s is named twice" % (shown, name))
        if len(parts) > 2:
            raise PodError("%s: network %s has more than one ':'" % (shown, name))
        args = parts[1] if len(parts) == 2 else ""
        if args and name in ("all", "host", "none"):
            raise PodError("%s: %s takes no arguments" % (shown, name))
        for pair in args.split(";") if args else ():
            key, eq, _ = pair.partition("=")
            if not key or not eq:
                raise PodError("%s: %r is not a CNI argument K=V" % (shown, pair))
        nets[name] = args
    for special in ("host", "none"):
        if special in nets and len(nets) > 1:
            raise PodError("%s: %s cannot be combined with other networks" % (shown, special))
    return nets


def container_id(path):
    """CNI_CONTAINERID: rkt's is the pod UUID, the pod directory's name.  A
    pod directory not named by a UUID gets a digest of its path too, so
    that two pods named alike never share a lease or a chain."""
    name = os.path.basename(os.path.realpath(path))
    if _is_uuid(name):
        return name
    safe = "".join(c if c.isalnum() or c in "-_." else "-" for c in name)[:32]
    import hashlib       # here: an unisolated pod's init need not load it
    digest = hashlib.sha256(os.path.realpath(path).encode()).hexdigest()[:12]
    return "%s-%s" % (safe or "pod", digest)


def _is_uuid(name):
    hexdigits = set("0123456789abcdefABCDEF")
    return (len(name) == 36 and all(name[i] == "-" for i in (8, 13, 18, 23)) and
            all(c in hexdigits for i, c in enumerate(name) if i not in (8, 13, 18, 23)))


def plugin_dirs(local_config, stage1_root):
    """Where plugins are looked for, in rkt's order, then the CNI project's."""
    return [os.path.join(local_config, NET_D), RKT_PLUGINS,
            os.path.join(stage1_root, STAGE1_PLUGINS), CNI_PLUGINS]


def find_plugin(kind, dirs):
    for d in dirs:
        path = os.path.join(d, kind)
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    return None


def _check_conf(conf, source):
    def fail(message):
        raise PodError("%s: %s" % (source, message))
    if not isinstance(conf, dict):
        fail("a network configuration must be a JSON object")
    for key in ("name", "type"):
        if not isinstance(conf.get(key), str) or not conf[key]:
            fail("%r must be a non-empty string" % key)
    if "/" in conf["type"] or conf["type"] in (".", ".."):
        fail("type %r is not a plugin name" % conf["type"])
    if "cniVersion" in conf and not isinstance(conf["cniVersion"], str):
        fail("'cniVersion' must be a string")
    ipam = conf.get("ipam")
    if ipam is not None:
        if not isinstance(ipam, dict) or not isinstance(ipam.get("type"), str) \
                or not ipam["type"] or "/" in ipam["type"]:
            fail("'ipam' must be an object with a plugin name as 'type'")
    return conf


def load_dir(directory):
    """The *.conf files of a net.d, in file-name order; the first of two
    that name the same network wins (rkt's loader).  PodError names a file
    that does not parse."""
    try:
        names = sorted(os.listdir(directory))
    except FileNotFoundError:
        return []
    except OSError as err:
        raise PodError("%s: %s" % (directory, err.strerror))
    out, seen = [], set()
    for name in names:
        path = os.path.join(directory, name)
        if not name.endswith(".conf") or not os.path.isfile(path):
            continue
        try:
            with open(path, "rb") as f:
                raw = f.read()
            conf = json.loads(raw)
        except OSError as err:
            raise PodError("%s: %s" % (path, err.strerror))
        except (ValueError, UnicodeDecodeError) as err:
            raise PodError("%s: invalid JSON: %s" % (path, err))
        _check_conf(conf, path)
        if conf["name"] not in seen:
            seen.add(conf["name"])
            out.append(Network(name, path, raw, conf))
    return out


def builtin_networks():
    return [Network(filename, "stage1's builtin %s" % filename,
                    (json.dumps(conf, indent=1) + "\n").encode(), conf)
            for filename, conf in BUILTINS]


def choose(wanted, local_config):
    """The networks asked for, in file-name order, each with its args and
    interface name."""
    by_name = {n.name: n for n in builtin_networks()}
    user_dir = os.path.join(local_config, NET_D)
    by_name.update((n.name, n) for n in load_dir(user_dir))
    if "all" in wanted:
        chosen = list(by_name.values())
    else:
        missing = [name for name in wanted if name not in by_name]
        if missing:
            raise PodError("--net=%s: no network named %s (none in %s, and stage1's "
                           "builtins are default and default-restricted)"
                           % (_shown(wanted), ", ".join(missing), user_dir))
        chosen = [by_name[name] for name in wanted]
    chosen.sort(key=lambda n: n.filename)
    taken = set()
    for i, n in enumerate(chosen):
        n.args = wanted.get(n.name, "")
        n.ifname = "eth%d" % i
        n.copy = n.filename if n.filename not in taken else "%s.%s" % (n.ifname, n.filename)
        taken.add(n.copy)
    return chosen


def _shown(wanted):
    return ",".join(k + (":" + v if v else "") for k, v in wanted.items())


def forwarded_ports(pod):
    """The pod's `ports` as portmap's mappings (rkt's ForwardedPorts):
    each names an app's port, or gives its podPort."""
    import ipaddress     # here, as hashlib above
    out, used = [], []
    for ep in pod.ports:
        where = ep["where"]
        port = ep["podPort"]
        if port is None:
            found = [p for spec in pod.apps for p in spec.ports if p["name"] == ep["name"]]
            if len(found) > 1:
                raise ManifestError("pod", where + ".name", "port %r is defined by more "
                                    "than one app" % ep["name"])
            if not found:
                raise ManifestError("pod", where + ".name", "no app has a port named %r"
                                    % ep["name"])
            port = found[0]
        host_ip = ep["hostIP"]
        if host_ip is not None:
            try:
                host_ip = str(ipaddress.ip_address(host_ip))
            except ValueError:
                raise ManifestError("pod", where + ".hostIP", "%r is not an IP address"
                                    % host_ip)
            if ipaddress.ip_address(host_ip).is_unspecified:
                host_ip = None
        key = (port["protocol"], ep["hostPort"])
        for other_key, other_ip, other_where in used:
            if other_key == key and (host_ip is None or other_ip is None or host_ip == other_ip):
                raise ManifestError("pod", where, "%s port %d is forwarded by %s already"
                                    % (key + (other_where,)))
        used.append((key, host_ip, where))
        mapping = {"hostPort": ep["hostPort"], "containerPort": port["port"],
                   "protocol": port["protocol"]}
        if host_ip is not None:
            mapping["hostIP"] = host_ip
        out.append(mapping)
    return out


def plan(wanted, local_config, poddir, pod):
    """A NetPlan for --net (already parsed), or PodError/ManifestError."""
    dirs = plugin_dirs(local_config, poddir.stage1_root)
    networks = choose(wanted, local_config)
    for n in networks:
        kinds = [n.conf["type"]] + ([n.conf["ipam"]["type"]] if n.conf.get("ipam") else [])
        for kind in kinds:
            path = find_plugin(kind, dirs)
            if path is None:
                raise PodError("network %s (%s): no plugin %s in %s"
                               % (n.name, n.source, kind, ", ".join(dirs)))
            if kind == n.conf["type"]:
                n.plugin = path
    p = NetPlan(poddir, networks, forwarded_ports(pod), dirs)
    if p.ports:
        p.forward = next((n for n in networks if n.masquerades), networks[-1])
        p.portmap = find_plugin("portmap", dirs)
        if p.portmap is None:
            raise PodError("pod: ports: no portmap plugin in %s" % ", ".join(dirs))
    return p


# -- running a plugin --------------------------------------------------------------------

def _memfd(name, data=b""):
    fd = os.memfd_create(name, os.MFD_CLOEXEC)
    if data:
        os.write(fd, data)
        os.lseek(fd, 0, os.SEEK_SET)
    return fd


def _read_all(fd):
    os.lseek(fd, 0, os.SEEK_SET)
    chunks = []
    while True:
        chunk = os.read(fd, 65536)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def run_plugin(plugin, command, conf_bytes, cni_env, timeout=PLUGIN_TIMEOUT):
    """(exit code, stdout, stderr) of one CNI call.  OSError when it cannot
    be started."""
    env = dict(os.environ)
    env.setdefault("PATH", DEFAULT_PATH)
    env.update(cni_env)
    env["CNI_COMMAND"] = command
    fds = [_memfd("cni-stdin", conf_bytes), _memfd("cni-stdout"), _memfd("cni-stderr")]
    try:
        pid = native.spawn([plugin], [plugin], ["%s=%s" % kv for kv in env.items()],
                           fd_map=fds, close_fds=True)
        code = _wait(pid, timeout)
        return code, _read_all(fds[1]), _read_all(fds[2])
    finally:
        for fd in fds:
            os.close(fd)


def _wait(pid, timeout):
    pidfd = os.pidfd_open(pid)
    try:
        poller = select.poll()
        poller.register(pidfd, select.POLLIN)
        if not poller.poll(int(timeout * 1000)):
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            return None
    finally:
        os.close(pidfd)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


def plugin_error(code, out, err):
    """The plugin's own message, on one line: its JSON error (CNI's
    {code, msg, details}), else the last line it wrote."""
    message = None
    try:
        doc = json.loads(out)
        if isinstance(doc, dict) and doc.get("msg"):
            message = str(doc["msg"])
            if doc.get("details"):
                message += "; %s" % doc["details"]
    except (ValueError, UnicodeDecodeError):
        pass
    if message is None:
        for text in (err, out):
            lines = [l.strip() for l in text.decode(errors="replace").splitlines() if l.strip()]
            if lines:
                message = lines[-1]
                break
    if message is None:
        message = ("did not answer within %d s" % PLUGIN_TIMEOUT if code is None else
                   "killed by signal %d" % -code if code < 0 else "exited with %d" % code)
    return " ".join(message.split())


def _version(text):
    try:
        return tuple(int(x) for x in str(text).split("."))
    except ValueError:
        return (0,)


def _call(poddir_path, step, command, netns, cni_path, container):
    """Run one step's plugin: (result dict or None, error text or None)."""
    with open(os.path.join(poddir_path, step["conf"]), "rb") as f:
        raw = f.read()
    if command == "DEL" and step.get("result") is not None:
        conf = json.loads(raw)
        if _version(conf.get("cniVersion", "0.1.0")) >= (0, 4, 0):
            conf["prevResult"] = step["result"]     # what libcni gives DEL since 0.4.0
            raw = json.dumps(conf).encode()
    cni_env = {"CNI_CONTAINERID": container, "CNI_NETNS": netns,
               "CNI_IFNAME": step["ifName"], "CNI_ARGS": step["args"], "CNI_PATH": cni_path}
    try:
        code, out, err = run_plugin(step["plugin"], command, raw, cni_env)
    except OSError as e:
        return None, str(e)
    if code != 0:
        return None, plugin_error(code, out, err)
    if command != "ADD":
        return None, None
    try:
        result = json.loads(out)
        if not isinstance(result, dict):
            raise ValueError("not an object")
    except (ValueError, UnicodeDecodeError) as e:
        return None, "its result is not JSON: %s" % e
    return result, None


# -- results ------------------------------------------------------------------------------

def parse_result(result):
    """(ip, mask, gateway, dns) of a CNI result, any version: 0.1/0.2 (ip4)
    or 0.3 and later (ips, preferring an address on the pod's side)."""
    import ipaddress
    dns = result.get("dns") if isinstance(result.get("dns"), dict) else {}
    cidr = gateway = None
    if isinstance(result.get("ip4"), dict):
        cidr, gateway = result["ip4"].get("ip"), result["ip4"].get("gateway")
    else:
        interfaces = result.get("interfaces") or []
        best = None
        for entry in result.get("ips") or []:
            addr = entry.get("address") if isinstance(entry, dict) else None
            if not isinstance(addr, str) or ":" in addr:
                continue
            idx = entry.get("interface")
            inside = (isinstance(idx, int) and 0 <= idx < len(interfaces) and
                      isinstance(interfaces[idx], dict) and bool(interfaces[idx].get("sandbox")))
            rank = 0 if inside else 1
            if best is None or rank < best[0]:
                best = (rank, addr, entry.get("gateway"))
        if best is not None:
            cidr, gateway = best[1], best[2]
    if not cidr:
        return None, None, gateway, dns
    try:
        iface = ipaddress.ip_interface(cidr)
    except ValueError:
        return None, None, gateway, dns
    return str(iface.ip), str(iface.netmask), gateway, dns


def net_info(network, step, result):
    """One entry of POD/net-info.json, rkt's NetInfo (netinfo.go)."""
    ip, mask, _, _ = parse_result(result or {})
    return {"netName": network.name, "netConf": step["conf"], "pluginPath": step["plugin"],
            "ifName": network.ifname, "ip": ip or "", "args": network.args, "mask": mask or ""}


# -- the host side: setup --------------------------------------------------------------

class Attached:
    """What setup leaves for the rest of the pod: the namespace's path and
    the first DNS a network gave, as (network name, DNS object)."""

    def __init__(self, netns, dns):
        self.netns, self.dns = netns, dns


def _paths(poddir_path):
    net = os.path.join(poddir_path, "net")
    return {"net": net, "record": os.path.join(net, "teardown.json"),
            "netns": os.path.join(poddir_path, "netns"),
            "info": os.path.join(poddir_path, "net-info.json")}


def _save(path, record):
    write_atomic(path, (json.dumps(record, indent=1) + "\n").encode())


def create_netns(path):
    """A new network namespace with lo up, bound onto path (as `ip netns
    add` does), made by this process and left at once: it must stay single
    threaded, as the host side is."""
    os.makedirs(os.path.dirname(path), 0o755, exist_ok=True)
    os.close(os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o444))
    host = os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        native.unshare(native.CLONE_NEWNET)
        try:
            native.loopback_up()
            native.mount("/proc/self/ns/net", path, None, native.MS_BIND)
        finally:
            native.setns(host, native.CLONE_NEWNET, "the host's network namespace")
    except OSError:
        _destroy_netns(path)
        raise
    finally:
        os.close(host)


def _destroy_netns(path):
    """Unmount and remove; [(what, why)] of what stays."""
    try:
        native.umount(path, native.MNT_DETACH)
    except OSError as err:
        if err.errno not in (22, 2):        # EINVAL: not mounted; ENOENT
            return [(path, err.strerror)]
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as err:
        return [(path, err.strerror)]
    return []


def setup(p, log):
    """Attach the pod to its networks: an Attached, or PodError after
    everything done so far has been torn down (nothing left)."""
    paths = _paths(p.poddir_path)
    # What an earlier run of this pod left without a gc: its record would
    # be overwritten, and its namespace's name is this one's.
    left = teardown(p.poddir_path, p.dirs, log)
    if left:
        raise PodError("an earlier run of this pod left %s: %s (run stage1 gc)" % left[0])
    os.makedirs(paths["net"], 0o755, exist_ok=True)
    record = {"containerId": p.container_id, "netns": p.netns,
              "cniPath": ":".join(p.dirs), "steps": []}
    try:
        _save(paths["record"], record)
        with open(paths["netns"], "w") as f:
            f.write(p.netns)        # rkt's form: the path, no newline
        create_netns(p.netns)
        return _attach(p, record, paths, log)
    except (OSError, PodError) as err:
        message = err.args[0] if isinstance(err, PodError) else _os_text(err)
        left = teardown(p.poddir_path, p.dirs, log)
        if left:
            message += "; left for stage1 gc: %s" % ", ".join(what for what, _ in left)
        raise PodError(message)


def _os_text(err):
    if err.filename and err.strerror:
        return "%s: %s" % (err.filename, err.strerror)
    return err.strerror or str(err)


def _attach(p, record, paths, log):
    infos, dns = [], None
    for n in p.networks:
        step, result = _add(p, record, paths, n, n.plugin, n.raw, n.copy, log)
        infos.append(net_info(n, step, result))
        _, _, _, net_dns = parse_result(result)
        if dns is None and _has_dns(net_dns):
            dns = (n.name, net_dns)
        if n is p.forward:
            conf = {"cniVersion": n.conf.get("cniVersion", "0.1.0"), "name": n.name,
                    "type": "portmap", "capabilities": {"portMappings": True},
                    "runtimeConfig": {"portMappings": p.ports}, "prevResult": result}
            raw = (json.dumps(conf, indent=1) + "\n").encode()
            _add(p, record, paths, n, p.portmap, raw, n.copy + ".portmap", log)
    data = json.dumps(infos, separators=(",", ":")) + "\n"     # as Go encodes it
    write_atomic(paths["info"], data.encode())
    return Attached(p.netns, dns)


def _has_dns(dns):
    return any(dns.get(k) for k in ("nameservers", "domain", "search", "options"))


def _add(p, record, paths, n, plugin, raw, copy_name, log):
    copy = os.path.join("net", copy_name)           # relative to the pod, as rkt's
    write_atomic(os.path.join(p.poddir_path, copy), raw)
    step = {"network": n.name, "plugin": plugin, "conf": copy, "ifName": n.ifname,
            "args": n.args, "added": False, "result": None}
    record["steps"].append(step)
    _save(paths["record"], record)
    kind = os.path.basename(plugin)
    log.debug("network %s: %s ADD (%s, %s)" % (n.name, kind, n.ifname, copy))
    result, error = _call(p.poddir_path, step, "ADD", p.netns, record["cniPath"],
                          p.container_id)
    if error is not None:
        raise PodError("network %s: %s: %s" % (n.name, kind, error))
    step["added"], step["result"] = True, result
    _save(paths["record"], record)
    return step, result


# -- teardown: gc, and a setup that failed ------------------------------------------------

def _read(path):
    try:
        with open(path) as f:
            return f.read()
    except FileNotFoundError:
        return None


def _nsfs(path):
    try:
        return os.stat(path).st_dev != os.stat(os.path.dirname(path)).st_dev
    except OSError:
        return False


def teardown(poddir_path, dirs, log):
    """DEL every step in reverse, then the namespace and the records;
    [(what, why)] of what is left (then the records stay, for another gc).
    A step whose ADD never succeeded may fail its DEL too: the plugin's
    error was reported when its ADD failed."""
    paths = _paths(poddir_path)
    text = _read(paths["record"])
    try:
        record = json.loads(text) if text else None
    except ValueError as err:
        return [(paths["record"], "not JSON: %s" % err)]
    netns = _read(paths["netns"]) or (record or {}).get("netns")
    left = []
    if record is not None:
        ns_arg = netns if netns and _nsfs(netns) else ""
        cni_path = ":".join(dict.fromkeys(record["cniPath"].split(":") + list(dirs)))
        kept = []
        for step in reversed(record["steps"]):
            error = _del(poddir_path, step, ns_arg, cni_path, record["containerId"], dirs, log)
            if error is not None and step["added"]:
                left.append(("network %s (%s DEL)" % (step["network"],
                                                      os.path.basename(step["plugin"])), error))
                kept.insert(0, step)
            else:
                _remove(os.path.join(poddir_path, step["conf"]))
        if kept:
            record["steps"] = kept
            _save(paths["record"], record)
            return left
    if netns:
        left.extend(_destroy_netns(netns))
    if left:
        return left
    for path in (paths["record"], paths["netns"], paths["info"]):
        _remove(path)
    try:
        os.rmdir(paths["net"])
    except OSError:
        pass
    return []


def _remove(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _del(poddir_path, step, netns, cni_path, container, dirs, log):
    """One DEL; None when done, else why not."""
    if not os.path.isfile(step["plugin"]):
        # rkt#2319: the plugin lived in a stage1 image that is gone.
        found = find_plugin(os.path.basename(step["plugin"]), dirs)
        if found is None:
            return "plugin %s is gone and none is in %s" % (step["plugin"], ", ".join(dirs))
        step["plugin"] = found
    if not os.path.exists(os.path.join(poddir_path, step["conf"])):
        return "its configuration %s is gone" % os.path.join(poddir_path, step["conf"])
    log.debug("network %s: %s DEL (%s)" % (step["network"], os.path.basename(step["plugin"]),
                                          step["ifName"]))
    _, error = _call(poddir_path, step, "DEL", netns, cni_path, container)
    if error is not None:
        log.debug("network %s: DEL failed: %s" % (step["network"], error))
    return error
