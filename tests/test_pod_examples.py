"""The example pods under examples/: valid for the appc spec's own
validator (Debian's appc-spec `actool`) and for stage1's planning; the
pod file compiles to a manifest actool accepts too."""
import glob
import json
import os
import subprocess

import pytest

from podhelpers import ROOT

EXAMPLES = os.path.join(ROOT, "examples")


def _manifests():
    """Every JSON file under examples/ that is an appc manifest."""
    out = []
    for path in sorted(glob.glob(os.path.join(EXAMPLES, "**", "*"), recursive=True)):
        if not os.path.isfile(path):
            continue
        try:
            with open(path) as f:
                doc = json.load(f)
        except (ValueError, UnicodeDecodeError):
            continue
        if isinstance(doc, dict) and doc.get("acKind") in ("PodManifest", "ImageManifest"):
            out.append(os.path.relpath(path, ROOT))
    return out


MANIFESTS = _manifests()


def test_the_example_pod_is_there():
    assert "examples/pod/pod" in MANIFESTS


@pytest.mark.parametrize("path", MANIFESTS)
def test_actool_accepts_every_example_manifest(path):
    p = subprocess.run(["actool", "validate", path], cwd=ROOT, capture_output=True, text=True,
                       timeout=30)
    assert p.returncode == 0, p.stdout + p.stderr


@pytest.mark.parametrize("path", [m for m in MANIFESTS if os.path.basename(m) == "pod"])
def test_stage1_plans_every_example_pod(path):
    from stage1.pod.directory import PodDir
    from stage1.pod.plan import Options
    from stage1.runner.pod import make_plan
    plan = make_plan(PodDir(os.path.join(ROOT, os.path.dirname(path))), Options(), stdin_fd=0)
    assert plan.apps and not plan.unapplied


def test_the_example_pod_file_compiles_to_a_valid_manifest(tmp_path):
    from stage1.pod import podfile
    c = podfile.compile_file(os.path.join(EXAMPLES, "stage1.toml"))
    assert c.name == "example" and [a["name"] for a in c.manifest["apps"]] == [
        "web", "worker", "job"]
    out = tmp_path / "pod"
    out.write_text(json.dumps(c.manifest))
    p = subprocess.run(["actool", "validate", str(out)], capture_output=True, text=True,
                       timeout=30)
    assert p.returncode == 0, p.stdout + p.stderr
