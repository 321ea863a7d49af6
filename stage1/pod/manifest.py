"""appc pod manifest -> validated, typed specs: one trip.

Everything a pod needs is checked here, before anything starts: every appc
field, every isolator and every `stage1/` annotation becomes a typed field
of an AppSpec or the PodSpec, and the plan only decides.  A bad manifest
never leaves some apps started.  Every error names the place as a JSON
path, e.g. `pod: apps[1].app.exec: must be a non-empty list of strings`.
The manifest format is appc's (SPEC.md, pods.md, aci.md in Debian's
appc-spec); stage1's own settings are annotations under `stage1/`.
"""
import json
import re
import socket

from stage1.engine import native
from stage1.engine.supervisor import EXIT_POLICIES, ON_ANY_FAILURE, RESTART_POLICIES
from stage1.pod import isolators, order
from stage1.pod.errors import ManifestError

AC_NAME = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")
AC_IDENTIFIER = re.compile(r"^[a-z0-9]+([-._~/][a-z0-9]+)*$")
ENV_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")
EVENT_HANDLERS = ("pre-start", "post-stop")
SEMVER = re.compile(r"(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)"
                    r"(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?")

POD_ANNOTATIONS = ("stage1/exit-policy", "stage1/restart-backoff",
                   "stage1/restart-backoff-max", "stage1/stop-timeout")
APP_ANNOTATIONS = ("stage1/restart-policy", "stage1/stop-signal", "stage1/stop-timeout",
                   "stage1/notify", "stage1/after", "stage1/init", "stage1/log",
                   "stage1/log-max-bytes", "stage1/log-keep", "stage1/log-copy",
                   "stage1/after-started", "stage1/after-completed",
                   "stage1/environment", "stage1/signal-group",
                   "stage1/health-exec", "stage1/health-tcp", "stage1/health-http",
                   "stage1/health-interval", "stage1/health-timeout", "stage1/health-retries",
                   "stage1/health-start-period", "stage1/health-start-interval")
HEALTH_KINDS = ("exec", "tcp", "http")
# interval, timeout, retries, start period, start interval: Compose's knobs
HEALTH_DEFAULTS = {"interval": "10", "timeout": "5", "retries": "3", "start-period": "0",
                   "start-interval": "1"}
# The three kinds of `after`: an app starts once each app it names is ready
# (`stage1/after`), has started (`-started`), or has ended with 0 (`-completed`).
AFTER_KINDS = (("after", "stage1/after"), ("after_started", "stage1/after-started"),
               ("after_completed", "stage1/after-completed"))
LOG_MODES = ("inherit", "prefix", "file", "null")
# rkt's attach annotations (coreos.com/rkt/stage2/stdout) in stage1's terms.
RKT_LOG_MODES = {"null": "null", "log": "file", "stream": "prefix", "tty": "inherit",
                 "interactive": "inherit"}
SUPPORTS_NOTIFY = "appc.io/executor/supports-systemd-notify"
MUTABLE = "coreos.com/rkt/stage1/mutable"


# What app_annotations sets.
ANNOTATION_FIELDS = ("restart", "stop_signal", "stop_timeout", "notify", "after", "is_init",
                     "log_mode", "log_limits", "after_started", "after_completed", "health",
                     "log_copy", "inherit_environment", "signal_group")


class AppSpec:
    """One app of the pod, as the manifest (or its image manifest) says,
    with its isolators and stage1/ annotations read into typed fields."""
    __slots__ = ("name", "image", "exec", "user", "group", "supplementary_gids",
                 "environment", "working_directory", "event_handlers", "isolators",
                 "mount_points", "mounts", "read_only_rootfs", "annotations", "index",
                 "app_source", "limits", "unapplied", "ports",
                 # from stage1/ annotations
                 ) + ANNOTATION_FIELDS


class HealthSpec:
    """An app's health check (stage1/health-*): what to probe and how often.
    `exec` is an argv run like a hook, `tcp` and `http` are (host, port)
    with `http`'s path and Host header; `text` says what it is in messages."""
    __slots__ = ("kind", "argv", "address", "path", "host_header", "text", "interval",
                 "timeout", "retries", "start_period", "start_interval")


class PodSpec:
    __slots__ = ("ac_version", "apps", "volumes", "isolators", "annotations", "limits",
                 "unapplied", "exit_policy", "backoff", "stop_timeout", "mutable", "ports")


class _Reader:
    """Typed access to a JSON document, raising ManifestError with the path."""

    def __init__(self, source):
        self.source = source

    def fail(self, path, message):
        raise ManifestError(self.source, path, message)

    def obj(self, value, path):
        if not isinstance(value, dict):
            self.fail(path, "must be an object")
        return value

    def required(self, obj, key, path):
        if key not in obj:
            self.fail(_join(path, key), "is required")
        return obj[key]

    def string(self, value, path, pattern=None, what=None):
        if not isinstance(value, str) or not value:
            self.fail(path, "must be a non-empty string")
        if pattern is not None and not pattern.fullmatch(value):
            self.fail(path, "%r is not %s" % (value, what))
        return value

    def boolean(self, obj, key, path, default=False):
        value = obj.get(key, default)
        if not isinstance(value, bool):
            self.fail(_join(path, key), "must be true or false")
        return value

    def array(self, obj, key, path):
        value = obj.get(key)
        if value is None:
            return ()
        if type(value) is not list:
            self.fail(_join(path, key), "must be a list")
        return value

    def argv(self, value, path):
        if (not isinstance(value, list) or not value or
                not all(isinstance(a, str) for a in value) or not value[0]):
            self.fail(path, "must be a non-empty list of strings")
        return list(value)

    def uint(self, value, path, limit=2 ** 32 - 1):
        """A JSON number that is a whole number from 0 to limit - 1 (a uid or
        gid stops below 2**32 - 1, which the kernel takes as "none")."""
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < limit:
            self.fail(path, "must be a whole number from 0 to %d" % (limit - 1))
        return value

    def name_value_list(self, obj, key, path, name_pattern, what):
        """annotations / environment: a list of {name, value}, names unique."""
        out = {}
        if not obj.get(key):
            self.array(obj, key, path)       # none, or not even a list
            return out
        for i, item in enumerate(self.array(obj, key, path)):
            where = "%s[%d]" % (_join(path, key), i)
            self.obj(item, where)
            name = self.string(self.required(item, "name", where), where + ".name",
                               name_pattern, what)
            value = item.get("value", "")
            if not isinstance(value, str):
                self.fail(where + ".value", "must be a string")
            if name in out:
                self.fail(where + ".name", "duplicate name %r" % name)
            out[name] = value
        return out


def _join(path, key):
    return "%s.%s" % (path, key) if path else key


def load_json(data, source):
    """The JSON document, every string in it checked (check_strings)."""
    try:
        doc = json.loads(data)
    except RecursionError:
        raise ManifestError(source, None, "invalid JSON: nested too deeply")
    except (ValueError, UnicodeDecodeError) as err:
        raise ManifestError(source, None, "invalid JSON: %s" % err)
    if not _plain_text(data):
        check_strings(doc, source)
    return doc


def _plain_text(data):
    """True when no string of the document can hold a NUL or a lone
    surrogate: the text has no \\u escape (JSON refuses a raw control
    character in a string) and is strict UTF-8.  A pod of 1600 apps is
    then checked in a scan of its bytes, not in a walk of every string;
    any doubt and check_strings names the place."""
    try:
        if isinstance(data, str):
            data.encode("utf-8")
            return "\\u" not in data
        data.decode("utf-8")
    except (UnicodeError, AttributeError):
        return False
    return b"\\u" not in data


def check_strings(doc, source, path=""):
    """Every string of the document, keys too, is text the kernel can take:
    no NUL byte (argv, environment and paths end at one) and no lone
    surrogate (JSON's \\ud800 has no UTF-8 form).  Iterative: nesting
    depth costs no recursion."""
    todo = [(doc, path)]
    while todo:
        value, where = todo.pop()
        if isinstance(value, dict):
            for key, item in value.items():
                _check_text(key, source, where or "(keys)")
                todo.append((item, _join(where, key)))
        elif isinstance(value, list):
            todo.extend((item, "%s[%d]" % (where, i)) for i, item in enumerate(value))
        elif isinstance(value, str):
            _check_text(value, source, where)


def _check_text(text, source, where):
    if "\0" in text:
        raise ManifestError(source, where, "holds a NUL byte")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ManifestError(source, where, "is not valid UTF-8 text (a lone surrogate)")


def digits(text):
    """True for a plain ASCII number: str.isdigit() also takes "²" and "١"."""
    return text.isascii() and text.isdigit()


def parse_pod(data, source="pod", images=None):
    """Validate a PodManifest (bytes or parsed JSON) into a PodSpec.

    `images` (a pod.directory.PodDir) gives each app's image manifest:
    `image_app(name)` -> (app object, annotations, source) for apps the pod
    manifest gives no `app` section, `image_annotations(name)` -> {},
    `has_app_dirs()` whether any app has a directory at all."""
    r = _Reader(source)
    if isinstance(data, (bytes, str)):
        doc = load_json(data, source)
    else:
        check_strings(data, source)
        doc = data
    doc = r.obj(doc, "")
    if r.required(doc, "acKind", "") != "PodManifest":
        r.fail("acKind", "must be \"PodManifest\", not %r" % doc["acKind"])
    pod = PodSpec()
    pod.ac_version = r.string(r.required(doc, "acVersion", ""), "acVersion")
    if not SEMVER.fullmatch(pod.ac_version):
        # rkt writes its own version here (1.30.0+git171c416f), and its
        # stage1 does not check it: appc asks only for a semver.
        r.fail("acVersion", "%r is not a semantic version (such as 0.8.11)" % pod.ac_version)
    if not isinstance(r.required(doc, "apps", ""), list):
        r.fail("apps", "must be a list")
    pod.annotations = r.name_value_list(doc, "annotations", "", AC_IDENTIFIER, "an AC identifier")
    pod.isolators = parse_isolators(r, doc, "")
    pod.limits, pod.unapplied = isolators.parse(pod.isolators, source, "pod")
    pod.volumes = parse_volumes(r, doc)
    pod.ports = parse_exposed_ports(r, doc)
    pod_annotations(r, pod)
    pod.apps = []
    names = set()
    # No opt/stage2 at all (a pod directory of stage1's own, not rkt's): no
    # app has an image manifest to look in, and a thousand need not try.
    look_up = images is not None and images.has_app_dirs()
    for i, item in enumerate(doc["apps"]):
        app = parse_runtime_app(r, item, "apps[%d]" % i, images, look_up)
        if app.name in names:
            r.fail("apps[%d].name" % i, "duplicate app name %r" % app.name)
        names.add(app.name)
        app.index = i
        pod.apps.append(app)
    check_order(pod.apps)
    return pod


def parse_runtime_app(r, item, path, images=None, look_up=True):
    """One RuntimeApp: name, image, app (or the image's), mounts, annotations.
    look_up: whether the image manifest may say something of an app that
    has an app section (false when no app has one)."""
    r.obj(item, path)
    app = AppSpec()
    app.name = r.string(r.required(item, "name", path), path + ".name", AC_NAME, "an AC name")
    image = r.obj(r.required(item, "image", path), path + ".image")
    app.image = r.string(r.required(image, "id", path + ".image"), path + ".image.id")
    if image.get("name") is not None:
        r.string(image["name"], path + ".image.name", AC_IDENTIFIER, "an AC identifier")
    r.name_value_list(image, "labels", path + ".image", AC_NAME, "an AC name")
    app.annotations = r.name_value_list(item, "annotations", path, AC_IDENTIFIER,
                                        "an AC identifier")
    app.read_only_rootfs = r.boolean(item, "readOnlyRootFS", path)
    app.mounts = parse_mounts(r, item, path)
    body, where, reader = item.get("app"), path + ".app", r
    if body is None:
        if images is None:
            r.fail(where, "is required (no image manifest to take it from)")
        body, image_annotations, source = images.image_app(app.name)
        reader, where = _Reader(source), "app"
        for key, value in image_annotations.items():
            app.annotations.setdefault(key, value)
    elif images is not None and look_up and "stage1/notify" not in app.annotations and \
            SUPPORTS_NOTIFY not in app.annotations:
        # appc's notify annotation lives in the image manifest, and rkt puts
        # an app section in every RuntimeApp, so the image's annotations
        # are not merged in: this one is looked up there.
        if images.image_annotations(app.name).get(SUPPORTS_NOTIFY) == "true":
            app.annotations[SUPPORTS_NOTIFY] = "true"
    parse_app_body(reader, reader.obj(body, where), where, app)
    app.app_source = (reader.source, where)   # whence the app section: pod or image manifest
    app.limits, app.unapplied = isolators.parse(app.isolators, reader.source, "app")
    app_annotations(r, app, path)
    return app


# -- stage1/ annotations ---------------------------------------------------------

def _known(r, annotations, allowed, where):
    """Unknown stage1/ annotations are bad input: a typo fails loudly."""
    for name in annotations:
        if name.startswith("stage1/") and name not in allowed:
            r.fail('%s["%s"]' % (where, name), "unknown stage1 annotation")
    return lambda name: '%s["%s"]' % (where, name)


MAX_SECONDS = 2147483      # the longest single wait epoll takes (2**31 ms): 24 days


def _seconds(r, value, where, positive=False):
    try:
        number = float(value) if value.isascii() else -1.0
    except ValueError:
        number = -1.0
    if number == float("inf"):
        number = -1.0           # not a number of seconds; NaN fails the next test
    if not (number > 0 if positive else number >= 0):
        r.fail(where, "must be a number of seconds%s, not %r" % (" > 0" if positive else " >= 0",
                                                              value))
    if number > MAX_SECONDS:
        r.fail(where, "must be at most %d seconds, not %r" % (MAX_SECONDS, value))
    return number


def _whole(r, value, where, low, high):
    if not digits(value) or not low <= int(value) <= high:
        r.fail(where, "must be a whole number from %d to %d, not %r" % (low, high, value))
    return int(value)


def _one_of(r, value, choices, where):
    if value not in choices:
        r.fail(where, "must be one of %s, not %r" % (", ".join(choices), value))
    return value


def pod_annotations(r, pod):
    """The exit policy, back-off and stop timeout the pod's annotations give."""
    a = pod.annotations
    at = _known(r, a, POD_ANNOTATIONS, "annotations")
    pod.exit_policy = _one_of(r, a.get("stage1/exit-policy", ON_ANY_FAILURE), EXIT_POLICIES,
                              at("stage1/exit-policy"))
    base = _seconds(r, a.get("stage1/restart-backoff", "10"), at("stage1/restart-backoff"), True)
    cap = _seconds(r, a.get("stage1/restart-backoff-max", "300"),
                   at("stage1/restart-backoff-max"), True)
    pod.backoff = (base, max(base, cap))
    pod.stop_timeout = None
    if "stage1/stop-timeout" in a:
        pod.stop_timeout = _seconds(r, a["stage1/stop-timeout"], at("stage1/stop-timeout"))
    pod.mutable = a.get(MUTABLE) == "true"


# Annotations other than stage1/ ones that app_annotations reads.
_READ_TOO = frozenset((SUPPORTS_NOTIFY, "coreos.com/rkt/stage2/stdout"))
_DEFAULTS = []      # [what an app that has none of them gets] (filled once)
_SCALAR_FIELDS = ("restart", "stop_signal", "stop_timeout", "notify", "is_init", "log_mode",
                  "log_limits", "health", "log_copy", "inherit_environment", "signal_group")


def app_annotations(r, app, path):
    """Restart, stop, readiness, order and logs from the app's annotations
    (the pod manifest's, with the image's under them).  Most apps of a big
    pod say none of them: those take the defaults worked out once."""
    a = app.annotations
    if not any(k.startswith("stage1/") or k in _READ_TOO for k in a):
        if not _DEFAULTS:
            plain = AppSpec()
            plain.annotations = {}
            _read_app_annotations(r, plain, path)
            _DEFAULTS.append(tuple(getattr(plain, f) for f in _SCALAR_FIELDS))
        (app.restart, app.stop_signal, app.stop_timeout, app.notify, app.is_init,
         app.log_mode, app.log_limits, app.health, app.log_copy, app.inherit_environment,
         app.signal_group) = _DEFAULTS[0]
        app.after, app.after_started, app.after_completed = [], [], []
        return
    _read_app_annotations(r, app, path)


def _read_app_annotations(r, app, path):
    a = app.annotations
    at = _known(r, a, APP_ANNOTATIONS, path + ".annotations")
    app.restart = _one_of(r, a.get("stage1/restart-policy", "never"), RESTART_POLICIES,
                          at("stage1/restart-policy"))
    try:
        app.stop_signal = native.signal_number(a.get("stage1/stop-signal", "SIGTERM"))
    except ValueError as err:
        r.fail(at("stage1/stop-signal"), str(err))
    notify = a.get("stage1/notify")
    if notify is None and a.get(SUPPORTS_NOTIFY) == "true":
        notify = "systemd"
    if notify is not None and notify != "systemd":
        if not notify.startswith("fd:"):
            r.fail(at("stage1/notify"), "must be \"systemd\" or \"fd:N\", not %r" % notify)
        notify = _whole(r, notify[3:], at("stage1/notify"), 3, 63)
    app.notify = notify
    for field, name in AFTER_KINDS:
        setattr(app, field, [n.strip() for n in a.get(name, "").split(",") if n.strip()])
    app.is_init = _one_of(r, a.get("stage1/init", "false"), ("true", "false"),
                          at("stage1/init")) == "true"
    log = a.get("stage1/log")
    if log is None:
        log = RKT_LOG_MODES.get(a.get("coreos.com/rkt/stage2/stdout", "tty"), "inherit")
    app.log_mode = _one_of(r, log, LOG_MODES, at("stage1/log"))
    app.log_limits = (_whole(r, a.get("stage1/log-max-bytes", str(10 << 20)),
                             at("stage1/log-max-bytes"), 1024, 1 << 40),
                      _whole(r, a.get("stage1/log-keep", "3"), at("stage1/log-keep"), 0, 100))
    app.stop_timeout = None
    if "stage1/stop-timeout" in a:
        app.stop_timeout = _seconds(r, a["stage1/stop-timeout"], at("stage1/stop-timeout"))
    app.log_copy = _flag(r, a, "stage1/log-copy", at)
    app.signal_group = _flag(r, a, "stage1/signal-group", at)
    app.inherit_environment = _one_of(r, a.get("stage1/environment", "clean"),
                                      ("clean", "inherit"), at("stage1/environment")) == "inherit"
    app.health = health_check(r, a, at)


def _flag(r, a, name, at):
    return _one_of(r, a.get(name, "false"), ("true", "false"), at(name)) == "true"


def dependencies(app):
    """Every app `app` comes after, whatever the condition."""
    return app.after + app.after_started + app.after_completed


def health_check(r, a, at):
    """The app's health check from its stage1/health-* annotations, or None."""
    kinds = [k for k in HEALTH_KINDS if "stage1/health-" + k in a]
    if len(kinds) > 1:
        r.fail(at("stage1/health-" + kinds[1]), "an app has one health check: "
               "stage1/health-%s is given too" % kinds[0])
    if not kinds:
        for key in HEALTH_DEFAULTS:
            if "stage1/health-" + key in a:
                r.fail(at("stage1/health-" + key), "needs a health check: "
                       "stage1/health-exec, stage1/health-tcp or stage1/health-http")
        return None
    spec = HealthSpec()
    spec.kind = kinds[0]
    name = "stage1/health-" + spec.kind
    value, where = a[name], at(name)
    spec.argv = spec.address = spec.path = spec.host_header = None
    if spec.kind == "exec":
        spec.argv = _json_argv(r, value, where)
        spec.text = " ".join(spec.argv)
    elif spec.kind == "tcp":
        spec.address = _host_port(r, value, where)
        spec.text = "tcp %s" % value
    else:
        spec.address, spec.path, spec.host_header = _http_url(r, value, where)
        spec.text = value
    spec.interval, spec.timeout, spec.start_period, spec.start_interval = (
        _seconds(r, a.get("stage1/health-" + key, HEALTH_DEFAULTS[key]),
                 at("stage1/health-" + key), positive=key != "start-period")
        for key in ("interval", "timeout", "start-period", "start-interval"))
    spec.retries = _whole(r, a.get("stage1/health-retries", HEALTH_DEFAULTS["retries"]),
                          at("stage1/health-retries"), 1, 1000000)
    return spec


def _json_argv(r, value, where):
    try:
        argv = json.loads(value)
    except ValueError:
        argv = None
    if (not isinstance(argv, list) or not argv or not all(isinstance(x, str) for x in argv)
            or not argv[0] or any("\0" in x for x in argv)):
        r.fail(where, "must be a JSON list of strings such as [\"pg_isready\", \"-q\"], "
               "not %r" % value)
    return argv


def _ip(r, host, where):
    """An IP address (the init never resolves a name: that would block its
    loop); `localhost` is 127.0.0.1."""
    if host == "localhost":
        return socket.AF_INET, "127.0.0.1"
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, host)
            return family, host
        except (OSError, ValueError):
            pass
    r.fail(where, "%r is not an IP address or localhost (the init resolves no names)" % host)


def _port(r, text, where):
    if not digits(text) or not 1 <= int(text) <= 65535:
        r.fail(where, "%r is not a port number from 1 to 65535" % text)
    return int(text)


def _host_port(r, value, where):
    """HOST:PORT, [IPV6]:PORT -> (family, host, port)."""
    host, sep, port = value.rpartition(":")
    if not sep or not host:
        r.fail(where, "must be HOST:PORT such as 127.0.0.1:5432, not %r" % value)
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    family, host = _ip(r, host, where)
    return family, host, _port(r, port, where)


def _http_url(r, value, where):
    """http://HOST[:PORT][/PATH] -> ((family, host, port), path, Host header)."""
    scheme, _, rest = value.partition("://")
    if scheme.lower() != "http" or not rest:
        why = ("https is not supported: use stage1/health-tcp, or stage1/health-exec with "
               "curl" if scheme.lower() == "https" else "must be a URL such as "
               "http://127.0.0.1:8080/health")
        r.fail(where, "%s, not %r" % (why, value))
    netloc, slash, path = rest.partition("/")
    host, port = netloc, "80"
    if netloc.startswith("["):
        host, _, tail = netloc[1:].partition("]")
        if tail:
            if not tail.startswith(":"):
                r.fail(where, "%r is not a URL such as http://[::1]:8080/" % value)
            port = tail[1:]
    elif ":" in netloc:
        host, _, port = netloc.partition(":")
    if any(c in value for c in " \t\r\n"):
        r.fail(where, "a URL holds no blanks: %r" % value)
    family, ip = _ip(r, host, where)
    return (family, ip, _port(r, port, where)), slash + path if slash else "/", netloc


def check_order(specs, known=()):
    """Every name of a `stage1/after` kind exists and there is no cycle;
    `known` maps the names of a running pod's apps to every app they come
    after.  An app that restarts always never completes: coming after its
    completion is refused."""
    names = {a.name for a in specs} | set(known)
    restarts = {a.name: a.restart for a in specs}
    ordered = False
    for app in specs:
        if not (app.after or app.after_started or app.after_completed):
            continue
        ordered = True
        for field, annotation in AFTER_KINDS:
            for dep in getattr(app, field):
                where = 'apps[%d].annotations["%s"]' % (app.index, annotation)
                if dep not in names:
                    raise ManifestError("pod", where, "no app named %r" % dep)
                if field == "after_completed" and restarts.get(dep) == "always":
                    raise ManifestError("pod", where, "%r restarts always "
                                        "(stage1/restart-policy): it never completes" % dep)
    if not ordered:
        return       # no app of these comes after another: no new cycle
    graph = dict(known) if isinstance(known, dict) else {}
    graph.update((a.name, dependencies(a)) for a in specs)
    cycle = order.find_cycle(graph)
    if cycle:
        raise ManifestError("pod", "annotations", "stage1/after makes a cycle: %s"
                            % " -> ".join(cycle))


def parse_app_body(r, body, path, app):
    """The `app` object of aci.md: exec, user, group, environment, ..."""
    app.exec = r.argv(body.get("exec"), path + ".exec")
    app.user = r.string(r.required(body, "user", path), path + ".user")
    app.group = r.string(r.required(body, "group", path), path + ".group")
    key = "supplementaryGIDs" if "supplementaryGIDs" in body else "supplementaryGids"
    app.supplementary_gids = [r.uint(g, "%s.%s[%d]" % (path, key, i))
                              for i, g in enumerate(r.array(body, key, path))]
    app.environment = r.name_value_list(body, "environment", path, ENV_NAME,
                                        "a variable name (letters, digits, _ . -)")
    wd = body.get("workingDirectory", "/")
    if not isinstance(wd, str) or not wd.startswith("/"):
        r.fail(path + ".workingDirectory", "must be an absolute path")
    app.working_directory = wd
    app.event_handlers = {}
    for i, handler in enumerate(r.array(body, "eventHandlers", path)):
        where = "%s.eventHandlers[%d]" % (path, i)
        r.obj(handler, where)
        name = r.required(handler, "name", where)
        if name not in EVENT_HANDLERS:
            r.fail(where + ".name", "must be one of %s" % ", ".join(EVENT_HANDLERS))
        if name in app.event_handlers:
            r.fail(where + ".name", "duplicate event handler %r" % name)
        app.event_handlers[name] = r.argv(handler.get("exec"), where + ".exec")
    app.isolators = parse_isolators(r, body, path)
    app.mount_points = []
    for i, mp in enumerate(r.array(body, "mountPoints", path)):
        where = "%s.mountPoints[%d]" % (path, i)
        r.obj(mp, where)
        name = r.string(r.required(mp, "name", where), where + ".name", AC_NAME, "an AC name")
        target = r.string(r.required(mp, "path", where), where + ".path")
        app.mount_points.append((name, target, r.boolean(mp, "readOnly", where)))
    app.ports = parse_app_ports(r, body, path)


def parse_port(r, port, where):
    """An app's port (aci.md, appc types.Port): {name, protocol, port, count, where}."""
    r.obj(port, where)
    name = r.string(r.required(port, "name", where), where + ".name", AC_NAME, "an AC name")
    protocol = r.required(port, "protocol", where)
    if protocol not in ("tcp", "udp"):
        r.fail(where + ".protocol", "must be \"tcp\" or \"udp\", not %r" % (protocol,))
    number = r.uint(r.required(port, "port", where), where + ".port", 65536)
    if not number:
        r.fail(where + ".port", "must be a port number from 1 to 65535")
    count = r.uint(port.get("count", 1), where + ".count", 65536)
    if not count or number + count > 65536:
        r.fail(where + ".count", "must be at least 1 and end at port 65535 at most")
    r.boolean(port, "socketActivated", where)
    return {"name": name, "protocol": protocol, "port": number, "count": count, "where": where}


def parse_app_ports(r, body, path):
    out, names = [], set()
    for i, item in enumerate(r.array(body, "ports", path)):
        port = parse_port(r, item, "%s.ports[%d]" % (path, i))
        if port["name"] in names:
            r.fail(port["where"] + ".name", "duplicate port name %r" % port["name"])
        names.add(port["name"])
        out.append(port)
    return out


def parse_exposed_ports(r, doc):
    """The pod's `ports` (appc ExposedPort, what `rkt run --port` writes):
    [{name, hostPort, hostIP (None or a string), podPort (None or a port), where}]."""
    out = []
    for i, ep in enumerate(r.array(doc, "ports", "")):
        where = "ports[%d]" % i
        r.obj(ep, where)
        host_ip = ep.get("hostIP")
        if host_ip is not None and not isinstance(host_ip, str):
            r.fail(where + ".hostIP", "must be an IP address")
        pod_port = ep.get("podPort")
        entry = {"name": r.string(r.required(ep, "name", where), where + ".name", AC_NAME,
                                  "an AC name"),
                 "hostPort": r.uint(r.required(ep, "hostPort", where), where + ".hostPort",
                                    65536),
                 "hostIP": host_ip or None, "where": where,
                 "podPort": None if pod_port is None else parse_port(r, pod_port,
                                                                     where + ".podPort")}
        if not entry["hostPort"]:
            r.fail(where + ".hostPort", "must be a port number from 1 to 65535")
        out.append(entry)
    return out


def parse_isolators(r, obj, path):
    out = []
    for i, iso in enumerate(r.array(obj, "isolators", path)):
        where = "%s[%d]" % (_join(path, "isolators"), i)
        r.obj(iso, where)
        name = r.string(r.required(iso, "name", where), where + ".name",
                        AC_IDENTIFIER, "an AC identifier")
        out.append((name, iso.get("value"), where))
    return out


def parse_mounts(r, item, path):
    out = []
    for i, m in enumerate(r.array(item, "mounts", path)):
        where = "%s.mounts[%d]" % (path, i)
        r.obj(m, where)
        volume = r.string(r.required(m, "volume", where), where + ".volume",
                          AC_NAME, "an AC name")
        target = r.string(r.required(m, "path", where), where + ".path")
        app_volume = m.get("appVolume")
        if app_volume is not None:
            app_volume = parse_volume(r, app_volume, where + ".appVolume")
        out.append((volume, target, app_volume, where))
    return out


def parse_volumes(r, doc):
    volumes = {}
    for i, v in enumerate(r.array(doc, "volumes", "")):
        where = "volumes[%d]" % i
        vol = parse_volume(r, v, where)
        if vol["name"] in volumes:
            r.fail(where + ".name", "duplicate volume name %r" % vol["name"])
        volumes[vol["name"]] = vol
    return volumes


def parse_volume(r, v, where):
    r.obj(v, where)
    vol = {"name": r.string(r.required(v, "name", where), where + ".name", AC_NAME, "an AC name"),
           "kind": r.required(v, "kind", where), "where": where,
           "readOnly": r.boolean(v, "readOnly", where)}
    if vol["kind"] == "host":
        source = r.string(r.required(v, "source", where), where + ".source")
        if not source.startswith("/"):
            r.fail(where + ".source", "must be an absolute path")
        vol["source"] = source
        vol["recursive"] = r.boolean(v, "recursive", where, default=True)
    elif vol["kind"] == "empty":
        mode = v.get("mode", "0755")
        if not isinstance(mode, str) or not re.fullmatch(r"0?[0-7]{3,4}", mode):
            r.fail(where + ".mode", "must be an octal mode such as \"0755\"")
        vol["mode"] = int(mode, 8)
        vol["uid"] = r.uint(v.get("uid", 0), where + ".uid")
        vol["gid"] = r.uint(v.get("gid", 0), where + ".gid")
    else:
        r.fail(where + ".kind", "must be \"host\" or \"empty\", not %r" % (vol["kind"],))
    return vol


def parse_image_manifest(data, source):
    """(app object, annotations) of an ImageManifest."""
    r = _Reader(source)
    doc = r.obj(load_json(data, source), "")
    if doc.get("acKind") != "ImageManifest":
        r.fail("acKind", "must be \"ImageManifest\"")
    annotations = r.name_value_list(doc, "annotations", "", AC_IDENTIFIER, "an AC identifier")
    app = doc.get("app")
    if app is None:
        r.fail("app", "is required: the pod manifest gives no app section either")
    return app, annotations, source
