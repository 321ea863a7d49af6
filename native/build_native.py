"""cffi builder for stage1's native layer (out-of-line API mode).

The cdef is the part of native/stage1.h between the CDEF markers, so the
header is the single description of the C interface; the sources are the
real .c files beside it.
"""
import os

from cffi import FFI

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCES = ["signals.c", "reap.c", "spawn.c", "children.c", "ns.c", "seccomp.c"]


def _cdef():
    with open(os.path.join(HERE, "stage1.h")) as f:
        text = f.read()
    start = text.index("/* CDEF-BEGIN */") + len("/* CDEF-BEGIN */")
    return text[start:text.index("/* CDEF-END */")]


ffibuilder = FFI()
ffibuilder.cdef(_cdef())
ffibuilder.set_source(
    "stage1.engine._native",
    '#include "stage1.h"',
    sources=[os.path.join("native", s) for s in SOURCES],
    include_dirs=[HERE],
    libraries=["seccomp"],      # Debian's libseccomp-dev (build.sh installs it)
    extra_compile_args=["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter",
                        "-Wno-missing-field-initializers"],
)

if __name__ == "__main__":
    os.chdir(os.path.dirname(HERE))
    ffibuilder.compile(verbose=False)
