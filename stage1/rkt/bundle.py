"""What a self-contained stage1 image holds besides its manifest: the
interpreter that runs stage1, the part of the standard library stage1
imports, the stage1 package with its compiled module, its dependencies,
the shared libraries and the loader they need, and the CNI plugins stage1
runs, as a list of files (`files()`), each (path in the image, bytes, mode).

The host needs nothing but a kernel: every entrypoint is a link to one
small static launcher (launch.c) that finds the rootfs from its own path
(rkt runs the entrypoints from the pod's copy of the rootfs, enter from its
tree store) and execs the image's interpreter through the image's own
loader, with the image's libraries (`ld.so --library-path`: only that
process gets them, not its children).  rkt's systemd stage1 ran its
systemd-nspawn the same way.  /proc/PID/exe of the init is then the
image's loader.  The CNI plugins (Debian's are linked against glibc) are
run the same way, through links to the launcher named after them.

The image's layout:

  lib64/ld-linux-x86-64.so.2   the loader, at the same path as on the host
  lib/                         every shared library (libc, libpython, libseccomp, libcap, ...)
  usr/bin/python3              the interpreter (sys.prefix is usr/, found from the
                               landmark usr/lib/python3.X/os.pyc, as Python does)
  usr/bin/stage1               `stage1 ARGS...` for people and containers (a link)
  usr/lib/stage1/launch        the launcher; run, enter, ... at the top link to it
  usr/lib/python3.X/           the standard library stage1 imports, compiled only
  usr/lib/python3.X/site-packages/  stage1, psutil, prctl, cffi's backend
  usr/lib/cni/                 the CNI plugins (Debian's containernetworking-plugins)
  usr/lib/rkt/plugins/net/     a link to the launcher per plugin, where network.py
                               looks in a stage1 image (network.STAGE1_PLUGINS)

Which modules: modulefinder over every stage1 module (imports inside
functions included), less EXCLUDED: modules reached only through paths
stage1 never takes (a Windows branch, a module's own `main()`, archive
formats, importlib's metadata finder), each with its reason.  The test
that runs a pod through the image, and the suite run with STAGE1_BIN set
to the image's usr/bin/stage1, are what proves the list.

Reproducible: files in sorted order; .pyc compiled in a child interpreter
with PYTHONHASHSEED=0 (frozenset constants are marshalled in hash order)
and invalidation mode UNCHECKED_HASH (no mtime in them); shared objects
stripped (strip is deterministic); build-time paths taken out (see
`_scrub`), so nothing in the image names the build machine's paths.
"""
import os
import re
import subprocess
import sys
import sysconfig

from stage1.isolation import network

PY_DIR = "python%d.%d" % sys.version_info[:2]
LIB = "lib"
STDLIB = "usr/lib/" + PY_DIR
SITE = STDLIB + "/site-packages"
PYTHON = "usr/bin/python3"

# rkt's own stage1 shipped ptp, bridge, macvlan, ipvlan, host-local, dhcp,
# flannel and tuning (stage1/net-plugins/net-plugins.mk); portmap is what
# stage1 forwards ports with.  Debian has no flannel.  Any other plugin is
# still found in the host's /usr/lib/cni.
CNI_PLUGINS = ("bridge", "dhcp", "host-local", "ipvlan", "macvlan", "portmap", "ptp",
               "tuning")
CNI_SOURCE = "/usr/lib/cni"

EXCLUDED = (
    # importlib's metadata and resources finders (pulled in by
    # _bootstrap_external for importlib.metadata.distributions()), and
    # with them email, csv, zipfile, pathlib, tempfile, random
    "importlib.metadata", "importlib.resources", "importlib.readers",
    # archives: shutil's make_archive and stage1.rkt.aci, a build-time tool
    "tarfile", "zipfile", "gzip", "bz2", "lzma", "_bz2", "_lzma", "zlib", "zipimport",
    "encodings.bz2_codec", "encodings.zlib_codec",     # and those two codecs
    # hashlib's OpenSSL backend: it falls back on the builtin _sha256 & co
    "_hashlib", "_ssl", "ssl",
    # reached from modules' main()/test functions or other platforms
    "email", "xml", "pyexpat", "plistlib", "csv", "_csv", "pydoc", "doctest", "unittest",
    "pdb", "tkinter", "lib2to3", "idlelib", "test", "distutils", "setuptools", "pip",
    "pkg_resources", "_distutils_hack", "getopt", "optparse", "webbrowser", "http", "urllib",
    "ctypes", "_ctypes",            # psutil: Windows only
    "psutil.tests",
    "_pydecimal",                   # decimal falls back on it when _decimal is missing
    "statistics", "_statistics",    # random's binomialvariate... only through statistics
    "tracemalloc", "_tracemalloc",  # warnings imports it inside a try, for source traces
    "logging",                      # hashlib logs an algorithm it cannot find
    "pickle", "_pickle", "_compat_pickle", "pprint", "dataclasses", "inspect", "dis",
    "opcode", "_opcode", "ast", "_ast", "py_compile", "runpy", "pkgutil",
    "multiprocessing", "concurrent", "asyncio", "sqlite3", "curses", "readline",
    "cffi", "pycparser",            # the out-of-line module needs only _cffi_backend
    "stage1.rkt.aci", "stage1.rkt.bundle",   # build tools, not run in the image
)
# Other systems' modules, imported in branches for those systems (the check
# that nothing excluded is imported as a module loads skips them).
OTHER_PLATFORMS = ("psutil._psbsd", "psutil._psosx", "psutil._pssunos", "psutil._psaix",
                   "psutil._pswindows", "_winapi", "winreg", "nt", "msvcrt", "_overlapped")
EXCLUDED += OTHER_PLATFORMS
# Whole packages the interpreter finds by name at run time.
ALWAYS = ("encodings",)
# Deps' top-level names and where to find them: the running interpreter's.
DEPENDENCIES = ("psutil", "prctl", "_prctl", "_cffi_backend")


class BundleError(Exception):
    pass


# -- the modules -----------------------------------------------------------------------

def _stage1_modules():
    import pkgutil
    import stage1
    return sorted(m.name for m in pkgutil.walk_packages(stage1.__path__, "stage1."))


def _excluded(name):
    return any(name == e or name.startswith(e + ".") for e in EXCLUDED)


def find_modules():
    """{module name: file} of every module stage1 may import (stdlib and
    deps), found by modulefinder from every stage1 module."""
    import modulefinder
    names = [m for m in _stage1_modules() if not _excluded(m) and m != "stage1.__main__"]
    finder = modulefinder.ModuleFinder(excludes=list(EXCLUDED))
    for name in names + list(DEPENDENCIES) + list(ALWAYS):
        try:
            finder.import_hook(name)
        except ImportError as err:
            raise BundleError("unable to find %s: %s" % (name, err))
    for package in ALWAYS:
        pkg_dir = os.path.dirname(finder.modules[package].__file__)
        for f in sorted(os.listdir(pkg_dir)):
            if f.endswith(".py") and f != "__init__.py" and \
                    not _excluded(package + "." + f[:-3]):
                finder.import_hook(package + "." + f[:-3])
    out = {}
    for name, module in finder.modules.items():
        if module.__file__ and not _excluded(name) and name != "__main__":
            out[name] = module.__file__
    for name, path in sorted(out.items()):
        if path.endswith(".py"):
            # stage1's own modules: every import, in functions too
            bad = sorted(m for m in top_level_imports(path, name, name.startswith("stage1."))
                         if _excluded(m) and m not in OTHER_PLATFORMS)
            if bad:
                raise BundleError("%s imports %s as it loads: EXCLUDED must not name it"
                                  % (name, ", ".join(bad)))
    return out


def top_level_imports(path, name, everywhere=False):
    """The modules a module imports as it is loaded: its module-level and
    class-level statements, not its functions', and not those in a try
    that handles ImportError (an optional module).  everywhere: every
    import statement of the module."""
    import ast
    with open(path, "rb") as f:
        tree = ast.parse(f.read(), path)
    package = name if path.endswith("__init__.py") else name.rpartition(".")[0]
    found = set()

    def optional(handlers):
        for h in handlers:
            names = h.type.elts if isinstance(h.type, ast.Tuple) else [h.type]
            if h.type is None or any(getattr(n, "id", None) in
                                     ("ImportError", "ModuleNotFoundError", "Exception")
                                     for n in names):
                return True
        return False

    def visit(nodes):
        for node in nodes:
            if isinstance(node, ast.Import):
                found.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")
                    parts = parts[:len(parts) - node.level + 1]
                    base = ".".join(parts + ([base] if base else []))
                found.add(base)
            elif isinstance(node, ast.Try):
                if not optional(node.handlers):
                    visit(node.body)
                visit(node.orelse)
                visit(node.finalbody)
            elif isinstance(node, ast.If) and "__main__" in ast.dump(node.test):
                visit(node.orelse)           # if __name__ == "__main__": a script's own
            elif isinstance(node, (ast.If, ast.With, ast.For, ast.While)):
                visit(node.body)
                visit(getattr(node, "orelse", []))
            elif isinstance(node, ast.ClassDef):
                visit(node.body)
    visit([n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))]
          if everywhere else tree.body)
    return found


def _places():
    """(prefix, place in the image) for every directory modules come from:
    site-packages first (the venv's may sit below the stdlib's prefix)."""
    purelib = sysconfig.get_paths()["purelib"]
    platlib = sysconfig.get_paths()["platlib"]
    stdlib = sysconfig.get_paths()["stdlib"]
    dynload = os.path.join(sysconfig.get_paths()["platstdlib"], "lib-dynload")
    import stage1
    stage1_parent = os.path.dirname(os.path.dirname(os.path.abspath(stage1.__file__)))
    places = [(stage1_parent, SITE), (purelib, SITE), (platlib, SITE),
              (dynload, STDLIB + "/lib-dynload"), (stdlib, STDLIB)]
    # the deepest prefix first, so that a site-packages below the stdlib
    # is not taken for a stdlib directory
    return sorted({(os.path.realpath(p), q) for p, q in places}, key=lambda pq: -len(pq[0]))


def place(path):
    """Where a module's file goes in the image (relative to the rootfs)."""
    real = os.path.realpath(path)
    for prefix, dest in _places():
        if real.startswith(prefix + os.sep):
            return dest + "/" + os.path.relpath(real, prefix)
    raise BundleError("%s: not below the stdlib or site-packages" % path)


def _is_site(dest):
    return dest.startswith(SITE + "/")


# -- compiling -------------------------------------------------------------------------

_COMPILER = r"""
import importlib.util, marshal, py_compile, sys
for line in sys.stdin.read().splitlines():
    src, dfile, out = line.split("\0")
    py_compile.compile(src, cfile=out, dfile=dfile, doraise=True,
                       invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
"""


def compile_all(sources, workdir):
    """{source path: .pyc bytes}, compiled by a child interpreter with a
    fixed hash seed.  Each code object names its file as the image has it
    (`/usr/lib/python3.X/...`), never as the build machine did."""
    jobs, outs = [], {}
    for i, (src, dest) in enumerate(sorted(sources.items())):
        out = os.path.join(workdir, "%d.pyc" % i)
        jobs.append("\0".join((src, "/" + dest, out)))
        outs[src] = out
    env = dict(os.environ, PYTHONHASHSEED="0")
    r = subprocess.run([sys.executable, "-I", "-c", _COMPILER], input="\n".join(jobs),
                       text=True, env=env, capture_output=True)
    if r.returncode != 0:
        raise BundleError("compiling the modules failed:\n" + r.stderr)
    result = {}
    for src, out in outs.items():
        with open(out, "rb") as f:
            result[src] = f.read()
        os.unlink(out)
    return result


# -- shared objects --------------------------------------------------------------------

_LDD_LINE = re.compile(r"^\s*(?:(\S+) => )?(/\S+) \(0x[0-9a-f]+\)$")


def needed(elf):
    """The shared libraries elf loads, as ldd resolves them on this host:
    [(soname, path)], the loader included (soname None)."""
    r = subprocess.run(["ldd", elf], capture_output=True, text=True)
    if r.returncode != 0:
        if "not a dynamic executable" in r.stdout + r.stderr:
            return []
        raise BundleError("ldd %s: %s" % (elf, r.stderr.strip() or r.stdout.strip()))
    out = []
    for line in r.stdout.splitlines():
        if "not found" in line:
            raise BundleError("%s: %s" % (elf, line.strip()))
        m = _LDD_LINE.match(line)
        if m:
            out.append((m.group(1), m.group(2)))
    return out


def _strip(path, workdir):
    """A stripped copy's bytes: no symbols or debug information (which
    name the build's source directories)."""
    out = os.path.join(workdir, "stripped")
    r = subprocess.run(["strip", "--strip-unneeded", "-o", out, path], capture_output=True,
                       text=True)
    if r.returncode != 0:
        raise BundleError("strip %s: %s" % (path, r.stderr.strip()))
    with open(out, "rb") as f:
        data = f.read()
    os.unlink(out)
    return data


def _elf_dynamic_drop(data, tags=(15, 29)):
    """data with its DT_RPATH (15) and DT_RUNPATH (29) entries removed
    (the later entries moved up, as chrpath -d does) and their strings
    zeroed: the image passes its library directory to the loader, and the
    paths name where the build found its libraries.  ELF64 little-endian."""
    import struct
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        return data
    buf = bytearray(data)
    phoff, = struct.unpack_from("<Q", buf, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", buf, 0x36)
    loads, dyn = [], None
    for i in range(phnum):
        p_type, _, p_offset, p_vaddr, _, p_filesz, _, _ = struct.unpack_from(
            "<IIQQQQQQ", buf, phoff + i * phentsize)
        if p_type == 1:
            loads.append((p_vaddr, p_offset, p_filesz))
        elif p_type == 2:
            dyn = (p_offset, p_filesz)
    if dyn is None:
        return data
    entries = [struct.unpack_from("<qQ", buf, dyn[0] + 16 * i) for i in range(dyn[1] // 16)]
    strtab = next((v for t, v in entries if t == 5), None)
    if strtab is None:
        return data

    def offset(vaddr):
        for v, o, size in loads:
            if v <= vaddr < v + size:
                return vaddr - v + o
        raise BundleError("an ELF address outside every segment")
    base = offset(strtab)
    kept = []
    for tag, value in entries:
        if tag in tags:
            start = base + value
            end = buf.index(b"\0", start)
            buf[start:end] = b"\0" * (end - start)
        else:
            kept.append((tag, value))
    kept += [(0, 0)] * (len(entries) - len(kept))
    for i, (tag, value) in enumerate(kept):
        struct.pack_into("<qQ", buf, dyn[0] + 16 * i, tag, value)
    return bytes(buf)


def _scrub(data, paths):
    """data with every occurrence of the build's paths rewritten in place,
    to the same length: the path's directories become slashes, its last
    component stays.  libpython keeps its configure prefix as its
    last-resort sys.prefix (unused here: the landmark is found), and the
    linker points other strings into that string's tail (PY_VERSION
    "3.11.7" is the tail of "/root/.pyenv/versions/3.11.7")."""
    for p in sorted(paths, key=len, reverse=True):
        raw = p.encode()
        cut = len(raw) - len(os.path.basename(p).encode())
        data = data.replace(raw, b"/" * cut + raw[cut:])
    return data


def build_paths():
    """The build machine's paths that must not reach the image."""
    import stage1
    paths = {sys.prefix, sys.exec_prefix, sys.base_prefix, sys.base_exec_prefix,
             os.path.dirname(os.path.dirname(os.path.abspath(stage1.__file__))),
             os.path.realpath(sys.base_prefix)}
    return {p for p in paths if p and p not in ("/", "/usr", "/usr/local")}


# -- the launcher ---------------------------------------------------------------------

LAUNCH = "usr/lib/stage1/launch"
LAUNCH_SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "launch.c")


def compile_launcher(loader, workdir):
    """launch.c, static and stripped: every entrypoint is a link to it.
    Not a shell script: a shell adds PWD to the environment, and `stage1
    exec` owes its app the caller's environment exactly."""
    out = os.path.join(workdir, "launch")
    cc = os.environ.get("CC", "cc")
    r = subprocess.run([cc, "-static", "-Os", "-Wall", "-Wextra", "-s",
                        "-ffile-prefix-map=%s=." % os.path.dirname(LAUNCH_SOURCE),
                        '-DLOADER="%s"' % loader, "-o", out, LAUNCH_SOURCE],
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise BundleError("compiling %s (a C compiler and a static libc: Debian's gcc and "
                          "libc6-dev): %s" % (LAUNCH_SOURCE, r.stderr.strip()))
    with open(out, "rb") as f:
        data = f.read()
    os.unlink(out)
    return data


def link_to_launcher(path):
    """The relative symlink target from path (in the rootfs) to the launcher."""
    return os.path.relpath(LAUNCH, os.path.dirname(path) or ".")


# -- everything ------------------------------------------------------------------------

def files(workdir, entrypoints=(), cni_source=CNI_SOURCE, plugins=CNI_PLUGINS):
    """[(path in the rootfs, bytes, mode, symlink target or None)], sorted:
    everything, and a link to the launcher for each of `entrypoints` (names
    at the rootfs's top).  Raises BundleError naming what is missing."""
    modules = find_modules()
    out = {}
    sources, elves = {}, {}
    for name, path in modules.items():
        dest = place(path)
        if path.endswith(".py"):
            sources[path] = dest
        elif path.endswith(".so"):
            elves[dest] = path
        else:
            raise BundleError("%s: neither source nor extension (%s)" % (name, path))
    compiled = compile_all(sources, workdir)
    for src, dest in sources.items():
        if _is_site(dest):
            # the deps and stage1: their sources too, for tracebacks; the
            # .pyc beside them is never checked against them (unchecked hash)
            with open(src, "rb") as f:
                out[dest] = (f.read(), 0o644)
            d, base = dest.rsplit("/", 1)
            tag = sys.implementation.cache_tag
            out["%s/__pycache__/%s.%s.pyc" % (d, base[:-3], tag)] = (compiled[src], 0o644)
        else:
            out[dest[:-3] + ".pyc"] = (compiled[src], 0o644)     # sourceless
    python = os.path.realpath(getattr(sys, "_base_executable", sys.executable))
    elves[PYTHON] = python
    if not os.path.isdir(cni_source):
        raise BundleError("%s: no CNI plugins (Debian's containernetworking-plugins)"
                          % cni_source)
    for name in plugins:
        path = os.path.join(cni_source, name)
        if not os.path.isfile(path):
            raise BundleError("%s: missing (Debian's containernetworking-plugins)" % path)
        elves["usr/lib/cni/" + name] = path
    libs, loader = {}, None
    for dest, path in sorted(elves.items()):
        for soname, lib in needed(path):
            if soname is None:
                loader = lib
            else:
                libs[soname] = lib
    if loader is None:
        raise BundleError("%s: no loader found by ldd" % python)
    # glibc dlopens libgcc_s for thread cancellation and unwinding
    gcc_s = _find_lib("libgcc_s.so.1", os.path.dirname(libs.get("libc.so.6", "/")))
    if gcc_s:
        libs["libgcc_s.so.1"] = gcc_s
    loader_dest = os.path.relpath(loader, "/")
    for soname, lib in sorted(libs.items()):
        for more_soname, more in needed(lib):
            if more_soname and more_soname not in libs:
                libs[more_soname] = more
    for soname, lib in sorted(libs.items()):
        elves[LIB + "/" + soname] = lib
    elves[loader_dest] = loader
    scrub = build_paths()
    for dest, path in elves.items():
        if dest.startswith("usr/lib/cni/") or dest == loader_dest:
            with open(path, "rb") as f:
                data = f.read()      # stripped by Debian; a stripped loader confuses debuggers
        else:
            data = _strip(path, workdir)
        data = _scrub(_elf_dynamic_drop(data), scrub)
        mode = 0o755 if dest in (PYTHON, loader_dest) or dest.startswith("usr/lib/cni/") \
            else 0o644
        out[dest] = (data, mode)
    out = {p: (d, m, None) for p, (d, m) in out.items()}
    out[LAUNCH] = (compile_launcher(loader_dest, workdir), 0o755, None)
    links = ["usr/bin/stage1"] + list(entrypoints) + [network.STAGE1_PLUGINS + "/" + name
                                                     for name in plugins]
    for path in links:
        out[path] = (b"", 0o777, link_to_launcher(path))
    return sorted((p,) + v for p, v in out.items())


def _find_lib(soname, near):
    """soname's path in the loader's cache (ldconfig -p), in the directory
    `near` (libc's: the same ABI) if it is there, or None."""
    r = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True)
    found = []
    for line in r.stdout.splitlines():
        name, _, path = line.strip().partition(" => ")
        if name.split(" ")[0] == soname and os.path.isfile(path):
            found.append(path)
    return next((p for p in found if os.path.dirname(p) == near), None)
