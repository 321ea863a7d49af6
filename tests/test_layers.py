"""The package's layers, as the tree shows them, stay true.

Each subpackage of stage1/ is a layer; a module may import its own layer
and the layers below it, never one above, and no two modules may import
each other in a circle, directly or through others, whether the import is
at the top of the file or inside a function.  `stage1 exec` imports
exactly the modules it did when this test was written, so its start-up
does not grow by accident.
"""
import ast
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(ROOT, "stage1")

# Bottom to top.  "" is the top-level package (stage1/__init__.py: the version).
LAYERS = ("", "engine", "pod", "isolation", "live", "runner", "rkt", "commands")

EXEC_MODULES = {
    "stage1", "stage1.commands", "stage1.commands.main", "stage1.engine",
    "stage1.engine._native", "stage1.engine._native.lib", "stage1.engine.execmode",
    "stage1.engine.init", "stage1.engine.loop", "stage1.engine.native",
    "stage1.engine.spawn", "stage1.engine.supervisor",
}


def modules(package_dir, name="stage1"):
    """{module name: path} of every .py file below package_dir."""
    out = {}
    for directory, _, files in os.walk(package_dir):
        rel = os.path.relpath(directory, package_dir)
        parts = [name] + ([] if rel == "." else rel.split(os.sep))
        for f in files:
            if f.endswith(".py"):
                mod = parts + ([] if f == "__init__.py" else [f[:-3]])
                out[".".join(mod)] = os.path.join(directory, f)
    return out


def imports(path, module, known):
    """The stage1 modules `module` imports, anywhere in its file."""
    with open(path) as f:
        tree = ast.parse(f.read(), path)
    package = module if path.endswith("__init__.py") else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([base] if base else []))
            # `from stage1.x import y`: y is a module if one has that name.
            names = [base + "." + a.name if base + "." + a.name in known else base
                     for a in node.names]
        else:
            continue
        for name in names:
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name and name != module:
                found.add(name)
    return found


def layer(module):
    parts = module.split(".")
    if parts[1:] == ["__main__"]:
        return "commands"      # `python -m stage1`: the command line
    return parts[1] if len(parts) > 1 else ""


def violations(package_dir, name="stage1", layers=LAYERS):
    """(upward imports, circles, modules in no layer) of the package."""
    known = modules(package_dir, name)
    graph = {m: imports(p, m, known) for m, p in known.items()}
    upward, unlayered = [], sorted(m for m in known if layer(m) not in layers)
    for m, targets in sorted(graph.items()):
        for t in sorted(targets):
            if t.startswith(m + "."):
                continue       # a package importing its own submodule
            if layer(t) in layers and layer(m) in layers and \
                    layers.index(layer(t)) > layers.index(layer(m)):
                upward.append("%s imports %s (layer %s above %s)" % (m, t, layer(t), layer(m)))
    return upward, cycles(graph), unlayered


def cycles(graph):
    """One list per circle found among the modules (parent packages, which
    every submodule imports implicitly, are left out)."""
    edges = {m: {t for t in ts if not m.startswith(t + ".")} for m, ts in graph.items()}
    state, found = {}, []
    for start in sorted(edges):
        if start in state:
            continue
        path, stack = [start], [iter(sorted(edges[start]))]
        state[start] = 1
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                found.append(path[path.index(nxt):] + [nxt])
            elif nxt not in state:
                state[nxt] = 1
                path.append(nxt)
                stack.append(iter(sorted(edges.get(nxt, ()))))
    return found


def test_no_upward_import_no_circle():
    upward, circles, unlayered = violations(PACKAGE)
    assert not unlayered, "modules outside every layer: %s" % unlayered
    assert not upward, "\n".join(upward)
    assert not circles, "import circles: %s" % circles


def test_every_layer_says_what_it_owns_and_may_import():
    for name in LAYERS[1:]:
        with open(os.path.join(PACKAGE, name, "__init__.py")) as f:
            doc = ast.get_docstring(ast.parse(f.read()))
        assert doc and "May import" in doc, name


def _tree(tmp_path, files):
    for rel, text in files.items():
        path = tmp_path / "pkg" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return str(tmp_path / "pkg")


def test_the_check_fails_on_an_upward_import(tmp_path):
    pkg = _tree(tmp_path, {
        "__init__.py": "", "engine/__init__.py": "", "pod/__init__.py": "",
        "pod/plan.py": "from pkg.engine import loop\n",
        "engine/loop.py": "def f():\n    from pkg.pod import plan\n",
    })
    upward, circles, _ = violations(pkg, "pkg", ("", "engine", "pod"))
    assert upward == ["pkg.engine.loop imports pkg.pod.plan (layer pod above engine)"]
    assert circles == [["pkg.engine.loop", "pkg.pod.plan", "pkg.engine.loop"]]


def test_the_check_fails_on_a_circle_within_a_layer(tmp_path):
    pkg = _tree(tmp_path, {
        "__init__.py": "", "engine/__init__.py": "",
        "engine/a.py": "from . import b\n", "engine/b.py": "from pkg.engine.a import x\n",
    })
    upward, circles, _ = violations(pkg, "pkg", ("", "engine"))
    assert not upward and circles == [["pkg.engine.a", "pkg.engine.b", "pkg.engine.a"]]


def test_exec_imports_no_more_than_it_needs():
    code = ("import sys; sys.argv = ['stage1', 'exec', '--', 'true']\n"
            "from stage1.commands.main import main\n"
            "code = main()\n"
            "print(code, ' '.join(sorted(m for m in sys.modules if m.startswith('stage1'))))\n"
            "print(' '.join(m for m in ('json', 'argparse', 'enum', 're', 'psutil', 'fractions')"
            " if m in sys.modules))\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30,
                       cwd=ROOT)
    first, heavy = r.stdout.split("\n")[:2]
    rc, _, names = first.partition(" ")
    assert rc == "0", r.stderr
    assert set(names.split()) == EXEC_MODULES
    assert heavy == ""
