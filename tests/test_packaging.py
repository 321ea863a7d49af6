"""Python packaging: `python -m build` makes an sdist that builds the wheel
(the native layer's sources are in it), the wheel installs into a fresh
venv and gives a working `stage1` outside the checkout, and the metadata is
complete.  Built once per session (about half a minute: the sdist, the
wheel from it, a venv and its dependencies)."""
import email.parser
import os
import subprocess
import sys
import tarfile
import zipfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="session")
def dist(tmp_path_factory):
    """(sdist, wheel) built by `python -m build` (the wheel from the sdist)."""
    out = tmp_path_factory.mktemp("dist")
    r = subprocess.run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out),
                        ROOT], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    names = sorted(os.listdir(out))
    sdist = [n for n in names if n.endswith(".tar.gz")]
    wheel = [n for n in names if n.endswith(".whl")]
    assert len(sdist) == 1 and len(wheel) == 1, names
    return str(out / sdist[0]), str(out / wheel[0])


@pytest.fixture(scope="session")
def installed(dist, tmp_path_factory):
    """A fresh venv (outside the checkout) with the wheel installed."""
    venv = tmp_path_factory.mktemp("venv")
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", str(venv)], check=True, timeout=120)
    r = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q",
                        "--disable-pip-version-check", dist[1]],
                       capture_output=True, text=True, timeout=300, cwd="/")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return venv


def test_the_sdist_holds_what_the_wheel_is_built_from(dist):
    with tarfile.open(dist[0]) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    for needed in ("native/build_native.py", "native/stage1.h", "native/spawn.c",
                   "native/seccomp.c", "native/signals.c", "native/reap.c", "native/ns.c",
                   "stage1/rkt/launch.c", "LICENSE", "CHANGELOG.md", "README.md", "setup.cfg",
                   "pyproject.toml", "setup.py"):
        assert needed in names, needed
    assert not [n for n in names if n.endswith((".so", ".pyc"))]


def test_the_wheel_has_the_native_module_and_complete_metadata(dist):
    with zipfile.ZipFile(dist[1]) as whl:
        names = whl.namelist()
        meta_name = next(n for n in names if n.endswith(".dist-info/METADATA"))
        meta = email.parser.Parser().parsestr(whl.read(meta_name).decode())
    assert any(n.startswith("stage1/engine/_native") and n.endswith(".so") for n in names)
    assert "stage1/rkt/launch.c" in names
    assert any(n.endswith(".dist-info/LICENSE") for n in names)
    assert meta["License"] == "Apache-2.0"
    assert meta["Requires-Python"] == ">=3.9"
    classifiers = meta.get_all("Classifier")
    assert "License :: OSI Approved :: Apache Software License" in classifiers
    assert "Operating System :: POSIX :: Linux" in classifiers
    assert meta.get_all("Project-URL")
    assert sorted(r.split(">=")[0] for r in meta.get_all("Requires-Dist")) == [
        "cffi", "psutil", "python-prctl", "tomli"]       # tomli: before Python 3.11 only


def test_the_installed_wheel_runs_outside_the_checkout(installed, tmp_path):
    stage1 = str(installed / "bin" / "stage1")
    env = {"PATH": "/usr/bin:/bin"}          # no checkout venv, no pyenv
    r = subprocess.run([stage1, "exec", "--", "sh", "-c", "exit 3"], cwd=str(tmp_path),
                       env=env, capture_output=True, text=True, timeout=30)
    assert (r.returncode, r.stderr) == (3, "")
    where = subprocess.run([str(installed / "bin" / "python"), "-c",
                            "import stage1.engine._native as n; print(n.__file__)"],
                           cwd=str(tmp_path), env=env, capture_output=True, text=True)
    assert where.stdout.startswith(str(installed)), where.stdout + where.stderr
    r = subprocess.run([stage1, "status", "--help"], env=env, capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.startswith("usage: stage1 status")
    show = subprocess.run([str(installed / "bin" / "python"), "-m", "pip", "show", "stage1"],
                          env=env, capture_output=True, text=True, cwd=str(tmp_path))
    assert "License: Apache-2.0" in show.stdout
