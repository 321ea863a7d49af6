"""Pod files compiled to the appc pod manifest (stage1/pod/podfile.py): every
key and default of the TOML pod, every error with its file, line and key,
the Procfile and its .env, and actool's word on what comes out."""
import json
import os
import subprocess
import textwrap

import pytest

from stage1.pod import podfile
from stage1.pod.errors import PodFileError


def _write(tmp_path, text, name="stage1.toml", directory="proj"):
    d = tmp_path / directory
    d.mkdir(exist_ok=True)
    path = d / name
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return str(path)


def compiled(tmp_path, text, name="stage1.toml"):
    return podfile.compile_file(_write(tmp_path, text, name))


def error(tmp_path, text, name="stage1.toml"):
    path = _write(tmp_path, text, name)
    with pytest.raises(PodFileError) as info:
        podfile.compile_file(path)
    message = str(info.value)
    assert "\n" not in message
    prefix = os.path.relpath(path)
    prefix = path if prefix.startswith("..") else prefix    # as the compiler shows it
    assert message.startswith(prefix + ":"), message
    return message[len(prefix):]


def _app(c, name=None):
    apps = c.manifest["apps"]
    return apps[0] if name is None else next(a for a in apps if a["name"] == name)


def _ann(runtime_app):
    return {a["name"]: a["value"] for a in runtime_app["annotations"]}


def _pod_ann(c):
    return {a["name"]: a["value"] for a in c.manifest["annotations"]}


# -- defaults ----------------------------------------------------------------------------

def test_the_defaults_a_person_does_not_write(tmp_path):
    c = compiled(tmp_path, """
        [web]
        command = "python3 -m http.server 8000"
    """)
    assert c.name == "proj" and c.kind == "toml"
    assert c.manifest["acKind"] == "PodManifest" and c.manifest["acVersion"] == "0.8.11"
    assert _pod_ann(c) == {"stage1/exit-policy": "onAnyFailure"}
    web = _app(c)
    assert web["name"] == "web"
    assert web["image"]["id"].startswith("sha512-") and len(web["image"]["id"]) == 7 + 128
    assert web["app"] == {"exec": ["python3", "-m", "http.server", "8000"],
                          "user": str(os.getuid()), "group": str(os.getgid()),
                          "workingDirectory": str(tmp_path / "proj")}
    assert _ann(web) == {"stage1/environment": "inherit", "stage1/log": "prefix",
                         "stage1/log-copy": "true", "stage1/log-max-bytes": "1048576",
                         "stage1/log-keep": "1"}


def test_the_image_id_is_the_digest_of_the_app(tmp_path):
    one = compiled(tmp_path, '[a]\ncommand = "true"\n[b]\ncommand = "true"\n')
    two = compiled(tmp_path, '[b]\ncommand = "true"\n[a]\ncommand = "true"\n')
    ids = {a["name"]: a["image"]["id"] for a in one.manifest["apps"]}
    assert ids == {a["name"]: a["image"]["id"] for a in two.manifest["apps"]}
    assert ids["a"] != ids["b"]


def test_apps_keep_the_files_order(tmp_path):
    c = compiled(tmp_path, '[zz]\ncommand = "true"\n[aa]\ncommand = "true"\n')
    assert [a["name"] for a in c.manifest["apps"]] == ["zz", "aa"]


# -- every key ---------------------------------------------------------------------------

def test_every_key(tmp_path):
    (tmp_path / "proj" / "sub").mkdir(parents=True)
    c = compiled(tmp_path, """
        name = "shop"
        exit = "on-any"
        stop_grace_period = "1m30s"
        restart_backoff = "500ms"
        restart_backoff_max = 60

        [db]
        command = ["postgres", "-D", "/var/lib/pg"]
        user = "nobody"
        group = "nogroup"
        restart = "always"
        stop_signal = "SIGINT"
        stop_grace_period = 20
        notify = "systemd"
        log = "file"

        [migrate]
        command = "sh -c 'echo migrating'"
        init = true
        log = { mode = "inherit" }

        [web]
        command = 'gunicorn "app:make()" --bind 127.0.0.1:8000'
        working_dir = "sub"
        environment = { DEBUG = 1, NAME = "shop", ON = true }
        restart = "on-failure"
        depends_on = { db = { condition = "healthy" }, migrate = "completed" }
        stop_signal = 3
        log = { mode = "prefix", max_bytes = 4096, keep = 2 }

        [web.healthcheck]
        http = "http://127.0.0.1:8000/health"
        interval = "2s"
        timeout = "1.5s"
        retries = 5
        start_period = "1m"
        start_interval = "250ms"

        [worker]
        command = ["worker"]
        environment = ["A=1", "B=x=y"]
        depends_on = ["db"]
        log = { mode = "prefix", copy = false }
        healthcheck = { exec = "pidof worker", interval = 30 }
    """)
    assert c.name == "shop"
    assert _pod_ann(c) == {"stage1/exit-policy": "onAny", "stage1/stop-timeout": "90",
                           "stage1/restart-backoff": "0.5", "stage1/restart-backoff-max": "60"}
    db = _app(c, "db")
    assert (db["app"]["exec"], db["app"]["user"], db["app"]["group"]) == (
        ["postgres", "-D", "/var/lib/pg"], "nobody", "nogroup")
    assert _ann(db) == {"stage1/environment": "inherit", "stage1/restart-policy": "always",
                        "stage1/stop-signal": "SIGINT", "stage1/stop-timeout": "20",
                        "stage1/log": "file", "stage1/notify": "systemd"}
    migrate = _app(c, "migrate")
    assert migrate["app"]["exec"] == ["sh", "-c", "echo migrating"]
    assert _ann(migrate) == {"stage1/environment": "inherit", "stage1/log": "inherit",
                             "stage1/init": "true"}
    web = _app(c, "web")
    assert web["app"]["exec"] == ["gunicorn", "app:make()", "--bind", "127.0.0.1:8000"]
    assert web["app"]["workingDirectory"] == str(tmp_path / "proj" / "sub")
    assert web["app"]["environment"] == [{"name": "DEBUG", "value": "1"},
                                         {"name": "NAME", "value": "shop"},
                                         {"name": "ON", "value": "true"}]
    assert _ann(web) == {
        "stage1/environment": "inherit", "stage1/restart-policy": "on-failure",
        "stage1/stop-signal": "3", "stage1/log": "prefix", "stage1/log-copy": "true",
        "stage1/log-max-bytes": "4096", "stage1/log-keep": "2",
        "stage1/health-http": "http://127.0.0.1:8000/health", "stage1/health-interval": "2",
        "stage1/health-timeout": "1.5", "stage1/health-start-period": "60",
        "stage1/health-start-interval": "0.25", "stage1/health-retries": "5",
        "stage1/after": "db", "stage1/after-completed": "migrate"}
    worker = _app(c, "worker")
    assert worker["app"]["environment"] == [{"name": "A", "value": "1"},
                                            {"name": "B", "value": "x=y"}]
    assert _ann(worker) == {"stage1/environment": "inherit", "stage1/log": "prefix",
                            "stage1/health-exec": '["pidof", "worker"]',
                            "stage1/health-interval": "30",
                            "stage1/after-started": "db"}


@pytest.mark.parametrize("value,expected", [
    ('"no"', "never"), ('"on-failure"', "on-failure"), ('"always"', "always"),
    ('"unless-stopped"', "always")])
def test_restart(tmp_path, value, expected):
    c = compiled(tmp_path, '[a]\ncommand = "x"\nrestart = %s\n' % value)
    assert _ann(_app(c))["stage1/restart-policy"] == expected


@pytest.mark.parametrize("value,expected", [
    ('"on-failure"', "onAnyFailure"), ('"on-any"', "onAny"), ('"after-all"', "untilAll"),
    ('"onAny"', "onAny"), ('"untilAll"', "untilAll")])
def test_exit(tmp_path, value, expected):
    c = compiled(tmp_path, 'exit = %s\n[a]\ncommand = "x"\n' % value)
    assert _pod_ann(c)["stage1/exit-policy"] == expected


@pytest.mark.parametrize("condition,annotation", [
    ("started", "stage1/after-started"), ("service_started", "stage1/after-started"),
    ("healthy", "stage1/after"), ("service_healthy", "stage1/after"),
    ("completed", "stage1/after-completed"),
    ("service_completed_successfully", "stage1/after-completed")])
def test_depends_on_conditions(tmp_path, condition, annotation):
    c = compiled(tmp_path, """
        [db]
        command = "x"
        healthcheck = { tcp = 5432 }
        [web]
        command = "x"
        depends_on = { db = { condition = "%s" } }
    """ % condition)
    assert _ann(_app(c, "web"))[annotation] == "db"


@pytest.mark.parametrize("check,expected", [
    ('{ exec = ["pg_isready", "-q"] }', {"stage1/health-exec": '["pg_isready", "-q"]'}),
    ('{ exec = "test -e /tmp/up" }', {"stage1/health-exec": '["test", "-e", "/tmp/up"]'}),
    ('{ tcp = 5432 }', {"stage1/health-tcp": "127.0.0.1:5432"}),
    ('{ tcp = "[::1]:5432" }', {"stage1/health-tcp": "[::1]:5432"}),
    ('{ http = 8080 }', {"stage1/health-http": "http://127.0.0.1:8080/"}),
    ('{ http = "http://localhost/x" }', {"stage1/health-http": "http://localhost/x"}),
    ('{ test = ["CMD", "curl", "-f", "http://x/"] }',
     {"stage1/health-exec": '["curl", "-f", "http://x/"]'}),
    ('{ test = ["CMD-SHELL", "curl -f http://x/ || exit 1"] }',
     {"stage1/health-exec": '["/bin/sh", "-c", "curl -f http://x/ || exit 1"]'}),
    ('{ test = "curl -f http://x/" }',
     {"stage1/health-exec": '["/bin/sh", "-c", "curl -f http://x/"]'}),
    ('{ test = ["NONE"] }', {}),
    ('{ tcp = 1, disable = true }', {}),
])
def test_healthcheck_kinds(tmp_path, check, expected):
    c = compiled(tmp_path, '[a]\ncommand = "x"\nhealthcheck = %s\n' % check)
    ann = {k: v for k, v in _ann(_app(c)).items() if k.startswith("stage1/health-")}
    assert ann == expected


@pytest.mark.parametrize("value,seconds", [
    ("10", "10"), ("2.5", "2.5"), ('"10s"', "10"), ('"1m30s"', "90"), ('"500ms"', "0.5"),
    ('"1.5h"', "5400"), ('"2h45m"', "9900"), ('"250us"', "0.00025"), ('"7"', "7"),
    ('"0"', "0")])
def test_durations(tmp_path, value, seconds):
    c = compiled(tmp_path, '[a]\ncommand = "x"\nstop_grace_period = %s\n' % value)
    assert _ann(_app(c))["stage1/stop-timeout"] == seconds


def test_a_user_gets_its_primary_group(tmp_path):
    c = compiled(tmp_path, '[a]\ncommand = "x"\nuser = "nobody"\n')
    assert (_app(c)["app"]["user"], _app(c)["app"]["group"]) == ("nobody", "65534")
    c = compiled(tmp_path, '[a]\ncommand = "x"\nuser = 0\n')
    assert (_app(c)["app"]["user"], _app(c)["app"]["group"]) == ("0", "0")
    c = compiled(tmp_path, '[a]\ncommand = "x"\ngroup = "nogroup"\n')
    assert (_app(c)["app"]["user"], _app(c)["app"]["group"]) == (str(os.getuid()), "nogroup")


@pytest.mark.parametrize("value,expected", [('"systemd"', "systemd"), ('"fd:3"', "fd:3"),
                                            ("5", "fd:5")])
def test_notify(tmp_path, value, expected):
    c = compiled(tmp_path, '[a]\ncommand = "x"\nnotify = %s\n' % value)
    assert _ann(_app(c))["stage1/notify"] == expected


def test_a_notify_app_may_be_depended_on_as_healthy(tmp_path):
    c = compiled(tmp_path, '[a]\ncommand = "x"\nnotify = "systemd"\n'
                           '[b]\ncommand = "x"\ndepends_on = { a = "healthy" }\n')
    assert _ann(_app(c, "b"))["stage1/after"] == "a"


@pytest.mark.parametrize("mode", ["prefix", "inherit", "file", "null"])
def test_log_modes(tmp_path, mode):
    ann = _ann(_app(compiled(tmp_path, '[a]\ncommand = "x"\nlog = "%s"\n' % mode)))
    assert ann["stage1/log"] == mode
    assert ("stage1/log-copy" in ann) == (mode == "prefix")
    assert ("stage1/log-max-bytes" in ann) == (mode == "prefix")


def test_the_name_comes_from_the_directory_made_a_pod_name(tmp_path):
    path = _write(tmp_path, '[a]\ncommand = "x"\n', directory="My Shop_2")
    assert podfile.compile_file(path).name == "my-shop-2"
    assert podfile.name_of(path) == "my-shop-2"
    path = _write(tmp_path, 'name = "other"\n[a]\ncommand = "x"\n', name="dev.toml")
    assert podfile.compile_file(path).name == podfile.name_of(path) == "other"


# -- errors: file, line, key ---------------------------------------------------------------

ERRORS = [
    ("[a]\ncommand = 'x'\nrestart = \n", ":3:11: invalid TOML: Invalid value"),
    ("[a]\ncommand = [\n", ": invalid TOML: "),
    ("[a]\ncommand = 'x'\nfoo = 1\n", ":3: a.foo: unknown key; an app's keys are command, "),
    ("[a]\ncommand = 'x'\nimage = 'nginx'\n",
     ":3: a.image: unknown key (a stage1 pod file runs programs on this host: no images, "),
    ("[services.web]\ncommand = 'x'\n", ":1: services: a stage1 pod file has one table per "
     "app: [web], not [services.web]"),
    ("version = 3\n[a]\ncommand = 'x'\n", ":1: version: unknown key; a pod file holds one "
     "table per app"),
    ("exit = 'sometimes'\n[a]\ncommand = 'x'\n", ":1: exit: must be one of "),
    ("# nothing\n", ":1: no apps: write one table per app"),
    ("name = 'My Pod'\n[a]\ncommand = 'x'\n", ":1: name: 'My Pod' is not a pod name"),
    ("[Web]\ncommand = 'x'\n", ":1: Web: 'Web' is not an app name"),
    ("[a]\nuser = 'root'\n", ":1: a: command is required"),
    ("[a]\ncommand = 3\n", ":2: a.command: must be a list of strings or a string, not 3"),
    ("[a]\ncommand = \"sh -c 'x\"\n", ":2: a.command: cannot be split into words: "
     "no closing quotation"),
    ("[a]\ncommand = []\n", ":2: a.command: must name a program"),
    ("[a]\ncommand = 'x'\nworking_dir = 'nope'\n", ":3: a.working_dir: "),
    ("[a]\ncommand = 'x'\nenvironment = { 'A B' = '1' }\n",
     ":3: a.environment.\"A B\": 'A B' is not a variable name"),
    ("[a]\ncommand = 'x'\nenvironment = ['A']\n", ":3: a.environment[0]: must be \"NAME=value\""),
    ("[a]\ncommand = 'x'\n[a.environment]\nX = [1]\n",
     ":4: a.environment.X: must be a string, a number or true/false, not a list"),
    ("[a]\ncommand = 'x'\nrestart = 'on-failure:3'\n", ":3: a.restart: must be one of "),
    ("[a]\ncommand = 'x'\nuser = 'nosuchuser'\n", ":3: a.user: 'nosuchuser' is neither in"),
    ("[a]\ncommand = 'x'\nuser = 4242\n", ":3: a.user: user 4242 has no entry in /etc/passwd"),
    ("[a]\ncommand = 'x'\nstop_signal = 'SIGNOPE'\n", ":3: a.stop_signal: "),
    ("[a]\ncommand = 'x'\nstop_grace_period = '10 seconds'\n",
     ":3: a.stop_grace_period: must be a duration such as \"10s\""),
    ("[a]\ncommand = 'x'\nstop_grace_period = -1\n", ":3: a.stop_grace_period: must be a "),
    ("[a]\ncommand = 'x'\nstop_grace_period = '30d'\n", ":3: a.stop_grace_period: must be a "),
    ("[a]\ncommand = 'x'\nstop_grace_period = 9999999\n",
     ":3: a.stop_grace_period: must be at most 2147483 seconds"),
    ("[a]\ncommand = 'x'\nlog = 'syslog'\n", ":3: a.log: must be one of "),
    ("[a]\ncommand = 'x'\nlog = { mode = 'file', copy = true }\n",
     ":3: a.log.copy: goes with mode = \"prefix\""),
    ("[a]\ncommand = 'x'\nlog = { max_bytes = 10 }\n",
     ":3: a.log.max_bytes: must be a whole number from 1024 to"),
    ("[a]\ncommand = 'x'\nnotify = 'yes'\n", ":3: a.notify: must be \"systemd\""),
    ("[a]\ncommand = 'x'\ninit = 'yes'\n", ":3: a.init: must be true or false"),
    ("[a]\ncommand = 'x'\ndepends_on = ['b']\n", ":3: a.depends_on[0]: no app named 'b'"),
    ("[a]\ncommand = 'x'\ndepends_on = ['a']\n", ":3: a.depends_on[0]: an app cannot depend "
     "on itself"),
    ("[a]\ncommand = 'x'\n[b]\ncommand = 'x'\n[b.depends_on]\na = { condition = 'healthy' }\n",
     ":6: b.depends_on.a.condition: a has no healthcheck (nor notify): it is never healthy"),
    ("[a]\ncommand = 'x'\nrestart = 'always'\n[b]\ncommand = 'x'\ndepends_on = { a = "
     "'completed' }\n", ":6: b.depends_on.a: a restarts always: it never completes"),
    ("[a]\ncommand = 'x'\ndepends_on = ['b']\n[b]\ncommand = 'x'\ndepends_on = ['a']\n",
     ":3: a.depends_on[0]: depends_on makes a cycle: a -> b -> a"),
    ("[a]\ncommand = 'x'\ndepends_on = { b = 'ready' }\n[b]\ncommand = 'x'\n",
     ":3: a.depends_on.b: must be one of "),
    ("[a]\ncommand = 'x'\ndepends_on = { b = { when = 'x' } }\n[b]\ncommand = 'x'\n",
     ":3: a.depends_on.b.when: unknown key"),
    ("[a]\ncommand = 'x'\n\n[a.healthcheck]\ninterval = '5s'\n",
     ":4: a.healthcheck: a healthcheck has one of exec, tcp and http"),
    ("[a]\ncommand = 'x'\nhealthcheck = { tcp = 1, http = 2 }\n",
     ":3: a.healthcheck.http: a healthcheck has one of exec, tcp and http: tcp and http are "
     "both given"),
    ("[a]\ncommand = 'x'\nhealthcheck = { tcp = 'db:5432' }\n",
     ":3: a.healthcheck.tcp: 'db' is not an IP address or localhost"),
    ("[a]\ncommand = 'x'\nhealthcheck = { http = 'https://x/' }\n",
     ":3: a.healthcheck.http: https is not supported"),
    ("[a]\ncommand = 'x'\nhealthcheck = { http = 0 }\n",
     ":3: a.healthcheck.http: must be a port (1 to 65535)"),
    ("[a]\ncommand = 'x'\nhealthcheck = { test = ['CURL'] }\n",
     ":3: a.healthcheck.test: must be Compose's"),
    ("[a]\ncommand = 'x'\n[a.healthcheck]\ntcp = 1\n\ninterval = 0\n",
     ":6: a.healthcheck.interval: must be more than 0 seconds"),
    ("[a]\ncommand = 'x'\n[a.healthcheck]\ntcp = 1\nretries = 0\n",
     ":5: a.healthcheck.retries: must be a whole number from 1 to 1000000"),
    ("[a]\ncommand = 'x'\n[a.healthcheck]\ntcp = 1\nperiod = 1\n",
     ":5: a.healthcheck.period: unknown key"),
    ("a.command = 'x'\na.restart = 'sometimes'\n", ":2: a.restart: must be one of "),
    ("[a]\ncommand = 'x'\na.restart = 'no'\n", ":3: a.a: unknown key"),
]


@pytest.mark.parametrize("text,expected", ERRORS, ids=[e[1][:40] for e in ERRORS])
def test_errors_name_the_file_the_line_and_the_key(tmp_path, text, expected):
    message = error(tmp_path, text)
    assert message.startswith(expected), message


def test_errors_in_inline_tables_name_their_line(tmp_path):
    message = error(tmp_path, """
        [a]
        command = "x"

        [b]
        command = "y"
        healthcheck = { tcp = 1, interval = "soon" }
    """)
    assert message.startswith(":6: b.healthcheck.interval: must be a duration"), message


def test_errors_after_a_multi_line_string_name_the_right_line(tmp_path):
    message = error(tmp_path, '''
        [a]
        command = """
        x = 1
        [b]
        """
        restart = "sometimes"
    ''')
    assert message.startswith(":6: a.restart: "), message


def test_a_file_that_is_not_utf8(tmp_path):
    path = tmp_path / "stage1.toml"
    path.write_bytes(b"[a]\ncommand = '\xff'\n")
    with pytest.raises(PodFileError, match="not UTF-8 text"):
        podfile.compile_file(str(path))


def test_key_lines():
    lines = podfile.key_lines(textwrap.dedent('''
        name = "x"
        [web]   # the web app
        command = """
        not = "a key"
        """
        "quoted key".inner = 1
        [ web . healthcheck ]
        http = 1
        [[arr]]
        k = [
          1,
        ]
        z = 2
    ''').lstrip("\n"))
    assert lines[("name",)] == 1
    assert lines[("web",)] == 2 and lines[("web", "command")] == 3
    assert ("web", "not") not in lines
    assert lines[("web", "quoted key", "inner")] == 6
    assert lines[("web", "healthcheck")] == 7 and lines[("web", "healthcheck", "http")] == 8
    assert lines[("arr", "k")] == 10 and lines[("arr", "z")] == 13


# -- the Procfile ------------------------------------------------------------------------

PROCFILE = """
# a Procfile as Heroku, honcho and foreman read it

web: gunicorn app:app --bind 127.0.0.1:$PORT
worker_1:python worker.py   # a comment is the shell's
  Release.Phase:  ./release.sh
"""


def test_procfile(tmp_path):
    c = compiled(tmp_path, PROCFILE, name="Procfile")
    assert c.kind == "procfile" and c.name == "proj"
    assert _pod_ann(c) == {"stage1/exit-policy": "onAny"}
    names = [a["name"] for a in c.manifest["apps"]]
    assert names == ["web", "worker-1", "release-phase"]
    web = _app(c, "web")
    assert web["app"]["exec"] == ["/bin/sh", "-c", "gunicorn app:app --bind 127.0.0.1:$PORT"]
    assert _app(c, "worker-1")["app"]["exec"][2] == "python worker.py   # a comment is the shell's"
    assert _app(c, "release-phase")["app"]["exec"][2] == "./release.sh"
    assert [a["app"]["environment"] for a in c.manifest["apps"]] == [
        [{"name": "PORT", "value": str(5000 + 100 * i)}] for i in range(3)]
    assert web["app"]["workingDirectory"] == str(tmp_path / "proj")
    assert _ann(web) == {"stage1/environment": "inherit", "stage1/log": "prefix",
                         "stage1/log-copy": "true", "stage1/log-max-bytes": "1048576",
                         "stage1/log-keep": "1", "stage1/signal-group": "true"}


@pytest.mark.parametrize("name", ["Procfile", "Procfile.dev", "dev.procfile"])
def test_procfile_names(tmp_path, name):
    assert compiled(tmp_path, "web: x\n", name=name).kind == "procfile"


def test_procfile_with_env_file(tmp_path):
    (tmp_path / "proj").mkdir()
    (tmp_path / "proj" / ".env").write_text(textwrap.dedent("""
        # honcho's .env
        export PORT=8000
        PLAIN = some value
        SINGLE='$NOT expanded \\n'
        DOUBLE="line\\nnext \\"quoted\\""

        EMPTY=
    """))
    c = compiled(tmp_path, "a: x\nb: y\n", name="Procfile")
    env = [{e["name"]: e["value"] for e in a["app"]["environment"]} for a in c.manifest["apps"]]
    common = {"PLAIN": "some value", "SINGLE": "$NOT expanded \\n",
              "DOUBLE": 'line\nnext "quoted"', "EMPTY": ""}
    assert env == [dict(common, PORT="8000"), dict(common, PORT="8100")]


@pytest.mark.parametrize("text,expected", [
    ("web gunicorn\n", ":1: expected NAME: COMMAND, not 'web gunicorn'"),
    ("# only\n\n", ":1: no apps: a Procfile has one `name: command` line per app"),
    ("web:\n", ":1: expected NAME: COMMAND, not 'web:'"),
    ("web: a\n\nweb: b\n", ":3: web is the name of line 1 already"),
    ("web_1: a\nweb-1: b\n", ":2: web-1 is the name of line 1 already"),
    ("web-1: a\nWEB_1: b\n", ":2: WEB_1 is the name of line 1 already (as web-1)"),
    ("__: a\n", ":1: '__' has no letter or digit to name an app"),
])
def test_procfile_errors(tmp_path, text, expected):
    assert error(tmp_path, text, name="Procfile").startswith(expected)


def test_env_file_errors(tmp_path):
    (tmp_path / "proj").mkdir()
    (tmp_path / "proj" / ".env").write_text("A=1\nnot a line\n")
    with pytest.raises(PodFileError) as info:
        compiled(tmp_path, "web: x\n", name="Procfile")
    assert str(info.value).endswith(".env:2: expected NAME=value, not 'not a line'")


# -- what actool says ------------------------------------------------------------------

@pytest.mark.parametrize("name,text", [
    ("stage1.toml", '[db]\ncommand = "x"\nhealthcheck = { tcp = 5432 }\nuser = "nobody"\n'
                    '[web]\ncommand = ["y", "z"]\nenvironment = { A = "1" }\n'
                    'depends_on = { db = "healthy" }\nlog = "file"\n'),
    ("Procfile", PROCFILE)])
def test_actool_accepts_what_is_compiled(tmp_path, name, text):
    c = compiled(tmp_path, text, name=name)
    out = tmp_path / "manifest.json"
    out.write_text(json.dumps(c.manifest))
    p = subprocess.run(["actool", "validate", str(out)], capture_output=True, text=True,
                       timeout=30)
    assert p.returncode == 0, p.stdout + p.stderr
