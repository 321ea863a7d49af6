"""Bad input: `stage1 run` exits 254 before anything starts, with one line
on stderr naming the place (a JSON path).  apps[0] of every manifest here
would create a marker file; it must not exist afterwards."""
import os

import pytest

from podhelpers import Pod, app, run, sh


def _set(path, value):
    """A mutation of the manifest: set the value at path (a list of keys)."""
    def mutate(doc):
        for key in path[:-1]:
            doc = doc[key]
        if value is DELETE:
            del doc[path[-1]]
        else:
            doc[path[-1]] = value
    return mutate


DELETE = object()
APP1 = ["apps", 1]
BODY1 = APP1 + ["app"]


def _annotation(where, name, value):
    def mutate(doc):
        target = doc
        for key in where:
            target = target[key]
        target.setdefault("annotations", []).append({"name": name, "value": value})
    return mutate


CASES = [
    ("not-json", "{not json", "pod: invalid JSON: "),
    ("not-utf8", b"\xff\xfe{}", "pod: invalid JSON: "),
    ("not-an-object", "[]", "pod: must be an object"),
    ("ackind", _set(["acKind"], "ImageManifest"),
     "pod: acKind: must be \"PodManifest\", not 'ImageManifest'"),
    ("no-ackind", _set(["acKind"], DELETE), "pod: acKind: is required"),
    ("acversion", _set(["acVersion"], "1.30"),
     "pod: acVersion: '1.30' is not a semantic version (such as 0.8.11)"),
    ("acversion-leading-zero", _set(["acVersion"], "01.2.3"),
     "pod: acVersion: '01.2.3' is not a semantic version"),
    ("apps-not-a-list", _set(["apps"], {"a": 1}), "pod: apps: must be a list"),
    ("no-apps", _set(["apps"], []), "pod: apps: the pod has no apps"),
    ("app-not-an-object", _set(APP1, "x"), "pod: apps[1]: must be an object"),
    ("no-name", _set(APP1 + ["name"], DELETE), "pod: apps[1].name: is required"),
    ("no-image", _set(APP1 + ["image"], DELETE), "pod: apps[1].image: is required"),
    ("no-image-id", _set(APP1 + ["image"], {}), "pod: apps[1].image.id: is required"),
    ("no-user", _set(BODY1 + ["user"], DELETE), "pod: apps[1].app.user: is required"),
    ("no-group", _set(BODY1 + ["group"], DELETE), "pod: apps[1].app.group: is required"),
    ("empty-user", _set(BODY1 + ["user"], ""), "pod: apps[1].app.user: must be a non-empty"),
    ("duplicate-name", _set(APP1 + ["name"], "first"),
     "pod: apps[1].name: duplicate app name 'first'"),
    ("name-not-acname", _set(APP1 + ["name"], "../x"),
     "pod: apps[1].name: '../x' is not an AC name"),
    ("name-upper", _set(APP1 + ["name"], "Web"), "pod: apps[1].name: 'Web' is not an AC name"),
    ("name-slash", _set(APP1 + ["name"], "a/b"), "pod: apps[1].name: 'a/b' is not an AC name"),
    ("exec-empty", _set(BODY1 + ["exec"], []),
     "pod: apps[1].app.exec: must be a non-empty list of strings"),
    ("exec-missing", _set(BODY1 + ["exec"], DELETE),
     "pod: apps[1].app.exec: must be a non-empty list of strings"),
    ("exec-not-strings", _set(BODY1 + ["exec"], ["echo", 1]),
     "pod: apps[1].app.exec: must be a non-empty list of strings"),
    ("exec-empty-program", _set(BODY1 + ["exec"], [""]),
     "pod: apps[1].app.exec: must be a non-empty list of strings"),
    ("exec-string", _set(BODY1 + ["exec"], "echo hi"),
     "pod: apps[1].app.exec: must be a non-empty list of strings"),
    ("env-name", _set(BODY1 + ["environment"], [{"name": "A B", "value": "x"}]),
     "pod: apps[1].app.environment[0].name: 'A B' is not a variable name"),
    ("env-value", _set(BODY1 + ["environment"], [{"name": "A", "value": 1}]),
     "pod: apps[1].app.environment[0].value: must be a string"),
    ("env-duplicate", _set(BODY1 + ["environment"], [{"name": "A", "value": "1"},
                                                      {"name": "A", "value": "2"}]),
     "pod: apps[1].app.environment[1].name: duplicate name 'A'"),
    ("env-not-a-list", _set(BODY1 + ["environment"], {"A": "1"}),
     "pod: apps[1].app.environment: must be a list"),
    ("workdir-relative", _set(BODY1 + ["workingDirectory"], "tmp"),
     "pod: apps[1].app.workingDirectory: must be an absolute path"),
    ("gids-string", _set(BODY1 + ["supplementaryGIDs"], ["10"]),
     "pod: apps[1].app.supplementaryGIDs[0]: must be a whole number from 0 to 4294967294"),
    ("gids-negative", _set(BODY1 + ["supplementaryGIDs"], [10, -1]),
     "pod: apps[1].app.supplementaryGIDs[1]: must be a whole number from 0 to 4294967294"),
    ("handler-name", _set(BODY1 + ["eventHandlers"], [{"name": "on-crash", "exec": ["true"]}]),
     "pod: apps[1].app.eventHandlers[0].name: must be one of pre-start, post-stop"),
    ("handler-exec", _set(BODY1 + ["eventHandlers"], [{"name": "pre-start", "exec": []}]),
     "pod: apps[1].app.eventHandlers[0].exec: must be a non-empty list of strings"),
    ("handler-duplicate", _set(BODY1 + ["eventHandlers"], [
        {"name": "post-stop", "exec": ["true"]}, {"name": "post-stop", "exec": ["true"]}]),
     "pod: apps[1].app.eventHandlers[1].name: duplicate event handler 'post-stop'"),
    ("isolator-name", _set(BODY1 + ["isolators"], [{"value": {}}]),
     "pod: apps[1].app.isolators[0].name: is required"),
    ("volume-kind", _set(["volumes"], [{"name": "data", "kind": "nfs"}]),
     "pod: volumes[0].kind: must be \"host\" or \"empty\", not 'nfs'"),
    ("volume-source", _set(["volumes"], [{"name": "data", "kind": "host", "source": "rel"}]),
     "pod: volumes[0].source: must be an absolute path"),
    ("exit-policy", _annotation([], "stage1/exit-policy", "sometimes"),
     "pod: annotations[\"stage1/exit-policy\"]: must be one of onAny, onAnyFailure, untilAll, "
     "not 'sometimes'"),
    ("backoff-negative", _annotation([], "stage1/restart-backoff", "-1"),
     "pod: annotations[\"stage1/restart-backoff\"]: must be a number of seconds > 0, not '-1'"),
    ("backoff-zero", _annotation([], "stage1/restart-backoff", "0"),
     "pod: annotations[\"stage1/restart-backoff\"]: must be a number of seconds > 0"),
    ("backoff-word", _annotation([], "stage1/restart-backoff", "soon"),
     "pod: annotations[\"stage1/restart-backoff\"]: must be a number of seconds > 0"),
    ("backoff-nan", _annotation([], "stage1/restart-backoff", "nan"),
     "pod: annotations[\"stage1/restart-backoff\"]: must be a number of seconds > 0"),
    ("backoff-max-inf", _annotation([], "stage1/restart-backoff-max", "inf"),
     "pod: annotations[\"stage1/restart-backoff-max\"]: must be a number of seconds > 0"),
    ("stop-timeout", _annotation([], "stage1/stop-timeout", "-0.5"),
     "pod: annotations[\"stage1/stop-timeout\"]: must be a number of seconds >= 0"),
    ("unknown-pod-annotation", _annotation([], "stage1/bogus", "1"),
     "pod: annotations[\"stage1/bogus\"]: unknown stage1 annotation"),
    ("annotation-name", _annotation([], "Not An Identifier", "1"),
     "pod: annotations[1].name: 'Not An Identifier' is not an AC identifier"),
    ("restart-policy", _annotation(APP1, "stage1/restart-policy", "maybe"),
     "pod: apps[1].annotations[\"stage1/restart-policy\"]: must be one of never, on-failure, "
     "always, not 'maybe'"),
    ("stop-signal", _annotation(APP1, "stage1/stop-signal", "SIGFOO"),
     "pod: apps[1].annotations[\"stage1/stop-signal\"]: no such signal: SIGFOO"),
    ("stop-signal-number", _annotation(APP1, "stage1/stop-signal", "99"),
     "pod: apps[1].annotations[\"stage1/stop-signal\"]: no such signal: 99"),
    ("unknown-app-annotation", _annotation(APP1, "stage1/bogus", "1"),
     "pod: apps[1].annotations[\"stage1/bogus\"]: unknown stage1 annotation"),
]


@pytest.mark.parametrize("change, message", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_fails_before_anything_starts(tmp_path, change, message):
    pod = Pod(tmp_path, [app("first", sh("touch %s/ran" % tmp_path)),
                         app("second", sh("touch %s/ran" % tmp_path))])
    if callable(change):
        change(pod.manifest)
        pod.write()
    else:
        with open(pod.file("pod"), "wb") as f:
            f.write(change if isinstance(change, bytes) else change.encode())
    code, out, err = run(pod)
    assert code == 254
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("stage1[") and "]: " + message in lines[0]
    assert out == ""
    assert not os.path.exists(pod.file("ran"))
    assert not os.path.exists(pod.file("pid"))
    assert not os.path.exists(pod.status_dir)


def test_annotations_that_are_not_stage1s_are_left_alone(tmp_path):
    pod = Pod(tmp_path, [app("a", ["true"], annotations={"example.com/x": "anything"})],
              annotations={"ip-address": "10.1.2.3", "coreos.com/rkt/stage1/app": "y"})
    assert run(pod)[:2] == (0, "")


def test_the_appc_example_pod_manifest_passes_validation(tmp_path):
    """Debian's appc-spec example is valid, but its second app has no app
    section and this pod directory holds no image manifest for it."""
    with open("/usr/share/doc/appc-spec/examples/pod_runtime.json") as f:
        text = f.read()
    pod = Pod(tmp_path)
    pod.write(text)
    code, out, err = run(pod)
    assert code == 254
    assert "app backup has no app section" in err
