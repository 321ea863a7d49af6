"""engine: the init itself, and all that `stage1 exec` needs.

The native wrapper (native.py, the only importer of the compiled module),
the one event loop (loop.py), the apps' state machine with its policies,
order and stop sequence (supervisor.py), spawn requests (spawn.py),
becoming an init and its /proc readers (init.py), atomic status files
(status.py), the pod's process tree for `ps` (procs.py) and exec mode
itself (execmode.py).

May import: the standard library, cffi's compiled module, python-prctl.
Nothing else of stage1: every other layer builds on this one.
"""
