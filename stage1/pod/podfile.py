"""Pod files for people -> the appc pod manifest: a TOML pod and a Procfile.

Both compile to a PodManifest with stage1's annotations (`compile_file`),
so one path runs every pod and `stage1 run --print-manifest FILE` shows
what ran.  The manifest is validated by manifest.parse_pod like any other;
everything a person can get wrong is checked here first, so that each
error names the file, the line and the key
(`stage1.toml:12: web.healthcheck.interval: ...`); TOML syntax errors are
tomllib's own, with its line and column.

The TOML pod: one table per app, with Docker Compose's words where they
fit (command, environment, working_dir, user, group, restart, depends_on,
healthcheck, stop_signal, stop_grace_period), stage1's where Compose has
none (log, notify, init), and a few pod-wide keys (name, exit,
stop_grace_period, restart_backoff, restart_backoff_max).  What appc
requires and a person does not care about is filled in: an image id (the
digest of the app section: nothing is fetched), the caller's user and
group, the pod file's directory as the working directory, and the
caller's environment under the file's (`stage1/environment: inherit`, as
honcho and foreman give it).  Output goes to stdout tagged by app, with a
copy kept for `stage1 logs`.

The Procfile: Heroku's `name: command` lines, as honcho and foreman read
them: `#` comments and blank lines skipped, each command run by
`/bin/sh -c` (so `$VAR` is the shell's to expand, from the caller's
environment, `.env` beside the Procfile and PORT, 5000 + 100 per app),
signals to the command's process group, output tagged, and the first app
to end stops the pod.

Alternatives weighed: YAML (Compose's own format) needs a parser outside
the standard library and has its own traps (`no` is false); INI
(supervisord's) has no lists or nesting; TOML is in the standard library
from Python 3.11 (tomli, the same code, before).
"""
import hashlib
import json
import os
import re
import shlex

try:
    import tomllib
except ImportError:         # Python < 3.11: the same parser, outside the standard library
    import tomli as tomllib

from stage1.engine import native
from stage1.pod import manifest, order, users
from stage1.pod.errors import ManifestError, PodFileError

AC_VERSION = "0.8.11"      # the appc spec Debian ships (actool validate)
POD_KEYS = ("name", "exit", "stop_grace_period", "restart_backoff", "restart_backoff_max")
APP_KEYS = ("command", "environment", "working_dir", "user", "group", "restart", "depends_on",
            "healthcheck", "stop_signal", "stop_grace_period", "log", "notify", "init")
HEALTH_KEYS = ("exec", "tcp", "http", "test", "disable", "interval", "timeout", "retries",
               "start_period", "start_interval")
# Compose's words for what a pod file has no use for: said plainly.
COMPOSE_ONLY = ("image", "build", "ports", "expose", "volumes", "networks", "network_mode",
                "container_name", "hostname", "deploy", "labels", "env_file", "entrypoint",
                "privileged", "cap_add", "cap_drop", "links", "extra_hosts", "dns",
                "tmpfs", "devices", "profiles", "platform", "pull_policy", "configs", "secrets")
RESTARTS = {"no": "never", "on-failure": "on-failure", "always": "always",
            "unless-stopped": "always"}
EXITS = {"on-failure": "onAnyFailure", "on-any": "onAny", "after-all": "untilAll",
         "onAnyFailure": "onAnyFailure", "onAny": "onAny", "untilAll": "untilAll"}
CONDITIONS = {"started": "stage1/after-started", "service_started": "stage1/after-started",
              "healthy": "stage1/after", "service_healthy": "stage1/after",
              "completed": "stage1/after-completed",
              "service_completed_successfully": "stage1/after-completed"}
LOG_MODES = ("prefix", "inherit", "file", "null")
COPY_LIMITS = (1 << 20, 1)  # a prefix app's copy: the last 1-2 MiB of its output
PROCFILE_LINE = re.compile(r"^([A-Za-z0-9_.-]+):\s*(.*)$")
ENV_FILE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ms|us|µs|ns|s|m|h)")
UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}


class Compiled:
    """A pod file compiled: the manifest (a dict, appc JSON), the pod's name,
    the file's absolute path and kind ("toml" or "procfile")."""

    def __init__(self, doc, name, path, kind):
        self.manifest, self.name, self.path, self.kind = doc, name, path, kind


def is_procfile(path):
    """Procfile, Procfile.dev, ..., and anything ending in .procfile."""
    base = os.path.basename(path)
    return base == "Procfile" or base.startswith("Procfile.") or base.endswith(".procfile")


def compile_file(path):
    """The pod file at path -> Compiled, or PodFileError (one line)."""
    path = os.path.abspath(path)
    shown = os.path.relpath(path) if not os.path.relpath(path).startswith("..") else path
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as err:
        raise PodFileError("%s: %s" % (shown, err.strerror))
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise PodFileError("%s: not UTF-8 text (byte %d)" % (shown, err.start))
    if "\0" in text:
        raise PodFileError("%s: holds a NUL byte" % shown)
    source = _Source(shown, text, os.path.dirname(path))
    if is_procfile(path):
        doc, name = _procfile(source, text), None
        kind = "procfile"
    else:
        doc, name = _toml(source, text)
        kind = "toml"
    name = name or pod_name(os.path.basename(os.path.dirname(path)))
    try:
        manifest.parse_pod(doc, "%s (compiled)" % shown)
    except ManifestError as err:
        # Everything is checked above; this is a bug of the compiler, said as such.
        raise PodFileError("%s: the compiled manifest is not valid: %s" % (shown, err))
    return Compiled(doc, name, path, kind)


def name_of(path):
    """The name of the pod a pod file runs as: its `name` key, else its
    directory's name (as Docker Compose names a project).  A file that does
    not parse is named after its directory too (compile_file says why)."""
    path = os.path.abspath(path)
    if not is_procfile(path):
        try:
            with open(path, "rb") as f:
                name = tomllib.loads(f.read().decode("utf-8")).get("name")
            if isinstance(name, str) and manifest.AC_NAME.fullmatch(name):
                return name
        except (OSError, ValueError):
            pass
    return pod_name(os.path.basename(os.path.dirname(path)))


def pod_name(text):
    """A pod directory's name from any text: lowercase letters, digits and dashes."""
    name = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return name or "pod"


# -- where a key is: file:line ----------------------------------------------------

class _Source:
    """The file's name, directory and the line of each key, for errors."""

    def __init__(self, shown, text, directory):
        self.shown, self.directory = shown, directory
        self.text = text
        self._lines = None

    def line(self, keys):
        """The line of the key, or of the nearest table it is in."""
        if self._lines is None:
            self._lines = key_lines(self.text)
        keys = tuple(k for k in keys if isinstance(k, str))
        while keys:
            if keys in self._lines:
                return self._lines[keys]
            keys = keys[:-1]
        return None

    def fail(self, keys, message, line=None):
        line = line or self.line(keys)
        where = self.shown if line is None else "%s:%d" % (self.shown, line)
        raise PodFileError("%s: %s: %s" % (where, _key_text(keys), message) if keys else
                           "%s: %s" % (where, message))


def _key_text(keys):
    out = ""
    for k in keys:
        if isinstance(k, int):
            out += "[%d]" % k
        else:
            out += ("." if out else "") + (k if re.fullmatch(r"[A-Za-z0-9_-]+", k) else '"%s"' % k)
    return out


def key_lines(text):
    """{(table, ..., key): first line} of a TOML text: table headers and
    `key = ` lines, dotted and quoted keys, outside multi-line strings.
    Keys of inline tables and array items are found by their parent's line."""
    found, table, in_string = {}, (), None
    for number, line in enumerate(text.splitlines(), 1):
        if in_string is not None:
            if line.count(in_string) % 2 == 1:
                in_string = None
            continue
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.startswith("["):
            array = stripped.startswith("[[")
            keys, rest = _parse_keys(stripped[2 if array else 1:])
            if keys and rest.lstrip().startswith("]]" if array else "]"):
                table = tuple(keys)
                for i in range(1, len(table) + 1):
                    found.setdefault(table[:i], number)
            continue
        keys, rest = _parse_keys(stripped)
        if not keys or not rest.lstrip().startswith("="):
            continue
        full = table + tuple(keys)
        for i in range(1, len(full) + 1):
            found.setdefault(full[:i], number)
        value = rest.lstrip()[1:]
        for quote in ('"""', "'''"):
            if value.count(quote) % 2 == 1:
                in_string = quote
    return found


def _parse_keys(text):
    """(['a', 'b'], rest) for `a . "b" rest`; (None, text) if no key starts text."""
    keys, i = [], 0
    while True:
        while i < len(text) and text[i] in " \t":
            i += 1
        if i < len(text) and text[i] in "\"'":
            quote, j = text[i], i + 1
            while j < len(text) and text[j] != quote:
                j += 2 if text[j] == "\\" and quote == '"' else 1
            if j >= len(text):
                return None, text
            keys.append(text[i + 1:j])
            i = j + 1
        else:
            m = re.match(r"[A-Za-z0-9_-]+", text[i:])
            if not m:
                return None, text
            keys.append(m.group())
            i += m.end()
        while i < len(text) and text[i] in " \t":
            i += 1
        if i < len(text) and text[i] == ".":
            i += 1
            continue
        return keys, text[i:]


# -- values ----------------------------------------------------------------------------

def _string(src, value, keys, what="a string"):
    if not isinstance(value, str) or not value:
        src.fail(keys, "must be %s, not %s" % (what, _shown(value)))
    return value


def _shown(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "a list"
    return repr(value)


def _argv(src, value, keys):
    """A command: a list of strings, or a string split as a shell splits
    words (shlex; not run by a shell: write ["sh", "-c", "..."] for one)."""
    if isinstance(value, str):
        try:
            argv = shlex.split(value)
        except ValueError as err:
            src.fail(keys, "cannot be split into words: %s" % str(err).lower())
    elif isinstance(value, list) and all(isinstance(a, str) for a in value):
        argv = list(value)
    else:
        src.fail(keys, "must be a list of strings or a string, not %s" % _shown(value))
    if not argv or not argv[0]:
        src.fail(keys, "must name a program")
    return argv


def duration(src, value, keys, positive=False):
    """Seconds from a number or Compose's duration text ("1m30s", "500ms", "2h")."""
    seconds = None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip()
        if manifest.digits(text.replace(".", "", 1)) and text:
            seconds = float(text)
        elif text and DURATION.sub("", text) == "":
            seconds = sum(float(n) * UNITS[u] for n, u in DURATION.findall(text))
    if seconds is None or seconds != seconds or seconds < 0 or seconds == float("inf"):
        src.fail(keys, 'must be a duration such as "10s", "1m30s" or "500ms" (or a number '
                 'of seconds), not %s' % _shown(value))
    if positive and seconds <= 0:
        src.fail(keys, "must be more than 0 seconds, not %s" % _shown(value))
    if seconds > manifest.MAX_SECONDS:
        src.fail(keys, "must be at most %d seconds (24 days)" % manifest.MAX_SECONDS)
    return seconds


def seconds_text(seconds):
    """What manifest._seconds reads back exactly enough: 10 -> "10", 0.5 -> "0.5"."""
    text = "%.6f" % seconds
    return text.rstrip("0").rstrip(".")


def _one_of(src, value, choices, keys):
    if not isinstance(value, str) or value not in choices:
        src.fail(keys, "must be one of %s, not %s" % (", ".join('"%s"' % c for c in choices),
                                                      _shown(value)))
    return choices[value] if isinstance(choices, dict) else value


def _table(src, value, keys):
    if not isinstance(value, dict):
        src.fail(keys, "must be a table, not %s" % _shown(value))
    return value


def _unknown(src, table, allowed, keys, what):
    for key in table:
        if key not in allowed:
            hint = ""
            if key in COMPOSE_ONLY:
                hint = " (a stage1 pod file runs programs on this host: no images, ports, " \
                       "volumes or networks)"
            src.fail(keys + (key,), "unknown key%s; %s keys are %s" % (
                hint, what, ", ".join(allowed)))


# -- the TOML pod ----------------------------------------------------------------------

def _toml(src, text):
    """(manifest dict, pod name or None) of a TOML pod."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        message = str(err)
        m = re.search(r"\s*\(at line (\d+), column (\d+)\)$", message)
        if m:
            raise PodFileError("%s:%s:%s: invalid TOML: %s" % (
                src.shown, m.group(1), m.group(2), message[:m.start()]))
        raise PodFileError("%s: invalid TOML: %s" % (src.shown, message))
    apps = [(k, v) for k, v in doc.items() if isinstance(v, dict)]
    for key, value in doc.items():
        if isinstance(value, dict):
            continue
        if key not in POD_KEYS:
            src.fail((key,), "unknown key; a pod file holds one table per app ([%s] ...) and "
                     "the pod's %s" % (key, ", ".join(POD_KEYS)))
    if "services" in doc and isinstance(doc["services"], dict):
        src.fail(("services",), "a stage1 pod file has one table per app: [web], not "
                 "[services.web]")
    if not apps:
        src.fail((), "no apps: write one table per app, e.g. [web] with command = \"...\"",
                 line=1)
    name = None
    if "name" in doc:
        name = _string(src, doc["name"], ("name",))
        if not manifest.AC_NAME.fullmatch(name):
            src.fail(("name",), "%r is not a pod name: lowercase letters, digits and dashes"
                     % name)
    annotations = {"stage1/exit-policy": _one_of(src, doc.get("exit", "on-failure"), EXITS,
                                                 ("exit",))}
    for key, annotation, positive in (("stop_grace_period", "stage1/stop-timeout", False),
                                      ("restart_backoff", "stage1/restart-backoff", True),
                                      ("restart_backoff_max", "stage1/restart-backoff-max",
                                       True)):
        if key in doc:
            annotations[annotation] = seconds_text(duration(src, doc[key], (key,), positive))
    specs = [_app(src, key, value) for key, value in apps]
    _dependencies(src, specs)
    return _manifest(annotations, specs), name


class _App:
    """An app as the pod file says, before it becomes a RuntimeApp."""

    def __init__(self, name):
        self.name = name
        self.body = {}
        self.annotations = {}
        self.depends = []        # (name, condition, keys)
        self.checked = False     # a health check or sd_notify: ready is more than started
        self.restart = "never"


def _app(src, name, table):
    keys = (name,)
    if not manifest.AC_NAME.fullmatch(name):
        src.fail(keys, "%r is not an app name: lowercase letters, digits and dashes, "
                 "such as web or db-1" % name)
    _unknown(src, table, APP_KEYS, keys, "an app's")
    app = _App(name)
    if "command" not in table:
        src.fail(keys, "command is required: the program to run, e.g. "
                 "command = \"python3 -m http.server\"")
    body, a = app.body, app.annotations
    body["exec"] = _argv(src, table["command"], keys + ("command",))
    body["user"], body["group"] = _credentials(src, table, keys)
    wd = table.get("working_dir", ".")
    wd = os.path.normpath(os.path.join(src.directory, _string(src, wd, keys + ("working_dir",))))
    if not os.path.isdir(wd):
        src.fail(keys + ("working_dir",), "%s is not a directory" % wd)
    body["workingDirectory"] = wd
    env = _environment(src, table.get("environment", {}), keys + ("environment",))
    if env:
        body["environment"] = [{"name": k, "value": v} for k, v in env.items()]
    a["stage1/environment"] = "inherit"
    if "restart" in table:
        app.restart = _one_of(src, table["restart"], RESTARTS, keys + ("restart",))
        a["stage1/restart-policy"] = app.restart
    if "stop_signal" in table:
        sig = table["stop_signal"]
        try:
            if isinstance(sig, bool) or not isinstance(sig, (str, int)):
                raise ValueError("must be a signal name or number, not %s" % _shown(sig))
            native.signal_number(str(sig))
        except ValueError as err:
            src.fail(keys + ("stop_signal",), str(err))
        a["stage1/stop-signal"] = str(sig)
    if "stop_grace_period" in table:
        a["stage1/stop-timeout"] = seconds_text(duration(src, table["stop_grace_period"],
                                                         keys + ("stop_grace_period",)))
    _log(src, table.get("log", "prefix"), keys + ("log",), a)
    if "notify" in table:
        notify = table["notify"]
        if isinstance(notify, int) and not isinstance(notify, bool):
            notify = "fd:%d" % notify
        if not isinstance(notify, str) or not (notify == "systemd" or (
                notify.startswith("fd:") and manifest.digits(notify[3:]) and
                3 <= int(notify[3:]) <= 63)):
            src.fail(keys + ("notify",), 'must be "systemd" (sd_notify READY=1) or "fd:N" '
                     '(s6: a newline on fd N, 3 to 63), not %s' % _shown(table["notify"]))
        a["stage1/notify"] = notify
        app.checked = True
    if "init" in table:
        if not isinstance(table["init"], bool):
            src.fail(keys + ("init",), "must be true or false")
        if table["init"]:
            a["stage1/init"] = "true"
    if "healthcheck" in table:
        app.checked = _healthcheck(src, table["healthcheck"], keys + ("healthcheck",), a) \
            or app.checked
    app.depends = _depends_on(src, table.get("depends_on", []), keys + ("depends_on",))
    return app


def _credentials(src, table, keys):
    """(user, group): the file's, else the caller's; a user's group defaults
    to the user's primary group, as su and Compose give it."""
    user = group = None
    for key in ("user", "group"):
        if key in table:
            value = table[key]
            if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
                value = str(value)
            value = _string(src, value, keys + (key,), "a name or a number")
            try:
                users.resolve(value, "/", "passwd" if key == "user" else "group")
            except users.UserError as err:
                src.fail(keys + (key,), str(err))
            if key == "user":
                user = value
            else:
                group = value
    if user is None:
        user = str(os.getuid())
        if group is None:
            group = str(os.getgid())
    if group is None:
        gid = users.primary_gid(user, "/")
        if gid is None:
            src.fail(keys + ("user",), "user %s has no entry in /etc/passwd: give its group "
                     "too (group = ...)" % user)
        group = str(gid)
    return user, group


def _environment(src, value, keys):
    """A table of NAME = value, or Compose's list of "NAME=value"."""
    out = {}
    if isinstance(value, list):
        items = []
        for i, item in enumerate(value):
            if not isinstance(item, str) or "=" not in item:
                src.fail(keys + (i,), 'must be "NAME=value", not %s' % _shown(item))
            items.append((item.partition("=")[0], item.partition("=")[2], keys + (i,)))
    elif isinstance(value, dict):
        items = [(k, v, keys + (k,)) for k, v in value.items()]
    else:
        src.fail(keys, "must be a table (NAME = \"value\") or a list of \"NAME=value\"")
    for name, v, where in items:
        if not manifest.ENV_NAME.fullmatch(name):
            src.fail(where, "%r is not a variable name (letters, digits, _ . -)" % name)
        if isinstance(v, bool):
            v = "true" if v else "false"
        elif isinstance(v, (int, float)):
            v = str(v)
        elif not isinstance(v, str):
            src.fail(where, "must be a string, a number or true/false, not %s" % _shown(v))
        out[name] = v
    return out


def _log(src, value, keys, a):
    """log = "prefix" (the default: tagged lines on stdout, a copy for
    `stage1 logs`), "file", "inherit", "null"; or a table with mode,
    max_bytes, keep and copy."""
    table = value if isinstance(value, dict) else {"mode": value}
    _unknown(src, table, ("mode", "max_bytes", "keep", "copy"), keys, "log's")
    mode = _one_of(src, table.get("mode", "prefix"), LOG_MODES,
                   keys + (("mode",) if isinstance(value, dict) else ()))
    a["stage1/log"] = mode
    copy = table.get("copy", True)
    if not isinstance(copy, bool):
        src.fail(keys + ("copy",), "must be true or false")
    if "copy" in table and mode != "prefix":
        src.fail(keys + ("copy",), "goes with mode = \"prefix\" (file mode is a copy already)")
    max_bytes, keep = (COPY_LIMITS if mode == "prefix" else (None, None))
    if "max_bytes" in table:
        max_bytes = _whole(src, table["max_bytes"], keys + ("max_bytes",), 1024, 1 << 40)
    if "keep" in table:
        keep = _whole(src, table["keep"], keys + ("keep",), 0, 100)
    if mode == "prefix" and copy:
        a["stage1/log-copy"] = "true"
    if mode == "file" or mode == "prefix" and copy:
        if max_bytes is not None:
            a["stage1/log-max-bytes"] = str(max_bytes)
        if keep is not None:
            a["stage1/log-keep"] = str(keep)


def _whole(src, value, keys, low, high):
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        src.fail(keys, "must be a whole number from %d to %d, not %s" % (low, high,
                                                                         _shown(value)))
    return value


def _healthcheck(src, value, keys, a):
    """The app's health check -> stage1/health-* annotations; True if there
    is one.  exec (a command), tcp (HOST:PORT or a port of 127.0.0.1),
    http (a URL or a port of 127.0.0.1); Compose's test = ["CMD", ...],
    ["CMD-SHELL", "..."] or "..." is taken too, and disable = true."""
    table = _table(src, value, keys)
    _unknown(src, table, HEALTH_KEYS, keys, "a healthcheck's")
    if table.get("disable") is True or table.get("test") in (["NONE"], "NONE"):
        return False
    if "disable" in table and table["disable"] is not False:
        src.fail(keys + ("disable",), "must be true or false")
    kinds = [k for k in ("exec", "tcp", "http", "test") if k in table]
    if len(kinds) != 1:
        src.fail(keys + (kinds[1],) if kinds else keys,
                 "a healthcheck has one of exec, tcp and http%s" % (
                     ": %s and %s are both given" % tuple(kinds[:2]) if kinds else ""))
    kind = kinds[0]
    value, where = table[kind], keys + (kind,)
    if kind == "test":
        kind, value = "exec", _compose_test(src, value, where)
    if kind == "exec":
        argv = _argv(src, value, where)
        a["stage1/health-exec"] = _json_list(argv)
    elif kind == "tcp":
        address = "127.0.0.1:%d" % _port(src, value, where) if not isinstance(value, str) \
            else value
        _check_annotation(src, "stage1/health-tcp", address, where)
        a["stage1/health-tcp"] = address
    else:
        url = "http://127.0.0.1:%d/" % _port(src, value, where) if not isinstance(value, str) \
            else value
        _check_annotation(src, "stage1/health-http", url, where)
        a["stage1/health-http"] = url
    for key, positive in (("interval", True), ("timeout", True), ("start_period", False),
                          ("start_interval", True)):
        if key in table:
            a["stage1/health-" + key.replace("_", "-")] = seconds_text(
                duration(src, table[key], keys + (key,), positive))
    if "retries" in table:
        a["stage1/health-retries"] = str(_whole(src, table["retries"], keys + ("retries",),
                                                1, 1000000))
    return True


def _compose_test(src, value, keys):
    if isinstance(value, str):
        return ["/bin/sh", "-c", value]
    if isinstance(value, list) and value and value[0] == "CMD" and len(value) > 1:
        return value[1:]
    if isinstance(value, list) and len(value) == 2 and value[0] == "CMD-SHELL":
        return ["/bin/sh", "-c", value[1]]
    src.fail(keys, 'must be Compose\'s ["CMD", "prog", ...], ["CMD-SHELL", "command"] or a '
             'string (or use exec = [...] instead)')


def _port(src, value, keys):
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        src.fail(keys, "must be a port (1 to 65535), HOST:PORT or a URL, not %s" % _shown(value))
    return value


def _check_annotation(src, name, value, keys):
    """The manifest's own check of a health check's target, said at file:line."""
    reader = manifest._Reader(src.shown)
    try:
        manifest.health_check(reader, {name: value}, lambda n: n)
    except ManifestError as err:
        src.fail(keys, str(err).split(": ", 2)[-1])


def _json_list(argv):
    return json.dumps(argv)


def _depends_on(src, value, keys):
    """[(name, annotation, keys)] from a list of names (condition started,
    as Compose) or a table of name = {condition = "..."} or name = "..."."""
    out = []
    if isinstance(value, list):
        for i, name in enumerate(value):
            out.append((_string(src, name, keys + (i,), "an app's name"),
                        "stage1/after-started", keys + (i,)))
        return out
    for name, spec in _table(src, value, keys).items():
        where = keys + (name,)
        if isinstance(spec, dict):
            _unknown(src, spec, ("condition",), where, "a dependency's")
            where = where + ("condition",)
            spec = spec.get("condition", "started")
        out.append((name, _one_of(src, spec, CONDITIONS, where), where))
    return out


def _dependencies(src, apps):
    """Names exist, `healthy` has something to wait for, no cycle."""
    by_name = {a.name: a for a in apps}
    for app in apps:
        lists = {}
        for name, annotation, where in app.depends:
            dep = by_name.get(name)
            if dep is None:
                src.fail(where, "no app named %r in this pod" % name)
            if dep is app:
                src.fail(where, "an app cannot depend on itself")
            if annotation == "stage1/after" and not dep.checked:
                src.fail(where, "%s has no healthcheck (nor notify): it is never healthy; "
                         "give it a healthcheck, or use condition = \"started\"" % name)
            if annotation == "stage1/after-completed" and dep.restart == "always":
                src.fail(where, "%s restarts always: it never completes" % name)
            lists.setdefault(annotation, []).append(name)
        for annotation, names in lists.items():
            app.annotations[annotation] = ",".join(names)
    cycle = order.find_cycle({a.name: [d[0] for d in a.depends] for a in apps})
    if cycle:
        first = by_name[cycle[0]]
        where = next(d[2] for d in first.depends if d[0] == cycle[1])
        src.fail(where, "depends_on makes a cycle: %s" % " -> ".join(cycle))


def _manifest(pod_annotations, apps):
    """The PodManifest of the apps: each image id is the digest of its app."""
    out = []
    for app in apps:
        runtime = {"name": app.name, "image": {"id": _image_id(app)}, "app": app.body,
                   "annotations": [{"name": k, "value": v} for k, v in app.annotations.items()]}
        out.append(runtime)
    return {"acKind": "PodManifest", "acVersion": AC_VERSION,
            "annotations": [{"name": k, "value": v} for k, v in pod_annotations.items()],
            "apps": out}


def _image_id(app):
    """appc requires an image id and stage1 runs no image: the sha512 of the
    app's name and section, so the same app has the same id."""
    data = json.dumps([app.name, app.body, app.annotations], sort_keys=True).encode()
    return "sha512-" + hashlib.sha512(data).hexdigest()


# -- the Procfile ----------------------------------------------------------------------

def _procfile(src, text):
    """The manifest of a Procfile: each line an app run by /bin/sh -c."""
    apps, seen = [], {}
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        m = PROCFILE_LINE.match(stripped)
        if not m or not m.group(2).strip():
            src.fail((), "expected NAME: COMMAND, not %r" % stripped[:80], line=number)
        name = re.sub(r"[^a-z0-9]+", "-", m.group(1).lower()).strip("-")
        if not manifest.AC_NAME.fullmatch(name):
            src.fail((), "%r has no letter or digit to name an app" % m.group(1), line=number)
        if name in seen:
            src.fail((), "%s is the name of line %d already%s" % (
                m.group(1), seen[name], "" if name == m.group(1) else " (as %s)" % name),
                line=number)
        seen[name] = number
        apps.append((name, m.group(2).strip()))
    if not apps:
        src.fail((), "no apps: a Procfile has one `name: command` line per app", line=1)
    env = _env_file(os.path.join(src.directory, ".env"))
    base = env.get("PORT", os.environ.get("PORT", "5000"))
    base = int(base) if manifest.digits(base) and int(base) < 65536 else 5000
    user, group = str(os.getuid()), str(os.getgid())
    specs = []
    for i, (name, command) in enumerate(apps):
        app = _App(name)
        app_env = dict(env, PORT=str(base + 100 * i))
        app.body = {"exec": ["/bin/sh", "-c", command], "user": user, "group": group,
                    "workingDirectory": src.directory,
                    "environment": [{"name": k, "value": v} for k, v in app_env.items()]}
        app.annotations = {"stage1/environment": "inherit", "stage1/log": "prefix",
                           "stage1/log-copy": "true",
                           "stage1/log-max-bytes": str(COPY_LIMITS[0]),
                           "stage1/log-keep": str(COPY_LIMITS[1]),
                           "stage1/signal-group": "true"}
        specs.append(app)
    return _manifest({"stage1/exit-policy": "onAny"}, specs)


def _env_file(path):
    """honcho's .env: NAME=value lines (`export ` allowed, # comments, blank
    lines), a value in single quotes taken as it is, in double quotes with
    \\n, \\" and \\\\ unescaped; {} when there is none."""
    try:
        with open(path, "rb") as f:
            text = f.read().decode("utf-8")
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as err:
        raise PodFileError("%s: %s" % (path, getattr(err, "strerror", None) or
                                       "not UTF-8 text"))
    src = _Source(os.path.relpath(path) if not os.path.relpath(path).startswith("..") else path,
                  text, os.path.dirname(path))
    out = {}
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.startswith("export "):
            stripped = stripped[7:].lstrip()
        name, eq, value = stripped.partition("=")
        name = name.strip()
        if not eq or not ENV_FILE_NAME.fullmatch(name):
            src.fail((), "expected NAME=value, not %r" % stripped[:80], line=number)
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] == "'":
            value = value[1:-1]
        elif len(value) >= 2 and value[0] == value[-1] == '"':
            value = re.sub(r'\\(.)', lambda m: {"n": "\n", "t": "\t"}.get(m.group(1),
                                                                           m.group(1)),
                           value[1:-1])
        if "\0" in value:
            src.fail((), "holds a NUL byte", line=number)
        out[name] = value
    return out
