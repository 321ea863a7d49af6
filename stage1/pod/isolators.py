"""appc isolators -> the limits stage1 applies, validated before anything starts.

Applied (ace.md, and rkt's `os/linux/oom-score-adj`):
  os/linux/capabilities-retain-set, os/linux/capabilities-remove-set   app
  os/linux/seccomp-retain-set, os/linux/seccomp-remove-set             app
  os/linux/no-new-privileges, os/linux/oom-score-adj                   app
  resource/memory, resource/cpu                                        app and pod
Everything else (SELinux, block and network bandwidth, ...) is returned as
unapplied, for the caller to report once: appc lets an executor ignore an
isolator only if it tells the user.

A seccomp set is checked here for its shape (a non-empty list of strings,
an errno name); its syscall names and wildcards are the isolation layer's
to resolve (isolation/seccomp.py), each entry keeping its JSON path.

Quantities follow Kubernetes (and appc): a decimal number with an optional
binary (Ki..Ei), decimal (n, u, m, k/K, M..E) or exponent (e3) suffix.
They are computed as exact fractions and rounded up, so "1.5Gi" is
1610612736 bytes and "0.1" CPU is 100 millicores; a value that does not
parse, or is not positive, is an error naming its JSON path.
"""
import errno
import re

from stage1.pod.errors import ManifestError

CAPS_RETAIN = "os/linux/capabilities-retain-set"
CAPS_REMOVE = "os/linux/capabilities-remove-set"
NO_NEW_PRIVS = "os/linux/no-new-privileges"
OOM_SCORE_ADJ = "os/linux/oom-score-adj"
SECCOMP_RETAIN = "os/linux/seccomp-retain-set"
SECCOMP_REMOVE = "os/linux/seccomp-remove-set"
MEMORY = "resource/memory"
CPU = "resource/cpu"

# appc's default set (ace.md), the bounding set of an app without a
# capability isolator; rkt gives apps the same 14.
DEFAULT_CAPS = ("CAP_AUDIT_WRITE", "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID",
                "CAP_FOWNER", "CAP_KILL", "CAP_MKNOD", "CAP_NET_RAW", "CAP_NET_BIND_SERVICE",
                "CAP_SETUID", "CAP_SETGID", "CAP_SETPCAP", "CAP_SETFCAP", "CAP_SYS_CHROOT")

_QUANTITY = re.compile(r"^([+-]?(?:\d+\.?\d*|\.\d+))"
                       r"(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|K|M|G|T|P|E|[eE][+-]?\d+)?$", re.ASCII)
# suffix -> (multiplier, divisor)
_SUFFIX = {"Ki": (2 ** 10, 1), "Mi": (2 ** 20, 1), "Gi": (2 ** 30, 1), "Ti": (2 ** 40, 1),
           "Pi": (2 ** 50, 1), "Ei": (2 ** 60, 1), "n": (1, 10 ** 9), "u": (1, 10 ** 6),
           "m": (1, 1000), "k": (10 ** 3, 1), "K": (10 ** 3, 1), "M": (10 ** 6, 1),
           "G": (10 ** 9, 1), "T": (10 ** 12, 1), "P": (10 ** 15, 1), "E": (10 ** 18, 1)}


MAX_QUANTITY = 2 ** 63     # bytes, or millicores: what a cgroup file's int64 holds


class SeccompSet:
    """One app's seccomp isolator, as written."""
    __slots__ = ("mode", "entries", "errno", "source", "where")

    def __init__(self, mode, entries, errno_number, source, where):
        self.mode = mode            # "retain" or "remove"
        self.entries = entries      # [(syscall name or @wildcard, JSON path)]
        self.errno = errno_number   # None: blocked syscalls kill with SIGSYS
        self.source, self.where = source, where


class Limits:
    """What one app (or the pod) asked for; None where it asked nothing."""
    __slots__ = ("caps", "no_new_privs", "oom_score_adj", "memory", "cpu", "seccomp")

    def __init__(self):
        self.caps = None            # bounding set as a bit mask
        self.seccomp = None         # SeccompSet; None: the default filter
        self.no_new_privs = False
        self.oom_score_adj = None   # -1000..1000
        self.memory = None          # (limit bytes or None, request bytes or None)
        self.cpu = None             # (limit millicores or None, request millicores or None)

    @property
    def needs_cgroups(self):
        return self.memory is not None or self.cpu is not None


def capability_numbers():
    """{"CAP_CHOWN": 0, ...} from python-prctl, plus what is newer than it."""
    import _prctl
    table = {name: getattr(_prctl, name) for name in dir(_prctl)
             if name.startswith("CAP_") and name not in
             ("CAP_EFFECTIVE", "CAP_PERMITTED", "CAP_INHERITABLE", "CAP_LAST_CAP")}
    table.setdefault("CAP_CHECKPOINT_RESTORE", 40)
    return table


def mask(names):
    table = capability_numbers()
    bits = 0
    for name in names:
        bits |= 1 << table[name]
    return bits


def parse_quantity(text):
    """A Kubernetes quantity as an exact Fraction; ValueError if it does not parse."""
    from fractions import Fraction      # 4 ms: only for pods that have a quantity
    if not isinstance(text, str):
        raise ValueError("must be a string such as \"512Mi\" or \"500m\"")
    found = _QUANTITY.fullmatch(text.strip()) if len(text) <= 64 else None
    if not found:
        raise ValueError("%r is not a quantity (such as \"512Mi\", \"1G\" or \"500m\")" % text)
    number, suffix = Fraction(found.group(1)), found.group(2) or ""
    if suffix in _SUFFIX:
        value = number * _SUFFIX[suffix][0] / _SUFFIX[suffix][1]
    elif suffix:        # an exponent: e3, E-2; 10**999999999 would take for ever
        exponent = int(suffix[1:])
        if abs(exponent) > 30:
            raise ValueError("%r: an exponent is at most 30" % text)
        value = number * Fraction(10) ** exponent
    else:
        value = number
    if value > MAX_QUANTITY:
        raise ValueError("%r is more than the kernel takes (2**63)" % text)
    return value


def _ceil(value):
    return -((-value.numerator) // value.denominator)


class _Parser:
    """Reads one scope's isolators into Limits; errors name the JSON path."""

    def __init__(self, source, scope):
        self.source, self.scope = source, scope
        self.limits = Limits()
        self.unapplied = []
        self.seen = {}

    def fail(self, where, message):
        raise ManifestError(self.source, where, message)

    def add(self, name, value, where):
        handler = _HANDLERS.get(name) if self.scope == "app" or name in (MEMORY, CPU) else None
        if handler is None:
            self.unapplied.append((name, where))
            return
        if name in self.seen:
            self.fail(where, "%s is given twice (also %s)" % (name, self.seen[name]))
        other = {CAPS_RETAIN: CAPS_REMOVE, CAPS_REMOVE: CAPS_RETAIN,
                 SECCOMP_RETAIN: SECCOMP_REMOVE, SECCOMP_REMOVE: SECCOMP_RETAIN}.get(name)
        if other in self.seen:
            self.fail(where, "%s cannot be used with %s (%s)" % (name, other, self.seen[other]))
        self.seen[name] = where
        handler(self, value, where)

    def caps(self, value, where):
        if not isinstance(value, dict) or not isinstance(value.get("set"), list):
            self.fail(where + ".value", "must be an object with a \"set\" list of capability names")
        table = capability_numbers()
        names = []
        for i, item in enumerate(value["set"]):
            name = item.upper() if isinstance(item, str) else item
            if isinstance(name, str) and not name.startswith("CAP_"):
                name = "CAP_" + name
            if name not in table:
                self.fail("%s.value.set[%d]" % (where, i), "unknown capability %s"
                          % (_quote(item)))
            names.append(name)
        return names

    def retain(self, value, where):
        self.limits.caps = mask(self.caps(value, where))

    def remove(self, value, where):
        self.limits.caps = mask(DEFAULT_CAPS) & ~mask(self.caps(value, where))

    def seccomp(self, value, where, mode):
        if not isinstance(value, dict) or not isinstance(value.get("set"), list) \
                or not value["set"]:
            self.fail(where + ".value", "must be an object with a non-empty \"set\" list of "
                      "syscall names and wildcards")
        entries = []
        for i, item in enumerate(value["set"]):
            at = "%s.value.set[%d]" % (where, i)
            if not isinstance(item, str) or not item:
                self.fail(at, "must be a syscall name or a wildcard such as "
                          "\"@rkt/default-whitelist\", not %s" % _quote(item))
            entries.append((item, at))
        name = value.get("errno", "")
        if name is None:
            name = ""
        valid = isinstance(name, str) and (name == "" or re.match(r"^E[A-Z0-9]+$", name))
        number = getattr(errno, name, None) if valid and name else None
        if not valid or (name and not isinstance(number, int)):
            self.fail(where + ".value.errno", "must be the name of an errno such as "
                      "\"EPERM\", not %s" % _quote(name))
        self.limits.seccomp = SeccompSet(mode, entries, number if name else None,
                                         self.source, where)

    def seccomp_retain(self, value, where):
        self.seccomp(value, where, "retain")

    def seccomp_remove(self, value, where):
        self.seccomp(value, where, "remove")

    def no_new_privs(self, value, where):
        if not isinstance(value, bool):
            self.fail(where + ".value", "must be true or false")
        self.limits.no_new_privs = value

    def oom(self, value, where):
        if isinstance(value, bool) or not isinstance(value, int) or not -1000 <= value <= 1000:
            self.fail(where + ".value", "must be a whole number from -1000 to 1000, not %s"
                      % _quote(value))
        self.limits.oom_score_adj = value

    def resource(self, value, where, unit):
        if not isinstance(value, dict) or not ("limit" in value or "request" in value):
            self.fail(where + ".value", "must be an object with a \"limit\" or a \"request\"")
        out = []
        for key in ("limit", "request"):
            if key not in value:
                out.append(None)
                continue
            try:
                amount = parse_quantity(value[key]) * unit
            except ValueError as err:
                self.fail("%s.value.%s" % (where, key), str(err))
            if amount <= 0:
                self.fail("%s.value.%s" % (where, key), "must be more than 0, not %r" % value[key])
            out.append(_ceil(amount))
        limit, request = out
        return limit, limit if request is None else request

    def memory(self, value, where):
        self.limits.memory = self.resource(value, where, 1)

    def cpu(self, value, where):
        self.limits.cpu = self.resource(value, where, 1000)


def _quote(value):
    return '"%s"' % value if isinstance(value, str) else repr(value)


_HANDLERS = {CAPS_RETAIN: _Parser.retain, CAPS_REMOVE: _Parser.remove,
             SECCOMP_RETAIN: _Parser.seccomp_retain, SECCOMP_REMOVE: _Parser.seccomp_remove,
             NO_NEW_PRIVS: _Parser.no_new_privs, OOM_SCORE_ADJ: _Parser.oom,
             MEMORY: _Parser.memory, CPU: _Parser.cpu}


def parse(isolators, source="pod", scope="app"):
    """[(name, value, where)] of one app (scope "app") or of the pod ("pod")
    -> (Limits, [(name, where) of what stage1 does not apply])."""
    parser = _Parser(source, scope)
    for name, value, where in isolators:
        parser.add(name, value, where)
    return parser.limits, parser.unapplied
