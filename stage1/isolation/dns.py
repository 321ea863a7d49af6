"""Each app's /etc/resolv.conf and /etc/hosts, as rkt's `--dns-conf-mode`
says (rkt's stage1/init/init.go and prepare-app.c).

rkt's stage0 passes `--dns-conf-mode=resolv=MODE,hosts=MODE` (each key
optional, both `default` when the flag is absent), and with `stage0` it has
written the file into the stage1 root first:

  resolv=stage0   <stage1 root>/etc/rkt-resolv.conf (`rkt run --dns ...`)
  resolv=host     the host's /etc/resolv.conf, read-only
  resolv=none     nothing: the image's own file, if any
  resolv=default  the DNS of the first CNI network that gives one (written
                  to <stage1 root>/rkt/dns/resolv.conf), unless stage0
                  wrote rkt-resolv.conf anyway, which then wins
  hosts=stage0    <stage1 root>/etc/rkt-hosts (`--hosts-entry`), plus the
                  pod's hostname on the 127.0.0.1 line
  hosts=host      the host's /etc/hosts, read-only
  hosts=default   a fallback, localhost and the pod's hostname, in apps
                  whose image has no /etc/hosts (the stage1 image's
                  etc/hosts-fallback, when it ships one, is its base)

rkt has no hosts=none, and neither has this.  A file stage0 should have
written and did not is skipped, as rkt's prepare-app does.  What stage1
writes itself goes to <stage1 root>/rkt/dns/, never into stage0's files
(rkt appended the hostname to them in place, once per run).  The chosen
files are bound onto each app's /etc/resolv.conf and /etc/hosts by
rootfs.prepare, after the volumes: the precedence of rkt's dns.md (the
flags, then CNI, then a volume, then the image).

The mode is parsed and checked at plan time (`plan`); the files are
written by the host side once the networks are up (`write`), because the
CNI DNS is known only then.
"""
import os

from stage1.engine.status import write_atomic
from stage1.pod.errors import PodError

RESOLV_MODES = ("host", "stage0", "none", "default")
HOSTS_MODES = ("host", "stage0", "default")
RESOLV, HOSTS = "/etc/resolv.conf", "/etc/hosts"
FALLBACK = ("127.0.0.1\tlocalhost localhost.localdomain\n"
            "::1\tlocalhost ip6-localhost ip6-loopback\n")


class DnsFile:
    """One file bound into every app."""
    __slots__ = ("source", "target", "only_if_missing", "read_only")

    def __init__(self, source, target, only_if_missing=False, read_only=False):
        self.source, self.target = source, target
        self.only_if_missing, self.read_only = only_if_missing, read_only


class DnsPlan:
    def __init__(self, resolv, hosts, hostname, stage1_root):
        self.resolv, self.hosts, self.hostname = resolv, hosts, hostname
        self.stage1_root = stage1_root
        self.files = []               # [DnsFile], once written

    def stage1_file(self, name):
        return os.path.join(self.stage1_root, "etc", name)

    @property
    def out_dir(self):
        return os.path.join(self.stage1_root, "rkt", "dns")


def parse_mode(value):
    """--dns-conf-mode=resolv=X,hosts=Y -> (resolv, hosts); PodError."""
    modes = {"resolv": "default", "hosts": "default"}
    if value in (None, True, ""):
        return modes["resolv"], modes["hosts"]
    allowed = {"resolv": RESOLV_MODES, "hosts": HOSTS_MODES}
    for pair in value.split(","):
        key, eq, mode = pair.partition("=")
        if not eq or key not in allowed:
            raise PodError("--dns-conf-mode=%s: %r is not resolv=MODE or hosts=MODE"
                           % (value, pair))
        if mode not in allowed[key]:
            raise PodError("--dns-conf-mode=%s: %s must be %s, not %r"
                           % (value, key, ", ".join(allowed[key]), mode))
        modes[key] = mode
    return modes["resolv"], modes["hosts"]


def plan(value, hostname, stage1_root):
    resolv, hosts = parse_mode(value)
    return DnsPlan(resolv, hosts, hostname, stage1_root)


def make_resolv_conf(dns, comment):
    """resolv.conf for a CNI DNS object (nameservers, domain, search, options)."""
    lines = ["# %s" % comment, ""]
    if dns.get("search"):
        lines.append("search %s" % " ".join(dns["search"]))
    lines.extend("nameserver %s" % ns for ns in dns.get("nameservers") or ())
    if dns.get("options"):
        lines.append("options %s" % " ".join(dns["options"]))
    if dns.get("domain"):
        lines.append("domain %s" % dns["domain"])
    return "\n".join(lines) + "\n"


def add_host(text, ip, hostname):
    """rkt's AddHostsEntry: the name joins the first line for ip, or a new line."""
    out, found = [], False
    for line in text.splitlines():
        words = line.split()
        if not found and words and words[0] == ip:
            found = True
            line = "%s %s" % (line, hostname)
        out.append(line)
    if not found:
        out.append("%s\t%s" % (ip, hostname))
    return "\n".join(out) + "\n"


def write(p, cni_dns=None, log=None):
    """Write what stage1 generates and set p.files.  cni_dns: (network
    name, DNS object) of the first network that gave one.  OSError."""
    files = []
    resolv = _resolv(p, cni_dns, log)
    if resolv is not None:
        files.append(resolv)
    hosts = _hosts(p)
    if hosts is not None:
        files.append(hosts)
    p.files = files
    return files


def _generated(p, name, text):
    os.makedirs(p.out_dir, 0o755, exist_ok=True)
    path = os.path.join(p.out_dir, name)
    write_atomic(path, text.encode())
    os.chmod(path, 0o644)
    return path


def _resolv(p, cni_dns, log):
    if p.resolv == "none":
        return None
    if p.resolv == "host":
        return DnsFile("/etc/resolv.conf", RESOLV, read_only=True) \
            if os.path.exists("/etc/resolv.conf") else None
    stage0 = p.stage1_file("rkt-resolv.conf")
    if os.path.exists(stage0):
        if p.resolv == "default" and cni_dns and log is not None:
            log.debug("network %s gave DNS, but stage0 wrote %s: it wins" % (cni_dns[0], stage0))
        return DnsFile(stage0, RESOLV)
    if p.resolv == "default" and cni_dns:
        name, dns = cni_dns
        text = make_resolv_conf(dns, "Generated by stage1 from network %s" % name)
        return DnsFile(_generated(p, "resolv.conf", text), RESOLV)
    return None


def _hosts(p):
    if p.hosts == "host":
        return DnsFile("/etc/hosts", HOSTS, read_only=True) \
            if os.path.exists("/etc/hosts") else None
    if p.hosts == "stage0":
        try:
            with open(p.stage1_file("rkt-hosts")) as f:
                base = f.read()
        except FileNotFoundError:
            return None
        return DnsFile(_generated(p, "hosts", add_host(base, "127.0.0.1", p.hostname)), HOSTS)
    try:
        with open(p.stage1_file("hosts-fallback")) as f:
            base = f.read()
    except FileNotFoundError:
        base = FALLBACK
    text = add_host(base, "127.0.0.1", p.hostname)
    return DnsFile(_generated(p, "hosts", text), HOSTS, only_if_missing=True)
