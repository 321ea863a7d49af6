"""live: what surrounds the Supervisor while a pod runs.

The control socket (control.py), readiness through sd_notify and fd:N
(notify.py), log relays (logs.py), the event log (events.py), and their
wiring to the Supervisor's hooks (runtime.py).

May import: engine, pod.
"""
