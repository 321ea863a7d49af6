"""isolation: what makes a pod a boundary.

What to isolate, decided and validated before anything starts
(decide.py); the host side and PID 1 of an isolated pod (host.py); each
app's root and its protected paths (rootfs.py); seccomp filters
(seccomp.py); cgroups (cgroups.py); `stage1 enter` (enter.py) and
`stage1 gc` (gc.py).

May import: engine, pod.
"""
