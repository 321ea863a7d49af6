"""isolation: what makes a pod a boundary.

What to isolate, decided and validated before anything starts
(decide.py); the host side and PID 1 of an isolated pod (host.py); each
app's root and its protected paths (rootfs.py); seccomp filters
(seccomp.py); cgroups (cgroups.py); CNI networks (network.py); each app's
/etc/resolv.conf and /etc/hosts (dns.py); `stage1 enter` (enter.py) and
`stage1 gc` (gc.py).

May import: engine, pod.
"""
