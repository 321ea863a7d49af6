"""runner: `stage1 run` from manifest to exit code: plan, isolate, supervise.

May import: engine, pod, isolation, live.
"""
